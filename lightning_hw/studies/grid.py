"""Grid studies: one base config, named variants of it, each trained in its own process; the ``study`` command.

    python -m lightning_hw study configs/studies/reuters_heads.yaml            # run what is left
    python -m lightning_hw study configs/studies/reuters_heads.yaml --dry-run  # list it
    python -m lightning_hw study configs/studies/reuters_heads.yaml --jobs 3 --trainer.max_epochs 2
    python -m lightning_hw study configs/studies/reuters_heads.yaml --export-sweep sweep.yaml

A study file::

    name: reuters_heads                # runs go to runs/<name>/<variant>/ (default: the file name)
    config: configs/reuters.yaml       # base config(s), as given to `fit --config` (or per variant)
    args:                              # overrides for every variant (optional)
      trainer.max_epochs: 20
    seeds: [1, 2, 3]                   # optional: every variant once per seed, as <variant>-seed<N>
    folds: 5                           # optional: k-fold cross-validation, every variant on every fold
                                       # as <variant>-fold<i> (with seeds: <variant>-seed<N>-fold<i>)
    variants:
      softmax_ce: {model.init_args.head: softmax_ce}
      sigmoid_bce: {model.init_args.head: sigmoid_bce}
      other_data: {config: configs/other.yaml}   # `config` adds a --config file

Every ``key: value`` of ``args`` and of a variant becomes ``--key value`` on the ``fit``
command line (lists and mappings as JSON), so anything ``fit`` accepts works; every config
file comes first, so ``args`` hold for a variant with its own ``config`` too. Command-line
arguments the study command does not know are passed to every variant too. ``folds: k``
adds ``--data.init_args.folds k --data.init_args.fold i`` to fold ``i``'s run (the test
split stays fixed; see :mod:`lightning_hw.data.folds`); ``report`` shows mean ± sd over the folds.

The runs are trained by the one study runner (:mod:`lightning_hw.studies.runner`), as an Optuna
study over the run names (GridSampler) in ``runs/<name>/optuna.db`` or the file's ``storage:``
(a journal file or a database every machine sees: then the same command on several machines
shares out the runs). A run that finished (fit and test, exit 0, ``status.json`` ``finished``)
has ``study-finished.json`` in its run directory and is skipped when the study runs again; one
that was interrupted or killed and has a ``checkpoints/last.ckpt`` continues from it
(``--ckpt_path last``); the others start.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_hw.cli.names import option_values
from lightning_hw.errors import ConfigError
from lightning_hw.runs.files import CHECKPOINT_DIR, LAST_CHECKPOINT, holds_record, read_status, refuse_a_reserved_name

FINISHED_FILE = "study-finished.json"
#: exit codes of a fit stopped by a signal (it saved last.ckpt; the next study run resumes it)
INTERRUPT_CODES = {130: "SIGINT", 143: "SIGTERM", -2: "SIGINT", -15: "SIGTERM"}  # negative: killed before its handler
#: set in a study's fit: the study's process id, which passes each stop signal it gets on to its fits
STUDY_PARENT_ENV = "LIGHTNING_HW_STUDY_PID"
#: set in a study's fit: a file holding how many SIGTERMs the study has passed on so far (see
#: lightning_hw.runs.interrupts.SignalWatch: which SIGTERM is a copy of one the fit already got)
STUDY_STOPS_ENV = "LIGHTNING_HW_STUDY_STOPS"
LOG_FILE = "study.log"
STUDY_KEYS = ("name", "config", "args", "seeds", "folds", "variants", "root", "objective", "storage", "heartbeat", "seed")
# (a file with `search:` is read by lightning_hw.studies.search)
#: from this many fits a study starts its warm process: importing it costs about what one fit's start does
WARM_START_FROM = 3
RUNNER_KEYS = ("objective", "storage", "heartbeat", "seed", "args")  # what the Optuna runner reads of a grid file
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


@dataclass
class Variant:
    """One run of a study.

    Args:
        name: the run name (``<variant>``, ``<variant>-seed<N>``, ``<variant>-fold<i>`` or
            ``<variant>-seed<N>-fold<i>``).
        variant: the variant's name in the study file.
        args: the variant's own ``fit`` arguments.
        seed: the seed, when the study lists seeds.
        fold: the fold that validates (0-based), when the study cross-validates (``folds:``).
    """

    name: str
    variant: str
    args: list[str]
    seed: int | None = None
    fold: int | None = None


@dataclass
class Study:
    """A parsed study file.

    Args:
        name: the study's name: its W&B group and its directory under the runs root.
        path: the study file.
        configs: the base config files.
        args: ``fit`` arguments shared by every variant.
        variants: the runs, in file order (each variant once per seed and fold).
        root: the runs root directory.
        seeds: the study's seeds (empty: none).
        folds: the number of cross-validation folds (``None``: no cross-validation).
    """

    name: str
    path: Path
    configs: list[str]
    args: list[str]
    variants: list[Variant]
    root: str = "runs"
    seeds: list[int] = field(default_factory=list)
    folds: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def run_dir(self, variant: Variant) -> Path:
        return Path(self.root) / self.name / variant.name


@dataclass
class Job:
    """One ``fit`` of a study: what the runner starts and ``--dry-run`` lists.

    Args:
        name: the run name (``<variant>...`` or ``trial-<N>``).
        run_dir: its run directory.
        command: the full ``python -m lightning_hw fit ...`` command.
        resume: it continues from the run's ``checkpoints/last.ckpt``.
        variant: the grid variant it trains (``None`` for a search trial).
        finished: it finished before (its ``study-finished.json``); a grid skips it.
    """

    name: str
    run_dir: Path
    command: list[str]
    resume: bool = False
    variant: Variant | None = None
    finished: bool = False

    @property
    def state(self) -> str:
        """``finished``, ``resume`` (from ``last.ckpt``), ``stopped`` (see :func:`died_before_checkpoint`) or ``new``."""
        if self.finished:
            return "finished"
        if self.resume:
            return "resume"
        return "stopped" if left_to_user(self.run_dir) else "new"


def is_finished_run(run_dir: Path) -> bool:
    """Whether a study run finished: its ``study-finished.json`` (the record a grid never reruns)."""
    return (run_dir / FINISHED_FILE).is_file()


def has_last_checkpoint(run_dir: Path) -> bool:
    """Whether a run can be continued: its ``checkpoints/last.ckpt`` exists."""
    return (run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()


def died_before_checkpoint(run_dir: Path) -> bool:
    """A grid run that began training (its record exists) but has no ``last.ckpt``: nothing to resume.

    A run that failed or was killed outright (SIGKILL, out of memory, a machine that went down)
    in its first epoch leaves this; Ctrl-C and SIGTERM save ``last.ckpt``. ``fit`` refuses to
    start a run over a record and a grid run's name is fixed, so the user must move it aside.
    """
    return holds_record(run_dir) and not has_last_checkpoint(run_dir) and not is_finished_run(run_dir)


def finished_outside_study(run_dir: Path) -> bool:
    """A run that finished training under a grid run's name but not in the study (no ``study-finished.json``).

    ``fit --run.name mlp-fold0`` by hand, in the study's group: "resuming" it trained nothing
    (it had finished) but rewrote its ``config.yaml`` with the study's settings, and the
    study and its report then counted it as a run of the study, trained otherwise as it was.
    """
    return not is_finished_run(run_dir) and read_status(run_dir).get("status") == "finished"


def left_to_user(run_dir: Path) -> bool:
    """A grid run the study neither starts nor resumes: its record is the user's to keep or move aside."""
    return died_before_checkpoint(run_dir) or finished_outside_study(run_dir)


def move_aside_advice(run_dir: Path) -> str:
    """How to run a grid run again that is :func:`left_to_user` (its record is the user's to keep or drop)."""
    if finished_outside_study(run_dir):
        return (
            f"{run_dir} finished outside study {run_dir.parent.name} (no {FINISHED_FILE}), with settings the "
            f"study may not give; to train it in the study, move it aside (mv {run_dir} {_aside(run_dir, 'outside')}) "
            "and run the study again"
        )
    return (
        f"{run_dir} stopped before its first checkpoint (nothing to resume); to run it again, "
        f"move it aside (mv {run_dir} {_aside(run_dir, 'died')}) and run the study again"
    )


def _aside(run_dir: Path, why: str) -> Path:
    """``<run>.<why>``, or ``<run>.<why>-1``, ``-2``...: never into (or over) an earlier one."""
    aside, number = run_dir.with_name(f"{run_dir.name}.{why}"), 1
    while aside.exists():
        aside, number = run_dir.with_name(f"{run_dir.name}.{why}-{number}"), number + 1
    return aside


def last_error_line(run_dir: Path) -> str | None:
    """The last ``error:`` line of a study run's ``study.log``, or ``None`` (no log, or no error in it)."""
    try:
        lines = (run_dir / LOG_FILE).read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((line for line in reversed(lines) if line.startswith("error:")), None)


# -- reading a study ---------------------------------------------------------------------------


def load_study(path: str | Path, root: str | None = None) -> Study:
    """Read and check a study file.

    Args:
        path: the study YAML.
        root: runs root; default: the file's ``root:`` or ``runs``.

    Raises:
        ConfigError: the file is missing, not YAML, or not a study.
    """
    path = Path(path)
    spec = read_study_file(path)
    name, configs = study_basics(spec, path, STUDY_KEYS, "allowed")
    variants_spec = spec.get("variants")
    if not isinstance(variants_spec, dict) or not variants_spec:
        raise ConfigError(f"study {path}: `variants` must map variant names to overrides, e.g. `a: {{trainer.max_epochs: 5}}`")
    seeds = _seeds(spec.get("seeds"), path)
    sampler_seed(spec.get("seed"), f"study {path}")  # checked now: --dry-run reads no further
    folds = spec.get("folds")
    if folds is not None and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 2):
        raise ConfigError(f"study {path}: `folds` must be a whole number of at least 2 (k-fold cross-validation), got {folds!r}")
    root = root or str(spec.get("root") or "runs")
    variants = []
    for variant_name, overrides in variants_spec.items():
        variant_name = str(variant_name)
        _check_name(variant_name, f"study {path}: variant name")
        args = overrides_to_args(overrides, path, f"variant {variant_name}")
        if not configs and "--config" not in args:
            raise ConfigError(f"study {path}: variant {variant_name} has no config; give `config:` for the study or the variant")
        for seed in seeds or [None]:
            seed_name = variant_name if seed is None else f"{variant_name}-seed{seed}"
            for fold in range(folds) if folds else [None]:
                run_name = seed_name if fold is None else f"{seed_name}-fold{fold}"
                _refuse_a_reserved_run_name(Path(root) / name / run_name, path)
                variants.append(Variant(run_name, variant_name, args, seed, fold))
    return Study(
        name=name,
        path=path,
        configs=configs,
        args=overrides_to_args(spec.get("args"), path, "args"),
        variants=variants,
        root=root,
        seeds=seeds,
        folds=folds,
        options={k: spec[k] for k in RUNNER_KEYS if k in spec},
    )


def _refuse_a_reserved_run_name(run_dir: Path, path: Path) -> None:
    """Refuse a variant whose run would be named ``eval`` or ``report`` (now, so that ``--dry-run`` says it too)."""
    try:
        refuse_a_reserved_name(run_dir, "rename the variant")
    except ConfigError as err:
        raise ConfigError(f"study {path}: {err}") from None


def _seeds(value: Any, path: Path) -> list[int]:
    """The ``seeds:`` of a study file: distinct whole numbers, each naming its runs ``<variant>-seed<N>``.

    Raises:
        ConfigError: a seed is not a whole number (``int('a')`` was a traceback, ``1.5`` silently
            seed 1), or one is given twice (two runs of one name would share one directory).
    """
    seeds = _as_list(value)
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
    if bad:
        raise ConfigError(f"study {path}: `seeds` must be whole numbers, e.g. `seeds: [1, 2, 3]`; got {bad[0]!r}")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ConfigError(f"study {path}: seed {', '.join(map(str, twice))} is given twice in `seeds`; give each seed once")
    return seeds


def sampler_seed(value: Any, where: str) -> int:
    """The study file's ``seed:``: the sampler's seed, a whole number (default 0).

    Raises:
        ConfigError: it is not a whole number; a list (``seed: [1, 2]``) is most likely meant
            as ``seeds:``, the runs of a grid once per seed, and the message says so.
    """
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{where}: `seed` is the sampler's seed, a whole number, got {value!r}"
            + ("; to train every variant once per seed, write `seeds:`" if isinstance(value, list) else "")
        )
    return value


class _KeyTwice(Exception):
    """A mapping of a study file gives one key twice (``key``, at 0-based ``line``)."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    YAML itself keeps the last value silently: a variant copied and not renamed would be one
    run where the file shows two, and a repeated option one setting where it shows two.
    """

    def construct_mapping(self, node, deep=False):
        # Only the mapping's own keys, before `<<` merges others in: a merged key may be overridden, as
        # YAML allows (`b: {<<: *a, lr: 0.1}` copies variant a and changes one option).
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                twice = key in seen
            except TypeError:  # unhashable: the base constructor says so
                break
            if twice:
                raise _KeyTwice(key, key_node.start_mark.line)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_study_file(path: Path) -> dict[str, Any]:
    """A study file's YAML mapping (grid or search).

    Raises:
        ConfigError: the file is missing, not YAML, not a mapping, or gives a key twice.
    """
    if not path.is_file():
        raise ConfigError(f"study file {path} not found")
    try:
        spec = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"study file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    except _KeyTwice as err:
        raise ConfigError(
            f"study file {path} gives `{err.key}` twice (line {err.line + 1}); YAML would keep only the last one: "
            "rename or remove one"
        ) from None
    if not isinstance(spec, dict):
        raise ConfigError(f"study file {path} must be a mapping with `config` and `variants` (or `search`)")
    return spec


def study_basics(spec: dict[str, Any], path: Path, keys: tuple[str, ...], allowed: str) -> tuple[str, list[str]]:
    """The checks every study file gets: known keys, a usable name, base configs that exist.

    Returns:
        ``(name, configs)``: the study's name and its base config files.
    """
    unknown = sorted(set(spec) - set(keys))
    if unknown:
        raise ConfigError(f"study {path}: unknown key(s) {', '.join(unknown)}; {allowed}: {', '.join(keys)}")
    name = str(spec.get("name") or path.stem)
    _check_name(name, f"study {path}: name")
    return name, [_find_config(c, path) for c in _as_list(spec.get("config"))]


def overrides_to_args(overrides: Any, study_path: Path, where: str) -> list[str]:
    """``{trainer.max_epochs: 5, config: x.yaml}`` -> ``["--config", "x.yaml", "--trainer.max_epochs", "5"]``.

    ``config`` entries come first (later options override what the files say), then the
    options in file order. Lists and mappings are passed as JSON, which jsonargparse parses.

    Args:
        overrides: the mapping from the study file (``None``: no overrides).
        study_path: the study file (config paths may be relative to it).
        where: names the mapping in error messages.
    """
    if overrides is None:
        return []
    if not isinstance(overrides, dict):
        raise ConfigError(f"study {study_path}: {where} must be a mapping of options to values, got {overrides!r}")
    configs: list[str] = []
    options: list[str] = []
    for key, value in overrides.items():
        key = str(key).removeprefix("--")
        _refuse_a_run_setting(key, value, study_path, where)
        if key == "config":
            for config in _as_list(value):
                configs += ["--config", _find_config(config, study_path)]
        else:
            options += [f"--{key}", _as_arg(value)]
    return configs + options


#: what to do instead of setting a run's place in the study file's own words (see SET_FOR_EACH_RUN)
_IN_THE_FILE_INSTEAD = {"run.root": "give the study file root: DIR (or the study --root DIR) instead"}


def _refuse_a_run_setting(key: str, value: Any, study_path: Path, where: str) -> None:
    """Refuse ``run.root``, ``run.name`` or ``run.group`` in a study file's ``args``: the study sets them for each run.

    The study's own ``--run.*`` options come after the file's, so ``args: {run.root: /data/runs}``
    was overridden without a word and the runs went to ``runs/<study>`` under the current directory.
    """
    given = [key] if key in ("run.root", "run.name", "run.group") else []
    if key == "run" and isinstance(value, dict):
        given = [f"run.{name}" for name in ("root", "name", "group") if name in value]
    if given:
        why, advice = SET_FOR_EACH_RUN[f"--{given[0]}"]
        raise ConfigError(
            f"study {study_path}: {where} sets {given[0]}, which the study sets for each run itself ({why})",
            _IN_THE_FILE_INSTEAD.get(given[0], advice),
        )


def _as_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_name(name: str, what: str) -> None:
    if not _SAFE_NAME.match(name):
        raise ConfigError(f"{what} {name!r} must be letters, digits and _ . + = - (it names a directory)")


def _find_config(config: str, study_path: Path) -> str:
    """Where a config named in a study is: relative to the working directory (as ``fit --config``
    reads it), else to the study file's directory or one of its parents, so that
    ``configs/reuters.yaml`` in ``configs/studies/x.yaml`` also works from outside the repository."""
    candidate = Path(str(config))
    if candidate.is_file():
        return str(candidate)
    if not candidate.is_absolute():
        for directory in [study_path.parent, *study_path.parent.resolve().parents]:
            if (directory / candidate).is_file():
                return str(directory / candidate)
    raise ConfigError(
        f"study {study_path}: config file {config} not found "
        "(paths are relative to the current directory, or to the study file's directory or a parent of it)"
    )


# -- planning and running ----------------------------------------------------------------------


def plan(study: Study, extra: list[str] | None = None, only: list[str] | None = None) -> list[Job]:
    """The jobs of a study with their state and command, in file order.

    Args:
        study: the study.
        extra: ``fit`` arguments from the command line, for every variant.
        only: run names or variant names to keep (default: all).
    """
    extra = list(extra or [])
    if only:
        known = {v.name for v in study.variants} | {v.variant for v in study.variants}
        missing = [name for name in only if name not in known]
        if missing:
            raise ConfigError(f"study {study.name} has no variant {', '.join(missing)}; it has {', '.join(sorted(known))}")
    jobs = []
    for variant in study.variants:
        if only and variant.name not in only and variant.variant not in only:
            continue
        run_dir = study.run_dir(variant)
        finished = is_finished_run(run_dir)
        resume = not finished and has_last_checkpoint(run_dir) and not finished_outside_study(run_dir)
        jobs.append(Job(variant.name, run_dir, fit_command(study, variant, extra, resume=resume), resume, variant, finished))
    return jobs


def fit_command(study: Study, variant: Variant, extra: list[str], resume: bool = False) -> list[str]:
    """``python -m lightning_hw fit`` for one variant, writing into ``<root>/<study>/<run name>``.

    Every config file comes first (the study's, then the variant's), then the study's ``args``,
    the variant's options and ``extra``: a later ``--config`` would set again every value its
    file holds, so a variant's ``config:`` (a whole experiment, ``max_epochs`` and all) would
    silently undo the ``args`` meant for every variant.
    """
    shared_configs, shared_options = split_configs(study.args)
    own_configs, own_options = split_configs(variant.args)
    args = [*shared_options, *own_options, *extra]
    command = [sys.executable, "-m", "lightning_hw", "fit"]
    for config in study.configs:
        command += ["--config", config]
    command += [*shared_configs, *own_configs, *args]
    command += ["--run.root", study.root, "--run.group", study.name, "--run.name", variant.name]
    if variant.seed is not None:
        command += ["--seed_everything", str(variant.seed)]
    if variant.fold is not None:
        command += ["--data.init_args.folds", str(study.folds), "--data.init_args.fold", str(variant.fold)]
    if not any(a == "--run.notes" or a.startswith("--run.notes=") for a in args):
        what = shlex.join(variant.args) or "the base config"
        command += ["--run.notes", f"study {study.name}, variant {variant.variant}: {what}"]
    if resume:
        command += ["--ckpt_path", "last"]  # Lightning finds <run>/checkpoints/last.ckpt
    return command


def split_configs(args: list[str]) -> tuple[list[str], list[str]]:
    """``(["--config", f, ...], [the other arguments])`` of arguments made by :func:`overrides_to_args`."""
    configs: list[str] = []
    options: list[str] = []
    for flag, value in zip(args[::2], args[1::2]):  # overrides_to_args gives (--key, value) pairs
        (configs if flag == "--config" else options).extend([flag, value])
    return configs, options


# -- sweeps ------------------------------------------------------------------------------------


def sweep_config(study: Study, study_file: str, extra: list[str] | None = None) -> dict[str, Any]:
    """A W&B sweep (grid over the variants, and seeds) that runs this study's variants.

    Each agent run calls ``python -m lightning_hw study FILE [EXTRA] --variant=NAME [--seed=N]``,
    which trains that one variant with ``python -m lightning_hw fit ...`` exactly as the
    study would (and skips it when it already finished on that machine).

    Args:
        study: the study.
        study_file: the study file's path as the agents will see it (relative to where they run).
        extra: the ``study`` command line's own arguments for every run (``fit`` options,
            ``--root``): the agents' runs get them too, as the study's runs would.
    """
    extra = list(extra or [])
    parameters: dict[str, Any] = {"variant": {"values": sorted({v.variant for v in study.variants}, key=_order(study))}}
    if study.seeds:
        parameters["seed"] = {"values": list(study.seeds)}
    return {
        "name": study.name,
        "project": _project(study, extra),
        "program": "lightning_hw/__main__.py",  # informational: the command below does not use ${program}
        "method": "grid",
        "parameters": parameters,
        "command": ["${env}", "python", "-m", "lightning_hw", "study", study_file, *extra, "${args}"],
    }


def _order(study: Study):
    first = {}
    for index, variant in enumerate(study.variants):
        first.setdefault(variant.variant, index)
    return first.__getitem__


def _project(study: Study, extra: list[str] = ()) -> str:
    """The W&B project the variants log to: ``run.project`` from the command line, the study or its base config."""
    given = [value for _, value in option_values(list(extra), "--run.project")]
    if given and given[-1]:  # the last one given wins, as in fit
        return given[-1]
    for args in [study.args, *(v.args for v in study.variants)]:
        if "--run.project" in args:
            return args[args.index("--run.project") + 1]
    for config in reversed(study.configs):
        project = ((yaml.safe_load(Path(config).read_text()) or {}).get("run") or {}).get("project")
        if project:
            return str(project)
    from lightning_hw.runs import RunConfig

    return RunConfig.project


# -- the command -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from lightning_hw.cli.warm_start import SWITCH_ENV  # the standard library only: help stays quick

    parser = argparse.ArgumentParser(
        prog="python -m lightning_hw study",
        description="Run a study: the variants of a grid (`variants:`) or the trials of an Optuna search (`search:`), "
        "each in its own `fit` process, into runs/<study>/. Unknown arguments (e.g. --trainer.max_epochs 2) "
        "are passed to every run's `fit`. The same command on another machine that sees the study's storage joins it.",
        epilog="Options the study sets for each run itself are refused: --run.name, --run.group, --run.root (give --root), "
        "--seed_everything beside `seeds:`, --data.init_args.folds/fold beside `folds:`, a searched option. "
        f"A study of {WARM_START_FROM} or more runs forks its fits from a process that has imported torch, "
        "Lightning and the other libraries once (seconds sooner each; each runs as a fresh `fit` would); "
        f"{SWITCH_ENV}=0 starts every run afresh.",
    )
    parser.add_argument("file", help="the study YAML (base config + variants, or + search)")
    parser.add_argument("--workers", "--jobs", type=int, default=1, dest="workers", help="runs to train at once in this process (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="grid studies: list the runs, their state and commands; run nothing")
    parser.add_argument("--root", default=None, help="runs root (default: the study's `root:` or runs)")
    parser.add_argument("--only", default=None, help="grid studies: comma-separated variant (or run) names to run")
    parser.add_argument("--variant", default=None, help="grid studies: run one variant (what a W&B sweep agent calls)")
    parser.add_argument("--seed", type=int, default=None, help="with --variant: the seed of that variant")
    parser.add_argument("--export-sweep", metavar="OUT", default=None, help="grid studies: write a W&B sweep config (grid over the variants) and exit")
    parser.add_argument(
        "--retry-running", action="store_true",
        help="first fail and queue again every RUNNING trial (a journal storage after a machine died; "
        "only when no other process runs the study)",
    )
    return parser


#: options a study sets for each of its runs itself (given to ``study``, they were silently overridden):
#: option -> (why, what to do)
SET_FOR_EACH_RUN = {
    "--run.name": ("it names each run after its variant, seed and fold, or trial-<N>", "leave it out"),
    "--run.group": ("the study's name is its runs' group", "leave it out (or change name: in the study file)"),
    "--run.root": ("its runs go under the study's --root", "give the study --root DIR instead"),
}


def check_extra_options(study: Study, extra: list[str], varied: dict[str, tuple[str, str]]) -> None:
    """Refuse a ``fit`` option given to ``study`` that the study itself sets for each run.

    Such an option was overridden without a word (``--data.init_args.folds 3`` beside a
    study's ``folds: 5``), or it overrode a searched parameter: every trial then trained with
    one lr while the study recorded the sampled ones. A grid variant's option may be
    overridden (``--trainer.max_epochs 2`` for a quick pass over every variant): the runs'
    configs record what they trained with, and a finished run's note says its arguments changed.

    Args:
        study: the study (its seeds and folds).
        extra: the ``fit`` arguments given to ``study``.
        varied: option (``--model.init_args.lr``) -> (what sets it per run, what to do instead): a search's parameters.

    Raises:
        ConfigError: naming the option, who sets it and what to do.
    """
    owned = dict(SET_FOR_EACH_RUN)
    if study.seeds:
        owned["--seed_everything"] = ("from its seeds:", "leave it out, or change seeds: in the study file")
    if study.folds:
        for option in ("--data.init_args.folds", "--data.init_args.fold"):
            owned[option] = (f"every fold of its folds: {study.folds}", "leave it out, or change folds: in the study file")
    owned.update(varied)
    given = [option for option in owned if option_values(extra, option)]
    if given:
        why, advice = owned[given[0]]
        raise ConfigError(f"study {study.name} sets {given[0]} for each run itself ({why}); {advice}")


def main(argv: list[str]) -> int:
    """``python -m lightning_hw study FILE [options] [fit arguments]``; returns the exit code."""
    parser = build_parser()
    options, extra = parser.parse_known_args(argv)
    if options.workers < 1:
        raise ConfigError("--workers must be at least 1")
    from lightning_hw.studies import search
    from lightning_hw.studies.runner import changed_note, run_study

    if search.is_search(options.file):
        grid_only = [f"--{n}" for n in ("only", "variant", "seed", "export-sweep", "dry-run") if getattr(options, n.replace("-", "_")) not in (None, False)]
        if grid_only:
            raise ConfigError(f"{', '.join(grid_only)}: for grid studies (`variants:`) only; a search runs --workers trials at a time")
        searched = search.load_search(options.file, root=options.root, extra=extra)
        check_extra_options(searched.study, extra, searched.searched_options())
        return _interruptible(lambda: run_study(searched, options.workers, extra, options.retry_running))
    study = load_study(options.file, root=options.root)
    check_extra_options(study, extra, {})  # a variant's option may be overridden: the command line wins, as documented
    if options.export_sweep:
        # The fit options and --root given here hold for every run, so for the agents' runs too
        # (without them the sweep trained what the file alone says, without a word).
        passed = [*extra, *(["--root", options.root] if options.root else [])]
        return _export_sweep(study, options.file, Path(options.export_sweep), passed)
    only = [name for name in (options.only or "").split(",") if name]
    if options.seed is not None and not options.variant:
        raise ConfigError("--seed selects the seed of --variant; give both (or neither)")
    if options.variant:
        # every run of the variant (its folds too), or those of one seed
        if options.seed is not None and options.seed not in study.seeds:
            # Else the fallback below selected the variant's every seed: `--seed 7` ran seeds 1 and 2.
            has = f"its seeds are {', '.join(map(str, study.seeds))}" if study.seeds else "it has no `seeds:`, leave out --seed"
            raise ConfigError(f"study {study.name} has no seed {options.seed}; {has}")
        only = [v.name for v in study.variants if v.variant == options.variant and options.seed in (None, v.seed)] or [options.variant]
    planned = plan(study, extra, only or None)
    if options.dry_run:
        counts = {state: sum(p.state == state for p in planned) for state in ("finished", "resume", "new", "stopped")}
        outside = sum(p.state == "stopped" and finished_outside_study(p.run_dir) for p in planned)
        dead = counts["stopped"] - outside
        stopped = f", {dead} stopped before a checkpoint" if dead else ""
        stopped += f", {outside} finished outside the study" if outside else ""
        stopped += " (not started: move aside to rerun)" if counts["stopped"] else ""
        print(
            f"Study {study.name}: {len(planned)} runs in {Path(study.root) / study.name} "
            f"({counts['finished']} finished, {counts['resume']} to resume, {counts['new']} to start{stopped})"
        )
        for p in planned:
            print(f"  {p.variant.name:<24} {p.state:<9} {shlex.join(p.command)}")
            # What the study itself says when it skips the run (a preview that left it out showed a
            # finished run as done with the arguments given now, which it did not train with).
            note = changed_note(study, p.variant, extra) if p.state == "finished" else ""
            if note:
                print(f"  {'':<24} {note}")
        return 0
    names = [p.variant.name for p in planned] if only else None
    return _interruptible(lambda: run_study(search.grid_search(study, study.options, extra), options.workers, extra, options.retry_running, names))


def _interruptible(run) -> int:
    """Run the study; Ctrl-C or SIGTERM stops it, and its fits save ``last.ckpt`` (exit 130 or 143).

    SIGTERM (a scheduler's preemption, ``timeout``, ``kill -TERM -<pgid>``) is taken as Ctrl-C is:
    its default action would end this process at once, leaving its fits without a reader for
    their output (they then fail on a broken pipe), the trials RUNNING in the storage and the
    end of each ``study.log`` unwritten. Like Ctrl-C in a terminal, a signal to the process
    group reaches the fits too; a SIGTERM to this process alone is passed on to them. Each stops
    at its next step with ``last.ckpt`` saved, and the runner queues it again before this process exits.
    """
    received: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        from lightning_hw.studies.runner import pass_on_signal

        received.append(signum)
        pass_on_signal(signum)  # a signal to this process alone would reach no fit
        raise KeyboardInterrupt

    watching = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = signal.signal(signal.SIGTERM, stop) if watching else None
    try:
        code = run()
    except KeyboardInterrupt:
        print("Study interrupted; run the same command again to continue it.", file=sys.stderr)
        code = 130
    finally:
        if watching:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    return 128 + signal.SIGTERM if received and code == 130 else code


def _export_sweep(study: Study, study_file: str, out: Path, extra: list[str]) -> int:
    if out.exists():  # like export and lr-find --write: a file of the user's is never replaced
        raise ConfigError(f"--export-sweep: {out} exists and is left unchanged; give another file or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# W&B sweep over the variants of study {study.name} ({study_file}).\n"
        f"#   wandb sweep {out}                 # prints the sweep id\n"
        "#   wandb agent ENTITY/PROJECT/SWEEP_ID   # on every machine, from the repository root\n"
    )
    out.write_text(header + yaml.safe_dump(sweep_config(study, study_file, extra), sort_keys=False))
    print(f"Sweep config written to {out} ({len(study.variants)} runs); start it with: wandb sweep {out}")
    return 0
