"""The deployment path: ``predict`` to CSV and ``export`` to ONNX, checked against PyTorch."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from lightning_hw.cli import main
from lightning_hw.data.digits import Digits


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _newest_predictions(run, name: str = "predictions.csv"):
    """The predictions of the newest ``predict`` on a run (each writes its own ``eval/predict-<time>/``)."""
    return sorted((run / "eval").glob(f"predict-*/{name}"))[-1]


def test_predict_writes_class_names_and_probabilities(tiny_args, trained_run):
    main(tiny_args("predict", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt")))
    rows = _rows(_newest_predictions(trained_run))
    probabilities = [f"prob_{d}" for d in range(10)]
    assert list(rows[0]) == ["id", "predicted", "predicted_index", *probabilities, "target", "target_class"]
    assert len(rows) == 179  # the Digits test split
    probs = np.array([[float(r[f"prob_{d}"]) for d in range(10)] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert [int(r["predicted_index"]) for r in rows] == probs.argmax(axis=1).tolist()
    assert all(r["predicted"] == r["predicted_index"] for r in rows)  # digit class names are "0".."9"
    accuracy = np.mean([r["predicted"] == r["target_class"] for r in rows])
    assert accuracy > 0.6  # the trained weights, not a fresh model (chance is 0.1)


def test_predict_from_csv_prepares_inputs_like_training(tiny_args, workdir, trained_run):
    ckpt = str(trained_run / "checkpoints" / "last.ckpt")
    main(tiny_args("predict", "--ckpt_path", ckpt))
    by_split = _rows(_newest_predictions(trained_run))[:4]
    raw = Digits().load_splits()["test"][0][:4].reshape(4, -1).numpy()  # unstandardised pixels
    table = workdir / "new_digits.csv"
    np.savetxt(table, raw, delimiter=",", header=",".join(f"px{i}" for i in range(64)), comments="", fmt="%.6f")
    main(tiny_args("predict", "--ckpt_path", ckpt, "--predict_from", str(table)))
    by_file = _rows(_newest_predictions(trained_run, "predictions-new_digits.csv"))
    assert [r["id"] for r in by_file] == ["0", "1", "2", "3"]
    for mine, reference in zip(by_file, by_split):
        assert mine["predicted"] == reference["predicted"]
        for d in range(10):
            assert float(mine[f"prob_{d}"]) == pytest.approx(float(reference[f"prob_{d}"]), abs=1e-4)


def test_predict_from_csv_with_wrong_width(tiny_args, workdir, trained_run, capsys):
    table = workdir / "two_columns.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        ckpt = str(trained_run / "checkpoints" / "last.ckpt")
        main(tiny_args("predict", "--ckpt_path", ckpt, "--predict_from", str(table)))
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: predict input {table} has 2 columns, the model takes 64 values per sample "
        "(input shape (1, 8, 8)); keep only the input columns (drop ids and labels)"
    )


def test_export_onnx_takes_raw_digits_and_matches_pytorch(trained_run, workdir, capsys):
    import onnx
    import onnxruntime as ort
    from sklearn.datasets import load_digits

    from lightning_hw.checkpoints import build_datamodule, build_task, load_checkpoint
    from lightning_hw.errors import ExportError
    from lightning_hw.export import RawInputModel, onnx_runner, score_test_split

    ckpt = trained_run / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(ckpt), "--output", str(workdir / "digits.onnx")])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    found = re.search(
        r"test/acc on the Digits test split \(179 samples\): PyTorch (\S+), onnxruntime on the raw samples (\S+) "
        r"\(max output difference (\S+)\)",
        printed,
    )
    assert found, printed
    assert found.group(1) == found.group(2)
    assert float(found.group(3)) < 1e-4

    model = onnx.load(str(workdir / "digits.onnx"))
    metadata = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert metadata["class_names"] == [str(d) for d in range(10)]
    assert metadata["input_shape"] == [1, 8, 8]
    assert metadata["preprocessing"]["divide_by"] == 16.0 and metadata["preprocessing"]["in_graph"] is True
    assert metadata["source_checkpoint"] == "quickstart/trained/checkpoints/last.ckpt"
    # The graph takes scikit-learn's raw 0..16 intensities and gives what PyTorch gives after preprocessing.
    raw = torch.as_tensor(load_digits().images[:50, None], dtype=torch.float32)
    task = build_task(ckpt, load_checkpoint(ckpt))
    datamodule = build_datamodule(trained_run / "config.yaml")
    datamodule.setup("test")
    session = ort.InferenceSession(str(workdir / "digits.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": raw.numpy()})
    np.testing.assert_allclose(logits, RawInputModel(datamodule.preprocess, task)(raw).detach().numpy(), atol=1e-5)

    # The check can fail: a model with other weights does not match the exported file.
    with torch.no_grad():
        task.net.layers[-1].bias.add_(1.0)
    with pytest.raises(ExportError, match="differs from PyTorch by up to 1"):
        score_test_split(task, datamodule, onnx_runner(workdir / "digits.onnx"), bare=False)
