"""Uses of other libraries' private attributes, kept in one place (each has a test in tests/test_compat.py).

When a library changes one of these, the test that names it fails with the version
that broke it, instead of a run failing somewhere in the middle.
"""

from __future__ import annotations

from typing import Any


def drop_wandb_anonymous(logger: Any) -> None:
    """Lightning's ``WandbLogger`` always passes ``anonymous`` to ``wandb.init``, which wandb >= 0.19 warns about."""
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)


def started_wandb_run(logger: Any) -> Any | None:
    """The W&B run a ``WandbLogger`` has started, or ``None`` (reading ``logger.experiment`` would start one)."""
    experiment = getattr(logger, "_experiment", None)
    return experiment if experiment is not None and hasattr(experiment, "finish") else None


def batches_that_stepped(trainer: Any) -> int:
    """The step Lightning writes into logged rows (optimizer steps so far; restored on resume)."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)
