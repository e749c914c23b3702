"""What every task shares: metric naming, weight penalties, the default optimizer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import Metric, MetricCollection

STAGES = ("train", "val", "test")


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
        self.total += value.detach().to(self.total.dtype) * weight
        self.weight += weight

    def compute(self) -> torch.Tensor:
        return self.total / self.weight


def _modules_with_penalty(module: nn.Module, seen: set[int]) -> Iterator[nn.Module]:
    """Submodules of ``module`` (pre-order, each once) whose class defines ``regularization_loss``.

    This runs every training step. ``module.modules()`` costs ~4x more here: it hashes
    every torchmetrics object (their ``__hash__`` reads all states) and a missing
    attribute on an ``nn.Module`` raises a formatted AttributeError. Metrics hold no
    weights, so their subtrees are skipped.
    """
    for child in module._modules.values():  # noqa: SLF001 - named_children() hashes each child
        if child is None or id(child) in seen or isinstance(child, (Metric, MetricCollection)):
            continue
        seen.add(id(child))
        if callable(getattr(type(child), "regularization_loss", None)):
            yield child
        yield from _modules_with_penalty(child, seen)


class Task(LightningModule):
    """Base class of lightning-hw tasks (and of plugin tasks).

    A task logs ``train/loss``, ``val/loss`` and ``test/loss`` plus its metrics under the
    same prefixes, once per epoch; reports and checkpoint monitors rely on these names.
    :attr:`monitor` names the validation metric that picks the best checkpoint.
    :attr:`linked_from_data` lists the init arguments that come from the datamodule
    (the CLI links ``data.<name>`` to ``model.init_args.<name>`` when the data has it),
    so sizes such as ``num_classes`` are never typed twice.

    Args:
        lr: learning rate. Without an ``optimizer:`` section in the config the task
            trains with Adam at this rate (1e-3 if unset); with one, a value given here
            replaces that optimizer's ``lr``.
    """

    #: validation metric that selects the best checkpoint, and whether higher is better
    monitor: ClassVar[str] = "val/loss"
    monitor_mode: ClassVar[str] = "min"
    #: init arguments the CLI fills from the datamodule attribute of the same name
    linked_from_data: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lr: float | None = None) -> None:
        super().__init__()
        self.lr = lr
        # Epoch means are accumulated here and logged once per epoch (see log_epoch): a
        # `self.log` per step costs more than a whole step of a small MLP. (Keys are not
        # the bare stage names: `train` is an nn.Module method.)
        self.epoch_loss = nn.ModuleDict({f"{stage}_loss": BatchWeightedMean() for stage in STAGES})

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning sets `_current_fx_name` before and after every hook it calls, about 40
        # times per training step; nn.Module.__setattr__'s parameter/buffer/module checks
        # make that ~10% of a small MLP's step. It is a plain string, so skip them.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def regularization_loss(self) -> torch.Tensor | None:
        """Sum of the weight penalties declared by submodules (``regularization_loss()``), if any."""
        terms = [m.regularization_loss() for m in _modules_with_penalty(self, seen={id(self)})]
        return sum(terms[1:], terms[0]) if terms else None

    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Add a batch to ``<stage>/loss``, logged as the epoch mean (weighted by batch size) by :meth:`log_epoch`."""
        self.epoch_loss[f"{stage}_loss"].update(loss, batch_size)

    def log_epoch(self, stage: str) -> None:
        """Log what ``stage`` accumulated this epoch, then reset it; runs in the ``on_*_epoch_end`` hooks.

        Subclasses log their own epoch metrics here (call ``super().log_epoch(stage)``);
        a subclass that overrides an ``on_*_epoch_end`` hook must call ``super()`` too.
        Values are already merged across processes (torchmetrics syncs on compute), so
        ``sync_dist`` only averages equal numbers; it keeps Lightning from warning.

        Args:
            stage: ``train``, ``val`` or ``test``.
        """
        mean = self.epoch_loss[f"{stage}_loss"]
        if mean.update_called:
            self.log(f"{stage}/loss", mean.compute(), prog_bar=stage != "train", sync_dist=True)
        mean.reset()

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch("test")

    def prediction_columns(self, outputs: dict[str, torch.Tensor]) -> dict[str, list]:
        """CSV columns for one batch of ``predict_step`` outputs (``python -m lightning_hw predict``).

        The default names each output ``name`` (one value per sample) or ``name_i`` (several);
        tasks override it to write class names, coordinates in pixels, etc.
        """
        from lightning_hw.predict import generic_columns

        return generic_columns(outputs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam, used only when the config has no ``optimizer:`` section."""
        return torch.optim.Adam(self.parameters(), lr=self.lr if self.lr is not None else 1e-3)
