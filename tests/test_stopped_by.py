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
