"""DataLoader defaults for datasets read from disk (image folders)."""

from __future__ import annotations

import pytest
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
    assert settings == {"num_workers": suggested_max_num_workers(1), "pin_memory": False, "persistent_workers": True}
    # two training processes on this machine share its cores
    assert dataloader_settings(cpu_trainer(devices=2, strategy="ddp"))["num_workers"] == suggested_max_num_workers(2)


def test_explicit_values_win_and_persistence_needs_workers(cpu_trainer):
    trainer = cpu_trainer(devices=1)
    assert dataloader_settings(trainer, num_workers=0) == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    assert dataloader_settings(trainer, num_workers=3, pin_memory=True)["pin_memory"] is True
    # reloading loaders every epoch with persistent, pinned workers is unstable in PyTorch
    reloading = cpu_trainer(devices=1, reload_dataloaders_every_n_epochs=1)
    assert dataloader_settings(reloading, num_workers=2)["persistent_workers"] is False
