"""The command line: ``python -m lightning_hw`` / ``lightning-hw``.

- :mod:`~lightning_hw.cli.parser`: LightningCLI over the entry-point registry (fit, validate,
  test, predict), run directories, and :func:`main`, which dispatches every subcommand.
- :mod:`~lightning_hw.cli.errors`: jsonargparse's reports turned into one line.
- :mod:`~lightning_hw.cli.names`: which class names a command line asks for.

Names are imported lazily so that importing the package costs nothing.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {"main": "lightning_hw.cli.parser", "HWCLI": "lightning_hw.cli.parser"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_hw.cli' has no attribute {name!r}")
