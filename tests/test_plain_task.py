"""A plugin task in plain Lightning (``self.log`` + torchmetrics, no ``Task``) gets everything a Task gets.

The task is ``tests/plain_task_plugin.py``'s ``PlainClassifier``, named by its full class path
on the quickstart config (Digits). One short fit is shared by the tests; each then checks one
command on it with numbers: the run's files, the best checkpoint, the test after fit, the
curves, ``report``, ``test``, ``predict``, ``export`` and a resume.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re

import pytest

from conftest import QUICKSTART
from lightning_hw.callbacks.plots import MetricCurves
from lightning_hw.cli import HWCLI, main

TASK = "plain_task_plugin.PlainClassifier"
EPOCHS = 4


def _rows(path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _epoch_values(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """``{epoch: value}`` of ``key`` in metrics.csv rows (each epoch's row that has it)."""
    return {int(r["epoch"]): float(r[key]) for r in rows if r.get(key)}


def _plain_args(subcommand: str, runs, *extra: str) -> list[str]:
    return [
        subcommand, "--config", str(QUICKSTART),
        "--model", TASK,
        "--run.monitor", "null",  # the quickstart picks by val/loss; the task's own monitor is tested here
        "--trainer.limit_train_batches", "3",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.wandb", "disabled",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """``(cli, printed)``: a fit of the plain task, with learning curves and a prediction grid."""
    runs = tmp_path_factory.mktemp("plain") / "runs"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli = HWCLI(args=_plain_args(
            "fit", runs, "--trainer.max_epochs", str(EPOCHS), "--run.name", "plain",
            "--trainer.callbacks+=lightning_hw.callbacks.plots.MetricCurves",
            "--trainer.callbacks+=lightning_hw.callbacks.plots.PredictionGrid",
        ))  # fmt: skip
    return cli, printed.getvalue()


def _best_checkpoint(run):
    (best,) = (run / "checkpoints").glob("best-epoch*.ckpt")
    return best


def _printed_test_acc(text: str) -> float:
    found = re.search(r"Test \(best checkpoint (best-epoch\d+\.ckpt)\): test/acc = (\S+),", text)
    assert found, text
    return float(found.group(2))


def test_fit_writes_the_run_picks_the_best_by_the_task_monitor_and_tests_it(plain_run):
    cli, printed = plain_run
    run = cli.run_dir
    assert {"config.yaml", "metrics.csv", "curves.png", "predictions.png"} <= {p.name for p in run.iterdir()}
    assert (run / "checkpoints" / "last.ckpt").is_file()
    rows = _rows(run / "metrics.csv")
    val_acc = _epoch_values(rows, "val/acc")
    assert sorted(val_acc) == sorted(_epoch_values(rows, "train/loss")) == list(range(EPOCHS))
    assert sorted(_epoch_values(rows, "val/loss")) == list(range(EPOCHS))
    # The task's monitor, val/acc (max), picks the best checkpoint: the epoch of the highest val/acc.
    checkpoint = cli.trainer.checkpoint_callback
    assert (checkpoint.monitor, checkpoint.mode) == ("val/acc", "max")
    best_epoch = int(re.search(r"epoch(\d+)", _best_checkpoint(run).name).group(1))
    assert val_acc[best_epoch] == max(val_acc.values())
    # The test after fit ran on that checkpoint; printed, logged and in metrics.csv alike.
    (test_row,) = [r for r in rows if r["test/acc"]]
    assert f"best checkpoint {_best_checkpoint(run).name}" in printed
    assert _printed_test_acc(printed) == pytest.approx(float(test_row["test/acc"]), abs=5e-5)
    assert float(cli.trainer.callback_metrics["test/acc"]) == float(test_row["test/acc"])
    saved = (run / "config.yaml").read_text()
    assert f"class_path: {TASK}" in saved and "num_classes" not in saved  # linked from the data, not typed


def test_curves_hold_the_epoch_values_of_metrics_csv(plain_run):
    cli, _ = plain_run
    (curves,) = [c for c in cli.trainer.callbacks if isinstance(c, MetricCurves)]
    rows = _rows(cli.run_dir / "metrics.csv")
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert curves.history[key] == pytest.approx(_epoch_values(rows, key), abs=1e-6), key


def test_report_tables_the_plain_run(plain_run):
    cli, _ = plain_run
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(cli.run_dir.parent)])
    assert exit_info.value.code == 0
    (row,) = _rows(cli.run_dir.parent / "report" / "report.csv")
    val_acc = _epoch_values(_rows(cli.run_dir / "metrics.csv"), "val/acc")
    assert float(row["best val/acc"]) == pytest.approx(max(val_acc.values()))
    assert float(row["test/acc"]) == pytest.approx(float(cli.trainer.callback_metrics["test/acc"]))


def test_test_predict_and_export_of_the_best_checkpoint_agree_with_fit(plain_run, workdir, capsys):
    cli, printed = plain_run
    run, best = cli.run_dir, _best_checkpoint(cli.run_dir)
    fit_test_acc = float(cli.trainer.callback_metrics["test/acc"])
    common = ["--trainer.enable_progress_bar", "false", "--run.wandb", "disabled"]

    main(["test", "--ckpt_path", str(best), *common])
    (evaluation,) = _rows(sorted((run / "eval").glob("test-*/metrics.csv"))[-1])
    assert float(evaluation["test/acc"]) == pytest.approx(fit_test_acc, abs=1e-6)

    # No predict_step: the CLI predicts forward on the inputs; argmax of the outputs scores test/acc.
    main(["predict", "--ckpt_path", str(best), *common])
    predictions = _rows(sorted((run / "eval").glob("predict-*/predictions.csv"))[-1])
    assert len(predictions) == 179 and list(predictions[0])[:2] == ["id", "output_0"]
    argmax = [max(range(10), key=lambda k: float(r[f"output_{k}"])) for r in predictions]
    accuracy = sum(p == int(r["target"]) for p, r in zip(argmax, predictions)) / len(predictions)
    assert accuracy == pytest.approx(fit_test_acc, abs=1e-6)

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(best), "--output", str(workdir / "plain.onnx")])
    assert exit_info.value.code == 0
    found = re.search(r"test/acc on the Digits test split \(179 samples\): PyTorch (\S+), onnxruntime on the raw samples (\S+)",
                      capsys.readouterr().out)  # fmt: skip
    assert found
    assert float(found.group(1)) == float(found.group(2)) == pytest.approx(fit_test_acc, abs=5e-5)
    import onnx

    metadata = {p.key: json.loads(p.value) for p in onnx.load(str(workdir / "plain.onnx")).metadata_props}
    assert metadata["task"] == "PlainClassifier" and metadata["num_classes"] == 10
    assert metadata["test_check"]["pytorch"] == pytest.approx(fit_test_acc, abs=1e-6)
    assert "PlainClassifier.forward" in metadata["outputs"]


def test_resume_from_last_continues_the_epochs(plain_run):
    # Last: it adds epochs to the shared run.
    cli, _ = plain_run
    run = cli.run_dir
    main([
        "fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_epochs", str(EPOCHS + 1),
        "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled",
    ])  # fmt: skip
    rows = _rows(run / "metrics.csv")
    train_epochs = [int(r["epoch"]) for r in rows if r["train/loss"]]
    assert train_epochs == list(range(EPOCHS + 1))  # the earlier rows kept, one new epoch appended
    val_acc = _epoch_values(rows, "val/acc")
    best_epoch = int(re.search(r"epoch(\d+)", _best_checkpoint(run).name).group(1))
    assert val_acc[best_epoch] == max(val_acc.values())


def test_a_task_logging_keras_style_names_gets_its_test_numbers_and_epoch_count(tmp_path, capsys):
    """``test_accuracy`` instead of ``test/acc``: the line ending fit used to be blank, report counted an epoch more."""
    runs = tmp_path / "runs"
    args = _plain_args("fit", runs, "--model", "plain_task_plugin.KerasStyleClassifier", "--trainer.max_epochs", "2", "--run.name", "keras")
    HWCLI(args=args)
    printed = capsys.readouterr().out
    found = re.search(r"Test \(best checkpoint best-epoch\d+\.ckpt\): (.*)", printed)
    assert found, printed
    shown = dict(item.split(" = ") for item in found.group(1).split(", "))
    assert set(shown) == {"test_accuracy", "test_loss"}
    test_rows = [r for r in _rows(runs / "quickstart" / "keras" / "metrics.csv") if r.get("test_accuracy")]
    assert float(shown["test_accuracy"]) == pytest.approx(float(test_rows[-1]["test_accuracy"]), abs=1e-4)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs / "quickstart")])
    assert exit_info.value.code == 0
    (row,) = _rows(runs / "quickstart" / "report" / "report.csv")
    assert row["epochs"] == "2"
