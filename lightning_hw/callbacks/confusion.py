"""The test confusion matrix with class names: printed, saved in the run directory, logged to W&B.

    trainer:
      callbacks:
        - class_path: lightning_hw.callbacks.confusion.ConfusionMatrix

E5 reports its final models by their test confusion matrices ([[46, 5], [2, 27]] for
DenseNet201). After every test run this writes ``confusion_matrix.csv`` and
``confusion_matrix.png`` into the run directory, prints the table, and sends the figure
and the table to W&B when a W&B logger is active.
"""

from __future__ import annotations

import csv

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_hw.callbacks.progress import say_beside_progress_bar
from lightning_hw.callbacks.plots import log_figure, run_directory, saves_files


def format_confusion(matrix: torch.Tensor, class_names: list[str]) -> str:
    """A plain-text table: one row per true class, one column per predicted class.

    Args:
        matrix: ``(C, C)`` counts, ``matrix[true, predicted]``.
        class_names: the ``C`` names.
    """
    corner = "true \\ predicted"
    width = max(len(corner), *(len(n) for n in class_names))
    cell = max(6, *(len(n) for n in class_names), *(len(str(int(v))) for v in matrix.flatten()))
    lines = [f"{corner:<{width}}  " + "  ".join(f"{n:>{cell}}" for n in class_names)]
    for name, row in zip(class_names, matrix.tolist()):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{int(v):>{cell}}" for v in row))
    return "\n".join(lines)


class ConfusionMatrix(Callback):
    """After a test run, report the task's ``test_confusion`` (a torchmetrics ``MulticlassConfusionMatrix``).

    Args:
        plot: also draw it (``confusion_matrix.png`` and a W&B image).
    """

    def __init__(self, plot: bool = True) -> None:
        self.plot = plot
        #: the last matrix reported, ``[true, predicted]``
        self.matrix: torch.Tensor | None = None

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metric = getattr(pl_module, "test_confusion", None)
        if metric is None:
            return
        # Every process: each holds the whole matrix (see Classifier.test_confusion) and log_figure broadcasts the run directory.
        self.matrix = metric.compute().cpu()
        directory = run_directory(trainer)
        names = [str(n) for n in (getattr(pl_module, "class_names", None) or range(self.matrix.shape[0]))]
        rows = [[name, *row] for name, row in zip(names, self.matrix.tolist())]
        if trainer.is_global_zero:
            table = format_confusion(self.matrix, names)
            say_beside_progress_bar(trainer, f"Test confusion matrix (rows: true class, columns: predicted):\n{table}")
            if saves_files(trainer):
                directory.mkdir(parents=True, exist_ok=True)
                with (directory / "confusion_matrix.csv").open("w", newline="") as f:
                    csv.writer(f).writerows([["true \\ predicted", *names], *rows])
            for logger in trainer.loggers:
                if type(logger).__name__ == "WandbLogger":
                    logger.log_table(key="test/confusion_matrix", columns=["true \\ predicted", *names], data=rows)
        if self.plot:
            fig, ax = metric.plot(self.matrix, labels=names)
            ax.set_title(f"{type(pl_module).__name__}: test confusion matrix")
            log_figure(trainer, "confusion_matrix", fig)
