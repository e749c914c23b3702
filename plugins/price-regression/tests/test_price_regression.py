"""Tests of the price-regression plugin: the Kaggle CSV reader, the task, and its config through the CLI.

Run from the repository root (``make test`` installs the plugin first) or from this
directory after ``pip install -e .``. No test touches the network: the Kaggle file is
written by :func:`write_mobile_price_csv` in the real format.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hw_price_regression.data import FEATURES, MobilePriceCSV, read_mobile_price_csv
from hw_price_regression.fixtures import write_mobile_price_csv
from hw_price_regression.task import PriceRegressor, RoundedAccuracy
from lightning_hw import MLP, DataError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "price_regression.yaml"
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def kaggle_root(tmp_path) -> Path:
    write_mobile_price_csv(tmp_path / "kaggle" / "train.csv", rows=400)
    return tmp_path / "kaggle"


def _rewrite(path: Path, edit) -> None:
    rows = list(csv.reader(path.open()))
    path.write_text("\n".join(",".join(row) for row in edit(rows)) + "\n")


def test_reads_the_kaggle_file_standardised_on_train_only(kaggle_root):
    data = MobilePriceCSV(root=str(kaggle_root), batch_size=16)
    data.setup("fit")
    x_train, y_train = data.data["train"]
    assert x_train.shape == (280, 20) and data.input_shape == (20,)
    assert y_train.dtype == torch.float32 and set(y_train.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert torch.allclose(x_train.mean(0), torch.zeros(20), atol=1e-4)
    assert torch.allclose(x_train.std(0), torch.ones(20), atol=1e-4)
    # Validation data uses the training statistics, so it is not exactly standardised itself.
    assert not torch.allclose(data.data["val"][0].mean(0), torch.zeros(20), atol=1e-3)
    assert data.levels == 4 and data.class_names[3] == "very high cost"
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (16, 20) and y.shape == (16,)


def test_columns_are_found_by_name(kaggle_root):
    path = kaggle_root / "train.csv"
    x, y = read_mobile_price_csv(path)
    # Kaggle's test.csv layout puts an id first; order and extra columns must not matter.
    _rewrite(path, lambda rows: [["id", *row[::-1]] for row in rows])
    x2, y2 = read_mobile_price_csv(path)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        MobilePriceCSV(root=str(tmp_path / "nowhere")).setup()
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "train.csv") in message
    assert "kaggle.com/datasets/iabhishekofficial/mobile-price-classification" in message
    assert "\n" not in message


def test_kaggle_test_csv_is_refused_with_a_hint(kaggle_root):
    path = kaggle_root / "train.csv"
    _rewrite(path, lambda rows: [row[:-1] for row in rows])
    with pytest.raises(DataError, match=r"lacks the column\(s\) price_range \(Kaggle's test.csv has no price_range"):
        read_mobile_price_csv(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "column price_range is 'abc', not a finite number"),
        ("nan", "column price_range is 'nan', not a finite number"),
        ("7", "price_range is '7'"),
    ],
)
def test_bad_values_name_the_line(kaggle_root, value, expected):
    path = kaggle_root / "train.csv"
    _rewrite(path, lambda rows: rows[:3] + [rows[3][:-1] + [value]] + rows[4:])
    with pytest.raises(DataError, match=rf"train.csv, line 4: .*{expected}"):
        read_mobile_price_csv(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "x12"])
def test_a_feature_that_is_no_finite_number_names_its_line_column_and_value(kaggle_root, value):
    # A NaN feature was read, and standardising made its whole column NaN: the run trained on NaN.
    path = kaggle_root / "train.csv"
    column = FEATURES.index("ram")
    _rewrite(path, lambda rows: rows[:5] + [[*rows[5][:column], value, *rows[5][column + 1 :]]] + rows[6:])
    with pytest.raises(DataError, match=rf"train.csv, line 6: column ram is '{value}', not a finite number"):
        read_mobile_price_csv(path)


def test_a_short_row_names_its_line(kaggle_root):
    path = kaggle_root / "train.csv"
    _rewrite(path, lambda rows: rows[:2] + [rows[2][:10]] + rows[3:])
    with pytest.raises(DataError, match=r"train.csv, line 3: the row has fewer fields than the header"):
        read_mobile_price_csv(path)


def test_a_file_saved_by_excel_with_a_byte_order_mark_is_read(kaggle_root):
    # The mark stuck to the first column's name, which then looked missing.
    path = kaggle_root / "train.csv"
    x, y = read_mobile_price_csv(path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    x2, y2 = read_mobile_price_csv(path)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_one_linear_output_trained_with_mse():
    task = PriceRegressor(net=lambda shape, n: MLP(shape, n, hidden=[8]), input_shape=(20,), levels=4)
    assert task.net.layers[-1].out_features == 1
    x, y = torch.randn(6, 20), torch.tensor([0.0, 1.0, 2.0, 3.0, 1.0, 2.0])
    preds = task(x)
    assert preds.shape == (6,)
    loss = task.training_step((x, y), 0)
    assert loss.item() == pytest.approx(F.mse_loss(preds, y).item(), rel=1e-5)


def test_rounded_accuracy_rounds_and_clips():
    metric = RoundedAccuracy(4)
    metric.update(torch.tensor([0.4, 1.6, 3.9, -0.7, 2.4]), torch.tensor([0.0, 2.0, 3.0, 0.0, 3.0]))
    assert metric.compute().item() == pytest.approx(4 / 5)


def test_config_learns_through_the_cli(kaggle_root, tmp_path):
    from lightning_hw.cli import HWCLI

    cli = HWCLI(
        args=[
            "fit", "--config", str(CONFIG),
            "--data.init_args.root", str(kaggle_root),
            "--model.init_args.net.init_args.hidden", "[32]",
            "--model.init_args.net.init_args.dropout", "0.0",
            "--optimizer.init_args.lr", "0.01",
            "--trainer.max_epochs", "8",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--run.root", str(tmp_path / "runs"),
            "--run.wandb", "disabled",
        ]
    )  # fmt: skip
    assert type(cli.model).__name__ == "PriceRegressor" and type(cli.datamodule).__name__ == "MobilePriceCSV"
    assert cli.model.hparams.levels == 4 and cli.model.hparams.input_shape == (20,)  # linked from the data
    logged = {k for row in csv.DictReader((cli.run_dir / "metrics.csv").open()) for k, v in row.items() if v}
    assert {"train/loss", "train/mae", "val/loss", "val/mae", "val/rmse", "val/r2", "val/acc"} <= logged
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}  # the test of the best checkpoint
    assert {"test/loss", "test/mae", "test/rmse", "test/r2", "test/acc"} <= set(metrics)
    # A price class is mostly a function of ram here: a model that learns explains most of the variance.
    assert metrics["test/r2"] > 0.5, metrics
    assert "best-epoch" in cli.trainer.checkpoint_callback.best_model_path
    assert cli.trainer.checkpoint_callback.monitor == "val/rmse"


def test_a_column_given_twice_is_refused_through_the_cli(kaggle_root, tmp_path, capsys):
    """``ram`` twice: csv.DictReader kept the last one, and the run trained on it without a word."""
    from lightning_hw.cli import main

    path = kaggle_root / "train.csv"
    _rewrite(path, lambda rows: [rows[0] + ["ram"], *(row + ["0"] for row in rows[1:])])
    with pytest.raises(SystemExit) as exit_info:
        main([
            "fit", "--config", str(CONFIG), "--data.init_args.root", str(kaggle_root), "--trainer.max_epochs", "1",
            "--run.root", str(tmp_path / "runs"), "--run.wandb", "disabled",
        ])  # fmt: skip
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {path} has the column(s) ram more than once; keep one of each"
    ]
    assert not (tmp_path / "runs").exists()  # nothing left behind
