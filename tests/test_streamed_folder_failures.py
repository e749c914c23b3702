"""A folder streamed by DataLoader workers: a stop signal or a bad file ends the run as in memory.

With workers, Ctrl-C in a terminal (or a ``kill`` of the process group) reaches every worker
too, and an error in a worker reaches the main process wrapped in the worker's traceback. The
run must still stop at the next step with ``last.ckpt`` and the resume command (exit 128 +
signal), and a bad file must still be one line naming it, in the terminal and in ``status.json``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from conftest import REPO, tiny_run_args
from reliability_helpers import signal_when_training
from lightning_hw.data.fixtures.classification import write_image_folder
from lightning_hw.cli import warm_start


def streamed_fit(workdir: Path, photos: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "lightning_hw",
        *tiny_run_args(
            "fit", REPO / "configs" / "catsdogs_mlp.yaml", workdir / "runs",
            "--data.init_args.root", str(photos), "--data.init_args.in_memory", "false",
            "--data.init_args.num_workers", "2", "--data.init_args.batch_size", "4",
            "--trainer.limit_train_batches", "1.0", "--run.name", name, *extra,
        ),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_the_process_group_interrupts_a_streamed_fit(workdir, signum):
    photos = write_image_folder(workdir / "photos", per_class=20, size=(20, 24))
    run = workdir / "runs" / "catsdogs_mlp" / "long"
    output = workdir / "output.txt"
    metrics = run / "metrics.csv"
    code = signal_when_training(
        streamed_fit(workdir, photos, "long", "--trainer.max_epochs", "1000"), output,
        # training, with the workers of the training loader running
        lambda: metrics.is_file() and len(metrics.read_text().splitlines()) > 2,
        signum, cwd=workdir, env={**os.environ, "WANDB_MODE": "disabled"}, group=True, wait=90,
    )
    text = output.read_text()
    assert code == 128 + signum, text[-3000:]
    assert "Traceback" not in text and "DataLoader worker" not in text, text[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == signum.name, status
    assert status["resume_command"] and (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers in /proc (Linux)")
def test_sigterm_to_every_process_of_the_job_interrupts_a_streamed_fit(workdir):
    """SLURM at the time limit (or scancel) signals the main process and its workers alike."""
    photos = write_image_folder(workdir / "photos", per_class=20, size=(20, 24))
    run = workdir / "runs" / "catsdogs_mlp" / "slurm"
    output = workdir / "output.txt"
    metrics = run / "metrics.csv"
    signalled: list[int] = []
    code = signal_when_training(
        streamed_fit(workdir, photos, "slurm", "--trainer.max_epochs", "1000"), output,
        lambda: metrics.is_file() and len(metrics.read_text().splitlines()) > 2, signal.SIGTERM,
        cwd=workdir, env={**os.environ, "WANDB_MODE": "disabled"}, job_step=True, wait=90, signalled=signalled,
    )
    text = output.read_text()
    assert code == 143, text[-3000:]
    assert "Traceback" not in text and "DataLoader worker" not in text, text[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM", status
    assert status["resume_command"] and (run / "checkpoints" / "last.ckpt").is_file()
    assert len(signalled) > 1  # the workers were signalled too
    assert not [pid for pid in signalled if Path(f"/proc/{pid}").is_dir()]  # and none outlives the run


@pytest.mark.slow
def test_a_corrupt_file_met_by_a_worker_is_one_line_naming_it(workdir):
    from lightning_hw.data.datasets.image_folder import ImageFolder

    photos = write_image_folder(workdir / "photos", per_class=20, size=(20, 24))
    # A validation image: the run has trained a first epoch (and is kept) when a worker meets it.
    folder = ImageFolder(root=str(photos), labels="prefix", splits=(0.536, 0.134, 0.33), in_memory=False)
    folder.setup("fit")
    broken, _ = folder.stream_items("val")[0]
    broken.write_bytes(broken.read_bytes()[:300])
    done = warm_start.run(
        streamed_fit(workdir, photos, "broken", "--trainer.num_sanity_val_steps", "0"), cwd=workdir,
        capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}, timeout=180,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: cannot read image ") and broken.name in line and "DataLoader worker" not in line, line
    status = json.loads((workdir / "runs" / "catsdogs_mlp" / "broken" / "status.json").read_text())
    assert status["status"] == "failed" and broken.name in status["error"] and "DataLoader worker" not in status["error"], status


def test_a_fit_failed_in_validation_leaves_no_training_worker_running(workdir, capsys):
    """Lightning tears down only the loop that was running when a fit failed: a bad validation image left the
    training loader's two persistent workers running after an in-process fit (a notebook, a test) until its
    trainer was garbage collected, where each worker's join then waited out PyTorch's 5 s."""
    import multiprocessing

    from lightning_hw.data.datasets.image_folder import ImageFolder
    from reliability_helpers import error_of

    photos = write_image_folder(workdir / "photos", per_class=20, size=(20, 24))
    folder = ImageFolder(root=str(photos), labels="prefix", splits=(0.536, 0.134, 0.33), in_memory=False)
    folder.setup("fit")
    broken, _ = folder.stream_items("val")[0]
    broken.write_bytes(broken.read_bytes()[:300])
    running_before = set(multiprocessing.active_children())
    code, line = error_of(streamed_fit(workdir, photos, "broken", "--trainer.num_sanity_val_steps", "0")[3:], capsys)
    assert code == 1 and line.startswith("error: cannot read image ") and broken.name in line, line
    assert set(multiprocessing.active_children()) - running_before == set()
