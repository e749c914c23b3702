"""How much a command prints: quiet by default, everything with ``--verbose``.

Quiet keeps what a user acts on (the run directory, the net's summary, the test metrics, the
``wandb sync`` command, every warning); ``--verbose`` brings back Lightning's info lines
(accelerators, tips, checkpoint restores, its own model summary and test table) and W&B's
banner, history and summary. Library warnings nobody can act on are filtered here, at their
source, whatever the verbosity.
"""

from __future__ import annotations

import logging
import warnings

_verbose = False


def filter_library_warnings() -> None:
    """Ignore the library warnings that say nothing a user of this CLI can act on (each says why)."""
    # The task's own configure_optimizers is only the fallback when a config has no `optimizer:`.
    warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden by")
    # Only a resume (the same run continuing) opens a checkpoint directory that has files.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # Lightning 2.6 builds torch's deprecated LeafSpec when it collects logged results; the fix is
    # Lightning's to make (torch >= 2.10 warns), not the user's.
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


def set_verbose(verbose: bool) -> None:
    """Choose the verbosity of this process (``main()`` does, from ``--verbose``).

    Lightning's info lines go through the ``lightning.pytorch`` logger, whose level is
    Lightning's documented switch for them; its warnings stay visible either way.

    Args:
        verbose: print everything the libraries print (the ``--verbose`` flag).
    """
    global _verbose
    _verbose = verbose
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO if verbose else logging.WARNING)


def is_verbose() -> bool:
    """Whether ``--verbose`` was given (``False`` until :func:`set_verbose` is called)."""
    return _verbose
