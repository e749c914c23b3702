"""Which metric a study's runs checkpoint on, when its file names no objective: the task's own.

A task may choose its ``monitor`` (and ``monitor_mode``) in ``__init__``, from its arguments
(``self.monitor = "val/f1"`` when built with ``metric: f1``), as Lightning users set such
things; ``fit`` reads them from the task it built. A search reading only the class attribute
optimised another metric than the one its runs' checkpoints pick (``val/acc`` up while each run
kept its best ``val/loss``). So the task is built here as ``fit`` builds it: its configs
composed, its data-linked sizes taken from the configured datamodule (not set up).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import yaml


def composed_section(configs: list[str], args: dict[str, Any] | None, section: str) -> dict[str, Any]:
    """A ``model:`` or ``data:`` section as ``fit`` composes it: configs in order, then the study's ``args``.

    Args:
        configs: the study's base config files, first to last (a later one overrides).
        args: the study file's ``args:`` (``model.init_args.lr: 0.1``, ``model: Classifier``...).
        section: ``"model"`` or ``"data"``.

    Returns:
        ``{"class_path": ..., "init_args": {...}}`` (``class_path`` ``None`` when none is named).
    """
    composed: dict[str, Any] = {"class_path": None, "init_args": {}}
    for config in configs:
        loaded = yaml.safe_load(Path(config).read_text()) or {}
        given = loaded.get(section) if isinstance(loaded, dict) else None
        if isinstance(given, str):
            given = {"class_path": given}
        if isinstance(given, dict):  # anything else is fit's to refuse
            _merge(composed, given)
    for key, value in (args or {}).items():
        if key in (section, f"{section}.class_path"):
            composed["class_path"] = value
        elif key.startswith(f"{section}.init_args."):
            _set_dotted(composed["init_args"], key.removeprefix(f"{section}.init_args."), value)
        elif key.startswith(f"{section}."):  # jsonargparse's shorthand: model.lr is model.init_args.lr
            _set_dotted(composed["init_args"], key.removeprefix(f"{section}."), value)
    return composed


def built_task(model: dict[str, Any], data: dict[str, Any]) -> Any | None:
    """The task ``model`` configures, built as ``fit`` builds it (``__init__`` run); ``None`` if it cannot be built here.

    Args:
        model: the composed ``model:`` section (see :func:`composed_section`).
        data: the composed ``data:`` section, whose datamodule gives the task's ``linked_from_data`` sizes.
    """
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningModule

    from lightning_hw import registry

    registry.discover()
    task_cls = registry.import_class(str(model.get("class_path") or ""), "task")
    if task_cls is None:
        return None
    init_args = copy.deepcopy(model.get("init_args") or {})
    missing = [name for name in getattr(task_cls, "linked_from_data", ()) if name not in init_args]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningModule, "model", required=True)
    # Anything this cannot build (a datamodule that needs its files first, a plugin's own
    # requirements) leaves the class attribute to decide, as before; the trial's fit, which
    # builds it for real, still reports its own errors. Its warnings are the fit's to show.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            init_args.update(_linked_sizes(missing, data))
            config = {"class_path": f"{task_cls.__module__}.{task_cls.__qualname__}", "init_args": init_args}
            return parser.instantiate_classes(parser.parse_object({"model": config})).model
        except Exception:  # noqa: BLE001 - see above
            return None


def _linked_sizes(names: list[str], data: dict[str, Any]) -> dict[str, Any]:
    """The values ``fit`` links into the task's ``names`` from the configured datamodule (its size properties)."""
    if not names or not data.get("class_path"):
        return {}
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    from lightning_hw import registry

    data_cls = registry.import_class(str(data["class_path"]), "datamodule")
    if data_cls is None:
        return {}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    config = {"class_path": f"{data_cls.__module__}.{data_cls.__qualname__}", "init_args": data.get("init_args") or {}}
    datamodule = parser.instantiate_classes(parser.parse_object({"data": config})).data
    linked = {}
    for name in names:
        try:
            linked[name] = getattr(datamodule, name)
        except (AttributeError, NotImplementedError):  # not a size this data gives: the task's default, as in fit
            continue
    return linked


def _merge(into: dict[str, Any], given: dict[str, Any]) -> None:
    """Merge a config's section into the composed one: ``init_args`` key by key (nested dicts too), the rest replaced."""
    for key, value in given.items():
        if key != "init_args":
            into[key] = value
        elif isinstance(value, dict):
            _deep_update(into["init_args"], value)


def _deep_update(into: dict[str, Any], given: dict[str, Any]) -> None:
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _set_dotted(into: dict[str, Any], dotted: str, value: Any) -> None:
    """``net.init_args.hidden`` = value, in nested dicts."""
    *parents, last = dotted.split(".")
    for name in parents:
        if not isinstance(into.get(name), dict):
            into[name] = {}
        into = into[name]
    into[last] = value
