"""The run lifecycle: one component owns a run directory from its planning to its last line.

See :mod:`lightning_hw.runs.lifecycle` for the steps (plan, check, open, commit, finish or
roll back), :mod:`lightning_hw.runs.files` for what a run directory holds, and
:mod:`lightning_hw.runs.interrupts` for SIGTERM/Ctrl-C.

The names below are imported lazily: ``lightning_hw.runs.files`` (what ``study`` and
``report`` read) must not pull in Lightning, so ``study --help`` answers at once.
"""

from importlib import import_module
from typing import Any

#: name -> the submodule that defines it
_EXPORTS = {
    "checkpoint_callbacks": "checkpointing",
    "WANDB_MODES": "config",
    "RunConfig": "config",
    "WATCH": "interrupts",
    "GracefulStop": "interrupts",
    "RunInterrupted": "interrupts",
    "AfterEvaluationLogged": "interrupts",
    "SwallowedStops": "interrupts",
    "quiet_swallowed_stops": "interrupts",
    "interrupt_signal": "interrupts",
    "Run": "lifecycle",
    "RunRecord": "lifecycle",
    "check_restored_settings_kept": "lifecycle",
    "command_name": "lifecycle",
    "plan_run": "lifecycle",
    "restored_settings": "lifecycle",
    "run_of_checkpoint": "lifecycle",
    "saved_elsewhere": "lifecycle",
    "MetricsFile": "loggers",
    "RunCSVLogger": "loggers",
    "finish_wandb": "loggers",
    "note_caveats_in_wandb": "loggers",
    "start_wandb": "loggers",
    "stop_reason": "stopping",
    "sync_command": "loggers",
    "wandb_logger": "loggers",
    "wandb_mode": "loggers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"lightning_hw.runs.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lightning_hw.runs' has no attribute {name!r}")
