"""The checkpoint files of a run: the best by the monitored metric, and ``last.ckpt``."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_hw.callbacks.best_checkpoint import BestCheckpoint
from lightning_hw.callbacks.last_checkpoint import LastCheckpoint
from lightning_hw.runs.files import CHECKPOINT_DIR


def checkpoint_callbacks(
    directory: Path,
    monitor: str,
    mode: str,
    interval: float,
    every_n_steps: int | None = None,
    monitor_set_by: tuple[str, str] = ("run.monitor", "run.monitor"),
) -> list[ModelCheckpoint]:
    """The best checkpoint by ``monitor`` and ``last.ckpt``, in ``<run>/checkpoints``.

    Both write at most once per ``interval`` seconds at the end of epochs (see
    :class:`BestCheckpoint` and :class:`LastCheckpoint`); ``last.ckpt`` also every
    ``every_n_steps`` optimizer steps, when given. The best one comes first, so
    ``trainer.checkpoint_callback`` is the best checkpoint.

    Args:
        monitor_set_by: what set ``monitor`` and where to change it, for the line that refuses
            a metric the task never logs (``run.monitor``, or the task class's ``monitor``).
    """
    best = BestCheckpoint(
        dirpath=directory / CHECKPOINT_DIR,
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode=mode,
        min_interval=interval,
    )
    best.monitor_set_by = monitor_set_by
    return [best, LastCheckpoint(directory / CHECKPOINT_DIR, min_interval=interval, every_n_steps=every_n_steps)]
