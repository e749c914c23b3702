"""Search studies: a study file with a ``search:`` section, run as an Optuna study.

A search study file::

    name: quickstart_search
    config: configs/quickstart.yaml
    args: {trainer.max_epochs: 5}              # every trial's `fit` gets these
    search:                                    # fit option -> an Optuna distribution
      model.init_args.lr: {float: [1.0e-3, 0.3], log: true}
      model.init_args.net.init_args.hidden: {categorical: [[32], [128], [64, 32]]}
      data.init_args.batch_size: {int: [16, 128], step: 16}
      model.init_args.net.init_args.head:       # a head from separate parameters (studies/head_space.py)
        head: {layers: [{categorical: [256, 1024]}, {categorical: [0, 64]}], dropout: {float: [0.0, 0.5], step: 0.1}}
    objective: val/acc          # or {metric: val/loss, direction: minimize}; default: what checkpoints monitor
    sampler: tpe                # tpe (default), random, grid, cmaes; seeded by `seed:` (default 0)
    pruner: median              # median (default), hyperband, none; or {median: {n_startup_trials: 1}}
    trials: 8                   # finished trials (complete, pruned or failed) the study stops at
    storage: sqlite             # default: runs/<study>/optuna.db; journal:///shared/x.log; postgresql://...
    heartbeat: 30               # seconds between the heartbeats of a running trial (database storages)

This module reads such a file and builds Optuna's objects from it; :mod:`lightning_hw.studies.runner`
runs the trials and :mod:`lightning_hw.callbacks.pruning` reports from inside each trial's ``fit``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import optuna
import yaml

from lightning_hw.errors import ConfigError
from lightning_hw.studies.grid import Study, overrides_to_args, read_study_file, sampler_seed, study_basics
from lightning_hw.studies.head_space import KIND as HEAD_KIND, HeadSpace, is_head_space, parse_head_space
from lightning_hw.studies.trial_env import TrialEnvironment

SEARCH_KEYS = (
    "name", "config", "args", "root", "search", "objective", "sampler", "pruner", "trials", "storage", "seed", "heartbeat",
)
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
DISTRIBUTIONS = ("float", "int", "categorical")
DB_FILE = "optuna.db"
GRID_PARAM = "run"  # a grid study is a search over one categorical parameter: its run names
HEADS_ATTR = "heads"  # trial user attr: {fit option: head spec} as composed when the trial's fit started

@dataclass
class SearchStudy:
    """A parsed search study file.

    Args:
        study: the study's name, configs, shared args and runs root (as for a grid study).
        space: fit option -> Optuna distribution.
        metric: the objective metric (a validation metric logged every epoch).
        direction: ``maximize`` or ``minimize``.
        sampler: ``tpe``, ``random``, ``grid`` or ``cmaes``.
        pruner: the pruner spec, ``{name: {keyword arguments}}``.
        trials: how many finished trials the study stops at.
        storage: the storage URL (``sqlite:///...``, ``journal:///...`` or an SQLAlchemy URL).
        seed: the sampler's seed.
        heartbeat: seconds between heartbeats of a running trial.
        heads: heads composed from several parameters (``head:`` entries; their parameters are in ``space``).
        objective_note: why the objective is what it is, where that is not what the trials' fit
            surely checkpoints on (the task's class attribute, the task not built here); else ``""``.
    """

    study: Study
    space: dict[str, Any]
    metric: str
    direction: str
    sampler: str = "tpe"
    pruner: dict[str, dict[str, Any]] = field(default_factory=lambda: {"median": {}})
    trials: int = 10
    storage: str = ""
    seed: int = 0
    heartbeat: int = 30
    heads: list[HeadSpace] = field(default_factory=list)
    objective_note: str = ""

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def directory(self) -> Path:
        return Path(self.study.root) / self.study.name

    def searched_options(self) -> dict[str, tuple[str, str]]:
        """Each ``fit`` option the search samples or composes (``--model.init_args.lr``): (that it does, what to do instead)."""
        advice = "leave it out, or take it out of search: in the study file"
        options = {f"--{key}": ("the search samples it for each trial", advice) for key in self.space}
        options.update({f"--{head.option}": ("the search composes it from its head: entry", advice) for head in self.heads})
        return options

    @property
    def is_grid(self) -> bool:
        """A grid study (``variants:``): its trials are the study's named runs."""
        return bool(self.study.variants)

    @property
    def optuna_name(self) -> str:
        """The study's name in the storage. A grid's also names its set of runs (``<name>.<digest>``):
        Optuna keeps a parameter's choices fixed for a study, so a grid that gains or loses a run is
        another Optuna study (runs that finished are still skipped by their record on disk)."""
        if not self.is_grid:
            return self.name
        names = json.dumps([v.name for v in self.study.variants])
        return f"{self.name}.{hashlib.sha1(names.encode()).hexdigest()[:8]}"

    def variant(self, run_name: str):
        """A grid's run by its name."""
        return next(v for v in self.study.variants if v.name == run_name)


def is_search(path: str | Path) -> bool:
    """Whether a study file has a ``search:`` section (a file that cannot be read is left to the grid reader)."""
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(spec, dict) and "search" in spec


def load_search(path: str | Path, root: str | None = None, extra: Sequence[str] = ()) -> SearchStudy:
    """Read and check a search study file.

    Args:
        path: the study YAML.
        root: runs root; default: the file's ``root:`` or ``runs``.
        extra: the fit options given to ``study``, which every trial gets (they may choose its metric).

    Raises:
        ConfigError: in one line, for anything that is not a valid search study.
    """
    path = Path(path)
    spec = read_study_file(path)
    where = f"study {path}"
    if "variants" in spec:
        raise ConfigError(f"{where} has both `variants` (a grid) and `search` (an Optuna search); keep one")
    name, configs = study_basics(spec, path, SEARCH_KEYS, "allowed with `search`")
    if not configs:
        raise ConfigError(f"{where}: a search needs `config:` (the base config every trial starts from)")
    study = Study(
        name=name,
        path=path,
        configs=configs,
        args=overrides_to_args(spec.get("args"), path, "args"),
        variants=[],
        root=root or str(spec.get("root") or "runs"),
    )
    space_spec = spec.get("search")
    if not isinstance(space_spec, dict) or not space_spec:
        raise ConfigError(f"{where}: `search` must map fit options to distributions, e.g. `model.init_args.lr: {{float: [1.0e-4, 0.1], log: true}}`")
    space, heads = read_space(space_spec, where)
    metric, direction, note = _objective(spec.get("objective"), configs, [*study.args, *extra], where)
    sampler = str(spec.get("sampler") or "tpe").lower()
    if sampler not in SAMPLERS:
        raise ConfigError(f"{where}: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if sampler == "grid":
        grid_choices(space, where)
    search = SearchStudy(
        study=study,
        space=space,
        metric=metric,
        direction=direction,
        sampler=sampler,
        pruner=pruner_spec(spec.get("pruner", "median"), where),
        trials=_positive_int(spec.get("trials", 10), f"{where}: trials"),
        seed=sampler_seed(spec.get("seed"), where),
        heartbeat=_positive_int(spec.get("heartbeat", 30), f"{where}: heartbeat"),
        heads=heads,
        objective_note=note,
    )
    search.storage = storage_url(spec.get("storage"), search.directory, where)
    return search


def read_space(space_spec: dict[str, Any], where: str) -> tuple[dict[str, Any], list[HeadSpace]]:
    """A ``search:`` section as Optuna's flat space (parameter -> distribution) and its composed heads.

    Raises:
        ConfigError: an entry is not a distribution or a ``head:``, or two entries name one parameter.
    """
    space: dict[str, Any] = {}
    heads = []
    for key, value in space_spec.items():
        option = str(key).removeprefix("--")
        if isinstance(value, dict) and HEAD_KIND in value and len(value) > 1:
            raise ConfigError(f"{where}: search {key}: give either a head: entry or a distribution, not both")
        if is_head_space(value):
            heads.append(parse_head_space(option, value, where, distribution))
            entries = heads[-1].searched
        else:
            entries = {option: distribution(value, f"{where}: search {key}")}
        for name in entries:
            if name in space:
                raise ConfigError(f"{where}: search parameter {name!r} is named twice (two head: entries name their parts alike); search one head: entry per study")
        space.update(entries)
    return space, heads


def fit_options(params: dict[str, Any], distributions: dict[str, Any], heads: list[HeadSpace]) -> dict[str, Any]:
    """A trial's parameters as ``fit`` options: values as the study file wrote them, composed heads as specs."""
    options = {k: as_value(v, distributions[k]) for k, v in params.items()}
    for head in heads:
        for name in head.searched:
            options.pop(name, None)
        options[head.option] = head.spec(params)
    return options


def trial_options(trial: Any, heads: list[HeadSpace]) -> dict[str, Any]:
    """:func:`fit_options` of a trial, with the head specs its ``fit`` ran with.

    A head's fixed parts are not Optuna parameters: after the study file's ``head:`` entry is
    edited, composing from it again would show a head the trial never trained. The runner
    records each trial's composed specs (:data:`HEADS_ATTR`) before its ``fit`` starts.
    """
    options = fit_options(trial.params, trial.distributions, heads)
    options.update(trial.user_attrs.get(HEADS_ATTR) or {})
    return options


def heads_of(search_spec: dict[str, Any], where: str) -> list[HeadSpace]:
    """The composed heads of a ``search:`` section (for a report that reads the recorded section)."""
    return read_space(search_spec, where)[1] if search_spec else []


def grid_search(study: Study, options: dict[str, Any], extra: Sequence[str] = ()) -> SearchStudy:
    """A grid study as what the runner runs: Optuna's GridSampler over the study's run names.

    Args:
        study: the parsed grid study.
        options: the study file's ``objective``, ``storage``, ``heartbeat``, ``seed`` and ``args``.
        extra: the fit options given to ``study``, which every run gets.
    """
    from optuna.distributions import CategoricalDistribution

    where = f"study {study.path}"
    configs = study.configs or _config_args(study.variants[0].args)
    try:
        metric, direction, note = _objective(options.get("objective"), configs, [*study.args, *extra], where, validation=False)
    except ConfigError:
        if options.get("objective") is not None:
            raise
        metric, direction, note = "val/loss", "minimize", ""  # a base config we cannot read for its monitor: the runs will say
    search = SearchStudy(
        study=study,
        space={GRID_PARAM: CategoricalDistribution([v.name for v in study.variants])},
        metric=metric,
        direction=direction,
        sampler="grid",
        pruner={"none": {}},
        trials=len(study.variants),
        seed=sampler_seed(options.get("seed"), where),
        heartbeat=_positive_int(options.get("heartbeat", 30), f"{where}: heartbeat"),
        objective_note=note,
    )
    search.storage = storage_url(options.get("storage"), search.directory, where)
    return search


def _config_args(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a whole number of at least 1, got {value!r}")
    return value


# -- distributions -------------------------------------------------------------------------------


def distribution(spec: Any, where: str):
    """``{float: [lo, hi], log: true}``, ``{int: [lo, hi], step: 2}`` or ``{categorical: [...]}`` as an Optuna distribution."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kinds = [k for k in DISTRIBUTIONS if isinstance(spec, dict) and k in spec]
    if not isinstance(spec, dict) or len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(DISTRIBUTIONS)}, e.g. {{float: [0.001, 0.1], log: true}}; got {spec!r}")
    kind = kinds[0]
    options = {k: v for k, v in spec.items() if k != kind}
    allowed = {"float": {"log", "step"}, "int": {"log", "step"}, "categorical": set()}[kind]
    if set(options) - allowed:
        raise ConfigError(f"{where}: {kind} takes {', '.join(sorted(allowed)) or 'no options'}, not {', '.join(sorted(set(options) - allowed))}")
    if kind == "categorical":
        choices = spec[kind]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list of choices")
        # Optuna stores None/bool/int/float/str; lists and mappings travel as their JSON text.
        return CategoricalDistribution([c if c is None or isinstance(c, (bool, int, float, str)) else json.dumps(c) for c in choices])
    bounds = spec[kind]
    ok = isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
    if ok and kind == "int":
        ok = all(float(b).is_integer() for b in bounds)
    if not ok or not (bounds[0] < bounds[1]) or not all(math.isfinite(b) for b in bounds):
        raise ConfigError(f"{where}: {kind} needs [low, high] numbers with low < high, got {bounds!r}")
    log, step = bool(options.get("log", False)), options.get("step")
    if log and bounds[0] <= 0:
        raise ConfigError(f"{where}: log needs a low bound above 0, got {bounds[0]}")
    if log and step is not None:
        raise ConfigError(f"{where}: give log or step, not both")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"{where}: step must be a positive number, got {step!r}")
    if kind == "float":
        return FloatDistribution(float(bounds[0]), float(bounds[1]), log=log, step=None if step is None else float(step))
    return IntDistribution(int(bounds[0]), int(bounds[1]), log=log, step=int(step or 1))


def as_value(value: Any, dist: Any) -> Any:
    """A sampled parameter as the study file wrote it (categorical lists and mappings back from JSON)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(dist, CategoricalDistribution) and isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        return round(value, 10)  # a stepped range's 0.30000000000000004 is the 0.3 the file means
    return value


def grid_choices(space: dict[str, Any], where: str) -> dict[str, list]:
    """The values GridSampler tries per parameter: the categorical choices, or a stepped range."""
    from optuna.distributions import CategoricalDistribution

    grid = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif getattr(dist, "step", None) and not getattr(dist, "log", False):
            count = int(round((dist.high - dist.low) / dist.step)) + 1
            grid[key] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise ConfigError(f"{where}: sampler grid needs categorical or stepped (int/float with step) distributions; {key} is neither")
    return grid


# -- objective, sampler, pruner, storage ---------------------------------------------------------


def _objective(spec: Any, configs: list[str], fit_args: list[str], where: str, validation: bool = True) -> tuple[str, str, str]:
    """(metric, direction, note): as given, else what the run's checkpoints monitor (``run.monitor`` or the task's).

    The note is ``""``, or says why the objective is the task class's attribute (see :func:`_monitor`).

    Args:
        configs: the base config files.
        fit_args: the options every run gets after them (the study's ``args:``, the command line's).
        validation: the metric must be a validation metric (a search prunes on it every epoch).
    """
    from lightning_hw.runs.config import monitor_mode

    if isinstance(spec, dict):
        metric, direction = spec.get("metric"), spec.get("direction")
    elif isinstance(spec, str) or spec is None:
        metric, direction = spec, None
    else:
        raise ConfigError(f"{where}: objective must be a metric name or {{metric: ..., direction: maximize|minimize}}")
    note = ""
    if metric is None:
        metric, mode, note = _monitor(configs, fit_args)
    else:
        mode = monitor_mode(str(metric))
    if direction is None:
        direction = "maximize" if mode == "max" else "minimize"
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"{where}: objective direction must be maximize or minimize, got {direction!r}")
    if validation and not str(metric).startswith("val/"):
        raise ConfigError(f"{where}: the objective must be a validation metric (val/...), reported every epoch; got {metric!r}")
    if note:
        note = f"objective {metric} {direction}: {note}"
    return str(metric), direction, note


def _monitor(configs: list[str], fit_args: list[str]) -> tuple[str, str, str]:
    """The metric ``fit`` checkpoints on for these configs and its mode: ``run.monitor``, else the task's ``monitor``.

    The task's is read from the task built as ``fit`` builds it (see
    :mod:`~lightning_hw.studies.task_monitor`): one that sets ``monitor`` in ``__init__`` is
    searched on that metric, in its direction; its class's attribute only where it cannot be built
    here, and the third value then says so and why (its trials' fit may checkpoint on another).
    """
    from lightning_hw.runs.config import monitor_mode, task_monitor_mode
    from lightning_hw.studies.task_monitor import built_task, composed_run_monitor, composed_section

    monitor = composed_run_monitor(configs, fit_args)
    if monitor:
        return monitor, monitor_mode(monitor), ""
    model = composed_section(configs, fit_args, "model")
    task, failure = built_task(model, composed_section(configs, fit_args, "data"))
    note = ""
    if task is None:
        task = _task_class(str(model["class_path"] or ""))
        if task is not None and failure:
            note = (f"{task.__name__}'s class attribute `monitor`, as the task could not be built here to read "
                    f"the one its __init__ may choose ({failure}); set `objective:` in the study file to be sure")
    return getattr(task, "monitor", "val/loss"), task_monitor_mode(task) if task is not None else "min", note


def _task_class(class_path: str) -> type | None:
    from lightning_hw.registry import import_class

    return import_class(class_path, "task")


def pruner_spec(spec: Any, where: str) -> dict[str, dict[str, Any]]:
    """``median`` / ``{median: {n_startup_trials: 1}}`` as ``{"median": {...}}`` (checked by building it)."""
    if spec is None or spec is False:
        spec = "none"
    if isinstance(spec, str):
        spec = {spec.lower(): {}}
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: pruner must be one of {', '.join(PRUNERS)}, optionally with its arguments, e.g. {{median: {{n_startup_trials: 2}}}}")
    (name, kwargs), = spec.items()
    kwargs = kwargs or {}
    if str(name).lower() not in PRUNERS or not isinstance(kwargs, dict):
        raise ConfigError(f"{where}: unknown pruner {name!r}; use one of {', '.join(PRUNERS)}")
    result = {str(name).lower(): dict(kwargs)}
    make_pruner(result, where)
    return result


def make_pruner(spec: dict[str, dict[str, Any]], where: str = "pruner"):
    """The Optuna pruner of a :func:`pruner_spec`."""
    import optuna

    (name, kwargs), = spec.items()
    cls = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner}[name]
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: pruner {name}: {str(err).splitlines()[0]}") from None


def make_sampler(search: SearchStudy, offset: int = 0):
    """The seeded Optuna sampler of a search study.

    Args:
        search: the study.
        offset: added to the study's ``seed``: the number of trials its storage holds already.
            Each ``study`` invocation builds its sampler anew, and one seeded alike would draw
            the values of the study's first trials again (TPE's random start-up trials, the
            random sampler's every trial); a new study (offset 0) draws what its seed gives.
    """
    import optuna

    seed = search.seed + offset
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        return AskTellGridSampler(grid_choices(search.space, search.name), seed=seed)
    if search.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its ``study.stop()`` once the grid is covered: that only works
    inside ``Study.optimize`` (under ask-and-tell it raises before the last trial is stored); the
    runner stops at the study's ``trials`` instead."""

    def after_trial(self, study, trial, state, values) -> None:  # noqa: D102 - see the class
        return None


def storage_url(spec: Any, directory: Path, where: str) -> str:
    """The storage as a URL every process of the study can open (relative paths made absolute)."""
    if spec in (None, "sqlite"):
        return f"sqlite:///{(directory / DB_FILE).resolve()}"
    spec = str(spec)
    if spec.startswith("journal://"):
        path = spec[len("journal://"):]
        if not path:
            raise ConfigError(f"{where}: storage journal:// needs a file, e.g. journal:///shared/studies/x.log")
        return f"journal://{Path(path).resolve()}"
    if spec.startswith("sqlite:///"):
        return f"sqlite:///{Path(spec[len('sqlite:///'):]).resolve()}"
    if "://" not in spec:
        raise ConfigError(f"{where}: storage must be sqlite, journal:///path or a database URL (postgresql://user@host/db), got {spec!r}")
    return spec


def open_storage(url: str, heartbeat: int | None = None):
    """An Optuna storage for ``url``; with ``heartbeat``, a database storage fails (and retries) trials
    whose heartbeat stopped for twice that many seconds.

    Raises:
        ConfigError: the storage cannot be opened (no such server, a driver missing...).
    """
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        if url.startswith("journal://"):
            path = Path(url[len("journal://"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several processes write
        if heartbeat:
            kwargs.update(
                heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
            )
        return RDBStorage(url, **kwargs)
    except (ImportError, ModuleNotFoundError) as err:
        raise ConfigError(f"storage {url}: {err}; install the database driver (PostgreSQL: pip install 'psycopg[binary]')") from None
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's errors have no common public base here
        if isinstance(err, optuna.exceptions.OptunaError) or type(err).__module__.startswith("sqlalchemy"):
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot open storage {url}: {first}") from None
        raise


def trial_env(search: SearchStudy, trial_id: int) -> dict[str, str]:
    """What a trial's ``fit`` needs to report to the study and ask whether to stop."""
    return TrialEnvironment(search.storage, search.optuna_name, trial_id, search.pruner, search.metric, required=not search.is_grid).to_environ()
