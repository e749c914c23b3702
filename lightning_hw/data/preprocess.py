"""The one definition of "raw sample -> model input" of a datamodule.

A trained model is only as good as the inputs it is given: the E5 report lost 16 points
when a prediction path skipped ImageNet's normalisation. Every lightning-hw datamodule
therefore builds one :class:`Preprocess` at set-up (from the training split's statistics)
and uses it for training; ``predict --predict_from`` applies the same module to files, and
``export`` puts it into the ONNX graph, so the three cannot drift apart.

A raw sample is what the files hold, in their units: an image's pixel values 0-255 at the
training size (decoding and resizing happen before, stated in the metadata), the digits'
intensities 0-16, a table's feature columns. The module then does, in order::

    x.float() / divide_by  ->  (x - mean) / std  ->  flatten (MLPs on images)

Random augmentation, when training, sits between the scaling and the normalisation
(:meth:`Preprocess.scale`, then the augmentation, then :meth:`Preprocess.normalize`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def feature_stats(train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of every feature over the training samples (dimension 0).

    Features that are constant in the training split (std 0, e.g. always-black border
    pixels) get std 1: they are only centred.
    """
    x = train_x.float()
    mean, std = x.mean(dim=0), x.std(dim=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


class Preprocess(nn.Module):
    """Raw samples ``(N, *raw_shape)`` -> what the network takes.

    Args:
        raw_shape: shape of one raw sample, e.g. ``(3, 64, 64)`` or ``(20,)``.
        units: what the raw values are, for people and the ONNX metadata
            (e.g. ``"pixel values 0-255 as decoded from the image file, RGB"``).
        divide_by: scale applied first (255 for 8-bit pixels, 16 for the digits).
        mean: subtracted after scaling: one value per channel (images) or a tensor of
            ``raw_shape`` (one per feature); ``None``: no normalisation.
        std: divided by after subtracting ``mean``; same form as ``mean``.
        flatten: give the network flat vectors (MLPs on images).
        decode: how files become raw samples (resize, interpolation, colour...), for the metadata only.
    """

    def __init__(
        self,
        raw_shape: Sequence[int],
        units: str = "numbers as stored",
        divide_by: float = 1.0,
        mean: Sequence[float] | torch.Tensor | None = None,
        std: Sequence[float] | torch.Tensor | None = None,
        flatten: bool = False,
        decode: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.raw_shape = tuple(int(s) for s in raw_shape)
        self.units = units
        self.divide_by = float(divide_by)
        self.flatten = flatten
        self.decode = dict(decode or {})
        self.normalizes = mean is not None
        if mean is not None:
            mean_t, std_t = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
            if mean_t.shape != torch.Size(self.raw_shape):
                if mean_t.numel() not in (1, self.raw_shape[0]) or std_t.numel() != mean_t.numel():
                    raise ValueError(
                        f"mean and std need 1 value, one per channel ({self.raw_shape[0]}) or one per feature "
                        f"{self.raw_shape}; got {mean_t.numel()} and {std_t.numel()}"
                    )
                # One value per channel: broadcast over the channel dimension (dimension 1 of a batch).
                view = (1, -1) + (1,) * (len(self.raw_shape) - 1)
                mean_t, std_t = mean_t.reshape(view), std_t.reshape(view)
            self.register_buffer("mean", mean_t)
            self.register_buffer("std", std_t)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one model input."""
        return (math.prod(self.raw_shape),) if self.flatten else self.raw_shape

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Raw values -> float, divided by :attr:`divide_by` (pixels to [0, 1])."""
        x = x.float()
        return x / self.divide_by if self.divide_by != 1.0 else x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled values -> model input: subtract the mean, divide by the std, flatten."""
        if self.normalizes:
            if self.mean.device != x.device:  # the batch moved to the accelerator; follow it once
                self.to(x.device)
            x = (x - self.mean) / self.std
        return x.flatten(1) if self.flatten else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of raw samples -> a batch of model inputs (no augmentation)."""
        return self.normalize(self.scale(x))

    def settings(self) -> dict[str, Any]:
        """What this preprocessing does, without its statistics: two equal settings prepare inputs alike."""
        normalization = None
        if self.normalizes:
            normalization = "per channel" if self.mean.numel() < math.prod(self.raw_shape) else "per feature"
        return {
            "input_shape": list(self.raw_shape),
            "divide_by": self.divide_by,
            "normalization": normalization,
            "flatten": self.flatten,
        }

    def describe(self) -> dict[str, Any]:
        """Everything a user needs to reproduce this outside Python, JSON-ready."""

        def values(t: torch.Tensor) -> list[float]:
            return [round(float(v), 6) for v in t.reshape(-1)]

        return {
            "input_shape": list(self.raw_shape),
            "input_units": self.units,
            **({"decode": self.decode} if self.decode else {}),
            "divide_by": self.divide_by,
            "mean": values(self.mean) if self.normalizes else None,
            "std": values(self.std) if self.normalizes else None,
            "normalization": self.settings()["normalization"],
            "flatten": self.flatten,
            "order": "x / divide_by, then (x - mean) / std, then flatten",
        }
