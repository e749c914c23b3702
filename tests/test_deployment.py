"""Deployment end to end: a trained run's test metric, reached again from raw files.

Each path trains a short run with ``fit`` (which tests the best checkpoint and logs the
test metric), writes the test split's raw samples as files in their natural format (a CSV
of the digits' 0-16 intensities, PNG or JPEG images), and checks that

* ``predict --predict_from <files>`` gives the same metric, computed here from the
  predictions CSV against the true labels;
* the ``export``-ed ONNX file, run here with onnxruntime on pixels/values read here from
  the same files (decoded the way its metadata says), gives it too, and ``export``
  printed matching numbers.

A model clearly better than chance is asserted first, or the equalities would say nothing.
Each trained run is shared by the tests of its path (module-scoped fixtures). Run with
``-s`` to see the four rows of numbers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_hw.cli import main
from reliability_helpers import output_of as cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
QUIET = (
    "--run.wandb", "disabled",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
)
SPLITS = (0.7, 0.2, 0.1)
#: the ImageFolder split of configs/catsdogs_mlp.yaml (33% test, then 20% of the rest)
CATSDOGS_SPLITS = (0.536, 0.134, 0.33)
#: SyntheticFaces as in configs/landmarks_demo.yaml, with fewer faces (2,000: a 200-face test split)
FACES = {
    "num_samples": 2000,
    "image_size": 48,
    "contour_points": 4,
    "missing_rate": 0.1,
    "batch_size": 32,
    "eval_batch_size": 256,
    "standardize": True,
}


# -- running the CLI ----------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: two threads thrash on 2 shared cores


@dataclass
class TrainedRun:
    """A finished ``fit``: its directory, the checkpoint ``fit`` tested, and the test metrics it logged."""

    run: Path
    checkpoint: Path
    test: dict[str, float]


def logged_test_metrics(run: Path) -> dict[str, float]:
    """The ``test/*`` values of the last row of ``metrics.csv`` that has any (what ``fit`` tested)."""
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    tested = [row for row in rows if any(k.startswith("test/") and v for k, v in row.items())]
    assert tested, f"no test metrics in {run / 'metrics.csv'}"
    return {k: float(v) for k, v in tested[-1].items() if k.startswith("test/") and v}


def fit(config: str, runs_root: Path, *overrides: str) -> TrainedRun:
    """Train ``configs/<config>`` (with ``overrides``) under ``runs_root``; ``fit`` tests its best checkpoint."""
    cli("fit", "--config", str(CONFIGS / config), *QUIET, "--run.root", str(runs_root), *overrides)
    (run,) = [p for p in runs_root.glob("*/*") if p.is_dir()]
    (best,) = sorted((run / "checkpoints").glob("best-*.ckpt"))  # the one fit's test used
    return TrainedRun(run, best, logged_test_metrics(run))


def predict(checkpoint: Path, source: Path) -> list[dict[str, str]]:
    """``predict --predict_from source`` on the checkpoint's run; the rows of the predictions CSV it wrote."""
    printed = cli("predict", "--ckpt_path", str(checkpoint), "--predict_from", str(source))
    found = re.search(r"Predictions: (\d+) rows written to (\S+\.csv)", printed)
    assert found, printed
    path = Path(found.group(2))
    assert path.name == f"predictions-{source.stem}.csv"
    assert path.parent.parent == checkpoint.parent.parent / "eval"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == int(found.group(1))
    return rows


def split_predictions(checkpoint: Path) -> list[dict[str, str]]:
    """``predict`` without ``--predict_from``: the test split through the training data path, in split order."""
    printed = cli("predict", "--ckpt_path", str(checkpoint))
    found = re.search(r"Predictions: (\d+) rows written to (\S+predictions\.csv)", printed)
    assert found, printed
    with Path(found.group(2)).open(newline="") as f:
        return list(csv.DictReader(f))


@dataclass
class Export:
    """An ``export`` of a checkpoint: the ONNX file, its metadata (JSON-decoded) and the line it printed."""

    path: Path
    metadata: dict
    metric: str
    samples: int
    pytorch: float
    onnxruntime: float
    printed: str


def export(checkpoint: Path, *options: str) -> Export:
    """``export --ckpt_path checkpoint [options]`` (default location); the file, its metadata and printed check."""
    import onnx

    printed = cli("export", "--ckpt_path", str(checkpoint), *options)
    written = re.search(r"^Exported (\S+\.onnx) \(ONNX", printed, re.M)
    check = re.search(
        r"^(\S+) on the \w+ test split \((\d+) samples\): PyTorch (\d\.\d+), onnxruntime on the "
        r"(?:raw|preprocessed) samples (\d\.\d+) \(max output difference (\S+)\)$",
        printed,
        re.M,
    )
    assert written and check, printed
    path = Path(written.group(1))
    metadata = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    return Export(
        path, metadata, check.group(1), int(check.group(2)), float(check.group(3)), float(check.group(4)), printed
    )


# -- computing metrics here -----------------------------------------------------------------------


def count_correct(predicted: list[int], labels: list[int]) -> int:
    """How many predicted class indices equal the true labels (same length required)."""
    assert len(predicted) == len(labels)
    return sum(int(p) == int(t) for p, t in zip(predicted, labels))


def assert_same_accuracy(correct: int, total: int, logged: float, what: str) -> None:
    """``correct / total`` is exactly the logged accuracy: the same number of hits on the same samples."""
    assert abs(logged * total - round(logged * total)) < 1e-3, f"{logged} is no count out of {total} samples"
    assert correct == round(logged * total), f"{what}: {correct}/{total} = {correct / total:.4f}, test/acc {logged:.4f}"


def onnx_outputs(path: Path, raw: np.ndarray) -> np.ndarray:
    """The exported file run by onnxruntime (CPU) on a float32 batch of raw samples."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "input"
    (out,) = session.run(None, {"input": raw.astype(np.float32)})
    return out


def class_probabilities(outputs: np.ndarray, head: str) -> np.ndarray:
    """Per-class probabilities ``(N, classes)`` from a classifier's exported outputs, as its head defines them."""
    if head == "binary_bce":  # one logit: sigmoid is the probability of the last class
        p = 1.0 / (1.0 + np.exp(-outputs.reshape(-1).astype(np.float64)))
        return np.stack([1 - p, p], axis=1)
    assert head == "softmax_ce", head
    z = outputs.astype(np.float64) - outputs.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def csv_probabilities(rows: list[dict[str, str]], class_names: list[str]) -> np.ndarray:
    """The ``prob_<class>`` columns of a predictions CSV, ``(N, classes)``."""
    return np.array([[float(row[f"prob_{name}"]) for name in class_names] for row in rows])


def read_pixels(path: Path, decode: dict) -> np.ndarray:
    """An image file as the exported graph's raw input: decoded and resized as the ONNX metadata says.

    Args:
        path: the image file.
        decode: the metadata's ``preprocessing.decode`` (``color``, ``resize_to``, ``interpolation``...).

    Returns:
        float32 ``(C, H, W)`` pixel values 0-255.
    """
    from PIL import Image
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    from PIL import ImageOps

    rgb = decode["color"].startswith("RGB")
    with Image.open(path) as img:
        if decode.get("draft_to"):  # a JPEG decoded at reduced scale (a no-op for other formats)
            img.draft(decode["color"], tuple(decode["draft_to"][::-1]))
        if "EXIF orientation applied" in decode.get("reader", ""):
            img = ImageOps.exif_transpose(img)
        pixels = np.asarray(img.convert("RGB" if rgb else "L"))
    image = torch.from_numpy(pixels.copy())
    image = image.permute(2, 0, 1) if rgb else image.unsqueeze(0)
    size = [int(s) for s in decode["resize_to"]]
    mode = InterpolationMode(decode["interpolation"])
    antialias = bool(decode.get("antialias", True))
    if decode.get("crop_pct"):  # as the metadata's "crop" says: resized to size / crop_pct, the centre cut out
        scale = [math.floor(s / decode["crop_pct"]) for s in size]
        image = TF.resize(image, scale[:1] if size[0] == size[1] else scale, interpolation=mode, antialias=antialias)
        image = TF.center_crop(image, size)
    if list(image.shape[-2:]) != size:
        image = TF.resize(image, size, interpolation=mode, antialias=antialias)
    return image.float().numpy()


def save_png(image: np.ndarray, path: Path) -> None:
    """A uint8 ``(C, H, W)`` image (C = 1 or 3) as a PNG (lossless: the file holds exactly these pixels)."""
    from PIL import Image

    if image.shape[0] == 1:
        Image.fromarray(image[0], "L").save(path)
    else:
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), "RGB").save(path)


def show(path: str, test: float, from_files: float, from_onnx: float, metric: str) -> None:
    """Print one row of the summary (visible with ``pytest -s``)."""
    print(
        f"\n[{path}] {metric}: fit's test {test:.4f} | predict from files {from_files:.4f} "
        f"| ONNX from raw {from_onnx:.4f}"
    )


def assert_matching_export(exported: Export, metric: str, logged: float, samples: int, tolerance: float = 0.0) -> None:
    """``export``'s printed check names the metric, the test split's size, and PyTorch == onnxruntime == fit's test."""
    assert exported.metric == metric
    assert exported.samples == samples
    assert exported.pytorch == pytest.approx(logged, abs=5e-5 + tolerance)
    assert exported.onnxruntime == pytest.approx(logged, abs=5e-5 + tolerance)
    check = exported.metadata["test_check"]
    assert check["metric"] == metric and check["samples"] == samples
    assert check["pytorch"] == pytest.approx(logged, abs=1e-6 + tolerance)
    assert check["onnxruntime"] == pytest.approx(logged, abs=1e-6 + tolerance)
    assert exported.metadata["preprocessing"]["in_graph"] is True
    assert exported.metadata["input"] == "raw sample"
    runs_root = str(exported.path.parents[4])  # <root>/<group>/<run>/eval/export-<time>/<file>
    assert runs_root not in json.dumps(exported.metadata)  # nothing machine-specific travels


# -- 1. quickstart: Digits, standardised, from CSV -------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> TrainedRun:
    """configs/quickstart.yaml cut to 5 epochs (test accuracy ~0.95; chance 0.1)."""
    trained = fit("quickstart.yaml", tmp_path_factory.mktemp("quickstart") / "runs", "--trainer.max_epochs", "5")
    assert trained.test["test/acc"] > 0.85
    return trained


@pytest.fixture(scope="module")
def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The Digits test split as raw intensities ``(N, 1, 8, 8)`` in 0..16 and labels."""
    from lightning_hw.data.datasets.digits import Digits

    dm = Digits(standardize=True, splits=SPLITS)
    dm.setup()
    x, y = dm.raw_data["test"]
    assert x.shape[1:] == (1, 8, 8) and float(x.min()) == 0.0 and float(x.max()) == 16.0
    return x.numpy(), y.numpy()


@pytest.fixture(scope="module")
def digits_export(digits_run) -> Export:
    """The quickstart checkpoint exported to its run's eval/export-<time>/ directory."""
    return export(digits_run.checkpoint)


@pytest.fixture(scope="module")
def digits_predictions_no_header(digits_run, digits_test_split, tmp_path_factory) -> list[dict[str, str]]:
    """Predictions from a header-less CSV of the test split: one row of 64 intensities per digit."""
    x, _ = digits_test_split
    table = tmp_path_factory.mktemp("digits_csv") / "digits_plain.csv"
    np.savetxt(table, x.reshape(len(x), -1), delimiter=",", fmt="%g")
    return predict(digits_run.checkpoint, table)


def predict_folder_like_the_split(checkpoint, folder, labels, position, logged, classes) -> tuple[list[dict], int]:
    """``predict`` a folder of test-split files: the logged accuracy, and sample by sample the split's probabilities.

    Args:
        checkpoint: the trained checkpoint.
        folder: the test split's files.
        labels: true label per file name.
        position: index in the test split per file name.
        logged: the test accuracy ``fit`` logged.
        classes: class names, in order.
    """
    rows = predict(checkpoint, folder)
    assert sorted(r["id"] for r in rows) == sorted(labels)
    correct = count_correct([int(r["predicted_index"]) for r in rows], [labels[r["id"]] for r in rows])
    assert_same_accuracy(correct, len(labels), logged, f"predict from the files in {folder.name}")
    # Sample by sample, the files give what the test split gave (decoded, resized, normalised alike).
    by_split = split_predictions(checkpoint)
    np.testing.assert_allclose(
        csv_probabilities(rows, classes),
        csv_probabilities([by_split[position[r["id"]]] for r in rows], classes),
        atol=1e-5,
    )
    return rows, correct


def binary_onnx_on_files(exported: Export, folder: Path, rows: list[dict], labels: dict, logged: float, what: str) -> int:
    """Run the exported binary classifier on the files' pixels; its accuracy and probabilities must match.

    Returns:
        How many files the exported model gets right.
    """
    meta = exported.metadata
    names = [r["id"] for r in rows]
    raw = np.stack([read_pixels(folder / name, meta["preprocessing"]["decode"]) for name in names])
    assert raw.shape == (len(names), *meta["input_shape"])
    outputs = onnx_outputs(exported.path, raw)
    assert outputs.shape == (len(names), 1)
    onnx_correct = count_correct((outputs.reshape(-1) > 0).astype(int).tolist(), [labels[n] for n in names])
    assert_same_accuracy(onnx_correct, len(names), logged, what)
    np.testing.assert_allclose(
        class_probabilities(outputs, "binary_bce"), csv_probabilities(rows, meta["class_names"]), atol=1e-4
    )
    assert_matching_export(exported, "test/acc", logged, len(names))
    return onnx_correct


def test_quickstart_predict_from_csv_without_header(digits_run, digits_test_split, digits_predictions_no_header):
    """All N rows come back, numbered 0..N-1, and their accuracy is fit's test accuracy."""
    x, y = digits_test_split
    rows = digits_predictions_no_header
    assert len(rows) == len(x)  # the first row is data, not a header
    assert [row["id"] for row in rows] == [str(i) for i in range(len(x))]
    correct = count_correct([int(row["predicted_index"]) for row in rows], y.tolist())
    assert_same_accuracy(correct, len(y), digits_run.test["test/acc"], "predict from the CSV without header")


def test_quickstart_predict_from_csv_with_header(digits_run, digits_test_split, digits_predictions_no_header, tmp_path):
    """A header row (an ``id`` column and px0..px63) is read as names: ids kept, same predictions."""
    x, y = digits_test_split
    table = tmp_path / "digits_named.csv"
    ids = [f"digit-{i:03d}" for i in range(len(x))]
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *(f"px{i}" for i in range(64))])
        for name, sample in zip(ids, x.reshape(len(x), -1)):
            writer.writerow([name, *(f"{v:g}" for v in sample)])
    rows = predict(digits_run.checkpoint, table)
    assert [row["id"] for row in rows] == ids
    correct = count_correct([int(row["predicted_index"]) for row in rows], y.tolist())
    assert_same_accuracy(correct, len(y), digits_run.test["test/acc"], "predict from the CSV with header")
    np.testing.assert_allclose(
        csv_probabilities(rows, [str(d) for d in range(10)]),
        csv_probabilities(digits_predictions_no_header, [str(d) for d in range(10)]),
        atol=1e-6,
    )


def test_quickstart_onnx_on_raw_digits(digits_run, digits_export, digits_test_split, digits_predictions_no_header):
    """The exported file on scikit-learn's own 0-16 images of the test split scores fit's test accuracy."""
    from sklearn.datasets import load_digits

    from lightning_hw.data.base import split_indices

    digits = load_digits()
    test_idx = split_indices(len(digits.images), SPLITS, 42)[2].numpy()
    raw = digits.images[test_idx][:, None]  # (N, 1, 8, 8), intensities 0..16
    labels = digits.target[test_idx]
    np.testing.assert_array_equal(raw, digits_test_split[0])  # the same samples the CSVs held
    outputs = onnx_outputs(digits_export.path, raw)
    assert outputs.shape == (len(raw), 10)
    logged = digits_run.test["test/acc"]
    correct = count_correct(outputs.argmax(axis=1).tolist(), labels.tolist())
    assert_same_accuracy(correct, len(labels), logged, "ONNX on the raw digits")
    # The same numbers as predict's, not only the same argmax.
    np.testing.assert_allclose(
        class_probabilities(outputs, "softmax_ce"),
        csv_probabilities(digits_predictions_no_header, [str(d) for d in range(10)]),
        atol=2e-5,
    )
    assert_matching_export(digits_export, "test/acc", logged, len(labels))
    meta = digits_export.metadata
    assert meta["task"] == "Classifier" and meta["datamodule"] == "Digits" and meta["head"] == "softmax_ce"
    assert meta["input_shape"] == [1, 8, 8]
    assert meta["class_names"] == [str(d) for d in range(10)]
    assert meta["preprocessing"]["divide_by"] == 16.0 and meta["preprocessing"]["flatten"] is False
    assert len(meta["preprocessing"]["mean"]) == len(meta["preprocessing"]["std"]) == 64  # per pixel
    correct_from_csv = count_correct(
        [int(r["predicted_index"]) for r in digits_predictions_no_header], labels.tolist()
    )
    show("quickstart / Digits CSV", logged, correct_from_csv / len(labels), correct / len(labels), "test/acc")


def csv_line(values) -> str:
    """Numbers as one CSV line (``%g``: the digits' integer intensities are written exactly)."""
    return ",".join(f"{v:g}" for v in values)


def _run_failing_predict(checkpoint: Path, source: Path, capsys) -> str:
    """``predict --predict_from source``, expected to exit 1; returns its ``error:`` line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(checkpoint), "--predict_from", str(source)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert err.rstrip().splitlines()[-1] == errors[0]  # the last thing said, on one line
    return errors[0]


def test_predict_refuses_csv_whose_first_row_mixes_names_and_numbers(digits_run, digits_test_split, tmp_path, capsys):
    """A first row with both names and numbers is neither header nor data: exit 1, one line."""
    x, _ = digits_test_split
    table = tmp_path / "mixed.csv"
    flat = x.reshape(len(x), -1)[:3]
    first = ["px0", *(f"{v:g}" for v in flat[0][1:])]  # one name, 63 numbers
    table.write_text("\n".join([",".join(first), *(csv_line(row) for row in flat[1:])]) + "\n")
    error = _run_failing_predict(digits_run.checkpoint, table, capsys)
    assert str(table) in error and "mixes names and numbers" in error


def test_predict_refuses_csv_whose_first_row_is_column_numbers(digits_run, digits_test_split, tmp_path, capsys):
    """``0,1,2,...,63`` could be pandas' column numbers or a sample: refused (exit 1), not guessed."""
    x, _ = digits_test_split
    table = tmp_path / "numbered.csv"
    samples = x.reshape(len(x), -1)[:3]
    table.write_text("\n".join([csv_line(range(64)), *(csv_line(row) for row in samples)]) + "\n")
    error = _run_failing_predict(digits_run.checkpoint, table, capsys)
    assert str(table) in error and "column numbers or data" in error


def test_bare_export_takes_the_preprocessed_input(digits_run, digits_export, digits_test_split):
    """``--bare true``: the net alone (in_graph false), fed (x / 16 - mean) / std, equals the full export on raw x."""
    bare = export(digits_run.checkpoint, "--bare", "true")
    meta = bare.metadata
    assert meta["preprocessing"]["in_graph"] is False
    assert meta["input_shape"] == [1, 8, 8]
    assert meta["input"] != "raw sample"
    assert bare.path.parent != digits_export.path.parent  # its own export directory
    prep = meta["preprocessing"]
    mean = np.array(prep["mean"], dtype=np.float32).reshape(1, 1, 8, 8)
    std = np.array(prep["std"], dtype=np.float32).reshape(1, 1, 8, 8)
    x, y = digits_test_split
    standardized = (x / np.float32(prep["divide_by"]) - mean) / std
    assert abs(float(standardized.mean())) < 0.2  # standardised, not raw 0..16
    # The metadata's mean/std are rounded to 6 decimals: outputs agree to ~1e-4.
    np.testing.assert_allclose(onnx_outputs(bare.path, standardized), onnx_outputs(digits_export.path, x), atol=2e-3)
    assert bare.metric == "test/acc" and bare.samples == len(y)
    assert bare.pytorch == bare.onnxruntime == pytest.approx(digits_run.test["test/acc"], abs=5e-5)


def test_export_never_overwrites(digits_run, digits_export):
    """A second export of the same checkpoint goes to a new directory; the first file is untouched."""
    before = digits_export.path.read_bytes()
    again = export(digits_run.checkpoint)
    assert again.path.parent != digits_export.path.parent
    assert again.path.parent.parent == digits_export.path.parent.parent == digits_run.run / "eval"
    assert digits_export.path.read_bytes() == before
    for exported in (digits_export, again):
        assert (exported.path.parent / "export.json").is_file()
        assert exported.path.name == f"{digits_run.checkpoint.stem}.onnx"


def test_export_metadata_holds_no_absolute_path(digits_run, digits_export, tmp_path_factory):
    """Metadata values name the checkpoint relative to the runs root, never by a path of this machine."""
    meta = digits_export.metadata
    run = digits_run.run
    assert meta["source_checkpoint"] == f"{run.parent.name}/{run.name}/checkpoints/{digits_run.checkpoint.name}"
    base = str(tmp_path_factory.getbasetemp())
    texts = {key: json.dumps(value) for key, value in meta.items()}
    assert not [key for key, text in texts.items() if base in text or str(REPO) in text or '"/' in text]
    export_json = json.loads((digits_export.path.parent / "export.json").read_text())
    assert base not in json.dumps(export_json)


# -- 2. transfer demo: LFW faces, timm ResNet18, ImageNet mean/std, from PNG files ----------------


@pytest.fixture(scope="module")
def lfw_run(tmp_path_factory) -> TrainedRun:
    """configs/transfer_demo.yaml cut to 3 epochs, the backbone's last blocks unfrozen at epoch 1."""
    trained = fit(
        "transfer_demo.yaml",
        tmp_path_factory.mktemp("transfer") / "runs",
        "--trainer.max_epochs", "3",
        "--finetune.unfreeze_at_epoch", "1",
    )
    assert trained.test["test/acc"] >= 0.75  # 20 test crops; chance 0.5
    return trained


def test_transfer_demo_from_png_files(lfw_run, tmp_path):
    """Grey 25x25 PNG crops: predict from the folder and the ONNX file on their decoded pixels give test/acc."""
    from skimage.data import lfw_subset

    from lightning_hw.data.base import split_indices

    crops = lfw_subset()
    test_idx = split_indices(len(crops), SPLITS, 42)[2].tolist()
    folder = tmp_path / "lfw_test"
    folder.mkdir()
    labels, position = {}, {}
    for k, i in enumerate(test_idx):
        name = f"lfw{i:03d}.png"
        save_png((crops[i][None] * 255).round().astype(np.uint8), folder / name)
        labels[name] = int(i < 100)  # the first 100 crops are faces (class 1)
        position[name] = k
    logged = lfw_run.test["test/acc"]

    rows, correct = predict_folder_like_the_split(lfw_run.checkpoint, folder, labels, position, logged, ["non-face", "face"])
    assert {r["predicted"] for r in rows} <= {"non-face", "face"}

    exported = export(lfw_run.checkpoint)
    meta = exported.metadata
    decode = meta["preprocessing"]["decode"]
    assert decode["resize_to"] == [64, 64] and decode["color"].startswith("RGB")
    assert meta["input_shape"] == [3, 64, 64] and meta["head"] == "binary_bce"
    # ImageNet's mean/std, linked from timm's data config, travel in the file.
    np.testing.assert_allclose(meta["preprocessing"]["mean"], [0.485, 0.456, 0.406], atol=1e-3)
    np.testing.assert_allclose(meta["preprocessing"]["std"], [0.229, 0.224, 0.225], atol=1e-3)
    onnx_correct = binary_onnx_on_files(exported, folder, rows, labels, logged, "ONNX on the PNG pixels")
    show("transfer demo / LFW PNG", logged, correct / len(rows), onnx_correct / len(rows), "test/acc")


# -- 3. image-folder MLP: JPEG photos, 28x28, flattened in the graph -------------------------------


@pytest.fixture(scope="module", params=["pillow", "nvjpeg-streamed", "pillow-crop"])
def catsdogs(request, tmp_path_factory) -> tuple[Path, TrainedRun, float | None]:
    """configs/catsdogs_mlp.yaml on 60 generated photos (class = brightness), 8 epochs of batches of 8.

    Three times: as configured (Pillow, decoded into memory), with ``decoder: nvjpeg`` streamed
    from the files (workers read them, the batched decoder decodes; libjpeg-turbo on this CPU),
    and with ``crop_pct: 0.875`` (timm's evaluation transform: resized to 32 px, the centre 28 cut out).

    ``standardize`` is switched on: on these uncentred 0-1 inputs the config's Adam run needs
    far more steps than a test can afford to move its threshold off "always dog" (it ranks the
    photos right but predicts one class); centred inputs train in a few steps, and the
    per-channel mean/std then travel in the graph next to the flatten.
    """
    from lightning_hw.data.fixtures.classification import write_image_folder

    base = tmp_path_factory.mktemp("catsdogs")
    # Over twice the model's 28 px: Pillow decodes these JPEGs at half scale (the metadata's draft_to).
    root = write_image_folder(base / "photos", per_class=30, size=(64, 72))
    crop_pct = 0.875 if request.param.endswith("crop") else None
    trained = fit(
        "catsdogs_mlp.yaml",
        base / "runs",
        "--data.init_args.root", str(root),
        "--data.init_args.batch_size", "8",
        "--data.init_args.standardize", "true",
        "--trainer.max_epochs", "5",
        *(["--data.init_args.decoder", "nvjpeg", "--data.init_args.in_memory", "false"] if "nvjpeg" in request.param else []),
        *(["--data.init_args.crop_pct", str(crop_pct)] if crop_pct else []),
    )
    assert trained.test["test/acc"] >= 0.8  # chance 0.5 (an "always one class" model gets 0.26 here)
    return root, trained, crop_pct


def test_image_folder_mlp_from_jpeg_files(catsdogs, tmp_path):
    """The test split's JPEGs, copied to a folder: predict and the ONNX file (N x 3 x 28 x 28 in) give test/acc."""
    from lightning_hw.data.datasets.image_folder import ImageFolder

    root, trained, crop_pct = catsdogs
    test_files = ImageFolder(
        root=str(root), labels="prefix", image_size=28, flatten=True, splits=list(CATSDOGS_SPLITS), crop_pct=crop_pct
    )._split()["test"]
    folder = tmp_path / "new_photos"
    folder.mkdir()
    labels, position = {}, {}
    for k, (path, label) in enumerate(test_files):
        shutil.copy(path, folder / path.name)
        labels[path.name] = label
        position[path.name] = k
    assert len(set(labels.values())) == 2  # both classes are in the test split
    logged = trained.test["test/acc"]

    rows, correct = predict_folder_like_the_split(trained.checkpoint, folder, labels, position, logged, ["cat", "dog"])

    exported = export(trained.checkpoint)
    meta = exported.metadata
    decode = meta["preprocessing"]["decode"]
    assert decode["resize_to"] == [28, 28] and decode["interpolation"] == "bilinear" and decode["crop_pct"] == crop_pct
    assert meta["input_shape"] == [3, 28, 28]  # images, not 2352 flat values: the flatten is in the graph
    assert meta["preprocessing"]["flatten"] is True
    assert meta["class_names"] == ["cat", "dog"]
    onnx_correct = binary_onnx_on_files(exported, folder, rows, labels, logged, "ONNX on the JPEG pixels")
    show("image-folder MLP / JPEG", logged, correct / len(rows), onnx_correct / len(rows), "test/acc")
    # README's snippet on the files: the pixels predict decodes (within a fraction of a level:
    # without the reduced-scale decoding of these photos it was 1.9 levels off) and its probabilities.
    draft_to = meta["preprocessing"]["decode"].get("draft_to")
    assert draft_to in ([28, 28] if crop_pct is None else [32, 32], None)  # None: nvjpeg decodes at full resolution
    decoding = ImageFolder(
        root=str(root), labels="prefix", image_size=28, flatten=True, decoder="pillow" if draft_to else "nvjpeg", crop_pct=crop_pct
    )
    snippet = [readme_snippet(exported.path, folder / row["id"]) for row in rows]
    for (pixels, _), row in zip(snippet, rows):
        assert np.abs(pixels - decoding.decode(folder / row["id"]).float().numpy()).mean() < 0.25, row["id"]
    probabilities = [probability for _, probability in snippet]
    np.testing.assert_allclose(probabilities, csv_probabilities(rows, meta["class_names"])[:, 1], atol=1e-4)


def readme_snippet(model: Path, image: Path) -> tuple[np.ndarray, float]:
    """README's "On a raw image file" snippet, as printed there, on ``image``: its pixels and the probability of class 1."""
    text = (REPO / "README.md").read_text()
    start = text.index("On a raw image file, with nothing from this project installed")
    code = text[text.index("```python\n", start) + len("```python\n") : text.index("```\n", text.index("```python\n", start) + 3)]
    code = re.sub(r'ort\.InferenceSession\("[^"]+"\)', f"ort.InferenceSession({str(model)!r})", code)
    code = re.sub(r'Image\.open\("[^"]+"\)', f"Image.open({str(image)!r})", code)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own snippet
    logit = float(namespace["s"].run(None, {"input": namespace["x"][None]})[0][0, 0])
    return namespace["x"], 1.0 / (1.0 + math.exp(-logit))


# -- 4. landmarks demo: SyntheticFaces, soft-argmax CNN, from PNG files ---------------------------


def nme(pred_px: np.ndarray, true_px: np.ndarray) -> float:
    """Inter-ocular NME of ``(N, K, 2)`` pixel points (NaN = missing), by the task's own metric."""
    from lightning_hw.tasks.landmark_metrics import NME

    metric = NME(eye_indices=([0], [1]))
    metric.update(torch.as_tensor(pred_px, dtype=torch.float32), torch.as_tensor(true_px, dtype=torch.float32))
    return float(metric.compute())


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory) -> TrainedRun:
    """configs/landmarks_demo.yaml on 2,000 faces for 4 epochs (cosine schedule over the 4)."""
    trained = fit(
        "landmarks_demo.yaml",
        tmp_path_factory.mktemp("landmarks") / "runs",
        "--data.init_args.num_samples", str(FACES["num_samples"]),
        "--trainer.max_epochs", "4",
        "--lr_scheduler.init_args.T_max", "4",
    )
    # Measured: test/nme 0.13 against 0.64 for always predicting the mean training shape.
    assert trained.test["test/nme"] < 0.4 * trained.test["test/nme_mean_shape"]
    return trained


def test_landmarks_demo_from_png_files(faces_run, tmp_path):
    """The test faces as PNGs: NME of predict's pixel columns and of the ONNX points equals test/nme."""
    from lightning_hw.data.landmarks.synthetic_faces import SyntheticFaces

    dm = SyntheticFaces(**FACES)
    dm.setup()
    images, points = (t.numpy() for t in dm.raw_data["test"])
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 48, 48)
    assert np.isnan(points).any()  # missing labels are part of the test
    folder = tmp_path / "faces"
    folder.mkdir()
    truth = {}
    for i, (image, face) in enumerate(zip(images, points)):
        save_png(image, folder / f"face{i:03d}.png")
        truth[f"face{i:03d}.png"] = face
    k = points.shape[1]
    logged = faces_run.test["test/nme"]

    rows = predict(faces_run.checkpoint, folder)
    names = [r["id"] for r in rows]
    assert sorted(names) == sorted(truth)
    assert [f"landmarks_{j}" for j in range(2 * k)] == [c for c in rows[0] if c.startswith("landmarks_")]
    from_csv = np.array([[float(r[f"landmarks_{j}"]) for j in range(2 * k)] for r in rows]).reshape(-1, k, 2)
    target = np.stack([truth[n] for n in names])
    nme_files = nme(from_csv, target)
    assert nme_files == pytest.approx(logged, abs=1e-4)
    by_split = split_predictions(faces_run.checkpoint)  # rows in split order, as the files are numbered
    from_split = np.array([[float(r[f"landmarks_{j}"]) for j in range(2 * k)] for r in by_split]).reshape(-1, k, 2)
    np.testing.assert_allclose(from_csv, from_split[[int(n[4:7]) for n in names]], atol=1e-3)

    exported = export(faces_run.checkpoint)
    meta = exported.metadata
    assert meta["task"] == "LandmarkRegressor" and meta["input_shape"] == [3, 48, 48]
    raw = np.stack([read_pixels(folder / n, meta["preprocessing"]["decode"]) for n in names])
    np.testing.assert_array_equal(raw, np.stack([images[int(n[4:7])] for n in names]).astype(np.float32))
    outputs = onnx_outputs(exported.path, raw)
    assert outputs.shape == (len(names), k, 2)
    nme_onnx = nme(outputs * 48.0, target)
    assert nme_onnx == pytest.approx(logged, abs=1e-4)
    np.testing.assert_allclose(outputs * 48.0, from_csv, atol=1e-3)
    assert_matching_export(exported, "test/nme", logged, len(names), tolerance=1e-4)
    show("landmarks demo / SyntheticFaces PNG", logged, nme_files, nme_onnx, "test/nme")
    assert math.isfinite(faces_run.test["test/nme_mean_shape"])


# -- 5. Reuters: an MLP on multi-hot rows, from the newswires' word ranks ---------------------------


def multi_hot(ranks: list[int], decode: dict) -> np.ndarray:
    """One newswire's word ranks as the exported graph's raw input row, built only from the metadata's ``decode``."""
    row = np.zeros(decode["num_words"], np.float32)
    if decode["start_char"] is not None:
        row[decode["start_char"]] = 1
    for rank in ranks:
        column = rank + decode["index_from"]
        if decode["skip_top"] <= column < decode["num_words"]:
            row[column] = 1
        elif decode["oov_char"] is not None:
            row[decode["oov_char"]] = 1
    return row


def test_reuters_onnx_on_word_ranks(tmp_path):
    """The test newswires' word ranks, encoded as the metadata says, give test/acc through the ONNX file."""
    from lightning_hw.data.fixtures.classification import write_reuters

    root = write_reuters(tmp_path / "data", n=400)
    trained = fit(
        "reuters.yaml", tmp_path / "runs",
        "--data.init_args.root", str(root),
        "--data.init_args.batch_size", "32",
        "--optimizer.init_args.lr", "0.01",
        "--trainer.max_epochs", "10",
    )  # fmt: skip
    logged = trained.test["test/acc"]
    assert logged >= 0.5  # chance 1/46
    exported = export(trained.checkpoint)
    decode = exported.metadata["preprocessing"]["decode"]
    assert (decode["index_from"], decode["start_char"], decode["oov_char"], decode["num_words"]) == (3, 1, 2, 1000)

    # Keras' split: the newswires shuffled with seed 113, the last 20% for testing.
    with np.load(root / "reuters.npz", allow_pickle=True) as arrays:  # the test's own file: safe here
        newswires, topics = arrays["x"], arrays["y"]
    order = np.arange(len(newswires))
    np.random.RandomState(113).shuffle(order)
    test = order[int(len(order) * 0.8):]
    rows = np.stack([multi_hot(newswires[i], decode) for i in test])
    predicted = onnx_outputs(exported.path, rows).argmax(axis=1)
    correct = count_correct(predicted.tolist(), topics[test].tolist())
    assert_same_accuracy(correct, len(test), logged, "ONNX on rows built from the metadata")
    # The conventions matter: the same ranks as columns (no offset, no start marker) lose the model.
    naive = np.zeros_like(rows)
    for k, i in enumerate(test):
        naive[k, [r for r in newswires[i] if r < decode["num_words"]]] = 1
    naive_correct = count_correct(onnx_outputs(exported.path, naive).argmax(axis=1).tolist(), topics[test].tolist())
    assert naive_correct < correct

    # predict from the same rows as a CSV (no header: 1,000 columns of 0/1).
    table = tmp_path / "newswires.csv"
    np.savetxt(table, rows, fmt="%d", delimiter=",")
    predicted_rows = predict(trained.checkpoint, table)
    names = exported.metadata["class_names"]
    csv_correct = count_correct([names.index(r["predicted"]) for r in predicted_rows], topics[test].tolist())
    assert_same_accuracy(csv_correct, len(test), logged, "predict from the CSV of encoded rows")
    show("reuters / word ranks", logged, csv_correct / len(test), correct / len(test), f"test/acc (ranks as columns: {naive_correct / len(test):.4f})")
