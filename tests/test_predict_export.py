"""The deployment path: ``predict`` to CSV and ``export`` to ONNX, checked against PyTorch."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
import torch

from lightning_hw.cli import main
from lightning_hw.data.datasets.digits import Digits
from lightning_hw.errors import DataError
from reliability_helpers import error_of, output_of
from lightning_hw.cli import warm_start


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
    """One line, and no "Evaluation directory: ..." naming a directory the failure then removed (it was said first)."""
    table = workdir / "two_columns.csv"
    table.write_text("a,b\n1,2\n")
    evaluations = sorted((trained_run / "eval").glob("*")) if (trained_run / "eval").exists() else []
    ckpt = str(trained_run / "checkpoints" / "last.ckpt")
    for source, error in (
        (table, f"error: predict input {table} has 2 input columns, the model takes 64 values per sample "
                "(input shape (1, 8, 8)); columns: 'a', 'b'; keep only the input columns (drop ids and labels)"),
        (workdir / "missing.csv", f"error: predict input not found: {workdir / 'missing.csv'}"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(tiny_args("predict", "--ckpt_path", ckpt, "--predict_from", str(source)))
        assert exit_info.value.code == 1
        out, err = capsys.readouterr()
        assert err.strip().splitlines()[-1] == error
        assert "directory" not in out + err
        assert (sorted((trained_run / "eval").glob("*")) if (trained_run / "eval").exists() else []) == evaluations


def test_export_onnx_takes_raw_digits_and_matches_pytorch(trained_run, workdir, capsys):
    import onnx
    import onnxruntime as ort
    from sklearn.datasets import load_digits

    from lightning_hw.checkpoints import build_datamodule, build_task, load_checkpoint
    from lightning_hw.errors import ExportError
    from lightning_hw.deploy.export import RawInputModel, onnx_runner, score_test_split

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


# -- what a new user got wrong (review of the deployment path) --------------------------------------


def test_export_takes_its_config_as_c_and_one_only(trained_run, workdir, capsys):
    """``-c`` for ``--config``, as fit, test and predict take it, was "unknown option -c"; a missing
    file given so was "no config.yaml next to its run" (the run has one); several (fit stacks
    them) used the last alone without a word."""
    ckpt, config = str(trained_run / "checkpoints" / "last.ckpt"), str(trained_run / "config.yaml")
    printed = output_of("export", "--ckpt_path", ckpt, "-c", config, "--output", str(workdir / "c.onnx"))
    found = re.search(r"test/acc on the Digits test split \(179 samples\): PyTorch (\S+), onnxruntime on the raw samples (\S+) ", printed)
    assert found and found.group(1) == found.group(2), printed
    code, line = error_of(["export", "--ckpt_path", ckpt, "-c", str(workdir / "absent.yaml")], capsys)
    assert (code, line) == (2, f"error: config {workdir / 'absent.yaml'} not found; pass --config with the config {ckpt} was "
                               "trained with (default: its run's config.yaml)")
    code, line = error_of(["export", "--ckpt_path", ckpt, "--config", config, f"-c{config}"], capsys)
    assert code == 2 and line.startswith(f"error: export takes one --config (-c), got 2 ({config}, {config}): give the run's config.yaml")
    assert not list(trained_run.glob("eval/export-*"))  # nothing exported by the refused ones


def test_export_of_an_outside_checkpoint_from_stacked_configs_says_how_to_make_them_one(trained_run, workdir, capsys):
    """A checkpoint from outside a run has no config.yaml to give: the line said to give the run's
    and no more, though the configs it was trained with can be resolved into one file."""
    outside = workdir / "outside.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", outside)
    config, preset = str(trained_run / "config.yaml"), str(Path(__file__).parents[1] / "configs" / "trainer" / "cpu.yaml")
    code, line = error_of(["export", "--ckpt_path", str(outside), "-c", config, "-c", preset], capsys)
    suggested = f"python -m lightning_hw fit -c {config} -c {preset} --print_config > config.yaml"
    assert code == 2 and f"for a checkpoint from outside a run, resolve them into one with `{suggested}` and give that" in line, line
    (workdir / "config.yaml").write_text(output_of("fit", "-c", config, "-c", preset, "--print_config"))
    printed = output_of("export", "--ckpt_path", str(outside), "-c", str(workdir / "config.yaml"), "--output", str(workdir / "o.onnx"))
    found = re.search(r"test/acc on the Digits test split \(179 samples\): PyTorch (\S+), onnxruntime on the raw samples (\S+) ", printed)
    assert found and found.group(1) == found.group(2), printed


def test_export_into_another_runs_directory_is_refused(trained_run, workdir, capsys):
    """A digits model's ONNX file put into another run's folder would be taken for that run's model."""
    other = workdir / "runs" / "quickstart" / "other"
    (other / "checkpoints").mkdir(parents=True)
    (other / "status.json").write_text((trained_run / "status.json").read_text())
    for output in (other, other / "checkpoints" / "model.onnx"):
        code, line = error_of(["export", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"),
                               "--output", str(output)], capsys)
        assert code == 2
        assert line.startswith(f"error: --output {output} is inside {other}, another run's record")
    assert sorted(p.name for p in other.rglob("*")) == ["checkpoints", "status.json"]


def test_export_never_replaces_a_file_given_as_output(trained_run, workdir, capsys):
    precious = workdir / "model.onnx"
    precious.write_text("precious")
    code, line = error_of(["export", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"),
                                  "--output", str(precious)], capsys)
    assert code != 0 and "exists and an export never replaces a file" in line
    assert precious.read_text() == "precious"
    folder = workdir / "exports"
    folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), "--output", str(folder)])
    assert exit_info.value.code == 0
    assert [p.name for p in folder.iterdir()] == ["last.onnx"]  # a folder takes <checkpoint>.onnx, nothing partial


@pytest.mark.parametrize("command", ["export", "predict"])
def test_a_config_that_prepares_inputs_otherwise_is_refused(command, trained_run, workdir, capsys):
    """The checkpoint records standardised inputs; a config without standardisation would score another model."""
    config = workdir / "no_standardize.yaml"
    config.write_text((trained_run / "config.yaml").read_text().replace("standardize: true", "standardize: false"))
    before = files_of(trained_run)
    args = [command, "--config", str(config), "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt")]
    if command == "predict":
        args += ["--trainer.enable_progress_bar", "false", "--run.wandb", "disabled"]
    code, line = error_of(args, capsys)
    assert code != 0
    assert "trained on inputs prepared otherwise than this Digits prepares them (normalization 'per feature'" in line
    assert files_of(trained_run) == before  # nothing left behind


@pytest.mark.parametrize("command", ["test", "predict"])
def test_a_task_setting_the_checkpoint_replaces_is_said(command, trained_run, workdir):
    """``--model.init_args.head`` beside a checkpoint trained with another head changed nothing, silently."""
    from lightning_hw.checkpoints import CheckpointSettingsWarning

    ckpt = str(trained_run / "checkpoints" / "last.ckpt")
    quiet = ("--run.wandb", "disabled", "--trainer.enable_progress_bar", "false")
    with pytest.warns(CheckpointSettingsWarning, match=r"not these: head 'sigmoid_bce' -> 'softmax_ce' \(other settings need a run trained from scratch"):
        main([command, "--ckpt_path", ckpt, "--model.init_args.head", "sigmoid_bce", *quiet])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSettingsWarning)  # the run's own settings replace nothing
        main([command, "--ckpt_path", ckpt, "--model.init_args.head", "softmax_ce", *quiet])


def test_a_warning_of_ours_is_one_warning_line(trained_run):
    """It came as ``/…/site-packages/lightning/pytorch/cli.py:616: the task is rebuilt…``: a library's file, not advice."""
    import sys

    ckpt = str(trained_run / "checkpoints" / "last.ckpt")
    result = warm_start.run(
        [sys.executable, "-m", "lightning_hw", "test", "--ckpt_path", ckpt, "--model.init_args.head", "sigmoid_bce",
         "--run.wandb", "disabled", "--trainer.enable_progress_bar", "false"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    said = [line for line in result.stderr.splitlines() if "the task is rebuilt" in line]
    assert said == [
        "warning: the task is rebuilt with the settings last.ckpt was trained with, not these: head 'sigmoid_bce' -> "
        "'softmax_ce' (other settings need a run trained from scratch, without --ckpt_path)"
    ]
    assert ".py:" not in result.stderr  # no file and line of ours or a library's, and no repeated source line


def test_predict_without_a_run_config_says_what_to_pass(trained_run, workdir, capsys):
    loose = workdir / "last.ckpt"
    loose.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes())
    code, line = error_of(["predict", "--ckpt_path", str(loose)], capsys)
    assert code != 0
    assert line == (
        f"error: {loose} lies in no run (runs/<group>/<name>/checkpoints/), so the data and net it was trained with are "
        f"unknown; run: python -m lightning_hw predict --config <the config it was trained with> --ckpt_path {loose}"
    )


def test_digits_images_larger_than_8x8_are_block_averaged(workdir):
    """A 32x32 bitmap, as the UCI digits were drawn, shrinks to its 8x8 block counts (not a smoothed resize)."""
    from PIL import Image

    raw = Digits().load_tensors()[0][:6, 0].numpy()  # intensities 0..16
    for i, image in enumerate(raw):
        big = np.kron(np.round(image * 255 / 16), np.ones((4, 4))).astype(np.uint8)
        Image.fromarray(big, "L").save(workdir / f"d{i}.png")
    ids, read = Digits().read_inputs(workdir)
    assert ids == [f"d{i}.png" for i in range(6)]
    np.testing.assert_allclose(read[:, 0].numpy(), raw, atol=16 / 255)


def test_table_columns_are_taken_by_name_in_any_order_and_case(workdir):
    from lightning_hw.data.fixtures.classification import write_mobile_price
    from lightning_hw.data.datasets.mobile_price import MOBILE_PRICE_COLUMNS, MobilePrice

    write_mobile_price(workdir / "data")
    dm = MobilePrice(root=str(workdir / "data"), download=False)
    dm.setup()
    raw = dm.raw_data["test"][0][:3].numpy()
    order = list(reversed(MOBILE_PRICE_COLUMNS))
    table = workdir / "kaggle_test.csv"
    rows = [",".join(["id", "price_range", *(c.upper() for c in order)])]
    rows += [",".join([f"p{i}", "9", *(f"{raw[i][MOBILE_PRICE_COLUMNS.index(c)]:g}" for c in order)]) for i in range(3)]
    table.write_text("\n".join(rows) + "\n")
    ids, values = dm.read_inputs(table)
    assert ids == ["p0", "p1", "p2"]
    np.testing.assert_allclose(values.numpy(), raw)
    table.write_text(table.read_text().replace("RAM", "MEMORY"))
    with pytest.raises(DataError, match="lacks the feature column\\(s\\) ram"):
        dm.read_inputs(table)


def test_values_in_other_units_get_a_warning(workdir):
    dm = Digits(standardize=True)
    dm.setup()
    table = workdir / "scaled.csv"
    np.savetxt(table, dm.raw_data["test"][0][:5].reshape(5, -1).numpy() / 16, delimiter=",", fmt="%.4f")
    dm.predict_from(table)
    with pytest.warns(UserWarning, match="the values to predict run from 0 to 1, the training data's from 0 to 16"):
        dm.predict_dataloader()


def test_ctrl_c_during_export_is_one_line_and_leaves_nothing(trained_run, monkeypatch, capsys):
    from lightning_hw.deploy import export

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export_onnx", interrupted)
    before = files_of(trained_run)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt")])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted by SIGINT (Ctrl-C): export stopped"
    assert files_of(trained_run) == before  # no export directory left


def export_patched_by(script: str, run: Path) -> subprocess.CompletedProcess:
    """``python -c SCRIPT export --ckpt_path RUN/checkpoints/last.ckpt``: the CLI in a process of its own, patched by ``script``."""
    import sys

    return warm_start.run(
        [sys.executable, "-c", script, "export", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")],
        capture_output=True, text=True, timeout=120,
    )


def files_of(run: Path) -> list[Path]:
    """Every path below ``run``, relative to it, sorted."""
    return sorted(p.relative_to(run) for p in run.rglob("*"))


@pytest.mark.parametrize("step", ["export_onnx", "add_metadata"])
def test_sigterm_during_export_is_one_line_and_leaves_nothing(trained_run, step):
    """SIGTERM (a scheduler, ``kill``) used to end export at once: exit -15, no message, an empty eval/export-<time>/."""
    # The CLI in a process of its own; at ``step`` it gets SIGTERM, as from outside, and waits for it.
    script = (
        "import os, signal, sys, time\n"
        "from lightning_hw.deploy import export\n"
        f"def stopped(*args, **kwargs):\n    os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)\n"
        f"export.{step} = stopped\n"
        "from lightning_hw.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    before = files_of(trained_run)
    result = export_patched_by(script, trained_run)
    assert result.returncode == 143, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "interrupted by SIGTERM: export stopped; nothing was written"
    assert files_of(trained_run) == before  # no export directory, no .partial


def test_a_sigterm_that_arrives_in_a_finalizer_still_stops_the_export(trained_run):
    """A SIGTERM whose handler ran inside a finalizer (a ``__del__`` or weakref callback) was lost:
    Python printed "Exception ignored in: ... Traceback ... RunInterrupted: SIGTERM", and the export
    went on, named its file and exited 0."""
    script = (
        "import os, signal, sys, time\n"
        "from lightning_hw.deploy import export\n"
        "class Dropped:\n    def __del__(self):\n        os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.2)\n"
        "add_metadata = export.add_metadata\n"
        "def finalized_then_added(*args, **kwargs):\n    Dropped()\n    return add_metadata(*args, **kwargs)\n"
        "export.add_metadata = finalized_then_added\n"
        "from lightning_hw.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    before = files_of(trained_run)
    result = export_patched_by(script, trained_run)
    assert result.returncode == 143, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "interrupted by SIGTERM: export stopped; nothing was written"
    assert "Traceback" not in result.stderr
    assert files_of(trained_run) == before


@pytest.mark.parametrize("signum", [2, 15])
def test_a_signal_during_the_exports_test_split_check_is_one_line_and_leaves_nothing(trained_run, signum):
    """Ctrl-C while onnxruntime scores the test split (the longest part for a big net) ended export with exit 1 and no word.

    The check runs in Lightning's test loop, whose handler turns a KeyboardInterrupt into a silent
    ``sys.exit(1)`` (and ignores Ctrl-C from then on).
    """
    script = (
        "import os, signal, sys, time\n"
        "from lightning_hw.deploy import export\n"
        "original = export.onnx_runner\n"
        "def signalled_runner(path):\n"
        "    run = original(path)\n"
        f"    def signalled(x):\n        os.kill(os.getpid(), {signum}); time.sleep(30); return run(x)\n"
        "    return signalled\n"
        "export.onnx_runner = signalled_runner\n"
        "from lightning_hw.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    before = files_of(trained_run)
    result = export_patched_by(script, trained_run)
    assert result.returncode == 128 + signum, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    name = "SIGINT (Ctrl-C)" if signum == 2 else "SIGTERM"
    assert result.stderr.strip().splitlines()[-1] == f"interrupted by {name}: export stopped; nothing was written"
    assert files_of(trained_run) == before  # no export directory, no .partial


def test_sigterm_once_the_export_is_written_lets_it_finish(trained_run):
    """Once the .onnx and export.json are in place a signal no longer stops it: "nothing was written" would be untrue."""
    import json
    script = (
        "import os, signal, sys, time\n"
        "from lightning_hw.deploy import export\n"
        "original = export.export_checkpoint\n"
        "def signalled_once_written(args, written, *still_wanted):\n"
        "    def then():\n        written(); os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.5)\n"
        "    return original(args, then, *still_wanted)\n"
        "export.export_checkpoint = signalled_once_written\n"
        "from lightning_hw.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    before = set((trained_run / "eval").glob("export-*"))
    result = export_patched_by(script, trained_run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SIGTERM: the export is complete; finishing" in result.stderr and "nothing was written" not in result.stderr
    (directory,) = set((trained_run / "eval").glob("export-*")) - before
    assert sorted(p.name for p in directory.iterdir()) == ["export.json", "last.onnx"]
    assert json.loads((directory / "export.json").read_text())["file"] == "last.onnx"


@pytest.mark.parametrize("command", ["predict", "test"])
def test_a_checkpoint_given_before_the_runs_config_is_used(command, trained_run, capsys):
    """The run's saved ``config.yaml`` holds ``ckpt_path: null``; a --config after --ckpt_path must not erase it.

    The error advice "run with --config runs/<group>/<name>/config.yaml" invites appending the
    config after the checkpoint; the command then said "add --ckpt_path", which was there.
    """
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    args = [command, "--ckpt_path", str(ckpt), "--config", str(trained_run / "config.yaml"),
            "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled"]
    main(args)  # returns: before, it stopped with "add --ckpt_path"
    newest = sorted((trained_run / "eval").glob(f"{command}-*"))[-1]
    assert (newest / ("predictions.csv" if command == "predict" else "metrics.csv")).is_file()
    assert yaml.safe_load((newest / f"config-{command}.yaml").read_text())["ckpt_path"] == str(ckpt)


@pytest.mark.parametrize("command", ["predict", "test", "validate"])
def test_a_mistyped_checkpoint_in_a_run_is_said_to_be_missing(command, trained_run, capsys):
    """Without --config, a checkpoint path with a typo used to end in "the following arguments are required: data, model"."""
    typo = trained_run / "checkpoints" / "lats.ckpt"
    code, line = error_of([command, "--ckpt_path", str(typo)], capsys)
    assert code == 2
    present = ", ".join(sorted(p.name for p in typo.parent.glob("*.ckpt")))
    assert line == f"error: checkpoint not found: {typo} ({typo.parent} has: {present})"


def test_export_to_a_missing_folder_is_refused_not_written_as_a_file(trained_run, workdir, capsys):
    """``--output exports/`` names a folder; when it does not exist the export used to become a file called ``exports``."""
    code, line = error_of(["export", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"),
                           "--output", "exports/"], capsys)
    assert code == 2
    assert line == "error: the folder --output exports/ does not exist; create it first"
    assert list(workdir.iterdir()) == []


def test_predictions_from_the_current_folder_are_named_after_it(tiny_args, workdir, trained_run, monkeypatch):
    """``--predict_from .`` used to write ``predictions-.csv``; the file takes the folder's name, as for any other."""
    from PIL import Image

    photos = workdir / "new_digits"
    photos.mkdir()
    for i, image in enumerate(Digits().load_tensors()[0][:3, 0].numpy()):
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), "L").save(photos / f"d{i}.png")
    monkeypatch.chdir(photos)
    main(tiny_args("predict", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), "--predict_from", "."))
    rows = _rows(_newest_predictions(trained_run, "predictions-new_digits.csv"))
    assert [r["id"] for r in rows] == ["d0.png", "d1.png", "d2.png"]


@pytest.fixture
def mobile_run(workdir):
    """A tiny trained E7 run (configs/mobile_price.yaml on a fixture in Kaggle's train.csv format)."""
    from conftest import REPO, tiny_run_args
    from lightning_hw.data.fixtures.classification import write_mobile_price

    write_mobile_price(workdir / "data")
    args = tiny_run_args("fit", REPO / "configs" / "mobile_price.yaml", workdir / "runs",
                         "--data.init_args.root", str(workdir / "data"), "--run.name", "m")
    main(args)
    return workdir / "runs" / "mobile_price" / "m"


def test_predict_refuses_a_feature_column_given_twice(mobile_run, workdir, capsys):
    """``RAM`` and ``ram`` are one feature to a reader that ignores case: taking the first would be a guess."""
    from lightning_hw.data.datasets.mobile_price import MOBILE_PRICE_COLUMNS

    table = workdir / "phones.csv"
    header = [*MOBILE_PRICE_COLUMNS, "RAM"]
    table.write_text(",".join(header) + "\n" + ",".join(["1"] * 20 + ["3000"]) + "\n")
    before = sorted(p.relative_to(mobile_run) for p in mobile_run.rglob("*"))
    ckpt = str(mobile_run / "checkpoints" / "last.ckpt")
    code, line = error_of(["predict", "--ckpt_path", ckpt, "--predict_from", str(table)], capsys)
    assert code == 1
    assert line == (
        f"error: predict input {table} has the feature column(s) ram (14, 21) more than once "
        "(names are read ignoring case); keep one column per feature"
    )
    assert sorted(p.relative_to(mobile_run) for p in mobile_run.rglob("*")) == before  # no evaluation left behind


def test_predict_warns_when_headerless_table_columns_come_in_another_order(mobile_run, workdir):
    """Without a header the columns are taken by position: swapped ones were predicted from silently.

    The phones' columns reversed kept every value within the table's overall 0-3,700 range, so
    the range check of all values together said nothing while the predictions were another model's.
    """
    from lightning_hw.data.datasets.mobile_price import MOBILE_PRICE_COLUMNS, MobilePrice

    dm = MobilePrice(root=str(workdir / "data"), download=False)
    dm.setup()
    raw = dm.raw_data["test"][0].numpy()
    table = workdir / "phones.csv"
    np.savetxt(table, raw[:, ::-1], delimiter=",", fmt="%g")
    ckpt = str(mobile_run / "checkpoints" / "last.ckpt")
    args = ["predict", "--ckpt_path", ckpt, "--predict_from", str(table), "--run.wandb", "disabled"]
    with pytest.warns(UserWarning, match="far outside the training data's in 2 column\\(s\\): clock_speed [0-9]+ to 19 \\(training: 0.5 to 3\\)") as caught:
        main(args)
    (message,) = [str(w.message) for w in caught if "far outside" in str(w.message)]
    assert message.endswith("A header row naming them makes their order not matter")
    # The same rows in the file's order, and reversed under a header, are no reason to warn.
    np.savetxt(table, raw, delimiter=",", fmt="%g")
    header = ",".join(reversed(MOBILE_PRICE_COLUMNS))
    (workdir / "named.csv").write_text(header + "\n" + "\n".join(",".join(f"{v:g}" for v in row[::-1]) for row in raw) + "\n")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*far outside the training data's")
        main(args)
        main([*args[:-3], str(workdir / "named.csv"), *args[-2:]])


@pytest.mark.parametrize("command", ["predict", "export"])
def test_another_datamodule_class_prepares_inputs_with_the_checkpoints_statistics(command, mobile_run, workdir):
    """Lightning restores a datamodule's state only under its own class name: another class used its own mean/std."""
    from lightning_hw.checkpoints import build_task, load_checkpoint
    from lightning_hw.data.fixtures.classification import write_mobile_price
    from reliability_helpers import OtherPhones

    write_mobile_price(workdir / "other", seed=1)  # other phones: other training statistics
    ckpt = mobile_run / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(ckpt)
    trained = checkpoint["MobilePrice"]["preprocess"]["statistics"]
    other = OtherPhones(root=str(workdir / "other"), download=False)
    other.setup()
    assert not torch.allclose(other.preprocess.state_dict()["mean"], trained["mean"])  # else the test says nothing
    task = build_task(ckpt, checkpoint).eval()
    with torch.no_grad():
        expected = task((other.raw_data["test"][0] - trained["mean"]) / trained["std"]).softmax(-1).numpy()
    args = ["--ckpt_path", str(ckpt), "--data", "reliability_helpers.OtherPhones",
            "--data.init_args.root", str(workdir / "other"), "--run.wandb", "disabled"]
    with pytest.warns(UserWarning, match="differ from the checkpoint's \\(the model was trained on MobilePrice's data\\)"):
        if command == "predict":
            main(["predict", *args])
        else:
            config = yaml.safe_load((mobile_run / "config.yaml").read_text())
            config["data"]["class_path"] = "reliability_helpers.OtherPhones"
            config["data"]["init_args"]["root"] = str(workdir / "other")
            (workdir / "other.yaml").write_text(yaml.safe_dump(config))
            with pytest.raises(SystemExit) as exit_info:
                main(["export", "--ckpt_path", str(ckpt), "--output", str(workdir / "phones.onnx"),
                      "--config", str(workdir / "other.yaml")])
            assert exit_info.value.code == 0
    if command == "predict":
        rows = _rows(_newest_predictions(mobile_run))
        got = np.array([[float(r[f"prob_{name}"]) for name in other.class_names] for r in rows])
        np.testing.assert_allclose(got, expected, atol=1e-5)
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(workdir / "phones.onnx"))
        raw = other.raw_data["test"][0].numpy()
        outputs = session.run(None, {session.get_inputs()[0].name: raw})[0]
        np.testing.assert_allclose(torch.tensor(outputs).softmax(-1).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("command", ["predict", "test"])
def test_an_evaluation_scores_the_checkpoint_it_records_while_training_rewrites_it(command, trained_run, workdir, monkeypatch, capsys):
    """A training process may replace ``last.ckpt`` while ``predict`` or ``test`` runs on it (the run is not locked for that).

    The command read the file once for its settings and the epoch it records, and Lightning read
    it again to restore the weights: a write in between scored one epoch's weights under
    another's name. Here the "training process" writes a checkpoint of a model that learned
    nothing (uniform probabilities) right after the command's first read.
    """
    import shutil

    from lightning_hw.checkpoints import load_checkpoint
    from lightning_hw.cli import parser

    run = workdir / "runs" / "quickstart" / "busy"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval"))
    last = run / "checkpoints" / "last.ckpt"
    recorded = torch.load(last, weights_only=True)
    newer = {**recorded, "epoch": recorded["epoch"] + 1, "global_step": recorded["global_step"] + 7}
    newer["state_dict"] = {k: torch.zeros_like(v) for k, v in recorded["state_dict"].items()}
    torch.save(newer, workdir / "next-epoch.ckpt")

    def read_then_training_writes(path, *args, **kwargs):
        checkpoint = load_checkpoint(path, *args, **kwargs)
        if Path(path) == last and (workdir / "next-epoch.ckpt").exists():
            (workdir / "next-epoch.ckpt").replace(last)  # atomic, as SafeCheckpointIO saves
        return checkpoint

    monkeypatch.setattr(parser, "load_checkpoint", read_then_training_writes)
    main([command, "--ckpt_path", str(last), "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled"])
    assert not (workdir / "next-epoch.ckpt").exists()  # the "training process" did write
    said = re.search(r"weights: \S+; epoch (\d+), step (\d+)\)", capsys.readouterr().out)
    assert said and (int(said.group(1)), int(said.group(2))) == (recorded["epoch"], recorded["global_step"])
    if command == "test":
        (scores,) = _rows(sorted((run / "eval").glob("test-*/metrics.csv"))[-1])
        assert float(scores["test/acc"]) > 0.6  # chance, 0.1, from the next epoch's zeros
        return
    rows = _rows(_newest_predictions(run))
    probabilities = np.array([[float(r[f"prob_{d}"]) for d in range(10)] for r in rows])
    assert not np.allclose(probabilities, 0.1)  # the weights it says it scored, not the next epoch's zeros
    assert np.mean([r["predicted"] == r["target_class"] for r in rows]) > 0.6


@pytest.mark.parametrize("keyword", ["last", "best"])
def test_export_of_a_checkpoint_keyword_names_the_file_to_give(keyword, trained_run, capsys):
    """``predict --config <run>/config.yaml --ckpt_path last`` works; export said only "checkpoint not found: last"."""
    code, line = error_of(["export", "--config", str(trained_run / "config.yaml"), "--ckpt_path", keyword], capsys)
    (wanted,) = sorted((trained_run / "checkpoints").glob("last.ckpt" if keyword == "last" else "best-*.ckpt"))
    assert code == 2
    assert line == f"error: export takes a checkpoint file, not '{keyword}': give --ckpt_path {wanted}"
    code, line = error_of(["export", "--ckpt_path", keyword], capsys)  # no run to name the file from
    assert line == (
        f"error: export takes a checkpoint file, not '{keyword}': give --ckpt_path "
        f"runs/<group>/<name>/checkpoints/{'last.ckpt' if keyword == 'last' else 'best-epochNNN.ckpt'}"
    )


def test_the_predictions_line_is_not_glued_to_the_progress_bar(trained_run, capsys):
    """It was printed while the bar was still open: ``Predicting DataLoader 0: 100%|...| 3/3 [...]Predictions: 179 rows ...``."""
    main(["predict", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), "--trainer.enable_progress_bar", "true"])
    out = capsys.readouterr().out
    lines = re.split(r"[\r\n]", out)
    assert any(line.startswith("Predicting DataLoader 0: 100%") for line in lines), out  # the bar was drawn
    said = [line for line in lines if "Predictions: " in line]
    assert said and all(line.startswith("Predictions: 179 rows written to ") for line in said), said


def test_a_sample_with_a_missing_or_text_value_says_what_to_do(trained_run, workdir, capsys):
    """The line named the cell ("line 3, column 2 is '', not a finite number") but not what to do about it."""
    ckpt = str(trained_run / "checkpoints" / "last.ckpt")
    row = ["0"] * 64
    fill_in = "the model needs a number in every input column: fill it in, or leave that row out"
    for name, second_row, said in (
        ("missing", ["0", "", *row[2:]], "line 2, column 2 is '', not a finite number"),
        ("text", ["0", "n/a", *row[2:]], "line 2, column 2 is 'n/a', not a finite number"),
        ("short", row[:63], "line 2 has 63 fields, the first row has 64; give every row the same columns"),
    ):
        table = workdir / f"{name}.csv"
        table.write_text(",".join(row) + "\n" + ",".join(second_row) + "\n")
        code, line = error_of(["predict", "--ckpt_path", ckpt, "--predict_from", str(table)], capsys)
        assert code == 1
        end = said if name == "short" else f"{said}; {fill_in}"
        assert line == f"error: predict input {table}: {end}"
    table = workdir / "first.csv"
    table.write_text(",".join(["0", "", *row[2:]]) + "\n")
    code, line = error_of(["predict", "--ckpt_path", ckpt, "--predict_from", str(table)], capsys)
    assert line == f"error: predict input {table}: line 1, column 2 is empty, not a number; {fill_in}"


def test_an_unreadable_image_names_the_predict_option_that_skips_it(trained_run, workdir, capsys):
    """It said "(or set on_unreadable to skip)", which reads as a datamodule setting no datamodule has."""
    from PIL import Image

    folder = workdir / "new"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    (folder / "b.png").write_text("not an image")
    args = ["predict", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), "--predict_from", str(folder)]
    code, line = error_of(args, capsys)
    assert code == 1
    assert line.startswith(f"error: cannot read image {folder / 'b.png'}: ") and line.endswith(
        "; delete or replace the file (or add --on_unreadable skip)"
    ), line
    main([*args, "--on_unreadable", "skip", "--trainer.enable_progress_bar", "false"])  # what the line says works
    assert [r["id"] for r in _rows(_newest_predictions(trained_run, "predictions-new.csv"))] == ["a.png"]


def test_a_failed_export_never_replaces_an_earlier_failed_file(trained_run, tmp_path, monkeypatch, capsys):
    """The second failed export to one --output had replaced the first one's ``.failed.onnx``."""
    from lightning_hw.deploy import export

    monkeypatch.setattr(export, "METRIC_TOLERANCE", -1.0)  # every check fails, as an unfaithful export would
    output = tmp_path / "model.onnx"
    args = ["export", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), "--output", str(output)]
    lines = [error_of(args, capsys)[1] for _ in range(2)]
    kept = [tmp_path / "model.failed.onnx", tmp_path / "model.failed-1.onnx"]
    assert [line.endswith(f"(file kept for inspection: {path})") for line, path in zip(lines, kept)] == [True, True]
    assert sorted(tmp_path.iterdir()) == sorted(kept)  # both kept, no model.onnx, no .partial


def test_an_export_never_replaces_an_output_created_while_it_ran(trained_run, tmp_path, monkeypatch, capsys):
    """Two exports to one --output: the name is checked first, but the one that finished second replaced the other's file."""
    from lightning_hw.deploy import export

    output = tmp_path / "model.onnx"
    writes = export.export_onnx

    def and_another_export_finishes(*args, **kwargs):
        writes(*args, **kwargs)
        output.write_bytes(b"the other export's model")

    monkeypatch.setattr(export, "export_onnx", and_another_export_finishes)
    code, line = error_of(["export", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), "--output", str(output)], capsys)
    assert code == 1
    assert line.startswith(f"error: {output} was created by another process while this export ran")
    assert line.endswith(f"this export is kept as {tmp_path / 'model.failed.onnx'}")
    assert output.read_bytes() == b"the other export's model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.failed.onnx", "model.onnx"]
