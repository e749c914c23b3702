"""A search over a head's shape, widths, batch norm, dropout and activation as separate parameters.

A head spec (:mod:`lightning_hw.nets.heads`) is one ``fit`` option, so a plain ``categorical`` of
specs makes every head one opaque choice: the sampler cannot learn that dropout helps whatever the
width. A ``head:`` entry in a study's ``search:`` section instead gives each part of the head its
own Optuna parameter and builds the spec from them for each trial::

    search:
      model.init_args.net.init_args.head:
        head:
          pooling: flatten                              # or gap, gmp, or {categorical: [flatten, gap]}
          layers:                                       # hidden widths, one entry per layer;
            - {categorical: [256, 512, 1024]}           #   0 ends the head there (fewer layers)
            - {categorical: [0, 32, 64, 256]}
          batchnorm: {categorical: [false, true]}       # BatchNorm1d after each hidden Linear
          dropout: {float: [0.0, 0.5], step: 0.1}       # Dropout after each hidden layer (0: none)
          activation: relu                              # after each hidden layer (linear: none)

Any part may be a fixed value or a distribution; the trial's parameters are named
``head.pooling``, ``head.layer1``, ``head.layer2``, ``head.batchnorm``, ``head.dropout``,
``head.activation`` (after the option's last name). The example's choice ``1024, 64``, no batch
norm, dropout 0 is ``[flatten, 1024, relu, 64, relu]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightning_hw.errors import ConfigError
from lightning_hw.nets.heads import POOLING
from lightning_hw.nets.mlp import ACTIVATIONS

KIND = "head"
TASK_HEAD = "model.init_args.head"  # the Classifier's output head and loss, not a net's layers
PARTS = ("pooling", "layers", "batchnorm", "dropout", "activation")
LINEAR = "linear"  # no activation: the reports' Keras heads have linear Dense layers
DEFAULTS: dict[str, Any] = {"pooling": "flatten", "batchnorm": False, "dropout": 0.0, "activation": "relu"}


def compose_head(pooling: str, widths: list[int], batchnorm: bool, dropout: float, activation: str) -> list[int | str]:
    """The head spec of these parts: each hidden layer is ``width[, batchnorm], activation[, dropout:p]``.

    Args:
        pooling: ``flatten``, ``gap`` or ``gmp``.
        widths: hidden widths in order; the first 0 ends the head (no more hidden layers).
        batchnorm: a ``BatchNorm1d`` after each hidden ``Linear``.
        dropout: the dropout rate after each hidden layer (0: none).
        activation: the activation after each hidden layer; ``linear`` for none (Keras' ``Dense`` default).

    Returns:
        e.g. ``["flatten", 1024, "batchnorm", "relu", "dropout:0.3", 64, "batchnorm", "relu", "dropout:0.3"]``.
    """
    spec: list[int | str] = [pooling]
    for width in widths:
        if not width:
            break
        spec += [int(width), *(["batchnorm"] if batchnorm else []), *([activation] if activation != LINEAR else [])]
        if dropout:
            spec.append(f"dropout:{round(float(dropout), 6):g}")
    return spec


@dataclass
class HeadSpace:
    """One ``head:`` entry of a search: the fit option it sets and its parts, fixed or searched.

    Args:
        option: the fit option the composed spec goes to, e.g. ``model.init_args.net.init_args.head``.
        fixed: part -> its value, for parts that are not searched (``layers`` as a list of widths).
        searched: Optuna parameter name -> distribution, for the searched parts.
        layer_params: for each hidden layer, its parameter name or its fixed width.
    """

    option: str
    fixed: dict[str, Any] = field(default_factory=dict)
    searched: dict[str, Any] = field(default_factory=dict)
    layer_params: list[str | int] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.option.rsplit(".", 1)[-1]

    def spec(self, params: dict[str, Any]) -> list[int | str]:
        """The head spec of a trial's parameters (those of this head; others are ignored)."""
        def part(name: str) -> Any:
            key = f"{self.prefix}.{name}"
            return params[key] if key in self.searched else self.fixed[name]

        widths = [params[w] if isinstance(w, str) else w for w in self.layer_params]
        return compose_head(part("pooling"), widths, bool(part("batchnorm")), float(part("dropout")), part("activation"))


def is_head_space(spec: Any) -> bool:
    """Whether a ``search:`` entry is a composed head (``{head: {...}}``)."""
    return isinstance(spec, dict) and set(spec) == {KIND}


def parse_head_space(option: str, spec: Any, where: str, distribution) -> HeadSpace:
    """Read a ``head:`` entry.

    Args:
        option: the fit option the head spec goes to.
        spec: the entry's value, ``{head: {pooling: ..., layers: [...], ...}}``.
        where: where the entry is, for messages.
        distribution: the study file's distribution reader (``{float: ...}`` -> Optuna distribution).

    Raises:
        ConfigError: in one line, for a part that is unknown, missing or out of range.
    """
    parts = spec[KIND]
    if option.rsplit(".", 1)[-1] != KIND:
        raise ConfigError(f"{where}: search {option}: a head: entry composes a net's head spec; {option} is not a head option (e.g. model.init_args.net.init_args.head)")
    if option == TASK_HEAD:
        raise ConfigError(
            f"{where}: search {option}: that is the task's output head (a loss such as softmax_ce); "
            "a head: entry composes the net's head: model.init_args.net.init_args.head"
        )
    where = f"{where}: search {option}: head"
    if not isinstance(parts, dict):
        raise ConfigError(f"{where} maps {', '.join(PARTS)} to values or distributions, got {parts!r}")
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ConfigError(f"{where}: unknown part {sorted(unknown)[0]!r}; the parts are {', '.join(PARTS)}")
    layers = parts.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError(f"{where}: layers must list the hidden widths, one value or distribution per layer, e.g. [{{categorical: [256, 1024]}}, {{categorical: [0, 64]}}]")
    space = HeadSpace(option)
    checks = {
        "pooling": (lambda v: v in POOLING, f"one of {', '.join(POOLING)}"),
        "batchnorm": (lambda v: isinstance(v, bool), "true or false"),
        "dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1, "a rate in [0, 1)"),
        "activation": (lambda v: v in (LINEAR, *ACTIVATIONS), f"one of {LINEAR}, {', '.join(ACTIVATIONS)}"),
        "layers": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a width of 0 or more (0 ends the head)"),
    }
    named = [(name, parts.get(name, DEFAULTS.get(name))) for name in PARTS if name != "layers"]
    named += [(f"layer{i}", value) for i, value in enumerate(layers, 1)]
    for name, value in named:
        ok, expected = checks["layers" if name.startswith("layer") else name]
        if isinstance(value, dict):
            dist = distribution(value, f"{where} {name}")
            bad = [v for v in _values(dist) if not ok(v)]
            if bad:
                raise ConfigError(f"{where} {name}: {bad[0]!r} is not {expected}")
            value = f"{space.prefix}.{name}"  # from here on: the name of the trial's parameter
            space.searched[value] = dist
        elif not ok(value):
            raise ConfigError(f"{where} {name}: {value!r} is not {expected}")
        else:
            space.fixed[name] = value
        if name.startswith("layer"):
            space.layer_params.append(value)
    return space


def _values(dist) -> list:
    """The values a distribution can give that we check: a categorical's choices, a range's bounds."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    return [dist.low, dist.high]
