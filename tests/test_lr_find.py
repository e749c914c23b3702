"""``lr-find``: Lightning's lr range test on a config's own optimizer, its files, and ``--write``.

The CLI runs in this process (``main([...])``, as a user's command line); one sweep of the
quickstart (30 steps, seconds) is shared by the tests that read its files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import signal
from pathlib import Path

import pytest
import torch
import yaml

from lightning_hw.cli import main
from lightning_hw.tuning import lr_find
from lightning_hw.cli import warm_start

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: two threads thrash on 2 shared cores


def run(*args: str) -> tuple[int, str, str]:
    """``python -m lightning_hw <args>`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as stop:
            code = stop.code or 0
    return code, out.getvalue(), err.getvalue()


def quiet(runs: Path) -> list[str]:
    """Where runs go, W&B off, no progress bars."""
    return ["--run.root", str(runs), "--run.wandb", "disabled", "--trainer.enable_progress_bar", "false"]


def error_line(err: str) -> str:
    """The one ``error:`` line of stderr (the finder's progress bar and Lightning's seed line aside)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def lr_find_dirs(runs: Path, group: str = "quickstart") -> list[Path]:
    return sorted((runs / group).glob("lr-find-*")) if (runs / group).is_dir() else []


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One lr-find of the quickstart with --write: (runs root, lr-find directory, written config, stdout)."""
    base = tmp_path_factory.mktemp("lr_find")
    runs, written = base / "runs", base / "quickstart_lr.yaml"
    code, out, err = run(
        "lr-find", "--config", str(QUICKSTART), "--num_training", "30", "--write", str(written), *quiet(runs)
    )
    assert code == 0, err[-3000:]
    (directory,) = lr_find_dirs(runs)
    return runs, directory, written, out


def points(directory: Path) -> list[tuple[float, float]]:
    with (directory / lr_find.POINTS_FILE).open(newline="") as file:
        return [(float(row["lr"]), float(row["loss"])) for row in csv.DictReader(file)]


def summary(directory: Path) -> dict:
    return json.loads((directory / lr_find.SUMMARY_FILE).read_text())


def test_the_suggestion_is_a_point_of_the_sweep_on_the_configs_own_optimizer(swept):
    runs, directory, _, out = swept
    sweep = points(directory)
    lrs = [lr for lr, _ in sweep]
    assert len(sweep) == 30 and lrs == sorted(lrs)
    assert lrs[0] == pytest.approx(1e-8) and lrs[-1] == pytest.approx(1.0)
    found = summary(directory)
    suggested = found["suggested_lr"]
    assert min(lrs) <= suggested <= max(lrs) and suggested in lrs
    # Not among the points the suggestion skips (the first 10, the last one).
    assert lr_find.SKIP_BEGIN < lrs.index(suggested) < len(lrs) - lr_find.SKIP_END
    assert found["suggested_step"] == lrs.index(suggested) + 1
    # The quickstart's optimizer: SGD (momentum 0.9) from its optimizer: section, lr at optimizer.init_args.lr.
    assert found["optimizer"] == "SGD" and found["lr_keys"] == ["optimizer.init_args.lr"]
    assert found["config_lr"] == 0.1
    assert (found["min_lr"], found["max_lr"], found["num_training"], found["mode"]) == (1e-8, 1.0, 30, "exponential")
    assert found["lightning_suggestion"] in lrs
    lines = out.splitlines()
    assert lines[0].startswith(f"Suggested lr: {suggested:.4g} (")
    assert any(line.startswith(f"lr-find saved in {directory}") for line in lines)


def test_the_plot_is_a_png_beside_the_points_and_the_resolved_config(swept):
    runs, directory, _, _ = swept
    assert (directory / lr_find.PLOT_FILE).read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [lr_find.PLOT_FILE, lr_find.POINTS_FILE, lr_find.SUMMARY_FILE, lr_find.CONFIG_FILE]
    )  # the finder's temporary checkpoint is gone
    resolved = yaml.safe_load((directory / lr_find.CONFIG_FILE).read_text())
    assert resolved["optimizer"]["init_args"]["lr"] == 0.1  # what was swept: the config as it was
    # Its own directory in the group, never a training run's: nothing else under runs/.
    assert [p.name for p in (runs / "quickstart").iterdir()] == [directory.name]
    assert directory.name.startswith("lr-find-")


def test_the_written_config_is_the_resolved_config_with_the_suggested_lr_and_nothing_else(swept):
    _, directory, written, _ = swept
    suggested = summary(directory)["suggested_lr"]
    text = written.read_text()
    assert text.startswith("# ") and str(directory) in text.splitlines()[1]
    config = yaml.safe_load(text)
    assert config["optimizer"]["init_args"]["lr"] == suggested
    resolved = yaml.safe_load((directory / lr_find.CONFIG_FILE).read_text())
    resolved["optimizer"]["init_args"]["lr"] = suggested
    resolved["run"]["group"] = "quickstart"  # named: the file's own name would otherwise become the group
    assert config == resolved


@pytest.mark.slow
def test_fit_trains_with_the_written_lr(swept):
    runs, directory, written, _ = swept
    suggested = summary(directory)["suggested_lr"]
    code, out, err = run(
        "fit", "--config", str(written), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2", "--run.name", "from-lr-find", *quiet(runs),
    )
    assert code == 0, err[-3000:]
    run_dir = runs / "quickstart" / "from-lr-find"  # the same group as the quickstart's own runs
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["optimizer"]["init_args"]["lr"] == suggested
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    (group,) = checkpoint["optimizer_states"][0]["param_groups"]
    assert group["lr"] == pytest.approx(suggested) and group["momentum"] == 0.9  # the lr that trained
    # The lr-find directory is untouched by the fit.
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [lr_find.PLOT_FILE, lr_find.POINTS_FILE, lr_find.SUMMARY_FILE, lr_find.CONFIG_FILE]
    )


def test_an_existing_write_target_is_refused_and_left_unchanged(tmp_path):
    target = tmp_path / "mine.yaml"
    target.write_text("# my config\n")
    code, out, err = run("lr-find", "--config", str(QUICKSTART), "--write", str(target), *quiet(tmp_path / "runs"))
    assert code == 2 and out == ""
    assert error_line(err) == (
        f"error: lr-find: {target} exists and is left unchanged; give another --write, or add --overwrite to replace it"
    )
    assert target.read_text() == "# my config\n"
    assert not (tmp_path / "runs").exists()  # refused before anything ran


@pytest.mark.parametrize("target", ["config.yaml", "checkpoints/lr.yaml"])
def test_write_into_a_runs_directory_is_refused_even_with_overwrite(tmp_path, monkeypatch, target):
    # A run's files are its record: --write --overwrite runs/<group>/<run>/config.yaml replaced the
    # config the run trained with, and a new file there would pass for one of the run's.
    run_dir = tmp_path / "runs" / "quickstart" / "r"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("# the run's config\n")
    (run_dir / "metrics.csv").write_text("epoch\n0\n")
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run("lr-find", "--config", str(QUICKSTART), "--write", f"runs/quickstart/r/{target}", "--overwrite")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: lr-find: --write runs/quickstart/r/{target} is inside runs/quickstart/r, a run whose files no other "
        f"command changes; write the config elsewhere (e.g. --write {Path(target).name})"
    ]
    assert (run_dir / "config.yaml").read_text() == "# the run's config\n"
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    assert [p.name for p in (tmp_path / "runs" / "quickstart").iterdir()] == ["r"]  # no sweep ran


@pytest.mark.parametrize("target", ["configs/lr.yaml", "config.yaml"])
def test_write_beside_a_projects_own_config_is_not_taken_for_a_run(tmp_path, monkeypatch, target):
    # A folder with a config.yaml (or a metrics.csv) of its own is no run: --write below it, or
    # --overwrite of that config.yaml, was refused as "inside ., a run".
    from lightning_hw.tuning.lr_find_command import check_write_target

    (tmp_path / "configs").mkdir()
    (tmp_path / "config.yaml").write_text("a: 1\n")
    (tmp_path / "configs" / "metrics.csv").write_text("")
    monkeypatch.chdir(tmp_path)
    check_write_target(Path(target), overwrite=True)  # no ConfigError


def test_overwrite_replaces_an_existing_write_target(tmp_path):
    target = tmp_path / "mine.yaml"
    target.write_text("# my config\n")
    code, _, err = run(
        "lr-find", "--config", str(QUICKSTART), "--num_training", "15", "--write", str(target), "--overwrite",
        *quiet(tmp_path / "runs"),
    )
    assert code == 0, err[-3000:]
    (directory,) = lr_find_dirs(tmp_path / "runs")
    assert yaml.safe_load(target.read_text())["optimizer"]["init_args"]["lr"] == summary(directory)["suggested_lr"]


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        (["--num_trainig", "30"], "error: unknown option --num_trainig; did you mean --num_training?"),
        (["--trainer.max_epochz", "3"], "error: unknown option --trainer.max_epochz; did you mean --trainer.max_epochs"),
        (["--mode", "cubic"], "error: lr-find: argument --mode: invalid choice: 'cubic'"),
        (["--num_training", "5"], "error: lr-find: --num_training must be at least 13"),
        (["--min_lr", "1", "--max_lr", "0.1"], "error: lr-find: --min_lr (1.0) must be below --max_lr (0.1)"),
    ],
)
def test_a_bad_option_is_one_line(typo, expected, tmp_path):
    code, out, err = run("lr-find", "--config", str(QUICKSTART), *typo, *quiet(tmp_path / "runs"))
    assert code == 2 and out == ""
    assert error_line(err).startswith(expected)
    assert not (tmp_path / "runs").exists()


def test_without_an_optimizer_section_the_tasks_lr_is_swept_and_written(tmp_path):
    written = tmp_path / "adam.yaml"
    code, out, err = run(
        "lr-find", "--config", str(QUICKSTART), "--optimizer", "null", "--num_training", "15", "--write", str(written),
        *quiet(tmp_path / "runs"),
    )
    assert code == 0, err[-3000:]
    (directory,) = lr_find_dirs(tmp_path / "runs")
    found = summary(directory)
    assert found["optimizer"] == "Adam" and found["lr_keys"] == ["model.init_args.lr"] and found["config_lr"] is None
    config = yaml.safe_load(written.read_text())
    assert config["model"]["init_args"]["lr"] == found["suggested_lr"] and config.get("optimizer") is None
    assert "the task's default" in out.splitlines()[0]


def test_the_tasks_lr_given_with_an_optimizer_is_written_to_both(tmp_path):
    written = tmp_path / "both.yaml"
    code, _, err = run(
        "lr-find", "--config", str(QUICKSTART), "--model.init_args.lr", "0.05", "--num_training", "15",
        "--write", str(written), *quiet(tmp_path / "runs"),
    )
    assert code == 0, err[-3000:]
    (directory,) = lr_find_dirs(tmp_path / "runs")
    found = summary(directory)
    assert found["lr_keys"] == ["optimizer.init_args.lr", "model.init_args.lr"] and found["config_lr"] == 0.05
    config = yaml.safe_load(written.read_text())
    assert config["optimizer"]["init_args"]["lr"] == config["model"]["init_args"]["lr"] == found["suggested_lr"]


def test_a_scheduler_that_sets_the_lr_itself_is_refused(tmp_path):
    code, _, err = run(
        "lr-find", "--config", str(QUICKSTART), "--lr_scheduler", "OneCycleLR", "--lr_scheduler.max_lr", "0.5",
        "--lr_scheduler.total_steps", "100", *quiet(tmp_path / "runs"),
    )
    assert code == 2
    line = error_line(err)
    assert "OneCycleLR sets the lr itself" in line and "--lr_scheduler null" in line
    assert not (tmp_path / "runs").exists()


def test_another_scheduler_is_replaced_for_the_sweep_with_a_note(tmp_path):
    code, out, err = run(
        "lr-find", "--config", str(QUICKSTART), "--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "5",
        "--num_training", "15", *quiet(tmp_path / "runs"),
    )
    assert code == 0, err[-3000:]
    assert out.splitlines()[0].startswith("note: the sweep runs without the lr_scheduler StepLR")


def test_a_loss_that_is_never_finite_gives_one_line_and_keeps_the_points(tmp_path):
    code, out, err = run(
        "lr-find", "--config", str(QUICKSTART), "--min_lr", "1e4", "--max_lr", "1e8", "--early_stop_threshold", "none",
        "--num_training", "15", "--write", str(tmp_path / "never.yaml"), *quiet(tmp_path / "runs"),
    )
    assert code == 1
    line = error_line(err)
    assert "no suggestion: the loss was not finite" in line and "lower --max_lr" in line
    (directory,) = lr_find_dirs(tmp_path / "runs")
    assert str(directory / lr_find.POINTS_FILE) in line and len(points(directory)) == 15
    assert summary(directory)["suggested_lr"] is None
    assert not (tmp_path / "never.yaml").exists()


def test_a_sweep_that_diverges_at_once_gives_one_line(tmp_path):
    code, _, err = run(
        "lr-find", "--config", str(QUICKSTART), "--min_lr", "10", "--max_lr", "1e5", "--num_training", "30",
        *quiet(tmp_path / "runs"),
    )
    assert code == 1
    line = error_line(err)
    assert "no suggestion: the loss diverged after" in line and "--early_stop_threshold" in line
    (directory,) = lr_find_dirs(tmp_path / "runs")
    assert summary(directory)["stopped_early"] is True


def test_fast_dev_run_and_ckpt_path_are_refused(tmp_path):
    code, _, err = run("lr-find", "--config", str(QUICKSTART), "--trainer.fast_dev_run", "true", *quiet(tmp_path / "runs"))
    assert code == 2 and "fast_dev_run would skip the sweep" in error_line(err)
    code, _, err = run("lr-find", "--config", str(QUICKSTART), "--ckpt_path", "last", *quiet(tmp_path / "runs"))
    assert code == 2 and error_line(err) == "error: lr-find: the sweep starts from the config's fresh weights; drop --ckpt_path"
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_during_the_sweep_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from lightning_hw.runs import RunInterrupted

    def interrupted(self):
        assert lr_find_dirs(tmp_path / "runs")  # the directory exists while sweeping
        raise RunInterrupted(signal.SIGINT, at_once=True)

    monkeypatch.setattr(lr_find.LRFindCLI, "sweep", interrupted)
    code, _, err = run("lr-find", "--config", str(QUICKSTART), *quiet(tmp_path / "runs"))
    assert code == 130
    assert err.strip().splitlines()[-1] == "interrupted by SIGINT during lr-find; nothing was saved"
    assert not (tmp_path / "runs").exists()


def test_steepest_fall_takes_the_slope_against_log_lr_in_an_exponential_sweep():
    # Flat, then falling by 0.1 per step from lr 1e-2 on: the per-step fall is steepest where it falls,
    # while a slope against lr itself would be largest where the steps are tiny (noise at 1e-7).
    lrs = [10 ** (-8 + 8 * i / 39) for i in range(40)]
    losses = [2.3 - (1e-4 if i == 12 else 0.0) for i in range(40)]
    for i in range(30, 40):
        losses[i] = 2.3 - 0.1 * (i - 29)
    index = lr_find.steepest_fall(lrs, losses, log_lr=True)
    assert 30 <= index < 39
    assert lr_find.steepest_fall(lrs, losses, log_lr=False) < 20  # Lightning 2.6's way: the dip among tiny lrs
    assert lr_find.steepest_fall(lrs[:12], losses[:12], log_lr=True) is None  # too few points after the skips


@pytest.mark.slow
def test_a_fine_tuning_config_sweeps_its_head_with_the_backbone_frozen_in_eval_mode(tmp_path, monkeypatch):
    """configs/transfer_demo.yaml (finetune:): the sweep trains what fit's first epochs train.

    The finder sweeps without the trainer's callbacks, but FreezeBackbone freezes the backbone in
    its set-up, which runs before; Lightning keeps the modes the modules were left in. The sweep
    trains on cached features (see the next test): a cache folder of its own has none yet, so the
    backbone computes them in the sweep, and the hook sees it do so.
    """
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(tmp_path / "cache"))
    from torch import nn

    from lightning_hw.callbacks.finetuning import backbone_of

    seen = []
    original = lr_find.LRFindCLI.sweep

    def sweep(self):
        bn = next(m for m in backbone_of(self.model).modules() if isinstance(m, nn.BatchNorm2d))
        handle = bn.register_forward_pre_hook(lambda module, args: seen.append((module.training, module.weight.requires_grad)))
        try:
            return original(self)
        finally:
            handle.remove()

    monkeypatch.setattr(lr_find.LRFindCLI, "sweep", sweep)
    code, out, err = run(
        "lr-find", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--num_training", "15",
        *quiet(tmp_path / "runs"),
    )
    assert code == 0, err[-3000:]
    assert seen and set(seen) == {(False, False)}  # batch norm on its stored statistics, no gradient
    (directory,) = lr_find_dirs(tmp_path / "runs", "transfer_demo")
    assert summary(directory)["optimizer"] == "Adam" and summary(directory)["config_lr"] == 0.003


@pytest.mark.parametrize("train_bn", [False, True])
def test_the_sweeps_frozen_schedule_keeps_what_the_frozen_phase_trains(train_bn):
    """The sweep follows a fine-tuning schedule frozen throughout: with its ``train_bn``, which decides what trains then."""
    from lightning_hw.callbacks.finetuning import FreezeBackbone

    swept = lr_find.frozen_for_the_sweep(FreezeBackbone(unfreeze_at_epoch=8, last_blocks=2, lr=1e-4, train_bn=train_bn))
    assert (swept.unfreeze_at_epoch, swept.last_blocks, swept.train_bn) == (None, None, train_bn)


def test_where_the_lr_lives():
    from jsonargparse import Namespace

    def config(model_args: dict, optimizer: dict | None = None) -> Namespace:
        model = Namespace(class_path="my_plugin.PlainTask", init_args=Namespace(**model_args))
        return Namespace(model=model, optimizer=Namespace(class_path="torch.optim.SGD", init_args=Namespace(**optimizer)) if optimizer else None)

    assert lr_find.lr_keys(config({"lr": None}, {"lr": 0.1})) == ["optimizer.init_args.lr"]
    assert lr_find.lr_keys(config({"lr": 0.2}, {"lr": 0.2})) == ["optimizer.init_args.lr", "model.init_args.lr"]
    assert lr_find.lr_keys(config({"lr": None})) == ["model.init_args.lr"]
    assert lr_find.lr_keys(config({"learning_rate": 0.01})) == ["model.init_args.learning_rate"]
    with pytest.raises(lr_find.ConfigError, match="there is no lr to sweep: PlainTask takes no lr .* add one"):
        lr_find.lr_keys(config({"hidden": 32}))
    with pytest.raises(lr_find.ConfigError, match="the optimizer SGD takes no lr"):
        lr_find.lr_keys(config({"hidden": 32}, {"momentum": 0.9}))


def test_a_runs_recorded_config_is_written_as_a_new_run_that_fit_accepts(tmp_path):
    """lr-find on runs/<group>/<run>/config.yaml: the written file must not name that run, or the
    'train with: fit --config FILE' it prints is refused (the name is taken)."""
    runs = tmp_path / "runs"
    tiny = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
            "--run.test_after_fit", "false", *quiet(runs))
    code, _, err = run("fit", "--config", str(QUICKSTART), "--run.name", "r", "--run.notes", "the first run", *tiny)
    assert code == 0, err[-3000:]
    recorded, written = runs / "quickstart" / "r" / "config.yaml", tmp_path / "lr.yaml"
    before = recorded.read_bytes()
    code, out, err = run("lr-find", "--config", str(recorded), "--num_training", "20", "--write", str(written), *quiet(runs))
    assert code == 0, err[-3000:]
    assert recorded.read_bytes() == before
    config = yaml.safe_load(written.read_text())
    assert config["run"]["name"] is None and config["run"]["notes"] is None and config["run"]["group"] == "quickstart"
    assert f"train with: python -m lightning_hw fit --config {written}" in out
    code, _, err = run("fit", "--config", str(written), *tiny)
    assert code == 0, err[-3000:]
    assert len([p for p in (runs / "quickstart").iterdir() if not p.name.startswith("lr-find-")]) == 2  # r and the new run


@pytest.mark.parametrize("where", ["run.root", "cwd"])
def test_a_sweep_is_never_saved_inside_a_run(tmp_path, monkeypatch, where):
    # --run.root naming a run (or the default `runs` from inside one) put the sweep among the run's files,
    # as runs/quickstart/r/quickstart/lr-find-<time>/.
    run_dir = tmp_path / "runs" / "quickstart" / "r"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("# the run's config\n")
    (run_dir / "metrics.csv").write_text("epoch\n0\n")
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    if where == "cwd":
        monkeypatch.chdir(run_dir)
        args = ["--run.wandb", "disabled", "--trainer.enable_progress_bar", "false"]
        parent, record = "runs/quickstart", "."
    else:
        monkeypatch.chdir(tmp_path)
        args = quiet(Path("runs/quickstart/r"))
        parent, record = "runs/quickstart/r/quickstart", "runs/quickstart/r"
    code, out, err = run("lr-find", "--config", str(QUICKSTART), "--num_training", "13", *args)
    assert code == 2 and error_line(err) == (
        f"error: lr-find: the sweep would be saved in {parent}, inside {record}, a run whose files no other command "
        "changes; give a --run.root outside it (the runs folder itself), or run from the project's folder"
    )
    assert "Traceback" not in err and "lr-find saved" not in out
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


@pytest.mark.parametrize("shown", [True, False])
def test_the_finders_progress_bar_follows_enable_progress_bar(tmp_path, shown):
    options = ["--run.root", str(tmp_path / "runs"), "--run.wandb", "disabled"]
    if not shown:
        options += ["--trainer.enable_progress_bar", "false"]
    code, out, err = run("lr-find", "--config", str(QUICKSTART), "--num_training", "13", *options)
    assert code == 0, err[-3000:]
    assert ("Finding best initial lr" in err) == shown


@pytest.mark.parametrize("stage", ["fit", "fit_last", "test"])
def test_a_run_named_as_a_sweep_is_refused_and_the_sweep_left_as_it_is(tmp_path, stage):
    """``--run.name lr-find-<time>`` (a sweep's folder) put a run's checkpoints, metrics.csv and
    status.json (or an evaluation's eval/) among the sweep's files; lr-find --write copied such a name."""
    runs = tmp_path / "runs"
    code, _, err = run("lr-find", "--config", str(QUICKSTART), "--num_training", "13", *quiet(runs))
    assert code == 0, err[-3000:]
    (sweep,) = lr_find_dirs(runs)
    before = {p.relative_to(sweep): p.read_bytes() for p in sweep.rglob("*")}
    tiny = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    if stage == "test":
        code, _, err = run("fit", "--config", str(QUICKSTART), "--run.name", "r", "--run.test_after_fit", "false",
                           *tiny, *quiet(runs))
        assert code == 0, err[-3000:]
        ckpt = runs / "quickstart" / "r" / "checkpoints" / "last.ckpt"
        args = ["test", "--config", str(QUICKSTART), "--ckpt_path", str(ckpt)]
    else:
        args = ["fit", "--config", str(QUICKSTART), *tiny, *(["--ckpt_path", "last"] if stage == "fit_last" else [])]
    code, out, err = run(*args, "--run.name", sweep.name, *quiet(runs))
    assert code == 2 and error_line(err) == (
        f"error: {sweep} is an lr-find sweep, not a run: its files are its record; give another --run.name"
    )
    assert "Traceback" not in err and "saved in" not in out
    assert {p.relative_to(sweep): p.read_bytes() for p in sweep.rglob("*")} == before


def test_write_leaves_out_a_run_name_that_names_a_sweep(tmp_path):
    runs, written = tmp_path / "runs", tmp_path / "lr.yaml"
    code, _, err = run("lr-find", "--config", str(QUICKSTART), "--num_training", "13", *quiet(runs))
    assert code == 0, err[-3000:]
    (sweep,) = lr_find_dirs(runs)
    code, out, err = run("lr-find", "--config", str(QUICKSTART), "--num_training", "13", "--run.name", sweep.name,
                         "--write", str(written), *quiet(runs))
    assert code == 0, err[-3000:]
    assert yaml.safe_load(written.read_text())["run"]["name"] is None
    assert f"they named {sweep}, an lr-find sweep" in written.read_text()


def start_a_long_sweep(cwd: Path, runs: Path):
    """A ``lr-find`` process under ``runs`` that has begun its sweep (its ``.lr_find_<uuid>.ckpt`` is written)."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "lightning_hw", "lr-find", "--config", str(QUICKSTART), "--num_training", "100000",
               *quiet(runs)]
    process = warm_start.popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(runs.glob("quickstart/lr-find-*/.lr_find_*.ckpt")):
        if process.poll() is not None:
            raise AssertionError("lr-find ended before its sweep started")
    if not list(runs.glob("quickstart/lr-find-*/.lr_find_*.ckpt")):
        process.kill()
        process.wait()
        raise AssertionError("lr-find did not begin its sweep within 120 s")
        time.sleep(0.05)
    return process


def test_the_temporary_checkpoint_of_a_killed_sweep_is_removed_by_the_next_lr_find(tmp_path):
    """A SIGKILL mid-sweep left ``lr-find-<time>/.lr_find_<uuid>.ckpt`` alone, which every later lr-find
    left there too. The next lr-find of the group removes it and says so; a live sweep's (its lock held),
    a finished sweep's and a run's directories are left as they are."""
    import fcntl
    import os

    runs = tmp_path / "runs"
    process = start_a_long_sweep(tmp_path, runs)
    process.kill()  # SIGKILL: no chance to clean up
    process.wait()
    (killed,) = lr_find_dirs(runs)
    (leftover,) = killed.iterdir()
    assert leftover.name.startswith(".lr_find_") and leftover.suffix == ".ckpt"
    live = runs / "quickstart" / "lr-find-live"  # another sweep, still running
    live.mkdir()
    (live / leftover.name).write_bytes(b"weights")
    lock = os.open(live, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as a running sweep holds it
    ran = runs / "quickstart" / "lr-find-run"  # a run that the user named so
    ran.mkdir()
    (ran / "config.yaml").write_text("run: {}\n")
    (ran / leftover.name).write_bytes(b"weights")
    try:
        code, out, err = run("lr-find", "--config", str(QUICKSTART), "--num_training", "13", *quiet(runs))
    finally:
        os.close(lock)
    assert code == 0, err[-3000:]
    assert f"note: removed {killed}: an lr-find killed before it finished left only its temporary copy" in out
    assert not killed.exists()
    assert sorted(p.name for p in live.iterdir()) == [leftover.name]
    assert sorted(p.name for p in ran.iterdir()) == sorted(["config.yaml", leftover.name])
    (swept,) = set(lr_find_dirs(runs)) - {live, ran}
    assert (swept / lr_find.SUMMARY_FILE).is_file() and not list(swept.glob(".lr_find_*"))


def test_the_next_lr_find_leaves_a_running_sweeps_temporary_checkpoint_alone(tmp_path):
    """A sweep that is running holds its folder's lock from the start: the next lr-find of the group, run
    meanwhile, must not take its ``.lr_find_<uuid>.ckpt`` for a killed sweep's leftover and remove it."""
    import signal
    import subprocess

    runs = tmp_path / "runs"
    process = start_a_long_sweep(tmp_path, runs)
    try:
        (running,) = lr_find_dirs(runs)
        held = sorted(p.name for p in running.iterdir())
        code, out, err = run("lr-find", "--config", str(QUICKSTART), "--num_training", "13", *quiet(runs))
        assert process.poll() is None, "the first sweep ended before the second one looked at it"
        assert code == 0, err[-3000:]
        assert "note: removed" not in out
        assert sorted(p.name for p in running.iterdir()) == held
    finally:
        process.send_signal(signal.SIGINT)  # the running sweep stops and removes its own folder
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_lr_find_runs_on_a_file_system_without_locks(tmp_path, monkeypatch):
    """Some file systems (a FUSE or SMB mount) refuse ``flock`` with ENOLCK: the sweep's lock on its folder ended
    every lr-find there in an OSError traceback, with its empty folder left behind. It runs without the lock, and
    nothing is taken for a killed sweep's leftover (where no lock can be checked, nothing is removed)."""
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    leftover = runs / "quickstart" / "lr-find-20261207-000000"  # as a killed sweep left it
    leftover.mkdir(parents=True)
    (leftover / ".lr_find_0a2b9c3e-1d4f-4e5a-8b6c-7d8e9f0a1b2c.ckpt").write_bytes(b"weights")
    code, out, err = run("lr-find", "--config", str(QUICKSTART), "--num_training", "13", *quiet(runs))
    assert code == 0, err[-3000:]
    (swept,) = set(lr_find_dirs(runs)) - {leftover}
    assert (swept / lr_find.SUMMARY_FILE).is_file()
    assert leftover.is_dir() and "note: removed" not in out


@pytest.mark.slow
def test_a_fine_tuning_config_sweeps_on_cached_features_and_says_so(tmp_path, monkeypatch, caplog):
    """Lightning's finder sweeps without the trainer's callbacks, so the backbone never unfreezes in it. The
    cache said "off, the backbone unfreezes at epoch 8 (max_epochs -1)": neither true of the sweep (-1 is the
    finder's own setting), and the frozen backbone ran on every step. The config's own schedule is kept."""
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(tmp_path / "cache"))
    with caplog.at_level("INFO"):
        code, out, err = run(
            "lr-find", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--num_training", "13",
            "--data.init_args.image_size", "32", *quiet(tmp_path / "runs"),
        )
    assert code == 0, err[-3000:]
    said = caplog.text + out + err
    assert "unfreezes at epoch" not in said and "max_epochs -1" not in said, said[-3000:]
    assert re.search(r"FeatureCache: train features \(140, 512\) computed", said), said[-3000:]
    assert len(list((tmp_path / "cache" / "features").glob("resnet18-train-*.pt"))) == 1
    (directory,) = lr_find_dirs(tmp_path / "runs", "transfer_demo")
    recorded = yaml.safe_load((directory / "config-lr-find.yaml").read_text())
    assert recorded["finetune"]["init_args"]["unfreeze_at_epoch"] == 8 and recorded["finetune"]["init_args"]["last_blocks"] == 2


def test_a_fine_tuning_schedule_that_fit_refuses_is_refused_by_the_sweep_too(tmp_path):
    """The sweep follows a frozen copy of the schedule, which cannot tell a from_layer past the backbone's end."""
    code, out, err = run(
        "lr-find", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--finetune.last_blocks", "null",
        "--finetune.from_layer", "60", "--data.init_args.image_size", "32", *quiet(tmp_path / "runs"),
    )
    assert code == 2
    assert error_line(err) == "error: FreezeBackbone: from_layer 60 is outside the backbone's 60 layers; give one from 0 to 59"
    assert lr_find_dirs(tmp_path / "runs", "transfer_demo") == []
