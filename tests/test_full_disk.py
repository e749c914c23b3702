"""A disk that fills up (or cannot be written) during a command: one line that says what was kept and what to do, the record intact.

The disk is made full where the run writes (``torch.save`` of a checkpoint, the run's record files) by
raising what those writes raise on a full disk: ``torch.save`` raises a ``RuntimeError`` while handling
the ``OSError`` (checked by hand on a 1.5 MB tmpfs, 2026-12-07).
"""

from __future__ import annotations

import errno
import json

import pytest
import torch

from lightning_hw import checkpoints
from lightning_hw.runs import lifecycle
from reliability_helpers import error_of, output_of


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def _saves_until_full(monkeypatch, allowed: int) -> None:
    """``torch.save`` in checkpoints works ``allowed`` times, then fails as it does on a full disk."""
    real_save, calls = torch.save, []

    def save(obj, file, *args, **kwargs):
        calls.append(file)
        if len(calls) > allowed:
            try:
                raise _disk_full()
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 66560 vs 66452") from None
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "save", save)


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_says_how_to_resume(tiny_args, workdir, monkeypatch, capsys):
    """It was a traceback (two, chained) and exit 1; status.json said the run 'stopped before its first
    checkpoint: it cannot be resumed' beside a complete best checkpoint."""
    args = tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "3")
    _saves_until_full(monkeypatch, allowed=2)  # epoch 0's last.ckpt and best checkpoint; epoch 1's last.ckpt fails
    code, line = error_of(args, capsys)
    run = workdir / "runs" / "quickstart" / "r"
    assert code == 1
    assert line == (
        f"error: No space left on device: run {run} stopped; free space on that disk, then resume with: "
        f"python -m lightning_hw fit --config {run / 'config.yaml'} --ckpt_path last"
    )
    status = json.loads((run / "status.json").read_text())
    assert (status["status"], status["error"]) == ("failed", "OSError: [Errno 28] No space left on device")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    monkeypatch.undo()
    output_of(*args, "--ckpt_path", "last")  # space freed: the command given resumes it
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_a_full_disk_before_the_first_last_checkpoint_names_the_checkpoint_there_is(tiny_args, workdir, monkeypatch, capsys):
    _saves_until_full(monkeypatch, allowed=1)  # written: epoch 0's best checkpoint (it comes first); not last.ckpt
    code, line = error_of(tiny_args("fit", "--run.name", "r"), capsys)
    run = workdir / "runs" / "quickstart" / "r"
    assert code == 1
    assert line == (
        f"error: No space left on device: run {run} stopped with no last.ckpt (it has best-epoch000.ckpt: a new run can "
        "start from one with --ckpt_path); free space on that disk and train again under another --run.name"
    )
    assert json.loads((run / "status.json").read_text())["note"] == (
        "stopped with no last.ckpt (it has best-epoch000.ckpt: a new run can start from one with --ckpt_path): it cannot be resumed"
    )


def test_a_full_disk_in_the_test_after_fit_says_training_finished_and_how_to_test(tiny_args, workdir, monkeypatch, capsys):
    """The line said the run 'stopped' and to resume it with `fit --ckpt_path last`, beside a status.json saying
    training had finished: that resume trained nothing and tested again, a second test row in its metrics.csv
    (checked on a 1.5 MB tmpfs: top_losses.png did not fit)."""
    from lightning_hw.callbacks import interpretation

    def log_figure_full(*args, **kwargs):
        raise _disk_full()

    monkeypatch.setattr(interpretation, "log_figure", log_figure_full)
    code, line = error_of(tiny_args("fit", "--run.name", "r"), capsys)
    run = workdir / "runs" / "quickstart" / "r"
    assert code == 1
    assert line == (
        f"error: No space left on device: during the test after fit; training had finished and {run} holds it; free space "
        f"on that disk, then test it with: python -m lightning_hw test --config {run / 'config.yaml'} "
        f"--ckpt_path <a checkpoint in {run / 'checkpoints'}>"
    )
    status = json.loads((run / "status.json").read_text())
    assert status["during"] == "the test after fit (training had finished)"
    assert status["resume_command"] is None  # it named fit --ckpt_path last
    assert status["test_command"] == line.rpartition("then test it with: ")[2]


@pytest.mark.parametrize("where", ["lock", "commit", "status"])
def test_a_disk_full_before_the_run_recorded_itself_leaves_no_folder(where, tiny_args, workdir, monkeypatch, capsys):
    """A full disk at the run's .lock left an empty .lock in a new folder (which the message said held nothing);
    at its first config.yaml, an empty folder and a status.json said to be 'running'. With room for its
    config.yaml but not its status.json (checked on a 1.5 MB tmpfs with two pages free), the folder kept that
    config.yaml alone, and the name was refused until the user deleted it by hand."""
    if where == "lock":
        real_open = open

        def open_full(path, mode="r", *args, **kwargs):
            file = real_open(path, mode, *args, **kwargs)
            if str(path).endswith(".lock") and "x" in mode:
                file.write = lambda text: (_ for _ in ()).throw(_disk_full())
            return file

        monkeypatch.setattr(lifecycle, "open", open_full, raising=False)
    else:  # the first of the run's files: config.yaml (unless only status.json finds no room), status.json
        def write_full(*args, **kwargs):
            raise _disk_full()

        if where == "commit":
            monkeypatch.setattr(lifecycle, "write_atomically", write_full)
        monkeypatch.setattr(lifecycle, "write_status", write_full)
    args = tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false")
    code, line = error_of(args, capsys)
    run = workdir / "runs" / "quickstart" / "r"
    assert code == 1
    assert line == f"error: No space left on device: nothing was kept in {run}; free space on that disk and run the command again"
    assert not (workdir / "runs").exists()
    monkeypatch.undo()
    output_of(*args)  # space freed: the same command, under the same name, trains the run
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_a_status_that_could_not_be_written_is_said_as_it_stands(tiny_args, workdir, monkeypatch, capsys):
    _saves_until_full(monkeypatch, allowed=2)
    real_write_status = lifecycle.write_status

    def write_status(directory, **fields):
        if fields.get("status") == "failed":
            raise _disk_full()
        return real_write_status(directory, **fields)

    monkeypatch.setattr(lifecycle, "write_status", write_status)
    code, line = error_of(tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "3"), capsys)
    run = workdir / "runs" / "quickstart" / "r"
    assert code == 1
    assert line.startswith(f"error: No space left on device: run {run} stopped (its status.json could not be updated: it still says training); "), line


def test_a_full_disk_in_one_of_our_own_commands_is_one_line_and_leaves_its_output_as_it_was(
    tiny_args, workdir, monkeypatch, capsys
):
    """`report` (as `export`) into a full disk ended in a traceback."""
    from lightning_hw import reports

    output_of(*tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"
    output_of("report", str(run))
    before = {p: p.read_bytes() for p in (run / "report").iterdir()}

    def write_full(*args, **kwargs):
        raise _disk_full()

    monkeypatch.setattr(reports, "write_csv", write_full)
    code, line = error_of(["report", str(run)], capsys)
    assert code == 1
    assert line == "error: No space left on device: report stopped; free space on that disk and run it again"
    assert {p: p.read_bytes() for p in (run / "report").iterdir()} == before


def test_a_full_sqlite_database_in_one_of_our_own_commands_is_one_line(tiny_args, workdir, monkeypatch, capsys):
    """A study's Optuna storage (SQLite) on a full disk raised `database or disk is full`, no OSError behind it:
    a traceback (checked on a 1.5 MB tmpfs: `study ... --root` there). Raised here through `report`, which is faster."""
    import sqlite3

    from lightning_hw import reports

    output_of(*tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"

    def write_full(*args, **kwargs):
        database = sqlite3.connect(":memory:")
        database.execute("PRAGMA max_page_count = 2")  # SQLite's own SQLITE_FULL, as a full disk gives it
        database.execute("CREATE TABLE t (x)")
        try:
            database.execute("INSERT INTO t VALUES (randomblob(100000))")
        except sqlite3.OperationalError as err:
            raise RuntimeError("An exception is raised during the commit.") from err  # as Optuna wraps it

    monkeypatch.setattr(reports, "write_csv", write_full)
    code, line = error_of(["report", str(run)], capsys)
    assert (code, line) == (1, "error: No space left on device (SQLite: database or disk is full): report "
                               "stopped; free space on that disk and run it again")


def test_a_run_folder_that_cannot_be_written_is_one_line(tiny_args, workdir, monkeypatch, capsys):
    """runs/ on a read-only disk (or another user's): a traceback ending in `OSError: [Errno 30] Read-only file system`."""
    import pathlib

    output_of(*tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    real_mkdir, real_open = pathlib.Path.mkdir, open

    def read_only(path):
        return OSError(errno.EROFS, "Read-only file system", str(path))

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(workdir / "runs")) and not self.exists():
            raise read_only(self)
        return real_mkdir(self, *args, **kwargs)

    def open_read_only(path, mode="r", *args, **kwargs):
        if str(path).startswith(str(workdir / "runs")) and set(mode) & set("wax"):
            raise read_only(path)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr(lifecycle, "open", open_read_only, raising=False)
    code, line = error_of(tiny_args("fit", "--run.name", "new"), capsys)
    assert (code, line) == (
        2, f"error: cannot write run {workdir / 'runs' / 'quickstart' / 'new'} (Read-only file system); give a --run.root you can write to"
    )
    code, line = error_of(tiny_args("fit", "--run.name", "r", "--ckpt_path", "last", "--trainer.max_epochs", "2"), capsys)
    assert (code, line) == (
        2, f"error: cannot write run {run} (Read-only file system: {run / '.lock'}); {run} must be writable for this command "
        "(its files stay as they are)"
    )
    code, line = error_of(["test", "--config", str(run / "config.yaml"), "--ckpt_path", "last"], capsys)
    assert code == 2 and line.startswith(f"error: cannot write folder {run / 'eval'}/test-"), line
    assert line.endswith(f"); {run} must be writable for this command (its files stay as they are)"), line
    code, line = error_of(["export", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], capsys)  # it was a traceback
    assert (code, line) == (
        2, f"error: cannot write folder {run / 'eval'} (Read-only file system); give --output FILE in a folder you can write to"
    )
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_study_root_that_cannot_be_written_is_one_line(workdir, monkeypatch, capsys):
    """`study FILE --root DIR` on a read-only disk: a traceback ending in `OSError: [Errno 30] Read-only file system`."""
    import pathlib

    from conftest import REPO

    real_mkdir, root = pathlib.Path.mkdir, workdir / "read-only"

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    study = REPO / "configs" / "studies" / "quickstart_search.yaml"
    code, line = error_of(["study", str(study), "--root", str(root), "--trainer.max_epochs", "1"], capsys)
    assert (code, line) == (
        2, f"error: cannot write {root / 'quickstart_search'} (Read-only file system): study stopped; give it a folder you can write to"
    )
    assert not root.exists()


def test_a_disk_full_for_wandb_too_as_the_run_records_itself_leaves_no_folder(tiny_args, workdir, monkeypatch, capsys):
    """W&B offline, the disk full as the run writes its first status.json (checked on a 1.5 MB tmpfs with 24 KB free):
    W&B's finish raised as it closed its debug.log, so the run's folder was never removed (its wandb/ files stayed
    beside a line saying nothing was kept; W&B's exit hook then advised `wandb sync` of them), and every line W&B
    logged meanwhile was a '--- Logging error ---' traceback on stderr."""
    import logging

    from lightning_hw.cli import parser

    full, real_flush, real_start = [], logging.FileHandler.flush, parser.start_wandb

    def start_wandb(*args, **kwargs):
        problem = real_start(*args, **kwargs)
        full.append(True)  # W&B started; from here on its log files find no room
        return problem

    def flush(handler):
        if full and handler.baseFilename.startswith(str(workdir / "runs")):
            raise _disk_full()
        return real_flush(handler)

    def write_status_full(*args, **kwargs):
        raise _disk_full()

    monkeypatch.setattr(parser, "start_wandb", start_wandb)
    monkeypatch.setattr(logging.FileHandler, "flush", flush)
    monkeypatch.setattr(lifecycle, "write_status", write_status_full)
    code, line = error_of(tiny_args("fit", "--run.name", "r", "--run.wandb", "offline"), capsys)
    run = workdir / "runs" / "quickstart" / "r"
    assert code == 1
    assert line == f"error: No space left on device: nothing was kept in {run}; free space on that disk and run the command again"
    assert not (workdir / "runs").exists()  # error_of: no traceback on stderr, W&B's logging errors' neither


def test_a_wandb_end_that_fails_on_the_full_disk_still_leaves_no_folder(tiny_args, workdir, monkeypatch, capsys):
    """W&B's finish raising (its files found no room) skipped the rollback after it: the new run's folder stayed."""
    from lightning_hw.runs import loggers

    def write_full(*args, **kwargs):
        raise _disk_full()

    def finish_wandb_full(*args, **kwargs):
        raise _disk_full()

    monkeypatch.setattr(lifecycle, "write_status", write_full)
    monkeypatch.setattr(loggers, "finish_wandb", finish_wandb_full)
    code, line = error_of(tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"), capsys)
    run = workdir / "runs" / "quickstart" / "r"
    assert (code, line) == (1, f"error: No space left on device: nothing was kept in {run}; free space on that disk and run the command again")
    assert not (workdir / "runs").exists()
