"""The best checkpoint, kept in memory between writes so that small models do not wait for the disk."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_warn

from lightning_hw._compat.lightning import CheckpointHooks, dump_checkpoint
from lightning_hw.callbacks.last_checkpoint import write_due
from lightning_hw.checkpoints import snapshot
from lightning_hw.errors import LightningHWWarning, disk_full_in


class BestCheckpoint(CheckpointHooks):
    """Lightning's top-k ``ModelCheckpoint``, written to disk at most once per ``min_interval`` seconds.

    When the monitored metric improves, the checkpoint is taken at once (the same dict
    ``Trainer.save_checkpoint`` would write, copied to CPU memory) and written when a write
    is due: the first save, the run's final epoch, an epoch end ``min_interval`` seconds
    after the previous write, the end of training, or an exception. Files replaced by a
    newer best are removed only after it is written, so the disk always holds a best
    checkpoint; between writes it may be an older one. Writing a checkpoint took 10-15 ms
    of a 70 ms epoch of the E7/E8 MLPs, which improve nearly every epoch; epochs longer
    than the interval are written at once, exactly as by ``ModelCheckpoint``.

    ``best_model_path`` names the newest best at once, so code that opens it during
    training (rather than after ``fit``) should set ``min_interval=0``. The state key is
    ModelCheckpoint's, so checkpoints of either resume into the other. Memory: each best
    held is a full checkpoint in CPU RAM (weights and optimizer state), one with
    ``save_top_k=1``. Sharded strategies (FSDP, DeepSpeed) write every save at once.

    Resume after a kill: the run's ``last.ckpt`` records this callback's state; the CLI puts
    this callback before :class:`~lightning_hw.callbacks.last_checkpoint.LastCheckpoint` with
    the same interval, so a due ``last.ckpt`` follows a write of the pending best. Should a
    recorded best still be missing, the resumed run forgets it (see ``on_train_start``).

    Args:
        *args: see ``ModelCheckpoint``.
        min_interval: seconds between two writes; ``0`` writes every save at once.
        **kwargs: see ``ModelCheckpoint``.
    """

    def __init__(self, *args: Any, min_interval: float = 60.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_interval = min_interval
        self._last_write: float | None = None
        self._pending: dict[str, dict[str, Any]] = {}  # file -> checkpoint taken but not yet written
        self._removals: list[str] = []  # files to delete once the pending bests are on disk
        self._flush_requested = False  # a save was due: write the rest at the end of the hook

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key under its class name: checkpoints of either class resume into the other.
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__) :]

    # -- saving: taken now, written when due ---------------------------------------------------

    def write_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # The file is about to hold this save: a queued removal of an older file of that name is void.
        self._removals = [path for path in self._removals if path != filepath]
        if not _can_defer(trainer) or write_due(trainer, self._last_write, self.min_interval):
            self._pending.pop(filepath, None)
            super().write_checkpoint(trainer, filepath)
            self._last_write = time.monotonic()
            # The other pending bests and removals follow at the end of this hook, after
            # Lightning has removed what this save replaces (no write of a file about to go).
            self._flush_requested = True
            return
        # What Trainer.save_checkpoint writes, taken now (training changes the live tensors).
        # Every process dumps (a strategy may gather state collectively); only rank 0 writes.
        checkpoint = dump_checkpoint(trainer, self.save_weights_only)
        self._pending[filepath] = snapshot(checkpoint) if trainer.is_global_zero else {}
        self.mark_saved(trainer, filepath)

    def delete_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # A pending path may also name an older file on disk (a name saved twice), so the
        # file is removed in any case: now, or after the bests that replace it are written.
        self._pending.pop(filepath, None)
        if self._pending:
            self._removals.append(filepath)
        else:
            super().delete_checkpoint(trainer, filepath)

    def file_exists(self, filepath: Any, trainer: Trainer) -> bool:
        # Lightning's `-v1` naming asks this; a pending best counts as written. Every
        # process makes the collective call, then adds its (identical) pending names.
        return super().file_exists(filepath, trainer) or str(filepath) in self._pending

    def write_pending(self, trainer: Trainer, barrier: bool = True) -> None:
        """Write the checkpoints taken since the last write, then remove the files they replace.

        Args:
            trainer: the trainer.
            barrier: wait for every process (not after an exception, which may have hit one only).
        """
        pending, removals = self._pending, self._removals
        self._pending, self._removals, self._flush_requested = {}, [], False
        for filepath, checkpoint in pending.items():
            trainer.strategy.save_checkpoint(checkpoint, filepath)  # a no-op except on rank 0
        if barrier:
            trainer.strategy.barrier("BestCheckpoint.write_pending")
        for filepath in removals:
            super().delete_checkpoint(trainer, filepath)
        if pending:
            self._last_write = time.monotonic()
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.after_save_checkpoint(self)

    def _write_if_due(self, trainer: Trainer) -> None:
        # Every process calls write_due (it broadcasts), pending or not.
        due = write_due(trainer, self._last_write, self.min_interval)
        if self._flush_requested or (due and (self._pending or self._removals)):
            self.write_pending(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        if self._flush_requested:  # an every_n_train_steps save was due
            self.write_pending(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.saves_on_train_epoch_end(trainer):
            self._write_if_due(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking and not self.saves_on_train_epoch_end(trainer):
            self._write_if_due(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self.write_pending(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if not (self._pending or self._removals):
            return
        try:  # the best so far survives a crash that Python sees
            self.write_pending(trainer, barrier=False)
        except Exception as err:  # noqa: BLE001 - the exception that stopped the run is the one to report
            cause = disk_full_in(err) or err  # torch.save's error on a full disk only says "unexpected pos"
            rank_zero_warn(
                f"could not write the best checkpoint after the run failed: {type(cause).__name__}: {cause}",
                category=LightningHWWarning,
            )

    # -- resuming --------------------------------------------------------------------------------

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._forget_missing_files(trainer)

    def _forget_missing_files(self, trainer: Trainer) -> None:
        """After a resume, drop the best checkpoints that a killed process had not yet written.

        Otherwise ``ckpt_path="best"`` would name a missing file, and a worse epoch could
        never replace it.
        """
        missing = [path for path in self.best_k_models if not self.file_exists(path, trainer)]
        if not missing:
            return
        for path in missing:
            del self.best_k_models[path]
        # Files on disk that no entry names any more (an older best) are left alone.
        # Fewer than k left: the next epoch qualifies whatever its score (the kth value is
        # only consulted once there are k).
        if not self.best_k_models:
            self.best_model_path, self.best_model_score = "", None
            return
        best = min if self.mode == "min" else max
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.get)
        self.best_model_score = self.best_k_models[self.best_model_path]


def _can_defer(trainer: Trainer) -> bool:
    """Whether a checkpoint can be held in memory and written by rank 0 later.

    Not under sharded strategies (FSDP, DeepSpeed): every process writes its shard there,
    and DeepSpeed saves its engine's live state rather than the dict it is given.
    """
    strategy = trainer.strategy
    return isinstance(strategy, SingleDeviceStrategy) or (
        isinstance(strategy, DDPStrategy) and not isinstance(strategy, DeepSpeedStrategy)
    )
