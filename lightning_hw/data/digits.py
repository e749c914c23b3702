"""scikit-learn's bundled 8x8 handwritten digits: real images, offline, 1,797 samples."""

from __future__ import annotations

from typing import Any

import torch

from lightning_hw.data.base import InMemoryDataModule, Split


class Digits(InMemoryDataModule):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), scaled to [0, 1], offline.

    Args:
        **kwargs: batch size, split fractions and seeds; see
            :class:`~lightning_hw.data.base.InMemoryDataModule`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    @property
    def class_names(self) -> list[str]:
        return [str(d) for d in range(10)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    def load_tensors(self) -> Split:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel intensities are 0..16; scaling them is the step the E1 report missed.
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        return images, torch.as_tensor(digits.target, dtype=torch.long)
