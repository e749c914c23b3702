"""Compare runs side by side, from their local ``metrics.csv`` (no W&B account needed).

    python -m lightning_hw report runs/reuters_heads                 # a study directory
    python -m lightning_hw report runs/quickstart/a runs/quickstart/b --out runs/ab-report
    python -m lightning_hw report runs/reuters_heads --publish      # also a W&B Report

Writes ``report.md`` and ``report.csv`` (one row per run: final and best train/val metrics,
the test metrics) and one PNG per metric with every run's curve, into ``<DIR>/report/``
(several directories: ``report/`` in their common parent), and prints the table. Repeats of
a variant, as a study names them, are also summarised as mean ± sd: over seeds
(``<variant>-seed<N>``: ``report-seeds.csv``), over folds (``<variant>-fold<i>``:
``report-folds.csv``), and both (``<variant>-seed<N>-fold<i>``: over folds per seed, then
over seeds).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import statistics
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_hw.atomic import atomic_open
from lightning_hw.errors import ConfigError, DataError
from lightning_hw.runs.config import flat_settings
from lightning_hw.runs.files import (
    CAVEATS_FILE, CONFIG_FILE, EVAL_DIR, LOCK_FILE, REPORT_DIR, STATUS_FILE, holds_record, read_status, recorded_directory, write_atomically,
)

if TYPE_CHECKING:  # imported where a report is written: the command's start stays light
    from lightning_hw.runs.interrupts import StopsAtOnce

METRICS_FILE = "metrics.csv"
STAGES = ("train", "val", "test")
# Repeats of one variant, as a study names them: <variant>-seed<N>, <variant>-fold<i>, <variant>-seed<N>-fold<i>.
SEED_SUFFIX = re.compile(r"^(?P<variant>.+)-seed\d+$")
FOLD_SUFFIX = re.compile(r"^(?P<variant>.+)-fold\d+$")
#: the count columns of :func:`repeat_table` (not averaged again when repeats of repeats are folded)
REPEAT_COUNTS = ("seeds", "folds")
#: what the repeats of one variant may differ in (a fold's, a seed's own settings, the run's name)
REPEAT_SETTINGS = ("data.init_args.fold", "seed_everything", "run.name", "run.notes", "ckpt_path")
#: settings that change where and how a run is recorded or shown, not what it trains or measures:
#: the repeats of one study on several machines may differ in them
BOOKKEEPING_SETTINGS = (
    "run.root", "run.project", "run.wandb", "run.tags", "run.job_type", "run.checkpoint_interval",
    "run.last_checkpoint_interval", "run.checkpoint_every_n_steps", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "data.init_args.num_workers",
)
#: the tables a report writes only when they apply (see :func:`main`)
OPTIONAL_TABLES = ("report-folds.csv", "report-seeds.csv", "evaluations.csv")
#: the names of the files a report wrote into its folder (hidden: not one of the report's files
#: to read), so that the next report there replaces or removes exactly those and nothing else
MANIFEST_FILE = ".report-files.json"


def is_test_metric(metric: str) -> bool:
    """Whether a metric comes from the test stage: ``test/acc``, or a plain module's ``test_accuracy``."""
    return metric.startswith(("test/", "test_"))


@dataclass
class Run:
    """One run's metrics, read from its ``metrics.csv``.

    Args:
        name: the label in tables and legends (the run directory relative to the compared root).
        directory: the run directory.
        curves: metric -> {epoch: value}; when an epoch was logged twice (a resumed run
            repeats the epoch it was interrupted in) the later row wins.
        status: how the run stands, from its ``status.json`` (see :func:`run_status`).
        cut_short: why its ``metrics.csv`` holds fewer epochs than it trained (see :func:`cut_short`), else ``None``.
    """

    name: str
    directory: Path
    curves: dict[str, dict[int, float]]
    status: str = "finished"
    cut_short: str | None = None

    def recorded_config(self) -> dict[str, Any] | None:
        """The run's ``config.yaml`` as YAML reads it (``{}`` for an empty one); ``None`` when it has none or it is no mapping."""
        import yaml

        try:
            config = yaml.safe_load((self.directory / CONFIG_FILE).read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return config if isinstance(config, dict) else None

    @property
    def epochs(self) -> int:
        """Epochs trained: one more than the last epoch with a train or val value."""
        seen = [max(c) for m, c in self.curves.items() if c and not is_test_metric(m)]
        return max(seen) + 1 if seen else 0


# -- reading -----------------------------------------------------------------------------------


def is_run_dir(directory: Path) -> bool:
    """Whether ``directory`` is a run: it has a ``metrics.csv``, or the ``status.json`` that ``fit`` writes.

    A run in its first epoch, or killed or interrupted in it, has its ``status.json`` but no
    metric row yet: it is still one of the runs compared, with its status and no values.
    """
    return (directory / METRICS_FILE).is_file() or (directory / STATUS_FILE).is_file()


def find_runs(directories: list[str | Path]) -> list[Path]:
    """Run directories (see :func:`is_run_dir`): each given directory that is a run, else every one below it."""
    found: list[Path] = []
    for directory in map(Path, directories):
        if not directory.is_dir():
            raise DataError(f"{directory} is not a directory; give a study directory (runs/<study>) or run directories")
        if is_evaluation_dir(directory):
            raise DataError(not_a_run(directory))
        if is_run_dir(directory):
            found.append(directory)
            continue
        # <run>/eval/<stage>-<time>/ holds an evaluation of a run, not a run (see evaluations()).
        marks = [*directory.rglob(METRICS_FILE), *directory.rglob(STATUS_FILE)]
        below = sorted({p.parent for p in marks if not is_evaluation_dir(p.parent)})
        if not below:
            raise DataError(untrained_study_run(directory) or f"no runs under {directory} (no {METRICS_FILE}); train some first, e.g. with `python -m lightning_hw study`")
        found += below
    # One run named twice in other spellings (relative and absolute, through a symlink) is compared
    # once: listed twice, it also counted twice in a mean over its variant's folds or seeds.
    by_location: dict[Path, Path] = {}
    for run in found:
        by_location.setdefault(run.resolve(), run)
    return list(by_location.values())


def is_evaluation_dir(directory: Path) -> bool:
    """Whether ``directory`` is an evaluation's folder (``<run>/eval/<stage>-<time>/``), not a run.

    Its parent's name alone does not say it: a study (``--run.group``) may be named ``eval``,
    and its runs were refused as evaluations. A run has the ``status.json`` that ``fit`` writes;
    an evaluation never has one.
    """
    return directory.parent.name == EVAL_DIR and not (directory / STATUS_FILE).is_file()


def not_a_run(evaluation: Path) -> str:
    """Why ``evaluation`` (``<run>/eval/<stage>-<time>/``) is no run to report, and what to report instead.

    It has a ``metrics.csv``, so it passed for a run of 0 epochs, and its report went into
    the evaluated run's record (``<evaluation>/report/``).
    """
    owner = evaluation.parent.parent
    what = f"{evaluation} is an evaluation of a checkpoint (validate/test/predict), not a run"
    if not (evaluation / METRICS_FILE).is_file():
        # predict's: no scores, so no report lists it (evaluations() reads metrics.csv); there is no metrics.csv to name.
        predictions = sorted(evaluation.glob("predictions*.csv"))
        return f"{what}, and no report lists it (it holds no scores); its predictions are in " + (
            ", ".join(map(str, predictions)) if predictions else str(evaluation)
        )
    if not is_run_dir(owner) and not _holds_runs(owner):
        # A checkpoint from outside any run, evaluated in a group with no run yet: reporting the
        # group would say "no runs under" it.
        return f"{what}, and {owner} holds no run whose report would list it; its scores are in {evaluation / METRICS_FILE}"
    whose = f"its run, {owner}," if is_run_dir(owner) else f"the runs of {owner},"
    return f"{what}; report {whose} whose report lists its evaluations apart from its epochs"


def _holds_runs(directory: Path) -> bool:
    """Whether a run lies below ``directory`` (what :func:`find_runs` would find there)."""
    marks = [*directory.rglob(METRICS_FILE), *directory.rglob(STATUS_FILE)]
    return any(not is_evaluation_dir(mark.parent) for mark in marks)


def read_metrics(path: Path) -> dict[str, dict[int, float]]:
    """Per-metric ``{epoch: value}`` from a Lightning ``metrics.csv`` (empty cells skipped).

    Raises:
        DataError: the file is not a CSV of numbered epochs (damaged, or not written by Lightning).
    """
    curves: dict[str, dict[int, float]] = {}
    try:
        text = Path(path).read_bytes().decode()
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [(reader.line_num, row) for row in reader]
        if rows and not text.endswith("\n"):
            # A last row without its newline is still being written (a run training now appends
            # rows) or was cut short by a crash: its last number may be cut too ("0.78125" read
            # as "0." is 0.0), so it is left out rather than shown as a value the run never had.
            rows.pop()
        for line_num, row in rows:
            when = row.get("epoch") or row.get("step")
            if when in (None, ""):
                continue
            try:
                epoch = int(float(when))
            except ValueError:
                raise DataError(_unreadable(path, f"line {line_num}: epoch {when!r} is not a number")) from None
            for key, value in row.items():
                if key in ("epoch", "step") or value in (None, ""):
                    continue
                if key is None:  # the extra cells of a longer row (csv's restkey): no column of their own
                    continue
                try:
                    curves.setdefault(key, {})[epoch] = float(value)
                except ValueError:
                    # Lightning writes numbers or nothing: a word here (an edit by hand) was read as no
                    # value, and the report showed another epoch's number as the run's without a word.
                    raise DataError(_unreadable(path, f"line {line_num}: {key} {value!r} is not a number")) from None
    except UnicodeDecodeError:
        raise DataError(_unreadable(path, "not UTF-8 text")) from None
    except csv.Error as err:
        raise DataError(_unreadable(path, str(err))) from None
    return curves


def _unreadable(path: Path, why: str) -> str:
    # One damaged run must not hide the others for good: say how to report on them.
    return f"{path} cannot be read as a metrics file ({why}); repair it, or leave its run out by naming the other runs"


def run_status(directory: Path) -> str:
    """How a run stands: its ``status.json``'s status (``finished``, ``interrupted``, ``failed``...).

    A run that says ``training`` but whose command no longer holds its lock died without a
    word (SIGKILL, out of memory): ``died while training``. A run without a status (not
    written by ``fit``) counts as ``finished``; one whose ``status.json`` cannot be read is
    ``unknown (status.json unreadable)``.
    """
    from lightning_hw.runs.lifecycle import live_holder

    recorded = read_status(directory)
    if not recorded and (directory / STATUS_FILE).is_file():
        # A damaged record (cut by a full disk, edited by hand) says nothing of how the run
        # ended: "finished" would be a guess, and would hide the status column.
        return "unknown (status.json unreadable)"
    status = str(recorded.get("status") or "finished")
    if status == "training" and live_holder(directory / LOCK_FILE) is None:
        return "died while training"
    return status


def _curves(directory: Path) -> dict[str, dict[int, float]]:
    """A run's metrics; none before its first metric row is written (see :func:`is_run_dir`)."""
    path = directory / METRICS_FILE
    return read_metrics(path) if path.is_file() else {}


def load_runs(directories: list[str | Path]) -> tuple[list[Run], Path]:
    """The runs under ``directories`` and the directory their names are relative to."""
    paths = find_runs(directories)
    base = Path(os.path.commonpath([p.resolve() for p in paths]))
    if len(paths) == 1:
        base = base.parent
    runs = [Run(str(p.resolve().relative_to(base)), p, _curves(p), run_status(p)) for p in paths]
    for run in runs:
        run.cut_short = cut_short(run)
        if run.cut_short:
            run.status = "finished, metrics.csv cut short"
    return runs, base


def cut_short(run: Run) -> str | None:
    """Why a finished run's ``metrics.csv`` holds fewer epochs than the run trained; ``None`` when it holds them all.

    A file cut short (a copy that stopped, a full disk, emptied by hand) still reads as a
    shorter run: its last whole row passed for the run's final epoch, with no word. The epochs
    trained come from ``status.json`` (``fit`` records them when the run ends); a run still
    training, or stopped, may lack its last epoch's rows by right, so only a finished one is checked.
    """
    recorded = read_status(run.directory)
    trained = recorded.get("epoch")
    if recorded.get("status") != "finished" or not isinstance(trained, int) or trained <= run.epochs:
        return None
    shown = f"{run.name}'s values are those of its last epoch there, not the run's" if run.epochs else f"{run.name} has no values here"
    return (
        f"{run.directory / METRICS_FILE} holds {run.epochs} of the {trained} epochs its {STATUS_FILE} says the run "
        f"trained (cut short or damaged): {shown}"
    )


def untrained_study_run(directory: Path) -> str | None:
    """Why ``directory``, a study's run folder that holds only the study's log, has no run; ``None`` for any other folder.

    Its variant's (or trial's) ``fit`` was refused before training (a typo of its own): "no runs
    under it; train some first" sent the user to train what the study had already tried.
    """
    from lightning_hw.studies.grid import LOG_FILE, last_error_line

    if not (directory / LOG_FILE).is_file():
        return None
    log = directory / LOG_FILE
    error = last_error_line(directory)
    if error is None:  # its fit may be starting now, in another process
        return f"{directory} holds no run yet, only study {directory.parent.name}'s log (no error in it: its fit may still be starting); see {log}"
    return (f"{directory} holds no run: study {directory.parent.name}'s fit of it never trained ({error}); "
            f"see {log}, fix the study file and run the study again")


def untrained_variants(groups: list[Path]) -> list[str]:
    """One line per study variant (or trial) in ``groups`` that never trained, with its error.

    A variant whose ``fit`` was refused before training (a typo of its own) leaves only the
    study's log in its folder: no run, so the comparison would pass over it without a word.

    Args:
        groups: the study directories the report was asked for (not run directories).
    """
    from lightning_hw.studies.grid import LOG_FILE, last_error_line

    lines = []
    for group in groups:
        for log in sorted(group.glob(f"*/{LOG_FILE}")):
            if is_run_dir(log.parent):
                continue
            error = last_error_line(log.parent)
            if error:
                lines.append(f"{log.parent.name} did not train ({error}); see {log}")
            else:  # its fit may be starting now, in another process
                lines.append(f"{log.parent.name} has no run yet (no error in its log: it may still be starting); see {log}")
    return lines


def mixed_tasks(runs: list[Run]) -> list[str]:
    """A line naming the runs' tasks when the runs compared are of more than one task class.

    Each task defines its own loss and metrics: a classifier's cross-entropy and a landmark
    regressor's MSE share the column ``train/loss``, not a scale, so the table would read as if
    one run did better. Only a note, not a refusal: comparing differently defined losses may be
    the point (E8's heads are all one ``Classifier`` task, whose heads define the loss). A run's
    task is the class named by its ``config.yaml``'s ``model.class_path``, by its class name (a
    config may spell ``lightning_hw.Classifier`` or ``Classifier``); runs without one are not counted.
    """
    tasks: dict[str, list[str]] = {}
    for run in runs:
        model = (run.recorded_config() or {}).get("model")
        task = model.get("class_path") if isinstance(model, dict) else model
        if isinstance(task, str) and task:
            tasks.setdefault(task.rsplit(".", 1)[-1], []).append(run.name)
    if len(tasks) < 2:
        return []
    which = "; ".join(f"{task}: {', '.join(names)}" for task, names in sorted(tasks.items()))
    return [
        f"the runs are of different tasks ({which}): each task defines its own loss and metrics, "
        "so compare a column's values only between runs of one task"
    ]


def evaluations(runs: list[Run], groups: list[Path] = ()) -> tuple[list[str], list[dict[str, Any]]]:
    """``validate``/``test`` runs on the runs' checkpoints (``<run>/eval/<stage>-<time>/``), one row each.

    They are kept apart from training: an evaluation is not an epoch of the run it evaluates.
    Evaluations of checkpoints from outside any run sit in ``<group>/eval/``: pass the group
    directories in ``groups`` (their rows name no run). Each row names the checkpoint it scored
    (see :func:`evaluated_checkpoint`). An evaluation with a ``caveats.txt``
    (its split differs from training's, say) gets a ``caveat`` column that says it.
    """
    rows: list[dict[str, Any]] = []
    places = [(run.name, run.directory) for run in runs] + [("-", Path(group)) for group in groups]
    for label, place in places:
        for directory in sorted((place / EVAL_DIR).glob(f"*/{METRICS_FILE}")):
            row: dict[str, Any] = {
                "run": label, "evaluation": directory.parent.name, "checkpoint": evaluated_checkpoint(directory.parent, in_run=label != "-"),
            }
            for metric, curve in read_metrics(directory).items():
                row[metric] = curve[max(curve)]
            caveats = directory.parent / CAVEATS_FILE
            if caveats.is_file():  # e.g. its split differs from training's: the scores may be too good
                row["caveat"] = " / ".join(caveats.read_text().splitlines())
            rows.append(row)
    metrics = sorted({k for row in rows for k in row} - {"run", "evaluation", "checkpoint", "caveat"})
    caveat = ["caveat"] if any("caveat" in row for row in rows) else []
    return ["run", "evaluation", "checkpoint", *metrics, *caveat], rows


def evaluated_checkpoint(evaluation: Path, in_run: bool = True) -> str:
    """The checkpoint an evaluation scored, from its ``config-<stage>.yaml``.

    A run's evaluations of its best and its last checkpoint give other scores; without the
    name they were told apart only by their time. For an evaluation filed under a run the file
    name is enough: it is that run's checkpoint. One of a checkpoint from outside any run
    (``<group>/eval/``, ``in_run`` false) gets the path it recorded, as given: two downloads
    may share a name (``model.ckpt``). ``-`` when the config is missing or unreadable.
    """
    import yaml

    for config in sorted(evaluation.glob("config-*.yaml")):
        try:
            recorded = yaml.safe_load(config.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(recorded, dict) and isinstance(recorded.get("ckpt_path"), str):
            return Path(recorded["ckpt_path"]).name if in_run else recorded["ckpt_path"]
    return "-"


# -- the table ---------------------------------------------------------------------------------


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (losses and errors go down)."""
    from lightning_hw.runs.config import monitor_mode

    return monitor_mode(metric) == "max"


def metric_names(runs: list[Run]) -> list[str]:
    """The metric names after the stage prefix (``acc``, ``f1``, ``loss``), loss last."""
    names = {m.split("/", 1)[1] for run in runs for m in run.curves if m.split("/", 1)[0] in STAGES and "/" in m}
    return sorted(names, key=lambda n: (not higher_is_better(n), n))


def table(runs: list[Run]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows: per metric, final and best train and val values (best with its epoch), and test.

    Returns:
        The column names and one dict per run (values are floats, ints or ``None``).
    """
    columns = ["run", "epochs"]
    # A run still training or stopped early must not read as a finished one: its "final" values
    # are those of the epoch it had reached, and its test metrics may be an earlier attempt's.
    if any(run.status != "finished" for run in runs):
        columns.append("status")
    names = metric_names(runs)
    for name in names:
        for stage in ("train", "val"):
            key = f"{stage}/{name}"
            if any(key in run.curves for run in runs):
                columns += [key, f"best {key}", f"best {key} epoch"]
        if any(f"test/{name}" in run.curves for run in runs):
            columns.append(f"test/{name}")
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.name, "epochs": run.epochs, "status": run.status}
        for column in columns[2:]:
            if column == "status" or column.startswith("best ") and column.endswith(" epoch"):
                continue
            metric = column.removeprefix("best ")
            curve = run.curves.get(metric) or {}
            if not curve:
                row[column] = None
            elif column.startswith("best "):
                pick = max if higher_is_better(metric) else min
                epoch = pick(curve, key=lambda e: (curve[e], -e) if pick is max else (curve[e], e))
                row[column], row[f"{column} epoch"] = curve[epoch], epoch
            else:
                row[column] = curve[max(curve)]
        rows.append({c: row.get(c) for c in columns})
    return columns, rows


def repeat_table(
    columns: list[str], rows: list[dict[str, Any]], suffix: re.Pattern[str], count: str
) -> tuple[list[str], list[dict[str, Any]]] | None:
    """Mean and standard deviation over the repeats (seeds, folds) of each variant.

    Args:
        columns: the table's columns; the first names the run (or variant).
        rows: one row per run, as :func:`table` makes them, or rows of a table made here:
            a ``(mean, sd)`` cell then counts as its mean (repeated cross-validation: the
            mean over folds of each seed, then mean ± sd over the seeds).
        suffix: the name of a repeat, e.g. :data:`FOLD_SUFFIX`; its ``variant`` group names
            what is repeated.
        count: the name of the column counting the repeats (``seeds``, ``folds``).

    Returns:
        Columns and one row per variant, with ``(mean, sd)`` cells (sd ``None`` for one value);
        ``None`` unless every row's name is a repeat.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        name = Path(row[columns[0]])
        match = suffix.match(name.name)
        if match is None:
            return None
        groups.setdefault(str(name.parent / match["variant"]), []).append(row)
    kept = [c for c in columns[1:] if not c.endswith(" epoch") and c not in (*REPEAT_COUNTS, "status")]
    out_columns = ["variant", count, *kept]
    out_rows = []
    for variant, members in groups.items():
        row: dict[str, Any] = {"variant": variant, count: len(members)}
        for column in kept:
            values = [_mean(m[column]) for m in members if m.get(column) is not None]
            # One value has no spread: an sd of 0 would claim the repeats agreed.
            row[column] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None) if values else None
        out_rows.append(row)
    return out_columns, out_rows


def unlike_repeats(runs: list[Run]) -> list[str]:
    """Notes on the repeats (folds, seeds) of a variant that were not trained alike, or miss folds.

    A study run again after its file changed (``folds: 3`` then ``5``, another ``lr``) skips the
    runs that finished and trains the others with the new settings; their mean ± sd would then
    mix two experiments (the validation folds of a 3-fold and a 5-fold split overlap). Each
    run's recorded ``config.yaml`` says what it trained with; runs without one are not checked.

    Returns:
        One line per variant whose repeats differ in a setting other than :data:`REPEAT_SETTINGS`
        and :data:`BOOKKEEPING_SETTINGS`, or (per seed) whose fold runs are fewer than the ``folds`` they recorded.
    """
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for run in runs:
        path = Path(run.name)
        fold = FOLD_SUFFIX.match(path.name)
        seed = SEED_SUFFIX.match(fold["variant"] if fold else path.name)
        recorded = run.recorded_config() if fold or seed else None
        if recorded is None:
            continue
        config = flat_settings(recorded)
        variant = seed["variant"] if seed else fold["variant"]
        groups.setdefault(str(path.parent / variant), []).append((path.name, config))
    notes = []
    for variant, members in groups.items():
        for key in sorted({k for _, config in members for k in config} - set(REPEAT_SETTINGS) - set(BOOKKEEPING_SETTINGS)):
            values: dict[str, list[str]] = {}
            for name, config in members:
                values.setdefault(repr(config.get(key)), []).append(name)
            if len(values) > 1:
                spread = "; ".join(f"{value} in {', '.join(names)}" for value, names in values.items())
                notes.append(
                    f"{variant}: its runs differ in {key} ({spread}), so its mean ± sd mixes experiments; move "
                    "aside the runs of the setting you no longer want and run the study again before comparing"
                )
                break
        else:  # trained alike: are all the folds there (for each seed)?
            folds = members[0][1].get("data.init_args.folds")
            counts: dict[str, int] = {}
            for name, _ in members:
                fold = FOLD_SUFFIX.match(name)
                if fold:
                    counts[fold["variant"]] = counts.get(fold["variant"], 0) + 1
            short = [f"{name} has {count}" for name, count in counts.items() if isinstance(folds, int) and count != folds]
            if short:
                notes.append(f"{variant}: of its {folds} folds, {', '.join(short)}; its mean ± sd is not over every fold")
    return notes


def _mean(value: Any) -> float:
    return value[0] if isinstance(value, tuple) else value


def markdown(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """A Markdown table; a best value is shown with its epoch, a (mean, sd) pair as mean ± sd."""
    shown = [c for c in columns if not c.endswith(" epoch")]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join(" --- " for _ in shown) + "|"]
    for row in rows:
        cells = []
        for column in shown:
            cell = _format(row.get(column))
            if column.startswith("best ") and row.get(f"{column} epoch") is not None:
                cell += f" (ep {row[f'{column} epoch']})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return f"{value[0]:.4f} ± {value[1]:.4f}" if value[1] is not None else f"{value[0]:.4f} (1 value)"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """The table as CSV (full precision, empty cells where a run lacks a metric).

    A (mean, sd) cell becomes two columns, ``<column> mean`` and ``<column> sd``.
    """
    flat_columns = []
    for column in columns:
        paired = any(isinstance(row.get(column), tuple) for row in rows)
        flat_columns += [f"{column} mean", f"{column} sd"] if paired else [column]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=flat_columns)
        writer.writeheader()
        for row in rows:
            flat: dict[str, Any] = {}
            for column in columns:
                value = row.get(column)
                if f"{column} mean" in flat_columns:
                    mean, sd = value if value is not None else ("", "")
                    flat[f"{column} mean"], flat[f"{column} sd"] = mean, "" if sd is None else sd
                else:
                    flat[column] = "" if value is None else value
            writer.writerow(flat)


# -- the figures -------------------------------------------------------------------------------


def plotted_metrics(runs: list[Run]) -> list[str]:
    """Every metric with a curve (test metrics are single values: they are in the table)."""
    keys = {m for run in runs for m in run.curves if not m.startswith("test/")}
    order = {stage: i for i, stage in enumerate(STAGES)}
    return sorted(keys, key=lambda m: (m.split("/", 1)[-1], order.get(m.split("/", 1)[0], 9), m))


def figure(runs: list[Run], metric: str):
    """One figure: ``metric`` against epoch, one line per run that logged it."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, nothing global
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for run in runs:
        curve = run.curves.get(metric)
        if not curve:
            continue
        epochs = sorted(curve)
        ax.plot(epochs, [curve[e] for e in epochs], marker="o" if len(epochs) <= 30 else None, markersize=3, label=run.name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(metric)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def figure_file(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric) + ".png"


def figure_files(metrics: list[str]) -> dict[str, str]:
    """A file name per metric, none shared: ``train/loss`` and a plugin's ``train_loss`` both give train_loss.png.

    The ``<stage>/<name>`` metrics of the contract keep the plain name; another metric whose
    name is taken gets ``-2``, ``-3``, ... before ``.png``.

    Args:
        metrics: the metrics, in the order the figures are listed (the returned dict's order).
    """
    files: dict[str, str] = {}
    for metric in sorted(metrics, key=lambda m: m.split("/", 1)[0] not in STAGES or "/" not in m):
        name = figure_file(metric)
        stem, count = name.removesuffix(".png"), 1
        while name in files.values():
            count += 1
            name = f"{stem}-{count}.png"
        files[metric] = name
    return {metric: files[metric] for metric in metrics}


# -- W&B Report --------------------------------------------------------------------------------


def wandb_report(runs: list[Run], table_md: str, metrics: list[str], title: str, entity: str, project: str | None = None):
    """A W&B Report (wandb-workspaces) with the tables and one line plot per metric, for the runs' groups.

    Building it talks to no server; ``.save()`` publishes it.

    Args:
        runs: the runs (their W&B group is their parent directory's name, as ``fit`` logs it).
        table_md: the Markdown of ``report.md`` without title and figures: the runs' table, the
            mean ± sd over folds and seeds with their notes, the evaluations.
        metrics: the metrics to plot against ``epoch``.
        title: the report's title.
        entity: the W&B entity (user or team) that owns the report.
        project: the W&B project; default: ``run.project`` of the first run's ``config.yaml``.
    """
    try:
        import wandb_workspaces.reports.v2 as wr
        from wandb_workspaces import expr
    except ImportError:
        raise ConfigError("--publish needs wandb-workspaces: pip install -e '.[reports]'") from None
    project = project or _project_of(runs[0])
    groups = list(dict.fromkeys(run.directory.resolve().parent.name for run in runs))
    runsets = [
        wr.Runset(entity=entity, project=project, name=group, filters=expr.And(expr.Metric("Group") == group)) for group in groups
    ]
    panels = [wr.LinePlot(title=metric, x="epoch", y=[metric]) for metric in metrics]
    return wr.Report(
        project=project,
        entity=entity,
        title=title,
        description=f"{len(runs)} runs of {', '.join(groups)}, compared by `python -m lightning_hw report`.",
        blocks=[
            wr.H1(text=title),
            wr.MarkdownBlock(text=table_md),
            wr.PanelGrid(runsets=runsets, panels=panels),
        ],
    )


def _project_of(run: Run) -> str:
    import yaml

    from lightning_hw.runs import RunConfig

    config_file = run.directory / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    return ((config or {}).get("run") or {}).get("project") or RunConfig.project


def check_can_publish(runs: list[Run]) -> None:
    """Fail in one line unless W&B is logged in and not kept offline by ``WANDB_MODE``; point at runs that still need ``wandb sync``."""
    from lightning_hw.runs import wandb_mode

    if wandb_mode("auto") != "online":
        env_mode = os.environ.get("WANDB_MODE")
        if env_mode in ("offline", "disabled"):
            # Logged in or not, this setting keeps W&B offline: `wandb login` would change nothing.
            raise ConfigError(
                f"--publish needs W&B online, but WANDB_MODE={env_mode} is set in the environment: "
                "run it with WANDB_MODE=online (and `wandb sync` for runs logged offline)"
            )
        raise ConfigError("--publish needs a W&B login: run `wandb login` (and `wandb sync` for runs logged offline)")
    for run in runs:
        offline = sorted((run.directory / "wandb").glob("offline-run-*"))
        if offline and not list((run.directory / "wandb").glob("run-*")):
            print(f"note: {run.name} was logged offline; upload it first with: wandb sync {run.directory / 'wandb'}/offline-run-*")


# -- the command -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_hw report",
        description="Compare runs: a table of final and best metrics (Markdown + CSV) and one PNG per metric.",
    )
    parser.add_argument("dirs", nargs="+", help="a study directory (runs/<study>) or run directories")
    parser.add_argument("--out", default=None, help="output directory (default: <DIR>/report, or report/ in the common parent)")
    parser.add_argument("--title", default=None, help="report title (default: from the directories)")
    parser.add_argument("--publish", action="store_true", help="also create a W&B Report (needs `wandb login` and the reports extra)")
    parser.add_argument("--entity", default=None, help="W&B entity for --publish (default: your default entity)")
    parser.add_argument("--project", default=None, help="W&B project for --publish (default: the runs' run.project)")
    return parser


@contextlib.contextmanager
def staged(out: Path, made: Path | None = None, elsewhere: dict[str, Path] | None = None, given: bool = False) -> Iterator[Path]:
    """A hidden folder in ``out`` to write a report into, moved into ``out`` only once it is whole.

    Ctrl-C while the figures are drawn (seconds for a big study) left the new ``report.csv``
    beside the earlier report's ``report.md`` and figures, two reports passing for one; now the
    earlier report stays as it was and the partial one is removed. An earlier report's files that
    this one does not write (its runs are no longer all folds, a search's importance plot that
    fewer trials no longer give) are removed at the move: the folder then holds exactly this
    report's files, and :data:`MANIFEST_FILE` names them for the next report. A file of the same
    name as one of this report's that no earlier report wrote (the user's own ``report.md``) is
    never replaced: the report is refused, and its folder left as it was.

    Args:
        out: the report folder.
        made: the topmost folder made for this report (``out`` or one above it), if any: a
            report that stops removes what it made again (the message says it is as it was).
        elsewhere: files written into the stage under these names that belong outside ``out``
            (a search's ``best.yaml``, in its study directory): they replace their targets
            together with the others, and a report that stops leaves them as they were too.
        given: ``out`` came from ``--out`` (see :func:`earlier_report_files`).

    Raises:
        RunInterrupted: Ctrl-C or SIGTERM while writing, saying that ``out`` is as it was.
        ConfigError: ``out`` (or ``elsewhere``) holds a file of one of the report's names that no
            earlier report wrote (see :func:`check_replaces_only_reports`).
    """
    stage = Path(tempfile.mkdtemp(prefix=".report-partial-", dir=out))
    with _signals_while_writing(out) as (moving, stops), contextlib.ExitStack() as beside_targets:
        try:
            yield stage
            # Checked again on what was written (main checks first, before drawing): a search's trial
            # completed by another machine meanwhile adds a best.yaml or a plot.
            earlier = check_replaces_only_reports(out, [file.name for file in stage.iterdir()], given, elsewhere)
            for name, target in (elsewhere or {}).items():
                if (stage / name).is_file():
                    # Copied now into a temporary file beside its target (which may be on another file
                    # system than the stage, so no rename from here); renamed over it at the move below,
                    # or removed by atomic_open if the report stops first.
                    beside_targets.enter_context(atomic_open(target, "wb")).write((stage / name).read_bytes())
                    (stage / name).unlink()
            written = sorted(file.name for file in stage.iterdir())
            stops.raise_received()  # a stop that a finalizer swallowed while writing
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            for folder in [out, *out.parents] if made is not None else []:
                with contextlib.suppress(OSError):  # only while empty: never anything of the user's
                    folder.rmdir()
                if folder == made:
                    break
            raise
        moving.set()  # from here a signal waits: half the files moved would be two reports in one
        beside_targets.close()  # renames each file written beside its target over that target
        # Listed before any file moves (the earlier report's and this one's), so that a move cut short
        # (a power cut) leaves no file of a report here that the next report would not know as its own.
        _write_manifest(out, sorted(earlier | set(written)))
        # A file an earlier report wrote here and this one does not (a table, a figure) would pass for
        # part of this report, and could contradict report.md. Only a report's own files: never the user's.
        for name in sorted(earlier - set(written)):
            (out / name).unlink(missing_ok=True)
        for name in sorted(written, key=lambda name: name == "report.md"):  # report.md last: it names the others
            os.replace(stage / name, out / name)
        _write_manifest(out, written)
        stage.rmdir()


def check_replaces_only_reports(out: Path, names: list[str], given: bool, elsewhere: dict[str, Path] | None = None) -> set[str]:
    """Refuse a report that would replace a file no report wrote; return the earlier report's files in ``out``.

    Args:
        out: the report folder.
        names: the names of the files the report writes (those in ``elsewhere`` go there instead).
        given: ``out`` came from ``--out`` (see :func:`earlier_report_files`).
        elsewhere: names written outside ``out``, and where (a search's ``best.yaml``).

    Raises:
        ConfigError: ``out`` holds a file of one of ``names`` that no earlier report there wrote
            (the user's own ``report.md`` in ``--out notes``), or a search's study directory holds a
            ``best.yaml`` no report wrote (see :func:`~lightning_hw.studies.search_report.written_by_a_report`).
    """
    from lightning_hw.studies.search_report import written_by_a_report

    elsewhere = elsewhere or {}
    in_out = sorted(name for name in set(names) if name not in elsewhere)
    earlier = earlier_report_files(out, in_out, given)
    theirs = [name for name in in_out if name not in earlier and os.path.lexists(out / name)]
    if theirs:  # the user's own (--out notes/ holding notes/report.md): replacing it would lose it
        them = "them" if len(theirs) > 1 else "it"
        raise ConfigError(
            f"{'--out ' if given else ''}{out} holds {', '.join(theirs)}, which no earlier report there wrote "
            f"(a report lists its files in {MANIFEST_FILE}), and this report would replace {them}; move {them} aside, "
            "or give another folder with --out"
        )
    for name in sorted(set(names) & set(elsewhere)):
        target = elsewhere[name]
        if os.path.lexists(target) and not written_by_a_report(target):  # the user's own config of that name
            raise ConfigError(
                f"{target} is not a {name} a report wrote (those open with '# Best trial N of search ...'), and this "
                f"report would replace it with the best trial's config; move it aside (or rename it) and report again"
            )
    return earlier


def earlier_report_files(out: Path, written: list[str], given: bool) -> set[str]:
    """The files an earlier report wrote in ``out``, which a new report there may replace or remove.

    They are the names in its :data:`MANIFEST_FILE`. A report written before reports kept one (a
    ``report.md``, no manifest) counts the files there of the names this report writes or only a
    report writes (its tables, a search's files): in the default report folder (``<DIR>/report``)
    always, in a folder given with ``--out`` (``--out runs/ab``, which any earlier version wrote
    too) only when it is recognisably a report's (see :func:`_older_report`), as it may be any
    folder of the user's, whose ``report.md`` is theirs. Any other file in ``out`` is not a
    report's: never replaced nor removed.

    Args:
        out: the report folder.
        written: the names of the files the new report writes.
        given: ``out`` came from ``--out``.
    """
    from lightning_hw.studies.search_report import SEARCH_REPORT_FILES

    try:
        names = json.loads((out / MANIFEST_FILE).read_text())["files"]
        # Plain file names only: a hand-edited "", "." or ".." would have unlink() reach the folder itself or above.
        if isinstance(names, list) and all(isinstance(name, str) and "/" not in name and name.strip(".") for name in names):
            return set(names)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if not (out / "report.md").is_file() or (given and not _older_report(out)):
        return set()
    return {name for name in {*written, *OPTIONAL_TABLES, *SEARCH_REPORT_FILES} if (out / name).is_file()}


def _older_report(out: Path) -> bool:
    """Whether ``out`` holds a report written before reports kept a :data:`MANIFEST_FILE`.

    Such a ``report.md`` opens with its title and then the table whose columns head its
    ``report.csv`` (as :func:`markdown` shows them, without the ``best ... epoch`` columns):
    a user's own ``report.md`` and ``report.csv`` do not.
    """
    try:
        lines = (out / "report.md").read_text().splitlines()
        with (out / "report.csv").open(newline="") as file:
            columns = next(csv.reader(file))
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error):
        return False
    header = "| " + " | ".join(column for column in columns if not column.endswith(" epoch")) + " |"
    return columns[:1] == ["run"] and len(lines) > 2 and lines[0].startswith("# ") and lines[2] == header


def _write_manifest(out: Path, names: list[str]) -> None:
    """List ``names`` as the report's files in ``out``'s :data:`MANIFEST_FILE` (written whole, or not at all)."""
    write_atomically(out / MANIFEST_FILE, json.dumps({"files": names}, indent=1) + "\n")


@contextlib.contextmanager
def _signals_while_writing(out: Path) -> Iterator[tuple[threading.Event, StopsAtOnce]]:
    """SIGINT and SIGTERM stop a report being written, and wait for one being moved into place.

    While writing, both raise :class:`RunInterrupted` (exit 130 or 143), which unwinds through
    :func:`staged`'s clean-up; SIGTERM's default action would have ended the process at once,
    leaving the hidden stage folder in ``out``. Once the yielded event is set (the files are
    moving in), a signal is said and obeyed when the move is done. Also yields the signals received.

    A handler that Python runs inside a finalizer (a ``__del__`` or weakref callback, of which
    matplotlib runs many while drawing) cannot stop anything: Python prints the exception as
    "Exception ignored in ..." with a traceback and goes on. Such a stop is kept quiet and
    raised by :meth:`StopsAtOnce.raise_received`, which :func:`staged` calls before the files move in.
    """
    from lightning_hw.runs.interrupts import SIGNALS, StopsAtOnce, quiet_swallowed_stops, stopped_at_once

    moving, stops = threading.Event(), StopsAtOnce(f"report stopped; {out} is as it was")

    def handle(signum: int, frame: Any) -> None:
        stop = stops.stop(signum)
        if not moving.is_set():
            raise stop

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield moving, stops
        return
    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        with quiet_swallowed_stops():
            yield moving, stops
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    if stops.received:
        raise stopped_at_once(stops.received[0], f"report stopped; the report in {out} was already complete")


def main(argv: list[str]) -> int:
    """``python -m lightning_hw report DIR [DIR...]``; returns the exit code."""
    from lightning_hw.studies.search_report import BEST_FILE, files_to_write, is_search_dir, load_recorded_study, search_report

    options = build_parser().parse_args(argv)
    runs, base = load_runs(options.dirs)
    one_study = len(options.dirs) == 1 and not is_run_dir(Path(options.dirs[0]))
    if one_study:
        base = Path(options.dirs[0])
    # An Optuna search (the study directory itself, not one of its trials, whose base is the search's
    # directory too): its study is read before anything is written, so a missing storage writes no half report.
    search = load_recorded_study(base) if one_study and is_search_dir(base) else None
    # One directory (a study or a single run): <DIR>/report, never the report of the study a run belongs to.
    default = (Path(options.dirs[0]) if len(options.dirs) == 1 else base) / REPORT_DIR
    out = Path(options.out) if options.out else default
    if options.out:
        check_out(out, runs, default)
    else:  # a study's or the run's own report/, unless a run took the name before it was kept for reports
        check_default_out(out, options.dirs)
    # The topmost folder this report makes (--out new/report): removed again if it stops before writing anything.
    made = next((folder for folder in reversed([out, *out.parents]) if not folder.exists()), None)
    make_out(out, given=bool(options.out))
    title = options.title or f"Comparison of {len(runs)} run{'' if len(runs) == 1 else 's'} in {base.name or base}"

    columns, rows = table(runs)
    table_md = markdown(columns, rows)
    groups = [Path(d) for d in options.dirs if not is_run_dir(Path(d))]
    # Said under the table: runs of different tasks (losses defined apart), variants that never trained.
    table_notes = [f"- note: {line}" for line in [*mixed_tasks(runs), *untrained_variants(groups), *(run.cut_short for run in runs if run.cut_short)]]
    # A search's best.yaml belongs to its study directory, but is part of this report: it changes with the rest.
    elsewhere = {BEST_FILE: base / BEST_FILE} if search is not None else {}
    given = bool(options.out) and out.resolve() != default.resolve()  # --out runs/s/report is the default folder
    with staged(out, made, elsewhere, given) as stage:  # the files move into out (best.yaml beside it) once all are written
        write_csv(stage / "report.csv", columns, rows)
        sections = [f"# {title}", "", table_md, "", *table_notes, *([""] if table_notes else [])]
        # A run with no metric row yet (in, or stopped in, its first epoch) is listed above, but has no
        # value to average: counted among a variant's seeds or folds, it would make one run's values
        # read as the agreement of several (sd 0).
        measured = [row for run, row in zip(runs, rows) if run.curves]
        unmeasured = [run for run in runs if not run.curves]
        by_fold = repeat_table(columns, measured, FOLD_SUFFIX, "folds") if measured else None
        if by_fold is not None:
            sections += ["## Mean ± standard deviation over folds", "", markdown(*by_fold), ""]
            write_csv(stage / "report-folds.csv", *by_fold)
        # With folds and seeds (<variant>-seed<N>-fold<i>) the seeds spread the folds' means.
        by_seed = repeat_table(*(by_fold or (columns, measured)), SEED_SUFFIX, "seeds") if measured else None
        seeds_title = "over seeds" + (" (of each seed's mean over folds)" if by_fold is not None else "")
        if by_seed is not None:
            sections += [f"## Mean ± standard deviation {seeds_title}", "", markdown(*by_seed), ""]
            write_csv(stage / "report-seeds.csv", *by_seed)
        # Repeats trained with other settings (a study file edited between runs) or missing folds:
        # said under their means, which would otherwise read as one experiment's.
        repeat_notes = unlike_repeats(runs) if by_fold is not None or by_seed is not None else []
        if by_fold is not None or by_seed is not None:
            repeat_notes += [f"{run.name} ({run.status}) has no metric row yet: it is not in the mean ± sd" for run in unmeasured]
        sections += [*(f"- note: {note}" for note in repeat_notes), ""] if repeat_notes else []
        eval_columns, eval_rows = evaluations(runs, groups)
        if eval_rows:
            sections += ["## Evaluations (validate/test on a checkpoint, not training epochs)", "", markdown(eval_columns, eval_rows), ""]
            write_csv(stage / "evaluations.csv", eval_columns, eval_rows)
        published_md = "\n".join(sections[2:]).strip()  # every table and note; W&B draws its own figures
        metrics = plotted_metrics(runs)
        files = figure_files(metrics)
        # Refused now, not after drawing (minutes for a big study): every name this report writes is known.
        check_replaces_only_reports(
            out, [*(file.name for file in stage.iterdir()), "report.md", *files.values(), *(files_to_write(search[1]) if search else [])],
            given, elsewhere,
        )
        for metric, file in files.items():
            figure(runs, metric).savefig(stage / file, dpi=100)
            sections.append(f"![{metric}]({file})")
        search_output = io.StringIO()
        if search is not None:  # an Optuna search: its trials, best config, plots
            with contextlib.redirect_stdout(search_output):  # printed below the table, as before
                sections += ["", *search_report(base, stage, search, shown_as=out)]
        (stage / "report.md").write_text("\n".join(sections) + "\n")
    # Printed once the files are in place: `report ... | head` (a reader that stops early) ends
    # the printing, not the report.
    print(f"{title}\n\n{table_md}\n")
    print("".join(f"{line}\n" for line in table_notes), end="\n" if table_notes else "")
    print(search_output.getvalue(), end="")

    if by_fold is not None:
        print(f"Mean ± sd over folds:\n\n{markdown(*by_fold)}\n")
    if by_seed is not None:
        print(f"Mean ± sd {seeds_title}:\n\n{markdown(*by_seed)}\n")
    for note in repeat_notes:
        print(f"note: {note}")
    if eval_rows:
        print(f"Evaluations (validate/test on a checkpoint, not training epochs):\n\n{markdown(eval_columns, eval_rows)}\n")
    print(f"Report written to {out}: report.md, report.csv and {len(files)} figures ({', '.join(files.values())})")
    if options.publish:
        check_can_publish(runs)
        entity = options.entity or _default_entity()
        report = wandb_report(runs, published_md, metrics, title, entity, options.project)
        report.save()
        print(f"W&B Report: {report.url}")
    return 0


def check_out(out: Path, runs: list[Run], default: Path) -> None:
    """Refuse a report folder inside a run's directory: that run's files are its record.

    The report's files (``report.csv``, ``val_acc.png``...) would be written among the run's
    own, passing for its record, and an earlier report's tables there are deleted. Only the
    report of that one run goes there, into its ``report/`` folder (the default for one run).

    Raises:
        ConfigError: ``out`` is a run directory or lies in one (its own ``report/`` excepted).
    """
    compared = [run.directory for run in runs if out.resolve().is_relative_to(run.directory.resolve())]
    record = recorded_directory(out / "report.md") or (compared[0] if compared else None)
    if record is None:
        return
    own = [run.directory.resolve() for run in runs] == [record.resolve()] and out.resolve() == (record / REPORT_DIR).resolve()
    if not own:
        where = "a run's directory, whose" if out.resolve() == record.resolve() else f"inside {record}, a run whose"
        raise ConfigError(
            f"--out {out} is {where} files no other command changes; write the report elsewhere "
            f"(without --out it goes to {default})"
        )


def check_default_out(out: Path, dirs: list[str]) -> None:
    """Refuse the default report folder ``<DIR>/report`` where it is a run's: one named ``report`` by an earlier version.

    Its files are that run's record; the report would be written among them, as ``--out`` there is refused.

    Args:
        out: the default report folder.
        dirs: the directories given to ``report`` (in the command printed).

    Raises:
        ConfigError: ``out`` holds a run's record; the command with an ``--out`` beside it.
    """
    import shlex

    from lightning_hw.runs.lifecycle import command_name

    if holds_record(out):
        elsewhere = shlex.join(["report", *dirs, "--out", str(out.parent / "group-report")])
        raise ConfigError(
            f"{out} is a run named {out.name!r} (made before the name was kept for a group's report), "
            f"whose files no other command changes; write this report elsewhere: {command_name()} {elsewhere}"
        )


def make_out(out: Path, given: bool) -> None:
    """Create the report folder, or say in one line why it cannot be one.

    Args:
        out: the report folder.
        given: ``out`` came from ``--out`` (else it is the default ``<DIR>/report``).

    Raises:
        ConfigError: ``out`` is a file (``--out notes.txt``), or the folder cannot be created
            (a file where a parent folder belongs, no permission); nothing is written.
    """
    if out.is_file():
        # The file is the user's: never replaced, and the advice depends on who named it.
        fix = "give a folder for the report's files (report.md, report.csv, figures)" if given else "move it aside, or give a folder with --out"
        raise ConfigError(f"{'--out ' if given else ''}{out} is a file, not a folder; {fix}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where a parent folder belongs, a read-only place...
        raise ConfigError(f"cannot create the report folder {out} ({err.strerror}); give another folder with --out") from None


def _default_entity() -> str:
    import wandb

    entity = wandb.Api().default_entity
    if not entity:
        raise ConfigError("--publish could not find your W&B entity; pass --entity")
    return entity
