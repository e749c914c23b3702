"""The ``run:`` section of a config: where a run writes and how it is logged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightning_hw.errors import ConfigError

WANDB_MODES = ("auto", "online", "offline", "disabled")


def monitor_mode(metric: str) -> str:
    """``"min"`` or ``"max"``: whether lower or higher is better for a metric named by the user.

    Losses, errors and penalties go down (``val/loss``, ``test/nme``, ``val/mae``, ``train/penalty``); anything else
    (``val/acc``, ``val/f1``) goes up.
    """
    name = metric.rsplit("/", 1)[-1].lower()
    return "min" if any(word in name for word in ("loss", "err", "nme", "mae", "mse", "rmse", "penalty")) else "max"


def task_monitor_mode(task: Any) -> str:
    """Whether higher or lower is better for the task's ``monitor``: its ``monitor_mode`` where that is set with it.

    A class that sets ``monitor`` but not ``monitor_mode`` inherits the mode of a base that
    monitors another metric (``Task``'s "min" for ``val/loss``, ``Classifier``'s "max" for
    ``val/acc``): ``monitor = "val/f1"`` on a ``Task`` kept its worst epoch as the best checkpoint,
    and fit tested that one. A mode set on the class that sets the monitor, or on a subclass of it,
    is what the author chose; an inherited one is replaced by what the metric's name says, as for
    ``run.monitor`` (:func:`monitor_mode`). A task object that sets them itself (in its
    ``__init__``, from its arguments) is read first, by the same rule.

    Args:
        task: the task, or its class (a ``Task`` or any ``LightningModule``).
    """
    if not isinstance(task, type):
        own = getattr(task, "__dict__", {})
        if "monitor_mode" in own:
            return str(own["monitor_mode"])
        if "monitor" in own:
            return monitor_mode(str(own["monitor"]))
    task_cls = task if isinstance(task, type) else type(task)
    mro = type.mro(task_cls)
    monitor_at = next((i for i, cls in enumerate(mro) if "monitor" in vars(cls)), None)
    mode_at = next((i for i, cls in enumerate(mro) if "monitor_mode" in vars(cls)), None)
    if monitor_at is None:
        return str(getattr(task_cls, "monitor_mode", "min"))  # the default monitor, val/loss
    if mode_at is not None and mode_at <= monitor_at:
        return str(vars(mro[mode_at])["monitor_mode"])
    return monitor_mode(str(vars(mro[monitor_at])["monitor"]))


#: the characters W&B refuses in a project name (``wandb_settings.validate_project``)
WANDB_PROJECT_REFUSES = "/\\#?%:"


@dataclass
class RunConfig:
    """Where a run writes and how it is logged (the ``run:`` section of a config).

    Args:
        root: directory that holds all run groups.
        group: group of related runs (a study); default: the name of the first ``--config`` that is not
            a trainer preset (the experiment, not a preset stacked before or after it).
        name: this run's name; default: a timestamp. A fresh ``fit`` refuses a name that is
            taken; ``--ckpt_path last`` continues the run of that name.
        project: W&B project.
        wandb: ``auto`` (online when logged in, else offline), ``online``, ``offline`` or ``disabled``.
        tags: W&B tags.
        job_type: W&B job type (e.g. ``train``, ``eval``); default: the subcommand (``fit``, ``test``, ...).
        notes: W&B notes: a sentence on what this run tries (a study fills in its variant).
        monitor: validation metric that picks the best checkpoint; default: the task's.
        test_after_fit: after ``fit``, run ``test`` on the best checkpoint.
        checkpoint_interval: least seconds between two writes of ``checkpoints/last.ckpt``, and
            of the best checkpoint (kept in memory meanwhile); the first and the final epoch
            are always written, and the best one at the end of training; ``0``: every epoch.
        last_checkpoint_interval: the former name of ``checkpoint_interval`` (still read from
            the ``config.yaml`` of runs made before the rename; it wins when set).
        checkpoint_every_n_steps: also write ``checkpoints/last.ckpt`` every this many
            optimizer steps inside an epoch (for long epochs: a crash then loses at most that
            many steps); ``None``: only at the end of epochs.
    """

    root: str = "runs"
    group: str | None = None
    name: str | None = None
    project: str = "lightning-hw"
    wandb: str = "auto"
    tags: list[str] = field(default_factory=list)
    job_type: str | None = None
    notes: str | None = None
    monitor: str | None = None
    test_after_fit: bool = True
    checkpoint_interval: float = 60.0
    last_checkpoint_interval: float | None = None
    checkpoint_every_n_steps: int | None = None

    def checkpoint_seconds(self) -> float:
        """The interval in effect (the former setting wins when a saved config still has it)."""
        return self.checkpoint_interval if self.last_checkpoint_interval is None else self.last_checkpoint_interval

    def check(self) -> None:
        """Refuse settings that cannot work, before anything is created.

        Raises:
            ConfigError: a W&B mode that does not exist, or a group/name that is not one directory.
        """
        if self.wandb not in WANDB_MODES:
            raise ConfigError(f"run.wandb must be one of {', '.join(WANDB_MODES)}, got {self.wandb!r}")
        for key in ("group", "name"):
            value = getattr(self, key)
            if value is not None and (not str(value).strip() or "/" in str(value) or str(value) in (".", "..")):
                raise ConfigError(f"run.{key} {value!r} must name one directory (no '/', not empty)")
        if self.checkpoint_seconds() < 0:
            raise ConfigError(f"run.checkpoint_interval must be 0 or more seconds, got {self.checkpoint_seconds()}")
        if self.checkpoint_every_n_steps is not None and self.checkpoint_every_n_steps < 1:
            raise ConfigError(
                f"run.checkpoint_every_n_steps must be 1 or more steps (or null: only at the end of epochs), "
                f"got {self.checkpoint_every_n_steps}"
            )

    def check_wandb_project(self) -> None:
        """Refuse a project name W&B would refuse, before a new run trains (``--run.project a/b``).

        W&B checks it only when its run starts, and a run whose W&B cannot start trains on with
        the CSV log alone: a typo in the project would cost the run its W&B record.

        Raises:
            ConfigError: the name is empty, longer than W&B's 128 characters, or has one of
                the characters W&B refuses.
        """
        if self.wandb == "disabled":
            return
        project = self.project or ""
        refused = [char for char in WANDB_PROJECT_REFUSES if char in project]
        if not project.strip() or len(project) > 128 or refused:
            why = f"it has {' '.join(refused)}" if refused else ("it is empty" if not project.strip() else "it is over 128 characters")
            raise ConfigError(
                f"run.project {project!r} cannot name a W&B project ({why}; W&B refuses "
                f"{' '.join(WANDB_PROJECT_REFUSES)} and names over 128 characters); give another --run.project"
            )


def flat_settings(config: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved config as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(config, dict) or not config:
        return {prefix.removesuffix("."): config} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flat_settings(value, f"{prefix}{key}."))
    return flat
