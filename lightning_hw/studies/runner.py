"""The one study runner: Optuna hands out the trials, each trial is a ``fit`` in its own process.

    python -m lightning_hw study configs/studies/quickstart_search.yaml --workers 2   # a search
    python -m lightning_hw study configs/studies/reuters_heads.yaml --workers 2       # a grid
    # the same command on another machine that sees the storage joins the same study

Grid and search studies run the same way; they differ in what a trial is:

* a **search** trial gets parameters from the study's sampler and trains into
  ``runs/<study>/trial-<number>/``; the study stops at ``trials`` finished trials (complete,
  pruned or failed, counted in the storage over every process);
* a **grid** trial is one named run of the study file (``<variant>``, ``-seed<N>``,
  ``-fold<i>``): Optuna's GridSampler hands out the runs nobody has run yet (in its own shuffled
  order, so that processes starting together take different runs), and a run that must run
  again (it failed or was killed in an earlier invocation, or ``--only`` names it) is enqueued by
  name. A run whose directory holds ``study-finished.json`` is never trained again (the record
  on disk decides, so a study from before it had a storage keeps its finished runs).

Each trial's ``fit`` reports the objective every validation epoch to the storage (and stops
when the pruner says so: ``status.json`` ``pruned``). The runner then tells the study:

* exit 0 and ``finished``: COMPLETE with the best value of the objective over the run's epochs in
  its ``metrics.csv`` (FAIL with a note when a grid run has no such metric);
* exit 0 and ``pruned``: PRUNED (Optuna keeps the last reported value);
* interrupted (exit 130/143): FAIL, and the same parameters are queued again at once (Optuna's
  ``RetryHeartbeatStaleTrialCallback``); the next invocation resumes the run from its
  ``checkpoints/last.ckpt``;
* any other exit: FAIL.

With a database storage (SQLite, PostgreSQL) the runner records a heartbeat for each running
trial; a trial whose heartbeat stopped (its whole ``study`` process was killed) is failed and
queued again in the same way (``fail_stale_trials``). A queued-again trial trains in the run
directory of the trial it repeats and resumes from its ``last.ckpt`` when there is one. Optuna's
journal storage has no heartbeat: ``--retry-running`` fails and re-queues every RUNNING trial,
for when no other process runs the study.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lightning_hw._compat.optuna import close_storage
from lightning_hw.cli import warm_start
from lightning_hw.cli.names import option_values
from lightning_hw.errors import ConfigError, disk_full_in
from lightning_hw.reports import read_metrics
from lightning_hw.runs.files import read_status, write_atomically
from lightning_hw.studies.grid import (
    FINISHED_FILE, INTERRUPT_CODES, LOG_FILE, STUDY_PARENT_ENV, STUDY_STOPS_ENV, Job, Study, Variant, died_before_checkpoint, finished_outside_study, fit_command,
    has_last_checkpoint, is_finished_run, last_error_line, left_to_user, move_aside_advice, overrides_to_args, split_configs,
    WARM_START_FROM,
)
from lightning_hw.studies.search import GRID_PARAM, HEADS_ATTR, SearchStudy, make_sampler, open_storage, trial_env, trial_options

PREFIX = "trial-"
SURPLUS = "surplus"  # user attr of a trial handed out beyond what the study needs (given back as FAIL)
RUN_DIR = "run_dir"  # user attr: the trial's run directory (a queued-again trial inherits it)
METRIC_ATTR = "objective"  # study user attr: the metric a search optimises (set when it is created)


# -- processes ---------------------------------------------------------------------------------


#: the fits this study process is running now (one per worker), to pass a stop signal on to
_RUNNING_FITS: set[subprocess.Popen | warm_start.WarmProcess] = set()
#: the stop signals this study process has passed on (cleared as a study starts): a fit started after one
#: (by a worker between two fits as it came) gets it too
_PASSED_ON: list[int] = []
# Reentrant: pass_on_signal runs in a signal handler, which may interrupt this same thread inside the lock.
_RUNNING_LOCK = threading.RLock()


class _PassedOnCount:
    """A file holding how many SIGTERMs this study has passed on, read by its fits (:data:`STUDY_STOPS_ENV`).

    A fit gets each SIGTERM sent to the process group twice (directly, and passed on) but one
    sent to the study alone once: without knowing which, it took the copy of a second
    ``kill PID`` for the echo of the first, and only a third stopped it at once. Counting the
    SIGTERMs it got against the study's count tells them apart (see
    :meth:`~lightning_hw.runs.interrupts.SignalWatch.study_copy`).

    The file is removed as soon as it is made: each fit inherits its descriptor (:attr:`fd`) and
    reads it as ``/dev/fd/<fd>``, so a study killed outright (``SIGKILL``, the out-of-memory killer)
    leaves no file behind (it left one in ``$TMPDIR`` each time). Where there is no ``/dev/fd``
    the file stays on disk while the study runs.
    """

    WIDTH = 10  # written in place at a fixed width: a reader never sees half a number

    def __init__(self) -> None:
        import tempfile

        self.fd, name = tempfile.mkstemp(prefix="lightning-hw-study-stops-")
        self._on_disk = not Path("/dev/fd").is_dir()
        if self._on_disk:
            self.path = Path(name)
        else:
            os.unlink(name)
            self.path = Path(f"/dev/fd/{self.fd}")  # the same number in each fit: see execute's pass_fds
        self.set(0)

    def set(self, count: int) -> None:
        os.pwrite(self.fd, str(count).rjust(self.WIDTH).encode(), 0)

    def close(self) -> None:
        os.close(self.fd)
        if self._on_disk:
            self.path.unlink(missing_ok=True)


_COUNT: _PassedOnCount | None = None  # the running study's (None outside run_study)
#: whether this study has enough fits to run that starting a warm process pays (see warm_start.popen)
_START_WARM = False


def execute(job: Job, env: dict[str, str], tee: bool) -> int:
    """Run the job's ``fit``; its output goes to ``<run>/study.log`` (and the console with ``tee``)."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    # The fit takes the copy of a stop signal that this process passes on as the same request.
    env = {**env, STUDY_PARENT_ENV: str(os.getpid())}
    count = _COUNT
    if count is not None:
        env[STUDY_STOPS_ENV] = str(count.path)
    with (job.run_dir / LOG_FILE).open("a") as log:
        log.write(f"\n# {dt.datetime.now().isoformat(timespec='seconds')}\n$ {shlex.join(job.command)}\n")
        log.flush()
        # Forked from a process that has imported torch and Lightning: each fit starts seconds sooner.
        process = warm_start.popen(
            job.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            pass_fds=(count.fd,) if count is not None else (), start_server=_START_WARM,
        )
        with _RUNNING_LOCK:
            _RUNNING_FITS.add(process)
            passed_on = list(_PASSED_ON)
        try:
            if passed_on:  # the study was stopped as this fit started: it stops too, and is queued again
                _send(process, passed_on[-1])
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()  # a study killed outright (SIGKILL) keeps its fit's output up to here
                if tee:
                    sys.stdout.write(line)
            return process.wait()
        finally:
            with _RUNNING_LOCK:
                _RUNNING_FITS.discard(process)


def pass_on_signal(signum: int) -> None:
    """Send a stop signal the study got to each fit it runs, which then stops at its next step.

    A signal to the study's process alone (``kill PID``, ``docker stop``, a supervisor) reaches
    no fit: the study would wait for each running fit to train all its epochs. A signal to the
    whole process group reaches each fit twice (directly and passed on); the fit knows its
    study passes signals on (:data:`STUDY_PARENT_ENV`) and takes the copy as the same request. A fit
    that a worker starts after it (asking for the next run as it came) gets it as it starts.
    """
    with _RUNNING_LOCK:
        _PASSED_ON.append(signum)  # for a fit that a worker starts now (see execute)
        running = [p for p in _RUNNING_FITS if p.poll() is None]
        if _COUNT is not None and signum == signal.SIGTERM:  # counted before a fit gets it
            _COUNT.set(_PASSED_ON.count(signal.SIGTERM))
    for process in running:
        _send(process, signum)


def _send(process: subprocess.Popen | warm_start.WarmProcess, signum: int) -> None:
    """Send ``signum`` to the fit ``process``, unless it has ended."""
    try:
        process.send_signal(signum)
    except ProcessLookupError:  # it ended meanwhile
        pass


def child_env(parallel: int):
    """Environment per worker: with several trials at once, share the CPU threads and spread the GPUs."""
    base = dict(os.environ)
    if parallel <= 1:
        return lambda index: base
    if "OMP_NUM_THREADS" not in base:  # N processes each using every core would thrash
        base["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    visible = base.get("CUDA_VISIBLE_DEVICES")
    gpus = [g for g in visible.split(",") if g.strip()] if visible is not None else _gpu_ids()

    def env(index: int) -> dict[str, str]:
        if len(gpus) < 2:
            return base
        return {**base, "CUDA_VISIBLE_DEVICES": gpus[(index - 1) % len(gpus)]}

    return env


def _gpu_ids() -> list[str]:
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch/CUDA: no GPUs to spread
        return []


def fit_args(command: list[str]) -> list[str]:
    """The ``fit`` arguments of a command, without the interpreter and without ``--ckpt_path last``."""
    args = command[command.index("fit") + 1 :]
    return args[:-2] if args[-2:] == ["--ckpt_path", "last"] else args


def config_settings(command: list[str]) -> dict[str, str | None]:
    """A digest of the settings in each ``--config`` file of a ``fit`` command, by the path it gives.

    The settings as YAML reads them, not the file's bytes: a comment or a re-indented file
    trains the same run. ``None`` for a file that cannot be read as YAML.
    """
    args = fit_args(command)
    files = [value for flag, value in zip(args, args[1:]) if flag == "--config"]
    return {file: _settings_digest(Path(file)) for file in files}


def _settings_digest(path: Path) -> str | None:
    import hashlib

    import yaml

    try:
        settings = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def mark_finished(job: Job, seconds: float, settings: dict[str, str | None] | None = None) -> None:
    """Write the run's ``study-finished.json``: the record that it finished (a grid never reruns it).

    Args:
        job: the finished run.
        seconds: how long its ``fit`` took.
        settings: :func:`config_settings` of its command when its ``fit`` started (what it read).
    """
    variant = job.variant
    record = {
        "run": job.name,
        "variant": variant.variant if variant else None,
        "seed": variant.seed if variant else None,
        "fold": getattr(variant, "fold", None),
        "args": variant.args if variant else None,
        "command": job.command,
        "fit_args": fit_args(job.command),
        "config_settings": settings or {},
        "resumed": job.resume,
        "seconds": round(seconds, 1),
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
    }
    write_atomically(job.run_dir / FINISHED_FILE, json.dumps(record, indent=2) + "\n")


# -- the Optuna study ----------------------------------------------------------------------------


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
                study_name=search.optuna_name,
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
    tried = len(study.get_trials(deepcopy=False))
    if tried:  # a study run again (or joined): not the values its first trials were given
        study.sampler = make_sampler(search, offset=tried)
    if study.direction.name.lower() != search.direction:
        raise ConfigError(
            f"study {search.optuna_name} in {search.storage} was created to {study.direction.name.lower()}; "
            f"this file says {search.direction} (give another name or storage)"
        )
    if not search.is_grid:  # a grid's values are only told to Optuna; a search compares and reports them
        # Another search file of the same name (same storage, same direction) would otherwise count
        # this study's trials as its own, compare values of two metrics and relabel them in the report.
        recorded = study.user_attrs.get(METRIC_ATTR)
        reported = any(t.values or t.intermediate_values for t in study.get_trials(deepcopy=False))
        if recorded is None or (recorded != search.metric and not reported):
            # No trial reported a value of the recorded metric (a misspelt objective is refused at
            # each trial's sanity check): nothing to compare, so the fixed file goes on with this study.
            study.set_user_attr(METRIC_ATTR, search.metric)
        elif recorded != search.metric:
            raise ConfigError(
                f"study {search.optuna_name} in {search.storage} searched for {recorded}; "
                f"this file says {search.metric} (give another name or storage)"
            )
    return study, storage


def beats(storage) -> bool:
    """Whether the storage keeps heartbeats (database storages opened with an interval; the journal has none)."""
    return callable(getattr(storage, "record_heartbeat", None)) and storage.get_heartbeat_interval() is not None


def trial_id(storage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` (what another process rebuilds the trial from)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def _retry_callback():
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return RetryHeartbeatStaleTrialCallback


def _quiet_experimental():
    """Optuna's retry helpers are "experimental" since 2.8/3.0 and still public: no warning per call."""
    import optuna

    quiet = warnings.catch_warnings()
    quiet.__enter__()
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    return quiet


def retried_from(trial) -> int | None:
    """The number of the trial this one repeats (queued again after it died), or ``None``."""
    quiet = _quiet_experimental()
    try:
        return _retry_callback().retried_trial_number(trial)
    finally:
        quiet.__exit__(None, None, None)


def _retried(trials: list) -> set[int]:
    quiet = _quiet_experimental()
    try:
        return {n for t in trials for n in _retry_callback().retry_history(t)}
    finally:
        quiet.__exit__(None, None, None)


def counted(trials: list) -> list:
    """The trials that use up a search's budget: all but surplus ones and failed ones that were queued again."""
    retried = _retried(trials)
    return [
        t for t in trials
        if not t.user_attrs.get(SURPLUS) and not (t.state.name == "FAIL" and t.number in retried)
    ]


def finished(trials: list) -> list:
    """The counted trials that are done: complete, pruned or failed."""
    return [t for t in counted(trials) if t.state.is_finished()]


def _queue_again(study, number: int) -> None:
    """Fail a RUNNING trial and queue its parameters again (it inherits the run directory)."""
    import optuna

    study.tell(number, state=optuna.trial.TrialState.FAIL)
    _retry_callback()()(study, study.get_trials(deepcopy=False)[number])


def _give_back(study, trial) -> None:
    """A trial the study does not need (asked at the same moment as another process's): FAIL, marked surplus."""
    import optuna

    trial.set_user_attr(SURPLUS, True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)


# -- asking: a search and a grid -------------------------------------------------------------------


class _Asker:
    """What a worker asks for its next trial; ``None`` when there is nothing left for this process."""

    def __init__(self, study, storage, search: SearchStudy) -> None:
        self.study, self.storage, self.search = study, storage, search
        self.lock = threading.Lock()
        self._said_waiting = False
        self.mine: set[int] = set()  # the trials this process's workers run now

    def wait_or_stop(self) -> bool:
        """All is handed out and some runs elsewhere: ``True`` to wait for them (or their heartbeat to stop)."""
        if not beats(self.storage):  # the journal: a RUNNING trial may be dead, nothing would ever fail it
            return False
        import optuna

        running = {t.number for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        # A worker waiting for another worker of this process (--workers 2, the last trial) waits in
        # silence: those trials run here, not elsewhere, and no heartbeat or --retry-running concerns them.
        if not self._said_waiting and running - self.mine:  # else a study run again after a kill sits silent for a minute
            self._said_waiting = True
            print(
                f"Study {self.search.name}: waiting for the trials RUNNING elsewhere; if their process died, they "
                f"are failed and queued again once their heartbeat has stopped for {2 * self.search.heartbeat} s "
                "(with no other process running this study, --retry-running continues at once)",
                flush=True,
            )
        time.sleep(min(self.search.heartbeat, 5))
        return True


class _SearchAsker(_Asker):
    def next(self):
        import optuna

        search = self.search
        while True:
            with self.lock:
                optuna.storages.fail_stale_trials(self.study)  # trials whose process died: failed, queued again
                trials = self.study.get_trials(deepcopy=False)
                if len(finished(trials)) >= search.trials:
                    return None
                waiting = any(t.state.name == "WAITING" for t in trials)
                if waiting or len(counted(trials)) < search.trials:
                    trial = self.study.ask(search.space)  # pops a queued trial first
                    trials = self.study.get_trials(deepcopy=False)
                    order = [t.number for t in sorted(counted(trials), key=lambda t: t.number)]
                    if trial.number in order[: search.trials]:
                        self.mine.add(trial.number)
                        return trial
                    _give_back(self.study, trial)  # another process asked at the same moment; the budget is full
            if not self.wait_or_stop():
                return None


class _GridAsker(_Asker):
    """Hands out the grid's runs: GridSampler's unvisited runs, else the unfinished ones by name."""

    def __init__(self, study, storage, search: SearchStudy, runs: list[str], everything: bool) -> None:
        super().__init__(study, storage, search)
        self.runs = runs  # the runs this invocation should finish, in file order
        self.everything = everything  # no --only: GridSampler may choose among all runs
        self.attempted: set[str] = set()
        self.dead: set[str] = set()  # runs that died before their first checkpoint: not started again

    def pending(self) -> list[str]:
        return [
            r for r in self.runs
            if r not in self.attempted and r not in self.dead and not is_finished_run(self.search.directory / r)
        ]

    def next(self):
        import optuna

        while True:
            with self.lock:
                optuna.storages.fail_stale_trials(self.study)
                trials = self.study.get_trials(deepcopy=False)
                busy = running_runs(trials)
                pending = self.pending()
                free = [r for r in pending if r not in busy]
                for run in [r for r in free if left_to_user(self.search.directory / r)]:
                    print(f"  {run}: {move_aside_advice(self.search.directory / run)}", file=sys.stderr)
                    self.dead.add(run)
                    free.remove(run)
                if free:
                    waiting = any(t.state.name == "WAITING" for t in trials)
                    if not waiting and not (self.everything and not self.study.sampler.is_exhausted(self.study)):
                        self.study.enqueue_trial({GRID_PARAM: free[0]})  # GridSampler has handed it out before
                    trial = self.study.ask(self.search.space)
                    run = trial.params[GRID_PARAM]
                    if run in free:
                        self.attempted.add(run)
                        self.mine.add(trial.number)
                        return trial
                    # A run finished before this study knew of it (on disk only): its value is told. One that
                    # another process has just taken, or is finishing (recorded on disk, about to tell the study),
                    # or has told: the trial is given back, as told twice the run would count twice.
                    if is_finished_run(self.search.directory / run) and not _taken_by_another_trial(self.study, run, trial.number):
                        _tell_finished(self.study, trial, self.search.directory / run, self.search)
                    else:
                        _give_back(self.study, trial)
                    continue
            if not pending or not self.wait_or_stop():
                return None


def _taken_by_another_trial(study, run: str, number: int) -> bool:
    """Whether a trial other than ``number`` is training ``run`` or has told its value (read afresh from the storage)."""
    return any(
        t.number != number and t.params.get(GRID_PARAM) == run and t.state.name in ("RUNNING", "COMPLETE")
        for t in study.get_trials(deepcopy=False)
    )


def running_runs(trials: list) -> set[str]:
    """The grid runs some process is training now (their trials are RUNNING)."""
    return {t.params.get(GRID_PARAM) for t in trials if t.state.name == "RUNNING"}


def _tell_finished(study, trial, run_dir: Path, search: SearchStudy) -> None:
    """Tell the study about a run that finished before (its value from its ``metrics.csv``)."""
    import optuna

    trial.set_user_attr(RUN_DIR, str(run_dir))
    value = objective_value(run_dir, search)
    if value is None:
        trial.set_user_attr("note", f"finished without {search.metric} in its metrics.csv")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)


# -- running -----------------------------------------------------------------------------------


def _gives_back_optuna_settings(run: Callable[..., int]) -> Callable[..., int]:
    """Give back Optuna's log level and the warning filters ``run`` sets for the study when it ends.

    In a notebook, the user's own Optuna studies after one of ours logged no trial at all.
    """

    @functools.wraps(run)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        import optuna

        verbosity = optuna.logging.get_verbosity()
        try:
            with warnings.catch_warnings():
                return run(*args, **kwargs)
        finally:
            optuna.logging.set_verbosity(verbosity)

    return wrapper


@_gives_back_optuna_settings
def run_study(
    search: SearchStudy,
    workers: int = 1,
    extra: list[str] | None = None,
    retry_running: bool = False,
    only: list[str] | None = None,
) -> int:
    """Run trials until the study is done; returns the exit code (0, 1 when a run failed, 130).

    Args:
        search: the study's Optuna settings (a grid is a search over its run names).
        workers: trials to run at once in this process.
        extra: ``fit`` arguments from the command line, for every trial.
        retry_running: first fail and queue again every RUNNING trial (no other process may run the study).
        only: grid studies: the run names to run (default: all).
    """
    import optuna

    # We record heartbeats ourselves around each trial's process (ask-and-tell, not Study.optimize).
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study, storage = open_study(search)
    if search.is_grid:
        asker: _Asker = _GridAsker(study, storage, search, only or [v.name for v in search.study.variants], not only)
    else:
        from lightning_hw.studies.search_report import write_search_file

        write_search_file(search)
        asker = _SearchAsker(study, storage, search)
    if retry_running:
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            _queue_again(study, trial.number)
            print(f"  trial {trial.number}: was RUNNING; failed and queued again with the same parameters")
    total = _print_header(search, study, only, extra or [])
    env_of = child_env(workers)
    with _RUNNING_LOCK:
        _PASSED_ON.clear()  # a signal an earlier study in this process passed on (tests, notebooks) is not this one's
    global _COUNT, _START_WARM
    own_count = _PassedOnCount()
    with _RUNNING_LOCK:
        _COUNT = own_count
    _START_WARM = total >= WARM_START_FROM
    try:
        stop = threading.Event()
        outcomes: dict[int, str] = {}
        started = itertools.count(1)

        def worker(index: int) -> None:
            while not stop.is_set():
                trial = asker.next()
                if trial is None:
                    return
                tid = trial_id(storage, search.optuna_name, trial.number)
                env = {**env_of(index), **trial_env(search, tid)}
                job = job_for(search, trial, extra or [])
                with asker.lock:
                    label = f"[{next(started)}/{total}] {job.name}" if search.is_grid else f"[trial {trial.number}]"
                try:
                    outcomes[trial.number] = outcome = _run_trial(study, storage, tid, search, trial, job, env, workers, label, asker.lock, extra or [])
                finally:
                    asker.mine.discard(trial.number)
                if outcome in ("interrupted", "refused"):
                    stop.set()

        with ThreadPoolExecutor(max_workers=workers) as pool:
            try:
                list(pool.map(worker, range(1, workers + 1)))
            except KeyboardInterrupt:
                stop.set()
                _wait_for_fits(pool)
                print("Study interrupted; run the same command again to continue it.")
                return 130
        if "refused" in outcomes.values():  # said on the trial's line, with the fit's own error
            # The command line, or the study file's shared settings (its objective): the trial's line says which.
            print(f"Study {search.name} stopped: its fit refused what every run shares (see the error above).", file=sys.stderr)
            return ConfigError.exit_code
        if stop.is_set():  # what happens to each interrupted run was said on its line
            print("Study interrupted; run the same command again to continue it.")
            return 130
        code = _print_summary(search, study, asker)
        return 1 if any(o == "failed" for o in outcomes.values()) else code
    finally:
        with _RUNNING_LOCK:
            if _COUNT is own_count:  # a study started meanwhile in another thread has its own: left to it
                _COUNT = None
        own_count.close()
        close_storage(storage)  # optuna.db stayed open in a notebook until the garbage collector ran


def _wait_for_fits(pool: ThreadPoolExecutor) -> None:
    """Wait for the running fits to stop and their runs to be recorded, however often the study is signalled meanwhile.

    Another SIGTERM is passed on (:func:`pass_on_signal`: the fits then stop at once) and another
    Ctrl-C, which the terminal sent to the fits too, is left to them; neither raises here. Raised
    in the middle of the wait, ``KeyboardInterrupt`` made Python take the fits' threads for ended
    (an interrupted ``Thread.join``): the study exited at once, its fits orphaned, the end of
    their output lost and their trials left RUNNING in the storage.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        pool.shutdown(wait=True, cancel_futures=True)
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, lambda signum, frame: pass_on_signal(signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pool.shutdown(wait=True, cancel_futures=True)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def job_for(search: SearchStudy, trial, extra: list[str]) -> Job:
    """The ``fit`` a trial runs: a grid's named run, or a search trial's parameters in ``trial-<N>``.

    A search trial queued again (after an interrupt or a dead process) resumes the run of the
    trial it repeats from its ``checkpoints/last.ckpt`` when there is one, else starts afresh in
    ``trial-<N>``; a grid run always trains in its own directory (resuming when it can).
    """
    study: Study = search.study
    if search.is_grid:
        variant = search.variant(trial.params[GRID_PARAM])
        run_dir = study.run_dir(variant)
    else:
        # A trial queued again continues the dead trial's run when that saved a last.ckpt; else it
        # starts afresh in its own directory (the dead trial's record stays as it is).
        run_dir = Path(trial.user_attrs.get(RUN_DIR) or "")
        if not has_last_checkpoint(run_dir):
            run_dir = Path(study.root) / study.name / f"{PREFIX}{trial.number}"
        options = trial_options(trial, search.heads)  # a trial queued again runs the head it began with
        if search.heads and HEADS_ATTR not in trial.user_attrs:  # what report and summaries show it ran with
            trial.set_user_attr(HEADS_ATTR, {h.option: options[h.option] for h in search.heads})
        variant = Variant(run_dir.name, run_dir.name, overrides_to_args(options, study.path, "search"))
    trial.set_user_attr(RUN_DIR, str(run_dir))
    resume = has_last_checkpoint(run_dir)
    return Job(variant.name, run_dir, fit_command(study, variant, extra, resume=resume), resume, variant if search.is_grid else None)


def _print_header(search: SearchStudy, study, only: list[str] | None, extra: list[str]) -> int:
    """What the study holds before this invocation; returns how many trials it may start."""
    if search.objective_note:
        print(f"Study {search.name}: {search.objective_note}")
    if search.is_grid:
        names = only or [v.name for v in search.study.variants]
        done = [n for n in names if is_finished_run(search.directory / n)]
        outside = [n for n in names if finished_outside_study(search.directory / n)]
        resume = [n for n in names if n not in done and n not in outside and has_last_checkpoint(search.directory / n)]
        running = running_runs(study.get_trials(deepcopy=False))
        dead = [n for n in names if n not in running and died_before_checkpoint(search.directory / n)]
        stopped = f", {len(dead)} stopped before a checkpoint" if dead else ""
        if outside:
            stopped += f", {len(outside)} finished outside the study"
        dead += outside
        print(
            f"Study {search.name}: {len(names)} runs in {search.directory} ({len(done)} finished, "
            f"{len(resume)} to resume, {len(names) - len(done) - len(resume) - len(dead)} to start{stopped}; "
            f"storage {search.storage})"
        )
        for name in done:
            note = changed_note(search.study, search.variant(name), extra)
            print(f"  {name}: finished before, skipped ({search.directory / name}){'; ' + note if note else ''}")
        return len(names) - len(done) - len(dead)
    done = finished(study.get_trials(deepcopy=False))
    print(
        f"Study {search.name}: {len(done)} of {search.trials} trials finished in {search.storage} "
        f"({search.sampler} sampler, pruner {next(iter(search.pruner))}, objective {search.metric} {search.direction})"
    )
    return search.trials - len(done)


def changed_note(study: Study, variant: Variant, extra: list[str]) -> str:
    """A warning when a finished grid run ran with other arguments than the study now gives.

    The study run prints it beside the run it skips, and ``--dry-run`` under the run it lists, so
    the preview says what the run will.

    Args:
        study: the grid study.
        variant: the finished run's variant.
        extra: ``fit`` arguments from the command line.

    Returns:
        ``note: ...`` saying to move the run aside to run it again, or ``""`` when it ran as it would now.
    """
    run_dir = study.run_dir(variant)
    try:
        record = json.loads((run_dir / FINISHED_FILE).read_text())
        before, settings = record.get("fit_args"), record.get("config_settings") or {}
    except (OSError, ValueError, AttributeError):
        return ""
    command = fit_command(study, variant, extra, resume=False)
    if before is not None and before != fit_args(command):
        return f"note: it ran with other arguments than now, move {run_dir} aside to run it again"
    # The same arguments, but a config file edited since (a new lr in the base config): the run
    # trained with the file as it was then.
    now = config_settings(command)
    changed = [file for file, digest in settings.items() if digest and now.get(file) and now[file] != digest]
    if not changed:
        return ""
    files = f"file {changed[0]}" if len(changed) == 1 else f"files {', '.join(changed)}"
    return f"note: its config {files} changed since it ran, move {run_dir} aside to run it again"


def _print_summary(search: SearchStudy, study, asker: _Asker) -> int:
    """The study's result in a few lines; returns the exit code (1 when a run failed)."""
    if isinstance(asker, _GridAsker):
        failed = sorted(n for n in asker.attempted if not is_finished_run(search.directory / n))
        retried = [n for n in failed if not left_to_user(search.directory / n)]
        if retried:
            print(f"Study {search.name}: {len(retried)} run(s) failed: {', '.join(retried)}; re-run to retry them.", file=sys.stderr)
        for name in sorted(set(failed) - set(retried)):  # killed in its first epoch in this invocation
            print(f"Study {search.name}: run {name} failed; {move_aside_advice(search.directory / name)}.", file=sys.stderr)
        if asker.dead:
            print(
                f"Study {search.name}: {len(asker.dead)} run(s) not started again: {', '.join(sorted(asker.dead))} "
                "(each stopped before its first checkpoint or finished outside the study; move it aside to run it again, "
                "see above).",
                file=sys.stderr,
            )
        if failed or asker.dead:
            return 1
        # Runs this process left to another: RUNNING in the storage when nothing else was left to take.
        # A database storage waits for them (or for their heartbeat to stop); a journal has no
        # heartbeat, so its RUNNING run may be one whose process died.
        elsewhere = [n for n in asker.runs if n not in asker.attempted and not is_finished_run(search.directory / n)]
        if elsewhere:
            print(
                f"Study {search.name}: {len(elsewhere)} run(s) RUNNING in the storage, left to the process that runs them: "
                f"{', '.join(elsewhere)}; if none does (its process died), run the study again with --retry-running.",
                file=sys.stderr,
            )
            return 0
        # With --only (or --variant) this process ran a part of the study: the rest may not have run.
        left = [v.name for v in search.study.variants if not is_finished_run(search.directory / v.name)]
        if left:
            print(
                f"Study {search.name}: the {len(asker.runs)} run(s) asked for finished; {len(left)} of its "
                f"{len(search.study.variants)} runs not yet: {', '.join(left[:5])}{', ...' if len(left) > 5 else ''} "
                "(run the study without --only or --variant for them)."
            )
            return 0
        print(f"Study {search.name} complete. Compare the runs with: python -m lightning_hw report {search.directory}")
        return 0
    trials = study.get_trials(deepcopy=False)
    done = finished(trials)
    states = {s: sum(t.state.name == s for t in done) for s in ("COMPLETE", "PRUNED", "FAIL")}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n)
    print(f"Study {search.name}: {len(done)} trials finished ({summary or 'none'}).")
    if any(t.state.name == "COMPLETE" for t in done):
        best = study.best_trial
        print(f"Best: trial {best.number}, {search.metric} = {best.value:.4f}, {params_text(trial_options(best, search.heads))}")
    print(f"Report with: python -m lightning_hw report {search.directory}")
    return 0


def _run_trial(
    study, storage, tid: int, search: SearchStudy, trial, job: Job, env: dict[str, str], workers: int, label: str, lock, extra: list[str]
) -> str:
    """Train one trial in a ``fit`` process and tell the study how it ended."""
    import optuna

    retry = retried_from(study.get_trials(deepcopy=False)[trial.number])
    how = "resuming from checkpoints/last.ckpt" if job.resume else "starting"
    what = f"{how}{f', again for trial {retry}' if retry is not None else ''}"
    if not search.is_grid:
        what += f": {params_text(trial_options(trial, search.heads))}"
    with lock:
        print(f"{label}: {what} ({job.run_dir})", flush=True)
    started = time.monotonic()
    settings = config_settings(job.command)  # the config files as this fit reads them
    beating = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(storage, tid, search.heartbeat, beating), daemon=True)
    beat.start()
    try:
        code = execute(job, env, tee=workers == 1)
    finally:
        beating.set()
        beat.join()
    seconds = time.monotonic() - started
    status = read_status(job.run_dir)
    trial.set_user_attr("epochs", len(_curve(job.run_dir, search.metric)))  # before the tell: a finished trial is read-only
    value = objective_value(job.run_dir, search)
    if code in INTERRUPT_CODES:
        _queue_again(study, trial.number)
        outcome, text = "interrupted", f"interrupted ({INTERRUPT_CODES[code]}); {_after_interrupt(search, job)}"
    elif code == ConfigError.exit_code and not status and (
        shared_metric_not_logged(search, job) or shared_project_refused(search, job) or shared_nothing_to_train(search, job)
        or shared_command_refused(search, extra, job)
    ):
        # The fit refused what every run of the study shares (a mistyped option, an objective its
        # task never logs): every trial would be refused, so the study stops, and the trial is
        # queued again rather than counted, or a typo would use up a search's whole budget without
        # training anything. A refusal of this trial's own values (a variant's options, sampled
        # parameters) fails it as any error.
        _queue_again(study, trial.number)
        outcome, text = "refused", (
            f"refused before training: {_refusal(job)}; fix the study file or the options and run the study "
            "again (nothing was trained; the trial is queued again)"
        )
    elif code == 0 and status.get("status") == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        outcome, text = "pruned", f"pruned at epoch {status.get('pruned_at_epoch')} after {seconds:.1f} s"
    elif code == 0 and status.get("status") == "finished" and (value is not None or search.is_grid):
        mark_finished(job, seconds, settings)
        _tell_finished(study, trial, job.run_dir, search)
        shown = f"{search.metric} = {value:.4f} in " if value is not None and not search.is_grid else "finished in "
        outcome, text = "complete", f"{shown}{seconds:.1f} s"
    else:
        why = f"exit {code}" if code else ("a fit that trained nothing" if status.get("status") != "finished" else f"no {search.metric} in its metrics.csv")
        trial.set_user_attr("exit_code", code)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        # With several workers the fits' output goes only to their logs: show the error line here.
        error = _error_line(job) if workers > 1 else None
        said = f": {error}" if error else ""
        outcome, text = "failed", f"FAILED ({why}, run {status.get('status') or 'not started'}){said}; see {job.run_dir / LOG_FILE}"
    with lock:
        print(f"{label}: {text}" if search.is_grid else f"{label} {text}", flush=True)
    return outcome


def shared_command_refused(search: SearchStudy, extra: list[str], job: Job | None = None) -> bool:
    """Whether ``fit`` refuses the command line every run of the study shares (config, ``args:``, ``extra``).

    Parsed with ``--print_config``, which stops before anything is built or written, without
    a variant's or trial's own options: only called after a trial was refused, to tell a typo
    in the shared options from a refusal of that trial's own values. The refused run's config
    files are kept: in a study with no base ``config:`` (each variant names its own, as
    ``overfitting_cv.yaml``) the shared options alone name no model or data, which ``fit``
    always refuses, and one variant's typo would stop every variant.

    Args:
        search: the study.
        extra: the ``study`` command line's ``fit`` arguments.
        job: the refused run (its ``--config`` files are part of the check).
    """
    configs = split_configs(job.variant.args)[0] if job is not None and job.variant is not None else []
    command = fit_command(search.study, Variant("check", "check", configs), extra) + ["--print_config"]
    # Forked from the study's warm process, as its fits are: a fresh interpreter spent ~5 s importing for it.
    checked = warm_start.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_server=_START_WARM)
    return checked.returncode == ConfigError.exit_code


def shared_metric_not_logged(search: SearchStudy, job: Job) -> bool:
    """Whether a run's ``fit`` stopped because its task never logs a metric every run of the study watches.

    :class:`lightning_hw.callbacks.guards.WatchedMetricsCheck` says so before training (or after
    the first validation): for a search's objective, which is the study file's, and for a
    ``run.monitor`` that no variant or searched parameter sets per run (the base config's, a
    typo every run would repeat, each using up a trial), and for a callback's (``EarlyStopping``,
    ``ModelCheckpoint``) when no variant or searched parameter may set the run's callbacks.
    """
    from lightning_hw.callbacks.guards import OBJECTIVE

    line = _error_line(job) or ""
    if line.startswith(f"error: {OBJECTIVE} "):
        return True
    if re.match(r"error: the monitor of [A-Za-z_]\w* ", line):  # a callback's monitor (see guards.watched_metrics)
        return not _callbacks_set_per_run(search)
    # The run's monitor: run.monitor, else the task class's (``error: MyTask.monitor ...``) or the default.
    if not re.match(r"error: (run\.monitor|[A-Za-z_]\w*\.monitor|the default monitor) ", line):
        return False
    return not _set_per_run(search, "run.monitor")


def shared_project_refused(search: SearchStudy, job: Job) -> bool:
    """Whether a run's ``fit`` refused a ``run.project`` every run of the study shares (``me/e1`` in ``args:``).

    ``fit`` checks the name as it plans a new run, which ``--print_config`` (what
    :func:`shared_command_refused` asks) never reaches: each trial was failed on it, using up
    a search's budget without training anything.
    """
    line = _error_line(job) or ""
    return line.startswith("error: run.project ") and not _set_per_run(search, "run.project")


def shared_nothing_to_train(search: SearchStudy, job: Job) -> bool:
    """Whether a run's ``fit`` refused a ``max_epochs`` or ``max_steps`` of 0 that every run of the study shares.

    ``fit`` refuses it as it builds the trainer, which ``--print_config`` (what
    :func:`shared_command_refused` runs) never reaches: each trial was failed in turn, the
    search's budget used up without training anything. Shared unless a variant (its options
    or its own config files) or a searched parameter sets it.
    """
    match = re.match(r"error: trainer\.(max_epochs|max_steps) is 0: ", _error_line(job) or "")
    if match is None:
        return False
    if search.is_grid and any(split_configs(v.args)[0] for v in search.study.variants):
        return False
    return not _set_per_run(search, f"trainer.{match.group(1)}")


def _set_per_run(search: SearchStudy, key: str) -> bool:
    """Whether a variant (a grid) or a searched parameter sets the ``run:`` option ``key``, e.g. ``run.monitor``."""
    if search.is_grid:
        return any(option_values(v.args, f"--{key}") for v in search.study.variants)
    return key in search.space


def _callbacks_set_per_run(search: SearchStudy) -> bool:
    """Whether a variant (its options or its own config files) or a searched parameter may set the run's callbacks.

    An option's value counts as well as its name: ``trainer: {callbacks: [...]}`` sets them as
    ``trainer.callbacks`` does (its value is JSON naming them), and so may a searched ``config``.
    """
    def per_run(text: str) -> bool:
        return "callbacks" in text or "monitor" in text

    if search.is_grid:
        return any(split_configs(v.args)[0] or any(per_run(arg) for arg in v.args) for v in search.study.variants)
    return any(
        key.removeprefix("--") == "config" or per_run(key) or any(per_run(str(c)) for c in getattr(dist, "choices", ()))
        for key, dist in search.space.items()
    )


def _refusal(job: Job) -> str:
    """The ``error:`` line a fit that refused its command line printed (the last in its ``study.log``)."""
    return _error_line(job) or f"see {job.run_dir / LOG_FILE}"


def _error_line(job: Job) -> str | None:
    """The last ``error:`` line of the run's ``study.log``, or ``None``."""
    return last_error_line(job.run_dir)


def _after_interrupt(search: SearchStudy, job: Job) -> str:
    """What running the study again does with an interrupted trial's run.

    A fit stopped at once (a second Ctrl-C) in its first epoch keeps a record but no
    ``last.ckpt``: a grid cannot start its fixed-name run over it (see
    :func:`died_before_checkpoint`), and a search trial asked again starts afresh in a new
    directory. Nothing on disk (stopped before training): the run simply starts again.
    """
    if has_last_checkpoint(job.run_dir):
        return "run the study again to resume it" if search.is_grid else "it is queued again and resumes when the study runs again"
    if not search.is_grid:
        return "it is queued again and starts afresh when the study runs again (nothing to resume)"
    if died_before_checkpoint(job.run_dir):
        return move_aside_advice(job.run_dir)
    return "nothing was saved; running the study again starts it anew"


def _heartbeat(storage, tid: int, interval: int, stop: threading.Event) -> None:
    """Record the trial's heartbeat until ``stop`` (database storages; the journal has none)."""
    if not beats(storage):
        return
    while True:
        try:
            storage.record_heartbeat(tid)
        except Exception as err:
            if disk_full_in(err) is None:
                raise
            # A full disk: the study's own next write says so in one line (this thread printed a
            # traceback beside it); while the trial runs, beat again when there may be space.
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


def params_text(options: dict[str, Any]) -> str:
    """``lr = 0.01, hidden = [64, 32]``: a trial's options (see :func:`fit_options`) as the study file writes them."""
    return ", ".join(f"{k} = {f'{v:.4g}' if isinstance(v, float) else json.dumps(v)}" for k, v in options.items())
