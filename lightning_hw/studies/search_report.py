"""The search part of ``report runs/<study>``: the trials table, the best trial as a ``--config`` file,
and Optuna's optimisation-history and parameter-importance plots.

The study runner writes ``runs/<study>/search.json`` (the storage, the study's name, objective and
base configs); the report reads the trials from that storage, so it also works for a study that
other machines ran into a shared journal file or database.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

from lightning_hw.runs.files import write_atomically
from lightning_hw.studies.task_monitor import deep_merge, set_dotted

SEARCH_FILE = "search.json"
BEST_FILE = "best.yaml"
HISTORY_PNG = "optuna_history.png"
IMPORTANCE_PNG = "optuna_importance.png"
TRIALS_CSV = "trials.csv"
#: the files a search adds to its report folder (best.yaml goes into the study directory)
SEARCH_REPORT_FILES = (TRIALS_CSV, HISTORY_PNG, IMPORTANCE_PNG)
#: the first line of every best.yaml a report wrote (see :func:`trial_config`, :func:`best_config`)
BEST_FILE_HEADER = re.compile(r"# Best trial \d+ of search .+ \(.+ = .+\):")


def write_search_file(search) -> None:
    """Record where the study's trials are, for ``report`` (written by the runner at every start)."""
    spec = yaml.safe_load(Path(search.study.path).read_text()) or {}
    record = {
        "study": search.name,
        "storage": search.storage,
        "metric": search.metric,
        "direction": search.direction,
        "configs": [str(Path(c).resolve()) for c in search.study.configs],
        "args": spec.get("args") or {},
        "heads": {h.option: (spec.get("search") or {}).get(h.option) for h in search.heads},  # composed heads' parts
        "study_file": str(Path(search.study.path).resolve()),
    }
    search.directory.mkdir(parents=True, exist_ok=True)
    write_atomically(search.directory / SEARCH_FILE, json.dumps(record, indent=2) + "\n")


def is_search_dir(directory: Path) -> bool:
    """Whether ``directory`` is a search study's directory."""
    return (Path(directory) / SEARCH_FILE).is_file()


def load_recorded_study(directory: Path) -> tuple[dict[str, Any], Any]:
    """The record in ``<directory>/search.json`` and the Optuna study it names.

    Returns:
        ``(record, study)``.

    Raises:
        DataError: the record cannot be read, or its storage or study is not there. A storage
            file that is gone is not opened: Optuna would create an empty one in its place.
    """
    import optuna

    from lightning_hw.errors import DataError
    from lightning_hw.studies.search import open_storage

    path = directory / SEARCH_FILE
    try:
        record = json.loads(path.read_text())
        name, url = record["study"], record["storage"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path} cannot be read ({type(err).__name__}: {err}); run the study again to write it") from None
    for prefix in ("sqlite:///", "journal://"):
        if url.startswith(prefix) and not Path(url[len(prefix):]).is_file():
            raise DataError(
                f"{path} names the storage {url}, which does not exist (moved or deleted?); "
                "the search's trials, best.yaml and Optuna plots are read from it"
            )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:  # Optuna's "Record does not exist."
        raise DataError(f"{path} names study {name} in {url}, which holds no such study") from None
    return record, study


def files_to_write(study) -> list[str]:
    """The names of the files :func:`search_report` writes for ``study`` as its trials are now.

    Known before anything is drawn, so that a report refuses to replace a file no report wrote
    (the user's own ``best.yaml``) before it spends minutes on the figures.
    """
    complete = _complete(study.get_trials(deepcopy=False))
    return [TRIALS_CSV, *([BEST_FILE, HISTORY_PNG] if complete else []), *([IMPORTANCE_PNG] if _shows_importance(complete) else [])]


def written_by_a_report(path: Path) -> bool:
    """Whether ``path`` (a study's ``best.yaml``) is one a search report wrote, which the next report updates.

    A report's ``best.yaml`` opens with its header line (``# Best trial N of search ...``); a file the
    user put there (their own config of that name) does not, and is never replaced. The file itself,
    not a list beside it, says so: it lies in the study directory, whichever ``--out`` a report had.
    """
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8") as file:
            first = file.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return False
    return BEST_FILE_HEADER.fullmatch(first) is not None


def _complete(trials: list) -> list:
    return [t for t in trials if t.state.name == "COMPLETE"]


def _shows_importance(complete: list) -> bool:
    """Whether Optuna's parameter importances can be drawn: 2 complete trials or more, with some parameter differing."""
    varying = [k for k in {k for t in complete for k in t.params} if len({json.dumps(t.params.get(k)) for t in complete}) > 1]
    return len(complete) >= 2 and bool(varying)


def search_report(
    directory: Path, out: Path, loaded: tuple[dict[str, Any], Any] | None = None, shown_as: Path | None = None
) -> list[str]:
    """Write the trials table (``trials.csv``), ``best.yaml`` and the Optuna plots; print them.

    Args:
        directory: the study directory (``runs/<study>``), where ``best.yaml`` is said to be.
        out: the folder the report is written in before it moves into place (see
            :func:`lightning_hw.reports.staged`): ``best.yaml`` too is written there, and moves
            into ``directory`` with the report, so a report stopped halfway leaves it as it was.
        loaded: what :func:`load_recorded_study` returned for ``directory`` (default: read it now).
        shown_as: the report directory as printed, when ``out`` is where it is written first.

    Returns:
        Markdown lines for ``report.md``.
    """
    from lightning_hw.reports import markdown, write_csv
    from lightning_hw.studies.search import HEADS_ATTR, as_value, heads_of, trial_options

    record, study = loaded or load_recorded_study(directory)
    trials = study.get_trials(deepcopy=False)
    heads = heads_of(record.get("heads") or {}, f"search {record['study']}")
    params = list(dict.fromkeys(k for t in trials for k in t.params))
    columns = ["trial", *params, *(h.option for h in heads), record["metric"], "state", "epochs", "run"]
    rows = []
    for t in trials:
        if t.user_attrs.get("surplus"):
            continue
        run = Path(t.user_attrs.get("run_dir") or f"trial-{t.number}").name  # a resumed retry trains in the dead trial's run
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower(), "epochs": t.user_attrs.get("epochs", ""), "run": run}
        for key in params:
            value = as_value(t.params[key], t.distributions[key]) if key in t.params else ""
            row[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        recorded = t.user_attrs.get(HEADS_ATTR) or {}
        for head in heads:  # the head spec the trial ran with (recorded at its start; composed for older trials)
            if head.option in recorded:
                row[head.option] = json.dumps(recorded[head.option])
            else:
                row[head.option] = json.dumps(head.spec(t.params)) if all(k in t.params for k in head.searched) else ""
        value = t.value if t.state.name == "COMPLETE" else (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        row[record["metric"]] = "" if value is None else value
        rows.append(row)
    write_csv(out / TRIALS_CSV, columns, rows)
    table_md = markdown(columns, rows)
    lines = [f"## Search: {record['study']} ({record['metric']}, {record['direction']})", "", table_md, ""]
    print(f"Trials of search {record['study']} ({record['storage']}):\n\n{table_md}\n")
    complete = _complete(trials)
    if complete:
        best = study.best_trial
        best_params = trial_options(best, heads)
        run_config = Path(best.user_attrs.get("run_dir") or directory / f"trial-{best.number}") / "config.yaml"
        text = trial_config(run_config, record, best.number, best.value) if run_config.is_file() else None
        (out / BEST_FILE).write_text(text or best_config(record, best_params, best.number, best.value))
        text = f"Best: trial {best.number}, {record['metric']} = {best.value:.4f}; its config: {directory / BEST_FILE} (fit --config {directory / BEST_FILE})"
        lines += [text, ""]
        print(text)
    else:
        print("No complete trial yet: no best.yaml")
    lines += _plots(study, out, complete, shown_as or out)
    return lines


def trial_config(run_config: Path, record: dict[str, Any], number: int, value: float) -> str | None:
    """The config the trial's ``fit`` recorded (everything it trained with, the ``study`` command's own
    ``fit`` arguments included), without its run's name, as a ready ``--config`` file."""
    try:
        config = yaml.safe_load(run_config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    run = config.get("run") or {}
    for key in ("name", "notes"):  # a new run of its own, not the trial's (whose directory exists)
        run.pop(key, None)
    config.pop("ckpt_path", None)
    header = (
        f"# Best trial {number} of search {record['study']} ({record['metric']} = {value:.4f}):\n"
        f"# the config its run recorded ({run_config}).\n"
        f"#   python -m lightning_hw fit --config THIS_FILE --run.name best\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


def best_config(record: dict[str, Any], params: dict[str, Any], number: int, value: float) -> str:
    """The study's base config(s) with its ``args`` and the best parameters applied, as one YAML config
    (when the best trial's run directory is on another machine and its recorded config is not here)."""
    merged: dict[str, Any] = {}
    for config in record["configs"]:
        deep_merge(merged, yaml.safe_load(Path(config).read_text()) or {})
    for key, value_ in [*record["args"].items(), *params.items()]:
        if str(key) != "config":
            set_dotted(merged, str(key).removeprefix("--"), value_)
    header = (
        f"# Best trial {number} of search {record['study']} ({record['metric']} = {value:.4f}):\n"
        f"# the study's base config, its args and the trial's parameters.\n"
        f"#   python -m lightning_hw fit --config THIS_FILE --run.name best\n"
    )
    return header + yaml.safe_dump(merged, sort_keys=False)




def _plots(study, out: Path, complete: list, shown_as: Path) -> list[str]:
    """Optuna's optimisation history and parameter importances (matplotlib), where there is enough to show.

    They are written into ``out``, and said to be in ``shown_as`` (the report directory).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if complete:
            ax = optuna_plots.plot_optimization_history(study)
            ax.figure.savefig(out / HISTORY_PNG, dpi=100, bbox_inches="tight")
            plt.close(ax.figure)
            lines.append(f"![optimisation history]({HISTORY_PNG})")
        if not _shows_importance(complete):
            print(f"No parameter-importance plot: it needs at least 2 complete trials with differing parameters ({len(complete)} complete)")
        else:
            ax = optuna_plots.plot_param_importances(study)
            ax.figure.savefig(out / IMPORTANCE_PNG, dpi=100, bbox_inches="tight")
            plt.close(ax.figure)
            lines.append(f"![parameter importances]({IMPORTANCE_PNG})")
    print(f"Optuna plots in {shown_as}: {', '.join(l.split('(')[-1].rstrip(')') for l in lines) or 'none'}")
    return lines
