"""torchmetrics internals lightning-hw relies on (checked by tests/test_compat.py)."""

from __future__ import annotations

from torchmetrics import Metric


def restore_update_count(metric: Metric, update_count: int) -> None:
    """Set how many times ``metric`` was updated, after its states were put back from a checkpoint.

    torchmetrics has no setter for ``update_count``, and ``compute()`` warns (and returns
    defaults) for a metric it believes was never updated; the cached result is cleared so
    the restored states are computed.
    """
    metric._update_count = update_count  # noqa: SLF001
    metric._computed = None  # noqa: SLF001
