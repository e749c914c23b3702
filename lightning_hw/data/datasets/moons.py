"""The synthetic 2-D two-class set of E4 (two interleaved half-moons)."""

from __future__ import annotations

from typing import Any

import torch

from lightning_hw.data.base import InMemoryDataModule, Split


class TwoMoons(InMemoryDataModule):
    """Two interleaved half-moons in 2-D (scikit-learn ``make_moons``), the E4 overfitting set.

    Args:
        n_samples: number of points (E4 overfits with few, and is fixed with 200).
        noise: standard deviation of the Gaussian noise added to the points.
        data_seed: seed of the point cloud (the split and shuffle seeds are separate).
        **kwargs: batch size, split fractions and seeds; see
            :class:`~lightning_hw.data.base.InMemoryDataModule`.
    """

    def __init__(self, n_samples: int = 100, noise: float = 0.2, data_seed: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_samples, self.noise, self.data_seed = n_samples, noise, data_seed

    raw_units = "the points' x and y coordinates"

    @property
    def class_names(self) -> list[str]:
        return ["upper moon", "lower moon"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (2,)

    def load_tensors(self) -> Split:
        from sklearn.datasets import make_moons

        points, labels = make_moons(self.n_samples, noise=self.noise, random_state=self.data_seed)
        return torch.as_tensor(points, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)

