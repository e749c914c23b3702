"""The command line end to end, in process (``HWCLI(args=[...])``) and as a subprocess."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lightning_hw.cli import HWCLI, main
from lightning_hw.errors import ConfigError


def test_fit_writes_one_run_directory(tiny_args, workdir):
    cli = HWCLI(args=tiny_args("fit", "--run.name", "r1"))
    run_dir = workdir / "runs" / "quickstart" / "r1"
    assert cli.run_dir == run_dir
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    logged = {key for row in rows for key, value in row.items() if value}
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "test/acc", "test/loss"} <= logged
    # Nothing but the runs directory lands in the working directory.
    assert sorted(p.name for p in workdir.iterdir()) == ["runs"]


def test_sizes_are_linked_from_the_datamodule(tiny_args):
    cli = HWCLI(args=tiny_args("fit", "--trainer.fast_dev_run", "true"))
    assert cli.model.num_classes == 10
    assert cli.model.class_names == [str(d) for d in range(10)]
    first_layer = cli.model.net.layers[1]
    assert first_layer.in_features == 64 and cli.model.net.layers[-1].out_features == 10


def test_overrides_reach_trainer_model_and_optimizer(tiny_args):
    cli = HWCLI(
        args=tiny_args(
            "fit", "--trainer.max_epochs", "2", "--model.init_args.head", "sigmoid_bce",
            "--optimizer.init_args.lr", "0.05", "--run.test_after_fit", "false",
        )
    )
    assert cli.trainer.max_epochs == 2 and cli.trainer.current_epoch == 2
    assert cli.model.head.name == "sigmoid_bce"
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05)


def test_task_lr_replaces_the_optimizer_lr(tiny_args):
    cli = HWCLI(args=tiny_args("fit", "--model.init_args.lr", "0.2", "--trainer.fast_dev_run", "true"))
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.2)


def test_without_optimizer_section_the_task_uses_adam(tiny_args, workdir):
    config = yaml.safe_load(open(tiny_args()[2]))
    del config["optimizer"]
    path = workdir / "noopt.yaml"
    path.write_text(yaml.safe_dump(config))
    args = tiny_args("fit", "--trainer.fast_dev_run", "true")
    args[2] = str(path)
    cli = HWCLI(args=args)
    assert type(cli.trainer.optimizers[0]).__name__ == "Adam"


def test_print_config_shows_the_resolved_config(tiny_args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        HWCLI(args=tiny_args("fit", "--print_config"))
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].endswith(".Classifier")
    assert "num_classes" not in printed["model"]["init_args"]  # a link target, filled from the data
    assert printed["optimizer"]["init_args"]["momentum"] == 0.9


def test_print_config_shows_the_lr_that_trains(tiny_args, capsys):
    """It printed the optimizer's lr as the config's 0.1 while 0.05 trained."""
    with pytest.raises(SystemExit) as exit_info:
        HWCLI(args=tiny_args("fit", "--model.init_args.lr", "0.05", "--print_config"))
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optimizer"]["init_args"]["lr"] == printed["model"]["init_args"]["lr"] == 0.05
    cli = HWCLI(args=tiny_args("fit", "--model.init_args.lr", "0.05", "--trainer.fast_dev_run", "true"))
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05)


def test_misspelled_task_is_one_line_with_a_suggestion(tiny_args):
    with pytest.raises(ConfigError) as err:
        HWCLI(args=tiny_args("fit", "--model", "Clasifier"))
    message = str(err.value)
    assert "\n" not in message
    assert "unknown task 'Clasifier'; did you mean Classifier?" in message


def test_misspelled_datamodule_in_config_file(tiny_args, workdir):
    config = yaml.safe_load(open(tiny_args()[2]))
    config["data"]["class_path"] = "Digts"
    path = workdir / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    args = tiny_args("fit")
    args[2] = str(path)
    with pytest.raises(ConfigError, match=r"unknown datamodule 'Digts'; did you mean Digits\?"):
        HWCLI(args=args)


def test_main_exits_2_without_traceback(tiny_args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_args("fit", "--model", "Clasifier"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown task 'Clasifier'")


def test_subprocess_list_and_typo(workdir):
    listing = subprocess.run([sys.executable, "-m", "lightning_hw", "list"], capture_output=True, text=True)
    assert listing.returncode == 0
    for name in ("Classifier", "Digits", "TwoMoons"):
        line = next(line for line in listing.stdout.splitlines() if f" {name} " in line)
        assert "lightning-hw" in line
    typo = subprocess.run(
        [sys.executable, "-m", "lightning_hw", "fit", "--model", "Clasifier", "--data", "Digits"],
        capture_output=True, text=True,
    )
    assert typo.returncode == 2
    assert "Traceback" not in typo.stderr
    # One line; the list of available tasks grows as tasks are added (Classifier, LandmarkRegressor, ...).
    (line,) = typo.stderr.strip().splitlines()
    assert line.startswith("error: unknown task 'Clasifier'; did you mean Classifier? available: Classifier")
    assert line.endswith("(see `python -m lightning_hw list`)")


def test_scheduler_from_the_config(tiny_args):
    cli = HWCLI(
        args=tiny_args(
            "fit", "--lr_scheduler", "torch.optim.lr_scheduler.StepLR", "--lr_scheduler.init_args.step_size", "1",
            "--lr_scheduler.init_args.gamma", "0.5", "--trainer.max_epochs", "2", "--run.test_after_fit", "false",
        )
    )
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)


def test_test_subcommand_writes_into_the_eval_directory_of_its_checkpoints_run(tiny_args, workdir):
    HWCLI(args=tiny_args("fit", "--run.name", "r2", "--run.test_after_fit", "false"))
    run_dir = workdir / "runs" / "quickstart" / "r2"
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    cli = HWCLI(args=tiny_args("test", "--ckpt_path", str(best)))
    assert cli.run_dir.parent == run_dir / "eval" and cli.run_dir.name.startswith("test-")
    # the test's record and what the interpretation callback drew from it
    assert sorted(p.name for p in cli.run_dir.iterdir()) == ["config-test.yaml", "metrics.csv", "most_confused.csv", "top_losses.png"]
    assert 0.0 <= cli.trainer.callback_metrics["test/acc"].item() <= 1.0
    assert sorted(p.name for p in (workdir / "runs" / "quickstart").iterdir()) == ["r2"]


def test_wandb_offline_files_live_in_the_run_directory(tiny_args, workdir, capsys):
    cli = HWCLI(args=tiny_args("fit", "--run.name", "w", "--run.wandb", "offline"))
    run_dir = workdir / "runs" / "quickstart" / "w"
    run_id = (run_dir / "wandb-run-id").read_text().strip()
    run_files = list((run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(run_files) == 1 and run_files[0].stat().st_size > 0
    assert "wandb sync" in capsys.readouterr().out
    csv_logger, wandb_logger = cli.trainer.loggers
    assert isinstance(csv_logger, CSVLogger) and isinstance(wandb_logger, WandbLogger)
    assert sorted(p.name for p in workdir.iterdir()) == ["runs"]


def test_metrics_csv_is_continued_not_deleted_when_a_run_is_resumed(tiny_args, workdir):
    HWCLI(args=tiny_args("fit", "--run.name", "again", "--run.test_after_fit", "false"))
    metrics = workdir / "runs" / "quickstart" / "again" / "metrics.csv"
    first = list(csv.DictReader(metrics.open()))
    HWCLI(args=tiny_args("fit", "--run.name", "again", "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    rows = list(csv.DictReader(metrics.open()))
    assert rows[: len(first)] == [{k: row.get(k, "") for k in rows[0]} for row in first]
    epochs = sorted({int(row["epoch"]) for row in rows if row.get("val/acc")})
    assert epochs == [0, 1]


def test_last_checkpoint_is_the_latest_epoch_even_after_the_best_one(tiny_args, workdir):
    # lr 5 makes validation worse after the first epoch, so the best checkpoint stays at epoch 0.
    cli = HWCLI(args=tiny_args("fit", "--run.name", "diverge", "--trainer.max_epochs", "3",
                               "--optimizer.init_args.lr", "5.0", "--run.test_after_fit", "false"))
    checkpoints = workdir / "runs" / "quickstart" / "diverge" / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["epoch"] == 2
    assert sorted(p.name for p in checkpoints.glob("last*.ckpt")) == ["last.ckpt"]
    assert Path(cli.trainer.checkpoint_callback.best_model_path).name == "best-epoch000.ckpt"


def test_evaluating_a_run_checkpoint_without_config_uses_the_runs_config(trained_run, workdir, capsys):
    """The checkpoint's run directory holds the config it was trained with: no --config needed."""
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    cli = HWCLI(args=[
        "test", "--ckpt_path", str(ckpt), "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled",
    ])
    assert f"Using the config of the checkpoint's run: {trained_run / 'config.yaml'}" in capsys.readouterr().out
    assert cli.run_dir.parent == trained_run / "eval" and (cli.run_dir / "metrics.csv").is_file()
    assert 0.0 <= cli.trainer.callback_metrics["test/acc"].item() <= 1.0


@pytest.mark.parametrize("stage, checkpoint", [("test", "last.ckpt"), ("validate", "best")])
def test_an_evaluation_records_which_weights_it_scored(trained_run, workdir, capsys, stage, checkpoint):
    """Its rows carry the checkpoint's epoch and step (Lightning leaves them 0 outside fit), its config the file.

    Before, every evaluation's metrics.csv said epoch 0, step 0 and its config ``ckpt_path: last``,
    a file that moves on as the run resumes: which weights were scored was nowhere.
    """
    ckpt = next((trained_run / "checkpoints").glob("best-*.ckpt" if checkpoint == "best" else checkpoint))
    held = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert held["global_step"] > 0
    cli = HWCLI(args=[
        stage, "--ckpt_path", str(ckpt), f"--trainer.limit_{'val' if stage == 'validate' else 'test'}_batches", "2",
        "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled",
    ])
    assert f"Evaluation directory: {cli.run_dir} (weights: {ckpt}; epoch {held['epoch']}, step {held['global_step']})" in capsys.readouterr().out
    (row,) = csv.DictReader((cli.run_dir / "metrics.csv").open())
    assert (int(row["epoch"]), int(row["step"])) == (held["epoch"], held["global_step"])
    assert yaml.safe_load((cli.run_dir / f"config-{stage}.yaml").read_text())["ckpt_path"] == str(ckpt)


def test_the_test_after_fit_is_recorded_at_the_best_checkpoints_epoch(tiny_args, workdir, capsys):
    """The test after fit scores the best checkpoint: its row said epoch 6, an epoch the run never had.

    (lr 2.0 diverges after the first epoch, so the best is epoch 0.) status.json still says where training ended.
    """
    cli = HWCLI(args=tiny_args("fit", "--run.name", "r", "--trainer.max_epochs", "4", "--model.init_args.lr", "2.0"))
    (best,) = (cli.run_dir / "checkpoints").glob("best-*.ckpt")
    assert f"Test (best checkpoint {best.name})" in capsys.readouterr().out
    held = torch.load(best, map_location="cpu", weights_only=True)
    assert held["epoch"] < 3  # not the last epoch, or this test shows nothing
    rows = list(csv.DictReader((cli.run_dir / "metrics.csv").open()))
    (tested,) = [row for row in rows if row["test/acc"]]
    assert (int(tested["epoch"]), int(tested["step"])) == (held["epoch"], held["global_step"])
    status = json.loads((cli.run_dir / "status.json").read_text())
    assert (status["epoch"], status["global_step"]) == (4, 12)


def test_fast_dev_run_saves_nothing_as_it_says(tiny_args, workdir, capsys):
    """Figures and tables of the callbacks were written into runs/<group>/fast_dev_run/ while the
    last line said nothing was saved; and Lightning warned about tensorboardX for a logger it never used."""
    from lightning_hw.cli import main

    main(tiny_args(
        "fit", "--trainer.fast_dev_run", "true", "--run.wandb", "offline",
        "--trainer.callbacks+=lightning_hw.callbacks.plots.MetricCurves",
        "--trainer.callbacks+=lightning_hw.callbacks.plots.ModelSummaryFile",
        "--trainer.callbacks+=lightning_hw.callbacks.plots.PredictionGrid",
        "--trainer.callbacks+=lightning_hw.callbacks.confusion.ConfusionMatrix",
    ))
    out, err = capsys.readouterr()
    assert "Test confusion matrix" in out  # the callbacks ran
    assert out.splitlines()[-1].startswith("fast_dev_run: nothing was saved")
    assert "tensorboardX" not in out + err
    assert not (workdir / "runs").exists()
