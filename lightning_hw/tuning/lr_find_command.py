"""``python -m lightning_hw lr-find``: the command line of :mod:`lightning_hw.tuning.lr_find`.

Kept apart so that ``lr-find --help`` and a bad option of its own answer without importing
torch. Its own options are read here; every other argument is a ``fit`` argument (the
config, ``--trainer.*``, ``--model.*``, ``--optimizer.*``...) and goes to the same parser
``fit`` uses.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from lightning_hw.errors import ConfigError
from lightning_hw.runs.files import record_kind, recorded_directory

#: the suggestion skips the sweep's first 10 points and its last one, and needs 2 points between
MIN_NUM_TRAINING = 13
MODES = ("exponential", "linear")
SUGGESTIONS = ("log_lr", "lightning")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one-line :class:`ConfigError`\\ s (no usage block)."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"lr-find: {message} (options: {self.prog} --help)")


def _threshold(text: str) -> float | None:
    if text.strip().lower() in ("none", "null", "off"):
        return None
    return float(text)


def build_parser() -> argparse.ArgumentParser:
    from lightning_hw.cli.commands import program_name

    parser = _Parser(
        prog=f"{program_name()} lr-find",
        allow_abbrev=False,  # --mode must not swallow --model, nor --max_lr a --max... of fit
        description=(
            "Run Lightning's learning-rate range test on a config: train from the config's fresh weights while the "
            "lr of its own optimizer (the optimizer: section, else the task's default) rises from --min_lr to "
            "--max_lr, one step per lr, and suggest the lr where the loss falls fastest. Writes the plot, the "
            "(lr, loss) points and the suggestion into runs/<group>/lr-find-<time>/ (never into a training run), "
            "and with --write a config that trains with the suggested lr. Every fit option works too "
            "(--config, --trainer.*, --model.*, --data.*, --optimizer.*, --run.*: see fit --help)."
        ),
        epilog="example: python -m lightning_hw lr-find --config configs/quickstart.yaml --write configs/quickstart_lr.yaml",
    )
    parser.add_argument("--min_lr", type=float, default=1e-8, help="the lr the sweep starts at (default 1e-8)")
    parser.add_argument("--max_lr", type=float, default=1.0, help="the lr the sweep ends at (default 1)")
    parser.add_argument(
        "--num_training", type=int, default=100,
        help=f"training steps in the sweep, one lr each (default 100; at least {MIN_NUM_TRAINING})",
    )
    parser.add_argument("--mode", choices=MODES, default="exponential", help="how the lr rises step by step (default exponential)")
    parser.add_argument(
        "--early_stop_threshold", type=_threshold, default=4.0, metavar="X",
        help="stop the sweep when the (smoothed) loss exceeds X times the best so far (default 4; none: never stop)",
    )
    parser.add_argument(
        "--suggestion", choices=SUGGESTIONS, default="log_lr",
        help="log_lr (default): the lr where the loss falls fastest against log10(lr) (against lr in a linear "
        "sweep); lightning: Lightning's own suggestion(), whose slope is against lr in an exponential sweep "
        "too, which favours the smallest lrs",
    )
    parser.add_argument(
        "--write", metavar="FILE", default=None,
        help="also write the config with the suggested lr (the full resolved config, as fit --print_config "
        "shows it, in the same run group): fit --config FILE trains with it",
    )
    parser.add_argument("--overwrite", action="store_true", help="let --write replace an existing FILE")
    return parser


#: lr-find's own options, for suggestions when one is misspelled
OWN_OPTIONS = (
    "--min_lr", "--max_lr", "--num_training", "--mode", "--early_stop_threshold", "--suggestion", "--write", "--overwrite",
)


def check_options(options: argparse.Namespace) -> None:
    """Refuse sweep settings that cannot work, and a --write target that would replace a file, before anything runs."""
    for name in ("min_lr", "max_lr"):
        value = getattr(options, name)
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"lr-find: --{name} must be a positive number, got {value}")
    if options.min_lr >= options.max_lr:
        raise ConfigError(f"lr-find: --min_lr ({options.min_lr}) must be below --max_lr ({options.max_lr})")
    if options.num_training < MIN_NUM_TRAINING:
        raise ConfigError(
            f"lr-find: --num_training must be at least {MIN_NUM_TRAINING} (the suggestion skips the first 10 "
            f"points and the last one), got {options.num_training}"
        )
    threshold = options.early_stop_threshold
    if threshold is not None and (not math.isfinite(threshold) or threshold <= 1):
        raise ConfigError(f"lr-find: --early_stop_threshold must be above 1 (or none), got {threshold}")
    if options.write is not None:
        check_write_target(Path(options.write), options.overwrite)


def check_write_target(path: Path, overwrite: bool) -> None:
    """``--write FILE``: a new file in an existing folder (an existing one only with ``--overwrite``),
    never inside a run's or a sweep's record."""
    record = recorded_directory(path)
    if record is not None:
        raise ConfigError(
            f"lr-find: --write {path} is inside {record}, {record_kind(record)} whose files no other command changes; "
            f"write the config elsewhere (e.g. --write {path.name})"
        )
    if path.is_dir():
        raise ConfigError(f"lr-find: --write {path} is a directory; give a file name (e.g. {path / 'config-lr.yaml'})")
    if path.exists() and not overwrite:
        raise ConfigError(f"lr-find: {path} exists and is left unchanged; give another --write, or add --overwrite to replace it")
    if not path.parent.is_dir():
        raise ConfigError(f"lr-find: the folder of --write {path} does not exist; create it first")


def main(argv: list[str]) -> int:
    """``python -m lightning_hw lr-find --config C [lr-find options] [fit options]``; returns the exit code."""
    options, fit_args = build_parser().parse_known_args(argv)
    check_options(options)
    from lightning_hw.tuning.lr_find import find_lr  # torch, Lightning, the task and the data: seconds

    return find_lr(options, fit_args)
