"""``last.ckpt``: the newest state of a run, written often enough to lose little, rarely enough to cost little."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer

from lightning_hw._compat.lightning import CheckpointHooks, gradients_accumulating, validation_follows


class LastCheckpoint(CheckpointHooks):
    """Write ``<dirpath>/last.ckpt`` at the end of an epoch when ``min_interval`` seconds have passed.

    The first epoch is always written (a crash after it never loses everything), then at
    most one write per ``min_interval`` seconds, and always the run's final epoch
    (``max_epochs``, ``max_steps``, early stopping, ``max_time``). Epochs longer than the
    interval are therefore all written, as with Lightning's ``save_last=True``; a run of
    60 ms epochs (E7, E8) writes once a minute instead of spending ~10 ms of each epoch
    (15% of it) on a checkpoint. A crash, an exception or Ctrl-C loses at most
    ``min_interval`` seconds of training plus one epoch; ``--ckpt_path last`` resumes from
    the file exactly (see :class:`~lightning_hw.callbacks.resume.ResumeState`).

    A separate callback from the best checkpoint's because Lightning 2.6's
    ``save_last=True`` rewrites ``last.ckpt`` only when a top-k checkpoint is saved in the
    same step, so after the best epoch it goes stale.

    With ``every_n_steps`` the file is also written inside epochs, every that many optimizer
    steps (Lightning's ``every_n_train_steps`` would turn the end-of-epoch writes off). A step
    followed by a validation is written at the validation's end, and a step that ends an
    epoch (or the run, ``max_steps``) at the epoch's end, as every epoch is: a resume from
    there neither skips nor repeats that validation. A pending best checkpoint is written
    first, so ``last.ckpt`` never names a best file that is not on disk.

    Args:
        dirpath: the run's ``checkpoints`` directory.
        min_interval: seconds between two writes; ``0`` writes after every epoch.
        every_n_steps: also write every this many optimizer steps inside an epoch (``None``: not).
    """

    def __init__(self, dirpath: str | Path, min_interval: float = 60.0, every_n_steps: int | None = None) -> None:
        # monitor=None + save_top_k=1 keeps exactly the newest; a fixed name, never "last-v1".
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
        self.min_interval = min_interval
        self.every_n_steps = every_n_steps
        self._last_write: float | None = None
        # a step of every_n_steps waits for the validation after it, or for its epoch's end
        self._step_write_due = False
        #: the file written because a signal asked the run to stop (GracefulStop then stops it)
        self.saved_for_interrupt: str | None = None

    def save_top_k_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Any]) -> None:
        # Every save of this callback goes through here (at the end of an epoch).
        from lightning_hw.runs.interrupts import WATCH

        # A signal forces the write: the end of an epoch is where a resume continues exactly.
        # Not while gradients accumulate (a validation between the batches of one step): the
        # signal is then served at the step's end (GracefulStop).
        stop = WATCH.agreed(trainer) and not gradients_accumulating(trainer)
        if stop or self._step_write_due or write_due(trainer, self._last_write, self.min_interval):
            self._write_pending_bests(trainer)
            super().save_top_k_checkpoint(trainer, monitor_candidates)
            self._last_write = time.monotonic()
            self._step_write_due = False
            if stop:
                self.saved_for_interrupt = str(Path(self.dirpath) / "last.ckpt")

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        if not self.every_n_steps or step == 0 or step % self.every_n_steps or self.last_saved_step == step:
            return
        if gradients_accumulating(trainer):
            return  # the batches of the next step are accumulating; the step itself was written
        ends_epoch = batch_idx + 1 >= trainer.num_training_batches
        ends_run = trainer.max_steps is not None and 0 < trainer.max_steps <= step
        if ends_epoch or ends_run or validation_follows(trainer):
            self._step_write_due = True  # see save_top_k_checkpoint and on_train_epoch_end
            return
        self._write_now(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # A due step whose validation did not save it (or an epoch without validation, which
        # Lightning saves nowhere with check_val_every_n_epoch > 1): written at the epoch's end.
        if self._step_write_due and self.last_saved_step != trainer.global_step:
            self._write_now(trainer)
        self._step_write_due = False

    def _write_now(self, trainer: Trainer) -> None:
        self._write_pending_bests(trainer)
        self.write_checkpoint(trainer, str(Path(self.dirpath) / "last.ckpt"))
        self._last_write = time.monotonic()

    def _write_pending_bests(self, trainer: Trainer) -> None:
        """Write the best checkpoints held in memory: ``last.ckpt`` names them, so they go to disk first."""
        for callback in trainer.checkpoint_callbacks:
            if callback is not self and hasattr(callback, "write_pending"):
                callback.write_pending(trainer)


def write_due(trainer: Trainer, last_write: float | None, min_interval: float) -> bool:
    """Whether a checkpoint callback that last wrote at ``last_write`` (``time.monotonic()``) writes now.

    Yes for its first write, the run's final epoch, and once ``min_interval`` seconds have
    passed. Rank 0 decides for every process: a save ends in a barrier, and clocks that
    straddle the interval would otherwise leave one process waiting there forever.
    """
    due = last_write is None or _final_epoch(trainer) or time.monotonic() - last_write >= min_interval
    return bool(trainer.strategy.broadcast(due))


def _final_epoch(trainer: Trainer) -> bool:
    """Whether training stops after this epoch: ``max_epochs``, ``max_steps``, or a stop request.

    Early stopping and Lightning's ``Timer`` (``max_time``) set ``should_stop`` in the same
    hooks, before this callback runs (Lightning orders checkpoint callbacks last). The
    final state is saved here rather than in ``on_train_end``: by then Lightning has
    counted the next epoch as started, and a resume from that state skips it.
    """
    if trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch + 1:
        return True
    if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
        return True
    return bool(trainer.should_stop)
