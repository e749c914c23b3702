"""Report a search trial's objective to its Optuna study every validation epoch, and stop when pruned.

The study runner (:mod:`lightning_hw.studies.runner`) starts each trial's ``fit`` with the storage,
study and trial id in its environment; ``fit`` then adds :class:`OptunaPruning`. Unlike
optuna-integration's Lightning callback, it uses only public APIs and raises nothing inside the
trainer: a pruned trial asks the trainer to stop, ends like any finished ``fit`` (checkpoints
saved, tested) and its ``status.json`` says ``pruned``.
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_hw.studies.trial_env import TrialEnvironment


class OptunaPruning(Callback):
    """``trial.report(value, epoch)`` after every validation epoch; ``trainer.should_stop`` when pruned.

    Args:
        storage: the study's storage URL.
        study_name: the study's name in the storage.
        trial_id: the trial's id in the storage.
        pruner: the pruner spec (``{"median": {...}}``), as the study file gives it.
        metric: the objective metric, e.g. ``val/acc``.
        required: ``fit`` stops in one line when the task never logs ``metric`` (see
            :class:`lightning_hw.callbacks.guards.WatchedMetricsCheck`).
    """

    def __init__(
        self, storage: str, study_name: str, trial_id: int, pruner: dict[str, Any], metric: str, required: bool = False
    ) -> None:
        import optuna

        from lightning_hw.studies.search import make_pruner, open_storage

        study = optuna.load_study(study_name=study_name, storage=open_storage(storage), pruner=make_pruner(pruner))
        self.trial = optuna.trial.Trial(study, trial_id)
        self.metric = metric
        self.required = required
        self.pruned_at: int | None = None

    @property
    def pruned(self) -> bool:
        """Whether the pruner stopped this trial."""
        return self.pruned_at is not None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.pruned or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            return
        value = float(value)
        if not math.isfinite(value):
            return
        epoch = trainer.current_epoch
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True
            print(f"Trial pruned by the study's pruner at epoch {epoch} ({self.metric} = {value:.4f})")


def from_environment() -> OptunaPruning | None:
    """The callback for the trial named in this process's environment, or ``None`` outside a search."""
    trial = TrialEnvironment.from_environ()
    if trial is None:
        return None
    return OptunaPruning(trial.storage, trial.study, trial.trial_id, trial.pruner, trial.metric, trial.required)
