"""The run lifecycle: one component owns a run directory from its planning to its last line.

See :mod:`lightning_hw.runs.lifecycle` for the steps (plan, check, open, commit, finish or
roll back), :mod:`lightning_hw.runs.files` for what a run directory holds, and
:mod:`lightning_hw.runs.interrupts` for SIGTERM/Ctrl-C.
"""

from lightning_hw.runs.checkpointing import checkpoint_callbacks
from lightning_hw.runs.config import WANDB_MODES, RunConfig
from lightning_hw.runs.interrupts import WATCH, GracefulStop, RunInterrupted
from lightning_hw.runs.lifecycle import Run, RunRecord, command_name, plan_run, run_of_checkpoint, saved_elsewhere
from lightning_hw.runs.loggers import (
    MetricsFile,
    RunCSVLogger,
    finish_wandb,
    start_wandb,
    sync_command,
    wandb_logger,
    wandb_mode,
)

__all__ = [
    "WANDB_MODES",
    "WATCH",
    "GracefulStop",
    "MetricsFile",
    "Run",
    "RunCSVLogger",
    "RunConfig",
    "RunInterrupted",
    "RunRecord",
    "checkpoint_callbacks",
    "command_name",
    "finish_wandb",
    "plan_run",
    "run_of_checkpoint",
    "saved_elsewhere",
    "start_wandb",
    "sync_command",
    "wandb_logger",
    "wandb_mode",
]
