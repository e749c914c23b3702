"""Tests of the uci-tables plugin: the tables' sizes and names, and the built-in Classifier training on them.

Run from the repository root (``make test`` installs the plugin first) or from this
directory after ``pip install -e .``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hw_uci_tables.tables import BreastCancer, Wine

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "wine.yaml"
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.mark.parametrize(
    ("cls", "rows", "features", "classes"),
    [(Wine, 178, 13, ["class_0", "class_1", "class_2"]), (BreastCancer, 569, 30, ["malignant", "benign"])],
)
def test_sizes_names_and_split(cls, rows, features, classes):
    data = cls(batch_size=8)
    assert data.input_shape == (features,) and data.class_names == classes and data.num_classes == len(classes)
    data.setup("fit")
    sizes = {name: tensors[0].shape[0] for name, tensors in data.data.items()}
    assert sum(sizes.values()) == rows and sizes["train"] == rows - int(rows * 0.2) - int(rows * 0.1)
    x_train = data.data["train"][0]
    assert torch.allclose(x_train.mean(0), torch.zeros(features), atol=1e-4)  # standardised on train
    assert set(data.data["test"][1].tolist()) <= set(range(len(classes)))
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (8, features) and y.dtype == torch.long


def test_split_is_seeded():
    first, second, other = Wine(), Wine(), Wine(split_seed=7)
    for data in (first, second, other):
        data.setup()
    assert torch.equal(first.data["test"][0], second.data["test"][0])
    assert not torch.equal(first.data["test"][0], other.data["test"][0])


def test_builtin_classifier_learns_wine_through_the_cli(tmp_path):
    from lightning_hw import registry
    from lightning_hw.cli import HWCLI

    wine = next(c for c in registry.available("datamodule") if c.name == "Wine")
    assert wine.distribution == "lightning-hw-uci-tables"  # found through the entry point, not by import
    cli = HWCLI(
        args=[
            "fit", "--config", str(CONFIG),
            "--trainer.max_epochs", "10",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--run.root", str(tmp_path / "runs"),
            "--run.wandb", "disabled",
        ]
    )  # fmt: skip
    assert type(cli.model).__name__ == "Classifier" and type(cli.datamodule).__name__ == "Wine"
    assert cli.model.num_classes == 3 and cli.model.net.layers[1].in_features == 13  # linked from the data
    assert cli.model.class_names == ["class_0", "class_1", "class_2"]
    # 17 test wines; a standardised MLP separates the three cultivars almost perfectly.
    assert float(cli.trainer.callback_metrics["test/acc"]) >= 0.85
