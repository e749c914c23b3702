"""Modules that moved, still importable under their old names.

Run directories record full class paths (``config.yaml``: ``class_path:
lightning_hw.data.digits.Digits``), and a run must stay resumable and evaluable after
the code is reorganised: ``--config runs/<group>/<name>/config.yaml --ckpt_path last``
has to keep working. An old name is an alias of the module itself (the same module
object, so classes compare equal and configs dumped from now on name the new path).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

#: old module name -> where it lives now (the 2026-12 layout: cli/, studies/, deploy/, data/<role>/)
MOVED = {
    "lightning_hw.cli_errors": "lightning_hw.cli.errors",
    "lightning_hw.cli_names": "lightning_hw.cli.names",
    "lightning_hw.search": "lightning_hw.studies.search",
    "lightning_hw.search_runner": "lightning_hw.studies.runner",
    "lightning_hw.studies.search_runner": "lightning_hw.studies.runner",
    "lightning_hw.search_report": "lightning_hw.studies.search_report",
    "lightning_hw.predict": "lightning_hw.deploy.predict",
    "lightning_hw.export": "lightning_hw.deploy.export",
    "lightning_hw.scaffold_templates": "lightning_hw.scaffold.templates",
    "lightning_hw.data.cifar10": "lightning_hw.data.datasets.cifar10",
    "lightning_hw.data.digits": "lightning_hw.data.datasets.digits",
    "lightning_hw.data.fer2013": "lightning_hw.data.datasets.fer2013",
    "lightning_hw.data.image_folder": "lightning_hw.data.datasets.image_folder",
    "lightning_hw.data.lfw": "lightning_hw.data.datasets.lfw",
    "lightning_hw.data.mnist": "lightning_hw.data.datasets.mnist",
    "lightning_hw.data.mobile_price": "lightning_hw.data.datasets.mobile_price",
    "lightning_hw.data.moons": "lightning_hw.data.datasets.moons",
    "lightning_hw.data.reuters": "lightning_hw.data.datasets.reuters",
    "lightning_hw.data.landmark_csv": "lightning_hw.data.landmarks.csv_folder",
    "lightning_hw.data.celeba": "lightning_hw.data.landmarks.celeba",
    "lightning_hw.data.muct": "lightning_hw.data.landmarks.muct",
    "lightning_hw.data.synthetic_faces": "lightning_hw.data.landmarks.synthetic_faces",
    "lightning_hw.data.landmark_augment": "lightning_hw.data.augment.landmarks",
    "lightning_hw.data.files": "lightning_hw.data.io.files",
    "lightning_hw.data.download": "lightning_hw.data.io.download",
    "lightning_hw.data.kaggle": "lightning_hw.data.io.kaggle",
    "lightning_hw.data.image_files": "lightning_hw.data.io.image_files",
    "lightning_hw.data.landmark_fixtures": "lightning_hw.data.fixtures.landmarks",
}
# `lightning_hw.data.augment`, `.landmarks` and `.fixtures` are packages now (their classes
# moved into `.images`, `.base`, `.classification`); a package re-exports nothing, so
# only the names above, which no package replaced, are aliases.


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and hands back the module at its new place."""

    def find_spec(self, fullname: str, path, target=None):  # noqa: ANN001 - the finder protocol
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:  # noqa: ANN001
        module = importlib.import_module(MOVED[spec.name])
        # The import system writes the alias's spec onto the module; the real one goes back in exec_module.
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._real_spec


def install() -> None:
    """Make the old names importable (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
