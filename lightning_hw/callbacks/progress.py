"""The progress bar a run gets unless its config names one."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar


class ThrottledProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, updated at most every ``min_interval`` seconds.

    Lightning's bar does its bookkeeping on every batch (updating the Rich task,
    collecting the progress-bar metrics, reading each as a Python float, which on a
    GPU waits for the device) and redraws up to 100 times a second from a thread that
    holds the GIL. With ~1 ms steps that was ~40% of a small MLP's epoch on 2 CPU
    cores. This bar skips batches until ``min_interval`` has passed (the last batch of
    a loop is always shown), so its cost no longer grows with the number of steps.

    Args:
        min_interval: seconds between two updates of a bar.
        refresh_rate: redraws per second (Rich's ``refresh_per_second``).
        **kwargs: see :class:`~lightning.pytorch.callbacks.RichProgressBar`.
    """

    def __init__(self, min_interval: float = 0.1, refresh_rate: int = 10, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.min_interval = min_interval
        self._last_update = float("-inf")

    def _due(self, batch_idx: int, total: int | float) -> bool:
        now = time.monotonic()
        if now - self._last_update >= self.min_interval or batch_idx + 1 >= total:
            self._last_update = now
            return True
        return False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._due(batch_idx, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_predict_batches_current_dataloader):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


def default_progress_bar() -> ThrottledProgressBar:
    """The bar ``lightning_hw`` adds when the config has none: :class:`ThrottledProgressBar`.

    Replace it from a config with ``trainer.callbacks`` (any ``ProgressBar``, e.g.
    ``lightning.pytorch.callbacks.TQDMProgressBar``) or turn it off with
    ``--trainer.enable_progress_bar false``.
    """
    return ThrottledProgressBar()
