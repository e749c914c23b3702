"""Mobile phone price classes (E7): Kaggle's "Mobile Price Classification" ``train.csv``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_hw.data.io import kaggle
from lightning_hw.data.io.files import finite_number
from lightning_hw.data.base import InMemoryDataModule, Split
from lightning_hw.errors import DataError

#: the 20 feature columns, in the file's order
MOBILE_PRICE_COLUMNS = (
    "battery_power", "blue", "clock_speed", "dual_sim", "fc", "four_g", "int_memory", "m_dep",
    "mobile_wt", "n_cores", "pc", "px_height", "px_width", "ram", "sc_h", "sc_w", "talk_time",
    "three_g", "touch_screen", "wifi",
)  # fmt: skip
MOBILE_PRICE_TARGET = "price_range"
MOBILE_PRICE_CLASSES = ("low cost", "medium cost", "high cost", "very high cost")
MOBILE_PRICE_FILE = "mobile-price-classification/train.csv"
MOBILE_PRICE_KAGGLE = kaggle.KaggleFile(
    what="Mobile Price Classification",
    page="https://www.kaggle.com/datasets/iabhishekofficial/mobile-price-classification",
    handle="iabhishekofficial/mobile-price-classification",
    competition=False,
    names=("train.csv",),  # its test.csv has no price_range: only train.csv is labelled
)


class MobilePrice(InMemoryDataModule):
    """2,000 phones, 20 numeric features, ``price_range`` 0-3; features standardised on the training split.

    The dataset's ``test.csv`` has no labels, so ``train.csv`` is split here
    (``splits``, default 70/20/10, seeded).

    Args:
        root: folder holding ``mobile-price-classification/train.csv``.
        download: try ``kagglehub`` when the file is missing.
        standardize: scale every feature by the training split's mean and std (the
            features range from 0/1 flags to thousands of MB of RAM).
        **kwargs: batch size, ``splits`` and seeds; see :class:`~lightning_hw.data.base.InMemoryDataModule`.
    """

    def __init__(self, root: str = "data", download: bool = True, standardize: bool = True, **kwargs: Any) -> None:
        super().__init__(standardize=standardize, **kwargs)
        self.root = Path(root)
        self.download = download

    raw_units = "the 20 feature columns of the Kaggle CSV, in their own units"

    @property
    def class_names(self) -> list[str]:
        return list(MOBILE_PRICE_CLASSES)

    @property
    def feature_names(self) -> list[str]:
        """The CSV columns of one sample; a ``predict`` CSV with a header may hold others (``id``...) too."""
        return list(MOBILE_PRICE_COLUMNS)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(MOBILE_PRICE_COLUMNS),)

    @property
    def path(self) -> Path:
        """The CSV file."""
        return self.root / MOBILE_PRICE_FILE

    def prepare_data(self) -> None:
        if not self.path.is_file():
            self._refuse_misplaced()
        kaggle.fetch(MOBILE_PRICE_KAGGLE, self.path, self.download)

    def _refuse_misplaced(self) -> None:
        """Fail when ``train.csv`` is there, but not at :attr:`path` (``root`` one level off).

        A ``train.csv`` put straight into ``root``, or ``root`` set to the CSV or to its
        ``mobile-price-classification/`` folder, was reported missing, with the advice to
        download the file that is there.

        Raises:
            DataError: naming the file found and the setting or move that makes it read.
        """
        folder = Path(MOBILE_PRICE_FILE).parent.name
        where = f"Mobile Price Classification file {MOBILE_PRICE_FILE} not found in {self.root.absolute()}"
        if self.root.is_file():
            in_folder = self.root.parent.name == folder
            raise DataError(
                f"{where}: --data.init_args.root is the CSV itself; set it to the folder that holds {MOBILE_PRICE_FILE}"
                + (f" ({self.root.parent.parent})" if in_folder else f", or move the CSV to {self.root.parent.absolute() / MOBILE_PRICE_FILE}")
            )
        found = self.root / "train.csv"
        # Only the data set's own CSV: another data set's train.csv in root is no reason to stop here.
        if found.is_file() and MOBILE_PRICE_TARGET in _header_of(found):
            if self.root.name == folder:
                raise DataError(f"{where}, but it is at {found.absolute()}: set --data.init_args.root {self.root.parent}")
            raise DataError(f"{where}, but {found.absolute()} is there: move it to {self.path.absolute()}")

    def load_tensors(self) -> Split:
        self.prepare_data()
        features, target = read_mobile_price(self.path)
        return torch.from_numpy(features), torch.from_numpy(target)


def _header_of(path: Path) -> list[str]:
    """The column names of a CSV's first line (none when it is no text)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [name.strip() for name in next(csv.reader(f), [])]
    except (UnicodeDecodeError, csv.Error):
        return []


def read_mobile_price(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(N, 20)`` float32 in :data:`MOBILE_PRICE_COLUMNS` order, and ``price_range`` ``(N,)``.

    Args:
        path: the Kaggle ``train.csv`` (columns may come in any order).

    Raises:
        DataError: a column is missing or unexpected, a row has too few or too many fields, or a value
            is not a finite number (naming its line and column).
    """
    # utf-8-sig: a CSV saved again by Excel starts with a byte-order mark, which would
    # otherwise stick to the first column's name.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    expected = [*MOBILE_PRICE_COLUMNS, MOBILE_PRICE_TARGET]
    if sorted(header) != sorted(expected):
        missing = [c for c in expected if c not in header]
        extra = [c for c in header if c not in expected]
        details = "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "", f"unexpected {', '.join(extra)}" if extra else "") if part
        )
        raise DataError(
            f"{path.absolute()} does not have the Mobile Price Classification columns ({details or 'duplicated columns'}); "
            f"expected train.csv from {MOBILE_PRICE_KAGGLE.page}"
        )
    order = [header.index(c) for c in expected]
    table = np.empty((len(rows), len(expected)), dtype=np.float64)
    for i, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise DataError(
                f"line {line} of {path.absolute()} has {len(row)} fields, the header has {len(header)}; "
                "the file is damaged or cut short: download train.csv again"
            )
        values = [finite_number(row[j]) for j in order]
        if None in values:  # a NaN or inf feature would turn the whole standardised column into NaN
            j = order[values.index(None)]
            raise DataError(f"line {line} of {path.absolute()}: column {j + 1} ({header[j]}) is {row[j]!r}, not a finite number")
        table[i] = values
    if table.size == 0:
        raise DataError(f"{path.absolute()} has no rows")
    target = table[:, -1]
    wrong = np.flatnonzero(~np.isin(target, np.arange(len(MOBILE_PRICE_CLASSES))))
    if wrong.size:
        line, row = rows[wrong[0]]
        raise DataError(
            f"line {line} of {path.absolute()}: price_range is {row[order[-1]]!r}, it must be 0, 1, 2 or 3"
        )
    return table[:, :-1].astype(np.float32), target.astype(np.int64)
