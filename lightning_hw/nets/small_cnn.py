"""A small VGG-style CNN for CPU demos (the landmark demo trains it in minutes on 2 cores).

Why not a timm backbone: the smallest ImageNet architectures (``resnet10t``,
``mobilenetv3_small``) still cost 10-20x more multiply-adds per 64x64 image than this
net, which is the difference between a few minutes and an hour on a shared CPU; and
their global average pooling throws away *where* a feature is, which a regression of
coordinates has to recover from padding effects. Here the last feature map can be
flattened (``pool: flatten``), keeping position explicit, or, for landmarks, read by a
spatial soft-argmax (``head: soft_argmax``, as in DSNT, Nibali et al. 2018): one score
map per point, softmax over positions, and the expected ``(x, y)`` under it. That head
is translation-equivariant (a feature detector anywhere in the image gives the same
evidence), which is why it learns accurate points from far fewer examples than a
dense layer over the flattened map.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_hw.errors import ConfigError
from lightning_hw.nets.mlp import make_activation

POOLS = ("flatten", "avg", "max")
HEADS = ("linear", "soft_argmax")


class SoftArgmax2d(nn.Module):
    """Expected ``(x, y)`` of each channel's softmax over positions, in (0, 1) image units.

    Input ``(N, K, h, w)`` score maps; output ``(N, 2K)`` as ``x0, y0, x1, y1, ...``, where
    cell ``j`` of ``w`` stands for the centre ``(j + 0.5) / w`` of the image strip it covers
    (the continuous pixel convention of the landmark datamodules).
    """

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        n, k, h, w = scores.shape
        prob = scores.flatten(2).softmax(dim=-1).view(n, k, h, w)
        xs = (torch.arange(w, device=scores.device, dtype=prob.dtype) + 0.5) / w
        ys = (torch.arange(h, device=scores.device, dtype=prob.dtype) + 0.5) / h
        x = (prob.sum(dim=2) * xs).sum(dim=-1)
        y = (prob.sum(dim=3) * ys).sum(dim=-1)
        return torch.stack([x, y], dim=-1).view(n, 2 * k)


class SmallCNN(nn.Module):
    """``[Conv3x3 -> BatchNorm -> act -> MaxPool2] x len(channels)``, pooling, hidden layers, linear output.

    Args:
        input_shape: ``(channels, height, width)`` of one image (from the datamodule).
        num_outputs: width of the output layer (from the task).
        channels: output channels of each conv block; each block halves the resolution.
        hidden: sizes of fully connected layers between the features and the output.
        pool: ``flatten`` (keep the last feature map, position included), ``avg`` or
            ``max`` (global pooling, as ImageNet backbones do); for the ``linear`` head.
        head: ``linear`` (pooling, ``hidden`` layers and a linear output) or
            ``soft_argmax`` (landmarks: ``num_outputs / 2`` score maps from a 1x1
            convolution, read as points in (0, 1); use the task's
            ``output_activation: none``). With ``soft_argmax`` the last block does not
            pool, so the maps have ``1 / 2**(len(channels) - 1)`` of the input resolution.
        batch_norm: batch normalisation after every convolution.
        activation: name of the activation (``relu``, ``gelu``, ...).
        dropout: dropout rate before each fully connected layer.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        channels: list[int] = [16, 32, 64, 128],  # noqa: B006 - jsonargparse shows list defaults; never mutated
        hidden: list[int] = [],  # noqa: B006
        pool: str = "flatten",
        head: str = "linear",
        batch_norm: bool = True,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(f"SmallCNN needs images shaped (channels, height, width), the data gives {tuple(input_shape)}")
        if pool not in POOLS:
            raise ConfigError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if head == "soft_argmax" and num_outputs % 2:
            raise ConfigError(f"the soft_argmax head predicts (x, y) pairs; {num_outputs} outputs is odd")
        in_ch, h, w = input_shape
        if min(h, w) < 2 ** len(channels):
            raise ConfigError(f"{len(channels)} conv blocks halve a {h}x{w} image below one pixel; use fewer channels entries")
        blocks: list[nn.Module] = []
        for i, out_ch in enumerate(channels):
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=not batch_norm)]
            blocks += [nn.BatchNorm2d(out_ch)] if batch_norm else []
            blocks += [make_activation(activation)]
            in_ch = out_ch
            if head == "linear" or i < len(channels) - 1:
                blocks.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*blocks)
        if head == "soft_argmax":
            self.pool = nn.Identity()
            self.head = nn.Sequential(nn.Dropout2d(dropout) if dropout else nn.Identity(),
                                      nn.Conv2d(in_ch, num_outputs // 2, 1), SoftArgmax2d())
        elif pool == "flatten":
            self.pool: nn.Module = nn.Flatten()
            width = in_ch * h * w
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1), nn.Flatten())
            width = in_ch
        if head == "linear":
            layers: list[nn.Module] = []
            for size in hidden:
                layers += [nn.Dropout(dropout)] if dropout else []
                layers += [nn.Linear(width, size), make_activation(activation)]
                width = size
            layers += [nn.Dropout(dropout)] if dropout else []
            layers.append(nn.Linear(width, num_outputs))
            self.head = nn.Sequential(*layers)
        self.num_parameters = sum(math.prod(p.shape) for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))
