"""Classifier heads from a short spec: ``[flatten, 256, batchnorm, dropout:0.5, 64, relu]``.

The E5 report searched Keras heads such as ``Flatten -> Dense(1024) -> Dense(64)`` or
``Flatten -> Dense(256) -> BatchNormalization`` on top of a frozen backbone. A spec is
the list of those layers in order, one token per layer:

=================  =====================================================================
token              layer
=================  =====================================================================
``flatten``        flatten the backbone's feature map (Keras ``Flatten``); first token only
``gap`` / ``gmp``  global average / max pooling of the feature map; first token only
``256``            ``Linear(256)``: a Keras ``Dense(256)`` with its default linear activation
``relu``, ...      an activation (``relu``, ``sigmoid``, ``tanh``, ``gelu``, ``elu``, ...)
``256:relu``       shorthand for ``256, relu``
``batchnorm``      ``BatchNorm1d`` (alias ``bn``)
``dropout:0.5``    ``Dropout(0.5)``
=================  =====================================================================

The output layer ``Linear(num_outputs)`` is always appended: 1 logit for the
``binary_bce`` head (Keras ``Dense(1, sigmoid)``), one per class for ``softmax_ce``
(Keras ``Dense(2, softmax)``); the task's output head owns that final activation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from lightning_hw.errors import ConfigError
from lightning_hw.nets.mlp import ACTIVATIONS, make_activation

#: first-token pooling name -> timm ``global_pool`` value ("" keeps the feature map)
POOLING = {"flatten": "", "gap": "avg", "gmp": "max"}

HeadSpec = Sequence[int | str]


def _bad(token: object, why: str) -> ConfigError:
    return ConfigError(
        f"head token {token!r}: {why}; tokens are flatten|gap|gmp (first), sizes like 256 or 256:relu, "
        f"batchnorm, dropout:RATE and activations ({', '.join(ACTIVATIONS)})"
    )


def split_pooling(spec: HeadSpec) -> tuple[str, list[int | str]]:
    """Separate the pooling token that starts a spec from its layers.

    Args:
        spec: the head spec, e.g. ``["flatten", 256, "batchnorm"]``.

    Returns:
        ``(pooling, layers)``: ``pooling`` is ``flatten``, ``gap`` or ``gmp``.
    """
    tokens = list(spec)
    first = str(tokens[0]).lower() if tokens else None
    if first not in POOLING:
        raise ConfigError(
            f"a head spec starts with flatten (keep the whole feature map, as the report's Flatten) "
            f"or gap/gmp (global average/max pooling), got {list(spec)!r}"
        )
    later = [t for t in tokens[1:] if str(t).lower() in POOLING]
    if later:
        raise _bad(later[0], "pooling can only be the first token")
    return first, tokens[1:]


def _layers_for(token: int | str) -> list[nn.Module | int]:
    """The module(s) of one token; an int stands for a Linear of that width (built later)."""
    if isinstance(token, bool):
        raise _bad(token, "not a layer")
    if isinstance(token, int):
        if token < 1:
            raise _bad(token, "a layer width must be positive")
        return [token]
    if not isinstance(token, str):
        raise _bad(token, "not a layer")
    name, _, arg = token.strip().lower().partition(":")
    if name.isdigit():
        return [*_layers_for(int(name)), *([_activation(arg, token)] if arg else [])]
    if name in ("batchnorm", "bn"):
        if arg:
            raise _bad(token, "batchnorm takes no argument")
        return [nn.BatchNorm1d]  # type: ignore[list-item]  # width known only when built
    if name == "dropout":
        try:
            rate = float(arg)
        except ValueError:
            raise _bad(token, "write the rate as dropout:0.5") from None
        if not 0 <= rate < 1:
            raise _bad(token, "the dropout rate must be in [0, 1)")
        return [nn.Dropout(rate)]
    if arg:
        raise _bad(token, "only sizes and dropout take an argument")
    return [_activation(name, token)]


def _activation(name: str, token: object) -> nn.Module:
    if name.lower() not in ACTIVATIONS:
        raise _bad(token, "unknown layer")
    return make_activation(name)


def build_head(layers: Sequence[int | str], in_shape: Sequence[int], num_outputs: int, flatten: bool) -> nn.Sequential:
    """The head as an ``nn.Sequential``, output layer included.

    Args:
        layers: the spec without its pooling token (see :func:`split_pooling`).
        in_shape: shape of one backbone output, e.g. ``(1920, 4, 4)`` or ``(2048,)``.
        num_outputs: width of the output layer.
        flatten: start with ``nn.Flatten`` (the spec began with ``flatten``).
    """
    modules: list[nn.Module] = [nn.Flatten()] if flatten else []
    width = math.prod(in_shape)
    for token in layers:
        for layer in _layers_for(token):
            if isinstance(layer, int):
                modules.append(nn.Linear(width, layer))
                width = layer
            elif layer is nn.BatchNorm1d:
                modules.append(nn.BatchNorm1d(width))
            else:
                modules.append(layer)
    modules.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*modules)
