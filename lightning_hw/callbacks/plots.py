"""The figures the reports made: learning curves and test images titled with the prediction.

    trainer:
      callbacks:
        - class_path: lightning_hw.callbacks.plots.MetricCurves
        - class_path: lightning_hw.callbacks.plots.PredictionGrid
          init_args: {num_images: 3}

Every figure goes through :func:`log_figure`, which any callback can use for its own plots
(confusion matrices, landmark overlays...): it saves ``<run dir>/<name>.png`` and, when the
trainer has a W&B logger, logs the same PNG as a ``wandb.Image`` under ``plots/<name>``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden
from matplotlib.figure import Figure

from lightning_hw.deploy.predict import predict_step_on_inputs


def run_directory(trainer: Trainer) -> Path:
    """Where a run's files go: the first logger's directory (the CLI's run directory), else the root dir.

    Must be called on every process (``trainer.log_dir`` broadcasts from rank 0).
    """
    log_dir = trainer.log_dir  # None under fast_dev_run, whose dummy logger saves nothing
    return Path(log_dir if log_dir else trainer.default_root_dir)


def saves_files(trainer: Trainer) -> bool:
    """Whether a run keeps files: not under ``fast_dev_run``.

    Lightning turns its own logging and checkpoints off for a ``fast_dev_run`` and the CLI
    says nothing was saved, so a callback's figures and tables must not be written either.
    """
    return not trainer.fast_dev_run


def log_figure(trainer: Trainer, name: str, fig: Figure, caption: str | None = None, dpi: int = 120) -> Path:
    """Save a matplotlib figure as ``<run dir>/<name>.png`` and log it to W&B when a W&B logger is active.

    The one place where figures leave a run; call it from any callback or task hook, on
    every process (only rank 0 writes). The figure is closed afterwards.

    Args:
        trainer: the running trainer (gives the run directory and the loggers).
        name: file stem and W&B key suffix (``plots/<name>``); may contain ``/`` for subfolders.
        fig: the figure (``matplotlib.figure.Figure`` needs no GUI backend; pyplot figures work too).
        caption: caption of the W&B image.
        dpi: resolution of the PNG.

    Returns:
        The path of the PNG (not written under ``fast_dev_run``: see :func:`saves_files`).
    """
    from lightning_hw._compat.lightning import batches_that_stepped

    path = run_directory(trainer) / f"{name}.png"
    if trainer.is_global_zero and saves_files(trainer):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key=f"plots/{name}", images=[str(path)],
                    step=batches_that_stepped(trainer),  # the step of the metric rows (an evaluation's: its checkpoint's)
                    **({"caption": [caption]} if caption else {}),
                )
    import matplotlib.pyplot as plt

    plt.close(fig)  # a no-op for Figure objects pyplot does not manage; frees pyplot ones
    return path


class MetricCurves(Callback):
    """Train and validation curves per epoch, one panel per metric (``loss``, ``acc``, ...), at the end of fit.

    Reads the epoch values a task logs as ``train/<name>`` and ``val/<name>``; the history
    is kept in checkpoints, so a resumed run draws its whole history.

    Args:
        metrics: metric names to draw (e.g. ``[loss, acc]``); default: every name logged
            for training or validation.
        name: file stem of the figure (``<run dir>/<name>.png``).
    """

    def __init__(self, metrics: list[str] | None = None, name: str = "curves") -> None:
        self.metrics = metrics
        self.name = name
        self.history: dict[str, dict[int, float]] = {}

    def _record(self, trainer: Trainer, stage: str) -> None:
        for key, value in trainer.callback_metrics.items():
            prefix, _, metric = key.partition("/")
            if prefix == stage and metric and (self.metrics is None or metric in self.metrics):
                self.history.setdefault(key, {})[trainer.current_epoch] = float(value)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer, "train")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "val")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.history:
            log_figure(trainer, self.name, self.figure(), caption="per-epoch train and validation metrics")

    def figure(self) -> Figure:
        """The curves drawn so far: one panel per metric, epochs counted from 1 as Keras does."""
        names = sorted({key.partition("/")[2] for key in self.history}, key=lambda n: (n != "loss", n))
        fig = Figure(figsize=(5 * len(names), 3.8), layout="constrained")
        for ax, metric in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
            for stage, style in (("train", "o-"), ("val", "s--")):
                points = self.history.get(f"{stage}/{metric}", {})
                if points:
                    epochs = sorted(points)
                    ax.plot([e + 1 for e in epochs], [points[e] for e in epochs], style, label=stage, markersize=3)
            ax.set_title(metric)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
        return fig

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: dict(v) for k, v in state_dict.get("history", {}).items()}


def figure_grid(n: int, columns: int | None, panel_height: float) -> tuple[Figure, list]:
    """A figure of ``n`` panels in rows of ``columns`` (default: a square-ish grid), and its axes in order."""
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(3.4 * columns, panel_height * rows), layout="constrained")
    return fig, list(fig.subplots(rows, columns, squeeze=False).flatten())


def class_namer(class_names: list[str]):
    """``index -> name``; the index itself for a class without a name."""
    return lambda index: class_names[index] if 0 <= index < len(class_names) else str(index)


class PredictionGrid(Callback):
    """After testing: the first test images, each titled ``predicted: X / actual: Y`` with class names.

    Works with any datamodule whose test batches are ``(images, labels)`` with images
    ``(N, C, H, W)`` or ``(N, H, W)`` (raw uint8 or float), and any task whose
    ``predict_step`` returns the predicted class indices (a tensor, or a dict with ``preds``).
    Inputs are turned into model inputs by the datamodule's ``on_after_batch_transfer``
    (scaling, normalisation) exactly as during testing; the grid shows the raw images.

    Args:
        num_images: how many test images (E1 showed 3).
        columns: images per row (default: as square a grid as possible).
        name: file stem of the figure (``<run dir>/<name>.png``).
    """

    def __init__(self, num_images: int = 9, columns: int | None = None, name: str = "predictions") -> None:
        self.num_images = num_images
        self.columns = columns
        self.name = name

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loaders = trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        if loader is None:
            return
        images, labels = [], []
        before = _batch_hook(trainer, pl_module, "on_before_batch_transfer")  # e.g. nvJPEG decodes there
        for batch in loader:
            raw_x, raw_y, *_ = before(batch, 0)
            images.append(raw_x.cpu())
            labels.append(raw_y)
            if sum(len(x) for x in images) >= self.num_images:
                break
        x, y = torch.cat(images)[: self.num_images], torch.cat(labels)[: self.num_images]
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[1] not in (1, 3)):
            rank_zero_info(f"PredictionGrid: test inputs of shape {tuple(x.shape[1:])} are not images; no grid drawn")
            return
        preds = self.predict(trainer, pl_module, x, y)
        names = list(getattr(pl_module, "class_names", None) or getattr(trainer.datamodule, "class_names", None) or [])
        log_figure(trainer, self.name, self.figure(x, y, preds, names), caption="test images: predicted / actual")

    @staticmethod
    def predict(trainer: Trainer, pl_module: LightningModule, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Predicted class indices, with the same batch hooks as the test loop."""
        from lightning.fabric.utilities.apply_func import move_data_to_device

        batch = move_data_to_device((x, y), pl_module.device)
        batch = _batch_hook(trainer, pl_module, "on_after_batch_transfer")(batch, 0)
        was_training = pl_module.training
        pl_module.eval()
        with torch.inference_mode(), predict_step_on_inputs(pl_module):
            out = pl_module.predict_step(batch, 0)
        pl_module.train(was_training)
        preds = out["preds"] if isinstance(out, dict) else out
        if preds.ndim > 1:  # raw scores
            preds = preds.argmax(-1)
        return preds.cpu()

    def figure(self, x: torch.Tensor, y: torch.Tensor, preds: torch.Tensor, class_names: list[str]) -> Figure:
        """The grid: raw images, title green when right, red when wrong."""
        fig, axes = figure_grid(x.shape[0], self.columns, 3.0)
        name = class_namer(class_names)

        for ax, image, actual, predicted in zip(axes, x, y.tolist(), preds.tolist()):
            ax.imshow(_displayable(image), cmap="gray" if _is_grey(image) else None, vmin=0, vmax=1)
            ax.set_title(
                f"predicted: {name(predicted)} / actual: {name(actual)}",
                color="green" if predicted == actual else "red",
                fontsize=8,
            )
        for ax in axes:
            ax.axis("off")
        return fig


def _is_grey(image: torch.Tensor) -> bool:
    return image.ndim == 2 or image.shape[0] == 1


def _displayable(image: torch.Tensor) -> Any:
    """``(H, W)`` or ``(H, W, 3)`` floats in [0, 1]: uint8 scaled, other floats stretched per image."""
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    else:
        image = image.float()
        low, high = image.min(), image.max()
        if low < 0 or high > 1:  # standardised pixels: stretch to the visible range
            image = (image - low) / (high - low).clamp_min(1e-8)
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
    return image.numpy()


class ModelSummaryFile(Callback):
    """Write the model summary (the net's layers, exact parameter counts) to ``<run dir>/model_summary.txt``.

    The layers of the summary printed at the start of fit, with every count in full, as the
    reports kept Keras' ``model.summary()`` (Lightning's own table, written here before, listed
    the task's metric bookkeeping and stopped above the net's ``Linear`` layers).

    Args:
        max_depth: nesting depth of the layers listed, counted from the task (``net`` is 1,
            ``net.layers`` 2, each Dense layer of an MLP 3; -1: all).
    """

    def __init__(self, max_depth: int = 3) -> None:
        self.max_depth = max_depth

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from lightning_hw.callbacks.summary import describe

        path = run_directory(trainer) / "model_summary.txt"
        if trainer.is_global_zero and saves_files(trainer):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(describe(pl_module, self.max_depth, exact=True) + "\n")


def _batch_hook(trainer: Trainer, pl_module: LightningModule, name: str):
    """The batch hook the trainer's loops call: the datamodule's when it overrides it, else the module's."""
    datamodule = trainer.datamodule
    return getattr(datamodule if datamodule is not None and is_overridden(name, datamodule) else pl_module, name)
