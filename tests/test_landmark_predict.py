"""``predict`` on a landmark run, checked in numbers: the CSV gives back ``test``'s NME and the true points.

A :class:`~lightning_hw.data.landmarks.csv_folder.LandmarkCSV` fixture of 52x40 PNG faces is
trained at 26x20 (half size: NME, a ratio of distances, is the same in both frames), then

* ``predict`` on the test split writes the true points beside the predicted ones, and the NME
  recomputed here from the CSV is ``test``'s ``test/nme``; its ids are the image files;
* ``predict --predict_from <the test images>`` writes points in each file's own pixels: they
  are twice the split's, and their NME against the points of the fixture's CSV is ``test/nme``.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_hw.data.fixtures.landmarks import write_landmark_csv
from lightning_hw.data.landmarks.csv_folder import read_landmark_csv
from lightning_hw.tasks.landmark_metrics import NME
from conftest import REPO
from reliability_helpers import output_of as cli

K = 5
FILE_SIZE = (52, 40)  # (H, W) of the fixture's images
MODEL_SIZE = (26, 20)  # what they are resized to for the model


def predictions(printed: str) -> list[dict[str, str]]:
    """The rows of the CSV a ``predict`` said it wrote."""
    found = re.search(r"Predictions: \d+ rows written to (\S+\.csv)", printed)
    assert found, printed
    with Path(found.group(1)).open(newline="") as f:
        return list(csv.DictReader(f))


def points(rows: list[dict[str, str]], name: str) -> np.ndarray:
    """Columns ``<name>_0 .. <name>_{2K-1}`` as ``(N, K, 2)`` points (``nan`` = missing)."""
    return np.array([[float(r[f"{name}_{j}"]) for j in range(2 * K)] for r in rows]).reshape(-1, K, 2)


def nme(pred: np.ndarray, target: np.ndarray) -> float:
    """Inter-ocular NME by the task's own metric (points 0 and 1 are the fixture's eyes)."""
    metric = NME(eye_indices=([0], [1]))
    metric.update(torch.as_tensor(pred, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32))
    return float(metric.compute())


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    """A short LandmarkCSV run: its data root, best checkpoint and the NME ``test`` measured with it."""
    tmp = tmp_path_factory.mktemp("landmark_predict")
    root = write_landmark_csv(tmp / "faces", n=60, k=K, size=FILE_SIZE)
    runs = tmp / "runs"
    cli(
        "fit", "--config", str(REPO / "configs" / "landmarks_demo.yaml"),
        "--data", "LandmarkCSV", "--data.init_args.root", str(root),
        "--data.init_args.image_size", f"[{MODEL_SIZE[0]}, {MODEL_SIZE[1]}]",
        "--data.init_args.eye_indices", "[[0], [1]]", "--data.init_args.batch_size", "8",
        "--trainer.max_epochs", "2", "--model.init_args.plot_samples", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--run.root", str(runs), "--run.wandb", "disabled", "--run.test_after_fit", "false",
    )
    (best,) = runs.glob("*/*/checkpoints/best-*.ckpt")
    cli("test", "--ckpt_path", str(best))
    (metrics,) = (best.parent.parent / "eval").glob("test-*/metrics.csv")
    with metrics.open(newline="") as f:
        logged = float(next(r["test/nme"] for r in csv.DictReader(f) if r.get("test/nme")))
    return root, best, logged


def test_split_predictions_hold_the_true_points_and_give_back_test_nme(faces_run):
    root, best, logged = faces_run
    rows = predictions(cli("predict", "--ckpt_path", str(best)))
    assert len(rows) == 6  # the 10% test split of 60 faces
    pred, true = points(rows, "landmarks"), points(rows, "target_landmarks")
    assert np.isnan(true).any()  # unannotated points stay missing
    assert nme(pred, true) == pytest.approx(logged, abs=1e-4)
    # Normalised columns too, in the same scheme: fractions of the 20x26 model input.
    scale = np.array([MODEL_SIZE[1], MODEL_SIZE[0]])
    np.testing.assert_allclose(points(rows, "target_normalized") * scale, true, atol=1e-3)
    np.testing.assert_allclose(points(rows, "normalized") * scale, pred, atol=1e-3)


def test_split_predictions_are_named_after_their_image_files(faces_run):
    root, best, _ = faces_run
    rows = predictions(cli("predict", "--ckpt_path", str(best)))
    true = points(rows, "target_landmarks")
    # The ids name the image files (relative to the data root): their true points are the CSV's, halved.
    names, file_points, _ = read_landmark_csv(root / "landmarks.csv")
    by_name = dict(zip(names, file_points.numpy()))
    assert all((root / r["id"]).is_file() for r in rows)
    np.testing.assert_allclose(true, np.stack([by_name[r["id"]] for r in rows]) / 2, atol=1e-4)


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_predictions_from_files_are_in_each_files_pixels(faces_run, in_memory, tmp_path):
    root, best, logged = faces_run
    held = ("--data.init_args.in_memory", in_memory)  # the split decoded once, or streamed from the files
    split_rows = predictions(cli("predict", "--ckpt_path", str(best), *held))
    folder = tmp_path / "new_faces"
    folder.mkdir()
    for row in split_rows:
        shutil.copy(root / row["id"], folder / Path(row["id"]).name)
    rows = predictions(cli("predict", "--ckpt_path", str(best), *held, "--predict_from", str(folder)))
    by_id = {Path(r["id"]).name: r for r in split_rows}
    assert sorted(r["id"] for r in rows) == sorted(by_id)
    from_files = points(rows, "landmarks")
    # The same faces, the same model input: the split's points (20x26 input) doubled for the 40x52 files.
    np.testing.assert_allclose(from_files, 2 * points([by_id[r["id"]] for r in rows], "landmarks"), atol=1e-3)
    names, file_points, _ = read_landmark_csv(root / "landmarks.csv")
    truth = dict(zip(names, file_points.numpy()))
    assert nme(from_files, np.stack([truth[r["id"]] for r in rows])) == pytest.approx(logged, abs=1e-4)
    assert not any(c.startswith("target") for c in rows[0])  # files come without true points


def test_predictions_from_one_image_file_are_the_folders_in_its_pixels(faces_run, tmp_path):
    """``--predict_from face.png``: the row the folder gives for that file, points in the file's own pixels."""
    from PIL import Image

    root, best, _ = faces_run
    folder = tmp_path / "faces"
    folder.mkdir()
    first, second = sorted(root.rglob("*.png"))[:2]
    shutil.copy(first, folder / "a.png")
    Image.open(second).resize((80, 104)).save(folder / "b.png")  # twice the other's size: its points twice as far
    in_folder = {r["id"]: r for r in predictions(cli("predict", "--ckpt_path", str(best), "--predict_from", str(folder)))}
    for name, width_height in (("a.png", (FILE_SIZE[1], FILE_SIZE[0])), ("b.png", (80, 104))):
        (alone,) = predictions(cli("predict", "--ckpt_path", str(best), "--predict_from", str(folder / name)))
        assert alone["id"] == name
        np.testing.assert_allclose(points([alone], "normalized"), points([in_folder[name]], "normalized"), atol=1e-5)
        np.testing.assert_allclose(points([alone], "landmarks"), points([in_folder[name]], "landmarks"), atol=1e-3)
        np.testing.assert_allclose(points([alone], "landmarks"), points([alone], "normalized") * np.array(width_height), atol=1e-3)


def test_predictions_from_large_files_under_bf16_true_are_in_their_pixels(faces_run, tmp_path):
    """As bfloat16 a 2601 px width was 2592, and points were multiplied in bfloat16: off by pixels."""
    from PIL import Image

    root, best, _ = faces_run
    folder = tmp_path / "large"
    folder.mkdir()
    first = sorted(root.rglob("*.png"))[0]
    Image.open(first).resize((2601, 2001)).save(folder / "large.png")
    (row,) = predictions(cli("predict", "--ckpt_path", str(best), "--trainer.precision", "bf16-true", "--predict_from", str(folder)))
    normalized, pixels = points([row], "normalized")[0], points([row], "landmarks")[0]
    np.testing.assert_allclose(pixels, normalized * np.array([2601.0, 2001.0]), rtol=1e-5)
