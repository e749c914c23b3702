"""Checks that stop a run early with one clear line instead of a crash or silent garbage."""

from __future__ import annotations

import difflib
import math
import os

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from lightning_hw.errors import ConfigError, DataError, TrainingError
from lightning_hw.tasks.base import Task


def last_checkpoint(trainer: Trainer) -> str | None:
    """The newest checkpoint any ModelCheckpoint of this run has written, if one exists."""
    paths = []
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint):
            paths += [p for p in (callback.last_model_path, callback.best_model_path) if p and os.path.isfile(p)]
    return max(paths, key=os.path.getmtime, default=None)


def labels_outside(labels: torch.Tensor, num_classes: int) -> tuple[int, int] | None:
    """``(lowest, highest)`` label if any is not a class index ``0..num_classes-1``, else ``None``."""
    if labels.numel() == 0:
        return None
    low, high = (int(v) for v in torch.aminmax(labels))
    return (low, high) if low < 0 or high >= num_classes else None


class NonFiniteLossGuard(Callback):
    """Stop at the first NaN or Inf training loss, before it reaches the weights or a checkpoint.

    Lightning's ``EarlyStopping(check_finite=True)`` notices only at validation time, after
    the weights (and possibly ``last.ckpt``) are already NaN. This check runs before the
    backward pass of every step, so the last checkpoint on disk stays the last good one.
    It costs one device-to-host sync per step.
    """

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        value = float(loss.detach().float().reshape(-1)[0]) if loss.numel() else math.nan
        checkpoint = last_checkpoint(trainer)
        kept = (
            f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been saved yet"
        )
        raise TrainingError(
            f"the training loss became {value} at step {trainer.global_step + 1} (epoch {trainer.current_epoch}, "
            f"batch {trainer.fit_loop.epoch_loop.batch_idx}); training stopped before the update, {kept}; "
            + (_float16_eps_advice(trainer) or "lower the learning rate, or check the data for NaN/Inf values "
               "(--trainer.detect_anomaly true names the operation)")
        )


def _float16_eps_advice(trainer: Trainer) -> str | None:
    """What to do when the optimizer's ``eps`` is 0 in float16 (``16-true``), else ``None``.

    Under ``16-true`` the optimizer's state is float16 too: Adam's default ``eps`` of 1e-8 is
    below float16's smallest normal number, so an update divides by (almost) zero and the
    next loss is NaN, whatever the learning rate or the data (moons: NaN at step 2 with
    eps 1e-8, trained with 1e-4).
    """
    if str(trainer.precision) != "16-true":
        return None
    tiny = torch.finfo(torch.float16).tiny
    eps = [group["eps"] for optimizer in trainer.optimizers for group in optimizer.param_groups if 0 < group.get("eps", tiny) < tiny]
    if not eps:
        return None
    return (
        f"under --trainer.precision 16-true the optimizer's eps {eps[0]:g} is below float16's smallest normal "
        f"number ({tiny:.2g}), so its updates divide by about zero: train with --trainer.precision 16-mixed "
        "(bf16-mixed on a CPU), or give the optimizer an eps of 1e-4 (--optimizer.init_args.eps 1e-4; where the "
        "config has no optimizer: section, --optimizer torch.optim.Adam before it)"
    )


class LabelRangeCheck(Callback):
    """Before anything runs, check that every class label of in-memory data is in ``0..num_classes-1``.

    An out-of-range label otherwise surfaces as an index error deep inside the loss (or as a
    device-side assert on a GPU). Datamodules that keep their splits as tensors
    (``InMemoryDataModule.data``) are checked in full; tasks without ``num_classes`` and
    float targets (landmarks, regression) are left alone.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        num_classes = getattr(pl_module, "num_classes", None)
        datamodule = trainer.datamodule
        data = getattr(datamodule, "data", None)
        if not isinstance(num_classes, int) or not isinstance(data, dict):
            return
        for split, tensors in data.items():
            if not isinstance(tensors, (tuple, list)) or len(tensors) < 2:
                continue
            labels = tensors[1]
            if not isinstance(labels, torch.Tensor) or labels.numel() == 0:
                continue
            if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
                continue
            outside = labels_outside(labels, num_classes)
            if outside is not None:
                low, high = outside
                raise DataError(
                    f"the labels of the {split} split of {type(datamodule).__name__} run from {low} to {high}, "
                    f"but the task has num_classes={num_classes} (labels must be 0..{num_classes - 1}); "
                    "fix the dataset's labels or its class names, or set --model.init_args.num_classes"
                )


#: how the check names a search's objective (the study runner reads it in the trial's error line)
OBJECTIVE = "the study's objective"


class WatchedMetricsCheck(Callback):
    """Stop in one line when a validation metric the run watches is one its task never logs.

    The best checkpoint's metric (``run.monitor``, or a ``ModelCheckpoint``'s ``monitor``), a
    strict ``EarlyStopping``'s ``monitor`` and a search trial's objective are typed by hand.
    Misspelt (``val/accc``), Lightning's ``ModelCheckpoint`` and ``EarlyStopping`` raised a
    traceback at the end of the first epoch, and a search trial
    trained to its end only to be failed for want of its objective, trial after trial.

    A task that names everything it logs in validation (its ``validation_metric_names``, as
    the built-in tasks do) has a metric outside them refused when fitting starts, before the
    sanity check and the first epoch. Otherwise the sanity check's validation logs the task's
    metrics before the first training step, so a clear mistake is refused then, when the run
    has written nothing yet: a metric close to one the task logs (the typo), or a task logging
    its validation metrics under other names (``val_acc``: the line names them). A metric merely
    absent there may be one the task skips while sanity checking (an expensive metric): it is
    checked at the end of the first real validation, as is every metric of a run without a
    sanity check. Only ``val/`` metrics are checked: training metrics are not logged before training.
    """

    def __init__(self) -> None:
        self.checked = False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _refuse_an_objective_never_validated(trainer)
        declared = declared_validation_metrics(trainer, pl_module)
        if declared is not None:
            self.checked = self._refuse_unlogged(trainer, declared, logged=sorted(declared), elsewhere=[], certain=True)

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(trainer, validated=False)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, validated=True)

    def _check(self, trainer: Trainer, validated: bool) -> None:
        """Refuse a watched metric the task did not log; ``validated``: after a real validation, not the sanity check."""
        if self.checked:
            return
        logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
        elsewhere = sorted(k for k in trainer.callback_metrics if k.startswith("val") and not k.startswith("val/"))
        if self._refuse_unlogged(trainer, set(trainer.callback_metrics), logged, elsewhere, certain=validated):
            self.checked = validated or bool(logged or elsewhere)  # all there; a sanity check that logged nothing proves nothing

    @staticmethod
    def _refuse_unlogged(trainer: Trainer, present: set[str], logged: list[str], elsewhere: list[str], certain: bool) -> bool:
        """Raise for a watched ``val/`` metric not in ``present``; ``False`` when one may yet be logged.

        Args:
            trainer: the trainer, for its watched metrics.
            present: the names the task logs (or logged).
            logged: its ``val/`` names, for the message.
            elsewhere: its validation names not under ``val/``, for the message.
            certain: ``present`` is all the task will ever log (not a sanity check's names).
        """
        for metric, what, where in watched_metrics(trainer):
            if not metric.startswith("val/") or metric in present:
                continue
            close = _closest_logged(metric, logged)
            if not (certain or close or (elsewhere and not logged)):
                return False  # perhaps skipped while sanity checking: the first real validation tells
            if logged:
                advice = f"give one of {', '.join(logged)} to {where}"
            elif elsewhere:
                advice = (
                    f"it logs {', '.join(elsewhere)} in validation, none under val/: log them as val/<name> "
                    f"(the names checkpoints, reports and plots use), or change {where}"
                )
            else:
                advice = f"it logs no val/ metric; change {where}"
            if metric == "val/loss" and isinstance(trainer.lightning_module, Task):
                # The Task's default monitor, missing because shared_step skipped log_loss: the monitor is right.
                advice = (
                    "a Task logs <stage>/loss when its shared_step calls self.log_loss(stage, loss, batch_size) "
                    f"(see \"4. A task\" in plugins/README.md): call it, or {advice}"
                )
            raise ConfigError(
                f"{what} {metric} is not a metric this run logs{f' (did you mean {close[0]}?)' if close else ''}", advice
            )
        return True


def _refuse_an_objective_never_validated(trainer: Trainer) -> None:
    """Refuse a search trial whose fit runs no validation: it would train to its end and be failed.

    A trial's objective is read from its validation epochs; with none (``limit_val_batches: 0``,
    or ``check_val_every_n_epoch`` beyond ``max_epochs``) each trial trained in full, was failed
    for want of it, and the next trial did the same, the search's whole budget used up.
    """
    from lightning_hw.callbacks.pruning import OptunaPruning

    objective = next((c.metric for c in trainer.callbacks if isinstance(c, OptunaPruning) and c.required), None)
    why = validation_never_runs(trainer)
    if objective is not None and why is not None:
        raise ConfigError(
            f"{OBJECTIVE} {objective} is read from the trials' validation, but this fit runs none ({why})",
            "let the trials validate: drop that setting from the study's config, args: or options",
        )


def validation_never_runs(trainer: Trainer) -> str | None:
    """The trainer setting that keeps a fit from running any validation epoch, or ``None``."""
    if trainer.limit_val_batches == 0:
        return f"trainer.limit_val_batches is {trainer.limit_val_batches}"
    every, epochs = trainer.check_val_every_n_epoch, trainer.max_epochs
    # Lightning validates after epoch e (0-based) when (e + 1) % every == 0: never, when every > max_epochs.
    if every is not None and epochs is not None and 0 < epochs < every:
        return f"trainer.check_val_every_n_epoch is {every}, trainer.max_epochs {epochs}"
    return None


def _closest_logged(metric: str, logged: list[str]) -> list[str]:
    """The logged ``val/`` name ``metric`` is a typo of, as a one-item list (empty when none is close).

    Compared without the ``val/`` every name shares, which alone made ``val/top5`` "close" to
    ``val/loss``, and without case: ``val/F1`` for ``val/f1`` (two characters, one differing) was
    no match, so it was not refused before training and the run stayed behind, marked failed.
    """
    by_lower = {name[4:].lower(): name for name in logged}
    close = difflib.get_close_matches(metric[4:].lower(), list(by_lower), n=1, cutoff=0.6)
    return [by_lower[close[0]]] if close else []


#: packages whose callbacks log no validation metric of their own (Lightning's log to the loggers only)
_QUIET_CALLBACK_PACKAGES = ("lightning_hw", "lightning", "pytorch_lightning")


def declared_validation_metrics(trainer: Trainer, task: LightningModule) -> set[str] | None:
    """The names a run will log in validation when the task says them for certain, else ``None``.

    Certain only where the task's own class defines ``validation_metric_names`` (a subclass of a
    built-in task may log more under its own names) and no callback from elsewhere could log a
    metric too: never a false refusal, at worst the later check.
    """
    owner = next((cls for cls in type(task).__mro__ if "validation_metric_names" in vars(cls)), None)
    if owner is not type(task):
        return None
    if any(type(callback).__module__.partition(".")[0] not in _QUIET_CALLBACK_PACKAGES for callback in trainer.callbacks):
        return None
    names = task.validation_metric_names()
    return set(names) if names is not None else None


def watched_metrics(trainer: Trainer) -> list[tuple[str, str, str]]:
    """``(metric, what watches it, where it is set)`` for each validation metric the run depends on."""
    from lightning_hw.callbacks.best_checkpoint import BestCheckpoint
    from lightning_hw.callbacks.pruning import OptunaPruning

    watched = []
    for callback in trainer.callbacks:
        if isinstance(callback, OptunaPruning) and callback.required:
            watched.append((callback.metric, OBJECTIVE, "`objective:` in the study file"))
        elif isinstance(callback, ModelCheckpoint) and callback.monitor:
            ours = isinstance(callback, BestCheckpoint)  # the run's best checkpoint, by run.monitor or the task's
            name = type(callback).__name__
            if ours:
                watched.append((callback.monitor, *getattr(callback, "monitor_set_by", ("run.monitor", "run.monitor"))))
            else:
                watched.append((callback.monitor, f"the monitor of {name}", f"{name}'s monitor"))
        elif isinstance(callback, EarlyStopping) and callback.monitor and callback.strict:
            # A strict EarlyStopping raises Lightning's RuntimeError (a traceback) at the first epoch's end
            # for a metric never logged; a non-strict one only warns, and is left to do so.
            name = type(callback).__name__
            watched.append((callback.monitor, f"the monitor of {name}", f"{name}'s monitor"))
    return _objective_named_by_its_source(watched)


def _objective_named_by_its_source(watched: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Drop the objective where the run's best checkpoint watches the same metric: that line names where it is set.

    A search file without ``objective:`` searches on what its runs checkpoint on: for a study
    given ``--run.monitor val/acuracy``, the line said to give a metric "to `objective:` in the
    study file", which holds none; fixed so, the run.monitor was refused next.
    """
    checkpointed = {metric for metric, what, _ in watched if what != OBJECTIVE and not what.startswith("the monitor of ")}
    return [entry for entry in watched if not (entry[1] == OBJECTIVE and entry[0] in checkpointed)]
