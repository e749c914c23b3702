"""A short ``fit`` started afresh against one forked from the warm process (what a study's fits use).

    python benchmarks/warm_start.py                 # 5 of each, interleaved
    python benchmarks/warm_start.py --repeats 10 --epochs 3

Each repeat runs the same quickstart fit (1 epoch, 5 batches: a fit that is mostly its start)
as ``subprocess.Popen([python, -m, lightning_hw, fit, ...])`` and as
``lightning_hw.cli.warm_start.popen`` (forked from the warm process, which this script starts and
waits for first: its import time is printed apart, as a study pays it once). Prints the minimum
and median wall time of each and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning_hw.cli import warm_start

REPO = Path(__file__).resolve().parents[1]


def fit_command(root: Path, name: str, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "lightning_hw", "fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
        "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false",
        "--run.root", str(root), "--run.wandb", "disabled", "--run.name", name,
    ]


def timed(start, command: list[str]) -> float:
    began = time.perf_counter()
    process = start(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if process.wait() != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    options = parser.parse_args()
    began = time.perf_counter()
    if not warm_start.warm_up(wait=300):
        sys.exit("the warm process did not start (no fork here, or it failed to import)")
    print(f"warm process ready after {time.perf_counter() - began:.1f} s (paid once per study)")
    times: dict[str, list[float]] = {"afresh": [], "forked": []}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(options.repeats):
            for arm, start in (("afresh", subprocess.Popen), ("forked", warm_start.popen)):
                times[arm].append(timed(start, fit_command(Path(root), f"{arm}-{repeat}", options.epochs)))
    for arm, values in times.items():
        print(f"{arm:7s} fit: min {min(values):5.2f} s, median {statistics.median(values):5.2f} s")
    print(f"afresh / forked (medians): {statistics.median(times['afresh']) / statistics.median(times['forked']):.2f}x")


if __name__ == "__main__":
    main()
