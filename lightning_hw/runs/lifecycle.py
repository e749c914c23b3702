"""A run from its planning to its last line: the only code that creates, writes or cleans a run directory.

Every command goes through the same steps:

1. :func:`plan_run` decides, from the config alone, what the command does to which
   directory, and refuses what would damage a record (a fresh ``fit`` under a taken name,
   a resume without a checkpoint) before anything exists on disk.
2. The CLI checks the checkpoint against the configured model and the data files
   against the datamodule; then :meth:`Run.open` creates the directory and W&B starts.
3. A ``fit`` *commits* after its first training step (:class:`RunRecord`): only then are
   ``config.yaml`` and ``status.json`` written, and a resumed run drops the metric rows
   it will log again. Until then nothing of an existing run has changed, so a failure
   :meth:`Run.rollback`\\ s to exactly what was there (a fresh run leaves no directory).
4. :meth:`Run.finish` records how the run ended in ``status.json``.

Modes: ``create`` (a new run), ``resume`` (the same run continues from its checkpoint and
appends), ``evaluate`` (validate/test/predict write into ``<run>/eval/<stage>-<time>/`` and
never into the training files) and ``scratch`` (``fast_dev_run``: nothing is written).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from lightning_hw.errors import ConfigError, not_writable_in
from lightning_hw.runs import naming
from lightning_hw.runs.config import RunConfig, flat_settings
from lightning_hw.runs.files import (
    CAVEATS_FILE,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    EVAL_DIR,
    LAST_CHECKPOINT,
    LOCK_FILE,
    METRICS_FILE,
    check_outside_records,
    checkpoint_names,
    holds_checkpoints,
    holds_record,
    make_unique_dir,
    read_status,
    refuse_a_reserved_name,
    refuse_a_sweep_as_run,
    write_atomically,
    write_status,
)

MODES = ("create", "resume", "evaluate", "scratch")
# status.json's ``during`` of a fit stopped in its test after fit (its training whole).
DURING_THE_TEST_AFTER_FIT = "the test after fit (training had finished)"


def command_name() -> str:
    """How the user started this program (for the commands we print)."""
    return "lightning-hw" if Path(sys.argv[0]).name == "lightning-hw" else "python -m lightning_hw"


@dataclass
class Run:
    """What one command does to one run directory.

    Args:
        settings: the ``run:`` settings.
        stage: ``fit``, ``validate``, ``test`` or ``predict``.
        mode: one of :data:`MODES`.
        group: the run's group (its parent directory's name).
        name: the run's name.
        run_dir: the run's directory (for ``evaluate``: the evaluated run, or the group's directory).
        directory: where this command writes (``run_dir``, or an ``eval/`` directory).
        ckpt_path: the checkpoint Lightning loads (``None``: none).
        note: a sentence for the user about a choice made (e.g. a resume that starts afresh).
        unique: the directory's name is this command's own choice (a timestamp): should another
            command take it first, :meth:`open` moves on to ``<name>-1``, ``<name>-2``...
        scored: an evaluation's checkpoint position, ``(epoch, step)`` as the checkpoint
            holds them: its rows are logged there, not at epoch 0, step 0.
    """

    settings: RunConfig
    stage: str
    mode: str
    group: str
    name: str
    run_dir: Path
    directory: Path
    ckpt_path: str | None = None
    note: str | None = None
    unique: bool = False
    scored: tuple[int, int] | None = None
    committed: bool = False
    testing_after_fit: bool = False
    after_a_stopped_test: bool = False
    _opened: bool = False
    _locked: bool = False
    _created: list[Path] = field(default_factory=list)
    _before: dict[str, str | None] | None = None
    _config_text: str | None = None
    _root_to_record: tuple[str | None] | None = None

    @property
    def writes(self) -> bool:
        """Whether this process writes files (the first process of a job, and never for ``scratch``)."""
        return rank_zero_only.rank == 0 and self.mode != "scratch"

    @property
    def config_file(self) -> Path:
        """The config this command saves: ``<run>/config.yaml``, or ``config-<stage>.yaml`` of an evaluation."""
        return self.directory / (CONFIG_FILE if self.stage == "fit" else f"config-{self.stage}.yaml")

    def resume_command(self, from_start_folder: bool = False) -> str:
        """The exact command that continues this run from its ``last.ckpt`` (under torchrun or ``srun`` when they started it).

        Args:
            from_start_folder: the command for the folder the run was started in, which its
                ``config.yaml``'s relative ``run.root`` is read from (for ``status.json``, which
                stays with the run). Otherwise the command for this working directory (printed):
                with ``--run.root`` where the recorded root, read from here, names another folder.
        """
        config, root = self.run_dir / CONFIG_FILE, ""
        recorded = self.root_to_record()
        if recorded is not None and from_start_folder:
            config = Path(recorded) / self.group / self.name / CONFIG_FILE
        elif recorded is not None and not _same_path(Path(recorded) / self.group / self.name, self.run_dir):
            root = f" --run.root {shlex.quote(str(self.run_dir.parent.parent))}"
        fit = f"fit --config {shlex.quote(str(config))} --ckpt_path last{root}"
        launch = naming.job_launch(command_name())
        if launch is None:
            return f"{command_name()} {fit}"
        start, where = launch
        return f"{start} {fit}" + (f"  # {where}" if where else "")  # a shell comment: still a command to paste

    def root_to_record(self) -> str | None:
        """The ``run.root`` this run's ``config.yaml`` keeps; ``None``: the root given (a new run's).

        A resumed run keeps the root it recorded as long as that still names the run's folder,
        read from the folder the run was started in: a root given only to find the run from
        another working directory (``--run.root ../A/runs``) is relative to that directory, and
        recorded it would make ``--config runs/g/n/config.yaml --ckpt_path last`` (and ``test``)
        from the run's own folder name no run. A run moved under a root of another name records
        the root it is resumed with, which names it (from here).
        """
        if self.mode != "resume":
            return None
        if self._root_to_record is None:  # read once: the config written on the commit must not change the answer
            recorded = _recorded_root(self.run_dir)
            keep = recorded is not None and _root_names(recorded, self.run_dir.parent.parent)
            self._root_to_record = (recorded if keep else None,)
        return self._root_to_record[0]

    # -- opening and rolling back ----------------------------------------------------------------

    def open(self) -> None:
        """Create (or take) the directory, noting what existed for :meth:`rollback`.

        A directory named by this command is created exclusively; a run named by the user
        (or resumed) is locked for the command's duration (``.lock``: host and pid), so two
        commands never write into one run at once.

        Raises:
            ConfigError: another live command holds the run, or its folder cannot be written.
        """
        if self.mode == "scratch":
            return
        if self.writes:
            try:
                self._take_directory()
            except OSError as err:
                if not_writable_in(err) is None:
                    raise
                what = "run" if self.directory == self.run_dir else "folder"
                raise ConfigError(
                    f"cannot write {what} {self.directory} ({err.strerror}"
                    + (f": {err.filename}" if err.filename and Path(err.filename) != self.directory else "")
                    + f"); {self._writable_elsewhere()}"
                ) from None
            self._opened = True
        naming.share_directory(self.directory)

    def _take_directory(self) -> None:
        if self.unique:
            self._create_unique()
            return
        self._created = _missing(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._lock()
        except BaseException:  # refused (in use, not writable) or a full disk: the folders made for it go
            self._remove_created()
            raise
        self._before = _entries(self.directory) if not self._created else None

    def _writable_elsewhere(self) -> str:
        """What to do when this command cannot write where it must (a read-only disk, another user's runs/)."""
        if self.mode == "create":
            return "give a --run.root you can write to"
        return f"{self.run_dir} must be writable for this command (its files stay as they are)"

    def _create_unique(self) -> None:
        parent = self.directory.parent
        created_parents = _missing(parent)
        parent.mkdir(parents=True, exist_ok=True)
        candidate = make_unique_dir(parent, self.directory.name)
        if self.run_dir == self.directory:
            self.run_dir, self.name = candidate, candidate.name
        self.directory = candidate
        self._created = [candidate, *created_parents]

    def _lock(self) -> None:
        lock = self.directory / LOCK_FILE
        owner = f"{socket.gethostname()} {os.getpid()}\n"
        for _ in range(2):
            try:
                with open(lock, "x") as file:
                    try:
                        file.write(owner)
                        file.flush()
                    except OSError:  # a full disk: the lock file exists, empty, and names no holder
                        lock.unlink(missing_ok=True)
                        raise
                self._locked = True
                return
            except FileExistsError:
                holder = live_holder(lock)
                if holder:
                    raise ConfigError(
                        f"run {self.directory} is in use by another command ({holder}); wait for it to end "
                        f"(or, if none is running, delete {lock})"
                    ) from None
                lock.unlink(missing_ok=True)  # left by a command that was killed
        raise ConfigError(f"could not lock {self.directory}: {lock} keeps reappearing")

    def close(self) -> None:
        """The command is over: release the run's lock."""
        if self._locked:
            (self.directory / LOCK_FILE).unlink(missing_ok=True)
            self._locked = False

    def rollback(self) -> None:
        """Undo what this command created, when it stopped before committing (see the module doc).

        A new directory is removed whole; in an existing one, only the entries this command
        added go (W&B's session files), and W&B's ``latest-run`` links point back.
        """
        if not self._opened or not self.writes or self.committed or not self.directory.exists():
            return
        if self._before is None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._locked = False
        else:
            for relative, target in _entries(self.directory).items():
                path = self.directory / relative
                if relative not in self._before:
                    _remove(path)
                elif target != self._before[relative] and self._before[relative] is not None:
                    _remove(path)
                    os.symlink(self._before[relative], path)
        self._remove_created()

    def _remove_created(self) -> None:
        """Remove the folders this command created (deepest first) that are empty."""
        for path in self._created:
            try:
                path.rmdir()
            except OSError:
                pass

    # -- the record ----------------------------------------------------------------------------

    def set_config(self, text: str) -> None:
        """The resolved config (YAML): an evaluation writes it now, a ``fit`` when it commits."""
        self._config_text = text
        if self.writes and self.mode == "evaluate":
            write_atomically(self.config_file, text)
        elif self.committed:
            self._write_config()

    def commit(self, trainer: Trainer) -> None:
        """The first training step ran: from now on the directory holds this run's record.

        Writes ``config.yaml`` and ``status.json``; a resumed run first drops the metric rows
        it will log again and the best checkpoints its restored state does not know.
        """
        if self.committed:
            return
        self.committed = True
        if not self.writes or self.stage != "fit":
            return
        if self.mode == "resume":
            from lightning_hw._compat.lightning import batches_that_stepped

            for logger in trainer.loggers:
                trim = getattr(getattr(logger, "experiment", None), "trim_from", None)
                if callable(trim):
                    trim(batches_that_stepped(trainer))
            _remove_stale_bests(trainer)
        if self.mode == "create":
            self._record_new_run()
            return
        previous = read_status(self.run_dir)
        self.after_a_stopped_test = previous.get("during") == DURING_THE_TEST_AFTER_FIT
        self._write_config()
        self._write_first_status(previous)

    def _record_new_run(self) -> None:
        """A new run's first ``config.yaml`` and ``status.json``, both or neither.

        A run with a ``config.yaml`` alone (a full disk between the two) never trained, yet its name
        was taken until its folder was deleted by hand: should either write fail, the run stays
        uncommitted, so the command's end removes what it created, as before its first step.
        """
        try:
            self._write_config()
            self._write_first_status({})
        except BaseException:
            self.committed = False
            raise

    def _write_first_status(self, previous: dict[str, Any]) -> None:
        """``status.json`` as training starts: a resumed run keeps how its earlier attempts ended (``previous``)."""
        # How earlier attempts ended (an error, a signal, a note) is kept, apart from this
        # attempt's status: a resumed run that finishes must not show an earlier one's error.
        attempts = list(previous.pop("earlier_attempts", []))
        ending = {k: v for k, v in previous.items() if k not in ("group", "name", "started", "started_from", "resume_command")}
        if ending.get("status") == "training":  # it never recorded an end: killed, or its machine stopped
            ending["note"] = "ended without a word while training (killed, or its machine stopped)"
        if ending:
            attempts.append(ending)
        write_status(
            self.run_dir,
            replace=True,
            status="training",
            group=self.group,
            name=self.name,
            started=previous.get("started") or _now(),
            **self._started_from(previous),
            **({"resumed": _now()} if self.mode == "resume" else {}),
            resume_command=self.resume_command(from_start_folder=True),
            **({"earlier_attempts": attempts} if attempts else {}),
        )

    def _started_from(self, previous: dict[str, Any]) -> dict[str, str]:
        """``started_from``: the checkpoint a new run began with (another run's), kept through its resumes.

        config.yaml records ``ckpt_path: null`` (its resume command gives ``--ckpt_path last``), so
        without it nothing in the run would say that its first epochs are another run's.
        """
        if self.mode == "create" and self.ckpt_path:
            return {"started_from": str(Path(self.ckpt_path).absolute())}
        return {"started_from": previous["started_from"]} if previous.get("started_from") else {}

    def record_caveats(self, caveats: list[str]) -> None:
        """An evaluation's caveats (e.g. its split differs from training's) into its ``caveats.txt``.

        The warnings scroll away; the scores stay in the record, so what they must be read
        with stays beside them (``report`` shows it in its evaluations table).
        """
        if caveats and self.writes and self.mode == "evaluate":
            write_atomically(self.directory / CAVEATS_FILE, "".join(f"{line}\n" for line in caveats))

    def _write_config(self) -> None:
        if self._config_text is None or not self.writes:
            return
        path = self.config_file
        if path.is_file():
            old = path.read_text()
            if old == self._config_text:
                return
            if not _same_settings(old, self._config_text):
                # A resume with other settings (e.g. more epochs): the config it trained under so far stays.
                keep = path.with_name(f"config-until-{naming.timestamp()}.yaml")
                write_atomically(keep, old)
        write_atomically(path, self._config_text)

    def abort(self, exit_code: int, status: str, trainer: Trainer | None, loggers: list, **fields: Any) -> None:
        """The command ends by an exception: record it in a committed run, undo an uncommitted one.

        Args:
            exit_code: the command's exit code (W&B marks the run failed).
            status: ``interrupted`` or ``failed``.
            trainer: the trainer, when there is one.
            loggers: the run's loggers (W&B is closed first, so its files can go).
            **fields: more for ``status.json`` (the signal, the error line...).
        """
        if self.committed:
            if self.testing_after_fit:
                # Resuming would train nothing and test again (a second test row): the test is what is left to do.
                fields.update(during=DURING_THE_TEST_AFTER_FIT, resume_command=None, test_command=test_command(self.run_dir))
            try:
                self.finish(status, trainer, **fields)
            finally:  # status.json may not be writable (a full disk): W&B still ends its run
                _end_wandb(loggers, exit_code)
            return
        # W&B's own goodbye would advise syncing files that the rollback removes.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _end_wandb(loggers, exit_code, print_sync=False)
        self.rollback()

    def tested_again(self, trainer: Trainer, position: tuple[int, int]) -> None:
        """The test after fit logged its row at ``position``: a stopped test's row of the same checkpoint goes.

        A run stopped in its test after fit once the test had logged its row (a full disk at its
        figures) and then resumed (a study reruns it with ``--ckpt_path last``) tested the same
        checkpoint again: two test rows in the record of a run tested once. The newest is kept,
        and only after it is written, so a test stopped again loses no row.
        """
        if not (self.writes and self.mode == "resume" and self.after_a_stopped_test):
            return
        for logger in trainer.loggers:
            keep = getattr(getattr(logger, "experiment", None), "keep_newest_test_at", None)
            if callable(keep):
                keep(*position)

    def interrupt_message(self, stop: Any) -> str:
        """What an interrupt (:class:`~lightning_hw.runs.interrupts.RunInterrupted`) left, and what continues it."""
        how = f"interrupted by {stop.signal_name}"
        if self.mode == "scratch" or not self.committed:
            what = "before training started" if self.stage == "fit" else f"during {self.stage}"
            return f"{how} {what}; nothing was saved"
        if self.stage != "fit":
            return f"{how}; nothing was saved"
        if self.testing_after_fit:
            return f"{how} {self._training_had_finished()}test it with: {test_command(self.run_dir)}"
        if stop.saved:
            return f"{how} at step {stop.step}: saved {stop.saved}; resume with: {self.resume_command()}"
        last = self.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
        if last.is_file():
            return (
                f"{how} at once: the newest checkpoint is {last} (written before the interrupt); "
                f"resume with: {self.resume_command()}"
            )
        return (
            f"{how} at once, before the run's first checkpoint: {self.run_dir} cannot be resumed; "
            "train again under another --run.name"
        )

    def _training_had_finished(self, unrecorded: str = "") -> str:
        """The start of a line about a stop in the test after fit: the run's training is whole."""
        return f"during the test after fit{unrecorded}; training had finished and {self.run_dir} holds it; "

    def refuse_resuming_with_nothing_to_train(self, checkpoint: dict[str, Any], max_epochs: int | None, max_steps: int | None) -> None:
        """Refuse ``--ckpt_path last`` of a run that finished, when its limits leave nothing to train.

        Lightning trains no step of such a resume and the test after fit runs again: a second test
        row of the same weights in ``metrics.csv`` (and W&B) and a ``status.json`` rewritten as
        resumed, for a run tested once. Checked before the run is opened, so nothing changes. A run
        stopped in its test after fit (``failed``/``interrupted``) is not refused: a study reruns it so.

        Args:
            checkpoint: the loaded ``last.ckpt``.
            max_epochs: ``trainer.max_epochs`` as given (``None``/-1: none).
            max_steps: ``trainer.max_steps`` as given (``None``/-1: none).

        Raises:
            ConfigError: the run finished and ``max_epochs`` or ``max_steps`` is already reached.
        """
        from lightning_hw._compat.lightning import epochs_trained

        if self.mode != "resume" or self.stage != "fit" or read_status(self.run_dir).get("status") != "finished":
            return
        trained, step = epochs_trained(checkpoint), int(checkpoint.get("global_step", 0))
        # Each reached limit, with the value that trains on (epochs one more: Lightning counts a cut epoch as ended).
        reached = {
            key: (limit, more)
            for key, limit, done, more in (("max_epochs", max_epochs, trained, (trained or 0) + 1), ("max_steps", max_steps, step, "<more>"))
            if limit is not None and limit != -1 and done is not None and done >= limit
        }
        if not reached:
            return
        given = " and ".join(f"--trainer.{key} {limit}" for key, (limit, _) in reached.items())
        more = " ".join(f"--trainer.{key} {value}" for key, (_, value) in reached.items())
        raise ConfigError(
            f"run {self.run_dir} has finished: it trained {trained} epochs (step {step}), and {given} leaves nothing to "
            f"train; to test it, run: {test_command(self.run_dir, self._tested_checkpoint())}; to train on, run: "
            f"{self.resume_command()} {more}"
        )

    def _tested_checkpoint(self) -> Path:
        """The checkpoint the test after fit scores: the run's best one when it has one, else its ``last.ckpt``."""
        folder = self.run_dir / CHECKPOINT_DIR
        bests = sorted(folder.glob("best-*.ckpt"))
        return bests[-1] if len(bests) == 1 else folder / LAST_CHECKPOINT

    def _no_last_checkpoint(self) -> str:
        """Why the run has no ``last.ckpt``, naming the checkpoints it has (a failed save can leave a best one)."""
        others = checkpoint_names(self.run_dir / CHECKPOINT_DIR)
        if not others:
            return "stopped before its first checkpoint"
        return f"stopped with no {LAST_CHECKPOINT} (it has {', '.join(others)}: a new run can start from one with --ckpt_path)"

    def end_on_a_full_disk(self, error: OSError, trainer: Trainer | None, loggers: list) -> str:
        """:meth:`abort` for a command stopped by a full disk, as far as the disk allows; what it left, in one line.

        A full disk can stop a run half-way through recording itself (its first ``config.yaml``
        or ``status.json`` not written), so what is said comes from what is on disk.
        """
        full = f"{error.strerror or 'no space left on device'}" + (f" (writing {error.filename})" if error.filename else "")
        status_written = True
        try:
            self.abort(1, "failed", trainer, loggers, error=f"{type(error).__name__}: {error}")
        except OSError:
            status_written = False
        if self.mode == "scratch":
            return f"{full}: nothing was saved; free space on that disk and run the command again"
        if self.stage != "fit" or not holds_record(self.run_dir):
            if self.stage == "fit":  # the commit wrote nothing: the folders made for the run go, as if it never began
                self.close()
                self._remove_created()
            return f"{full}: nothing was kept in {self.directory}; free space on that disk and run the command again"
        said = read_status(self.run_dir).get("status")
        unrecorded = ("" if status_written else f" (its status.json could not be updated: it still says {said})" if said
                      else " (there was no space for its status.json)")
        if self.testing_after_fit:
            return f"{full}: {self._training_had_finished(unrecorded)}free space on that disk, then test it with: {test_command(self.run_dir)}"
        if (self.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file():
            return f"{full}: run {self.run_dir} stopped{unrecorded}; free space on that disk, then resume with: {self.resume_command()}"
        return (f"{full}: run {self.run_dir} {self._no_last_checkpoint()}{unrecorded}; free space on that disk and train "
                "again under another --run.name")

    def saved_line(self) -> str:
        """The final line of a command that ended well: where its files are (only those that exist)."""
        if self.mode == "scratch":
            return (
                "fast_dev_run: nothing was saved (Lightning turns logging and checkpoints off for it); "
                "drop --trainer.fast_dev_run to train a run"
            )
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in self.directory.iterdir()) if self.directory.is_dir() else []
        shown = [
            n for n in names
            # predictions*.csv, not PredictionGrid's predictions.png (the figures are not listed)
            if n in (CONFIG_FILE, METRICS_FILE, CAVEATS_FILE, f"{CHECKPOINT_DIR}/")
            or n.startswith("config-")
            or (n.startswith("predictions") and n.endswith(".csv"))
        ]
        what = "Evaluation" if self.mode == "evaluate" else "Run"
        return f"{what} saved in {self.directory} ({', '.join(shown) or 'no files'})"

    def finish(self, status: str, trainer: Trainer | None = None, **fields: Any) -> None:
        """Record how a ``fit`` ended (``finished``, ``interrupted``, ``failed``) in ``status.json``."""
        if not self.writes or self.stage != "fit" or not self.committed:
            return
        if trainer is not None:
            fields.setdefault("global_step", trainer.global_step)
            fields.setdefault("epoch", trainer.current_epoch)
        if status != "finished" and not (self.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file():
            # The command written at the commit would be refused: there is no last.ckpt to continue from.
            fields["resume_command"] = None
            fields.setdefault("note", f"{self._no_last_checkpoint()}: it cannot be resumed")
        write_status(self.run_dir, status=status, ended=_now(), **fields)


def test_command(run_dir: Path, checkpoint: Path | None = None) -> str:
    """The command that tests run ``run_dir``: ``checkpoint``, or a placeholder naming its checkpoint folder."""
    ckpt = shlex.quote(str(checkpoint)) if checkpoint is not None else f"<a checkpoint in {run_dir / CHECKPOINT_DIR}>"
    return f"{command_name()} test --config {shlex.quote(str(run_dir / CONFIG_FILE))} --ckpt_path {ckpt}"


def _end_wandb(loggers: list, exit_code: int, print_sync: bool = True) -> None:
    """End the W&B run of a command that stops on an error of its own, whatever W&B's end raises.

    On a full disk W&B's ``finish`` raised as it closed its ``debug.log``: the rollback after it
    never ran (the run's folder stayed, beside a line saying nothing was kept), or that error
    replaced the command's. The command's own error is the one to tell; W&B has written what it could.
    """
    from lightning_hw.runs.loggers import finish_wandb

    with contextlib.suppress(Exception):
        finish_wandb(loggers, exit_code=exit_code, print_sync=print_sync)


def _same_settings(old: str, new: str) -> bool:
    """Whether two saved configs hold the same settings (they may differ in comments, such as the backbone's preprocessing note)."""
    try:
        return yaml.safe_load(old) == yaml.safe_load(new)
    except yaml.YAMLError:
        return False


class RunRecord(Callback):
    """Commits the run after its first training step (or at the end of a ``fit`` that had none to do),
    and stamps every checkpoint with the run and model config it belongs to.

    Args:
        run: the run.
        model_config: the ``model:`` section of the resolved config (stored in checkpoints so that
            a mismatch can describe the checkpoint's net from the checkpoint itself).
        restored_settings: the settings a fit from the checkpoint cannot change (see
            :func:`restored_settings`), stored so that a checkpoint copied out of its run still says them.
    """

    def __init__(
        self, run: Run, model_config: dict[str, Any] | None = None, restored_settings: dict[str, Any] | None = None
    ) -> None:
        self.run = run
        self.model_config = model_config
        self.restored_settings = restored_settings

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self.run.committed:
            self.run.commit(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.run.commit(trainer)  # a resumed run that had already finished trains no step

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log_at_checkpoint(trainer)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log_at_checkpoint(trainer)

    def _log_at_checkpoint(self, trainer: Trainer) -> None:
        """An evaluation's rows (metrics.csv, W&B) name the epoch and step of the weights they score.

        Lightning restores those counters only for ``fit``, so every evaluation was recorded
        at epoch 0, step 0, whichever checkpoint it scored.
        """
        if self.run.mode == "evaluate" and self.run.scored is not None:
            from lightning_hw._compat.lightning import set_logged_position

            set_logged_position(trainer, *self.run.scored)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightning_hw"] = {
            "group": self.run.group,
            "name": self.run.name,
            "model": self.model_config,
            **({"restored_settings": self.restored_settings} if self.restored_settings is not None else {}),
        }


# -- planning ------------------------------------------------------------------------------------


def plan_run(settings: RunConfig, stage: str, config_files: list[str], ckpt_path: str | None, fast_dev_run: bool = False) -> Run:
    """Decide what this command does to which directory; refuse what would damage a run's record.

    Args:
        settings: the ``run:`` settings.
        stage: the subcommand.
        config_files: the ``--config`` files, in order (the first that is not a trainer preset names the group).
        ckpt_path: ``--ckpt_path`` as given (a file, ``last``, ``hpc`` or ``None``).
        fast_dev_run: Lightning's smoke test: nothing is saved.

    Raises:
        ConfigError: the name is taken by another run, or there is nothing to resume.
    """
    settings.check()
    group = naming.group_of(settings.group, config_files)
    root = Path(settings.root)
    inherited = naming.inherited_directory()
    if fast_dev_run:
        if ckpt_path:
            raise ConfigError(
                "--trainer.fast_dev_run tries the code on a few batches of fresh weights and saves nothing; "
                "drop --ckpt_path (or fast_dev_run)"
            )
        directory = root / group / (settings.name or "fast_dev_run")
        return Run(settings, stage, "scratch", group, directory.name, directory, directory, ckpt_path)
    if stage != "fit":
        return _plan_evaluation(settings, stage, root, group, ckpt_path, inherited)
    run = _plan_training(settings, stage, root, group, config_files, ckpt_path, inherited)
    if run.mode == "create":
        if inherited is None:  # a run that exists keeps its name; a DDP worker's first process checked it
            refuse_a_reserved_name(run.run_dir)
            _refuse_a_study_runs_folder(run.run_dir)
        # A new run: from scratch, from another run's checkpoint, or `--ckpt_path last` with nothing
        # to continue yet (a resumed one keeps the settings it was trained with). Its directory is
        # made only after planning, so a refusal here leaves nothing behind.
        settings.check_wandb_project()
    return run


def _refuse_a_study_runs_folder(directory: Path) -> None:
    """Refuse a new run, outside a study, in a folder that holds only a study's log (its fit of that run never trained).

    The folder is the study's variant's (or trial's): a ``fit --run.name`` of it by hand trained
    there beside the study's log of its refused attempts, and the study then passed over the run
    as finished outside it, while its report compared it as the variant.
    """
    import os

    from lightning_hw.studies.grid import LOG_FILE, STUDY_PARENT_ENV, last_error_line

    if os.environ.get(STUDY_PARENT_ENV) or not (directory / LOG_FILE).is_file() or holds_record(directory):
        return
    error = last_error_line(directory)
    study = f"{directory} belongs to study {directory.parent.name}: it holds only the study's log of its fit"
    if error is None:  # the study may be starting that fit now: "run the study again" would start a second one
        raise ConfigError(
            f"{study}, with no error in it (the fit may be starting now, or was stopped before it trained; see "
            f"{directory / LOG_FILE}); unless the study is running, run it again to train it there, or give another --run.name"
        )
    raise ConfigError(f"{study}, which never trained ({error}); run the study again to train it there, or give another --run.name")


def _plan_training(
    settings: RunConfig, stage: str, root: Path, group: str, config_files: list[str], ckpt_path: str | None, inherited: Path | None
) -> Run:
    """:func:`plan_run` for ``fit``: continue a run, or create one (the arguments are ``plan_run``'s, resolved)."""
    name = settings.name or naming.job_run_name()
    ckpt_run = run_of_checkpoint(ckpt_path)
    if ckpt_run is not None and (name is None or ckpt_run.resolve() == (root / group / name).resolve()):
        newest = ckpt_run / CHECKPOINT_DIR / LAST_CHECKPOINT
        if newest.is_file() and newest.resolve() != Path(ckpt_path).resolve():
            if read_status(ckpt_run).get("status") == "finished":
                # "Continue it with --ckpt_path last" would be refused too when it has nothing left to train.
                raise ConfigError(
                    f"run {ckpt_run} has finished, and {ckpt_path} is one of its checkpoints; to test it, run: "
                    f"{test_command(ckpt_run, Path(ckpt_path))}; to train the run on, resume it with --ckpt_path last and a "
                    "higher --trainer.max_epochs; to start a new run from this checkpoint, add --run.name NEW_NAME"
                )
            # Continuing a run from an older checkpoint would rewind it: its later epochs would be overwritten.
            raise ConfigError(
                f"{ckpt_path} is not the newest state of run {ckpt_run}; continue that run with --ckpt_path last "
                f"--run.name {ckpt_run.name}, or start a new run from this checkpoint with --run.name NEW_NAME"
            )
        # The checkpoint's own run continues in place.
        return Run(settings, stage, "resume", ckpt_run.parent.name, ckpt_run.name, ckpt_run, ckpt_run, str(ckpt_path))
    if ckpt_run is not None and inherited is None and (ckpt_run.parent.name, ckpt_run.name) == (group, name):
        _refuse_a_namesake_elsewhere(ckpt_path, ckpt_run, root)
    if inherited is None:  # from here on the run is root/group/name: never among another run's files
        check_outside_records(root / group, "the run")
    unique = inherited is None and name is None
    if inherited is not None:
        name = inherited.name
    elif name is None:
        name = naming.unused_name(root / group, naming.timestamp())
    run_dir = inherited or root / group / name
    if inherited is None:
        refuse_a_sweep_as_run(run_dir)
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if ckpt_path == "last":
        if last.is_file():
            return Run(settings, stage, "resume", group, name, run_dir, run_dir, str(last))
        if inherited is None and holds_record(run_dir):
            others = checkpoint_names(run_dir / CHECKPOINT_DIR)
            why = (
                f"it has {', '.join(others)}: to start a new run from one, give it as --ckpt_path with another --run.name"
                if others
                else "it stopped before its first checkpoint: start it again under another --run.name"
            )
            raise ConfigError(f"run {run_dir} has no {CHECKPOINT_DIR}/{LAST_CHECKPOINT} to continue from; {why}")
        if inherited is None:
            _refuse_a_run_config_read_from_elsewhere(config_files, root, run_dir)
        note = f"--ckpt_path last: {run_dir} has no checkpoint yet, so the run starts from the beginning"
        return Run(settings, stage, "create", group, name, run_dir, run_dir, None, note=note)
    if ckpt_path == "hpc" or (ckpt_path is None and _requeued_slurm_job(run_dir)):
        # SLURM requeued this job: Lightning resumes from its newest hpc checkpoint, or from
        # last.ckpt when a SIGTERM wrote that later.
        resume_from = str(last) if last.is_file() and _newer(last, run_dir.glob("hpc_ckpt_*.ckpt")) else "hpc"
        return Run(settings, stage, "resume", group, name, run_dir, run_dir, resume_from)
    if inherited is None and holds_record(run_dir):
        if not last.is_file():  # nothing to continue: only a new name (or moving the record aside) starts it
            raise ConfigError(
                f"run {run_dir} already exists and stopped before its first checkpoint (nothing to continue); "
                "start a new run with another --run.name"
            )
        raise ConfigError(
            f"run {run_dir} already exists; continue it with --ckpt_path last (same --run.name), "
            "or start a new run with another --run.name"
        )
    return Run(settings, stage, "create", group, name, run_dir, run_dir, ckpt_path, unique=unique)


def _refuse_a_run_config_read_from_elsewhere(config_files: list[str], root: Path, run_dir: Path) -> None:
    """Refuse ``--ckpt_path last`` with a run's own ``config.yaml`` that names another, checkpoint-less directory.

    A saved config holds the ``run.root`` as given (``runs``, relative): read from another
    working directory it names a run directory that does not exist, where "last" would
    start a new run of the same name from scratch instead of continuing the run it asks for.

    Args:
        config_files: the ``--config`` files, in order.
        root: the run root as configured.
        run_dir: the directory this command would create.

    Raises:
        ConfigError: a ``--config`` is a run's ``config.yaml`` whose run has ``last.ckpt``, and it is not ``run_dir``.
    """
    for config in map(Path, config_files):
        home = config.parent
        if config.name != CONFIG_FILE or not (home / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file():
            continue
        if home.resolve() == run_dir.resolve() or (home.name, home.parent.name) != (run_dir.name, run_dir.parent.name):
            continue  # the run itself, or a run of another name (saved_elsewhere notes a copied one)
        raise ConfigError(
            f"--ckpt_path last: {config} is the config of run {home}, but run.root {root}, read from this "
            f"directory, names {run_dir}, which has no checkpoint; continue {home} with --run.root "
            f"{shlex.quote(str(home.parent.parent))} (or from the directory it was started in)"
        )


def _refuse_a_namesake_elsewhere(ckpt_path: str, ckpt_run: Path, root: Path) -> None:
    """Refuse a new run of the checkpoint's own group and name under another root.

    ``fit --config ../runs/g/n/config.yaml --ckpt_path ../runs/g/n/checkpoints/last.ckpt`` from
    another directory reads the saved relative ``run.root`` from there: it started a second
    ``g/n`` in that directory from the checkpoint, which reads as the run continued while the
    run itself stayed where it was.

    Raises:
        ConfigError: always.
    """
    raise ConfigError(
        f"{ckpt_path} is a checkpoint of run {ckpt_run}, but run.root {root}, read from this directory, names "
        f"{root / ckpt_run.parent.name / ckpt_run.name}: a run of the same name there would read as {ckpt_run} "
        f"continued; continue {ckpt_run} with --run.root {shlex.quote(str(ckpt_run.parent.parent))} "
        "--ckpt_path last (or from the directory it was started in), or start a new run from this checkpoint "
        "with another --run.name"
    )


def _plan_evaluation(settings: RunConfig, stage: str, root: Path, group: str, ckpt_path: str | None, inherited: Path | None) -> Run:
    """validate/test/predict: ``<run>/eval/<stage>-<time>/`` of the checkpoint's run (else of the group)."""
    if settings.name:
        named = root / group / settings.name
        if inherited is None:
            refuse_a_sweep_as_run(named)
        if ckpt_path in (None, "last") and inherited is None and holds_record(named) and not holds_checkpoints(named):
            # Killed (or failed) before its first checkpoint, or still in its first epoch: the advice below
            # would send the user after a last.ckpt or best-*.ckpt the run has not saved.
            if live_holder(named / LOCK_FILE) is not None:
                why = "it is still training and has saved none yet; try again once its first epoch has ended"
            else:
                why = "it stopped before saving one; train it again (fit) under another --run.name"
            raise ConfigError(f"run {named} has no checkpoint to {stage}: {why}")
        if ckpt_path == "last":
            # In a DDP worker too (inherited: the first process's eval directory): every process must load, and
            # rebuild its task from, the same file, not Lightning's own idea of "last".
            last = named / CHECKPOINT_DIR / LAST_CHECKPOINT
            if not last.is_file():
                raise ConfigError(f"--ckpt_path last: {last} does not exist; give the checkpoint file to {stage}")
            ckpt_path = str(last)
        elif not ckpt_path and inherited is None and holds_record(named):
            # Without weights the model is untrained: its scores must not be filed as that run's.
            raise ConfigError(
                f"{stage} of run {named} needs its weights: add --ckpt_path last, or "
                f"--ckpt_path {named / CHECKPOINT_DIR}/<best-...>.ckpt"
            )
    ckpt_run = run_of_checkpoint(ckpt_path)
    if ckpt_run is None and ckpt_path and settings.name and inherited is None and holds_record(root / group / settings.name):
        # A checkpoint from outside the run (another model, a copy) would have its scores filed as that run's;
        # a link to one of the run's own checkpoints is the run's.
        named = root / group / settings.name
        linked_run = run_of_checkpoint(Path(ckpt_path).resolve())
        if linked_run is None or linked_run != named.resolve():
            raise ConfigError(
                f"{ckpt_path} is not a checkpoint of run {named}, so its scores cannot be filed under that run; give one "
                f"of the run's checkpoints (--ckpt_path last, or {named / CHECKPOINT_DIR}/<file>.ckpt), or evaluate it "
                "under another --run.name"
            )
    if ckpt_run is not None:
        base, group, name = ckpt_run, ckpt_run.parent.name, ckpt_run.name
    elif settings.name:
        base, name = root / group / settings.name, settings.name
        if inherited is None:  # an evaluation filed under a new name: runs/<group>/eval/eval/ would be taken for the group's
            refuse_a_reserved_name(base)
    else:
        base, name = root / group, ""
        if inherited is None:
            _refuse_a_run_named_eval(base / EVAL_DIR)
    if inherited is not None:
        directory = inherited
    else:
        directory = base / EVAL_DIR / naming.unused_name(base / EVAL_DIR, f"{stage}-{naming.timestamp()}")
    return Run(settings, stage, "evaluate", group, name, base, directory, ckpt_path, unique=inherited is None)


def _refuse_a_run_named_eval(group_eval: Path) -> None:
    """Refuse to file a group's evaluation in ``runs/<group>/eval/`` where that is a run's, named ``eval`` by an earlier version.

    Raises:
        ConfigError: ``group_eval`` holds a run's record; what to add to file the evaluation elsewhere.
    """
    if holds_record(group_eval):
        raise ConfigError(
            f"{group_eval} is a run named 'eval' (made before the name was kept for a group's evaluations), whose files "
            f"no other command changes; file this evaluation under a name of its own: add --run.name NAME "
            f"(it goes to {group_eval.parent}/NAME/eval/)"
        )


#: the settings a checkpoint's state overrides when a fit goes on from it: the optimizer's and
#: scheduler's (learning rate, momentum...) and the random state (drawn from the run's seed)
RESTORED_FROM_CHECKPOINT = ("model.init_args.lr", "optimizer", "lr_scheduler", "seed_everything")


#: the unfrozen layers' learning rate (FreezeBackbone's ``lr``, under ``finetune:`` or in ``trainer.callbacks``):
#: restored only from a checkpoint taken after the backbone was unfrozen, whose optimizer then holds their group
FINETUNE_LR = "finetune.init_args.lr"
#: the epoch FreezeBackbone unfreezes at: not restored, nor compared, but it says whether a run has a
#: checkpoint of before the unfreezing (none when it unfroze at epoch 0), where another fine-tuning lr can start
FINETUNE_FROM = "finetune.init_args.unfreeze_at_epoch"


def restored_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a resolved config that a checkpoint restores (:data:`RESTORED_FROM_CHECKPOINT`), flat, as YAML holds them.

    The fine-tuning ``lr`` is among them as :data:`FINETUNE_LR`, wherever the config gives its
    FreezeBackbone; :func:`check_restored_settings_kept` compares it only when the checkpoint
    holds the unfrozen layers' group. Its ``unfreeze_at_epoch`` comes along as :data:`FINETUNE_FROM`
    (never compared: only what the refusal advises depends on it).
    """
    settings = {
        key: _as_recorded(value) for key, value in flat_settings(config).items() if key.startswith(RESTORED_FROM_CHECKPOINT)
    }
    callbacks = (config.get("trainer") or {}).get("callbacks") if isinstance(config.get("trainer"), dict) else None
    for entry in [config.get("finetune"), *(callbacks if isinstance(callbacks, list) else [])]:
        if isinstance(entry, dict) and str(entry.get("class_path", "")).rsplit(".", 1)[-1] == "FreezeBackbone":
            settings[FINETUNE_LR] = (entry.get("init_args") or {}).get("lr")
            settings[FINETUNE_FROM] = (entry.get("init_args") or {}).get("unfreeze_at_epoch")
    return settings


def _settings_trained_with(run: Run, checkpoint: dict[str, Any] | None) -> tuple[dict[str, Any], str] | None:
    """The restored settings of the checkpoint a fit goes on from, and whose they are; ``None`` when unknown.

    Its run's ``config.yaml`` when it lies in a run; else what the checkpoint itself carries
    (checkpoints written since 2026-12-06: one copied out of its run, or downloaded).
    """
    source = run.run_dir if run.mode == "resume" else run_of_checkpoint(run.ckpt_path)
    if source is not None:
        try:
            config = yaml.safe_load((source / CONFIG_FILE).read_text())
        except (OSError, yaml.YAMLError):
            config = None
        if isinstance(config, dict):
            return restored_settings(config), f"{source}'s"
    carried = ((checkpoint or {}).get("lightning_hw") or {}).get("restored_settings")
    return (carried, "the checkpoint's") if isinstance(carried, dict) else None


def _same_lr(given: Any, trained: float) -> bool:
    """Whether the learning rate ``given`` is the one trained with (0.003 / 10 is 0.00030000000000000003)."""
    return isinstance(given, (int, float)) and math.isclose(given, trained, rel_tol=1e-9)


def _trained_value(key: str, value: Any, unfrozen_lr: float | None) -> str:
    """A trained-with setting as a refusal shows it; the fine-tuning lr left to its default says what that was."""
    if key == FINETUNE_LR and value is None and unfrozen_lr is not None:
        return f"None (the head's lr / 10: {unfrozen_lr:g})"
    return repr(value)


def _as_recorded(value: Any) -> Any:
    """``value`` as ``config.yaml`` holds it: a tuple (Adam's ``betas``) is a YAML list there."""
    if isinstance(value, (list, tuple)):
        return [_as_recorded(item) for item in value]
    return value


def check_restored_settings_kept(run: Run, new: dict[str, Any], checkpoint: dict[str, Any] | None = None) -> None:
    """Refuse a fit from a run's checkpoint with another learning rate, optimizer, scheduler or seed.

    Lightning restores the optimizer's and scheduler's states from the checkpoint, learning
    rate and momentum included, and the run restores its random state, so such a change would
    be written into ``config.yaml`` but never used: the record would say ``lr 0.01`` of a run
    that went on at ``0.001``. This holds for a resume and for a new run started from another
    run's checkpoint alike, and for a checkpoint copied out of its run (it carries its
    settings). The fine-tuning ``lr`` (:data:`FINETUNE_LR`) counts only when the checkpoint
    was taken after FreezeBackbone unfroze the backbone: its optimizer then holds the
    unfrozen layers' group at the lr they trained with; before, it holds none, and the new lr
    is used. A run that gave none (the head's lr / 10) trained at the lr its checkpoint's group
    was added at: that value written out is no change. Called before the run's directory is touched.

    Args:
        run: the planned fit (``resume``, or ``create`` from a checkpoint).
        new: the fit's :func:`restored_settings`.
        checkpoint: the loaded checkpoint (for the settings it carries).

    Raises:
        ConfigError: a setting in :data:`RESTORED_FROM_CHECKPOINT` (or, see above, the
            fine-tuning lr) differs from the one the checkpoint's run trained with.
    """
    trained = _settings_trained_with(run, checkpoint)
    if trained is None:
        return  # nothing to compare with (an older checkpoint outside any run); the checkpoint checks still hold
    old, whose = trained
    from lightning_hw.callbacks.finetuning import FreezeBackbone

    unfrozen_at = old.get(FINETUNE_FROM)
    old, new = ({k: v for k, v in d.items() if k != FINETUNE_FROM} for d in (old, new))
    unfrozen_lr = FreezeBackbone.unfrozen_lr(checkpoint or {})
    if unfrozen_lr is None:
        # Taken before the backbone was unfrozen: the checkpoint's optimizer has no group for its layers yet, so
        # the fine-tuning lr is used as given (train the head in one run, fine-tune from its checkpoint in another).
        old, new = ({k: v for k, v in d.items() if k != FINETUNE_LR} for d in (old, new))
    elif old.get(FINETUNE_LR) is None and _same_lr(new.get(FINETUNE_LR), unfrozen_lr):
        # The run gave none (the head's lr / 10) and this names the lr that gave: the same lr, only written out.
        new = {**new, FINETUNE_LR: None}
    # A setting in one config only is a default that another torch version added (or dropped), not
    # a change; a class that differs (another optimizer, a scheduler added or removed) always is.
    changed = [
        f"{key} {_trained_value(key, old.get(key), unfrozen_lr)} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if (key.endswith(".class_path") or (key in old and key in new)) and old.get(key) != new.get(key)
    ]
    if not changed:
        return
    # Another fine-tuning lr can still be had: a checkpoint of before the unfreezing holds no group that keeps the
    # old one; a run that unfroze at epoch 0 has no such checkpoint.
    earlier = (
        ", or start one from a checkpoint saved before the backbone was unfrozen, which fine-tunes at the lr given"
        if any(item.startswith(FINETUNE_LR + " ") for item in changed) and unfrozen_at != 0 else ""
    )
    if run.mode == "resume":
        raise ConfigError(
            f"cannot resume {run.run_dir} with other settings than its checkpoint restores ({', '.join(changed)}): "
            "its optimizer and random states would keep the run's, so config.yaml would name settings it never "
            f"trained with; resume without changing them, or train a new run (another --run.name){earlier}"
        )
    raise ConfigError(
        f"cannot start run {run.run_dir} from {run.ckpt_path} with other settings than the checkpoint restores "
        f"({', '.join(changed)}): Lightning restores its optimizer state and the run its random state, so the new "
        f"run would go on with {whose} settings while its config.yaml named these; start it with those settings, "
        f"or train from scratch without --ckpt_path{earlier}"
    )


def saved_elsewhere(config: str, run: Run) -> str | None:
    """A note when ``config`` is a run's saved ``config.yaml`` that now sits in another directory.

    A copied or renamed run directory keeps the group and name it was saved with, so its
    config continues the *original* run; say so rather than let it happen silently.
    """
    path = Path(config)
    if path.name != CONFIG_FILE or run.mode == "scratch":
        return None
    try:
        saved = (yaml.safe_load(path.read_text()) or {}).get("run") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    if not saved.get("name") or path.parent.name == saved.get("name") and path.parent.parent.name == saved.get("group"):
        return None
    if path.parent.resolve() == run.run_dir.resolve():
        return None
    return (
        f"note: {path} was saved by run {saved.get('group')}/{saved['name']}, not by {path.parent}; "
        f"this command works on {run.run_dir} (give --run.name to choose another)"
    )


def run_of_checkpoint(ckpt_path: str | os.PathLike | None) -> Path | None:
    """The run directory of a checkpoint file saved as ``<run>/checkpoints/<file>``, else ``None``."""
    if not ckpt_path or str(ckpt_path) in ("last", "best", "hpc"):
        return None
    path = Path(ckpt_path)
    if path.parent.name == CHECKPOINT_DIR and path.is_file():
        return path.parent.parent
    if path.name.startswith("hpc_ckpt_") and path.is_file():
        return path.parent
    return None


# -- helpers -------------------------------------------------------------------------------------


def _recorded_root(run_dir: Path) -> str | None:
    """The ``run.root`` in the run's own ``config.yaml`` (``None``: no such file, or none in it)."""
    try:
        saved = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return None
    root = (saved.get("run") or {}).get("root") if isinstance(saved, dict) else None
    return str(root) if root is not None else None


def _root_names(recorded: str, root_dir: Path) -> bool:
    """Whether the run root ``recorded`` names ``root_dir`` from some folder (the one the run was started in).

    An absolute root names one folder; a relative one (``runs``, ``exp/runs``, ``../runs``)
    names every folder whose path ends with its parts after any leading ``..``.
    """
    path = Path(recorded)
    if path.is_absolute():
        return _same_path(path, root_dir)
    parts = [part for part in Path(os.path.normpath(recorded)).parts if part not in (".", "..")]
    actual = root_dir.resolve().parts
    return not parts or list(actual[-len(parts):]) == parts


def _same_path(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def _requeued_slurm_job(run_dir: Path) -> bool:
    """Whether this is a SLURM job that SLURM started again and that left ``run_dir`` a checkpoint to go on from.

    Lightning's auto-requeue (SIGUSR1) leaves ``hpc_ckpt_*.ckpt``. A job requeued otherwise
    (preempted, ``scontrol requeue``, a failed node) got SIGTERM, which wrote ``last.ckpt``;
    SLURM then runs the same command again with ``SLURM_RESTART_COUNT`` set, which would be
    refused as a new run under a taken name.
    """
    if not SLURMEnvironment.detect():
        return False
    if any(run_dir.glob("hpc_ckpt_*.ckpt")):
        return True
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    return restarts.isdigit() and int(restarts) > 0 and (run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()


def _newer(path: Path, others: Any) -> bool:
    mtime = path.stat().st_mtime
    return all(mtime >= other.stat().st_mtime for other in others)


def _missing(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first (what a ``mkdir -p`` creates)."""
    return [p for p in [path, *path.parents] if not p.exists()]


def _entries(directory: Path) -> dict[str, str | None]:
    """The entries of a run directory and of its ``wandb/``, each with its link target (``None``: not a link)."""
    entries: dict[str, str | None] = {}
    for parent in (directory, directory / "wandb"):
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            relative = str(path.relative_to(directory))
            entries[relative] = os.readlink(path) if path.is_symlink() else None
    return entries


def live_holder(lock: Path) -> str | None:
    """Who holds ``lock``, when that command still runs (``None``: it ended without removing it).

    A lock from another host is taken as live: its process cannot be looked at from here.
    """
    try:
        host, pid = lock.read_text().split()
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return f"pid {pid} on {host}"
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except (PermissionError, ValueError):
        pass
    return f"pid {pid}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_stale_bests(trainer: Trainer) -> None:
    """Delete best checkpoints that the resumed state does not know (written after the checkpoint it resumed).

    Left in place they would outlive the resumed run as a "best" it never had.
    """
    from lightning_hw.callbacks.best_checkpoint import BestCheckpoint

    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, BestCheckpoint) or not callback.dirpath:
            continue
        prefix = str(callback.filename or "").split("{", 1)[0]
        if not prefix:
            continue  # a name pattern without a fixed start: cannot tell its files from others
        known = {Path(p).resolve() for p in callback.best_k_models} | {Path(callback.best_model_path).resolve()}
        for path in Path(callback.dirpath).glob(f"{prefix}*.ckpt"):
            if path.resolve() not in known:
                path.unlink(missing_ok=True)
