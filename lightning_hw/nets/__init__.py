"""Networks: plain ``nn.Module``s that a task builds once it knows the data's sizes.

A task receives its net as a *factory*: in YAML a ``class_path`` plus the init args
that are not data-dependent. The task then calls it with ``(input_shape,
num_outputs)``, which it knows from the datamodule (linked by the CLI) and its own
output head. So a net class only has to accept those two as its first parameters.
"""

from collections.abc import Callable

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
