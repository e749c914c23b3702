"""Which metric a study's runs checkpoint on, when its file names no objective: the task's own.

A task may choose its ``monitor`` (and ``monitor_mode``) in ``__init__``, from its arguments
(``self.monitor = "val/f1"`` when built with ``metric: f1``), as Lightning users set such
things; ``fit`` reads them from the task it built. A search reading only the class attribute
optimised another metric than the one its runs' checkpoints pick (``val/acc`` up while each run
kept its best ``val/loss``). So the task is built here as ``fit`` builds it: its configs
composed, its data-linked sizes taken from the configured datamodule (not set up), its backbones
without their pretrained weights (:func:`~lightning_hw.nets.backbones.without_pretrained_weights`:
they choose nothing in ``__init__``, and fetching them cost the study process a hub probe or a
download). Building densenet201's or resnet152's task costs about 1 s once the libraries are
imported (most of the 5-9 s of the first build is importing them); building it on the meta device
saves little of that and breaks image datamodules, which read their files to give the sizes.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import yaml


def composed_section(configs: list[str], fit_args: list[str], section: str) -> dict[str, Any]:
    """A ``model:`` or ``data:`` section as a trial's ``fit`` composes it, in the order ``fit`` reads them.

    Args:
        configs: the study's base config files, first to last (a later one overrides).
        fit_args: the rest of the trials' command line: the study file's ``args:`` as options
            (its ``config:`` files as ``--config``) and the options given to ``study``.
        section: ``"model"`` or ``"data"``.

    Returns:
        ``{"class_path": ..., "init_args": {...}}`` (``class_path`` ``None`` when none is named).
    """
    composed: dict[str, Any] = {"class_path": None, "init_args": {}}
    for key, value in fit_sources(configs, fit_args):
        if key is None:  # a config file
            given = value.get(section)
            if isinstance(given, str):
                given = {"class_path": given}
            if isinstance(given, dict):  # anything else is fit's to refuse
                _merge(composed, given)
        elif key in (section, f"{section}.class_path"):
            composed["class_path"] = value
        elif key.startswith(f"{section}.init_args."):
            set_dotted(composed["init_args"], key.removeprefix(f"{section}.init_args."), value)
        elif key.startswith(f"{section}."):  # jsonargparse's shorthand: model.lr is model.init_args.lr
            set_dotted(composed["init_args"], key.removeprefix(f"{section}."), value)
    return composed


def composed_run_monitor(configs: list[str], fit_args: list[str]) -> str | None:
    """The ``run.monitor`` a trial's ``fit`` gets from these configs and options (the last one given), if any."""
    monitor = None
    for key, value in fit_sources(configs, fit_args):
        if key is None:
            monitor = (value.get("run") if isinstance(value.get("run"), dict) else {}).get("monitor") or monitor
        elif key == "run.monitor":
            monitor = value
    return None if monitor is None else str(monitor)


def fit_sources(configs: list[str], fit_args: list[str]) -> list[tuple[str | None, Any]]:
    """What ``fit --config C... ARGS`` reads, in order: ``(None, a config file's mapping)`` or ``(option key, value)``.

    Values are read as YAML, as jsonargparse reads them (``0.1`` a number, ``[16, 8]`` a list).
    """
    sources: list[tuple[str | None, Any]] = [(None, _read_config(config)) for config in configs]
    i = 0
    while i < len(fit_args):
        arg = fit_args[i]
        i += 1
        if not arg.startswith("--"):
            continue
        key, inline, value = arg[2:].partition("=")
        if not inline:
            value, i = (fit_args[i], i + 1) if i < len(fit_args) else ("", i)
        sources.append((None, _read_config(value)) if key == "config" else (key, _yaml_value(value)))
    return sources


def _read_config(path: str) -> dict[str, Any]:
    """A config file's mapping; ``{}`` for one that cannot be read as one (the trials' ``fit`` says why, in one line)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def built_task(model: dict[str, Any], data: dict[str, Any]) -> tuple[Any | None, str]:
    """The task ``model`` configures, built as ``fit`` builds it (``__init__`` run), and why not if it cannot be.

    Args:
        model: the composed ``model:`` section (see :func:`composed_section`).
        data: the composed ``data:`` section, whose datamodule gives the task's ``linked_from_data`` sizes.

    Returns:
        ``(task, "")``, or ``(None, reason)``: the first line of the error that stopped the build
        (``""`` too when no task class is named or found: the trials' ``fit`` refuses that).
    """
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningModule

    from lightning_hw import registry
    from lightning_hw.nets.backbones import without_pretrained_weights

    registry.discover()
    task_cls = registry.import_class(str(model.get("class_path") or ""), "task")
    if task_cls is None:
        return None, ""
    init_args = copy.deepcopy(model.get("init_args") or {})
    missing = [name for name in getattr(task_cls, "linked_from_data", ()) if name not in init_args]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningModule, "model", required=True)
    # Anything this cannot build (a datamodule that needs its files first, a plugin's own
    # requirements) leaves the class attribute to decide, and the study says so with this reason;
    # the trial's fit, which builds it for real, still reports its own errors. Its warnings are the fit's to show.
    with warnings.catch_warnings(), without_pretrained_weights():
        warnings.simplefilter("ignore")
        try:
            init_args.update(_linked_sizes(missing, data))
            config = {"class_path": f"{task_cls.__module__}.{task_cls.__qualname__}", "init_args": init_args}
            return parser.instantiate_classes(parser.parse_object({"model": config})).model, ""
        except Exception as err:  # noqa: BLE001 - see above
            return None, _first_line(err)


def _first_line(err: Exception) -> str:
    """The first line of the error a user can fix behind ``err`` (jsonargparse wraps it), shortened, for a note."""
    from lightning_hw.errors import user_error_in

    text = str(user_error_in(err) or err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _linked_sizes(names: list[str], data: dict[str, Any]) -> dict[str, Any]:
    """The values ``fit`` links into the task's ``names`` from the configured datamodule (its size properties)."""
    if not names or not data.get("class_path"):
        return {}
    from lightning_hw import registry
    from lightning_hw.checkpoints import datamodule_of, sizes_from_data

    data_cls = registry.import_class(str(data["class_path"]), "datamodule")
    if data_cls is None:
        return {}
    config = {"class_path": f"{data_cls.__module__}.{data_cls.__qualname__}", "init_args": data.get("init_args") or {}}
    return sizes_from_data(datamodule_of(config), names)


def _merge(into: dict[str, Any], given: dict[str, Any]) -> None:
    """Merge a config's section into the composed one: ``init_args`` key by key (nested dicts too), the rest replaced."""
    for key, value in given.items():
        if key != "init_args":
            into[key] = value
        elif isinstance(value, dict):
            deep_merge(into["init_args"], value)


def deep_merge(into: dict[str, Any], given: dict[str, Any]) -> None:
    """Merge config mapping ``given`` into ``into``, nested mappings key by key (a later config over an earlier one)."""
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def set_dotted(config: dict[str, Any], dotted: str, value: Any) -> None:
    """``model.init_args.lr`` -> ``config["model"]["init_args"]["lr"]`` (a class name string becomes ``{class_path: ...}``)."""
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        child = node.get(key)
        if isinstance(child, str):
            child = {"class_path": child}
        elif not isinstance(child, dict):
            child = {}
        node[key] = child
        node = child
    node[last] = value
