"""Epoch metrics are accumulated per step and logged once per epoch: the values must be exact epoch means."""

from __future__ import annotations

import csv
from collections import defaultdict
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import nn

from lightning_hw.callbacks.progress import ThrottledProgressBar
from lightning_hw.cli import HWCLI
from lightning_hw.errors import DataError
from lightning_hw.nets.mlp import MLP
from lightning_hw.tasks.classification import Classifier


def epoch_metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """metrics.csv merged into one dict per epoch."""
    merged: dict[int, dict[str, float]] = defaultdict(dict)
    for row in csv.DictReader((run_dir / "metrics.csv").open()):
        merged[int(row["epoch"])].update({k: float(v) for k, v in row.items() if v and k not in ("epoch", "step")})
    return dict(merged)


class Recorder(Callback):
    """Loss sum, correct predictions and size of every batch, from the net just before its step."""

    def __init__(self) -> None:
        self.batches: dict[tuple[int, str], list[tuple[float, int, int]]] = defaultdict(list)

    def _record(self, trainer, pl_module, batch, stage: str) -> None:
        x, y = batch
        with torch.no_grad():
            out = pl_module(x)
        loss = F.cross_entropy(out, y).item()
        self.batches[(trainer.current_epoch, stage)].append((loss * len(y), int((out.argmax(1) == y).sum()), len(y)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record(trainer, pl_module, batch, "train")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, pl_module, batch, "val")


def test_logged_loss_and_accuracy_are_the_epochs_sample_means(tiny_args, workdir):
    # batches of unequal size (500, 500, 259 / 100 x3 + 59) and two epochs: a mean of batch
    # means, or metrics not reset between epochs, would give different numbers.
    recorder = Recorder()
    cli = HWCLI(
        args=tiny_args(
            "fit", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "1.0",
            "--trainer.limit_val_batches", "1.0", "--data.init_args.batch_size", "500",
            "--data.init_args.eval_batch_size", "100", "--run.test_after_fit", "false", "--run.name", "m",
        ),
        trainer_defaults={"callbacks": [recorder]},
    )
    logged = epoch_metrics(cli.run_dir)
    assert sorted(logged) == [0, 1]
    for epoch in (0, 1):
        for stage, sizes in (("train", [500, 500, 259]), ("val", [100, 100, 100, 59])):
            batches = recorder.batches[(epoch, stage)]
            assert [n for _, _, n in batches] == sizes
            total = sum(sizes)
            assert logged[epoch][f"{stage}/loss"] == pytest.approx(sum(s for s, _, _ in batches) / total, rel=1e-5)
            assert logged[epoch][f"{stage}/acc"] == pytest.approx(sum(c for _, c, _ in batches) / total, abs=1e-6)
            assert 0 < logged[epoch][f"{stage}/f1"] <= 1
    assert logged[1]["train/loss"] < logged[0]["train/loss"]


def test_weight_penalties_are_summed_once_per_module():
    task = Classifier(partial(MLP, hidden=[6], l2=0.1), num_classes=3, input_shape=(4,))
    weights = [m.weight for m in task.net.modules() if isinstance(m, nn.Linear)]
    expected = 0.1 * sum(w.square().sum() for w in weights)
    assert torch.allclose(task.regularization_loss(), expected)
    task.twin = task.net  # the same module registered twice is still penalised once
    assert torch.allclose(task.regularization_loss(), expected)
    assert Classifier(partial(MLP, hidden=[6]), 3, (4,)).regularization_loss() is None


def test_throttled_bar_skips_updates_but_always_shows_the_last_batch(monkeypatch):
    bar = ThrottledProgressBar(min_interval=0.1)
    now = [100.0]
    monkeypatch.setattr("lightning_hw.callbacks.progress.time.monotonic", lambda: now[0])
    shown = []
    for batch_idx in range(10):
        if bar._due(batch_idx, total=10):
            shown.append(batch_idx)
        now[0] += 0.03
    assert shown == [0, 4, 8, 9]


def test_runs_get_the_throttled_bar_unless_the_config_names_a_bar(tiny_args):
    args = tiny_args("fit", "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "true")
    assert type(HWCLI(args=args).trainer.progress_bar_callback) is ThrottledProgressBar
    own = HWCLI(args=[*args, "--trainer.callbacks+=lightning.pytorch.callbacks.RichProgressBar"])
    assert type(own.trainer.progress_bar_callback).__name__ == "RichProgressBar"


@pytest.mark.parametrize("head", ["softmax_ce", "binary_bce"])
def test_a_target_outside_the_classes_fails_clearly(head):
    task = Classifier(partial(MLP, hidden=[4]), num_classes=2, input_shape=(3,), head=head)
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 0])
    with pytest.raises((DataError, IndexError)) as err:  # the multi-class loss fails first
        task.shared_step((x, y), "val")  # BCE takes any target: the epoch's metrics must refuse it
        task.compute_epoch_metrics("val")
    if head == "binary_bce":
        assert "targets run from 0 to 2, but the task has 2 classes" in str(err.value)
