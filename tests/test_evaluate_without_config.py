"""``validate``/``test``/``predict`` without ``--config``: ``--ckpt_path last`` and the ``-c`` spellings of ``--config``.

Before, ``test --ckpt_path last`` (no config) ended in "the following arguments are required:
test.data, test.model", and ``-c F`` was not taken for ``--config F`` by the step that reads the
checkpoint's run config: ``test -c F --ckpt_path outside.ckpt`` was refused with "pass --config".
"""

from __future__ import annotations

import shlex
import shutil

import pytest

from conftest import QUICKSTART
from reliability_helpers import error_of, output_of

PROGRAM = "python -m lightning_hw"


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
@pytest.mark.parametrize("last", [["--ckpt_path", "last"], ["--ckpt_path=last"]], ids=["space", "equals"])
def test_last_without_a_config_says_which_config_to_give(workdir, capsys, command, last):
    code, line = error_of([command, *last], capsys)
    assert code == 2
    assert line == (
        "error: --ckpt_path last loads a run's last checkpoint with the config it was trained with: "
        f"{PROGRAM} {command} --config runs/<group>/<name>/config.yaml --ckpt_path last"
    )
    assert not (workdir / "runs").exists()


def test_last_of_a_named_run_gives_the_command_that_evaluates_it(trained_run, workdir, capsys):
    """With --run.name (and the root) the run is found: the command names its config, and works as printed."""
    root = trained_run.parent.parent
    quick = ["--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled"]
    given = ["--ckpt_path", "last", "--run.root", str(root), "--run.name", "trained", *quick]
    code, line = error_of(["test", *given], capsys)
    assert code == 2
    command = line.split(f"for run {trained_run}: ", 1)[1]
    assert command == f"{PROGRAM} test --config {trained_run / 'config.yaml'} --ckpt_path last {shlex.join(given[2:])}"
    said = output_of(*shlex.split(command)[3:])  # the command as printed, after "python -m lightning_hw"
    assert f"Evaluation saved in {trained_run / 'eval'}/test-" in said


def test_fit_last_of_a_named_run_names_its_config_too(trained_run, workdir, capsys):
    root = trained_run.parent.parent
    code, line = error_of(["fit", "--ckpt_path", "last", "--run.root", str(root), "--run.name", "trained"], capsys)
    assert code == 2
    assert line == (
        f"error: --ckpt_path last continues a run from the config it was trained with; for run {trained_run}: "
        f"{PROGRAM} fit --config {trained_run / 'config.yaml'} --ckpt_path last --run.root {root} --run.name trained"
    )


@pytest.mark.parametrize("spelling", ["-c {}", "-c={}", "-c{}", "--config={}"])
def test_the_short_config_option_is_taken_as_the_config(trained_run, workdir, spelling):
    """``-c F`` is jsonargparse's short form of ``--config F``: an outside checkpoint is evaluated with it, not refused."""
    loose = workdir / "outside.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", loose)
    printed = output_of("test", *spelling.format(QUICKSTART).split(), "--ckpt_path", str(loose), "--print_config")
    assert f"ckpt_path: {loose}" in printed and "Using the config of the checkpoint's run" not in printed


def test_the_short_config_option_evaluates_an_outside_checkpoint(trained_run, workdir):
    loose = workdir / "outside.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", loose)
    main_args = [
        "test", "-c", str(QUICKSTART), "--ckpt_path", str(loose), "--run.root", str(workdir / "runs"),
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled",
    ]
    said = output_of(*main_args)
    (evaluation,) = (workdir / "runs" / "quickstart" / "eval").iterdir()
    assert f"Evaluation saved in {evaluation}" in said
    assert "test/acc" in (evaluation / "metrics.csv").read_text().splitlines()[0]


def test_the_short_config_option_is_not_mixed_with_the_runs_config(trained_run, workdir):
    """With ``-c`` the run's own config.yaml is not read under the given one (as with ``--config``)."""
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    printed = output_of("test", "-c", str(QUICKSTART), "--ckpt_path", str(ckpt), "--print_config")
    assert "Using the config of the checkpoint's run" not in printed



@pytest.mark.parametrize("command", ["validate", "test"])
def test_a_checkpoint_outside_any_run_is_said_to_lie_in_none(trained_run, workdir, capsys, command):
    """Before: "no config.yaml in the run of outside.ckpt", of a file that lies in no run at all."""
    loose = workdir / "outside.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", loose)
    code, line = error_of([command, "--ckpt_path", str(loose)], capsys)
    assert code == 2
    assert line == (
        f"error: {loose} lies in no run (runs/<group>/<name>/checkpoints/), so the data and net it was trained with are "
        f"unknown; run: {PROGRAM} {command} --config <the config it was trained with> --ckpt_path {loose}"
    )
