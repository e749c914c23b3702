"""The loggers of a run: ``metrics.csv`` always (reports need no account), W&B unless disabled."""

from __future__ import annotations

import contextlib
import csv
import io
import netrc
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from lightning_hw.runs.config import RunConfig
from lightning_hw.runs.files import METRICS_FILE, WANDB_ID_FILE, write_atomically


def wandb_mode(setting: str) -> str:
    """Resolve ``auto`` to ``online`` when W&B credentials exist, else ``offline``.

    ``setting`` is one of :data:`WANDB_MODES` (:meth:`RunConfig.check` refused any other).
    """
    if setting != "auto":
        return setting
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    return "offline"


def offline_reason(setting: str) -> str:
    """Why a W&B run of the ``run.wandb`` ``setting`` is offline, for the line that says so.

    Not always "no credentials": a user who is logged in gets an offline run by asking for one.

    Args:
        setting: ``run.wandb`` (one of :data:`WANDB_MODES`).
    """
    if setting == "offline":
        return "as run.wandb asks"
    if setting == "auto" and os.environ.get("WANDB_MODE") == "offline":
        return "as WANDB_MODE=offline in the environment asks"
    return "no credentials found; `wandb login` to log online"


class MetricsFile:
    """``metrics.csv`` of one run: rows are appended, and nothing is ever deleted.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, which lost the
    history of every run that was resumed or re-used. This one appends to an existing
    file; a resumed run first drops the rows it is about to log again (:meth:`trim_from`,
    called once its first training step has run). The format is Lightning's: one column
    per key, sorted, ``step`` included; the file is rewritten only when a new key appears.

    Args:
        log_dir: the directory of ``metrics.csv``.
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = str(log_dir)
        self.path = Path(log_dir) / METRICS_FILE
        self.metrics_file_path = str(self.path)  # Lightning's name for it
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = self._header()

    def _header(self) -> list[str]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as file:
            return sorted(next(csv.reader(file), []))

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        """Record one row (written by :meth:`save`)."""
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics_dict.items()}
        row["step"] = len(self.metrics) if step is None else step
        self.metrics.append(row)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Ignored: the run's resolved ``config.yaml`` is its record of the settings."""

    def save(self) -> None:
        """Append the recorded rows (rewriting the file with a wider header when a new key appears)."""
        if not self.metrics:
            return
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        if new_keys:
            self.metrics_keys = sorted(set(self.metrics_keys) | new_keys)
        exists = self.path.is_file()
        if new_keys and exists:
            self._rewrite(self._rows())
        with self.path.open("a" if exists else "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            if not exists:
                writer.writeheader()
            writer.writerows(self.metrics)
        self.metrics = []

    def trim_from(self, step: int) -> None:
        """Drop the training rows logged at ``step`` or later: a resumed run logs them again.

        Rows are logged with ``step`` = the number of optimizer steps before them, so the
        rows of the epochs after the checkpoint have a step at or past the checkpoint's.
        A test row (``test/*`` only) stays: it records a test that did happen, which the
        resumed run does not repeat at that step.
        """
        if not self.path.is_file():
            return
        rows = self._rows()
        kept = [r for r in rows if (r.get("step", "").isdigit() and int(r["step"]) < step) or _test_only(r)]
        if len(kept) != len(rows):
            self._rewrite(kept)

    def keep_newest_test_at(self, epoch: int, step: int) -> None:
        """Of the test rows at ``(epoch, step)`` (one checkpoint's test), keep only the newest.

        For a run resumed after its test after fit was stopped once that test had logged its row
        (a full disk at its figures): the resume tests the same checkpoint again, and its row
        stood beside the stopped one's, two tests in the record of a run tested once.
        """
        self.save()
        if not self.path.is_file():
            return
        rows = self._rows()
        at = [i for i, r in enumerate(rows) if _test_only(r) and (r.get("epoch"), r.get("step")) == (str(epoch), str(step))]
        if len(at) > 1:
            self._rewrite([r for i, r in enumerate(rows) if i not in at[:-1]])

    def _rows(self) -> list[dict[str, str]]:
        with self.path.open(newline="") as file:
            return list(csv.DictReader(file))

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.path, text.getvalue(), newline="")


def _test_only(row: dict[str, str]) -> bool:
    metrics = [k for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")]
    return bool(metrics) and all(k.startswith("test/") for k in metrics)


class RunCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` writing straight into the run directory through :class:`MetricsFile`.

    Args:
        directory: the run (or evaluation) directory.
    """

    def __init__(self, directory: str | Path) -> None:
        # Flushed at every log call (a few rows per epoch), so a killed run loses no rows.
        super().__init__(save_dir=directory, name="", version="", flush_logs_every_n_steps=1)

    @property
    @rank_zero_experiment
    def experiment(self) -> MetricsFile:
        if self._experiment is None:
            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            self._experiment = MetricsFile(self.log_dir)
        return self._experiment


def wandb_logger(run: RunConfig, directory: Path, display_name: str, group: str, job_type: str, run_id: str | None) -> WandbLogger | None:
    """A W&B logger for this run, not started yet (``None`` when W&B is disabled).

    Args:
        run: the ``run:`` settings (project, tags, job type, notes, W&B mode).
        directory: where W&B writes its files (``<directory>/wandb``).
        display_name: the W&B run name (``<group>/<name>``).
        group: the W&B group.
        job_type: W&B job type when ``run.job_type`` is unset (the subcommand).
        run_id: the W&B run to continue (a resumed run), or ``None`` for a new one.
    """
    mode = wandb_mode(run.wandb)
    if mode == "disabled":
        return None
    if os.environ.get("WANDB_SWEEP_ID"):
        run_id = None  # under `wandb agent` the run id comes from the agent (WANDB_RUN_ID)
    logger = WandbLogger(
        project=run.project,
        name=display_name,
        group=group,
        tags=list(run.tags),
        job_type=run.job_type or job_type,
        notes=run.notes,
        save_dir=str(directory),
        # `mode` rather than WandbLogger's `offline=True`, which sets WANDB_MODE for the
        # whole process and so leaks into every later run started by the same process.
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        settings=wandb_settings(),
    )
    from lightning_hw._compat.lightning import drop_wandb_anonymous

    drop_wandb_anonymous(logger)
    return logger


def wandb_settings() -> Any:
    """W&B's output settings: ``quiet`` unless ``--verbose`` (``None``: W&B's defaults).

    ``quiet`` drops W&B's end-of-run history and summary (~30 lines) and its own ``wandb
    sync`` advice (the run prints the exact command); its banner (the run's URL online, its
    local files offline), warnings and errors stay. ``silent`` would hide those too.
    """
    import wandb

    from lightning_hw.cli.verbosity import is_verbose

    return None if is_verbose() else wandb.Settings(quiet=True)


def start_wandb(logger: WandbLogger, directory: Path, setting: str = "auto") -> str | None:
    """Start the W&B run now (a failure is reported once, before training, not mid-run).

    Args:
        logger: the run's W&B logger, not started yet.
        directory: the run (or evaluation) directory.
        setting: ``run.wandb``, which says why an offline run is offline.

    Returns:
        ``None`` when it started, else a sentence saying why not.
    """
    try:
        import wandb

        if wandb.run is not None:
            # WandbLogger would silently reuse an open run; each Lightning run gets its own.
            print(f"W&B run {wandb.run.id} was still open; finishing it so this run gets its own.", file=sys.stderr)
            wandb.finish()
        if rank_zero_only.rank == 0:  # other DDP processes log nothing (Lightning gives them a dummy run)
            experiment = logger.experiment
            from lightning_hw._compat.wandb import quiet_log_files

            quiet_log_files(directory)
            id_file = directory / WANDB_ID_FILE
            if not id_file.is_file() or id_file.read_text().strip() != experiment.id:
                id_file.write_text(experiment.id)
            if getattr(experiment, "offline", False):
                print(f"W&B is offline ({offline_reason(setting)}); the command that uploads it is printed when this one completes.")
    except BaseException as err:
        # No logger holds the run W&B may have opened by now, so nothing else would close it
        # but W&B's exit hook: after an interrupt, once the rollback has removed its files,
        # advising to sync them (and leaving a stray wandb/ folder where the run was).
        _finish_quietly(sys.modules.get("wandb"), getattr(err, "exit_code", 1))
        if not isinstance(err, Exception):
            raise  # a signal (or Ctrl-C) while W&B was starting: the command stops
        return f"W&B could not start ({type(err).__name__}: {err}); logging to CSV only."
    return None


def _finish_quietly(wandb: Any, exit_code: int) -> None:
    """Finish the open W&B run, if any, without W&B's goodbye (its ``wandb sync`` advice)."""
    run = getattr(wandb, "run", None)
    if run is None:
        return
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    with quiet[0], quiet[1], contextlib.suppress(Exception):  # W&B trouble must not stop training
        run.finish(exit_code=exit_code)


def note_caveats_in_wandb(loggers: list[Logger], caveats: list[str]) -> None:
    """An evaluation's caveats (see ``Run.record_caveats``) in its W&B run: summary ``caveats``, tag ``caveat``.

    So that a W&B table or a filter on the tag shows them next to the scores, as ``report`` does.
    """
    if not caveats:
        return
    from lightning_hw._compat.lightning import started_wandb_run

    for logger in loggers:
        experiment = started_wandb_run(logger)
        if experiment is None:
            continue
        experiment.summary["caveats"] = list(caveats)
        experiment.tags = (*experiment.tags, "caveat")


def finish_wandb(loggers: list[Logger], exit_code: int = 0, print_sync: bool = True) -> None:
    """Close W&B runs so that the next run in this process never reuses one.

    Args:
        loggers: the run's loggers.
        exit_code: the command's exit code (W&B marks a non-zero one as failed).
        print_sync: print the exact ``wandb sync`` command of an offline run.
    """
    from lightning_hw._compat.lightning import started_wandb_run

    for logger in loggers:
        experiment = started_wandb_run(logger)
        if experiment is None:
            continue
        offline = bool(getattr(experiment, "offline", False))
        sync_dir = getattr(experiment, "sync_dir", None) if offline else None
        run_id = experiment.id
        experiment.finish(exit_code=exit_code)
        if sync_dir and print_sync:
            print(f"W&B run saved offline; upload it with: {sync_command(Path(sync_dir), run_id)}")


def sync_command(sync_dir: Path, run_id: str) -> str:
    """``wandb sync`` for one offline run directory, or for all of them when a run was resumed.

    A resumed run writes one ``offline-run-<time>-<id>`` directory per session (wandb adds
    ``-1``, ``-2``... when two start in the same second), all with the same run id;
    syncing them in name (= time) order rebuilds the one W&B run. The path is quoted for the
    shell (a run root such as ``my runs``), the glob is not: the user's shell expands it.
    """
    pattern = f"offline-run-*-{run_id}*"
    if len(list(sync_dir.parent.glob(pattern))) > 1:
        return f"wandb sync {shlex.quote(str(sync_dir.parent))}/{pattern}"
    return f"wandb sync {shlex.quote(str(sync_dir))}"
