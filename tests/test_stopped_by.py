"""A fit that ended before its last epoch says why, on the screen and in ``status.json``.

Lightning stops quietly at ``max_time``, at early stopping and at ``max_steps`` (info logs,
hidden by the quiet CLI), so a run cut short by its time limit read ``finished`` exactly like
one that trained all its epochs.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from lightning_hw.cli import main


def _fit(capsys, args: list[str]) -> tuple[int, str]:
    """Run ``args`` through the CLI's ``main`` in this process; (exit code, stdout)."""
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0
    return code, capsys.readouterr().out


def _status(workdir: Path, name: str) -> dict:
    return json.loads((workdir / "runs" / "quickstart" / name / "status.json").read_text())


def _stopped_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("Training stopped")]


def test_a_run_cut_by_its_time_limit_says_so_and_its_printed_command_trains_on(tiny_args, workdir, capsys):
    code, out = _fit(capsys, tiny_args("fit", "--run.name", "timed", "--trainer.max_epochs", "100000",
                                       "--trainer.max_time", "00:00:00:01", "--run.test_after_fit", "false"))
    assert code == 0, out
    [line] = _stopped_lines(out)
    assert "its time limit (--trainer.max_time 00:00:00:01) was reached" in line
    status = _status(workdir, "timed")
    assert status["status"] == "finished"
    assert status["stopped_by"] == "its time limit (--trainer.max_time 00:00:00:01) was reached"
    stopped_at = status["global_step"]

    # The line's command, with a longer limit, continues the same run.
    command = shlex.split(line.split("to train on, run: ", 1)[1])
    assert command[:3] == ["python", "-m", "lightning_hw"] and command[-1] == "<more>"
    code, out = _fit(capsys, [*command[3:-1], "00:00:00:03", "--run.wandb", "disabled"])
    assert code == 0, out
    status = _status(workdir, "timed")
    assert status["global_step"] > stopped_at
    assert status["stopped_by"] == "its time limit (--trainer.max_time 00:00:00:03) was reached"
    assert status["earlier_attempts"][0]["stopped_by"].endswith("(--trainer.max_time 00:00:00:01) was reached")


def test_early_stopping_is_named_with_lightnings_reason(tiny_args, workdir, capsys):
    code, out = _fit(capsys, tiny_args(
        "fit", "--run.name", "early", "--trainer.max_epochs", "5", "--run.test_after_fit", "false",
        "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor", "val/loss",
        "--trainer.callbacks.stopping_threshold", "1000",
    ))
    assert code == 0, out
    [line] = _stopped_lines(out)
    assert "early stopping: stopping threshold reached: val/loss = " in line
    assert "to train on" not in line  # a longer limit would not train on
    status = _status(workdir, "early")
    assert status["stopped_by"].startswith("early stopping: stopping threshold reached")
    assert status["epoch"] == 1  # one epoch of five


@pytest.mark.parametrize("max_epochs, said", [("3", True), ("-1", False)])
def test_max_steps_is_named_only_when_it_comes_before_max_epochs(tiny_args, workdir, capsys, max_epochs, said):
    code, out = _fit(capsys, tiny_args("fit", "--run.name", "steps", "--trainer.max_epochs", max_epochs,
                                       "--trainer.max_steps", "4", "--run.test_after_fit", "false"))
    assert code == 0, out
    assert bool(_stopped_lines(out)) == said
    status = _status(workdir, "steps")
    assert status["global_step"] == 4
    if said:
        assert status["stopped_by"] == "--trainer.max_steps 4 was reached before max_epochs 3"
        assert _stopped_lines(out)[0].endswith("--ckpt_path last --trainer.max_steps <more>")
    else:
        assert status["stopped_by"] is None


def test_a_run_that_trains_all_its_epochs_says_nothing_more(tiny_args, workdir, capsys):
    code, out = _fit(capsys, tiny_args("fit", "--run.name", "whole", "--trainer.max_epochs", "2"))
    assert code == 0, out
    assert _stopped_lines(out) == []
    assert _status(workdir, "whole")["stopped_by"] is None


def _train_on(capsys, line: str, *values: str) -> tuple[int, str]:
    """Run the line's "to train on" command with ``values`` for its ``<more>`` placeholders."""
    command = shlex.split(line.split("to train on, run: ", 1)[1])
    assert command[:3] == ["python", "-m", "lightning_hw"] and command.count("<more>") == len(values), line
    filled = iter(values)
    return _fit(capsys, [next(filled) if word == "<more>" else word for word in command[3:]] + ["--run.wandb", "disabled"])


def test_max_steps_reached_inside_the_last_epoch_is_named_and_its_command_trains_on(tiny_args, workdir, capsys):
    """max_steps 4 of 2 epochs x 3 batches stops one batch into the last epoch: the run read as whole
    (no line, stopped_by null); and since Lightning counts the cut epoch as ended, raising max_steps
    alone would train nothing: the command raises max_epochs too."""
    code, out = _fit(capsys, tiny_args("fit", "--run.name", "steps", "--trainer.max_epochs", "2",
                                       "--trainer.max_steps", "4", "--run.test_after_fit", "false"))
    assert code == 0, out
    [line] = _stopped_lines(out)
    assert _status(workdir, "steps")["stopped_by"] == "--trainer.max_steps 4 was reached before max_epochs 2"
    assert line.endswith("--ckpt_path last --trainer.max_steps <more> --trainer.max_epochs <more>")
    code, out = _train_on(capsys, line, "8", "3")
    assert code == 0, out
    assert _status(workdir, "steps")["global_step"] > 4  # it trains on (raising max_steps alone trained nothing)


def test_a_time_limit_inside_the_last_epoch_gives_a_command_that_trains_on(tiny_args, workdir, capsys):
    """max_time ran out in the only epoch: `--trainer.max_time <more>` resumed into a run whose
    epochs were all counted as ended, trained nothing, and then read as a whole run."""
    code, out = _fit(capsys, tiny_args("fit", "--run.name", "timed", "--trainer.max_epochs", "1",
                                       "--trainer.limit_train_batches", "1.0", "--data.init_args.batch_size", "1", "--optimizer.init_args.lr", "0.01",
                                       "--trainer.max_time", "00:00:00:01", "--run.test_after_fit", "false"))
    assert code == 0, out
    [line] = _stopped_lines(out)
    assert line.endswith("--ckpt_path last --trainer.max_time <more> --trainer.max_epochs <more>")
    stopped_at = _status(workdir, "timed")["global_step"]
    code, out = _train_on(capsys, line, "00:00:00:02", "2")
    assert code == 0, out
    assert _status(workdir, "timed")["global_step"] > stopped_at


def test_a_time_limit_passed_after_the_last_batch_is_no_stop(tiny_args, workdir, capsys):
    """The limit ran out in the last epoch's validation, after every batch had trained: the run
    was whole, but read 'stopped by its time limit' with a command to train on that trained nothing."""
    slow = [{"class_path": "reliability_helpers.SlowValidation", "init_args": {"seconds": 1.5}}]
    code, out = _fit(capsys, tiny_args("fit", "--run.name", "whole", "--trainer.max_epochs", "1",
                                       "--trainer.max_time", "00:00:00:01", "--run.test_after_fit", "false",
                                       "--trainer.callbacks", json.dumps(slow)))
    assert code == 0, out
    assert _stopped_lines(out) == []
    status = _status(workdir, "whole")
    assert status["stopped_by"] is None and status["global_step"] == 3


def test_resuming_a_run_whose_train_loss_included_the_penalty_says_where_it_changes(workdir, capsys):
    """A regularised run trained before train/loss became the data loss (its metrics.csv has no
    train/penalty): resumed, its train/loss curve dropped by the penalty at the resume, without a word."""
    import csv

    from tests.conftest import REPO

    args = ["fit", "--config", str(REPO / "configs" / "moons_regularized.yaml"), "--run.name", "old",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--run.root", str(workdir / "runs"), "--run.wandb", "disabled", "--run.test_after_fit", "false"]
    code, out = _fit(capsys, [*args, "--trainer.max_epochs", "2"])
    assert code == 0, out
    metrics = workdir / "runs" / "moons_regularized" / "old" / "metrics.csv"
    with metrics.open(newline="") as f:
        rows = list(csv.DictReader(f))
    # As the run would have been written before: the penalty inside train/loss, no train/penalty column.
    columns = [c for c in rows[0] if c != "train/penalty"]
    with metrics.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    code, out = _fit(capsys, [*args, "--trainer.max_epochs", "3", "--ckpt_path", "last"])
    assert code == 0, out
    assert (
        "note: this run's train/loss of epochs 0-1 includes its L1/L2 penalty (written before the penalty was logged "
        "apart); from epoch 2 on, train/loss is the data loss and the penalty is train/penalty"
    ) in out.splitlines()
    code, out = _fit(capsys, [*args, "--trainer.max_epochs", "4", "--ckpt_path", "last"])
    assert code == 0, out
    assert "note: this run's train/loss" not in out  # a run written since has its train/penalty column
