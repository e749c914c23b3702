"""Run planning and opening (lightning_hw.runs.lifecycle) on hand-made run directories: no training, fast.

Each test lays out what a user's ``runs/`` holds, asks what a command would do, and checks
the answer and that nothing on disk changed where nothing may change.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from lightning_hw.errors import ConfigError
from lightning_hw.runs import RunConfig, plan_run
from lightning_hw.runs.files import LOCK_FILE
from lightning_hw.cli import warm_start


@pytest.fixture
def trained(tmp_path):
    """``runs/quickstart/r1`` as a run that trained: config, metrics, a best and a last checkpoint."""
    run = tmp_path / "runs" / "quickstart" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("run: {group: quickstart, name: r1}\n")
    (run / "metrics.csv").write_text("epoch,step,val/acc\n0,9,0.5\n")
    (run / "checkpoints" / "best-epoch001.ckpt").write_bytes(b"best")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"last")
    return run


def settings(tmp_path, **kwargs) -> RunConfig:
    return RunConfig(root=str(tmp_path / "runs"), **kwargs)


def test_fit_from_an_older_checkpoint_of_a_run_is_refused_rather_than_rewinding_it(tmp_path, trained):
    best = str(trained / "checkpoints" / "best-epoch001.ckpt")
    with pytest.raises(ConfigError, match=r"not the newest state of run .*--ckpt_path last --run.name r1.*--run.name NEW_NAME"):
        plan_run(settings(tmp_path), "fit", ["quickstart.yaml"], best)
    # The newest state continues the run in place; another name starts a new run from the older one.
    last = str(trained / "checkpoints" / "last.ckpt")
    assert plan_run(settings(tmp_path), "fit", ["quickstart.yaml"], last).mode == "resume"
    forked = plan_run(settings(tmp_path, name="r2"), "fit", ["quickstart.yaml"], best)
    assert (forked.mode, forked.run_dir.name, forked.ckpt_path) == ("create", "r2", best)


def test_resume_without_last_checkpoint_names_the_checkpoints_there(tmp_path, trained):
    (trained / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(ConfigError, match=r"no checkpoints/last.ckpt to continue from; it has best-epoch001.ckpt"):
        plan_run(settings(tmp_path, name="r1"), "fit", ["quickstart.yaml"], "last")
    for path in (trained / "checkpoints").iterdir():
        path.unlink()
    with pytest.raises(ConfigError, match="stopped before its first checkpoint"):
        plan_run(settings(tmp_path, name="r1"), "fit", ["quickstart.yaml"], "last")


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_evaluating_a_named_run_needs_its_weights(tmp_path, trained, stage):
    # As `--config runs/quickstart/r1/config.yaml`: the saved config names its group and run.
    named = settings(tmp_path, group="quickstart", name="r1")
    with pytest.raises(ConfigError, match=rf"{stage} of run .*r1 needs its weights: add --ckpt_path last"):
        plan_run(named, stage, ["config.yaml"], None)
    planned = plan_run(named, stage, ["config.yaml"], "last")
    assert planned.ckpt_path == str(trained / "checkpoints" / "last.ckpt")
    assert planned.directory.parent == trained / "eval" and planned.directory.name.startswith(f"{stage}-")


def test_a_link_to_a_named_runs_own_checkpoint_is_that_runs_evaluation(tmp_path, trained):
    # A link (best.ckpt -> runs/.../checkpoints/best-...) is the run's checkpoint, not one from outside;
    # a copy of it is not (it could have been replaced by any model since).
    named = settings(tmp_path, group="quickstart", name="r1")
    link = tmp_path / "best.ckpt"
    link.symlink_to(trained / "checkpoints" / "best-epoch001.ckpt")
    planned = plan_run(named, "test", ["config.yaml"], str(link))
    assert planned.directory.parent == trained / "eval" and planned.ckpt_path == str(link)
    (tmp_path / "copy.ckpt").write_bytes(b"best")
    with pytest.raises(ConfigError, match="is not a checkpoint of run"):
        plan_run(named, "test", ["config.yaml"], str(tmp_path / "copy.ckpt"))


def test_fast_dev_run_refuses_a_checkpoint(tmp_path, trained):
    with pytest.raises(ConfigError, match="fast_dev_run tries the code .* drop --ckpt_path"):
        plan_run(settings(tmp_path, name="r1"), "fit", ["quickstart.yaml"], "last", fast_dev_run=True)


def test_two_commands_planning_the_same_timestamp_get_their_own_directories(tmp_path):
    first = plan_run(settings(tmp_path), "fit", ["quickstart.yaml"], None)
    second = plan_run(settings(tmp_path), "fit", ["quickstart.yaml"], None)
    assert first.directory == second.directory  # planned in the same second, nothing created yet
    first.open()
    second.open()
    assert second.directory == first.directory.with_name(first.directory.name + "-1")
    assert second.name == second.directory.name and second.run_dir == second.directory


def test_a_live_command_holds_its_run_and_a_dead_ones_lock_is_taken_over(tmp_path, trained):
    lock = trained / LOCK_FILE
    lock.write_text(f"{socket.gethostname()} {os.getpid()}\n")  # this very process: alive
    resume = plan_run(settings(tmp_path, name="r1"), "fit", ["quickstart.yaml"], "last")
    with pytest.raises(ConfigError, match=rf"in use by another command \(pid {os.getpid()}\)"):
        resume.open()
    resume.rollback()  # a refused open undoes nothing: the run is someone else's
    assert lock.is_file() and (trained / "metrics.csv").is_file()

    dead = warm_start.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")  # a killed command's leftover
    resume = plan_run(settings(tmp_path, name="r1"), "fit", ["quickstart.yaml"], "last")
    resume.open()
    assert lock.read_text().split()[1] == str(os.getpid())
    resume.close()
    assert not lock.exists()


def test_rollback_of_a_resume_removes_only_what_it_added(tmp_path, trained):
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    resume = plan_run(settings(tmp_path, name="r1"), "fit", ["quickstart.yaml"], "last")
    resume.open()
    (trained / "wandb" / "offline-run-x").mkdir(parents=True)  # what W&B writes when it starts
    resume.rollback()
    resume.close()
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before
    assert not (trained / "wandb").exists()


def test_rollback_before_open_touches_nothing(tmp_path, trained):
    """A command that failed before it opened its run (e.g. a refused checkpoint) must not clean anything."""
    before = sorted(p.name for p in trained.rglob("*"))
    resume = plan_run(settings(tmp_path, name="r1"), "fit", ["quickstart.yaml"], "last")
    resume.rollback()
    assert sorted(p.name for p in trained.rglob("*")) == before


@pytest.mark.parametrize("ckpt", [None, "last"])
def test_evaluating_a_run_without_any_checkpoint_says_there_is_none(tmp_path, monkeypatch, capsys, ckpt):
    """A run killed before its first checkpoint: 'add --ckpt_path last' (there is no last.ckpt) and
    'give the checkpoint file' (there is none) sent the user after weights the run never saved."""
    from conftest import REPO, tiny_run_args

    from lightning_hw.cli import main

    monkeypatch.chdir(tmp_path)
    main(tiny_run_args("fit", REPO / "configs" / "quickstart.yaml", tmp_path / "runs", "--run.name", "r", "--run.test_after_fit", "false"))
    run_dir = tmp_path / "runs" / "quickstart" / "r"
    for path in (run_dir / "checkpoints").iterdir():  # as if killed (SIGKILL) before its first checkpoint
        path.unlink()
    capsys.readouterr()
    args = ["test", "--config", str(run_dir / "config.yaml"), "--run.wandb", "disabled"]
    with pytest.raises(SystemExit) as stop:
        main(args + (["--ckpt_path", ckpt] if ckpt else []))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: run {run_dir} has no checkpoint to test: it stopped before saving one; "
        "train it again (fit) under another --run.name"
    ]
    assert not (run_dir / "eval").exists()
    # Still in its first epoch (its command holds the lock): it has saved none *yet*.
    (run_dir / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}")
    with pytest.raises(SystemExit):
        main(args + (["--ckpt_path", ckpt] if ckpt else []))
    assert f"error: run {run_dir} has no checkpoint to test: it is still training and has saved none yet; " \
        "try again once its first epoch has ended" in capsys.readouterr().err
