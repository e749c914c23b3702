"""Each use of another library's private attribute (lightning_hw/_compat.py) still works with the installed version."""

from __future__ import annotations

import lightning
import pytest
import wandb
from lightning.pytorch import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import WandbLogger

from lightning_hw import _compat


def test_wandb_logger_keeps_its_init_arguments_in_wandb_init(tmp_path):
    logger = WandbLogger(project="p", save_dir=str(tmp_path), mode="offline", anonymous=None)
    assert hasattr(logger, "_wandb_init"), f"lightning {lightning.__version__}: WandbLogger._wandb_init is gone"
    _compat.drop_wandb_anonymous(logger)
    assert "anonymous" not in logger._wandb_init


def test_started_wandb_run_is_none_until_started_and_then_the_run(tmp_path):
    logger = WandbLogger(project="p", save_dir=str(tmp_path), mode="offline")
    assert _compat.started_wandb_run(logger) is None, f"lightning {lightning.__version__}: WandbLogger._experiment changed"
    try:
        run = logger.experiment
        assert _compat.started_wandb_run(logger) is run, f"wandb {wandb.__version__}"
    finally:
        wandb.finish()


@pytest.mark.parametrize("steps", [0, 3])
def test_batches_that_stepped_counts_optimizer_steps(tmp_path, steps):
    trainer = Trainer(
        max_steps=steps or 1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    if steps:
        trainer.fit(BoringModel())
    assert _compat.batches_that_stepped(trainer) == steps, f"lightning {lightning.__version__}"
