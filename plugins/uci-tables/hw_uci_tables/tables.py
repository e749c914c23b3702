"""UCI tables that scikit-learn ships inside its wheel: real data, no download, no checksum to keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lightning_hw import InMemoryDataModule


class SklearnTable(InMemoryDataModule):
    """Base of a table from ``sklearn.datasets``: features standardised on the training split, class names kept.

    Subclasses set :attr:`loader` (a ``sklearn.datasets.load_*`` function name).

    Args:
        standardize: scale every feature by the training split's mean and std. On by default:
            these tables mix units (e.g. proline in the hundreds next to hue around 1).
        **kwargs: batch size, split fractions and seeds; see :class:`lightning_hw.InMemoryDataModule`.
    """

    loader: str = ""

    def __init__(self, standardize: bool = True, **kwargs: Any) -> None:
        super().__init__(standardize=standardize, **kwargs)
        self._bunch = None

    def _load(self):
        # Reading the bundled CSV takes milliseconds; keep it so sizes and data come from one read.
        if self._bunch is None:
            import sklearn.datasets

            load: Callable = getattr(sklearn.datasets, self.loader)
            self._bunch = load()
        return self._bunch

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self._load().target_names]

    @property
    def feature_names(self) -> list[str]:
        """Column names of the table, in input order."""
        return [str(name) for name in self._load().feature_names]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self._load().feature_names),)

    def load_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        bunch = self._load()
        return torch.as_tensor(bunch.data, dtype=torch.float32), torch.as_tensor(bunch.target, dtype=torch.long)


class Wine(SklearnTable):
    """UCI Wine: 178 wines, 13 chemical measurements, 3 cultivars; offline (bundled with scikit-learn).

    Args:
        **kwargs: see :class:`SklearnTable`.
    """

    loader = "load_wine"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class BreastCancer(SklearnTable):
    """UCI Breast Cancer Wisconsin (diagnostic): 569 tumours, 30 features, malignant/benign; offline.

    Args:
        **kwargs: see :class:`SklearnTable`.
    """

    loader = "load_breast_cancer"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
