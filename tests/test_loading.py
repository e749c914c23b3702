"""DataLoader defaults for datasets read from disk (image folders)."""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch
from lightning.fabric.utilities.data import suggested_max_num_workers
from lightning.pytorch import Trainer

from lightning_hw.data.loading import dataloader_settings


@pytest.fixture
def cpu_trainer(workdir):
    def build(**kwargs) -> Trainer:
        return Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, **kwargs)

    return build


def test_defaults_follow_the_cpus_and_the_accelerator(cpu_trainer):
    settings = dataloader_settings(cpu_trainer(devices=1))
    assert settings.pop("worker_init_fn") is not None  # see the worker tests below
    assert settings == {"num_workers": suggested_max_num_workers(1), "pin_memory": False, "persistent_workers": True}
    # two training processes on this machine share its cores
    assert dataloader_settings(cpu_trainer(devices=2, strategy="ddp"))["num_workers"] == suggested_max_num_workers(2)


def test_explicit_values_win_and_persistence_needs_workers(cpu_trainer):
    trainer = cpu_trainer(devices=1)
    assert dataloader_settings(trainer, num_workers=0) == {
        "num_workers": 0, "pin_memory": False, "persistent_workers": False, "worker_init_fn": None,
    }
    assert dataloader_settings(trainer, num_workers=3, pin_memory=True)["pin_memory"] is True
    # reloading loaders every epoch with persistent, pinned workers is unstable in PyTorch
    reloading = cpu_trainer(devices=1, reload_dataloaders_every_n_epochs=1)
    assert dataloader_settings(reloading, num_workers=2)["persistent_workers"] is False


class _Draws(torch.utils.data.Dataset):
    """Each item: a number from the worker's torch random state, and what a worker_init_fn left in the environment."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[float, str]:
        return float(torch.rand(())), os.environ.get("LIGHTNING_HW_TEST_INIT", "")


def _user_init(worker_id: int) -> None:
    os.environ["LIGHTNING_HW_TEST_INIT"] = f"worker {worker_id}"


def _draws(**loader_kwargs) -> list[tuple[float, str]]:
    loader = torch.utils.data.DataLoader(_Draws(), batch_size=None, generator=torch.Generator().manual_seed(0), **loader_kwargs)
    return [(round(float(x), 6), text) for x, text in loader]


def test_workers_are_seeded_as_lightning_seeds_them_and_run_your_init(monkeypatch):
    """Our worker_init_fn takes the place of the one Lightning adds after seed_everything(workers=True)
    (it adds one only where a loader has none): each rank's workers must still draw their own numbers."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.fabric.utilities.seed import pl_worker_init_function, seed_everything

    for name in ("PL_SEED_WORKERS", "PL_GLOBAL_SEED"):  # so that seed_everything's are undone after the test
        monkeypatch.setenv(name, "")
    seed_everything(42, workers=True)
    ours, lightnings = {}, {}
    for rank in (0, 1):
        monkeypatch.setattr(rank_zero_only, "rank", rank)  # the rank a DDP process has (its workers inherit it)
        settings = dataloader_settings(num_workers=2, pin_memory=False, persistent_workers=False)
        ours[rank] = _draws(**settings)
        lightnings[rank] = _draws(num_workers=2, worker_init_fn=partial(pl_worker_init_function, rank=rank))
    assert ours == lightnings
    assert [x for x, _ in ours[0]] != [x for x, _ in ours[1]]

    chained = _draws(**dataloader_settings(num_workers=2, pin_memory=False, persistent_workers=False, worker_init_fn=_user_init))
    assert sorted({text for _, text in chained}) == ["worker 0", "worker 1"]
