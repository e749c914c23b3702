"""Log a task's epoch metrics before any other callback looks for them."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer


class LogEpochMetrics(Callback):
    """Calls the task's ``log_epoch(stage)`` first thing in each epoch-end hook.

    Tasks accumulate their metrics per step and log them once per epoch
    (:meth:`lightning_hw.tasks.base.Task.log_epoch`). Lightning calls the callbacks'
    ``on_*_epoch_end`` hooks *before* the module's, so a task logging in its own hook
    would hide the epoch's values from every callback that reads them there (curves,
    early stopping written as a plain callback...). The CLI puts this callback first, so
    the values are logged before the others run; the task's own hook then finds nothing
    left to log. Modules without ``log_epoch`` are left alone.
    """

    @staticmethod
    def _log(pl_module: LightningModule, stage: str) -> None:
        log_epoch = getattr(pl_module, "log_epoch", None)
        if callable(log_epoch):
            log_epoch(stage)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(pl_module, "train")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(pl_module, "test")
