"""The one table of subcommands: what ``main()`` dispatches, what ``--help`` lists, what a typo is matched against.

LightningCLI's own subcommands (``fit``, ``validate``, ``test``, ``predict``) run through
:class:`~lightning_hw.cli.HWCLI`; every other one is a module function ``f(argv) -> exit code``.
"""

from __future__ import annotations

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
    "list": Subcommand("the registered tasks and datamodules", "lightning_hw.cli:list_main"),
    "study": Subcommand("variants of a config, each in its own process", "lightning_hw.studies:main"),
    "report": Subcommand("compare runs", "lightning_hw.reports:main"),
    "export": Subcommand("a checkpoint to ONNX", "lightning_hw.export:main"),
    "new-plugin": Subcommand(
        "scaffold a plugin package", "lightning_hw.scaffold:new_plugin_main", loads_plugins=False, takes_debug=True
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
    return f"lightning-hw: train and compare the course experiments. Subcommands: {listing}. Add --debug for tracebacks."
