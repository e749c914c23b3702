"""``--trainer.precision``: the model input follows the trainer's precision for data prepared per batch.

Lightning's precision plugin converts a batch's floating-point tensors (``convert_input``)
before the batch hooks; Reuters keeps its multi-hot rows as uint8 and casts them to float in
``on_after_batch_transfer``, after that conversion. Under ``bf16-true`` they met bfloat16
weights (``mat1 and mat2 must have the same dtype``) and under ``64-true`` float64 ones.
The runs here are compared on their test metric, not only on finishing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from lightning_hw.data.fixtures.classification import write_reuters

from reliability_helpers import output_of as cli

REPO = Path(__file__).resolve().parents[1]
QUIET = ("--run.wandb", "disabled", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: two threads thrash on 2 shared cores


@pytest.fixture(scope="module")
def reuters_root(tmp_path_factory) -> Path:
    return write_reuters(tmp_path_factory.mktemp("reuters"), n=400)


def fit_reuters(root: Path, runs: Path, precision: str) -> tuple[Path, dict[str, float]]:
    """A short Reuters run (the fixture is learnable: about 0.86 test accuracy); its run and logged test metrics."""
    cli(
        "fit", "--config", str(REPO / "configs" / "reuters.yaml"), *QUIET,
        "--run.root", str(runs), "--run.name", precision,
        "--data.init_args.root", str(root),
        "--data.init_args.batch_size", "32",
        "--optimizer.init_args.lr", "0.01",
        "--trainer.max_epochs", "5",
        "--trainer.precision", precision,
    )  # fmt: skip
    (run,) = [p for p in runs.glob(f"*/{precision}") if p.is_dir()]
    with (run / "metrics.csv").open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("test/acc")]
    return run, {k: float(v) for k, v in rows[-1].items() if k.startswith("test/") and v}


@pytest.fixture(scope="module")
def float32_run(reuters_root, tmp_path_factory) -> dict[str, float]:
    _, metrics = fit_reuters(reuters_root, tmp_path_factory.mktemp("runs"), "32-true")
    assert metrics["test/acc"] >= 0.6  # chance is 1/46: the comparisons below say something
    return metrics


@pytest.mark.parametrize(
    ("precision", "acc_tolerance", "loss_tolerance"),
    [
        ("64-true", 1e-6, 1e-4),  # float32 and float64 give the same predictions on this data
        ("bf16-true", 0.05, 0.1),  # bfloat16 weights and updates: 8 bits of mantissa
    ],
)
def test_true_precisions_train_reuters_like_float32(reuters_root, tmp_path, float32_run, precision, acc_tolerance, loss_tolerance):
    run, metrics = fit_reuters(reuters_root, tmp_path / "runs", precision)
    assert abs(metrics["test/acc"] - float32_run["test/acc"]) <= acc_tolerance, (metrics, float32_run)
    assert abs(metrics["test/loss"] - float32_run["test/loss"]) <= loss_tolerance, (metrics, float32_run)
    # predict goes through the same batch hook with the run's trainer (its precision)
    (checkpoint,) = (run / "checkpoints").glob("best-*.ckpt")
    printed = cli("predict", "--ckpt_path", str(checkpoint), *QUIET)
    assert "Predictions: 80 rows written" in printed


def test_batches_prepared_per_batch_take_the_trainers_dtype(reuters_root):
    from lightning_hw.data.datasets.reuters import Reuters

    data = Reuters(root=str(reuters_root), batch_size=8)
    data.setup("fit")
    raw = next(iter(data.val_dataloader()))
    assert raw[0].dtype == torch.uint8
    # Outside a trainer (export, checks): float32, as the ONNX file takes raw samples in float32.
    assert data.on_after_batch_transfer(raw, 0)[0].dtype == torch.float32
    for precision, dtype in (("bf16-true", torch.bfloat16), ("64-true", torch.float64), ("bf16-mixed", torch.float32)):
        data.trainer = Trainer(precision=precision, accelerator="cpu", logger=False, enable_progress_bar=False)
        x, y = data.on_after_batch_transfer(raw, 0)
        assert x.dtype == dtype and y.dtype == torch.int64, precision
    data.trainer = None


def test_landmark_plots_draw_under_bf16_true(tmp_path):
    # LandmarkPlots prepared the test faces itself (float32) and fed them to the bfloat16 net after the test.
    runs = tmp_path / "runs"
    cli(
        "fit", "--config", str(REPO / "configs" / "landmarks_demo.yaml"), *QUIET,
        "--run.root", str(runs), "--run.name", "faces",
        "--data.init_args.num_samples", "120",
        "--trainer.max_epochs", "1",
        "--trainer.precision", "bf16-true",
    )  # fmt: skip
    (run,) = runs.glob("*/faces")
    assert (run / "landmarks_test.png").is_file() and (run / "worst_faces.png").is_file()
    with (run / "metrics.csv").open(newline="") as f:
        nme = [float(row["test/nme"]) for row in csv.DictReader(f) if row.get("test/nme")]
    assert len(nme) == 1 and 0 <= nme[0] < 10
