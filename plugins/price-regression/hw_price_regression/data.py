"""The Kaggle "Mobile Price Classification" ``train.csv`` read as a regression problem.

The file has 2,000 phones, 20 numeric specification columns and ``price_range``
(0 low cost, 1 medium, 2 high, 3 very high cost). It holds no price in money:
``price_range`` is the only price column, an ordinal binning of the price, so the
regression variant the E7 report discusses predicts it *as a number* (one linear
output, MSE). Errors are then in price classes (an MAE of 0.2 is a fifth of a
class), and rounding the prediction gives an accuracy comparable to the classifier's.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch

from lightning_hw import DataError, InMemoryDataModule

#: The 20 feature columns of train.csv, in the file's order.
FEATURES = (
    "battery_power", "blue", "clock_speed", "dual_sim", "fc", "four_g", "int_memory", "m_dep",
    "mobile_wt", "n_cores", "pc", "px_height", "px_width", "ram", "sc_h", "sc_w", "talk_time",
    "three_g", "touch_screen", "wifi",
)  # fmt: skip
TARGET = "price_range"
PRICE_CLASSES = ("low cost", "medium cost", "high cost", "very high cost")
KAGGLE_PAGE = "https://www.kaggle.com/datasets/iabhishekofficial/mobile-price-classification"


def _number(cell: str) -> float | None:
    """A cell's value, ``None`` when it is no finite number (``nan``, ``inf`` and text are none)."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_mobile_price_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the Kaggle ``train.csv``: features ``(n, 20)`` float32 and ``price_range`` ``(n,)`` float32.

    Columns are found by name, so their order does not matter; extra columns (such
    as ``id``) are ignored.

    Args:
        path: the CSV file.

    Raises:
        DataError: the file is missing, lacks a column or has one twice, has a row shorter than its header,
            or holds a value that is not a finite number (naming its line, column and value) or a
            ``price_range`` outside 0-3.
    """
    if not path.is_file():
        raise DataError(
            f"mobile price data not found: {path} does not exist; download train.csv from {KAGGLE_PAGE} "
            f"(needs a Kaggle login) and put it there, or pass --data.init_args.root DIR with DIR/train.csv"
        )
    # utf-8-sig: a CSV saved again by Excel starts with a byte-order mark, which would otherwise
    # stick to the first column's name and make that column look missing.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        # DictReader keeps the last of two columns with one name: which one holds the values would be a guess.
        repeated = sorted({c for c in (*FEATURES, TARGET) if header.count(c) > 1})
        if repeated:
            raise DataError(f"{path} has the column(s) {', '.join(repeated)} more than once; keep one of each")
        missing = [c for c in (*FEATURES, TARGET) if c not in header]
        if missing:
            hint = " (Kaggle's test.csv has no price_range; use train.csv)" if missing == [TARGET] else ""
            raise DataError(
                f"{path} is not the Kaggle mobile price train.csv: it lacks the column(s) {', '.join(missing)}{hint}"
            )
        features, targets = [], []
        for row in reader:
            if any(row[c] is None for c in (*FEATURES, TARGET)):  # DictReader fills a short row's end with None
                raise DataError(
                    f"{path}, line {reader.line_num}: the row has fewer fields than the header; "
                    "is the file complete and unmodified?"
                )
            values = [_number(row[c]) for c in (*FEATURES, TARGET)]
            if None in values:  # a NaN or inf feature would turn its whole standardised column into NaN
                column = (*FEATURES, TARGET)[values.index(None)]
                raise DataError(
                    f"{path}, line {reader.line_num}: column {column} is {row[column]!r}, not a finite number; "
                    "every feature and price_range must be one"
                )
            *feature_values, target = values
            features.append(feature_values)
            if target not in (0, 1, 2, 3):
                raise DataError(f"{path}, line {reader.line_num}: price_range is {row[TARGET]!r}, expected 0, 1, 2 or 3")
            targets.append(target)
    if not targets:
        raise DataError(f"{path} has a header but no rows; download train.csv again from {KAGGLE_PAGE}")
    return torch.tensor(features, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)


class MobilePriceCSV(InMemoryDataModule):
    """Kaggle mobile prices (train.csv) for regression: 20 standardised features -> price_range as a number.

    The features are standardised with the statistics of the training split only; the
    target is left on its 0-3 scale so errors read in price classes. The file is split
    70/20/10 with a fixed seed (Kaggle's test.csv has no labels).

    Args:
        root: directory holding the Kaggle ``train.csv`` (the file is read, never written).
        filename: name of the CSV file inside ``root``.
        standardize: scale each feature by the training split's mean and std (the E7 reports did).
        **kwargs: batch size, split fractions and seeds; see :class:`lightning_hw.InMemoryDataModule`.
    """

    def __init__(
        self, root: str = "data/mobile-price", filename: str = "train.csv", standardize: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(standardize=standardize, **kwargs)
        self.root = Path(root)
        self.filename = filename

    @property
    def input_shape(self) -> tuple[int, ...]:
        """20 features per phone."""
        return (len(FEATURES),)

    @property
    def feature_names(self) -> list[str]:
        """The CSV columns of one phone: ``predict`` takes them by name from a CSV with a header."""
        return list(FEATURES)

    @property
    def levels(self) -> int:
        """Number of price classes; the task rounds its prediction to one of them for an accuracy."""
        return len(PRICE_CLASSES)

    @property
    def class_names(self) -> list[str]:
        """Names of the price classes 0-3 (for plots of rounded predictions)."""
        return list(PRICE_CLASSES)

    def load_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return read_mobile_price_csv(self.root / self.filename)
