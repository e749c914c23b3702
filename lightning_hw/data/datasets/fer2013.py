"""FER2013 (E1): 35,887 grey 48x48 faces, 7 emotions, from Kaggle's ``fer2013.csv``."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_hw.data.io import kaggle
from lightning_hw.data.base import Split
from lightning_hw.data.files import first_non_pixel
from lightning_hw.data.images import ImageDataModule
from lightning_hw.errors import DataError

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: the CSV's Usage column -> our split (PublicTest validates, PrivateTest is the final test)
FER2013_USAGE = ("Training", "PublicTest", "PrivateTest")
FER2013_FILE = "fer2013/fer2013.csv"  # where Kaggle's fer2013.tar.gz puts it
FER2013_KAGGLE = kaggle.KaggleFile(
    what="FER2013",
    page="https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge/data",
    handle="challenges-in-representation-learning-facial-expression-recognition-challenge",
    competition=True,
    # The competition's files: fer2013.tar.gz holds fer2013/fer2013.csv; icml_face_data.csv
    # is the same table with spaces before its column names.
    names=("fer2013.csv", "icml_face_data.csv"),
)
PIXELS = 48 * 48


class FER2013(ImageDataModule):
    """Facial expressions from the Kaggle CSV (columns ``emotion``, ``pixels``, ``Usage``).

    ``Usage`` gives the split: ``Training`` (28,709) -> train, ``PublicTest`` (3,589) -> val,
    ``PrivateTest`` (3,589) -> test; with ``folds``, the folds cut Training + PublicTest. The file is behind a Kaggle login: with ``kagglehub``
    installed and logged in it is fetched (``download: true``), otherwise the error says
    where to get it and where to put it.

    Args:
        root: folder holding ``fer2013/fer2013.csv``.
        download: try ``kagglehub`` when the file is missing.
        **kwargs: see :class:`~lightning_hw.data.images.ImageDataModule`.
    """

    own_split = "its Usage column splits it (Training trains, PublicTest validates, PrivateTest tests)"

    def __init__(self, root: str = "data", download: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.download = download

    @property
    def class_names(self) -> list[str]:
        return list(FER2013_CLASSES)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, 48, 48)

    @property
    def path(self) -> Path:
        """The CSV file."""
        return self.root / FER2013_FILE

    def prepare_data(self) -> None:
        if not self.path.is_file():
            self._refuse_misplaced()
        kaggle.fetch(FER2013_KAGGLE, self.path, self.download)

    def _refuse_misplaced(self) -> None:
        """Fail when the CSV is there, but not at :attr:`path` (``root`` one level off).

        Kaggle's archive unpacks to ``fer2013/fer2013.csv``; a CSV put straight into ``root``,
        or ``root`` set to the CSV or to its ``fer2013/`` folder, was reported missing, with the
        advice to download it again.

        Raises:
            DataError: naming the file found and the setting or move that makes it read.
        """
        where = f"FER2013 file {FER2013_FILE} not found in {self.root.absolute()}"
        if self.root.is_file():
            folder = self.root.parent.parent if self.root.parent.name == "fer2013" else self.root.parent
            raise DataError(
                f"{where}: --data.init_args.root is the CSV itself; set it to the folder that holds "
                f"{FER2013_FILE}" + (f" ({folder})" if self.root.parent.name == "fer2013" else f", or move the CSV to {folder.absolute() / FER2013_FILE}")
            )
        for name in FER2013_KAGGLE.names:
            found = self.root / name
            if found.is_file():
                if self.root.name == "fer2013" and name == "fer2013.csv":
                    raise DataError(f"{where}, but it is at {found.absolute()}: set --data.init_args.root {self.root.parent}")
                raise DataError(f"{where}, but {found.absolute()} is there: move it to {self.path.absolute()}")
        # The competition's download holds the table as icml_face_data.csv and inside fer2013.tar.gz.
        found = self.path.with_name("icml_face_data.csv")
        if found.is_file():
            raise DataError(f"{where}, but {found.absolute()} (the same table) is there: rename it to {self.path.name}")
        for archive in (self.root / "fer2013.tar.gz", self.path.with_name("fer2013.tar.gz")):
            if archive.is_file():
                raise DataError(
                    f"{where}, but {archive.absolute()} is there: unpack it in {self.root.absolute()} "
                    f"(tar xzf {shlex.quote(str(archive))} -C {shlex.quote(str(self.root))}), which gives {FER2013_FILE}"
                )

    def load_splits(self) -> dict[str, Split]:
        self.prepare_data()
        labels, usages, pixel_rows, lines = read_fer2013(self.path)
        images = torch.from_numpy(parse_pixels(self.path.absolute(), pixel_rows, lines).reshape(-1, 1, 48, 48))
        targets = torch.as_tensor(labels, dtype=torch.long)
        usage = np.asarray(usages)
        rows = {
            split: torch.from_numpy(np.flatnonzero(usage == name)) for split, name in zip(("train", "val", "test"), FER2013_USAGE)
        }
        for split, name in zip(("train", "val", "test"), FER2013_USAGE):
            # The splits come from the Usage column, not from `splits`: say so, or the user would
            # follow the generic advice to raise a fraction that this data set never reads.
            folded = self.folds is not None and split != "test"  # the folds cut Training + PublicTest together
            if len(rows[split]) == 0 and not (folded and len(rows["train"]) + len(rows["val"]) > 0):
                raise DataError(
                    f"{self.path.absolute()} has no {name} rows, so the {split} split is empty: FER2013's splits "
                    f"come from its Usage column ({', '.join(FER2013_USAGE)}), not from --data.init_args.splits; "
                    "use the complete fer2013.csv"
                )
        if self.folds is not None:  # PrivateTest stays the test set; the folds cut Training + PublicTest
            rest = torch.cat([rows["train"], rows["val"]]).sort().values
            train, val = self.fold_of(targets[rest])
            rows["train"], rows["val"] = rest[train], rest[val]
        return {split: (images[index], targets[index]) for split, index in rows.items()}


#: rows parsed per block: the block's int64 buffer (~19 MB) is checked at once, then stored as uint8
BLOCK_ROWS = 1024


def parse_pixels(path: Path, pixel_rows: list[str], lines: list[int]) -> np.ndarray:
    """The ``pixels`` strings as a ``(rows, 2304)`` uint8 array, every value checked to be 0-255.

    Each row is parsed in C into a wide integer buffer first: parsing straight into uint8
    would wrap a damaged value such as 300 to 44 without a word.

    Args:
        path: the CSV file, for messages.
        pixel_rows: one space-separated string of 2304 values per row.
        lines: the CSV line of each row, for messages.

    Raises:
        DataError: a row without 2304 whole numbers, or a value outside 0-255 (naming its line).
    """
    images = np.empty((len(pixel_rows), PIXELS), dtype=np.uint8)
    block = np.empty((min(BLOCK_ROWS, len(pixel_rows)), PIXELS), dtype=np.int64)
    for start in range(0, len(pixel_rows), BLOCK_ROWS):
        rows = pixel_rows[start : start + BLOCK_ROWS]
        for i, row in enumerate(rows):  # one C parse per row; numpy has no parser for a list of strings
            block[i] = _row_values(path, row, lines[start + i])
        values = block[: len(rows)]
        bad = first_non_pixel(values)
        if bad is not None:
            row, column = bad
            raise DataError(
                f"line {lines[start + row]} of {path}: pixel {column + 1} is {values[row, column]}, outside 0-255; "
                "the file is damaged: download fer2013.csv again"
            )
        images[start : start + len(rows)] = values
    return images


def _row_values(path: Path, row: str, line: int) -> np.ndarray:
    """One row's pixel string as int64 values, or a one-line error naming the line and the bad value."""
    try:
        values = np.fromstring(row, dtype=np.int64, sep=" ")
    except ValueError:
        # Only on failure: find the first value that is not a whole number, to name it.
        tokens = enumerate(row.split())
        position, token = next(((j, t) for j, t in tokens if not t.lstrip("-").isdecimal()), (0, row))
        raise DataError(
            f"line {line} of {path}: pixel {position + 1} is {token[:20]!r}, not a whole number 0-255; "
            "the file is damaged: download fer2013.csv again"
        ) from None
    if values.size != PIXELS:
        raise DataError(f"line {line} of {path} does not have {PIXELS} pixel values (48x48), it has {values.size}")
    return values


def _which_kaggle_file(header: list[str]) -> str:
    """Which other file of the Kaggle competition has ``header``, as words for a message ("" when none).

    Its ``train.csv`` has no ``Usage`` column (nothing to split by) and its ``test.csv`` no
    emotions; both sit beside the right files in the download and are easily taken for them.
    """
    columns = set(header)
    if columns == {"emotion", "pixels"}:
        return ": it looks like the competition's train.csv, which has no Usage column to split by"
    if "pixels" in columns and "emotion" not in columns:
        return ": it looks like the competition's test.csv, which has no emotions"
    return ""


def read_fer2013(path: Path) -> tuple[list[int], list[str], list[str], list[int]]:
    """Columns of the FER2013 CSV, validated: emotions, usages, pixel strings, and the CSV line of each row.

    Args:
        path: ``fer2013.csv`` (column names may carry spaces, as in ``icml_face_data.csv``).

    Raises:
        DataError: wrong columns, an unknown Usage or emotion (the message names the line).
    """
    try:
        # utf-8-sig: a CSV saved again by Excel starts with a byte-order mark, which would
        # otherwise stick to the first column's name ("\ufeffemotion" is not "emotion").
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            missing = [c for c in ("emotion", "pixels", "Usage") if c not in header]
            if missing:
                raise DataError(
                    f"{path.absolute()} is not the FER2013 CSV: it lacks column(s) {', '.join(missing)} "
                    f"(found: {', '.join(header) or 'nothing'}){_which_kaggle_file(header)}; expected emotion,pixels,Usage: "
                    f"use fer2013.csv (in fer2013.tar.gz) or icml_face_data.csv from {FER2013_KAGGLE.page}"
                )
            i_emotion, i_pixels, i_usage = (header.index(c) for c in ("emotion", "pixels", "Usage"))
            labels, usages, pixels, lines = [], [], [], []
            for row in reader:
                line = reader.line_num  # the file's line, also when a quoted cell spans lines
                if not any(cell.strip() for cell in row):
                    continue  # a blank line (an editor's trailing newline) holds no face
                try:
                    label, usage = int(row[i_emotion]), row[i_usage].strip()
                except (IndexError, ValueError):
                    # Most often the last line of a download cut short: say what to do about it.
                    raise DataError(
                        f"line {line} of {path.absolute()} is malformed ({len(row)} of {len(header)} columns: "
                        f"{str(row)[:60]}...); the file is damaged or cut short: download fer2013.csv again"
                    ) from None
                if usage not in FER2013_USAGE or not 0 <= label < len(FER2013_CLASSES):
                    raise DataError(
                        f"line {line} of {path.absolute()}: emotion must be 0-6 and Usage one of "
                        f"{', '.join(FER2013_USAGE)}, got {label} and {usage!r}"
                    )
                labels.append(label)
                usages.append(usage)
                pixels.append(row[i_pixels])
                lines.append(line)
    except UnicodeDecodeError as err:
        raise DataError(f"{path.absolute()} is not a text CSV ({err}); download fer2013.csv again") from None
    if not labels:
        raise DataError(f"{path.absolute()} has no rows; download fer2013.csv again")
    return labels, usages, pixels, lines
