"""How a fork of the warm process ends: as Python's exit would, less its freeing of every object.

See :func:`end_as_python_would`; :mod:`lightning_hw.cli.warm_start` forks the commands.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import signal
import sys
import threading
import traceback
from typing import Callable, NoReturn

from lightning_hw._compat import python as compat_python


def end_as_python_would(command: Callable[[], None]) -> NoReturn:
    """In the fork: run ``command``, then end as Python's exit would, less its freeing of every object.

    After a command Python's exit prints an uncaught exception, tells the workers of executors
    still open to end and waits for the threads that are not daemons (a Ctrl-C meanwhile is
    printed as ignored), runs the ``atexit`` functions and flushes the standard streams; then it
    frees every object of every module. In a fork that last step writes to nearly every page the fork
    shares with the warm process (reference counts), and copying them took 2-4 s, longer than
    ``--help`` or a refused option takes to run. So the fork does the rest, flushes the files
    the command left open (as freeing them would have), and ends with ``os._exit``, as
    :mod:`multiprocessing`'s forked children do.
    """
    interrupted = False
    try:
        command()
        code = 0
    except SystemExit as stop:
        code = _exit_status(stop.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        code, interrupted = 1, True
    except BaseException:  # noqa: BLE001 - printed as Python prints what nothing caught
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        compat_python.wait_for_threads()
    except BaseException:  # noqa: BLE001 - a Ctrl-C while threads finish: Python prints it as ignored and goes on
        # Raised on, it left this function (out of serve(), past os._exit): the fork ended by SIGINT, where Python ends as the command did.
        _print_ignored(threading)
    compat_python.run_exit_functions()
    if not _flush_open_files():
        code = 120
    if interrupted:  # Python then ends by SIGINT, so that a shell sees a Ctrl-C (status 130), not a failure
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def _print_ignored(where: object) -> None:
    """Print the exception being handled as Python's exit prints one it ignores ("Exception ignored in: ...")."""
    exc_type, exc, tb = sys.exc_info()
    name = exc_type.__qualname__ if exc_type.__module__ == "builtins" else f"{exc_type.__module__}.{exc_type.__qualname__}"
    with contextlib.suppress(Exception):
        frames = ["Traceback (most recent call last):\n", *traceback.format_tb(tb)] if tb is not None else []
        sys.stderr.write("".join([f"Exception ignored in: {where!r}\n", *frames, f"{name}: {exc}\n"]))


def _exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` ends Python with: ``None`` is 0, a number itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _flush_open_files() -> bool:
    """Flush the standard streams, and every file the command opened and left open (the fork's own objects only).

    Returns:
        Whether stdout took what was left in its buffer: Python's exit prints why not, as ignored, and ends with 120.
    """
    written = True
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed or broken stdout: said as Python says it
        _print_ignored(sys.stdout)
        written = False
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    for item in gc.get_objects():  # the warm process's objects are frozen: not among them
        if issubclass(type(item), io.IOBase):
            with contextlib.suppress(Exception):
                if not item.closed:
                    item.flush()
    return written
