"""The best checkpoint, kept in memory between writes so that small models do not wait for the disk."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import LightningModule, Trainer

from lightning_hw.callbacks.last_checkpoint import CachedStateKey, write_due
from lightning_hw.checkpoints import snapshot


class BestCheckpoint(CachedStateKey):
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
    ModelCheckpoint's, so checkpoints of either resume into the other.

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
        self._removals: list[str] = []  # written files that newer (pending) bests replace

    _key_class = "ModelCheckpoint"

    # -- saving: taken now, written when due ---------------------------------------------------

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        if write_due(trainer, self._last_write, self.min_interval):
            super()._save_checkpoint(trainer, filepath)
            self._pending.pop(filepath, None)
            self._write_pending(trainer)
            return
        # What Trainer.save_checkpoint writes, taken now (training changes the live tensors).
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only)  # noqa: SLF001
        self._pending[filepath] = snapshot(checkpoint)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        if filepath in self._pending:  # never written
            del self._pending[filepath]
        elif self._pending:  # keep it until the best that replaces it is on disk
            self._removals.append(filepath)
        else:
            super()._remove_checkpoint(trainer, filepath)

    def _write_pending(self, trainer: Trainer) -> None:
        """Write the checkpoints taken since the last write, then remove the files they replace."""
        for filepath, checkpoint in self._pending.items():
            trainer.strategy.save_checkpoint(checkpoint, filepath)
        written = bool(self._pending)
        self._pending.clear()
        trainer.strategy.barrier("BestCheckpoint._write_pending")
        for filepath in self._removals:
            super()._remove_checkpoint(trainer, filepath)
        self._removals.clear()
        self._last_write = time.monotonic()
        if written and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)

    def _write_if_due(self, trainer: Trainer) -> None:
        # Every process calls write_due (it broadcasts), pending or not.
        if write_due(trainer, self._last_write, self.min_interval) and (self._pending or self._removals):
            self._write_pending(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._write_if_due(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking and not self._should_save_on_train_epoch_end(trainer):
            self._write_if_due(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._write_pending(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if self._pending or self._removals:  # the best so far survives a crash that Python sees
            self._write_pending(trainer)

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
        # Fewer than k left: the next epoch qualifies whatever its score (the kth value is
        # only consulted once there are k).
        if not self.best_k_models:
            self.best_model_path, self.best_model_score = "", None
            return
        best = min if self.mode == "min" else max
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.get)
        self.best_model_score = self.best_k_models[self.best_model_path]
