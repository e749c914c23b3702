"""Run directories, loggers and checkpoints: everything a run writes goes to one place.

``runs/<group>/<name>/`` holds the resolved ``config.yaml``, ``metrics.csv`` (always,
so reports work with no W&B account), ``checkpoints/`` and the W&B files.
"""

from __future__ import annotations

import datetime as dt
import netrc
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only

from lightning_hw.errors import ConfigError

WANDB_MODES = ("auto", "online", "offline", "disabled")
WANDB_ID_FILE = "wandb-run-id"


@dataclass
class RunConfig:
    """Where a run writes and how it is logged (the ``run:`` section of a config).

    Args:
        root: directory that holds all run groups.
        group: group of related runs (a study); default: the config file's name.
        name: this run's name; default: a timestamp. Reuse a name to resume a run in place.
        project: W&B project.
        wandb: ``auto`` (online when logged in, else offline), ``online``, ``offline`` or ``disabled``.
        tags: W&B tags.
        job_type: W&B job type (e.g. ``train``, ``eval``).
        monitor: validation metric that picks the best checkpoint; default: the task's.
        test_after_fit: after ``fit``, run ``test`` on the best checkpoint.
    """

    root: str = "runs"
    group: str | None = None
    name: str | None = None
    project: str = "lightning-hw"
    wandb: str = "auto"
    tags: list[str] = field(default_factory=list)
    job_type: str | None = None
    monitor: str | None = None
    test_after_fit: bool = True


def run_directory(run: RunConfig, config_files: list[str], ckpt_path: str | None = None) -> Path:
    """Decide (and create) the directory of this run.

    Args:
        run: the ``run:`` settings.
        config_files: the ``--config`` files given, in order (the last names the group).
        ckpt_path: a checkpoint given to ``validate``/``test``/``predict``: without an
            explicit ``run.name``, its run directory is reused.
    """
    if run.name is None and ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        directory = Path(ckpt_path).parent.parent
    else:
        group = run.group or (Path(config_files[-1]).stem if config_files else "default")
        name = run.name or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        directory = Path(run.root) / group / name
        if run.name is None:  # two unnamed runs in the same second must not share a directory
            suffix = 1
            while directory.exists():
                directory = Path(run.root) / group / f"{name}-{suffix}"
                suffix += 1
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def wandb_mode(setting: str) -> str:
    """Resolve ``auto`` to ``online`` when W&B credentials exist, else ``offline``."""
    if setting not in WANDB_MODES:
        raise ConfigError(f"run.wandb must be one of {', '.join(WANDB_MODES)}, got {setting!r}")
    if setting != "auto":
        return setting
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    return "offline"


def make_loggers(run: RunConfig, directory: Path) -> list[Logger]:
    """CSV always (first, so ``trainer.log_dir`` is the run directory), plus W&B unless disabled.

    W&B is started here rather than lazily, so that a failure to start is reported once
    and training goes on with the CSV log instead of crashing mid-run.
    """
    loggers: list[Logger] = [CSVLogger(save_dir=directory, name="", version="")]
    mode = wandb_mode(run.wandb)
    if mode == "disabled":
        return loggers
    try:
        from lightning.pytorch.loggers import WandbLogger

        id_file = directory / WANDB_ID_FILE
        # One W&B run per run directory: a resumed run continues the same W&B run.
        run_id = id_file.read_text().strip() if id_file.exists() else None
        wandb_logger = WandbLogger(
            project=run.project,
            name=f"{directory.parent.name}/{directory.name}",
            group=directory.parent.name,
            tags=list(run.tags),
            job_type=run.job_type,
            save_dir=str(directory),
            offline=mode == "offline",
            id=run_id,
            resume="allow" if run_id else None,
        )
        if rank_zero_only.rank == 0:  # other DDP processes log nothing (Lightning gives them a dummy run)
            experiment = wandb_logger.experiment  # starts W&B now
            id_file.write_text(experiment.id)
    except Exception as err:  # noqa: BLE001 - W&B trouble must not stop training
        print(f"W&B could not start ({type(err).__name__}: {err}); logging to CSV only.", file=sys.stderr)
        return loggers
    if mode == "offline" and rank_zero_only.rank == 0:
        print(f"W&B is offline; upload this run later with: wandb sync {directory / 'wandb'}/offline-run-*")
    loggers.append(wandb_logger)
    return loggers


def finish_loggers(loggers: list[Logger]) -> None:
    """Close W&B runs so that the next run in this process never reuses one."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()


def checkpoint_callback(directory: Path, monitor: str, mode: str) -> ModelCheckpoint:
    """Best checkpoint by ``monitor`` plus ``last.ckpt``, in ``<run>/checkpoints``."""
    return ModelCheckpoint(
        dirpath=directory / "checkpoints",
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode=mode,
        save_last=True,
    )
