"""Python's own private API: the interpreter's exit functions."""

from __future__ import annotations

import atexit


def run_exit_functions() -> None:
    """Run the ``atexit`` functions now, as Python's exit does, last registered first.

    For a process that ends with ``os._exit`` (a fork of the warm process, see
    :mod:`lightning_hw.cli.warm_start`) yet must keep what the ``atexit`` functions do (W&B
    finishing its run, ``logging`` flushing its files, ``weakref.finalize`` callbacks).
    ``atexit._run_exitfuncs`` is what the interpreter itself calls; it prints, and does not
    raise, what an exit function raises.
    """
    atexit._run_exitfuncs()
