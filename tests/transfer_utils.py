"""Small pieces shared by the transfer-learning tests: a random-image datamodule, a task, a trainer."""

from __future__ import annotations

from functools import partial

import torch
from lightning.pytorch import Trainer

from lightning_hw.data.base import InMemoryDataModule, Split
from lightning_hw.nets.backbones import TimmNet
from lightning_hw.tasks.classification import Classifier

SHAPE = (3, 32, 32)


class RandomImages(InMemoryDataModule):
    """24 seeded random 32x32 images in two classes (class 1 brighter), in memory."""

    class_names = ["a", "b"]
    input_shape = SHAPE

    def __init__(self, offset: float = 0.0, **kwargs) -> None:
        kwargs.setdefault("batch_size", 8)
        super().__init__(**kwargs)
        self.offset = offset

    def load_tensors(self) -> Split:
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(24) % 2
        images = torch.rand(24, *SHAPE, generator=g) + 0.5 * labels.view(-1, 1, 1, 1) + self.offset
        return images, labels


def make_task(spec=("gap", 8), head: str = "binary_bce", model_name: str = "resnet18", input_shape=SHAPE) -> Classifier:
    net = partial(TimmNet, model_name=model_name, head=list(spec))
    return Classifier(net, num_classes=2, input_shape=input_shape, head=head)


def make_trainer(callbacks, max_epochs: int = 1, **kwargs) -> Trainer:
    kwargs = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
              "enable_model_summary": False, "num_sanity_val_steps": 0, **kwargs}
    return Trainer(max_epochs=max_epochs, callbacks=callbacks, **kwargs)
