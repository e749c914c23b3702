"""The files of a run directory, and how they are written (atomically: a crash never leaves half a file).

    runs/<group>/<name>/
      config.yaml          the resolved config the run trains with (run.group and run.name filled in)
      metrics.csv          one row per epoch (train/*, val/*, and test/* after fit)
      checkpoints/         best-epochNNN.ckpt and last.ckpt
      status.json          what the run is doing or how it ended, and the command that resumes it
      wandb/, wandb-run-id the W&B files and the id a resume continues
      eval/<stage>-<time>/ validate/test/predict on one of its checkpoints: their own metrics.csv,
                           config-<stage>.yaml, predictions.csv, and caveats.txt when the scores
                           must be read with one (e.g. the split differs from training's)

A group's directory also holds folders that are no run's (:data:`RESERVED_NAMES`):
``runs/<group>/eval/`` for evaluations of checkpoints from outside its runs, and
``runs/<group>/report/`` for ``report runs/<group>``; a new run cannot take their names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lightning_hw.atomic import atomic_open
from lightning_hw.errors import ConfigError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
STATUS_FILE = "status.json"
WANDB_ID_FILE = "wandb-run-id"
EVAL_DIR = "eval"
REPORT_DIR = "report"  # what ``report DIR`` writes by default: DIR/report/
CAVEATS_FILE = "caveats.txt"  # in an evaluation: what its scores must be read with, one per line
LOCK_FILE = ".lock"  # a command is writing into the run (host and pid)

#: the file every lr-find sweep's directory holds: such a directory is a record too
SWEEP_SUMMARY_FILE = "lr_find.json"

#: the folders a group's directory holds besides its runs, and what each holds (a new run may not take their names)
RESERVED_NAMES = {
    EVAL_DIR: "the group's evaluations of checkpoints from outside its runs",
    REPORT_DIR: "the group's report (report runs/<group>)",
}

#: files whose presence means a directory holds a run's record (a fresh ``fit`` must not reuse it)
RECORD_FILES = (CONFIG_FILE, METRICS_FILE, STATUS_FILE)


def holds_record(directory: Path) -> bool:
    """Whether ``directory`` holds a run that trained (or began to): its config, metrics, status or checkpoints."""
    return any((directory / name).is_file() for name in RECORD_FILES) or holds_checkpoints(directory)


def is_run_record(directory: Path) -> bool:
    """Whether ``directory`` is a run's record, by evidence only a run leaves (stricter than :func:`holds_record`).

    :func:`holds_record` takes any one of its files as a run, which suits refusing to start a
    run there, but a project folder with a ``config.yaml``, a ``metrics.csv`` or downloaded
    weights in ``checkpoints/`` of its own is no run: a run has its ``status.json``, or its
    ``config.yaml`` with its metrics or checkpoints.
    """
    if (directory / STATUS_FILE).is_file():
        return True
    return (directory / CONFIG_FILE).is_file() and ((directory / METRICS_FILE).is_file() or holds_checkpoints(directory))


def recorded_directory(path: Path) -> Path | None:
    """The run (or lr-find sweep) directory that ``path`` lies in, if any (its files are its record).

    A folder above it with a ``config.yaml`` of its own (a project's) is no run: see
    :func:`is_run_record`. The directory is given as ``path`` is: relative for a relative one.
    """
    for directory in path.absolute().parents:
        if is_run_record(directory) or is_sweep_record(directory):
            return Path(os.path.relpath(directory)) if not path.is_absolute() else directory
    return None


def is_sweep_record(directory: Path) -> bool:
    """Whether ``directory`` is an lr-find sweep's (it holds the sweep's ``lr_find.json``)."""
    return (directory / SWEEP_SUMMARY_FILE).is_file()


def record_kind(record: Path) -> str:
    """What a record directory of :func:`recorded_directory` is, for a message: ``"a run"`` or ``"an lr-find sweep"``."""
    return "an lr-find sweep" if is_sweep_record(record) else "a run"


def refuse_a_sweep_as_run(directory: Path) -> None:
    """Refuse to make an lr-find sweep's directory (``--run.name lr-find-<time>``) a run's or an evaluation's.

    :func:`holds_record` knows only a run's files, so a sweep's folder looked free: ``fit``
    saved its checkpoints and metrics among the sweep's files, ``test`` an ``eval/``.

    Raises:
        ConfigError: ``directory`` holds a sweep.
    """
    if is_sweep_record(directory):
        raise ConfigError(f"{directory} is an lr-find sweep, not a run: its files are its record; give another --run.name")


def refuse_a_reserved_name(directory: Path, way_out: str = "give another --run.name") -> None:
    """Refuse to make ``runs/<group>/eval`` or ``runs/<group>/report`` a new run's (or a named evaluation's) directory.

    The group writes its own files there (:data:`RESERVED_NAMES`): an evaluation of an outside
    checkpoint would land among a run's files, and a report over them. A run of such a name
    made before this check still holds a record, and stays usable (resume, evaluate, report).

    Args:
        directory: the run directory to be made, ``<root>/<group>/<name>``.
        way_out: what the user does instead (a study renames its variant).

    Raises:
        ConfigError: ``directory`` has a reserved name, in any case, and holds no run.
    """
    # Any case: on a case-insensitive filesystem (macOS's and Windows' default) `Eval` is `eval`.
    reserved = directory.name.lower()
    holds = RESERVED_NAMES.get(reserved)
    if holds is not None and not holds_record(directory):
        same = "" if directory.name == reserved else f" (in any case: {directory.name!r} is {reserved!r} on a case-insensitive filesystem)"
        raise ConfigError(
            f"run name {directory.name!r} is reserved{same}: {directory.parent / reserved}/ holds {holds}; {way_out}"
        )


def check_outside_records(parent: Path, saved: str) -> None:
    """Refuse to save ``saved`` (``"the run"``) in a new folder of ``parent`` that would lie inside a run's or sweep's record.

    A ``--run.root`` inside a run, given so or relative to a run's folder the command runs in,
    would put a new run (or sweep) among that record's files.

    Raises:
        ConfigError: naming the record, and the way out.
    """
    record = recorded_directory(parent / "new")
    if record is not None:
        raise ConfigError(
            f"{saved} would be saved in {parent}, inside {record}, {record_kind(record)} whose files no other command "
            "changes; give a --run.root outside it (the runs folder itself), or run from the project's folder"
        )


def holds_checkpoints(directory: Path) -> bool:
    """Whether ``directory`` has a checkpoint of a run: in ``checkpoints/``, or SLURM's ``hpc_ckpt_*``."""
    checkpoints = directory / CHECKPOINT_DIR
    return (checkpoints.is_dir() and any(checkpoints.glob("*.ckpt"))) or any(directory.glob("hpc_ckpt_*.ckpt"))


def checkpoint_names(folder: Path) -> list[str]:
    """The names of the checkpoints (``*.ckpt``) in ``folder``, sorted; empty when it has none or does not exist."""
    return sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []


def make_unique_dir(parent: Path, base: str) -> Path:
    """Create ``parent/base``, or ``base-1``, ``base-2``... when taken: never an existing directory
    (``mkdir`` without ``exist_ok`` is the check, so two processes cannot get the same one)."""
    suffix = 0
    while True:
        candidate = parent / (base if suffix == 0 else f"{base}-{suffix}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            suffix += 1


def write_atomically(path: Path, text: str, newline: str | None = None) -> None:
    """Replace ``path`` by ``text`` in one step (see :func:`lightning_hw.atomic.atomic_open`)."""
    with atomic_open(path, "w", newline=newline) as file:
        file.write(text)


def read_status(directory: Path) -> dict[str, Any]:
    """The run's ``status.json`` (``{}`` when missing or unreadable)."""
    try:
        status = json.loads((Path(directory) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def write_status(directory: Path, replace: bool = False, **fields: Any) -> None:
    """Update ``status.json`` with ``fields`` (atomically); ``replace``: write only ``fields``."""
    status = {} if replace else read_status(directory)
    status.update(fields)
    write_atomically(Path(directory) / STATUS_FILE, json.dumps(status, indent=2) + "\n")


def penalty_in_train_loss_note(directory: Path, model: Any) -> str | None:
    """A note when a regularised run is resumed whose ``train/loss`` so far includes its L1/L2 penalty.

    Runs written before ``Task.add_penalty`` logged the penalty as ``train/penalty`` have it inside
    ``train/loss``; resumed, their curve would drop by the penalty at the resume without a word.

    Args:
        directory: the run directory.
        model: the task about to train (its ``regularization_loss()`` says whether it has a penalty).
    """
    import csv

    has_penalty = getattr(model, "regularization_loss", None)
    path = Path(directory) / METRICS_FILE
    if not callable(has_penalty) or has_penalty() is None or not path.is_file():
        return None
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if "train/penalty" in (reader.fieldnames or []):
                return None
            epochs = [int(row["epoch"]) for row in reader if row.get("train/loss") and (row.get("epoch") or "").isdigit()]
    except (OSError, csv.Error, KeyError, ValueError):
        return None
    if not epochs:
        return None
    first, last = min(epochs), max(epochs)
    return (
        f"note: this run's train/loss of epochs {first}-{last} includes its L1/L2 penalty (written before the penalty "
        f"was logged apart); from epoch {last + 1} on, train/loss is the data loss and the penalty is train/penalty"
    )
