"""The progress bar a run gets unless its config names one."""

from __future__ import annotations

import sys
import time
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


class ThrottledTqdm(Tqdm):
    """Lightning's tqdm bar, redrawn at most once per ``mininterval`` and not before ``delay``.

    Lightning forces a redraw (``refresh()``) in most of its hooks: each epoch start
    (twice), each ``set_postfix``, each batch shown. With 60 ms epochs that is a dozen
    terminal writes per epoch, and with W&B running each write is also captured and sent
    to its service process. Skipped redraws lose nothing: the next one shows the current
    state, and ``close()`` always draws the final one. A bar closed before it was ever
    drawn writes nothing at all (tqdm's own ``delay`` rule), so a quick validation leaves
    no flicker.
    """

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> bool | None:
        if self.disable or not hasattr(self, "start_t"):  # a disabled bar never set its clock
            return super().refresh(nolock=nolock, lock_args=lock_args)
        now = time.time()  # tqdm's clock (start_t, last_print_t)
        if now < self.start_t + self.delay or now - self.last_print_t < self.mininterval:
            return False
        self.last_print_t = now  # what tqdm's close() checks to know whether anything was drawn
        return super().refresh(nolock=nolock, lock_args=lock_args)


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar, updated at most every ``min_interval`` seconds.

    Lightning's bars do their bookkeeping on every batch: collecting the progress-bar
    metrics, reading each as a Python float (on a GPU that waits for the device),
    redrawing. Its default when ``rich`` is installed, ``RichProgressBar``, also
    redraws up to 100 times a second from a thread that holds the GIL and rebuilds
    its tasks every epoch. On the E7 MLP (~1 ms steps, 2 CPU cores) the Rich bar cost
    ~40% of an epoch; throttled, it still cost ~10% on Reuters-sized epochs, where
    this tqdm bar costs nothing measurable. Batches are skipped until ``min_interval``
    has passed (the last batch of a loop always updates the bar's count), so the cost
    no longer grows with the number of steps, and the training and validation bars
    redraw at most once per ``min_interval`` (:class:`ThrottledTqdm`; closing a bar
    draws its final state); a validation shorter than that shows no bar of its own.

    Args:
        min_interval: seconds between two updates of a bar.
        **kwargs: see :class:`~lightning.pytorch.callbacks.TQDMProgressBar`.
    """

    def __init__(self, min_interval: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_interval = min_interval
        self._last_update = float("-inf")

    def init_train_tqdm(self) -> Tqdm:
        """The training bar (Lightning's settings) with throttled redraws."""
        return ThrottledTqdm(
            desc=self.train_description, position=2 * self.process_position, disable=self.is_disabled,
            leave=True, dynamic_ncols=True, file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT,
            mininterval=self.min_interval,
        )

    def init_validation_tqdm(self) -> Tqdm:
        """The validation bar (Lightning's settings), drawn only for a validation longer than ``min_interval``."""
        has_main_bar = self.trainer.state.fn != "validate"  # no training bar in `validate`
        return ThrottledTqdm(
            desc=self.validation_description, position=2 * self.process_position + has_main_bar,
            disable=self.is_disabled, leave=not has_main_bar, dynamic_ncols=True, file=sys.stdout,
            bar_format=self.BAR_FORMAT, mininterval=self.min_interval, delay=self.min_interval if has_main_bar else 0,
        )

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


def say_beside_progress_bar(trainer: Trainer, message: str) -> None:
    """Print ``message`` on a line of its own while a progress bar may still be open.

    A callback's ``on_*_end`` (or ``on_*_epoch_end``) runs before the bar's, which closes it: a
    plain ``print`` then continued the bar's last line (``... 3/3 [00:00<00:00]Predictions: ...``).
    The bar's own ``print`` clears it, writes the lines and draws the bar again.
    """
    bar = trainer.progress_bar_callback
    if bar is not None and bar.is_enabled:
        bar.print(message)
    else:
        print(message)
