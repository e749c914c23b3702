"""Run a search study: Optuna asks for parameters, each trial is a ``fit`` in its own process, Optuna is told.

    python -m lightning_hw study configs/studies/quickstart_search.yaml              # one trial at a time
    python -m lightning_hw study configs/studies/quickstart_search.yaml --workers 2  # two at a time
    # the same command on another machine that sees the storage joins the same study

Each trial trains into ``runs/<study>/trial-<number>/`` (``--run.group <study> --run.name
trial-<number>``). Its ``fit`` reports the objective every validation epoch to the storage and
stops when the pruner says so (``status.json``: ``pruned``). The runner then tells the study:

* exit 0 and ``finished``: COMPLETE with the best value of the objective over the run's epochs
  in its ``metrics.csv`` (the epoch its best checkpoint keeps when the objective is what
  checkpoints monitor, the default);
* exit 0 and ``pruned``: PRUNED (Optuna keeps the last reported value);
* interrupted (exit 130/143): nothing; the trial stays RUNNING, its heartbeat stops, and a later
  run of the study fails it and asks it again with the same parameters;
* any other exit: FAIL.

The study stops at ``trials`` finished trials (complete, pruned or failed, counted in the storage
over every process; a failed trial that was asked again counts once). With a database storage
(SQLite, PostgreSQL) the runner records a heartbeat for each running trial; a trial whose
heartbeat stopped (its process was killed) is failed and asked again with the same parameters
(Optuna's ``fail_stale_trials`` with ``RetryHeartbeatStaleTrialCallback``). Optuna's journal
storage has no heartbeat: ``--retry-running`` fails and re-asks every RUNNING trial instead, for
when no other process runs the study.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lightning_hw.errors import ConfigError
from lightning_hw.reports import read_metrics
from lightning_hw.runs.files import read_status
from lightning_hw.studies.search_report import write_search_file
from lightning_hw.studies.search import SearchStudy, as_value, make_sampler, open_storage, trial_env
from lightning_hw.studies.grid import INTERRUPT_CODES, LOG_FILE, Job, Variant, _child_env, _execute, fit_command, overrides_to_args

PREFIX = "trial-"
SURPLUS = "surplus"  # user attr of a trial asked by two processes at once beyond `trials`


def open_study(search: SearchStudy, heartbeat: bool = True):
    """Create the study in its storage, or load it (another process or machine created it).

    Returns:
        ``(study, storage)``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(5):
        try:
            storage = open_storage(search.storage, search.heartbeat if heartbeat else None)
            study = optuna.create_study(
                storage=storage,
                study_name=search.name,
                sampler=make_sampler(search),
                direction=search.direction,
                load_if_exists=True,
            )
            break
        except Exception as err:  # noqa: BLE001 - a database refusing us: one line, not a traceback
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            # Processes starting together on an empty database race to create Optuna's tables.
            if attempt < 4 and any(w in str(err) for w in ("duplicate key", "already exists", "UniqueViolation")):
                time.sleep(1 + attempt)
                continue
            if isinstance(err, ConfigError):
                raise
            if type(err).__module__.startswith("sqlalchemy"):
                raise ConfigError(f"storage {search.storage}: {text}") from None
            raise
    if study.direction.name.lower() != search.direction:
        raise ConfigError(
            f"study {search.name} in {search.storage} was created to {study.direction.name.lower()}; "
            f"this file says {search.direction} (give another name or storage)"
        )
    return study, storage


def beats(storage) -> bool:
    """Whether the storage keeps heartbeats (database storages opened with an interval; the journal has none)."""
    return callable(getattr(storage, "record_heartbeat", None)) and storage.get_heartbeat_interval() is not None


def trial_id(storage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` (what another process rebuilds the trial from)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def _retried(trials: list) -> set[int]:
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # experimental since Optuna 3.0, still public
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


def counted(trials: list) -> list:
    """The trials that use up the study's budget: all but surplus ones and failed ones that were asked again."""
    retried = _retried(trials)
    return [
        t for t in trials
        if not t.user_attrs.get(SURPLUS) and not (t.state.name == "FAIL" and t.number in retried)
    ]


def finished(trials: list) -> list:
    """The counted trials that are done: complete, pruned or failed."""
    return [t for t in counted(trials) if t.state.is_finished()]


def run_search(search: SearchStudy, workers: int = 1, extra: list[str] | None = None, retry_running: bool = False) -> int:
    """Run trials until the study has ``trials`` finished ones; returns the exit code (0, 1, 130).

    Args:
        search: the search study.
        workers: trials to run at once in this process.
        extra: ``fit`` arguments from the command line, for every trial.
        retry_running: first fail and ask again every RUNNING trial (no other process may run the study).
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    # We record heartbeats ourselves around each trial's process (ask-and-tell, not Study.optimize).
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study, storage = open_study(search)
    write_search_file(search)
    if retry_running:
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            RetryHeartbeatStaleTrialCallback()(study, study.get_trials(deepcopy=False)[trial.number])
            print(f"  trial {trial.number}: was RUNNING; failed and asked again with the same parameters")
    done = finished(study.get_trials(deepcopy=False))
    print(
        f"Study {search.name}: {len(done)} of {search.trials} trials finished in {search.storage} "
        f"({search.sampler} sampler, pruner {next(iter(search.pruner))}, objective {search.metric} {search.direction})"
    )
    env_of = _child_env(workers)
    lock = threading.Lock()
    stop = threading.Event()
    outcomes: dict[int, str] = {}

    def worker(index: int) -> None:
        while not stop.is_set():
            trial = _next_trial(study, storage, search, lock)
            if trial is None:
                return
            tid = trial_id(storage, search.name, trial.number)
            env = {**env_of(index), **trial_env(search, tid)}
            outcome = _run_trial(study, storage, tid, search, trial, env, extra or [], workers, lock)
            outcomes[trial.number] = outcome
            if outcome == "interrupted":
                stop.set()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            list(pool.map(worker, range(1, workers + 1)))
        except KeyboardInterrupt:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            print("Study interrupted; run the same command again to continue it.")
            return 130
    if stop.is_set():
        print("Study interrupted; run the same command again to continue it (the interrupted trial is asked again).")
        return 130
    trials = study.get_trials(deepcopy=False)
    done = finished(trials)
    states = {s: sum(t.state.name == s for t in done) for s in ("COMPLETE", "PRUNED", "FAIL")}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n)
    print(f"Study {search.name}: {len(done)} trials finished ({summary or 'none'}).")
    complete = [t for t in done if t.state.name == "COMPLETE"]
    if complete:
        best = study.best_trial
        print(f"Best: trial {best.number}, {search.metric} = {best.value:.4f}, {_params_text(best.params, best.distributions)}")
    print(f"Report with: python -m lightning_hw report {search.directory}")
    return 1 if any(o == "failed" for o in outcomes.values()) else 0


def _next_trial(study, storage, search: SearchStudy, lock: threading.Lock):
    """Ask for the next trial, or ``None`` when the study has (or is running) all its trials."""
    import optuna

    while True:
        with lock:
            optuna.storages.fail_stale_trials(study)  # trials whose process died: failed, asked again
            trials = study.get_trials(deepcopy=False)
            if len(finished(trials)) >= search.trials:
                return None
            waiting = any(t.state.name == "WAITING" for t in trials)  # a retry of a trial that died
            if waiting or len(counted(trials)) < search.trials:
                trial = study.ask(search.space)  # pops a waiting trial first
                trials = study.get_trials(deepcopy=False)
                order = [t.number for t in sorted(counted(trials), key=lambda t: t.number)]
                if trial.number in order[: search.trials]:
                    return trial
                # Another process asked at the same moment and the budget was full: give it back.
                trial.set_user_attr(SURPLUS, True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        # All trials are asked and some run elsewhere: wait for them (or for their heartbeat to stop).
        if not beats(storage):  # the journal: a RUNNING trial may be dead, nothing would ever fail it
            return None
        time.sleep(min(search.heartbeat, 5))


def _run_trial(study, storage, tid: int, search: SearchStudy, trial, env: dict[str, str], extra: list[str], workers: int, lock) -> str:
    """Train one trial in a ``fit`` process and tell the study how it ended."""
    import optuna

    params = {k: as_value(v, trial.distributions[k]) for k, v in trial.params.items()}
    name = f"{PREFIX}{trial.number}"
    variant = Variant(name, name, overrides_to_args(params, search.study.path, "search"))
    job = Job(variant, Path(search.study.root) / search.name / name, "new", fit_command(search.study, variant, extra))
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(study.get_trials(deepcopy=False)[trial.number])
    again = f", again for trial {retry}" if retry is not None else ""
    with lock:
        print(f"[trial {trial.number}] starting{again}: {_params_text(trial.params, trial.distributions)} ({job.run_dir})", flush=True)
    trial.set_user_attr("run_dir", str(job.run_dir))
    started = time.monotonic()
    beating = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(storage, tid, search.heartbeat, beating), daemon=True)
    beat.start()
    try:
        code = _execute(job, env, tee=workers == 1)
    finally:
        beating.set()
        beat.join()
    seconds = time.monotonic() - started
    status = read_status(job.run_dir)
    curve = _curve(job.run_dir, search.metric)
    trial.set_user_attr("epochs", len(curve))  # before the tell: a finished trial is read-only
    if code in INTERRUPT_CODES:
        outcome, text = "interrupted", f"interrupted ({INTERRUPT_CODES[code]}); it stays RUNNING and is asked again"
    elif code == 0 and status.get("status") == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        outcome, text = "pruned", f"pruned at epoch {status.get('pruned_at_epoch')} after {seconds:.1f} s"
    elif code == 0 and status.get("status") == "finished" and (value := objective_value(job.run_dir, search)) is not None:
        study.tell(trial, value)
        outcome, text = "complete", f"{search.metric} = {value:.4f} in {seconds:.1f} s"
    else:
        why = f"exit {code}" if code else f"no {search.metric} in its metrics.csv"
        trial.set_user_attr("exit_code", code)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        outcome, text = "failed", f"FAILED ({why}, run {status.get('status') or 'not started'}); see {job.run_dir / LOG_FILE}"
    with lock:
        print(f"[trial {trial.number}] {text}", flush=True)
    return outcome


def _heartbeat(storage, tid: int, interval: int, stop: threading.Event) -> None:
    """Record the trial's heartbeat until ``stop`` (database storages; the journal has none)."""
    if not beats(storage):
        return
    while True:
        storage.record_heartbeat(tid)
        if stop.wait(interval):
            return


def _curve(run_dir: Path, metric: str) -> dict[int, float]:
    try:
        return read_metrics(run_dir / "metrics.csv").get(metric) or {}
    except OSError:
        return {}


def objective_value(run_dir: Path, search: SearchStudy) -> float | None:
    """The best value of the objective over the run's epochs (max when maximizing), from its ``metrics.csv``."""
    values = list(_curve(run_dir, search.metric).values())
    if not values:
        return None
    return max(values) if search.direction == "maximize" else min(values)


def _params_text(params: dict[str, Any], distributions: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {json.dumps(as_value(v, distributions[k])) if not isinstance(v, float) else f'{v:.4g}'}" for k, v in params.items())
