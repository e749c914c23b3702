"""W&B logging, checked in W&B's own run files (offline mode: nothing touches the network)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import wandb_files
from lightning_hw.callbacks.artifacts import LogBestCheckpoint
from lightning_hw.cli import HWCLI
from lightning_hw.errors import ConfigError
from lightning_hw.cli import warm_start


def csv_values(run_dir: Path, metric: str) -> dict[int, float]:
    rows = csv.DictReader((run_dir / "metrics.csv").open())
    return {int(row["epoch"]): float(row[metric]) for row in rows if row.get(metric)}


@pytest.mark.slow
def test_two_offline_runs_hold_what_the_csv_holds(tiny_args, workdir, capsys):
    """Two runs in one process: each its own W&B run, its val/acc equal to the CSV copy."""
    flips = {
        "sgd": ["--optimizer.init_args.lr", "0.05", "--run.tags", "[e1, sgd]", "--run.notes", "plain SGD"],
        "adam": [
            "--optimizer", "torch.optim.Adam", "--optimizer.init_args.lr", "0.003",
            "--lr_scheduler", "torch.optim.lr_scheduler.StepLR", "--lr_scheduler.init_args.step_size", "1",
        ],
    }
    run_ids = []
    for name, extra in flips.items():
        HWCLI(args=tiny_args("fit", "--trainer.max_epochs", "2", "--run.wandb", "offline", "--run.name", name, *extra))
        run_dir = workdir / "runs" / "quickstart" / name
        (wandb_file,) = wandb_files.run_files(run_dir)
        wandb_files.wait_for_exit(wandb_file)

        logged = {row["epoch"]: row["val/acc"] for row in wandb_files.history(wandb_file) if "val/acc" in row}
        assert logged == csv_values(run_dir, "val/acc") and sorted(logged) == [0, 1]
        test_acc = [row["test/acc"] for row in wandb_files.history(wandb_file) if "test/acc" in row]
        assert test_acc == list(csv_values(run_dir, "test/acc").values())

        config = wandb_files.config(wandb_file)  # the whole resolved config, optimizer included
        assert config["optimizer"]["class_path"] == {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam"}[name]
        assert config["optimizer"]["init_args"]["lr"] == {"sgd": 0.05, "adam": 0.003}[name]
        assert config["trainer"]["max_epochs"] == 2 and config["data"]["class_path"].endswith("Digits")
        if name == "adam":
            assert config["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.StepLR"

        record = wandb_files.run_record(wandb_file)
        assert (record.project, record.run_group, record.display_name, record.job_type) == (
            "lightning-hw", "quickstart", f"quickstart/{name}", "fit",
        )
        if name == "sgd":
            assert list(record.tags) == ["e1", "sgd"] and record.notes == "plain SGD"
        assert (run_dir / "wandb-run-id").read_text() == record.run_id
        assert wandb_files.artifacts(wandb_file) == []  # the best checkpoint is uploaded only online
        run_ids.append(record.run_id)

        sync_line = next(line for line in capsys.readouterr().out.splitlines() if "wandb sync" in line)
        assert sync_line == f"W&B run saved offline; upload it with: wandb sync {wandb_file.parent}"
    assert len(set(run_ids)) == 2  # one W&B run per Lightning run, never reused


@pytest.mark.parametrize(
    ("setting", "env_mode", "reason"),
    [
        ("offline", None, "W&B is offline (as run.wandb asks)"),
        ("auto", "offline", "W&B is offline (as WANDB_MODE=offline in the environment asks)"),
        ("auto", None, "W&B is offline (no credentials found; `wandb login` to log online)"),
    ],
    ids=["run.wandb-offline", "WANDB_MODE-offline", "no-credentials"],
)
def test_the_offline_line_says_why_w_and_b_is_offline(tiny_args, workdir, monkeypatch, capsys, setting, env_mode, reason):
    """It said "no credentials found" for every offline run, also for one asked to be offline by a user logged in."""
    monkeypatch.setenv("HOME", str(workdir))  # no ~/.netrc: W&B's credentials are only what the test sets
    if env_mode:
        monkeypatch.setenv("WANDB_MODE", env_mode)
    else:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    if setting != "auto":  # logged in: a key exists, and the run is offline because it was asked to be
        monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    HWCLI(args=tiny_args("fit", "--run.wandb", setting, "--run.name", "r", "--run.test_after_fit", "false"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("W&B is offline")]
    assert lines == [f"{reason}; the command that uploads it is printed when this one completes."]


def test_the_printed_sync_command_names_the_run_files_when_pasted_into_a_shell(tiny_args, workdir, capsys):
    """A run root with a space (``my runs``) printed ``wandb sync my runs/...``: two arguments, neither the run."""

    root = workdir / "my runs"

    def synced_paths() -> list[Path]:
        line = next(line for line in capsys.readouterr().out.splitlines() if "wandb sync" in line)
        command = line.split("upload it with: ", 1)[1]
        assert command.startswith("wandb sync ")
        # What the shell hands to `wandb sync`, globs expanded as the user's shell would.
        shell = warm_start.run(
            ["bash", "-c", f"printf '%s\\n' {command.removeprefix('wandb sync ')}"], capture_output=True, text=True, cwd=workdir
        )
        return sorted(Path(workdir, p) for p in shell.stdout.splitlines())

    common = ("--run.wandb", "offline", "--run.root", str(root), "--run.name", "r", "--run.test_after_fit", "false")
    HWCLI(args=tiny_args("fit", *common))
    run_dir = root / "quickstart" / "r"
    assert synced_paths() == [f.parent for f in wandb_files.run_files(run_dir)]
    HWCLI(args=tiny_args("fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    sessions = [f.parent for f in wandb_files.run_files(run_dir)]
    assert len(sessions) == 2 and synced_paths() == sessions  # a resumed run: both sessions' files


def test_wandb_failure_leaves_training_on_csv(tiny_args, workdir, monkeypatch, capsys):
    import wandb

    def refuse(**kwargs):
        raise RuntimeError("no route to the W&B service")

    monkeypatch.setattr(wandb, "init", refuse)
    cli = HWCLI(args=tiny_args("fit", "--run.wandb", "offline", "--run.name", "r"))
    assert [type(logger).__name__ for logger in cli.trainer.loggers] == ["RunCSVLogger"]
    assert "W&B could not start (RuntimeError: no route to the W&B service); logging to CSV only." in capsys.readouterr().err
    assert csv_values(workdir / "runs" / "quickstart" / "r", "val/acc")


def test_resumed_fit_keeps_the_metrics_of_the_first_session(tiny_args, workdir):
    HWCLI(args=tiny_args("fit", "--trainer.max_epochs", "2", "--run.name", "r", "--run.test_after_fit", "false"))
    HWCLI(args=tiny_args("fit", "--trainer.max_epochs", "3", "--run.name", "r", "--ckpt_path", "last"))
    assert sorted(csv_values(workdir / "runs" / "quickstart" / "r", "val/acc")) == [0, 1, 2]
    # A fresh fit under the same name is refused: the run's metrics stay as they are.
    with pytest.raises(ConfigError, match="already exists; continue it with --ckpt_path last"):
        HWCLI(args=tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"))
    assert sorted(csv_values(workdir / "runs" / "quickstart" / "r", "val/acc")) == [0, 1, 2]


def test_best_checkpoint_becomes_a_model_artifact(workdir):
    """The callback's upload, into an offline run (online it is the same call, synced at once)."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    best = workdir / "best-epoch003.ckpt"
    best.write_bytes(b"checkpoint bytes")
    run = wandb.init(project="lightning-hw", mode="offline", dir=str(workdir))
    try:
        trainer = SimpleNamespace(
            is_global_zero=True,
            loggers=[WandbLogger(experiment=run)],
            checkpoint_callback=SimpleNamespace(
                best_model_path=str(best), best_model_score=torch.tensor(0.25), monitor="val/loss", mode="min"
            ),
        )
        LogBestCheckpoint().on_fit_end(trainer, None)  # offline: skipped
        LogBestCheckpoint(offline_too=True).on_fit_end(trainer, None)
    finally:
        run.finish()
    (wandb_file,) = sorted(workdir.glob("wandb/offline-run-*/run-*.wandb"))
    wandb_files.wait_for_exit(wandb_file)
    (artifact,) = wandb_files.artifacts(wandb_file)
    assert (artifact.name, artifact.type) == (f"model-{run.id}", "model")
    assert sorted(artifact.aliases) == ["best", "latest"]
    assert [entry.path for entry in artifact.manifest.contents] == ["model.ckpt"]
    metadata = json.loads(artifact.metadata)
    assert (metadata["score"], metadata["monitor"], metadata["original_filename"]) == (0.25, "val/loss", best.name)


def test_an_interrupt_while_wandb_starts_leaves_no_open_run(tiny_args, workdir, monkeypatch, capsys):
    """SIGTERM right after W&B's banner, before any logger holds its run: the run is closed, nothing is left.

    Left open, W&B's exit hook finished it after the rollback had removed its files, printing
    ``wandb sync`` advice for a directory that no longer existed (and recreating part of it).
    """
    import os
    import signal

    import wandb
    from wandb.sdk.wandb_run import Run as WandbRun

    from lightning_hw.runs import RunInterrupted

    console_start = WandbRun._console_start

    def signal_arrives(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the command's handler raises RunInterrupted here
        console_start(self)

    monkeypatch.setattr(WandbRun, "_console_start", signal_arrives)
    try:
        with pytest.raises(RunInterrupted) as stopped:
            HWCLI(args=tiny_args("fit", "--run.wandb", "offline", "--run.name", "r"))
        assert stopped.value.message == "interrupted by SIGTERM before training started; nothing was saved"
        assert wandb.run is None  # closed by the command, not left to W&B's exit hook
        assert not (workdir / "runs" / "quickstart" / "r").exists()
        assert "wandb sync" not in capsys.readouterr().out
    finally:
        if wandb.run is not None:
            wandb.run.finish()
