"""``python -m lightning_hw``: answer the quick commands at once, hand the rest to :mod:`lightning_hw.cli.parser`.

Importing :mod:`lightning_hw.cli.parser` imports Lightning and torch (seconds), which ``--help``, a
mistyped command, ``list`` (from its cache) and ``study --help`` never need. This module
imports nothing heavy at its top and holds the one table of subcommands that both the
help here and LightningCLI's parser in :mod:`lightning_hw.cli.parser` describe.
"""

from __future__ import annotations

import sys

from lightning_hw.cli.commands import SUBCOMMANDS, program_name, run_own_subcommand, unknown_command_message

HELP_FLAGS = ("-h", "--help")


def help_text() -> str:
    """The top-level help: usage, and every subcommand with its description."""
    prog = program_name()
    width = max(map(len, SUBCOMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {command.help}" for name, command in SUBCOMMANDS.items())
    return (
        f"usage: {prog} <command> [options] [--verbose] [--debug]\n\n"
        "lightning-hw: train and compare the course experiments.\n\n"
        f"commands:\n{rows}\n\n"
        f"`{prog} <command> --help` shows a command's options; --verbose prints everything the\n"
        "libraries print (Lightning's summary and tables, W&B's history); --debug shows full\n"
        "tracebacks instead of one-line errors.\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m lightning_hw`` and the ``lightning-hw`` script; exits with the code.

    Args:
        argv: the command line after the program name (``None``: ``sys.argv[1:]``).
    """
    try:
        _main(argv)
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe (a DataLoader worker's, a subprocess's): a failure to show
        # What reads our output went away (`study FILE --dry-run | head`): stop quietly, as Unix
        # tools do, not with a traceback; stdout goes to devnull so that the final flush at
        # exit does not fail again (see "Note on SIGPIPE" in Python's signal docs).
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (``poll`` says POLLERR); ``True`` where that cannot be told."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows), or no real stdout
        return True


def _main(argv: list[str] | None) -> None:
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
    own = SUBCOMMANDS.get(command)
    if own is not None and own.target is not None and (not own.loads_plugins or any(a in HELP_FLAGS for a in rest[1:])):
        # Their parsers print the help and exit; the plugins need not be imported for that.
        sys.exit(run_own_subcommand(command, rest[1:], debug))
    if not command.startswith("-") and command not in SUBCOMMANDS:
        print(f"error: {unknown_command_message(command)}", file=sys.stderr)
        sys.exit(2)
    cli_main = _import_cli_waiting_out_signals(command or "the command")
    cli_main(args)


def _import_cli_waiting_out_signals(command: str):
    """Import the full CLI (Lightning, torch, every plugin: seconds); Ctrl-C or SIGTERM meanwhile ends it in one line.

    A KeyboardInterrupt raised in the middle of an import leaves half-initialised modules
    behind, and the next import then fails with an unrelated error (seen: RecursionError
    inside Lightning). So the signal is only noted while importing, and acted on after:
    nothing has started yet, so there is nothing to undo.
    """
    import signal

    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        from lightning_hw.cli.parser import main as cli_main
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        name = signal.Signals(received[0]).name
        how = "SIGINT (Ctrl-C)" if name == "SIGINT" else name
        if _first_process():  # under DDP every process stops; the first one speaks for the job
            print(f"interrupted by {how} while starting {command}; nothing was done", file=sys.stderr)
        sys.exit(128 + received[0])
    return cli_main


def _first_process() -> bool:
    """Whether this is the first process of its job (or no job's): Lightning's ``rank_zero_only`` rank, read as it reads it."""
    import os

    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if variable in os.environ:
            return int(os.environ[variable]) == 0
    return True
