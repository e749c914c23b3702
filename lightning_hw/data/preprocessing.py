"""A pretrained backbone's preprocessing, handed to the image datamodule automatically.

The E5 report fed ResNet152 raw pixels without ImageNet's normalisation and lost ~16
points of accuracy. Here a net that knows its preprocessing
(:class:`~lightning_hw.nets.backbones.TimmNet`, through timm's data config) passes it
on: the CLI calls :func:`link_model_preprocessing` right after building the task and the
datamodule, before any image is decoded. From Python, call it yourself::

    link_model_preprocessing(model, datamodule)   # before trainer.fit(model, datamodule)

What is taken from the backbone, and what stays the datamodule's:

* ``mean`` / ``std``: the backbone's, unless the datamodule was given its own (or
  ``standardize: true``); a grey datamodule gets the channel average.
* ``interpolation``: the backbone's, unless the datamodule's differs from its default
  (so a value you set is kept; setting the default value itself cannot be told apart).
* ``image_size`` and ``crop_pct`` stay the datamodule's: the image size fixes the shape
  the net is built for (E5 uses 128x128, not timm's 224), and E5 resizes whole images
  (``crop_pct: null``) where timm's evaluation transform would crop the centre.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn
from torchvision.transforms.v2 import InterpolationMode

from lightning_hw.nets.backbones import find_data_config


def _default_of(obj: object, name: str) -> Any:
    try:
        return inspect.signature(type(obj)).parameters[name].default
    except (KeyError, TypeError, ValueError):
        return inspect.Parameter.empty


def apply_data_config(datamodule: object, config: dict[str, Any]) -> dict[str, Any]:
    """Set the datamodule's normalisation and interpolation from a timm data config.

    Args:
        datamodule: an image datamodule with ``mean``, ``std`` and optionally
            ``interpolation`` attributes (:class:`~lightning_hw.data.images.ImageDataModule`
            and its subclasses), not set up yet.
        config: ``timm.data.resolve_model_data_config(model)``.

    Returns:
        The settings that were changed, by name (empty when the datamodule has no such settings).
    """
    changed: dict[str, Any] = {}
    if not hasattr(datamodule, "mean") or not hasattr(datamodule, "std"):
        return changed
    if getattr(datamodule, "data", None):
        # Images are decoded (and resized) at set-up; changing the recipe afterwards would
        # leave the stored pixels and the new settings out of step.
        raise RuntimeError("link_model_preprocessing must run before the datamodule is set up")
    if datamodule.mean is None and not getattr(datamodule, "standardize_images", False):
        mean, std = list(config["mean"]), list(config["std"])
        channels = getattr(datamodule, "image_shape", (len(mean),))[0]
        if channels == 1 and len(mean) > 1:  # timm sums a grey stem's weights; average the statistics
            mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
        datamodule.mean, datamodule.std = mean, std
        changed["mean"], changed["std"] = mean, std
    current = getattr(datamodule, "interpolation", None)
    wanted = config.get("interpolation")
    if current is not None and wanted:
        default = _default_of(datamodule, "interpolation")
        current_name = current.value if isinstance(current, InterpolationMode) else str(current)
        if current_name == default and current_name != wanted:
            datamodule.interpolation = InterpolationMode(wanted) if isinstance(current, InterpolationMode) else wanted
            changed["interpolation"] = wanted
    return changed


def link_backbone_preprocessing(model: nn.Module | None, datamodule: object) -> dict[str, Any]:
    """Give ``datamodule`` the preprocessing of ``model``'s backbone, if it has one.

    Args:
        model: the task (any module containing a :class:`~lightning_hw.nets.backbones.TimmNet`).
        datamodule: the image datamodule, before set-up.

    Returns:
        The datamodule settings that were set, by name (empty when none was).
    """
    config = find_data_config(model)
    if config is None or datamodule is None:
        return {}
    return apply_data_config(datamodule, config)


def _shown(value: Any) -> Any:
    return [round(v, 3) for v in value] if isinstance(value, list) else value


def linked_settings_summary(changed: dict[str, Any]) -> str | None:
    """The settings :func:`link_backbone_preprocessing` set, in one line for the console (``None``: none)."""
    if not changed:
        return None
    settings = ", ".join(f"{k}={_shown(value)}" for k, value in changed.items())
    return f"Preprocessing from the backbone's timm data config: {settings}"


def link_model_preprocessing(model: nn.Module | None, datamodule: object) -> str | None:
    """:func:`link_backbone_preprocessing`, returning :func:`linked_settings_summary`."""
    return linked_settings_summary(link_backbone_preprocessing(model, datamodule))


def linked_settings_note(changed: dict[str, Any]) -> str:
    """YAML comment lines for a saved config: the settings it leaves to the backbone, and what they were.

    The saved config holds the settings as given (an unset ``mean``, the default
    ``interpolation``), which is what makes a rerun link them again; without this note it read
    as if the run had used those values.
    """
    lines = ["# When this config runs, the backbone's timm data config gives these data settings (below: as given):"]
    lines += [f"#   data.init_args.{k}: {value}" for k, value in changed.items()]
    return "\n".join(lines) + "\n"
