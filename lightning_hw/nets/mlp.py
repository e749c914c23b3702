"""The multi-layer perceptron of the course reports (Keras ``Sequential`` of ``Dense``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_hw.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by its lower-case name."""
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; available: {', '.join(ACTIVATIONS)}") from None


class MLP(nn.Module):
    """Flatten, then ``Dense(h) -> [BatchNorm] -> act -> [Dropout]`` per hidden size, then a linear output.

    The output layer has no activation: the task's output head applies softmax or
    sigmoid inside its loss (numerically safer than Keras' separate softmax layer).

    Args:
        input_shape: shape of one sample; it is flattened, as Keras ``Flatten()`` does.
        num_outputs: width of the output layer (set by the task).
        hidden: sizes of the hidden layers, e.g. ``[128]`` for the E1 model factory.
        activation: name of the hidden activation (``relu``, ``tanh``, ...).
        dropout: one rate for every hidden layer, or one per hidden layer (0 = none).
        batch_norm: insert ``BatchNorm1d`` after each hidden ``Linear``.
        l1: L1 penalty on every layer's weight matrix (Keras ``kernel_regularizer=L1L2``).
        l2: L2 penalty on every layer's weight matrix (sum of squares times ``l2``).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        hidden: list[int] = [128],  # noqa: B006 - jsonargparse shows list defaults; never mutated
        activation: str = "relu",
        dropout: float | list[float] = 0.0,
        batch_norm: bool = False,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        super().__init__()
        rates = dropout if isinstance(dropout, list) else [dropout] * len(hidden)
        if len(rates) != len(hidden):
            raise ConfigError(f"dropout has {len(rates)} rates for {len(hidden)} hidden layers; give one or one each")
        self.l1, self.l2 = float(l1), float(l2)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size, rate in zip(hidden, rates):
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(make_activation(activation))
            if rate > 0:
                layers.append(nn.Dropout(rate))
            width = size
        layers.append(nn.Linear(width, num_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def regularization_loss(self) -> torch.Tensor | None:
        """``l1 * sum|W| + l2 * sum(W^2)`` over every Linear weight (biases excluded, as in Keras).

        ``None`` without a penalty: adding a zero would cost an extra op and autograd node
        per training step.
        """
        if not (self.l1 or self.l2):
            return None
        weights = [m.weight for m in self.modules() if isinstance(m, nn.Linear)]
        zero = weights[0].new_zeros(())
        l1 = sum((w.abs().sum() for w in weights), zero)
        l2 = sum((w.square().sum() for w in weights), zero)
        return self.l1 * l1 + self.l2 * l2
