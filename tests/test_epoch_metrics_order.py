"""Epoch metrics logged once per epoch are visible to every callback's epoch-end hook."""

from __future__ import annotations

from lightning.pytorch import Callback

from lightning_hw.callbacks.plots import MetricCurves
from lightning_hw.cli import HWCLI


class SeenAtEpochEnd(Callback):
    """What ``trainer.callback_metrics`` holds in each epoch-end hook (a user's callback)."""

    def __init__(self) -> None:
        self.seen: dict[str, list[set[str]]] = {"train": [], "val": []}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seen["train"].append({k for k in trainer.callback_metrics if k.startswith("train/")})

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.seen["val"].append({k for k in trainer.callback_metrics if k.startswith("val/")})


def test_callbacks_see_the_epochs_metrics_in_their_epoch_end_hooks(tiny_args):
    seen, curves = SeenAtEpochEnd(), MetricCurves()
    cli = HWCLI(
        args=tiny_args("fit", "--trainer.max_epochs", "2", "--run.test_after_fit", "false"),
        trainer_defaults={"callbacks": [seen, curves]},
    )
    assert seen.seen["train"] == [{"train/loss", "train/acc", "train/f1"}] * 2
    assert seen.seen["val"] == [{"val/loss", "val/acc", "val/f1"}] * 2
    # the curves hold one point per epoch of each metric, equal to what was logged last
    assert sorted(curves.history) == ["train/acc", "train/f1", "train/loss", "val/acc", "val/f1", "val/loss"]
    assert all(sorted(points) == [0, 1] for points in curves.history.values())
    for key, points in curves.history.items():
        assert points[1] == float(cli.trainer.callback_metrics[key])


def test_a_trainer_without_the_callback_still_logs_through_the_tasks_own_hooks():
    from functools import partial

    from lightning.pytorch import Trainer

    from lightning_hw.data.datasets.digits import Digits
    from lightning_hw.nets.mlp import MLP
    from lightning_hw.tasks.classification import Classifier

    data = Digits(batch_size=64)
    task = Classifier(partial(MLP, hidden=[16]), num_classes=10, input_shape=(64,))
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      limit_train_batches=2, limit_val_batches=2)
    trainer.fit(task, datamodule=data)
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1"} <= set(trainer.callback_metrics)
