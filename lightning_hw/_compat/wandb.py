"""W&B's internals: the Python log file (``debug.log``) it writes into a run's ``wandb/`` folder."""

from __future__ import annotations

import logging
from pathlib import Path

# The logger W&B's Python side logs to; ``wandb.init`` adds a FileHandler for the run's debug.log to it.
WANDB_LOGGER = "wandb"


def quiet_log_files(directory: Path) -> None:
    """Keep W&B's log files under ``directory`` from failing loudly when they cannot be written.

    On a full disk every line W&B logged (each config update) printed Python's ``--- Logging
    error ---`` with a traceback on stderr, around the command's one line; and closing the file
    as the run finished raised, which cut W&B's finish short: at the process's exit W&B's
    service then printed ``wandb sync`` advice for files the command had removed. These files
    are W&B's diagnostics, of no use to the run's record: what does not fit is dropped.
    """
    for handler in logging.getLogger(WANDB_LOGGER).handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(Path(directory).absolute()):
            handler.handleError = _drop_record
            handler.close = _closed_whatever_the_disk(handler.close)


def _drop_record(record: logging.LogRecord) -> None:
    """A log line that could not be written is dropped without a word."""


def _closed_whatever_the_disk(close):
    def close_quietly() -> None:
        try:
            close()
        except OSError:  # the last lines found no room; the file is closed all the same
            pass

    return close_quietly
