"""PyTorch internals lightning-hw relies on (checked by tests/test_compat.py)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def child_modules(module: nn.Module) -> Iterable[nn.Module | None]:
    """The direct children of ``module`` (``None`` for a slot set to ``None``).

    ``named_children()`` puts every child into a set to skip duplicates, which hashes it,
    and a torchmetrics ``Metric`` hashes all its states: walking a task's tree that way on
    every training step cost ~4x more (see ``Task.regularization_loss``).
    """
    return module._modules.values()  # noqa: SLF001
