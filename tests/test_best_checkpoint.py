"""BestCheckpoint: the best checkpoint kept in memory between writes, never lost to a Python exception."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_hw.callbacks.best_checkpoint import BestCheckpoint
from lightning_hw.checkpoints import SafeCheckpointIO

SCORES = [3.0, 1.0, 2.0, 0.5, 4.0]  # lower is better: epochs 0, 1, 3 improve; 3 is the best


class Scored(LightningModule):
    """Logs SCORES[epoch] as val/score; the weights change every step."""

    def __init__(self, fail_at_epoch: int | None = None, per_validation: list[float] | None = None) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.fail_at_epoch = fail_at_epoch
        self.per_validation = per_validation  # scores of successive validations instead of SCORES[epoch]
        self.validations = 0

    def training_step(self, batch, batch_idx):
        if self.current_epoch == self.fail_at_epoch:
            raise RuntimeError("boom")
        return ((self.w - batch[0]) ** 2).sum()

    def validation_step(self, batch, batch_idx):
        if self.per_validation is None:
            self.log("val/score", SCORES[self.current_epoch])
        else:
            self.log("val/score", self.per_validation[self.validations])
            self.validations += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.arange(8.0).reshape(4, 2)))

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(1, 2)))


class Files(Callback):
    """Records the checkpoint files on disk at the start of every epoch."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.seen = directory, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.seen.append(sorted(p.name for p in self.directory.glob("*.ckpt")))


def fit(
    directory: Path, checkpoint: ModelCheckpoint, *callbacks: Callback, epochs: int = 5, trainer_args=None, **model_args
) -> Trainer:
    torch.manual_seed(0)
    trainer = Trainer(
        max_epochs=epochs, callbacks=[checkpoint, *callbacks], logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, plugins=[SafeCheckpointIO()], default_root_dir=directory,
        **(trainer_args or {}),
    )
    trainer.fit(Scored(**model_args))
    return trainer


def best(directory: Path, **kwargs) -> ModelCheckpoint:
    cls = BestCheckpoint if "min_interval" in kwargs else ModelCheckpoint
    return cls(dirpath=directory, filename="best-epoch{epoch:03d}", auto_insert_metric_name=False,
               monitor="val/score", mode="min", **kwargs)


def test_the_best_is_written_when_due_and_equals_modelcheckpoints(tmp_path):
    reference = fit(tmp_path / "ref", best(tmp_path / "ref"))
    files = Files(tmp_path / "deferred")
    deferred = fit(tmp_path / "deferred", best(tmp_path / "deferred", min_interval=3600), files)

    # Epoch 0 is written (first save); the improvements of epochs 1 and 3 wait in memory,
    # and the file of epoch 0 stays until a newer best is on disk.
    assert files.seen[1:] == [["best-epoch000.ckpt"]] * 4
    assert sorted(p.name for p in (tmp_path / "deferred").glob("*.ckpt")) == ["best-epoch003.ckpt"]
    assert Path(deferred.checkpoint_callback.best_model_path).name == "best-epoch003.ckpt"
    got = torch.load(deferred.checkpoint_callback.best_model_path, weights_only=True)
    want = torch.load(reference.checkpoint_callback.best_model_path, weights_only=True)
    assert got["epoch"] == want["epoch"] == 3 and got["global_step"] == want["global_step"]
    assert torch.equal(got["state_dict"]["w"], want["state_dict"]["w"])
    momentum = lambda c: c["optimizer_states"][0]["state"][0]["momentum_buffer"]  # noqa: E731
    assert torch.equal(momentum(got), momentum(want))
    # The checkpoint holds the callback's state as it was then, under ModelCheckpoint's key.
    (state,) = [v for k, v in got["callbacks"].items() if k.startswith("ModelCheckpoint{")]
    assert Path(state["best_model_path"]).name == "best-epoch003.ckpt"


def test_interval_zero_writes_every_improvement_at_once(tmp_path):
    files = Files(tmp_path)
    fit(tmp_path, best(tmp_path, min_interval=0), files)
    assert files.seen[1:] == [["best-epoch000.ckpt"], ["best-epoch001.ckpt"], ["best-epoch001.ckpt"],
                              ["best-epoch003.ckpt"]]


def test_an_exception_writes_the_pending_best_before_the_run_dies(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path, best(tmp_path, min_interval=3600), fail_at_epoch=2)
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["best-epoch001.ckpt"]
    assert torch.load(tmp_path / "best-epoch001.ckpt", weights_only=True)["epoch"] == 1


def test_a_resume_forgets_best_files_a_killed_run_never_wrote(tmp_path):
    checkpoint = best(tmp_path, min_interval=0, save_last=True)
    fit(tmp_path, checkpoint, epochs=2)
    (tmp_path / "best-epoch001.ckpt").unlink()  # as if killed before the write
    resumed = best(tmp_path, min_interval=3600)
    trainer = Trainer(
        max_epochs=3, callbacks=[resumed], logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, plugins=[SafeCheckpointIO()], default_root_dir=tmp_path,
    )
    trainer.fit(Scored(), ckpt_path=tmp_path / "last.ckpt")
    # Epoch 2 (score 2.0) is worse than the lost epoch 1 (1.0) but is now the best on disk.
    assert Path(resumed.best_model_path).name == "best-epoch002.ckpt"
    assert Path(resumed.best_model_path).is_file()
    assert resumed.best_model_score == pytest.approx(2.0)


def test_rank_zero_decides_when_a_write_is_due_for_every_process():
    """Each save ends in a barrier: processes whose clocks straddle the interval must agree."""
    from types import SimpleNamespace

    from lightning_hw.callbacks.last_checkpoint import write_due

    asked = []

    def broadcast(decision, src=0):
        asked.append(decision)
        return False  # rank 0's clock: not yet

    trainer = SimpleNamespace(
        max_epochs=10, current_epoch=0, max_steps=-1, global_step=5, should_stop=False,
        strategy=SimpleNamespace(broadcast=broadcast),
    )
    assert write_due(trainer, last_write=0.0, min_interval=1.0) is False  # this process alone would write
    assert asked == [True]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.ckpt"))


@pytest.mark.parametrize("top_k", [1, 2, -1])
def test_twice_per_epoch_the_files_and_top_k_match_modelcheckpoints(tmp_path, top_k):
    """Validating twice per epoch saves names twice (`-v1`): pending names count as taken, and
    an older file under a pending name is still removed when it drops out."""
    scores = [5.0, 4.0, 3.0, 2.0, 9.0, 9.0, 1.5, 8.0]
    args = {"trainer_args": {"val_check_interval": 0.5}, "epochs": 4, "per_validation": scores}
    reference = fit(tmp_path / "ref", best(tmp_path / "ref", save_top_k=top_k), **args).checkpoint_callback
    deferred = fit(tmp_path / "new", best(tmp_path / "new", save_top_k=top_k, min_interval=3600), **args)
    deferred = deferred.checkpoint_callback
    assert names(tmp_path / "new") == names(tmp_path / "ref")
    as_names = lambda models: {Path(p).name: float(v) for p, v in models.items()}  # noqa: E731
    assert as_names(deferred.best_k_models) == as_names(reference.best_k_models)
    for name in names(tmp_path / "ref"):
        got = torch.load(tmp_path / "new" / name, weights_only=True)
        want = torch.load(tmp_path / "ref" / name, weights_only=True)
        assert got["global_step"] == want["global_step"] and torch.equal(got["state_dict"]["w"], want["state_dict"]["w"])


def test_pending_bests_are_written_once_the_interval_has_passed(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("lightning_hw.callbacks.last_checkpoint.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("lightning_hw.callbacks.best_checkpoint.time.monotonic", lambda: clock[0])

    class Tick(Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            clock[0] += 40.0  # each epoch "takes" 40 s; the interval is 60 s

    files = Files(tmp_path)
    fit(tmp_path, best(tmp_path, min_interval=60), Tick(), files, epochs=5)
    # epoch 0 written (first); epoch 1 pending (40 s); at the end of epoch 2 (80 s) it is due:
    # epoch 1 is written and epoch 0 removed; epoch 3 pending; epoch 4 final.
    assert files.seen == [[], ["best-epoch000.ckpt"], ["best-epoch000.ckpt"], ["best-epoch001.ckpt"],
                          ["best-epoch001.ckpt"]]
    assert names(tmp_path) == ["best-epoch003.ckpt"]


def test_a_failed_write_after_an_exception_does_not_hide_the_exception(tmp_path, monkeypatch):
    def full_disk(self, checkpoint, path, storage_options=None):
        if "epoch001" in str(path):
            raise OSError(28, "No space left on device")
        return original(self, checkpoint, path, storage_options)

    original = SafeCheckpointIO.save_checkpoint
    monkeypatch.setattr(SafeCheckpointIO, "save_checkpoint", full_disk)
    with pytest.warns(UserWarning, match="could not write the best checkpoint"), pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path, best(tmp_path, min_interval=3600), fail_at_epoch=2)
    assert names(tmp_path) == ["best-epoch000.ckpt"]  # the older best is kept


def test_the_former_setting_name_still_sets_the_interval(tiny_args):
    from lightning_hw.callbacks.last_checkpoint import LastCheckpoint
    from lightning_hw.cli import HWCLI

    cli = HWCLI(args=tiny_args("fit", "--trainer.max_epochs", "1", "--run.test_after_fit", "false",
                               "--run.last_checkpoint_interval", "7"))
    intervals = {type(c).__name__: c.min_interval for c in cli.trainer.callbacks if hasattr(c, "min_interval")}
    assert intervals == {"BestCheckpoint": 7.0, "LastCheckpoint": 7.0}
    assert any(isinstance(c, LastCheckpoint) for c in cli.trainer.callbacks)
