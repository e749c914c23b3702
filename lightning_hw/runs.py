"""Run directories, loggers and checkpoints: everything a run writes goes to one place.

``runs/<group>/<name>/`` holds the resolved ``config.yaml``, ``metrics.csv`` (always,
so reports work with no W&B account), ``checkpoints/`` and the W&B files.
"""

from __future__ import annotations

import csv
import datetime as dt
import netrc
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from lightning_hw.callbacks.best_checkpoint import BestCheckpoint
from lightning_hw.callbacks.last_checkpoint import LastCheckpoint
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
        job_type: W&B job type (e.g. ``train``, ``eval``); default: the subcommand (``fit``, ``test``, ...).
        notes: W&B notes: a sentence on what this run tries (a study fills in its variant).
        monitor: validation metric that picks the best checkpoint; default: the task's.
        test_after_fit: after ``fit``, run ``test`` on the best checkpoint.
        checkpoint_interval: least seconds between two writes of ``checkpoints/last.ckpt``, and
            of the best checkpoint (kept in memory meanwhile); the first and the final epoch
            are always written, and the best one at the end of training; ``0``: every epoch.
        last_checkpoint_interval: the former name of ``checkpoint_interval`` (still read from
            the ``config.yaml`` of runs made before the rename; it wins when set).
    """

    root: str = "runs"
    group: str | None = None
    name: str | None = None
    project: str = "lightning-hw"
    wandb: str = "auto"
    tags: list[str] = field(default_factory=list)
    job_type: str | None = None
    notes: str | None = None
    monitor: str | None = None
    test_after_fit: bool = True
    checkpoint_interval: float = 60.0
    last_checkpoint_interval: float | None = None

    def checkpoint_seconds(self) -> float:
        """The interval in effect (the former setting wins when a saved config still has it)."""
        return self.checkpoint_interval if self.last_checkpoint_interval is None else self.last_checkpoint_interval


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


def make_loggers(
    run: RunConfig, directory: Path, job_type: str | None = None, resume: bool = False
) -> list[Logger]:
    """CSV always (first, so ``trainer.log_dir`` is the run directory), plus W&B unless disabled.

    W&B is started here rather than lazily, so that a failure to start is reported once
    and training goes on with the CSV log instead of crashing mid-run.

    Args:
        run: the ``run:`` settings (project, tags, job type, notes, W&B mode).
        directory: the run directory.
        job_type: W&B job type when ``run.job_type`` is unset (the CLI passes the subcommand).
        resume: the run continues from a checkpoint (``--ckpt_path``): keep the earlier rows
            of ``metrics.csv`` and continue the same W&B run. Otherwise a run that reuses a
            directory starts both afresh.
    """
    # A resumed `fit` gets back exactly the rows logged before its checkpoint from ResumeState
    # (Lightning's writer deletes the file first); validate/test/predict in an existing run
    # directory append to the training rows. Flushed at every log call (a few rows per
    # epoch), so a killed run loses no rows.
    keep_csv = resume and job_type != "fit"
    loggers: list[Logger] = [
        ResumableCSVLogger(save_dir=directory, name="", version="", keep_previous=keep_csv, flush_logs_every_n_steps=1)
    ]
    mode = wandb_mode(run.wandb)
    if mode == "disabled":
        return loggers
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger

        if wandb.run is not None:
            # WandbLogger would silently reuse an open run; each Lightning run gets its own.
            print(f"W&B run {wandb.run.id} was still open; finishing it so this run gets its own.", file=sys.stderr)
            wandb.finish()
        id_file = directory / WANDB_ID_FILE
        # A resumed run continues its W&B run; a fresh run in a reused directory starts a new one.
        run_id = id_file.read_text().strip() if resume and id_file.exists() else None
        if os.environ.get("WANDB_SWEEP_ID"):
            run_id = None  # under `wandb agent` the run id comes from the agent (WANDB_RUN_ID)
        wandb_logger = WandbLogger(
            project=run.project,
            name=f"{directory.parent.name}/{directory.name}",
            group=directory.parent.name,
            tags=list(run.tags),
            job_type=run.job_type or job_type,
            notes=run.notes,
            save_dir=str(directory),
            # `mode` rather than WandbLogger's `offline=True`, which sets WANDB_MODE for the
            # whole process and so leaks into every later run started by the same process.
            mode=mode,
            id=run_id,
            resume="allow" if run_id else None,
        )
        # Lightning always passes `anonymous`, which wandb >= 0.19 warns about on every run.
        getattr(wandb_logger, "_wandb_init", {}).pop("anonymous", None)
        if rank_zero_only.rank == 0:  # other DDP processes log nothing (Lightning gives them a dummy run)
            experiment = wandb_logger.experiment  # starts W&B now
            id_file.write_text(experiment.id)
    except Exception as err:  # noqa: BLE001 - W&B trouble must not stop training
        print(f"W&B could not start ({type(err).__name__}: {err}); logging to CSV only.", file=sys.stderr)
        return loggers
    if mode == "offline" and rank_zero_only.rank == 0:
        print("W&B is offline (no credentials found; `wandb login` to log online); the sync command follows at the end.")
    loggers.append(wandb_logger)
    return loggers


def finish_loggers(loggers: list[Logger]) -> None:
    """Close W&B runs so that the next run in this process never reuses one.

    For an offline run, print the exact ``wandb sync`` command that uploads it.
    """
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is None or not hasattr(experiment, "finish"):
            continue
        offline = bool(getattr(experiment, "offline", False))
        sync_dir = getattr(experiment, "sync_dir", None) if offline else None
        run_id = experiment.id
        experiment.finish()
        if sync_dir:
            print(f"W&B run saved offline; upload it with: {sync_command(Path(sync_dir), run_id)}")


def sync_command(sync_dir: Path, run_id: str) -> str:
    """``wandb sync`` for one offline run directory, or for all of them when a run was resumed.

    A resumed run writes one ``offline-run-<time>-<id>`` directory per session (wandb adds
    ``-1``, ``-2``... when two start in the same second), all with the same run id;
    syncing them in name (= time) order rebuilds the one W&B run.
    """
    pattern = f"offline-run-*-{run_id}*"
    if len(list(sync_dir.parent.glob(pattern))) > 1:
        return f"wandb sync {sync_dir.parent}/{pattern}"
    return f"wandb sync {sync_dir}"


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, which can keep the rows of an interrupted run it resumes.

    Lightning deletes an existing ``metrics.csv`` when a logger starts in its directory, so a
    run resumed with ``--ckpt_path`` would lose the epochs before the interruption. With
    ``keep_previous`` the new rows are appended instead; epochs that the resumed run repeats
    appear twice and the later row wins (``lightning_hw.reports`` reads it that way).

    Args:
        keep_previous: append to an existing ``metrics.csv`` instead of replacing it.
        **kwargs: see :class:`~lightning.pytorch.loggers.CSVLogger`.
    """

    def __init__(self, *args: Any, keep_previous: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_previous = keep_previous

    @property
    @rank_zero_experiment
    def experiment(self) -> _KeepingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir, keep_previous=self.keep_previous)
        return self._experiment


class _KeepingWriter(ExperimentWriter):
    """CSV writer that, when asked, adopts the header of an existing ``metrics.csv`` and appends."""

    def __init__(self, log_dir: str, keep_previous: bool = False) -> None:
        self.keep_previous = keep_previous
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return  # the run directory holds W&B files already; only an old metrics.csv matters
        if not self.keep_previous:
            super()._check_log_dir_exists()  # warns, and deletes the old metrics.csv
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        # Known keys: later rows are appended, and the file is rewritten only for new keys.
        self.metrics_keys = sorted(header)


def checkpoint_callbacks(directory: Path, monitor: str, mode: str, interval: float) -> list[ModelCheckpoint]:
    """The best checkpoint by ``monitor`` and ``last.ckpt``, in ``<run>/checkpoints``.

    Both write at most once per ``interval`` seconds (see :class:`BestCheckpoint` and
    :class:`LastCheckpoint`). The best one comes first, so ``trainer.checkpoint_callback``
    is the best checkpoint.
    """
    best = BestCheckpoint(
        dirpath=directory / "checkpoints",
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode=mode,
        min_interval=interval,
    )
    return [best, LastCheckpoint(directory / "checkpoints", min_interval=interval)]
