"""lightning-hw: a research template on PyTorch Lightning.

The names below are the plugin API: a plugin subclasses :class:`Task` or
:class:`InMemoryDataModule` / :class:`SplitDataModule` and registers them under the
entry-point groups ``lightning_hw.tasks`` and ``lightning_hw.datamodules``; its
task builds the configured net with :func:`build_net` and reports bad input with
:class:`DataError` / :class:`ConfigError` (see ``plugins/README.md``).
They are imported lazily so that ``import lightning_hw`` stays cheap.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from lightning_hw import _moved

_moved.install()  # runs and plugins written before a module moved keep working

_EXPORTS = {
    "Task": "lightning_hw.tasks.base",
    "Classifier": "lightning_hw.tasks.classification",
    "SplitDataModule": "lightning_hw.data.base",
    "InMemoryDataModule": "lightning_hw.data.base",
    "TensorBatchLoader": "lightning_hw.data.base",
    "MLP": "lightning_hw.nets.mlp",
    "NetFactory": "lightning_hw.nets",
    "build_net": "lightning_hw.nets",
    "DataError": "lightning_hw.errors",
    "ConfigError": "lightning_hw.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_hw' has no attribute {name!r}")
