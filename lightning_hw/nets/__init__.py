"""Networks: plain ``nn.Module``s that a task builds once it knows the data's sizes.

A task receives its net as a *factory*: in YAML a ``class_path`` plus the init args
that are not data-dependent. The task then calls it with ``(input_shape,
num_outputs)``, which it knows from the datamodule (linked by the CLI) and its own
output head. So a net class only has to accept those two as its first parameters.
"""

import inspect
import typing
from collections.abc import Callable
from typing import Any

from torch import nn

#: ``net(input_shape, num_outputs) -> nn.Module``; jsonargparse builds it from a class_path.
NetFactory = Callable[[tuple[int, ...], int], nn.Module]


def build_net(net: "NetFactory | nn.Module", input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Return ``net`` itself if it is already a module, else call the factory.

    Args:
        net: a ready module (Python API) or a factory (from the CLI).
        input_shape: shape of one input sample, without the batch dimension.
        num_outputs: width of the last layer.
    """
    if isinstance(net, nn.Module):
        return net
    return net(tuple(input_shape), num_outputs)


def unfit_net_message(task: type, net: Any) -> str | None:
    """Why the net a config names cannot be called as ``net(input_shape, num_outputs, **init_args)``, if so.

    jsonargparse accepts any class for a ``NetFactory`` without looking at its parameters, and
    the call in :func:`build_net` would then fail with a traceback from inside jsonargparse.

    Args:
        task: the task class; only its ``net`` argument, if typed ``NetFactory``, is checked.
        net: the parsed ``net`` value (``class_path`` and ``init_args``).
    """
    from lightning_hw.registry import import_class

    try:
        hints = typing.get_type_hints(task.__init__)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: nothing to check against
        return None
    class_path = net.get("class_path") if hasattr(net, "get") else None
    if hints.get("net") != NetFactory or not isinstance(class_path, str):
        return None
    cls = import_class(class_path)
    if cls is None:  # a function, or nothing importable: the parser or the call says so
        return None
    init_args = net.get("init_args") or {}
    try:
        inspect.signature(cls).bind((1,), 1, **dict(init_args))
    except TypeError:
        name = cls.__name__
        params = ", ".join(p for p in inspect.signature(cls).parameters)
        return (
            f"{name} cannot be a net: the task calls it as {name}(input_shape, num_outputs, ...), so its first two "
            f"init parameters must be input_shape and num_outputs ({name}({params}))"
        )
    except ValueError:  # no signature to check
        return None
    return None
