"""The progress bar a run gets unless its config names one."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar, updated at most every ``min_interval`` seconds.

    Lightning's bars do their bookkeeping on every batch: collecting the progress-bar
    metrics, reading each as a Python float (on a GPU that waits for the device),
    redrawing. Its default when ``rich`` is installed, ``RichProgressBar``, also
    redraws up to 100 times a second from a thread that holds the GIL and rebuilds
    its tasks every epoch. On the E7 MLP (~1 ms steps, 2 CPU cores) the Rich bar cost
    ~40% of an epoch; throttled, it still cost ~10% on Reuters-sized epochs, where
    this tqdm bar costs nothing measurable. Batches are skipped until ``min_interval``
    has passed (the last batch of a loop is always shown), so the cost no longer grows
    with the number of steps.

    Args:
        min_interval: seconds between two updates of a bar.
        **kwargs: see :class:`~lightning.pytorch.callbacks.TQDMProgressBar`.
    """

    def __init__(self, min_interval: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
    ``lightning.pytorch.callbacks.RichProgressBar``) or turn it off with
    ``--trainer.enable_progress_bar false``.
    """
    return ThrottledProgressBar()
