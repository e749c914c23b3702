"""GPU speed-ups that are not Trainer flags: channels-last weights and TF32 matrix multiplies."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn


class ChannelsLast(Callback):
    """Store the 4-D weights of a network with 2-D convolutions in channels-last (NHWC) order.

    Tensor cores run convolutions in (b)f16 on NHWC data; with NCHW weights cuDNN
    transposes around every convolution. Converting the weights is enough: a
    convolution with a channels-last weight produces a channels-last output, so the
    format propagates from the first layer on and the inputs need no conversion.
    Networks without ``Conv2d`` (MLPs) are left alone, so the preset is safe for every
    config. The conversion happens once, in ``setup``, before the optimizer is built.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if any(isinstance(m, nn.Conv2d) for m in pl_module.modules()):
            pl_module.to(memory_format=torch.channels_last)
            rank_zero_info("ChannelsLast: conv weights stored channels-last (NHWC)")


class Float32MatmulPrecision(Callback):
    """Let float32 matrix multiplies use TF32 tensor cores (``torch.set_float32_matmul_precision``).

    Under mixed precision most matmuls already run in 16 bits; this covers the float32
    ones (losses, layers autocast keeps in float32) and silences Lightning's hint.

    Args:
        precision: ``highest`` (exact float32), ``high`` (TF32) or ``medium`` (bf16).
    """

    def __init__(self, precision: str = "high") -> None:
        if precision not in ("highest", "high", "medium"):
            raise ValueError(f"precision must be highest, high or medium, got {precision!r}")
        self.precision = precision

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        torch.set_float32_matmul_precision(self.precision)
