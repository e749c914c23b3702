"""How the study runner tells a trial's ``fit`` which Optuna trial it trains for: its environment.

Kept apart from :mod:`lightning_hw.studies.search` (which imports Optuna) so that every ``fit``
can ask whether it is a trial without importing Optuna: a machine without Optuna still trains;
only studies need it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_STORAGE = "LIGHTNING_HW_OPTUNA_STORAGE"
ENV_STUDY = "LIGHTNING_HW_OPTUNA_STUDY"
ENV_TRIAL = "LIGHTNING_HW_OPTUNA_TRIAL_ID"
ENV_PRUNER = "LIGHTNING_HW_OPTUNA_PRUNER"
ENV_METRIC = "LIGHTNING_HW_OPTUNA_METRIC"
ENV_REQUIRED = "LIGHTNING_HW_OPTUNA_METRIC_REQUIRED"


@dataclass(frozen=True)
class TrialEnvironment:
    """Where a trial reports its objective and how its study prunes.

    Attributes:
        storage: the study's storage URL.
        study: the study's name in the storage.
        trial_id: the trial's id in the storage.
        pruner: the pruner spec as the study file gives it (``{"median": {...}}``).
        metric: the objective metric, e.g. ``val/acc``.
        required: the trial's ``fit`` stops in one line when its task never logs ``metric`` (a
            search, which can only compare trials by it; a grid's runs are its point, not their value).
    """

    storage: str
    study: str
    trial_id: int
    pruner: dict[str, Any]
    metric: str
    required: bool = False

    def to_environ(self) -> dict[str, str]:
        """The variables the runner adds to the trial's ``fit`` process."""
        return {
            ENV_STORAGE: self.storage,
            ENV_STUDY: self.study,
            ENV_TRIAL: str(self.trial_id),
            ENV_PRUNER: json.dumps(self.pruner),
            ENV_METRIC: self.metric,
            ENV_REQUIRED: "1" if self.required else "",
        }

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> TrialEnvironment | None:
        """The trial this process trains for, or ``None`` outside a search study."""
        if not environ.get(ENV_TRIAL):
            return None
        return cls(
            storage=environ.get(ENV_STORAGE, ""),
            study=environ.get(ENV_STUDY, ""),
            trial_id=int(environ[ENV_TRIAL]),
            pruner=json.loads(environ.get(ENV_PRUNER) or '{"none": {}}'),
            metric=environ.get(ENV_METRIC, ""),
            required=bool(environ.get(ENV_REQUIRED)),
        )
