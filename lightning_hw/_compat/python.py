"""Python's own private API: what the interpreter's exit runs (its threads' shutdown, its exit functions)."""

from __future__ import annotations

import atexit
import threading


def run_exit_functions() -> None:
    """Run the ``atexit`` functions now, as Python's exit does, last registered first.

    For a process that ends with ``os._exit`` (a fork of the warm process, see
    :mod:`lightning_hw.cli.warm_start`) yet must keep what the ``atexit`` functions do (W&B
    finishing its run, ``logging`` flushing its files, ``weakref.finalize`` callbacks).
    ``atexit._run_exitfuncs`` is what the interpreter itself calls; it prints, and does not
    raise, what an exit function raises.
    """
    atexit._run_exitfuncs()


def wait_for_threads() -> None:
    """End the threads as Python's exit does: the ``threading`` exit hooks, then every thread that is not a daemon joined.

    ``threading._shutdown`` is what the interpreter itself calls before the ``atexit`` functions.
    Its hooks (``threading._register_atexit``) tell the workers of an executor still open to
    end (``concurrent.futures``' thread pools, joblib's reusable process pool that scikit-learn's
    ``n_jobs`` starts); joining those workers without them waited for ever. It also joins
    threads started meanwhile. Call it from the main thread (a fork's only thread is its main one).
    """
    threading._shutdown()
