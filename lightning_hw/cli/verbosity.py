"""How much a command prints: quiet by default, everything with ``--verbose``.

Quiet keeps what a user acts on (the run directory, the net's summary, the test metrics, the
``wandb sync`` command, every warning); ``--verbose`` brings back Lightning's info lines
(accelerators, tips, checkpoint restores, its own model summary and test table) and W&B's
banner, history and summary. Library warnings nobody can act on are filtered here, at their
source, whatever the verbosity.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

from lightning_hw.errors import LightningHWWarning

_verbose = False

#: the logger of Lightning's ``rank_zero_info`` (accelerators, tips, checkpoint restores), which our
#: callbacks (FreezeBackbone, FeatureCache...) use too
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"
#: the logger of Lightning's ``seed_everything`` ("Seed set to 42"): the seed is in the run's config.yaml
SEED_LOGGER = "lightning.fabric.utilities.seed"
#: the logger of Lightning's "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2", one line per DDP process
DISTRIBUTED_LOGGER = "lightning.fabric.utilities.distributed"


class LightningInfoFilter(logging.Filter):
    """Drops the info lines written by Lightning's own code; warnings, and info from other code, pass.

    A record names the file that logged it (``rank_zero_info`` passes its caller's
    ``stacklevel``), so a callback's report of what it does to the run (a fine-tuning
    schedule, a feature cache turned off) stays while Lightning's GPU/TPU lines and tips go.
    """

    def __init__(self) -> None:
        super().__init__()
        import lightning

        self.lightning_dir = os.path.dirname(lightning.__file__) + os.sep

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.pathname.startswith(self.lightning_dir)


_lightning_info_filter: LightningInfoFilter | None = None


def pop_verbose_flag(args: list[str]) -> tuple[bool, list[str]]:
    """Take our bare ``--verbose`` flag out of ``args``: whether it was there, and the rest.

    ``validate``/``test`` have Lightning's own ``--verbose true|false`` (print the results
    table); a ``--verbose`` followed by a value is that one and stays.
    """
    values = {"true", "false", "yes", "no", "1", "0"}
    ours = [i for i, a in enumerate(args) if a == "--verbose" and (i + 1 == len(args) or args[i + 1].lower() not in values)]
    return bool(ours), [a for i, a in enumerate(args) if i not in ours]


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
    # Under DDP, Lightning's all_gather (merged metrics, confusion counts, predictions) calls
    # torch.distributed.nn.functional.all_gather, deprecated in torch 2.10: Lightning's to change.
    warnings.filterwarnings(
        "ignore", message=r"torch\.distributed\.nn\.functional\.\w+ is deprecated", category=FutureWarning,
        module=r"lightning\.fabric\.utilities\.distributed",
    )


def format_own_warnings() -> None:
    """Show lightning-hw's warnings (:class:`~lightning_hw.errors.LightningHWWarning`) as one ``warning: <message>`` line.

    Python's format (and Lightning's, which replaces it) starts with the file and line that
    warned, often a library's that only passed the warning on (Lightning's ``cli.py``), and
    repeats that source line: neither says anything to a user. Other warnings keep their format.
    """
    import lightning.fabric.utilities.warnings  # noqa: F401 - it replaces formatwarning when imported: wrap it, not the reverse

    previous = warnings.formatwarning
    if getattr(previous, "lightning_hw", False):
        return

    def formatted(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001 - warnings' signature
        if issubclass(category, LightningHWWarning):
            return f"warning: {message}\n"
        return previous(message, category, filename, lineno, line)

    formatted.lightning_hw = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatted


@contextlib.contextmanager
def evaluation_warnings_filtered(evaluating: bool) -> Iterator[None]:
    """For ``validate``/``test``/``predict``: Lightning's advice to pass the training callbacks goes, while it runs.

    It asks for the callbacks whose state the checkpoint holds (checkpointing, early stopping),
    which only matter to a run that goes on training; an evaluation does not, and the CLI
    chose its callbacks itself, so the user has nothing to add. The filter is the command's:
    set for the rest of the process, it hid the advice from a notebook's own ``trainer.fit(ckpt_path=...)``.

    Args:
        evaluating: the command is an evaluation (otherwise nothing is filtered).
    """
    if not evaluating:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint")
        yield


def set_verbose(verbose: bool) -> None:
    """Choose the verbosity of this process (``main()`` does, from ``--verbose``).

    Quiet, a :class:`LightningInfoFilter` on Lightning's ``rank_zero_info``, seed and distributed
    loggers drops Lightning's own info lines ("Seed set to 42", "Initializing distributed: ..."
    too); warnings stay visible either way.

    Args:
        verbose: print everything the libraries print (the ``--verbose`` flag).
    """
    global _verbose, _lightning_info_filter
    _verbose = verbose
    if _lightning_info_filter is None:
        _lightning_info_filter = LightningInfoFilter()
    for name in (RANK_ZERO_LOGGER, SEED_LOGGER, DISTRIBUTED_LOGGER):
        logger = logging.getLogger(name)
        if verbose:
            logger.removeFilter(_lightning_info_filter)
        else:
            logger.addFilter(_lightning_info_filter)  # once: addFilter skips a filter already there


def is_verbose() -> bool:
    """Whether ``--verbose`` was given (``False`` until :func:`set_verbose` is called)."""
    return _verbose
