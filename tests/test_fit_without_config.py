"""``fit --ckpt_path X`` without ``--config``: one line with the command that does what was meant.

``validate``/``test``/``predict`` take the config of the checkpoint's run; ``fit`` writes into
a run, so it does not guess: it says which command continues the run (or starts a new one).
Before, every case below ended in "the following arguments are required: fit.data, fit.model".
"""

from __future__ import annotations

import shlex
import shutil

import pytest

from lightning_hw.cli import main
from reliability_helpers import error_of

PROGRAM = "python -m lightning_hw"


def listing(run):
    """Every file of a run with its size and modification time (to see that nothing changed)."""
    return sorted((str(p.relative_to(run)), p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())


def test_a_runs_last_checkpoint_gives_the_command_that_resumes_it(trained_run, workdir, capsys):
    before = listing(trained_run)
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    code, line = error_of(["fit", "--ckpt_path", str(ckpt), "--trainer.max_epochs", "3"], capsys)
    assert code == 2
    assert line == (
        f"error: fit needs the config that run {trained_run} was trained with (--ckpt_path gives only the weights); "
        f"continue that run with: {PROGRAM} fit --config {trained_run / 'config.yaml'} --ckpt_path last --trainer.max_epochs 3"
    )
    assert listing(trained_run) == before


def test_the_command_given_for_a_run_moved_elsewhere_resumes_that_run(trained_run, workdir, capsys):
    """A run copied under another root: its config names the old root, so the command adds --run.root and works."""
    run = workdir / "moved" / "runs" / "quickstart" / "trained"
    shutil.copytree(trained_run, run)
    before = listing(trained_run)
    _, line = error_of(["fit", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "3"], capsys)
    command = line.split("continue that run with: ", 1)[1]
    assert command == (
        f"{PROGRAM} fit --config {run / 'config.yaml'} --ckpt_path last --run.root {run.parent.parent} --trainer.max_epochs 3"
    )
    main(shlex.split(command)[3:])  # the command as printed, after "python -m lightning_hw"
    epochs = {row.split(",")[0] for row in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert epochs == {"0", "1", "2"}, epochs  # continued in place: the third epoch appended to the copy
    assert listing(trained_run) == before


def test_a_runs_best_checkpoint_is_refused_with_both_commands(trained_run, workdir, capsys):
    """Continuing a run from an older checkpoint is refused (README's run-record table): both ways on are given.

    The run finished: the command said to continue it with --ckpt_path last alone, which trains nothing (refused)."""
    before = listing(trained_run)
    (best,) = (trained_run / "checkpoints").glob("best-*.ckpt")
    code, line = error_of(["fit", "--ckpt_path", str(best)], capsys)
    assert code == 2
    config = trained_run / "config.yaml"
    assert line == (
        f"error: {best} is not the newest state of run {trained_run}, and fit needs the config it was trained with; "
        f"test it with: {PROGRAM} test --config {config} --ckpt_path {best}; "
        f"continue that run with: {PROGRAM} fit --config {config} --ckpt_path last --trainer.max_epochs <more>; "
        f"or start a new run from this checkpoint with: {PROGRAM} fit --config {config} --ckpt_path {best} --run.name NEW_NAME"
    )
    assert listing(trained_run) == before


def test_a_runs_checkpoint_with_another_run_name_gives_the_command_that_starts_that_run(trained_run, workdir, capsys):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    _, line = error_of(["fit", "--ckpt_path", str(ckpt), "--run.name", "again"], capsys)
    assert line == (
        f"error: fit needs the config that run {trained_run} was trained with (--ckpt_path gives only the weights); "
        f"start run again from this checkpoint with: {PROGRAM} fit --config {trained_run / 'config.yaml'} "
        f"--ckpt_path {ckpt} --run.name again"
    )


def test_a_checkpoint_outside_any_run_asks_for_the_config_it_was_trained_with(trained_run, workdir, capsys):
    loose = workdir / "last.ckpt"
    loose.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes())
    code, line = error_of(["fit", "--ckpt_path", str(loose)], capsys)
    assert code == 2
    assert line == (
        f"error: {loose} lies in no run (runs/<group>/<name>/checkpoints/), so the data and net it was trained with "
        f"are unknown; start a new run from it with: {PROGRAM} fit --config <the config it was trained with> --ckpt_path {loose}"
    )


def test_a_checkpoint_in_a_folder_without_config_asks_for_the_config_it_was_trained_with(trained_run, workdir, capsys):
    ckpt = workdir / "copied" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes())
    code, line = error_of(["fit", "--ckpt_path", str(ckpt)], capsys)
    assert code == 2
    assert line == (
        f"error: no config.yaml in the run of {ckpt}, so the data and net it was trained with are unknown; "
        "pass --config with the config it was trained with"
    )


@pytest.mark.parametrize("where", ["here", "run"])
def test_a_missing_checkpoint_is_said_to_be_missing(trained_run, workdir, capsys, where):
    folder = trained_run / "checkpoints" if where == "run" else workdir
    code, line = error_of(["fit", "--ckpt_path", str(folder / "lats.ckpt")], capsys)
    assert code == 2
    there = f" ({folder} has: {', '.join(sorted(p.name for p in folder.glob('*.ckpt')))})" if where == "run" else ""
    assert line == f"error: checkpoint not found: {folder / 'lats.ckpt'}{there}"


def test_last_without_a_config_says_which_config_to_give(workdir, capsys):
    code, line = error_of(["fit", "--ckpt_path", "last"], capsys)
    assert code == 2
    assert line == (
        "error: --ckpt_path last continues a run from the config it was trained with: "
        f"{PROGRAM} fit --config runs/<group>/<name>/config.yaml --ckpt_path last"
    )
