"""Evaluation under DDP on two CPU processes (gloo): the numbers a one-process evaluation gives.

The quickstart's test split has 179 samples: two processes hold 90 and 89 of them, so anything
that pads the shorter shard, or counts every process's samples once per process, shows.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_hw.data.epoch_order import TensorBatchLoader
from lightning_hw.data.streaming import EvaluationShard
from lightning_hw.runs import naming
from reliability_helpers import output_of, tiny_fit_args
from lightning_hw.cli import warm_start

TESTS = Path(__file__).resolve().parent
DDP = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")
ONE = ("--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto")


def ddp_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m lightning_hw ARGS`` as a user starts it (Lightning then starts the second process)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", naming.RUN_DIR_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    proc = warm_start.run(
        [sys.executable, "-m", "lightning_hw", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def newest_eval(run: Path, stage: str) -> Path:
    return max((run / "eval").glob(f"{stage}-*"), key=lambda p: p.stat().st_mtime_ns)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """A quickstart run trained by two DDP processes, tested after fit on its whole test split."""
    root = tmp_path_factory.mktemp("ddp")
    proc = ddp_cli(*tiny_fit_args(root, "--run.name", "ddp", "--trainer.limit_test_batches", "1.0", *DDP), cwd=root)
    (root / "fit-stderr.txt").write_text(proc.stderr)  # what the user saw, for the tests
    return root / "runs" / "quickstart" / "ddp"


@pytest.fixture(scope="module")
def one_process_test(ddp_run) -> Path:
    """``test`` of the run's best checkpoint in one process: the reference numbers (its eval directory)."""
    (best,) = (ddp_run / "checkpoints").glob("best-*.ckpt")
    output_of("test", "--ckpt_path", str(best), *ONE)
    return newest_eval(ddp_run, "test")


@pytest.mark.slow
def test_ddp_confusion_counts_each_test_sample_once(ddp_run, one_process_test):
    """Each process held every process's predictions and torchmetrics summed them again: all counts doubled."""
    reference = rows(one_process_test / "most_confused.csv")
    (test,) = [r for r in rows(one_process_test / "metrics.csv") if r["test/acc"]]
    errors = round((1 - float(test["test/acc"])) * 179)
    assert errors > 0 and sum(int(r["count"]) for r in reference) == errors
    assert rows(ddp_run / "most_confused.csv") == reference
    # Gathering the counts warned (twice) that torch.distributed.nn.functional.all_gather is deprecated: Lightning's to change.
    printed = (ddp_run.parents[2] / "fit-stderr.txt").read_text()
    assert "is deprecated" not in printed, printed[-3000:]


def test_evaluation_shares_hold_each_sample_once():
    """Training pads the shares to equal size (DDP's processes take the same steps); evaluation must not."""
    data = (torch.arange(7),)
    shares = [torch.cat([b[0] for b in TensorBatchLoader(data, 2, num_replicas=3, rank=r, pad=False)]) for r in range(3)]
    assert [s.tolist() for s in shares] == [[0, 3, 6], [1, 4], [2, 5]]
    padded = [torch.cat([b[0] for b in TensorBatchLoader(data, 2, num_replicas=3, rank=r)]) for r in range(3)]
    assert [s.tolist() for s in padded] == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]
    streamed = [list(EvaluationShard(list(range(7)), 3, r)) for r in range(3)]
    assert streamed == [s.tolist() for s in shares] and [len(EvaluationShard(list(range(7)), 3, r)) for r in range(3)] == [3, 2, 2]


@pytest.mark.slow
def test_ddp_test_metrics_are_those_of_one_process(ddp_run, one_process_test):
    """The two shares of the 179 test samples were padded to 90 each: sample 0 counted twice."""
    (ddp,) = [r for r in rows(ddp_run / "metrics.csv") if r["test/acc"]]
    (one,) = [r for r in rows(one_process_test / "metrics.csv") if r["test/acc"]]
    for name in ("test/acc", "test/f1", "test/loss"):
        assert float(ddp[name]) == pytest.approx(float(one[name]), abs=1e-6), name


@pytest.mark.slow
def test_ddp_test_of_last_rebuilds_every_process_with_the_checkpoints_settings(ddp_run):
    """``--ckpt_path last --model.init_args.head sigmoid_bce``: the first process took the checkpoint's head (and
    warned), the second the command line's, and test/loss was the mean of the two heads' losses."""
    proc = ddp_cli("test", "--config", str(ddp_run / "config.yaml"), "--ckpt_path", "last",
                   "--model.init_args.head", "sigmoid_bce", cwd=ddp_run.parents[2])  # the run's config: 2 processes
    assert proc.stderr.count("warning: the task is rebuilt") == 1, proc.stderr[-2000:]
    (two,) = [r for r in rows(newest_eval(ddp_run, "test") / "metrics.csv") if r["test/acc"]]
    output_of("test", "--ckpt_path", str(ddp_run / "checkpoints" / "last.ckpt"), *ONE)
    (one,) = [r for r in rows(newest_eval(ddp_run, "test") / "metrics.csv") if r["test/acc"]]
    for name in ("test/acc", "test/loss"):
        assert float(two[name]) == pytest.approx(float(one[name]), abs=1e-6), name


@pytest.mark.slow
def test_ddp_predict_writes_every_sample_once_in_order(ddp_run):
    """Both processes wrote one file, each its own share under the ids of the first samples: half were lost."""
    from sklearn.datasets import load_digits

    last = str(ddp_run / "checkpoints" / "last.ckpt")
    new = ddp_run.parents[2] / "new.csv"  # 7 samples: shares of 4 and 3
    new.write_text("\n".join(",".join(str(int(v)) for v in row) for row in load_digits().data[:7]) + "\n")
    for source in ((), ("--predict_from", str(new))):
        name = "predictions-new.csv" if source else "predictions.csv"
        proc = ddp_cli("predict", "--ckpt_path", last, *source, cwd=ddp_run.parents[2])  # the run's config: 2 processes
        two = rows(newest_eval(ddp_run, "predict") / name)
        assert proc.stdout.count("Predictions:") == 1, proc.stdout
        output_of("predict", "--ckpt_path", last, *source, *ONE)
        one = rows(newest_eval(ddp_run, "predict") / name)
        assert [r["id"] for r in one] == [str(i) for i in range(7 if source else 179)]
        assert [(r["id"], r["predicted"], r.get("target")) for r in two] == [(r["id"], r["predicted"], r.get("target")) for r in one]
        assert [float(r["prob_3"]) for r in two] == pytest.approx([float(r["prob_3"]) for r in one], abs=1e-5)


def test_an_evaluation_split_smaller_than_the_processes_is_refused_in_one_line(tmp_path):
    """Unpadded shares left the second of 2 processes without a sample: Lightning stopped with a
    traceback (validate/test), or that process skipped predict and the first waited for it."""
    from types import SimpleNamespace

    from lightning_hw.data.datasets.digits import Digits
    from lightning_hw.data.datasets.image_folder import ImageFolder
    from lightning_hw.data.fixtures.classification import write_image_folder
    from lightning_hw.errors import ConfigError

    digits = Digits(splits=(0.9, 0.0006, 0.0994))  # 1 validation sample of 1797
    digits.setup("fit")
    (tmp_path / "one.csv").write_text(",".join(["0", "16"] * 32) + "\n")
    digits.predict_from(tmp_path / "one.csv")
    photos = ImageFolder(root=str(write_image_folder(tmp_path / "photos")), splits=(0.85, 0.1, 0.05), in_memory=False)
    photos.setup("fit")  # 20 photos: 1 for the test
    for rank in (0, 1):
        for dm in (digits, photos):
            dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, predicting=False)
        assert len(digits.test_dataloader()) > 0  # 178 samples: 89 each
        with pytest.raises(ConfigError, match=r"^the val split holds 1 sample\(s\), fewer than the 2 DDP processes.*--trainer.devices 1"):
            digits.val_dataloader()
        with pytest.raises(ConfigError, match=r"^the predict input holds 1 sample\(s\)"):
            digits.predict_dataloader()
        with pytest.raises(ConfigError, match=r"^the test split holds 1 sample\(s\)"):
            photos.test_dataloader()
