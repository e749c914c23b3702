"""The run lifecycle end to end, through the real command line (``python -m lightning_hw ...``).

What a run directory may be and when it is made, kept or left alone:

1. a name that exists is not reused by a fresh ``fit`` (only ``--ckpt_path last`` continues it);
2. a resume that cannot load its checkpoint changes nothing in the run;
3. ``validate``/``test``/``predict`` on a run's checkpoint write into ``<run>/eval/<what>-<time>/``
   and leave the run's own files alone, and ``report`` does not count them as runs;
4. the group is the first ``--config`` file, and a run's saved ``config.yaml`` continues it in place;
5. a run that fails before training (or is a ``fast_dev_run``) leaves nothing behind;
6. SIGTERM/SIGINT save ``last.ckpt``, exit 143/130 and print the command that resumes to the
   same metrics as an uninterrupted run;
7. a study marks only the variants that really finished.

Every command goes through the command line's ``main()`` as a user would type it, on the
quickstart cut to a few batches (``conftest.tiny_run_args``), W&B disabled unless a test says
otherwise; in a subprocess where the process itself matters (signals, exit codes of an
interrupted run, printed commands run as printed), else in this process. A study runs in this
process too: each of its runs is a ``fit`` process of its own, as the runner starts it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from conftest import QUICKSTART, REPO, tiny_run_args
from reliability_helpers import signal_when_training
from lightning_hw.cli import warm_start

TESTS = Path(__file__).resolve().parent
CPU_PRESET = REPO / "configs" / "trainer" / "cpu.yaml"
TRACEBACK = "Traceback (most recent call last)"
RUN = "r1"  # the shared trained run: <root>/quickstart/r1


# -- helpers -----------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """tests/ on PYTHONPATH (configs name ``reliability_helpers.X``), and ``python`` on PATH is
    this interpreter, so that a printed ``python -m lightning_hw ...`` command runs as printed."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m lightning_hw ARGS`` in ``cwd``."""
    return warm_start.run(
        [sys.executable, "-m", "lightning_hw", *args],
        cwd=cwd, capture_output=True, text=True, env=_env(), timeout=timeout,
    )


def in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m lightning_hw ARGS`` through the same ``main()`` in this process, from ``cwd``.

    For commands whose exit code, output and files are under test but not the process itself
    (signals are): it saves the ~6 s an interpreter takes to import Lightning.
    """
    from lightning_hw.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except Exception:  # noqa: BLE001 - what a process would print as a traceback and exit 1 for
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def tiny(subcommand: str, root: Path, *extra: str) -> list[str]:
    """The conftest tiny run (quickstart, a few batches, W&B disabled) writing under ``root``."""
    return tiny_run_args(subcommand, QUICKSTART, root, *extra)


def shown(result: subprocess.CompletedProcess) -> str:
    """The end of a command's output, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout:\n{result.stdout[-3000:]}\n--- stderr:\n{result.stderr[-3000:]}"


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def snapshot(directory: Path, only: tuple[str, ...] | None = None) -> dict[str, tuple]:
    """{relative path: (sha256, mtime_ns)} of every file under ``directory`` (checkpoints/, wandb/...).

    Directories are listed too (without a time: adding or removing a file shows anyway), so a
    new empty folder also counts as a change, and symbolic links by their target.
    ``only``: restrict to these top-level names (e.g. ``("metrics.csv", "checkpoints")``).
    """
    entries: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(directory)
            if only is not None and rel.parts[0] not in only:
                continue
            if path.is_symlink():
                entries[str(rel)] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[str(rel)] = ("dir",)
            else:
                entries[str(rel)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return entries


def assert_nothing_under(root: Path) -> None:
    """No file at all under the runs root, and no run directory (``<root>/<group>/<name>``)."""
    if not root.exists():
        return
    files = [str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()]
    run_dirs = [str(p.relative_to(root)) for p in root.glob("*/*")]
    assert files == [] and run_dirs == [], f"left behind under {root}: files {files}, run directories {run_dirs}"


def copy_runs(source_root: Path, destination: Path) -> Path:
    """A private copy of a runs root (for a test that may change it); returns the copy's root."""
    root = destination / "runs"
    shutil.copytree(source_root, root, symlinks=True)
    return root


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def filled(row: dict[str, str]) -> dict[str, str]:
    """A metrics.csv row without its empty cells (files with more columns compare alike)."""
    return {k: v for k, v in row.items() if v not in ("", None)}


def training_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows with a train/ or val/ value (not test-after-fit's row)."""
    return [filled(r) for r in rows if any(k.startswith(("train/", "val/")) for k in filled(r))]


def path_forms(path: Path) -> set[str]:
    return {str(path), str(path.resolve())}


# -- a trained run, shared (tests that may change it work on a copy) ---------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The runs root holding ``quickstart/r1``: the tiny quickstart trained for two epochs."""
    from lightning_hw.cli import HWCLI  # in-process: the set-up, not a command under test

    work = tmp_path_factory.mktemp("lifecycle-trained")
    root = work / "runs"
    HWCLI(args=tiny("fit", root, "--trainer.max_epochs", "2", "--run.name", RUN))
    run = root / "quickstart" / RUN
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    return root


# -- 1. reusing a name -------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_into_an_existing_run_name_is_refused_and_changes_nothing(trained, tmp_path):
    root = copy_runs(trained, tmp_path)
    run = root / "quickstart" / RUN
    before = snapshot(run)

    # The same fit again, now asking for another epoch count, but without --ckpt_path.
    result = in_process(*tiny("fit", root, "--trainer.max_epochs", "2", "--run.name", RUN, "--trainer.max_epochs", "3"), cwd=tmp_path)

    assert result.returncode == 2, shown(result)
    assert snapshot(run) == before, "the existing run's directory was changed"
    assert sorted(p.name for p in (root / "quickstart").iterdir()) == [RUN], "a refused fit made another run directory"
    errors = error_lines(result)
    assert len(errors) == 1 and errors[0].startswith("error: run "), shown(result)
    for phrase in ("already exists", "--ckpt_path last", "--run.name"):
        assert phrase in errors[0], f"{phrase!r} missing from: {errors[0]}"
    assert TRACEBACK not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("where", ["run.root", "cwd"])
def test_fit_never_saves_a_new_run_inside_a_run(trained, tmp_path, where):
    """``--run.root runs/quickstart/<run>`` (or the default ``runs`` from a run's own folder) made
    ``runs/quickstart/<run>/quickstart/<new run>/`` among that run's files."""
    root = copy_runs(trained, tmp_path)
    run = root / "quickstart" / RUN
    before = snapshot(run)
    if where == "cwd":
        args, cwd, saved, record = ["--run.root", "runs"], run, "runs/quickstart", "."
    else:
        args, cwd, saved, record = ["--run.root", str(run)], tmp_path, f"{run}/quickstart", str(run)
    result = in_process(*tiny("fit", root, "--run.name", "new"), *args, cwd=cwd)

    assert result.returncode == 2, shown(result)
    assert error_lines(result) == [
        f"error: the run would be saved in {saved}, inside {record}, a run whose files no other command changes; "
        "give a --run.root outside it (the runs folder itself), or run from the project's folder"
    ]
    assert snapshot(run) == before


@pytest.mark.slow
def test_a_project_with_weights_and_a_resume_from_inside_its_run_are_not_refused(trained, tmp_path):
    """Not records: a project folder keeping downloaded weights in checkpoints/ (refused as "a run"), and a run resumed
    in place by its checkpoint's path from inside its own folder (refused as "saved in runs/quickstart")."""
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)
    (project / "checkpoints" / "resnet18.ckpt").write_bytes(b"weights")
    result = in_process(*tiny("fit", Path("runs"), "--run.name", "mine"), cwd=project)
    assert result.returncode == 0, shown(result)
    assert (project / "runs" / "quickstart" / "mine" / "checkpoints" / "last.ckpt").is_file()

    run = copy_runs(trained, tmp_path) / "quickstart" / RUN
    result = in_process(*tiny("fit", Path("runs"), "--ckpt_path", "checkpoints/last.ckpt", "--trainer.max_epochs", "3"), cwd=run)
    assert result.returncode == 0, shown(result)
    assert json.loads((run / "status.json").read_text())["epoch"] == 3


# -- 2. a failed resume touches nothing --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("given", ["last", "file"], ids=["ckpt_path-last", "ckpt_path-file"])
def test_resume_with_a_model_that_does_not_fit_the_checkpoint_touches_nothing(trained, tmp_path, given):
    root = copy_runs(trained, tmp_path)
    victim = root / "quickstart" / RUN
    ckpt_path = "last" if given == "last" else str(victim / "checkpoints" / "last.ckpt")
    before = snapshot(victim)

    # The quickstart net has hidden [128]; this config asks for [64].
    result = in_process(*tiny(
        "fit", root, "--trainer.max_epochs", "2", "--model.init_args.net.init_args.hidden", "[64]",
        "--run.name", RUN, "--ckpt_path", ckpt_path,
    ), cwd=tmp_path)

    assert result.returncode == 2, shown(result)
    after = snapshot(victim)
    for name in ("metrics.csv", "config.yaml"):
        assert after.get(name) == before[name], f"{name} of the run was changed by a failed resume"
    assert after == before, "the run's directory was changed by a failed resume"
    assert sorted(p.name for p in (root / "quickstart").iterdir()) == [RUN]
    errors = error_lines(result)
    assert len(errors) == 1, shown(result)
    line = errors[0]
    assert "hidden=[128]" in line, f"what the checkpoint holds is missing: {line}"
    assert "hidden=[64]" in line, f"what the config asks for is missing: {line}"
    assert any(f"--config {form}" in line for form in path_forms(victim / "config.yaml")), (
        f"the run's own config is not suggested: {line}"
    )
    assert TRACEBACK not in result.stderr


# -- 3. evaluating a run writes its own files --------------------------------------------------

KEPT = ("metrics.csv", "config.yaml", "checkpoints")  # the run's own record that evaluations must not touch


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory) -> SimpleNamespace:
    """validate, test and predict on a copy of the trained run's last.ckpt, then report on its group.

    Each step's result and the snapshots around it are kept; the tests below check them.
    """
    work = tmp_path_factory.mktemp("lifecycle-eval")
    root = copy_runs(trained, work)
    run = root / "quickstart" / RUN
    ckpt = str(run / "checkpoints" / "last.ckpt")
    steps = {}
    for subcommand in ("validate", "test"):
        before = snapshot(run, only=KEPT)
        result = in_process(*tiny(subcommand, root, "--ckpt_path", ckpt), cwd=work)
        steps[subcommand] = SimpleNamespace(result=result, before=before, after=snapshot(run, only=KEPT))
    before = snapshot(run)
    result = in_process(*tiny("predict", root, "--ckpt_path", ckpt), cwd=work)
    steps["predict"] = SimpleNamespace(result=result, before=before, after=snapshot(run))
    runs_after_eval = sorted(str(p.relative_to(root)) for p in root.glob("*/*"))
    steps["report"] = SimpleNamespace(result=in_process("report", str(root / "quickstart"), cwd=work))
    return SimpleNamespace(work=work, root=root, run=run, steps=steps, runs_after_eval=runs_after_eval)


def _eval_dirs(run: Path, what: str) -> list[Path]:
    return sorted(p for p in (run / "eval").glob(f"{what}-*") if p.is_dir())


def _timestamped(directory: Path, what: str) -> bool:
    return re.fullmatch(rf"{what}-\d[\d_T:.-]*", directory.name) is not None


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_of_a_run_write_into_its_eval_directory(evaluated, subcommand):
    step = evaluated.steps[subcommand]
    assert step.result.returncode == 0, shown(step.result)
    assert step.after == step.before, f"{subcommand} changed the run's metrics.csv, config.yaml or checkpoints"
    found = _eval_dirs(evaluated.run, subcommand)
    assert len(found) == 1, f"expected one {evaluated.run}/eval/{subcommand}-<timestamp>/, found {found}"
    directory = found[0]
    assert _timestamped(directory, subcommand), directory.name
    assert (directory / f"config-{subcommand}.yaml").is_file(), sorted(p.name for p in directory.iterdir())
    header = next(csv.reader((directory / "metrics.csv").open()))
    stage = "val" if subcommand == "validate" else "test"
    assert any(column.startswith(f"{stage}/") for column in header), header
    assert not (evaluated.run / f"config-{subcommand}.yaml").exists(), "the evaluation's config went into the run itself"
    assert list(evaluated.root.rglob("config-TrainerFn*")) == []
    # The evaluations went into the checkpoint's run, not into a new run of their own.
    assert evaluated.runs_after_eval == [f"quickstart/{RUN}"]


@pytest.mark.slow
def test_predict_of_a_run_writes_only_its_eval_directory(evaluated):
    step = evaluated.steps["predict"]
    assert step.result.returncode == 0, shown(step.result)
    found = _eval_dirs(evaluated.run, "predict")
    assert len(found) == 1, f"expected one {evaluated.run}/eval/predict-<timestamp>/, found {found}"
    directory = found[0]
    assert _timestamped(directory, "predict"), directory.name
    predictions = csv_rows(directory / "predictions.csv")
    assert predictions, "predictions.csv has no rows"
    changed = {k for k in step.before.keys() | step.after.keys() if step.before.get(k) != step.after.get(k)}
    outside = sorted(k for k in changed if k != "eval" and Path(k).parts[:2] != ("eval", directory.name))
    assert outside == [], f"predict changed files of the run outside {directory.name}: {outside}"
    assert list(evaluated.root.rglob("config-TrainerFn*")) == []
    assert evaluated.runs_after_eval == [f"quickstart/{RUN}"]


@pytest.mark.slow
def test_report_counts_the_run_once_and_lists_its_evaluations_apart(evaluated):
    assert _eval_dirs(evaluated.run, "validate") and _eval_dirs(evaluated.run, "test"), (
        "no eval/ directories to report on (see the validate/test tests)"
    )
    result = evaluated.steps["report"].result
    assert result.returncode == 0, shown(result)
    report = evaluated.root / "quickstart" / "report"
    rows = csv_rows(report / "report.csv")
    assert len(rows) == 1, f"report.csv should have one row (the run); it has {[r.get('run') for r in rows]}"
    assert Path(rows[0]["run"]).name == RUN, rows[0]
    markdown = (report / "report.md").read_text() if (report / "report.md").is_file() else ""
    assert "Evaluations" in result.stdout or "Evaluations" in markdown, shown(result)


@pytest.mark.parametrize("subcommand", ["test", "predict"])
def test_a_checkpoint_from_outside_a_named_run_is_not_filed_as_its_evaluation(trained, tmp_path, subcommand):
    # The run's own config names it; the checkpoint is a copy from elsewhere (it could hold any model).
    root = copy_runs(trained, tmp_path)
    run = root / "quickstart" / RUN
    outside = tmp_path / "downloaded.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", outside)
    before = snapshot(run)

    result = in_process(subcommand, "--config", str(run / "config.yaml"), "--ckpt_path", str(outside), cwd=tmp_path)

    assert result.returncode == 2, shown(result)
    assert snapshot(run) == before, f"{subcommand} of a foreign checkpoint wrote into the run"
    errors = error_lines(result)
    assert len(errors) == 1 and "is not a checkpoint of run" in errors[0] and "--ckpt_path last" in errors[0], shown(result)
    assert TRACEBACK not in result.stderr


# -- 4. the group is the first config; a run's config.yaml continues it ------------------------


@pytest.mark.slow
def test_group_is_the_first_config_and_the_saved_config_continues_the_run(tmp_path):
    root = tmp_path / "runs"
    base = tiny("fit", root, "--trainer.max_epochs", "2", "--run.name", "g1")
    assert base[1:3] == ["--config", str(QUICKSTART)]
    first = in_process(base[0], "--config", str(QUICKSTART), "--config", str(CPU_PRESET), *base[3:], cwd=tmp_path)
    assert first.returncode == 0, shown(first)
    run = root / "quickstart" / "g1"
    assert sorted(p.name for p in root.iterdir()) == ["quickstart"], f"group directories: {sorted(root.iterdir())}"
    assert (run / "config.yaml").is_file(), shown(first)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["run"]["group"] == "quickstart" and saved["run"]["name"] == "g1", saved["run"]
    rows_before = training_rows(csv_rows(run / "metrics.csv"))
    assert {r["epoch"] for r in rows_before} == {"0", "1"}
    layout_before = sorted(map(str, [*root.glob("*"), *root.glob("*/*")]))

    resumed = in_process(
        "fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_epochs", "3", cwd=tmp_path
    )

    assert resumed.returncode == 0, shown(resumed)
    assert sorted(map(str, [*root.glob("*"), *root.glob("*/*")])) == layout_before, "the resume made a new run directory"
    rows_after = training_rows(csv_rows(run / "metrics.csv"))
    assert any(r["epoch"] == "2" for r in rows_after), f"no epoch 2 in {run / 'metrics.csv'}"
    missing = [r for r in rows_before if r not in rows_after]
    assert missing == [], f"the rows of the first two epochs were lost: {missing}"


# -- 5. failed starts leave nothing ------------------------------------------------------------


@pytest.mark.slow
def test_missing_data_leaves_no_run_and_no_wandb_run(tmp_path):
    root = tmp_path / "runs"
    result = in_process(*tiny(
        "fit", root, "--data", "reliability_helpers.CSVPoints", "--data.init_args.path", "missing.csv",
        "--run.wandb", "offline",
    ), cwd=tmp_path)
    assert result.returncode != 0, shown(result)
    assert_nothing_under(root)
    errors = error_lines(result)
    assert len(errors) == 1, shown(result)
    assert "missing.csv" in errors[0], shown(result)  # the data error, not some other refusal (a vacuous pass)
    assert TRACEBACK not in result.stderr
    assert "wandb sync" not in result.stdout + result.stderr, "an offline W&B run was started (and left to sync)"


@pytest.mark.slow
def test_bad_split_fractions_leave_nothing(tmp_path):
    # Three fractions that do not sum to 1 pass the parser (a wrong count, [0.7, 0.2], is refused
    # there, before anything could be made) and are caught by the datamodule: the harder case.
    root = tmp_path / "runs"
    result = in_process(*tiny("fit", root, "--data.init_args.splits", "[0.9, 0.2, 0.1]"), cwd=tmp_path)
    assert result.returncode == 2, shown(result)
    assert_nothing_under(root)
    assert len(error_lines(result)) == 1 and TRACEBACK not in result.stderr, shown(result)


@pytest.mark.parametrize("key", ["max_epochs", "max_steps"])
def test_a_new_run_of_zero_epochs_is_refused_and_leaves_nothing(tmp_path, key):
    """`--trainer.max_epochs 0` was kept as a `finished` run of 0 epochs whose test scored the untrained weights
    ("Test (final weights): test/acc = 0.0950"), its status.json naming `--ckpt_path last` for a last.ckpt never written."""
    root = tmp_path / "runs"
    result = in_process(*tiny("fit", root, f"--trainer.{key}", "0"), cwd=tmp_path)
    assert result.returncode == 2, shown(result)
    assert error_lines(result) == [
        f"error: trainer.{key} is 0: this fit would train nothing, and a run that never trained is not kept; "
        f"give --trainer.{key} 1 or more"
    ], shown(result)
    assert_nothing_under(root)


@pytest.mark.slow
def test_fast_dev_run_saves_nothing_and_says_so(tmp_path):
    root = tmp_path / "runs"
    result = in_process(*tiny("fit", root, "--trainer.fast_dev_run", "true"), cwd=tmp_path)
    assert result.returncode == 0, shown(result)
    assert_nothing_under(root)
    assert "nothing was saved" in result.stdout, shown(result)


@pytest.mark.slow
def test_crash_in_the_first_training_step_leaves_no_run(tmp_path):
    root = tmp_path / "runs"
    result = in_process(*tiny("fit", root, "--trainer.callbacks+=reliability_helpers.RaiseAtStep", "--trainer.callbacks.step", "0"), cwd=tmp_path)
    assert result.returncode != 0, shown(result)
    assert_nothing_under(root)
    # It crashed where it was meant to (an option the parser refused would also leave nothing).
    assert "test crash at step 0" in result.stdout + result.stderr, shown(result)


# -- 6. interrupts -----------------------------------------------------------------------------

# Dropout draws from the global random state, so an exact match also proves it is restored; with
# the long checkpoint interval no last.ckpt is written between the first and the final epoch, so
# a last.ckpt at the signal's step can only come from the interrupt itself.
INTERRUPTIBLE = (
    "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "6",
    "--model.init_args.net.init_args.dropout", "0.3", "--run.checkpoint_interval", "3600",
)
RESUME_COMMAND = re.compile(
    r"""(?P<python>[^\s`'"]*python[^\s`'"]*) -m lightning_hw fit --config (?P<config>'[^']+'|[^\s`'"]+) --ckpt_path last"""
)


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must match."""
    from lightning_hw.cli import HWCLI  # in-process: the reference, not a command under test

    work = tmp_path_factory.mktemp("lifecycle-whole")
    HWCLI(args=tiny("fit", work / "runs", *INTERRUPTIBLE, "--run.name", "whole"))
    return work / "runs" / "quickstart" / "whole"


@pytest.mark.slow
def test_interrupt_while_gradients_accumulate_stops_at_the_optimizer_step(tmp_path):
    """With 2 batches per optimizer step, SIGTERM after the 5th batch (step 3 half accumulated)
    stops after the 6th, at step 3: the checkpoint holds no gradients, so stopping in between
    would resume step 3 without the 5th batch's share."""
    from lightning_hw.cli import HWCLI

    accumulate = (*INTERRUPTIBLE, "--trainer.accumulate_grad_batches", "2")
    root = tmp_path / "runs"
    HWCLI(args=tiny("fit", root, *accumulate, "--run.name", "whole"))
    result = cli(*tiny(
        "fit", root, *accumulate, "--run.name", "cut",
        "--trainer.callbacks+=reliability_helpers.SignalAfterBatches", "--trainer.callbacks.batches", "5",
    ), cwd=tmp_path)
    assert result.returncode == 143, shown(result)
    assert "interrupted by SIGTERM at step 3" in result.stderr, shown(result)
    cut, whole = root / "quickstart" / "cut", root / "quickstart" / "whole"
    assert torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3

    resumed = in_process(*tiny("fit", root, *accumulate, "--run.name", "cut", "--ckpt_path", "last"), cwd=tmp_path)
    assert resumed.returncode == 0, shown(resumed)
    assert (cut / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()
    final = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def _best_named_by(checkpoint: dict) -> str | None:
    """The best checkpoint's file name recorded in a last.ckpt (ModelCheckpoint's state key)."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if ("BestCheckpoint" in key or "ModelCheckpoint" in key) and isinstance(state, dict) and state.get("best_model_path"):
            return Path(state["best_model_path"]).name
    return None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "step", "code"),
    [(signal.SIGTERM, 8, 143), (signal.SIGINT, 6, 130)],
    ids=["sigterm-mid-epoch", "sigint-end-of-epoch"],
)
def test_interrupted_run_saves_and_resumes_to_the_same_metrics(whole, tmp_path, signum, step, code):
    root = tmp_path / "runs"
    cut = root / "quickstart" / "cut"
    result = cli(*tiny(
        "fit", root, *INTERRUPTIBLE, "--run.name", "cut",
        "--trainer.callbacks+=reliability_helpers.SignalAtStep",
        "--trainer.callbacks.step", str(step), "--trainer.callbacks.signum", str(int(signum)),
    ), cwd=tmp_path)

    assert result.returncode == code, shown(result)
    last = cut / "checkpoints" / "last.ckpt"
    assert last.is_file(), shown(result)
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == step
    output = result.stdout + result.stderr
    assert "--ckpt_path last" in output, shown(result)
    assert "quickstart/cut/config.yaml --ckpt_path last" in output, shown(result)
    printed = RESUME_COMMAND.search(output)
    assert printed is not None, f"no `python -m lightning_hw fit --config ... --ckpt_path last` in:\n{shown(result)}"

    # The command exactly as printed, from the same directory.
    resumed = warm_start.run(
        shlex.split(printed.group(0)), cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=300
    )

    assert resumed.returncode == 0, shown(resumed)
    assert sorted(p.name for p in (root / "quickstart").iterdir()) == ["cut"], "the resume made another run"
    assert (cut / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()
    final = torch.load(last, weights_only=True, map_location="cpu")
    expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert final["global_step"] == expected["global_step"]
    assert final["state_dict"].keys() == expected["state_dict"].keys()
    assert all(torch.equal(final["state_dict"][k], expected["state_dict"][k]) for k in expected["state_dict"])
    # Only the best checkpoint the run ends with is left (none from before the interrupt).
    bests = sorted(p.name for p in (cut / "checkpoints").glob("best-*.ckpt"))
    named = _best_named_by(final)
    assert named is not None, f"last.ckpt names no best checkpoint: {list(final.get('callbacks') or {})}"
    assert bests == [named], f"best checkpoints on disk {bests}, last.ckpt names {named}"


def test_a_keyboard_interrupt_in_a_notebooks_fit_is_an_interrupt_that_resumes_to_the_same_metrics(whole, tmp_path):
    """A KeyboardInterrupt inside fit (Jupyter's interrupt, a callback's) reached Lightning, which exits 1: the
    run was recorded `failed` with `error: SystemExit: 1`, nothing was said, and no resume command was given."""
    root = tmp_path / "runs"
    cut = root / "quickstart" / "cut"
    stopping = tiny("fit", root, *INTERRUPTIBLE, "--run.name", "cut",
                    "--trainer.callbacks+=reliability_helpers.KeyboardInterruptAtStep", "--trainer.callbacks.step", "8")
    handler = signal.getsignal(signal.SIGINT)
    result = in_process(*stopping, cwd=tmp_path)

    assert result.returncode == 130, shown(result)
    resume = f"fit --config {cut / 'config.yaml'} --ckpt_path last"
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted by SIGINT at once: the newest checkpoint is {cut / 'checkpoints' / 'last.ckpt'} (written before the "
        f"interrupt); resume with: python -m lightning_hw {resume}"
    ), shown(result)
    status = json.loads((cut / "status.json").read_text())
    assert (status["status"], status["signal"], status["global_step"]) == ("interrupted", "SIGINT", 8)
    assert signal.getsignal(signal.SIGINT) == handler  # Lightning ignores SIGINT from then on: not in this process
    resumed = in_process(*resume.split(), "--trainer.callbacks.step", "0", cwd=tmp_path)
    assert resumed.returncode == 0, shown(resumed)
    assert (cut / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()


def test_a_command_gives_back_the_process_settings_it_changed(tmp_path, monkeypatch):
    """A notebook's second command ran with the first one's settings: after a fit with `deterministic: true`,
    `benchmark: true` and a lowered float32 matmul precision (configs/trainer/gpu.yaml's callback), the next fit
    ran deterministic kernels, cuDNN's autotuner and TF32/bf16 matmuls, as the same fit from a shell does not."""
    from lightning_hw.cli.process_settings import COMMAND_ENVIRONMENT, ProcessSettings

    for name in COMMAND_ENVIRONMENT:  # seed_everything's PL_GLOBAL_SEED, the run's directory...
        monkeypatch.delenv(name, raising=False)
    before = ProcessSettings.current()
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = False
    torch.set_float32_matmul_precision("highest")
    try:
        clean = ProcessSettings.current()
        result = in_process(*tiny(
            "fit", tmp_path / "runs", "--trainer.deterministic", "true", "--trainer.benchmark", "true",
            "--trainer.callbacks+=lightning_hw.callbacks.speed.Float32MatmulPrecision", "--trainer.callbacks.precision", "medium",
        ), cwd=tmp_path)
        assert result.returncode == 0, shown(result)
        assert ProcessSettings.current() == clean
    finally:
        before.restore()


def test_an_evaluation_gives_back_the_warning_filters_it_set(trained, tmp_path):
    """After `test` in a notebook, the filter that hides Lightning's `ckpt_path` advice for evaluations stayed
    for the rest of the process: a later `trainer.fit(ckpt_path=...)` of the user's own was never warned."""
    import warnings

    def ckpt_path_filters() -> list:
        return [f for f in warnings.filters if f[1] is not None and "ckpt_path" in f[1].pattern]

    root = copy_runs(trained, tmp_path)
    assert ckpt_path_filters() == []
    config = root / "quickstart" / RUN / "config.yaml"
    result = in_process("test", "--config", str(config), "--run.root", str(root), "--ckpt_path", "last", cwd=tmp_path)
    assert result.returncode == 0, shown(result)
    assert "Be aware that when using `ckpt_path`" not in result.stderr, shown(result)
    assert ckpt_path_filters() == []


def _test_rows(metrics: Path) -> list[dict[str, str]]:
    return [filled(r) for r in csv_rows(metrics) if any(k.startswith("test/") for k in filled(r))]


@pytest.mark.slow
def test_a_signal_once_the_test_after_fit_is_recorded_leaves_a_finished_run(tmp_path):
    """A SIGTERM that lands as the test after fit ends, once its row is in metrics.csv, is noted, not obeyed:
    the run said "interrupted by SIGTERM during the test after fit", exit 143, and advised testing it again,
    beside a complete test row. (Sent from a callback's on_test_end: no race.)"""
    root = tmp_path / "runs"
    run = root / "quickstart" / "t"
    result = in_process(*tiny(
        "fit", root, "--run.name", "t", "--trainer.limit_test_batches", "1",
        "--trainer.callbacks+=reliability_helpers.SignalInTest", "--trainer.callbacks.when", "end",
    ), cwd=tmp_path)

    assert result.returncode == 0, shown(result)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and "during" not in status and "signal" not in status, status
    assert "SIGTERM: the run is complete; closing its logs" in result.stderr, shown(result)
    assert "interrupted" not in result.stderr and "Test (best checkpoint" in result.stdout, shown(result)
    assert [sorted(r) for r in _test_rows(run / "metrics.csv")] == [["epoch", "step", "test/acc", "test/f1", "test/loss"]]


@pytest.mark.slow
def test_a_signal_during_the_test_after_fit_stops_it_and_says_so(tmp_path):
    """The other side of the line: a SIGTERM while the test still runs stops the command at once; no test row."""
    root = tmp_path / "runs"
    run = root / "quickstart" / "t"
    result = in_process(*tiny(
        "fit", root, "--run.name", "t",
        "--trainer.callbacks+=reliability_helpers.SignalInTest", "--trainer.callbacks.when", "batch",
    ), cwd=tmp_path)

    assert result.returncode == 143, shown(result)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["during"] == "the test after fit (training had finished)", status
    assert status["resume_command"] is None and status["test_command"].endswith(f"--ckpt_path <a checkpoint in {run / 'checkpoints'}>")
    assert "interrupted by SIGTERM during the test after fit" in result.stderr, shown(result)
    assert _test_rows(run / "metrics.csv") == []


@pytest.mark.slow
def test_a_signal_once_a_test_of_a_run_is_recorded_keeps_the_evaluation(trained, tmp_path):
    """``test`` on a run: a SIGTERM at its end removed the complete evaluation ("nothing was saved", exit 143)."""
    root = copy_runs(trained, tmp_path)
    run = root / "quickstart" / RUN
    result = in_process(*tiny(
        "test", root, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.limit_test_batches", "1",
        "--trainer.callbacks+=reliability_helpers.SignalInTest", "--trainer.callbacks.when", "end",
    ), cwd=tmp_path)

    assert result.returncode == 0, shown(result)
    [evaluation] = _eval_dirs(run, "test")
    assert len(_test_rows(evaluation / "metrics.csv")) == 1
    assert f"Evaluation saved in {evaluation}" in result.stdout, shown(result)


@pytest.mark.slow
def test_a_signal_once_a_validate_of_a_run_is_recorded_keeps_the_evaluation(trained, tmp_path):
    """``validate`` on a run: a SIGTERM at its end removed the complete evaluation, as ``test``'s did."""
    root = copy_runs(trained, tmp_path)
    run = root / "quickstart" / RUN
    result = in_process(*tiny(
        "validate", root, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
        "--trainer.callbacks+=reliability_helpers.SignalInTest", "--trainer.callbacks.when", "validate_end",
    ), cwd=tmp_path)

    assert result.returncode == 0, shown(result)
    [evaluation] = _eval_dirs(run, "validate")
    assert [r for r in csv_rows(evaluation / "metrics.csv") if filled(r).get("val/loss")], shown(result)
    assert f"Evaluation saved in {evaluation}" in result.stdout, shown(result)


def _in_finalizer(stage: str, direct: bool, *extra: str) -> tuple[str, ...]:
    """The options that add :class:`reliability_helpers.SignalInFinalizer` (a SIGTERM from a ``__del__``) to a command."""
    return ("--trainer.callbacks+=reliability_helpers.SignalInFinalizer", "--trainer.callbacks.stage", stage,
            "--trainer.callbacks.direct", str(direct).lower(), *extra)


def _unraisable(monkeypatch) -> list[str]:
    """What Python prints as "Exception ignored in ..." from now on in this test (pytest's own hook is replaced)."""
    printed: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: printed.append(f"{info.object}: {info.exc_value!r}"))
    return printed


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "in_finalizer"])
@pytest.mark.parametrize("command", ["test", "validate", "predict"])
def test_a_sigterm_whose_handler_runs_in_a_finalizer_stops_an_evaluation_as_any_other(trained, tmp_path, monkeypatch, command, direct):
    """Python runs a signal handler between two bytecodes, also inside a ``__del__`` (torch, matplotlib and
    Lightning run many). Its RunInterrupted was printed as "Exception ignored in ... Traceback" and the command
    went on: ``test`` exited 0 with its evaluation gone (Lightning's own SIGTERM flag then ended the test at
    its next batch with a SystemExit of code None), ``validate``/``predict`` finished and saved. Now the
    outcome is the signal's, wherever its handler ran: one line, exit 143, nothing saved."""
    root = copy_runs(trained, tmp_path)
    run = root / "quickstart" / RUN
    printed = _unraisable(monkeypatch)
    result = in_process(*tiny(command, root, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                              "--trainer.limit_predict_batches", "2", *_in_finalizer(command, direct)), cwd=tmp_path)

    assert result.returncode == 143, shown(result)
    assert "Traceback" not in result.stderr and printed == [], (printed, shown(result))
    assert result.stderr.strip().splitlines()[-1] == f"interrupted by SIGTERM during {command}; nothing was saved", shown(result)
    assert "saved in" not in result.stdout, shown(result)
    assert _eval_dirs(run, command) == []


def test_a_sigterm_in_a_finalizer_in_the_last_batch_of_a_test_stops_it(trained, tmp_path, monkeypatch):
    """The same in a test's last batch, where Lightning's SIGTERM flag stops nothing: the test was saved, exit 0."""
    root = copy_runs(trained, tmp_path)
    run = root / "quickstart" / RUN
    printed = _unraisable(monkeypatch)
    result = in_process(*tiny("test", root, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                              "--trainer.limit_test_batches", "1", *_in_finalizer("test", False)), cwd=tmp_path)

    assert result.returncode == 143, shown(result)
    assert result.stderr.strip().splitlines()[-1] == "interrupted by SIGTERM during test; nothing was saved", shown(result)
    assert printed == [] and _eval_dirs(run, "test") == [], (printed, shown(result))


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "in_finalizer"])
def test_a_second_sigterm_in_a_finalizer_stops_a_fit_at_once(tmp_path, monkeypatch, direct):
    """A second signal during training stops a fit at once; sent from a ``__del__``, its stop was swallowed and
    the fit stopped at the next step with a checkpoint of its own (and an "Exception ignored" traceback)."""
    root = tmp_path / "runs"
    run = root / "quickstart" / "twice"
    printed = _unraisable(monkeypatch)
    result = in_process(*tiny("fit", root, "--run.name", "twice", "--trainer.max_epochs", "3",
                              *_in_finalizer("fit", direct, "--trainer.callbacks.step", "4")), cwd=tmp_path)

    assert result.returncode == 143, shown(result)
    assert "Traceback" not in result.stderr and printed == [], (printed, shown(result))
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted by SIGTERM at once: the newest checkpoint is {run / 'checkpoints' / 'last.ckpt'} (written before the "
        f"interrupt); resume with: python -m lightning_hw fit --config {run / 'config.yaml'} --ckpt_path last"
    ), shown(result)
    status = json.loads((run / "status.json").read_text())
    assert (status["status"], status["signal"]) == ("interrupted", "SIGTERM"), status
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == 3  # the end of the first epoch: nothing written for the stop


def test_a_sigterm_in_a_finalizer_during_fits_set_up_stops_it_and_leaves_nothing(tmp_path, monkeypatch):
    """Before training a signal stops a fit at once; from a ``__del__`` in the set-up (here the task's ``setup``)
    its stop was swallowed and the run trained, was tested and saved: exit 0."""
    from reliability_helpers import _SignalsWhenDropped

    from lightning_hw.tasks.classification import Classifier

    setup = Classifier.setup

    def setup_dropping_a_signaller(self, stage: str) -> None:
        if stage == "fit":
            _SignalsWhenDropped(signal.SIGTERM)
        setup(self, stage)

    monkeypatch.setattr(Classifier, "setup", setup_dropping_a_signaller)
    root = tmp_path / "runs"
    printed = _unraisable(monkeypatch)
    result = in_process(*tiny("fit", root, "--run.name", "early"), cwd=tmp_path)

    assert result.returncode == 143, shown(result)
    assert result.stderr.strip().splitlines()[-1] == "interrupted by SIGTERM before training started; nothing was saved", shown(result)
    assert printed == [] and not (root / "quickstart" / "early").exists(), (printed, shown(result))


@pytest.mark.slow
def test_sigterm_from_outside_saves_last_checkpoint(tmp_path):
    root = tmp_path / "runs"
    run = root / "quickstart" / "long"
    output = tmp_path / "output.txt"

    def training() -> bool:
        metrics = run / "metrics.csv"
        return (run / "checkpoints" / "last.ckpt").is_file() or (metrics.is_file() and len(metrics.read_text().splitlines()) > 1)

    code = signal_when_training(
        [sys.executable, "-m", "lightning_hw", *tiny("fit", root, "--trainer.max_epochs", "1000", "--run.name", "long")],
        output, training, signal.SIGTERM, cwd=tmp_path, env=_env(),
    )
    assert code == 143, output.read_text()[-3000:]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["group", "job_step"])
def test_sigterm_to_every_process_of_a_ddp_run_interrupts_it(tmp_path, how):
    """Two DDP processes on the CPU, signalled together (``kill -TERM -<pgid>``, SLURM's job step).

    Rank 1 gets SIGTERM twice: directly and forwarded by rank 0. Taken as "stop at once", the
    second ended rank 1 before the next step and rank 0 failed in a collective call (3 times
    in 4 tries); rank 0 alone decides to stop at once.
    """
    root = tmp_path / "runs"
    run = root / "quickstart" / "ddp"
    output = tmp_path / "output.txt"
    metrics = run / "metrics.csv"
    env = {k: v for k, v in _env().items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "LIGHTNING_HW_RUN_DIR")}
    code = signal_when_training(
        [sys.executable, "-m", "lightning_hw", *tiny(
            "fit", root, "--trainer.max_epochs", "1000", "--run.name", "ddp",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        )],
        output, lambda: metrics.is_file() and len(metrics.read_text().splitlines()) > 2, signal.SIGTERM,
        cwd=tmp_path, env=env, group=how == "group", job_step=how == "job_step", wait=120,
    )
    text = output.read_text()
    assert code == 143, text[-3000:]
    assert TRACEBACK not in text, text[-3000:]
    assert text.count("SIGTERM: stopping after this step") == 1, text[-3000:]  # it was one line per process
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM", status
    assert (run / "checkpoints" / "last.ckpt").is_file()


def _rank_zero_waits_for_rank_one(rank_one_ready: Callable[[int], bool]) -> bool:
    """Whether rank 0 waits for rank 1 in the rendezvous while ``rank_one_ready(its pid)`` (a DDP run Lightning started).

    Rank 0 listens on ``MASTER_PORT`` from inside the TCPStore it creates, which returns only once
    rank 1 has connected: in C++, where no signal handler runs.
    """
    from reliability_helpers import descendants

    for pid in descendants(os.getpid()):
        try:
            environment = dict(
                item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
            )
            if environment.get(b"LOCAL_RANK") != b"1" or not rank_one_ready(pid):
                continue
            rank_zero = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]  # its parent
            port = f"{int(environment[b'MASTER_PORT']):04X}"
            sockets = Path(f"/proc/{rank_zero}/net/tcp").read_text() + Path(f"/proc/{rank_zero}/net/tcp6").read_text()
        except (OSError, KeyError, ValueError):  # it ended meanwhile, or is not rank 1
            continue
        # a row: sl local_address rem_address st ...; the state 0A is LISTEN
        return any(row.split()[1].endswith(f":{port}") and row.split()[3] == "0A" for row in sockets.splitlines()[1:])
    return False


def _importing_torch(pid: int) -> bool:
    """Rank 1 has torch mapped: past Python's start, in the imports that its CLI waits out before it acts on a signal."""
    return b"libtorch" in Path(f"/proc/{pid}/maps").read_bytes()


def _processes_in(folder: Path) -> list[int]:
    """The processes this test started, or that its commands started, running in ``folder`` (``/proc``, Linux)."""
    from reliability_helpers import descendants

    found = []
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cwd").resolve() == folder.resolve():
                found.append(pid)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/net/tcp").is_file(), reason="reads the processes' state in /proc (Linux)")
@pytest.mark.parametrize("signalled", ["group", "first process"])
def test_a_signal_while_a_ddp_run_waits_for_its_second_process_leaves_nothing(tmp_path, signalled):
    """SIGINT while rank 0 waits in the rendezvous for rank 1, which is starting: every process ends, one line, nothing left.

    ``group``, Ctrl-C: rank 1 stopped at once (exit 130); rank 0, waiting in C++, never ran its
    signal handler, and Lightning's observer of the processes, seeing rank 1's exit, SIGKILLed it:
    exit 137, and the run's directory was left with ``.lock`` (and W&B's files) in it, nothing to
    resume. ``first process`` (``kill -INT <pid>``): rank 0 stopped once rank 1 had connected, and
    rank 1, left waiting for it, failed with a traceback (``DistNetworkError: Broken pipe``).
    """
    root = tmp_path / "runs"
    output = tmp_path / "output.txt"
    env = {k: v for k, v in _env().items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "LIGHTNING_HW_RUN_DIR")}
    code = signal_when_training(
        [sys.executable, "-m", "lightning_hw", *tiny(
            "fit", root, "--run.name", "ddp",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        )],
        output, lambda: _rank_zero_waits_for_rank_one(_importing_torch), signal.SIGINT,
        cwd=tmp_path, env=env, group=signalled == "group",
    )
    deadline = time.monotonic() + 30
    while _processes_in(tmp_path) and time.monotonic() < deadline:  # rank 1 outlived rank 0
        time.sleep(0.1)
    assert not _processes_in(tmp_path), output.read_text()[-3000:]
    text = output.read_text()
    assert code == 130, text[-3000:]
    assert [line for line in text.splitlines() if "interrupted" in line] == [
        "interrupted by SIGINT before training started; nothing was saved"
    ], text[-3000:]
    assert "Forcefully terminating" not in text and TRACEBACK not in text, text[-3000:]
    assert not root.exists() or sorted(root.rglob("*")) == [], sorted(root.rglob("*"))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/net/tcp").is_file(), reason="reads the processes' state in /proc (Linux)")
def test_ctrl_c_while_the_second_ddp_process_is_still_starting_python_leaves_nothing(tmp_path):
    """Ctrl-C while rank 1 is still in Python's own start (``site``), before any of lightning-hw runs.

    Python then ends rank 1 with code 1 (its "Fatal Python error" and the KeyboardInterrupt), not
    130: rank 0, waiting for it in the rendezvous, was SIGKILLed by Lightning's observer (exit 137)
    and its run's directory left behind. Rank 0 knows the signal reached it too, though its handler
    has not run. Here a ``sitecustomize`` holds rank 1 in ``site`` until the signal comes.
    """
    held = tmp_path / "site"
    held.mkdir()
    marker = tmp_path / "rank1-in-site"
    (held / "sitecustomize.py").write_text(
        "import os, time\n"
        "if os.environ.get('LOCAL_RANK') == '1':\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    time.sleep(60)\n"
    )
    root = tmp_path / "runs"
    output = tmp_path / "output.txt"
    env = {k: v for k, v in _env().items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "LIGHTNING_HW_RUN_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(held), env["PYTHONPATH"]])
    code = signal_when_training(
        [sys.executable, "-m", "lightning_hw", *tiny(
            "fit", root, "--run.name", "ddp",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        )],
        output, lambda: _rank_zero_waits_for_rank_one(lambda pid: marker.exists()), signal.SIGINT,
        cwd=tmp_path, env=env, group=True,
    )
    text = output.read_text()
    assert code == 130, text[-3000:]
    assert "Fatal Python error" in text  # rank 1 was stopped where it was held
    assert [line for line in text.splitlines() if line.startswith("interrupted")] == [
        "interrupted by SIGINT before training started; nothing was saved"
    ], text[-3000:]
    assert not root.exists() or sorted(root.rglob("*")) == [], sorted(root.rglob("*"))


# -- 7. studies --------------------------------------------------------------------------------


def _write_points(path: Path, rows: int = 200) -> None:
    """A separable two-class points CSV for ``reliability_helpers.CSVPoints``."""
    lines = ["x1,x2,label"]
    for i in range(rows):
        x1, x2 = (i * 37 % 101) / 101, (i * 59 % 103) / 103
        lines.append(f"{x1:.4f},{x2:.4f},{int(x1 > x2)}")
    path.write_text("\n".join(lines) + "\n")


def write_tiny_study(path: Path, epochs: int, variants: dict) -> Path:
    """A grid study file (named after ``path``) of quickstart runs of 3 training batches, quiet, W&B disabled."""
    path.write_text(yaml.safe_dump({
        "name": path.stem,
        "config": str(QUICKSTART),
        "args": {
            "trainer.max_epochs": epochs, "trainer.limit_train_batches": 3, "trainer.limit_val_batches": 2,
            "trainer.limit_test_batches": 2, "trainer.enable_progress_bar": False,
            "trainer.enable_model_summary": False, "run.wandb": "disabled",
        },
        "variants": variants,
    }, sort_keys=False))
    return path


@pytest.mark.slow
def test_study_marks_only_variants_that_finished(tmp_path, monkeypatch):
    # The study runs in this process (its exit code and files are under test); its fits, in their own,
    # load reliability_helpers.
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    root = tmp_path / "runs"
    interrupt = tmp_path / "interrupt.yaml"
    interrupt.write_text(yaml.safe_dump({
        "trainer": {"callbacks": [{"class_path": "reliability_helpers.SignalAtStep", "init_args": {"step": 4}}]},
    }))
    points = tmp_path / "points.csv"  # created only before the second round
    study = write_tiny_study(tmp_path / "lc.yaml", 2, {
        "plain": None,
        "cut": {"config": str(interrupt)},  # SIGTERM after step 4 (epoch 1 of 2)
        "nodata": {"data": "reliability_helpers.CSVPoints", "data.init_args.path": str(points)},
    })
    runs = root / "lc"

    first = in_process("study", str(study), "--root", str(root), "--jobs", "2", cwd=tmp_path)

    assert first.returncode != 0, shown(first)
    assert (runs / "plain" / "study-finished.json").is_file(), shown(first)
    assert not (runs / "cut" / "study-finished.json").exists(), "an interrupted variant was marked finished"
    assert (runs / "cut" / "checkpoints" / "last.ckpt").is_file(), "the interrupted variant kept no last.ckpt"
    assert not (runs / "nodata" / "study-finished.json").exists(), "a variant without data was marked finished"

    _write_points(points)
    second = in_process("study", str(study), "--root", str(root), "--only", "nodata", cwd=tmp_path)

    assert second.returncode == 0, shown(second) + "\n--- study.log:\n" + _study_log(runs / "nodata")
    assert (runs / "nodata" / "study-finished.json").is_file()
    assert (runs / "nodata" / "checkpoints" / "last.ckpt").is_file()
    assert training_rows(csv_rows(runs / "nodata" / "metrics.csv"))


def _study_log(run: Path) -> str:
    log = run / "study.log"
    return log.read_text()[-3000:] if log.is_file() else "(none)"


@pytest.mark.slow
def test_grid_run_killed_before_its_first_checkpoint_is_kept_and_the_study_says_how_to_rerun_it(tmp_path, monkeypatch):
    """SIGKILL in a grid run's first epoch leaves a record without last.ckpt: a rerun of the study must
    not claim to retry it (fit refuses the name) nor touch it; moving it aside runs it again."""
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])  # the study's fit processes load reliability_helpers
    root = tmp_path / "runs"
    kill = tmp_path / "kill.yaml"

    def kill_at(step: int) -> None:  # step 0: no kill
        kill.write_text(yaml.safe_dump({"trainer": {"callbacks": [
            {"class_path": "reliability_helpers.KillAtStep", "init_args": {"step": step}},
        ]}}))

    kill_at(2)  # mid-way through the first of 3 training batches: committed, no checkpoint yet
    study = write_tiny_study(tmp_path / "dead.yaml", 1, {"a": {"config": str(kill)}})
    run = root / "dead" / "a"
    advice = f"move it aside (mv {run} {run}.died)"

    first = in_process("study", str(study), "--root", str(root), cwd=tmp_path)
    assert first.returncode == 1, shown(first)
    assert (run / "config.yaml").is_file() and not (run / "checkpoints" / "last.ckpt").exists(), shown(first)
    assert "stopped before its first checkpoint" in first.stderr and advice in first.stderr, shown(first)
    assert "re-run to retry" not in first.stderr, shown(first)
    record = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    again = in_process("study", str(study), "--root", str(root), cwd=tmp_path)
    assert again.returncode == 1, shown(again)
    assert "0 to start, 1 stopped before a checkpoint" in again.stdout, shown(again)
    assert advice in again.stderr and "not started again: a" in again.stderr, shown(again)
    dry = in_process("study", str(study), "--root", str(root), "--dry-run", cwd=tmp_path)
    assert "0 to start, 1 stopped before a checkpoint" in dry.stdout and re.search(r"^  a +stopped ", dry.stdout, re.M), shown(dry)
    fit = in_process("fit", "--config", str(QUICKSTART), "--run.root", str(root), "--run.group", "dead", "--run.name", "a", cwd=tmp_path)
    assert fit.returncode == 2, shown(fit)
    assert "stopped before its first checkpoint (nothing to continue)" in fit.stderr and "--ckpt_path last" not in fit.stderr, shown(fit)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == record  # nothing started, nothing rewritten

    kill_at(0)
    run.rename(run.with_name("a.died"))
    third = in_process("study", str(study), "--root", str(root), cwd=tmp_path)
    assert third.returncode == 0, shown(third)
    assert (run / "study-finished.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert (run.with_name("a.died") / "config.yaml").read_bytes() == record[run / "config.yaml"]
    from lightning_hw.studies.grid import move_aside_advice

    assert f"(mv {run} {run}.died-1)" in move_aside_advice(run)  # never into an earlier one


def test_a_run_that_fails_before_its_first_checkpoint_offers_no_resume_command(tmp_path):
    """A crash after the commit but before last.ckpt: status.json must not keep a command fit would refuse."""
    crash = tmp_path / "crash.yaml"
    crash.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "reliability_helpers.RaiseAtStep", "init_args": {"step": 1}},
    ]}}))
    done = in_process(*tiny("fit", tmp_path / "runs", "--config", str(crash), "--run.name", "crash"), cwd=tmp_path)
    run = tmp_path / "runs" / "quickstart" / "crash"
    assert done.returncode == 1 and (run / "config.yaml").is_file(), shown(done)
    assert not (run / "checkpoints" / "last.ckpt").exists()
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and status["resume_command"] is None and "cannot be resumed" in status["note"], status


def test_a_resumed_run_that_finishes_keeps_the_earlier_failure_apart(tmp_path):
    """status.json of a run that failed, then resumed and finished: 'finished' with no error beside
    it; the failure (its error line) is kept under earlier_attempts."""
    crash = tmp_path / "crash.yaml"
    crash.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "reliability_helpers.RaiseAtStep", "init_args": {"step": 4}},
    ]}}))
    args = tiny("fit", tmp_path / "runs", "--run.name", "r", "--trainer.max_epochs", "2", "--run.checkpoint_interval", "0")
    failed = in_process(*args, "--config", str(crash), cwd=tmp_path)
    assert failed.returncode == 1, shown(failed)
    run = tmp_path / "runs" / "quickstart" / "r"
    before = json.loads((run / "status.json").read_text())
    assert before["status"] == "failed" and before.get("error"), before

    resumed = in_process(*args, "--ckpt_path", "last", cwd=tmp_path)
    assert resumed.returncode == 0, shown(resumed)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and "error" not in status, status
    assert status["started"] == before["started"] and status["resumed"]
    (earlier,) = status["earlier_attempts"]
    assert earlier["status"] == "failed" and earlier["error"] == before["error"] and earlier["ended"] == before["ended"]


def test_study_does_not_promise_to_resume_a_run_stopped_before_its_first_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C twice in a grid run's first epoch stops it at once, with a record and no last.ckpt: the study
    must say how to run it again (move it aside), not that running the study again resumes it."""
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])  # the study runs here; its fit loads reliability_helpers
    root = tmp_path / "runs"
    twice = tmp_path / "twice.yaml"
    twice.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "reliability_helpers.SignalAtStep", "init_args": {"step": 2, "signum": 2, "times": 2}},
    ]}}))
    study = write_tiny_study(tmp_path / "tw.yaml", 2, {"a": {"config": str(twice)}})
    run = root / "tw" / "a"

    first = in_process("study", str(study), "--root", str(root), cwd=tmp_path)

    assert first.returncode == 130, shown(first)
    assert (run / "status.json").is_file() and not (run / "checkpoints" / "last.ckpt").exists(), shown(first)
    said = [line for line in first.stdout.splitlines() if line.startswith(("[1/1] a:", "Study"))]
    assert said[2:] == [  # after the header and "[1/1] a: starting"
        f"[1/1] a: interrupted (SIGINT); {run} stopped before its first checkpoint (nothing to resume); "
        f"to run it again, move it aside (mv {run} {run}.died) and run the study again",
        "Study interrupted; run the same command again to continue it.",
    ], shown(first)
