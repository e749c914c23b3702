"""The one table of subcommands: what ``main()`` dispatches, what ``--help`` lists, what a typo is matched against.

LightningCLI's own subcommands (``fit``, ``validate``, ``test``, ``predict``) run through
:class:`~lightning_hw.cli.parser.HWCLI`; every other one is a module function ``f(argv) -> exit code``.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Subcommand:
    """One subcommand.

    Args:
        help: what it does, in a few words (listed by ``--help``).
        target: ``"module:function"`` running it with the arguments after its name and returning
            the exit code; ``None`` for LightningCLI's subcommands.
        loads_plugins: whether the installed plugins are imported (and their failures reported)
            first; ``new-plugin`` does not need them.
        takes_debug: the function also takes ``debug=`` (``--debug`` given).
    """

    help: str
    target: str | None = None
    loads_plugins: bool = True
    takes_debug: bool = False


#: every subcommand, in the order ``--help`` lists them
SUBCOMMANDS: dict[str, Subcommand] = {
    "fit": Subcommand("train a task on a datamodule, then test the best checkpoint"),
    "validate": Subcommand("score a checkpoint on the validation split"),
    "test": Subcommand("score a checkpoint on the test split"),
    "predict": Subcommand("predictions of a checkpoint, on the predict split or on new files"),
    "list": Subcommand("the registered tasks and datamodules and where they come from", "lightning_hw.cli.parser:list_main"),
    "study": Subcommand("variants of a config, or an Optuna search, each run in its own process", "lightning_hw.studies.grid:main"),
    "report": Subcommand("compare runs: a metrics table and one plot per metric", "lightning_hw.reports:main"),
    "export": Subcommand("a checkpoint to ONNX, checked against PyTorch on the test split", "lightning_hw.deploy.export_command:main"),
    "lr-find": Subcommand(
        "a learning rate for a config: Lightning's range test on its own optimizer", "lightning_hw.tuning.lr_find_command:main"
    ),
    "new-plugin": Subcommand(
        "scaffold a plugin package", "lightning_hw.scaffold.new_plugin:new_plugin_main", loads_plugins=False, takes_debug=True
    ),
}

#: LightningCLI's subcommands (those without a target)
LIGHTNING_SUBCOMMANDS = tuple(name for name, command in SUBCOMMANDS.items() if command.target is None)


def program_name() -> str:
    """How the user started the CLI, for usage lines: ``lightning-hw`` (the script) or ``python -m lightning_hw``."""
    return "lightning-hw" if Path(sys.argv[0]).stem == "lightning-hw" else "python -m lightning_hw"


def description() -> str:
    """The ``--help`` text above the options: every subcommand with its one-line help."""
    listing = "; ".join(f"{name} ({command.help})" for name, command in SUBCOMMANDS.items())
    return f"lightning-hw: train and compare the course experiments. Subcommands: {listing}. Add --verbose for everything the libraries print, --debug for tracebacks."


def run_own_subcommand(name: str, argv: list[str], debug: bool = False) -> int:
    """Run one of the table's own subcommands (not LightningCLI's) and return its exit code.

    Args:
        name: the subcommand, e.g. ``study``.
        argv: the arguments after its name.
        debug: ``--debug`` was given.
    """
    command = SUBCOMMANDS[name]
    module_name, _, function_name = command.target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    return function(argv, debug=debug) if command.takes_debug else function(argv)


def unknown_command_message(name: str) -> str:
    """One line for a word where a command belongs: the closest command, and all of them.

    Args:
        name: what the user typed, e.g. ``fitt``.
    """
    close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ";"
    return f"unknown command '{name}'{hint} commands: {', '.join(SUBCOMMANDS)}"
