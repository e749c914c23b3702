"""Per-step accumulators for the metrics a task logs once per epoch.

A ``self.log`` per step, and a torchmetrics classification update per step, each cost
about as much as a whole training step of a small MLP on a CPU (Lightning walks every
logged object on every call; a stat-score update runs half a dozen kernels plus argument
checks). Tasks therefore only *accumulate* per step, with the cheap metrics below, and
compute and log once per epoch (:meth:`lightning_hw.tasks.base.Task.log_epoch`).

Both are torchmetrics ``Metric`` objects on purpose: their states follow the module to
its device, are merged across DDP processes by torchmetrics, and are saved mid-epoch by
:class:`~lightning_hw.callbacks.resume.ResumeState` like any other metric, so a resumed
run's epoch means are exact.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat


class BatchWeightedMean(Metric):
    """Mean of per-batch values weighted by batch size: the epoch mean of a per-sample loss.

    Written here because torchmetrics' ``MeanMetric`` checks every update for NaN (a
    host-device sync per step on a GPU) and, with ``nan_strategy="disable"``, drops the
    weights (torchmetrics 1.9). States are sums, so processes are merged exactly under DDP.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: int) -> None:
        """Add one batch's mean ``value`` over ``weight`` samples."""
        # In place: `self.total += ...` would go through nn.Module.__setattr__ (slow) every step.
        self.total.add_(value.detach().to(self.total.dtype), alpha=weight)
        self.weight.add_(weight)

    def compute(self) -> torch.Tensor:
        return self.total / self.weight


class EpochOutputs(Metric):
    """The epoch's (prediction, target) pairs, kept to update a task's metrics once at its end.

    ``update`` appends two detached tensors (no checks, no kernels); ``compute`` returns
    them concatenated along the batch dimension, gathered from every process under DDP.
    The memory is one prediction and one target per sample of the epoch.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Keep one batch's predictions and targets."""
        self.preds.append(preds.detach())
        self.target.append(target.detach())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.preds), dim_zero_cat(self.target)

    def samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`compute`, with the batch dimension kept when the epoch held a single sample.

        torchmetrics squeezes every one-element result of ``compute`` to a 0-d tensor, so the
        class index of a one-sample split (a validation set of one photo) would reach the
        metrics without its batch dimension and crash them. Only a one-element tensor is
        squeezed, so a 0-d result is always that one sample.
        """
        return tuple(t.reshape(1) if t.ndim == 0 else t for t in self.compute())
