"""``python -m lightning_hw``: answer the quick commands at once, hand the rest to :mod:`lightning_hw.cli.parser`.

Importing :mod:`lightning_hw.cli.parser` imports Lightning and torch (seconds), which ``--help``, a
mistyped command, ``list`` (from its cache) and ``study --help`` never need. This module
imports nothing heavy at its top and holds the one table of subcommands that both the
help here and LightningCLI's parser in :mod:`lightning_hw.cli.parser` describe.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys

#: every subcommand -> its one-line description, in the order the help lists them
SUBCOMMANDS = {
    "fit": "train a task on a datamodule (LightningCLI; then tests the best checkpoint)",
    "validate": "score a checkpoint on the validation split (LightningCLI)",
    "test": "score a checkpoint on the test split (LightningCLI)",
    "predict": "predict with a checkpoint, on the predict split or on new files (LightningCLI)",
    "list": "the registered tasks and datamodules and where they come from",
    "study": "run the variants of a config, each in its own process",
    "report": "compare runs: a metrics table and one plot per metric",
    "export": "export a checkpoint to ONNX and check it against PyTorch",
    "new-plugin": "scaffold a plugin package (task, datamodule, config, test)",
}

#: our subcommands beside LightningCLI's: each module's ``main(argv) -> exit code`` runs it
OWN_SUBCOMMANDS = {"study": "lightning_hw.studies.grid", "report": "lightning_hw.reports", "export": "lightning_hw.deploy.export"}

DESCRIPTION = (
    "lightning-hw: train and compare the course experiments. Subcommands: "
    + "; ".join(f"{name} ({text})" for name, text in SUBCOMMANDS.items())
    + ". Add --debug for tracebacks."
)

HELP_FLAGS = ("-h", "--help")


def program() -> str:
    """How the user started us: the ``lightning-hw`` script, or ``python -m lightning_hw``."""
    return "lightning-hw" if os.path.basename(sys.argv[0] or "") == "lightning-hw" else "python -m lightning_hw"


def help_text() -> str:
    """The top-level help: usage, and every subcommand with its description."""
    prog = program()
    width = max(map(len, SUBCOMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items())
    return (
        f"usage: {prog} <command> [options] [--debug]\n\n"
        "lightning-hw: train and compare the course experiments.\n\n"
        f"commands:\n{rows}\n\n"
        f"`{prog} <command> --help` shows a command's options; --debug shows full tracebacks\n"
        "instead of one-line errors.\n"
    )


def unknown_command_message(name: str) -> str:
    """One line naming the closest command and all of them.

    Args:
        name: what the user typed where a command belongs.
    """
    close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ";"
    return f"unknown command '{name}'{hint} commands: {', '.join(SUBCOMMANDS)}"


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m lightning_hw`` and the ``lightning-hw`` script; exits with the code.

    Args:
        argv: the command line after the program name (``None``: ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    rest = [a for a in args if a != "--debug"]
    command = rest[0] if rest else None
    if command is None:
        print(help_text(), end="", file=sys.stderr)
        sys.exit(2)  # as LightningCLI did: a command is required
    if command in HELP_FLAGS:
        print(help_text(), end="")
        sys.exit(0)
    if command == "list" and not debug:  # --debug shows the plugins' tracebacks: the full import below
        from lightning_hw.cli.listing import cached_list

        sys.exit(cached_list())
    if command == "new-plugin":
        from lightning_hw.scaffold.new_plugin import new_plugin_main

        sys.exit(new_plugin_main(rest[1:], debug=debug))
    if command in OWN_SUBCOMMANDS and any(a in HELP_FLAGS for a in rest[1:]):
        # Their parsers print the help and exit; the plugins need not be imported for that.
        sys.exit(importlib.import_module(OWN_SUBCOMMANDS[command]).main(rest[1:]))
    if not command.startswith("-") and command not in SUBCOMMANDS:
        print(f"error: {unknown_command_message(command)}", file=sys.stderr)
        sys.exit(2)
    try:
        from lightning_hw.cli.parser import main as cli_main  # Lightning, torch and every plugin: seconds
    except KeyboardInterrupt:
        # Ctrl-C while the libraries load: nothing has started yet, so nothing to undo or report.
        if debug:
            raise
        print(f"interrupted by SIGINT (Ctrl-C) while starting {command or 'the command'}; nothing was done", file=sys.stderr)
        sys.exit(130)
    cli_main(args)
