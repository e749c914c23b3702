"""What every task shares: epoch metrics, weight penalties, the default optimizer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import ClassVar

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import Metric, MetricCollection

from lightning_hw._compat.lightning import HOOK_NAME_ATTRIBUTE
from lightning_hw._compat.torch import child_modules
from lightning_hw.errors import ConfigError, MissingMethodError
from lightning_hw.tasks.epoch_metrics import BatchWeightedMean, EpochOutputs

STAGES = ("train", "val", "test")


def _modules_with_penalty(module: nn.Module, seen: set[int]) -> Iterator[nn.Module]:
    """Submodules of ``module`` (pre-order, each once) whose class defines ``regularization_loss``.

    This runs every training step. ``module.modules()`` costs ~4x more here: it hashes
    every torchmetrics object (their ``__hash__`` reads all states) and a missing
    attribute on an ``nn.Module`` raises a formatted AttributeError. Metrics hold no
    weights, so their subtrees are skipped.
    """
    for child in child_modules(module):
        if child is None or id(child) in seen or isinstance(child, (Metric, MetricCollection)):
            continue
        seen.add(id(child))
        if callable(getattr(type(child), "regularization_loss", None)):
            yield child
        yield from _modules_with_penalty(child, seen)


def _not_a_loss(task_cls: type, returned: object) -> ConfigError:
    """The one-line refusal of a ``shared_step`` whose training result Lightning cannot optimise.

    Lightning takes a tensor or a dict with ``loss`` from ``training_step``; it raised a traceback
    about a ``training_step`` the author never wrote for ``loss.item()``, and for ``None`` (a
    forgotten ``return``) skipped every step with one warning, recording untrained weights as a
    finished run.
    """
    what = "None" if returned is None else f"a {type(returned).__name__}"
    return ConfigError(
        f"task {task_cls.__name__} shared_step(batch, 'train') returned {what}, not the batch's loss",
        "return the loss tensor backward() runs on (not loss.item(), which has no gradient), e.g. "
        "`return self.add_penalty(stage, loss, batch_size)` (see \"4. A task\" in plugins/README.md); to skip a "
        "batch on purpose, override training_step and return None there",
    )


class Task(LightningModule):
    """Base class of lightning-hw tasks (and of plugin tasks).

    A task logs ``train/loss``, ``val/loss`` and ``test/loss`` plus its metrics under the
    same prefixes, once per epoch; reports and checkpoint monitors rely on these names.
    :attr:`monitor` names the validation metric that picks the best checkpoint.
    :attr:`linked_from_data` lists the init arguments that come from the datamodule
    (the CLI links ``data.<name>`` to ``model.init_args.<name>`` when the data has it),
    so sizes such as ``num_classes`` are never typed twice.

    Epoch metrics, per step: call :meth:`log_loss` with the batch's loss, and either
    :meth:`collect` the batch's predictions and targets (the task's ``<stage>_metrics``
    collection is updated with all of them at the end of the epoch: the fast way) or
    update your own metrics and override :meth:`compute_epoch_metrics`. Nothing is
    logged per step; :meth:`log_epoch` logs and resets everything once per epoch, early
    in the epoch-end hooks (see :class:`~lightning_hw.callbacks.epoch_metrics.LogEpochMetrics`),
    so every callback sees the epoch's values as if they had been logged per step.

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
        self._penalty_modules: list[nn.Module] | None = None
        self.lr = lr
        # Keys are not the bare stage names: `train` is an nn.Module method.
        self.epoch_loss = nn.ModuleDict({f"{stage}_loss": BatchWeightedMean() for stage in STAGES})
        self.epoch_outputs = nn.ModuleDict({f"{stage}_outputs": EpochOutputs() for stage in STAGES})
        self.epoch_penalty = BatchWeightedMean()  # train/penalty: see add_penalty

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning sets its hook-name attribute before and after every hook it calls, about 40
        # times per training step; nn.Module.__setattr__'s parameter/buffer/module checks
        # make that ~10% of a small MLP's step. It is a plain string, so skip them.
        if name == HOOK_NAME_ATTRIBUTE:
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)
        if isinstance(value, nn.Module):
            object.__setattr__(self, "_penalty_modules", None)  # see regularization_loss

    def regularization_loss(self) -> torch.Tensor | None:
        """Sum of the weight penalties declared by submodules (``regularization_loss()``), if any.

        A submodule returns ``None`` when it has no penalty. Which submodules declare one is
        looked up again only at the start of a training epoch and when a module is assigned
        to the task itself (walking the module tree every step cost ~40 us, 10% of a small
        MLP's step); a module added deeper inside in the middle of an epoch counts from the next.
        """
        if self._penalty_modules is None:
            self._penalty_modules = list(_modules_with_penalty(self, seen={id(self)}))
        terms = [t for t in (m.regularization_loss() for m in self._penalty_modules) if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def add_penalty(self, stage: str, loss: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The training objective: ``loss`` plus, in training, the weight penalties (:meth:`regularization_loss`).

        Log ``loss`` itself with :meth:`log_loss` and return this: every ``<stage>/loss`` is
        then the data loss, comparable between training and validation and between runs with
        and without penalties (Keras adds the penalty to both its training and its validation
        loss; adding it to the training loss alone had put E4's regularised training curve above
        its validation curve by the penalty). The penalty's epoch mean is logged as ``train/penalty``.

        Args:
            stage: ``train``, ``val`` or ``test`` (only ``train`` is penalised).
            loss: the batch's data loss.
            batch_size: samples in the batch (the epoch mean is weighted by it).
        """
        if stage != "train":
            return loss
        penalty = self.regularization_loss()
        if penalty is None:
            return loss
        self.epoch_penalty.update(penalty, batch_size)
        return loss + penalty

    # -- steps ------------------------------------------------------------------------------------

    def shared_step(self, batch, stage: str) -> torch.Tensor:
        """Loss of one batch of ``stage`` (``train``, ``val``, ``test``); accumulate its epoch metrics here.

        The training, validation and test steps all call it; tasks implement this one method.
        """
        raise MissingMethodError(
            "task",
            type(self),
            "does not implement shared_step(batch, stage)",
            "implement it: the loss of one batch of `stage` (train, val or test), calling self.log_loss and "
            "self.collect (see \"4. A task\" in plugins/README.md), or override training_step, "
            "validation_step and test_step",
        )

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.shared_step(batch, "train")
        # Optimising by hand (manual optimization), the step has run backward() itself: Lightning
        # takes no return there as it takes a loss, so only an automatic step needs one.
        if not isinstance(loss, (torch.Tensor, Mapping)) and (self.automatic_optimization or loss is not None):
            raise _not_a_loss(type(self), loss)
        return loss

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "test")

    # -- epoch metrics ---------------------------------------------------------------------------

    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Add a batch to ``<stage>/loss``, logged by :meth:`log_epoch` as the epoch mean weighted by batch size."""
        self.epoch_loss[f"{stage}_loss"].update(loss, batch_size)

    def collect(self, stage: str, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Keep a batch's predictions and targets for the ``<stage>_metrics`` update at the epoch's end."""
        self.epoch_outputs[f"{stage}_outputs"].update(preds, target)

    def stage_metrics(self, stage: str) -> MetricCollection | None:
        """The metric collection of ``stage``: by convention the attribute ``<stage>_metrics``."""
        metrics = getattr(self, f"{stage}_metrics", None)
        return metrics if isinstance(metrics, MetricCollection) else None

    def validation_metric_names(self) -> set[str] | None:
        """Every name this task logs in validation (``val/loss``, ``val/acc``...), or ``None`` when not known.

        :class:`~lightning_hw.callbacks.guards.WatchedMetricsCheck` refuses a watched metric
        outside them before the sanity check and the first epoch; without them (``None``), only
        once validation has logged its names. They are trusted from the class that defines this
        method only (a subclass may log more), so an override names everything the task logs.
        """
        return None

    def compute_epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """The epoch's metric values of ``stage``, by logged name (``val/acc``...), loss excluded.

        The default gives everything :meth:`collect` kept (if anything) to
        :meth:`update_stage_metrics`, then computes :meth:`stage_metrics`. Tasks with other
        metrics override this (and :meth:`reset_epoch_metrics`).
        """
        metrics = self.stage_metrics(stage)
        if metrics is None:
            return {}
        outputs = self.epoch_outputs[f"{stage}_outputs"]
        if outputs.update_called:
            self.update_stage_metrics(stage, *outputs.samples())
        updated = any(metric.update_called for metric in metrics.values(copy_state=False))
        return dict(metrics.compute()) if updated else {}

    def update_stage_metrics(self, stage: str, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Give the epoch's collected predictions and targets to :meth:`stage_metrics` (one update).

        Under DDP they are those of every process already: a metric of counts updated here
        needs ``sync_on_compute=False``, or each sample counts once per process.
        """
        self.stage_metrics(stage).update(preds, target)

    def reset_epoch_metrics(self, stage: str) -> None:
        """Start ``stage``'s next epoch from zero."""
        self.epoch_loss[f"{stage}_loss"].reset()
        self.epoch_outputs[f"{stage}_outputs"].reset()
        if stage == "train":
            self.epoch_penalty.reset()
        metrics = self.stage_metrics(stage)
        if metrics is not None:
            metrics.reset()

    def log_epoch(self, stage: str) -> None:
        """Log what ``stage`` accumulated this epoch, then reset it (a no-op if nothing was).

        Values are already merged across processes (torchmetrics syncs on compute), so
        ``sync_dist`` only averages equal numbers; it keeps Lightning from warning.

        Args:
            stage: ``train``, ``val`` or ``test``.
        """
        loss = self.epoch_loss[f"{stage}_loss"]
        values = {f"{stage}/loss": loss.compute()} if loss.update_called else {}
        if stage == "train" and self.epoch_penalty.update_called:
            values["train/penalty"] = self.epoch_penalty.compute()
        values.update(self.compute_epoch_metrics(stage))
        for name, value in values.items():
            self.log(name, value, prog_bar=stage != "train", sync_dist=True)
        self.reset_epoch_metrics(stage)

    def on_train_epoch_start(self) -> None:
        self._penalty_modules = None  # see regularization_loss

    # The callback logs first (so other callbacks see the values); these cover a Trainer without it.
    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch("test")

    # -- the rest ---------------------------------------------------------------------------------

    def prediction_columns(self, outputs: dict[str, torch.Tensor]) -> dict[str, list]:
        """CSV columns for one batch of ``predict_step`` outputs (``python -m lightning_hw predict``).

        The default names each output ``name`` (one value per sample) or ``name_i`` (several);
        tasks override it to write class names, coordinates in pixels, etc.
        """
        from lightning_hw.deploy.predict import generic_columns

        return generic_columns(outputs)

    def target_columns(self, target: torch.Tensor) -> dict[str, list]:
        """CSV columns for one batch of true values that are more than one label per sample.

        ``predict`` writes a batch's targets beside the predictions when the data has them:
        one label per sample as ``target`` (and ``target_class``) itself, anything larger
        through this hook. The default names them ``target_i``; tasks override it to write
        them in the scheme of their :meth:`prediction_columns` (so the CSV alone gives back
        the test metric).
        """
        from lightning_hw.deploy.predict import generic_columns

        return generic_columns({"target": target})

    def describe_outputs(self) -> str:
        """What ``forward`` returns, for people reading an exported model (ONNX metadata)."""
        return "the task's forward outputs"

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam, used only when the config has no ``optimizer:`` section.

        Raises:
            ConfigError: an ``lr`` Adam refuses (torch says so with a plain ``ValueError``, a traceback).
        """
        try:
            return torch.optim.Adam(self.parameters(), lr=self.lr if self.lr is not None else 1e-3)
        except ValueError as err:
            raise ConfigError(f"optimizer Adam refuses its settings: {err}", advice="change --model.init_args.lr") from None
