"""``python -m lightning_hw export``: the command line of :mod:`lightning_hw.deploy.export`.

Kept apart so that ``export --help`` and a mistyped option answer without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from lightning_hw.errors import ConfigError


def build_parser():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="python -m lightning_hw export",
        description="Export a checkpoint's model, preprocessing included, to ONNX (dynamic batch) "
        "and check its test metric from raw inputs against PyTorch's.",
        exit_on_error=False,
    )
    parser.add_argument("--ckpt_path", type=str, required=True, help="The checkpoint to export.")
    parser.add_argument("--format", type=Literal["onnx"], default="onnx", help="Export format.")
    parser.add_argument(
        "--output", type=str | None, default=None,
        help="Where to write: a new .onnx file, or a folder (default: <run>/eval/export-<time>/<checkpoint name>.onnx, "
        "a new directory each time). An existing file is never replaced.",
    )
    parser.add_argument(
        "-c", "--config", type=str | None, default=None,  # -c as fit, test and predict take it
        help="The config the checkpoint was trained with (default: the run's config.yaml).",
    )
    parser.add_argument(
        "--bare", type=bool, default=False,
        help="Export the net alone: its input is the preprocessed model input (the metadata says how to make it).",
    )
    parser.add_argument("--opset", type=int | None, default=None, help="ONNX opset (default: the exporter's).")
    parser.add_argument(
        "--weights_only", type=bool, default=True,
        help="Refuse checkpoints holding arbitrary Python objects; false only for files you trust.",
    )
    return parser



def _refuse_stacked_configs(argv: list[str]) -> None:
    """Refuse several ``--config``/``-c``: fit stacks them, but export reads one, and the last alone was used without a word.

    The run's ``config.yaml`` holds the stack resolved, which is the one file export needs. A
    checkpoint from outside a run has none: ``fit --print_config`` resolves the stack into one.
    """
    import shlex

    from lightning_hw.cli.names import config_arguments

    given = [path for _, path in config_arguments(argv)]
    if len(given) > 1:
        stack = " ".join(f"-c {shlex.quote(path)}" for path in given)
        raise ConfigError(
            f"export takes one --config (-c), got {len(given)} ({', '.join(given)}): give the run's config.yaml, "
            "which holds the configs it was trained with resolved into one (or leave --config out: it is read from the run); "
            f"for a checkpoint from outside a run, resolve them into one with `python -m lightning_hw fit {stack} "
            "--print_config > config.yaml` and give that"
        )


def main(argv: list[str]) -> int:
    """``python -m lightning_hw export ...``; returns the exit code."""
    from jsonargparse import ArgumentError

    from lightning_hw.cli.errors import explain

    _refuse_stacked_configs(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentError as err:
        raise ConfigError(explain(str(err), "export", parser, argv)) from None
    from lightning_hw.deploy.export import export_checkpoint  # torch, the task and the data: seconds

    return _stopping_on_signals(lambda written, still_wanted: export_checkpoint(args, written, still_wanted))


def _stopping_on_signals(export: Callable[[Callable[[], None], Callable[[], None]], int]) -> int:
    """Run ``export`` with SIGINT and SIGTERM stopping it: it undoes its unfinished files, and says so.

    SIGTERM's default action would end the process at once, leaving an empty
    ``eval/export-<time>/`` in the checkpoint's run (and a ``.partial`` file) and no message.
    Ctrl-C's KeyboardInterrupt is no better during the test-split check, which runs in
    Lightning's test loop: Lightning turns it into a silent ``sys.exit(1)`` (and ignores
    Ctrl-C from then on). The exception raised here instead unwinds through the export's own
    clean-up (Lightning re-raises it), and the CLI prints one line and exits 130 or 143.
    Once ``export`` calls the first function it is given (its files are all in place), both signals
    are noted and no longer stop it: the export is complete. It calls the second before it names
    its file: a stop that a finalizer swallowed (see :func:`~lightning_hw.runs.interrupts.quiet_swallowed_stops`)
    is raised there.
    """
    import signal
    import sys
    import threading

    from lightning_hw.runs.interrupts import StopsAtOnce, quiet_swallowed_stops

    stops = StopsAtOnce("export stopped; nothing was written")

    def stop(signum: int, frame: Any) -> None:
        raise stops.stop(signum)

    def complete(signum: int, frame: Any) -> None:
        print(f"\n{signal.Signals(signum).name}: the export is complete; finishing", file=sys.stderr, flush=True)

    def written() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, complete)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return export(lambda: None, lambda: None)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, stop)
    try:
        with quiet_swallowed_stops():
            return export(written, stops.raise_received)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
