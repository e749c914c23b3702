"""Validation data for datasets that come with a fixed test set (MNIST, CIFAR-10, Reuters)."""

from __future__ import annotations

import torch

from lightning_hw.data.base import Split
from lightning_hw.errors import ConfigError


def hold_out(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split a seeded random ``fraction`` of a training set off as the validation set.

    The official test set stays untouched for the final number; the reports that
    validated on their training data (E1, FER2013) overstated their accuracy.

    Args:
        train: the official training tensors ``(x, y, ...)``.
        fraction: share of it used for validation, in (0, 1).
        seed: seed of the permutation (the same split in every run).

    Returns:
        ``(train, val)``.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {fraction}")
    n = train[0].shape[0]
    n_val = max(1, round(n * fraction))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return tuple(t[train_idx] for t in train), tuple(t[val_idx] for t in train)
