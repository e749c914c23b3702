"""Start-up time of the quick commands: each run in a fresh interpreter, N times.

    python benchmarks/startup.py                 # 5 runs of each command
    python benchmarks/startup.py --repeats 10 --target 1.5

Prints, per command, the minimum and median wall time and whether the minimum is under the
target (the minimum is the figure least disturbed by other work on a shared machine). The
runs are interleaved (command A, B, C, A, B, C, ...) so a burst of load hits all of them.
`list` is timed from a warm cache: one untimed run first fills it (the cold figure, which
imports every plugin, is printed apart).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "--help": ["--help"],
    "unknown command": ["fitt"],
    "list (cached)": ["list"],
    "study --help": ["study", "--help"],
    "report --help": ["report", "--help"],
    "new-plugin --help": ["new-plugin", "--help"],
    "export --help": ["export", "--help"],
    "fit --help": ["fit", "--help"],
}


#: a cache directory of our own, so the first `list` is really cold and the user's cache stays as it was
ENV = {**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix="lightning-hw-startup-")}


def time_once(args: list[str]) -> float:
    """Wall seconds of ``python -m lightning_hw ARGS`` in a new process (output discarded)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "lightning_hw", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 (the figures are a report, not a pass/fail check)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--target", type=float, default=1.5, help="seconds a quick command may take (default 1.5)")
    parser.add_argument("--only", default="", help="comma-separated command labels to time (default: all)")
    options = parser.parse_args(argv)
    chosen = {k: v for k, v in COMMANDS.items() if not options.only or k in options.only.split(",")}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    if "list (cached)" in chosen:
        print(f"list (cold cache, fills it): {time_once(['list']):.2f} s", flush=True)
    times: dict[str, list[float]] = {label: [] for label in chosen}
    for _ in range(options.repeats):
        for label, args in chosen.items():
            times[label].append(time_once(args))
    print(f"{'command':<20} {'min s':>7} {'median s':>9}  under {options.target} s")
    for label, values in times.items():
        best = min(values)
        print(f"{label:<20} {best:7.2f} {statistics.median(values):9.2f}  {'yes' if best <= options.target else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
