"""Crash-safe resume: a run killed with SIGKILL and resumed ends exactly like an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from lightning_hw.checkpoints import CheckpointSettingsWarning, SafeCheckpointIO
from lightning_hw.cli import HWCLI, main
from lightning_hw.errors import ConfigError
from lightning_hw.cli import warm_start

HELPERS_DIR = str(Path(__file__).parent)
# Dropout draws from the global random state, so an exact match also proves it is restored.
COMMON = (
    "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "6",
    "--model.init_args.net.init_args.dropout", "0.3",
)
EVERY_4_STEPS = ("--run.checkpoint_every_n_steps", "4")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([HELPERS_DIR, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "kill_at", "resumed_from"),
    [(EVERY_4_STEPS, 10, 8), ((), 8, 6)],
    ids=["mid-epoch", "end-of-epoch"],
)
def test_killed_run_resumes_to_the_same_metrics(tiny_args, workdir, extra, kill_at, resumed_from):
    HWCLI(args=tiny_args("fit", *COMMON, *extra, "--run.name", "whole"))

    killed = warm_start.run(
        [sys.executable, "-m", "lightning_hw", *tiny_args(
            "fit", *COMMON, *extra, "--run.name", "resumed",
            "--trainer.callbacks+=reliability_helpers.KillAtStep", "--trainer.callbacks.step", str(kill_at),
        )],
        capture_output=True, text=True, env=_env(), cwd=workdir,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = workdir / "runs" / "quickstart" / "resumed"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == resumed_from

    cli = HWCLI(args=tiny_args("fit", *COMMON, *extra, "--run.name", "resumed", "--ckpt_path", "last"))
    assert cli.run_dir == run

    whole = workdir / "runs" / "quickstart" / "whole"
    assert (run / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_a_runs_config_resumed_from_another_directory_is_refused_not_restarted(tiny_args, workdir, monkeypatch, capsys):
    """``fit --config ../runs/g/n/config.yaml --ckpt_path last`` from another directory: the saved ``run.root: runs``
    named ./runs/g/n there, which "has no checkpoint yet", and a new run of the same name trained from scratch."""
    from reliability_helpers import error_of

    HWCLI(args=tiny_args("fit", "--run.name", "r", "--run.root", "runs", "--run.test_after_fit", "false"))
    (workdir / "elsewhere").mkdir()
    monkeypatch.chdir(workdir / "elsewhere")
    resume = ["fit", "--config", "../runs/quickstart/r/config.yaml", "--ckpt_path", "last", "--trainer.max_epochs", "2"]
    code, line = error_of(resume, capsys)
    assert code == 2
    assert line == (
        "error: --ckpt_path last: ../runs/quickstart/r/config.yaml is the config of run ../runs/quickstart/r, but "
        "run.root runs, read from this directory, names runs/quickstart/r, which has no checkpoint; continue "
        "../runs/quickstart/r with --run.root ../runs (or from the directory it was started in)"
    )
    assert list((workdir / "elsewhere").iterdir()) == []  # no second run of the same name
    HWCLI(args=[*resume, "--run.root", "../runs", "--trainer.enable_progress_bar", "false"])  # the advice works
    rows = (workdir / "runs" / "quickstart" / "r" / "metrics.csv").read_text().splitlines()
    assert sorted({row.split(",")[0] for row in rows[1:]}) == ["0", "1"]  # the same run went on to its epoch 1


def test_a_run_resumed_from_another_directory_keeps_its_record(tiny_args, workdir, monkeypatch, capsys):
    """Resumed from two folders down with the advised ``--run.root ../../runs``, the run's config.yaml
    recorded ``run.root: ../../runs``: from the folder it was started in, ``test`` and ``fit ... --ckpt_path last``
    with its config then named no run. Its root stays ``runs``; the commands printed work where printed."""
    from reliability_helpers import output_of

    HWCLI(args=tiny_args("fit", "--run.name", "r", "--run.root", "runs", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"
    (workdir / "b" / "sub").mkdir(parents=True)
    monkeypatch.chdir(workdir / "b" / "sub")
    interrupt = ["--trainer.callbacks+=reliability_helpers.SignalAtStep", "--trainer.callbacks.init_args.step", "7"]
    resume = ["fit", "--config", "../../runs/quickstart/r/config.yaml", "--ckpt_path", "last", "--run.root", "../../runs"]
    with pytest.raises(SystemExit) as stopped:
        main([*resume, "--trainer.max_epochs", "3", *interrupt])
    assert stopped.value.code == 143
    printed = capsys.readouterr().err
    assert (
        "resume with: python -m lightning_hw fit --config ../../runs/quickstart/r/config.yaml --ckpt_path last "
        "--run.root ../../runs"
    ) in printed  # from here, where it was printed
    assert list((workdir / "b").rglob("*")) == [workdir / "b" / "sub"]  # nothing of the run went elsewhere
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["root"] == "runs"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert status["resume_command"] == "python -m lightning_hw fit --config runs/quickstart/r/config.yaml --ckpt_path last"

    monkeypatch.chdir(workdir)  # the folder the run was started in: its own config finds it
    output_of("fit", "--config", "runs/quickstart/r/config.yaml", "--ckpt_path", "last", "--trainer.max_epochs", "3")
    rows = (run / "metrics.csv").read_text().splitlines()
    assert sorted({row.split(",")[0] for row in rows[1:]}) == ["0", "1", "2"]
    assert "(weights: runs/quickstart/r/checkpoints/last.ckpt; epoch 2," in output_of("test", "--config", "runs/quickstart/r/config.yaml", "--ckpt_path", "last")
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["root"] == "runs"


def test_a_runs_checkpoint_given_from_another_directory_does_not_start_its_namesake_there(
    tiny_args, workdir, monkeypatch, capsys
):
    """``fit --config ../runs/g/r/config.yaml --ckpt_path ../runs/g/r/checkpoints/last.ckpt`` from another
    directory trained a new ``runs/g/r`` there from the checkpoint (exit 0), as if the run had continued."""
    from reliability_helpers import error_of

    HWCLI(args=tiny_args("fit", "--run.name", "r", "--run.root", "runs", "--run.test_after_fit", "false"))
    (workdir / "elsewhere").mkdir()
    monkeypatch.chdir(workdir / "elsewhere")
    code, line = error_of(
        ["fit", "--config", "../runs/quickstart/r/config.yaml", "--ckpt_path", "../runs/quickstart/r/checkpoints/last.ckpt",
         "--trainer.max_epochs", "3"],
        capsys,
    )
    assert code == 2
    assert line == (
        "error: ../runs/quickstart/r/checkpoints/last.ckpt is a checkpoint of run ../runs/quickstart/r, but run.root "
        "runs, read from this directory, names runs/quickstart/r: a run of the same name there would read as "
        "../runs/quickstart/r continued; continue ../runs/quickstart/r with --run.root ../runs --ckpt_path last (or "
        "from the directory it was started in), or start a new run from this checkpoint with another --run.name"
    )
    assert list((workdir / "elsewhere").iterdir()) == []


@pytest.mark.slow
def test_killed_run_streaming_image_files_resumes_inside_the_epoch(workdir):
    """A folder streamed from disk by 2 workers, augmented: killed at step 10, resumed from step 8
    (the third of 6 batches of epoch 2), it ends like the uninterrupted run: the resumed epoch
    goes on with the batches it had not yet seen (a plain DataLoader would start its order over),
    and no loader draws its workers' seed from the global random state, which the augmentation
    uses (the validation workers start at the sanity check in one run, after the restore in the other)."""
    from lightning_hw.data.fixtures.classification import write_image_folder

    from conftest import REPO, tiny_run_args

    photos = write_image_folder(workdir / "photos", per_class=20, size=(20, 24))

    def args(name: str, *extra: str) -> list[str]:
        return tiny_run_args(
            "fit", REPO / "configs" / "catsdogs_online_aug.yaml", workdir / "runs",
            "--data.init_args.root", str(photos), "--data.init_args.in_memory", "false",
            "--data.init_args.num_workers", "2", "--data.init_args.batch_size", "4",
            "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1.0", "--run.test_after_fit", "false",
            *EVERY_4_STEPS, "--run.name", name, *extra,
        )

    HWCLI(args=args("whole"))
    killed = warm_start.run(
        [sys.executable, "-m", "lightning_hw", *args(
            "resumed", "--trainer.callbacks+=reliability_helpers.KillAtStep", "--trainer.callbacks.step", "10",
        )],
        capture_output=True, text=True, env=_env(), cwd=workdir,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run, whole = workdir / "runs" / "catsdogs_online_aug" / "resumed", workdir / "runs" / "catsdogs_online_aug" / "whole"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    (loader_state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert saved["global_step"] == 8 and loader_state["skip"] == 2

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        HWCLI(args=args("resumed", "--ckpt_path", "last"))
    assert not [w for w in caught if "not resumable" in str(w.message) or "training order" in str(w.message)]
    assert (run / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_a_checkpoint_without_the_training_order_resumes_with_a_warning(tiny_args, workdir):
    """Streamed folders' checkpoints before 2026-12-02 held no loader state; Lightning stays silent
    (the loader is stateful now), so the resume says itself that the order starts over."""
    args = tiny_args("fit", "--run.name", "old", "--run.test_after_fit", "false")
    HWCLI(args=args)
    last = workdir / "runs" / "quickstart" / "old" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    torch.save(checkpoint, last)
    with pytest.warns(UserWarning, match="holds no position in the training order .* starts over at step 3"):
        HWCLI(args=args + ["--trainer.max_epochs", "2", "--ckpt_path", "last"])


def test_checkpoint_every_n_steps_keeps_the_best_and_the_final_checkpoint(tiny_args, workdir, capsys):
    """last.ckpt is written inside epochs too, yet the run still ends with its final state in
    last.ckpt and tests its best checkpoint (a ModelCheckpoint added for this replaced both)."""
    HWCLI(args=tiny_args(
        "fit", "--run.name", "steps", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "5",
        "--run.checkpoint_every_n_steps", "2",
    ))
    checkpoints = workdir / "runs" / "quickstart" / "steps" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 10
    assert len(list(checkpoints.glob("best-epoch*.ckpt"))) == 1
    assert "Test (best checkpoint best-epoch" in capsys.readouterr().out


STEP_SAVE_CASES = {
    # a best checkpoint held in memory (60 s interval) when step 16 is written: it goes to disk first
    "pending-best": ((*COMMON, "--trainer.limit_train_batches", "6", "--run.checkpoint_every_n_steps", "4"),
                     ("KillAtStep", "--trainer.callbacks.step", "17"), 16),
    # epoch 0 (steps 1-3) has no validation: its step-3 write cannot wait for one
    "epoch-without-validation": ((*COMMON, "--run.checkpoint_every_n_steps", "3", "--trainer.check_val_every_n_epoch", "2"),
                                 ("KillAtStep", "--trainer.callbacks.step", "5"), 3),
    # step 3 is followed by a validation: written after it, so the resume does not skip it
    "mid-epoch-validation": ((*COMMON, "--trainer.limit_train_batches", "6", "--trainer.val_check_interval", "0.5",
                              "--run.checkpoint_every_n_steps", "3"), ("KillAtStep", "--trainer.callbacks.step", "5"), 3),
    # SIGTERM in the validation after batch 3 of 6, with 2 batches per step: served at step 2, not inside it
    "signal-in-validation-while-accumulating": (
        (*COMMON, "--trainer.limit_train_batches", "6", "--trainer.val_check_interval", "0.5",
         "--trainer.accumulate_grad_batches", "2"), ("SignalInValidation", "--trainer.callbacks.step", "1"), 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(STEP_SAVE_CASES))
def test_step_checkpoints_and_signals_resume_to_the_same_run(tiny_args, workdir, case):
    """Each case: stopped (SIGKILL, or a signal) and resumed, the run ends as the uninterrupted one,
    and every best checkpoint a last.ckpt names is on disk."""
    extra, (helper, *helper_args), saved_step = STEP_SAVE_CASES[case]
    HWCLI(args=tiny_args("fit", *extra, "--run.name", "whole"))
    stopped = warm_start.run(
        [sys.executable, "-m", "lightning_hw", *tiny_args(
            "fit", *extra, "--run.name", "cut", f"--trainer.callbacks+=reliability_helpers.{helper}", *helper_args,
        )],
        capture_output=True, text=True, env=_env(), cwd=workdir,
    )
    assert stopped.returncode in (-signal.SIGKILL, 143), stopped.stderr[-2000:]
    run, whole = workdir / "runs" / "quickstart" / "cut", workdir / "runs" / "quickstart" / "whole"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == saved_step
    named = [state["best_model_path"] for key, state in saved["callbacks"].items() if "ModelCheckpoint" in key and "last" not in key]
    assert all(Path(path).is_file() for path in named if path), named  # '' before the first validation
    assert any(named) or case == "epoch-without-validation"

    HWCLI(args=tiny_args("fit", *extra, "--run.name", "cut", "--ckpt_path", "last"))
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == expected["global_step"]
    assert (run / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    assert all(torch.equal(final["state_dict"][k], expected["state_dict"][k]) for k in expected["state_dict"])


def test_a_users_step_checkpoint_is_not_called_the_best(tiny_args, workdir, capsys):
    HWCLI(args=tiny_args(
        "fit", "--run.name", "own", "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "2",
    ))
    assert "Test (newest checkpoint epoch=0-step=2.ckpt, kept by a ModelCheckpoint that monitors no metric)" in capsys.readouterr().out


def test_checkpoint_every_n_steps_must_be_positive(tiny_args):
    with pytest.raises(ConfigError, match="run.checkpoint_every_n_steps must be 1 or more steps"):
        HWCLI(args=tiny_args("fit", "--run.checkpoint_every_n_steps", "0"))


@pytest.mark.slow
def test_resumed_run_continues_the_same_wandb_run(tiny_args, workdir):
    args = tiny_args("fit", "--run.name", "r", "--run.wandb", "offline")
    HWCLI(args=args)
    run = workdir / "runs" / "quickstart" / "r"
    run_id = (run / "wandb-run-id").read_text()
    HWCLI(args=args + ["--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert (run / "wandb-run-id").read_text() == run_id
    offline_runs = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    # offline-run-<time>-<id>, with "-1" appended by wandb when both sessions start in the same second
    assert len(offline_runs) == 2 and all(f"-{run_id}" in name for name in offline_runs)


@pytest.mark.slow
def test_checkpoint_save_killed_midway_leaves_the_previous_one_intact(workdir):
    target = workdir / "checkpoints" / "last.ckpt"
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from lightning_hw.checkpoints import CheckpointSettingsWarning, SafeCheckpointIO

        io = SafeCheckpointIO()
        io.save_checkpoint({{"global_step": 1, "w": torch.ones(10_000)}}, {str(target)!r})

        def dies_while_writing(obj, f, *args, **kwargs):
            f.write(b"half a checkpoint" * 1000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = dies_while_writing
        io.save_checkpoint({{"global_step": 2, "w": torch.zeros(10_000)}}, {str(target)!r})
        """
    )
    result = warm_start.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    checkpoint = torch.load(target, weights_only=True)
    assert checkpoint["global_step"] == 1 and torch.equal(checkpoint["w"], torch.ones(10_000))
    assert [p.name for p in target.parent.glob("*.ckpt")] == ["last.ckpt"]


def test_failed_save_removes_its_temporary_file(workdir):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    io = SafeCheckpointIO()
    target = workdir / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, target)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        io.save_checkpoint({"global_step": 2, "bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=True) == {"global_step": 1}
    assert [p.name for p in workdir.iterdir()] == ["last.ckpt"]


def test_runs_use_atomic_safe_checkpoint_io(tiny_args):
    cli = HWCLI(args=tiny_args("fit", "--trainer.fast_dev_run", "true"))
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)


def test_resume_from_a_last_checkpoint_written_only_for_the_final_epoch(tiny_args, workdir):
    """With a long checkpoint_interval only the first and the final epoch are written
    (epoch 1 of 2 here: the interval had not passed); resuming from it with a third epoch
    ends exactly where one uninterrupted run of three ends."""
    import csv

    def run(name: str, *extra: str) -> Path:
        HWCLI(args=tiny_args(
            "fit", "--run.name", name, "--trainer.limit_train_batches", "1.0",
            "--run.test_after_fit", "false", "--run.checkpoint_interval", "3600", *extra,
        ))
        return workdir / "runs" / "quickstart" / name

    straight = run("straight", "--trainer.max_epochs", "3")  # 20 steps per epoch
    first = run("resumed", "--trainer.max_epochs", "2")
    last = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == 40  # not due by the interval, but the run's last epoch
    run("resumed", "--trainer.max_epochs", "3", "--ckpt_path", "last")
    rows = lambda d: list(csv.DictReader((d / "metrics.csv").open()))  # noqa: E731
    assert rows(first) == rows(straight)
    assert len(rows(first)) == 6  # train and val rows of three epochs


def test_resume_with_fewer_max_epochs_than_trained_fails_in_one_line(tiny_args, workdir, capsys):
    """A study rerun (or a fit) with a smaller --trainer.max_epochs than the run reached: one line, the record kept.

    The run finished: its line once said to give 3 or more, which trains nothing either."""
    from reliability_helpers import error_of

    HWCLI(args=tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "3", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"
    before = {name: (run / name).read_bytes() for name in ("status.json", "metrics.csv", "config.yaml")}
    [best] = sorted((run / "checkpoints").glob("best-*.ckpt"))
    # 2: one fewer than trained, which Lightning lets through (the checkpoint's epoch is 2) to train nothing.
    for fewer in ("1", "2"):
        code, line = error_of(tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", fewer, "--ckpt_path", "last"), capsys)
        assert code == 2
        assert line == (
            f"error: run {run} has finished: it trained 3 epochs (step 9), and --trainer.max_epochs {fewer} leaves nothing "
            f"to train; to test it, run: python -m lightning_hw test --config {run / 'config.yaml'} --ckpt_path {best}; "
            f"to train on, run: python -m lightning_hw fit --config {run / 'config.yaml'} --ckpt_path last --trainer.max_epochs 4"
        )
        assert {name: (run / name).read_bytes() for name in before} == before
        assert not list(run.glob("config-until-*"))


def test_resuming_a_finished_run_with_nothing_to_train_is_refused_and_more_epochs_train_on(tiny_args, workdir, capsys):
    """`fit --config <run>/config.yaml --ckpt_path last` of a run that had finished trained nothing, tested again
    and added a second test row of the same weights to metrics.csv (and W&B), and rewrote status.json as resumed;
    at fewer max_epochs its line said to give 2 or more, which would have done the same."""
    import csv

    from reliability_helpers import error_of

    HWCLI(args=tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "2"))
    run = workdir / "runs" / "quickstart" / "r"
    files = lambda: {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}  # noqa: E731
    before = files()
    [best] = sorted((run / "checkpoints").glob("best-*.ckpt"))
    resume = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last"]
    for given in ([], ["--trainer.max_epochs", "1"]):
        code, line = error_of(resume + given, capsys)
        assert code == 2
        epochs = given[-1] if given else "2"
        assert line == (
            f"error: run {run} has finished: it trained 2 epochs (step 6), and --trainer.max_epochs {epochs} leaves "
            f"nothing to train; to test it, run: python -m lightning_hw test --config {run / 'config.yaml'} --ckpt_path "
            f"{best}; to train on, run: python -m lightning_hw fit --config {run / 'config.yaml'} --ckpt_path last "
            "--trainer.max_epochs 3"
        )
        assert files() == before
    # Its best checkpoint given instead of last: the line said to continue the run with --ckpt_path last.
    code, line = error_of(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", str(best)], capsys)
    assert code == 2
    assert line == (
        f"error: run {run} has finished, and {best} is one of its checkpoints; to test it, run: python -m lightning_hw "
        f"test --config {run / 'config.yaml'} --ckpt_path {best}; to train the run on, resume it with --ckpt_path last "
        "and a higher --trainer.max_epochs; to start a new run from this checkpoint, add --run.name NEW_NAME"
    )
    assert files() == before
    HWCLI(args=resume + ["--trainer.max_epochs", "3"])  # the advised command trains one more epoch and tests it
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [(r["epoch"], r["step"]) for r in rows if r["test/acc"]] == [("1", "6"), ("2", "9")]
    assert [r["epoch"] for r in rows if r["train/loss"]] == ["0", "1", "2"]


def test_a_task_setting_beside_last_is_replaced_by_the_checkpoints_as_beside_its_path(tiny_args, workdir, capsys):
    """``--ckpt_path last --model.init_args.head linear_mse`` trained on with the new loss (val/acc 0.91 -> 0.20) and
    recorded it, while the same resume spelt with the file's path kept the checkpoint's head and warned."""
    from reliability_helpers import error_of

    HWCLI(args=tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"
    for ckpt in ("last", str(run / "checkpoints" / "last.ckpt")):
        epochs = 2 if ckpt == "last" else 3
        with pytest.warns(CheckpointSettingsWarning, match=r"not these: head 'linear_mse' -> 'softmax_ce'"):
            HWCLI(args=tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", str(epochs), "--ckpt_path", ckpt,
                                 "--model.init_args.head", "linear_mse", "--run.test_after_fit", "false"))
        assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["head"] == "softmax_ce"
        assert json.loads((run / "status.json").read_text())["epoch"] == epochs
    # The lr is not replaced but refused, as the checkpoint's optimizer state would not take it (the task's lr too).
    HWCLI(args=tiny_args("fit", "--run.name", "t", "--model.init_args.lr", "0.05", "--run.test_after_fit", "false"))
    code, line = error_of(tiny_args("fit", "--run.name", "t", "--trainer.max_epochs", "2", "--ckpt_path", "last",
                                    "--model.init_args.lr", "0.2"), capsys)
    assert code == 2 and "(model.init_args.lr 0.05 -> 0.2, optimizer.init_args.lr 0.05 -> 0.2)" in line


def test_resume_with_another_lr_or_optimizer_setting_is_refused(tiny_args, workdir, capsys):
    """The checkpoint's optimizer state would keep the old lr/momentum while config.yaml named the new ones."""
    from reliability_helpers import error_of

    HWCLI(args=tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for change, said in (
        (["--model.init_args.lr", "0.01"], "model.init_args.lr None -> 0.01, optimizer.init_args.lr 0.1 -> 0.01"),
        (["--optimizer.init_args.momentum", "0.5"], "optimizer.init_args.momentum 0.9 -> 0.5"),
        (["--seed_everything", "7"], "seed_everything 42 -> 7"),  # the checkpoint's random state goes on
        (["--optimizer", "torch.optim.AdamW"], "optimizer.class_path 'torch.optim.SGD' -> 'torch.optim.AdamW'"),
        (["--lr_scheduler", "torch.optim.lr_scheduler.StepLR", "--lr_scheduler.init_args.step_size", "1"],
         "lr_scheduler.class_path None -> 'torch.optim.lr_scheduler.StepLR'"),
    ):
        code, line = error_of(tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "2", "--ckpt_path", "last", *change), capsys)
        assert code == 2
        assert line.startswith(f"error: cannot resume {run} with other settings than its checkpoint restores ({said}")
        assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # Unchanged optimizer settings (more epochs) still resume, also when the run was recorded under a torch
    # whose SGD had an argument this one lacks (a default, not a change).
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    recorded["optimizer"]["init_args"]["option_of_another_torch"] = True
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    HWCLI(args=tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "2", "--ckpt_path", "last", "--run.test_after_fit", "false"))
    assert json.loads((run / "status.json").read_text())["epoch"] == 2


def test_a_new_run_from_another_runs_checkpoint_with_another_lr_is_refused(tiny_args, workdir, capsys):
    """Lightning restores the checkpoint's optimizer state in a new run too: its config.yaml said lr 0.5 of a run at 0.1."""
    from reliability_helpers import error_of

    HWCLI(args=tiny_args("fit", "--run.name", "a", "--run.test_after_fit", "false"))
    source = workdir / "runs" / "quickstart" / "a"
    before = {p.relative_to(source): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    ckpt = source / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, line = error_of(tiny_args("fit", "--run.name", "b", "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt),
                                        "--model.init_args.lr", "0.5"), capsys)
    assert code == 2
    # The refusal is all that is said: "the task is rebuilt with the checkpoint's settings" came first, for a task never built.
    assert not [w for w in caught if issubclass(w.category, CheckpointSettingsWarning)]
    assert line.startswith(
        f"error: cannot start run {workdir / 'runs' / 'quickstart' / 'b'} from {ckpt} with other settings than the "
        "checkpoint restores (model.init_args.lr None -> 0.5, optimizer.init_args.lr 0.1 -> 0.5): Lightning restores its "
        "optimizer state"
    )
    assert not (workdir / "runs" / "quickstart" / "b").exists()
    assert {p.relative_to(source): p.read_bytes() for p in source.rglob("*") if p.is_file()} == before
    # Copied out of its run (sent to a colleague), the checkpoint still says what it restores.
    copied = workdir / "outside.ckpt"
    copied.write_bytes(ckpt.read_bytes())
    code, line = error_of(tiny_args("fit", "--run.name", "c", "--trainer.max_epochs", "2", "--ckpt_path", str(copied),
                                    "--model.init_args.lr", "0.5"), capsys)
    assert code == 2 and "optimizer.init_args.lr 0.1 -> 0.5)" in line and "go on with the checkpoint's settings" in line
    assert not (workdir / "runs" / "quickstart" / "c").exists()
    # With the source run's optimizer settings the new run starts from its checkpoint and records what it trained with.
    HWCLI(args=tiny_args("fit", "--run.name", "b", "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt), "--run.test_after_fit", "false"))
    saved = torch.load(workdir / "runs" / "quickstart" / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    config = yaml.safe_load((workdir / "runs" / "quickstart" / "b" / "config.yaml").read_text())
    assert [g["lr"] for g in saved["optimizer_states"][0]["param_groups"]] == [config["optimizer"]["init_args"]["lr"]] == [0.1]
    # Its config.yaml says ckpt_path: null (it resumes from its own last.ckpt); its status says where it began, resumed too.
    b = workdir / "runs" / "quickstart" / "b"
    assert json.loads((b / "status.json").read_text())["started_from"] == str(ckpt)
    HWCLI(args=tiny_args("fit", "--run.name", "b", "--trainer.max_epochs", "3", "--ckpt_path", "last", "--run.test_after_fit", "false"))
    status = json.loads((b / "status.json").read_text())
    assert status["started_from"] == str(ckpt) and status["epoch"] == 3
    assert "started_from" not in json.loads((source / "status.json").read_text())


def test_a_run_stopped_by_max_steps_resumes_with_the_whole_next_epoch(tiny_args, workdir):
    """Lightning ends the epoch at max_steps and resumes with the next one, which lost the batches drawn before the stop.

    The loader's state still said "inside the epoch, 5 batches drawn", so the next epoch replayed the stopped
    epoch's order from its 6th batch: 15 of its 20 batches, 5 epochs' worth of samples never seen.
    """
    whole = ("--trainer.limit_train_batches", "1.0", "--trainer.max_epochs", "2", "--run.test_after_fit", "false")
    HWCLI(args=tiny_args("fit", "--run.name", "r", *whole, "--trainer.max_steps", "5"))
    run = workdir / "runs" / "quickstart" / "r"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    HWCLI(args=tiny_args("fit", "--run.name", "r", *whole, "--ckpt_path", "last"))
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5 + 20  # 20 batches per epoch


def test_a_run_stopped_by_max_steps_and_resumed_with_more_steps_trains_every_epoch_whole(tiny_args, workdir):
    """The stop line's own command (``--trainer.max_steps <more>``): with max_steps given, Lightning restarts inside
    the next epoch with the stopped one's batch count, so that epoch ran 15 of its 20 batches and the run ended at
    step 40 with its 3 epochs "done"."""
    whole = ("--trainer.limit_train_batches", "1.0", "--trainer.max_epochs", "3", "--run.test_after_fit", "false")
    for more in (("--trainer.max_steps", "5"), ("--trainer.max_steps", "100", "--ckpt_path", "last")):  # as a user runs them
        done = warm_start.run(
            [sys.executable, "-m", "lightning_hw", *tiny_args("fit", "--run.name", "r", *whole, *more)],
            capture_output=True, text=True, env=_env(), cwd=workdir,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    run = workdir / "runs" / "quickstart" / "r"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5 + 20 + 20
    assert json.loads((run / "status.json").read_text())["epoch"] == 3


def test_an_epoch_begun_with_one_batch_size_is_not_continued_with_another(tiny_args, workdir, capsys):
    """The position inside an epoch counts batches: 2 of 64 resumed as 2 of 128 never showed samples 128-255."""
    from reliability_helpers import error_of

    args = tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "2", "--run.test_after_fit", "false")
    stopped = warm_start.run(
        [sys.executable, "-m", "lightning_hw", *args, "--trainer.callbacks+=reliability_helpers.SignalAtStep", "--trainer.callbacks.init_args.step", "2"],
        capture_output=True, text=True, env=_env(), cwd=workdir,
    )
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    run = workdir / "runs" / "quickstart" / "r"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, line = error_of([*args, "--ckpt_path", "last", "--data.init_args.batch_size", "128"], capsys)
    assert code == 2
    assert line == (
        f"error: cannot resume {run / 'checkpoints' / 'last.ckpt'} with batch size 128: it was taken inside epoch 0, whose "
        "batches of 64 are counted in it; resume with batch size 64 as before and --trainer.max_epochs 1 to end that epoch, "
        "then with 128 and the epochs you want"
    )
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_adam_run_resumes_and_starts_new_runs_from_its_checkpoint(tiny_args, workdir):
    """Adam's betas are a tuple in the parsed config and a list in config.yaml: every Adam run was refused
    ("optimizer.init_args.betas [0.9, 0.999] -> (0.9, 0.999)") on a resume with unchanged settings, and so
    was a new run from its checkpoint."""
    adam = ("--optimizer", "torch.optim.Adam", "--optimizer.init_args.lr", "0.01", "--run.test_after_fit", "false")
    HWCLI(args=tiny_args("fit", "--run.name", "r", *adam))
    run = workdir / "runs" / "quickstart" / "r"
    assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["init_args"]["betas"] == [0.9, 0.999]
    HWCLI(args=tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "2", "--ckpt_path", "last", *adam))
    assert json.loads((run / "status.json").read_text())["epoch"] == 2
    HWCLI(args=tiny_args("fit", "--run.name", "n", "--trainer.max_epochs", "3", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), *adam))
    assert json.loads((workdir / "runs" / "quickstart" / "n" / "status.json").read_text())["epoch"] == 3
