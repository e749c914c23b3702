"""A plugin task written as a plain ``LightningModule`` (not ``lightning_hw.Task``), for tests/test_plain_task.py.

It logs with ``self.log`` and torchmetrics objects as in any Lightning tutorial; the
only lightning-hw conventions it follows are the metric names (``<stage>/<name>``) and
the optional class attributes ``monitor``, ``monitor_mode`` and ``linked_from_data``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


class PlainClassifier(LightningModule):
    """A linear classifier in plain Lightning: cross-entropy, accuracy from torchmetrics.

    Args:
        num_classes: number of classes; linked from the datamodule by the CLI.
        input_shape: shape of one input sample; linked from the datamodule by the CLI.
        hidden: width of the hidden layer.
        lr: SGD learning rate.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    linked_from_data = ("num_classes", "input_shape")

    def __init__(self, num_classes: int = 2, input_shape: tuple[int, ...] = (1,), hidden: int = 32, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str, acc: MulticlassAccuracy) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc(logits.argmax(-1), y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=y.shape[0])
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, batch_size=y.shape[0])
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test", self.test_acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


class KerasStyleClassifier(PlainClassifier):
    """The same classifier logging Keras-style names (``train_loss``, ``val_accuracy``), as many tutorials do."""

    monitor = "val_accuracy"

    def log(self, name: str, value, *args, **kwargs) -> None:
        stage, metric = name.split("/")
        super().log(f"{stage}_{'accuracy' if metric == 'acc' else metric}", value, *args, **kwargs)
