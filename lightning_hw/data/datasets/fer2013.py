"""FER2013 (E1): 35,887 grey 48x48 faces, 7 emotions, from Kaggle's ``fer2013.csv``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_hw.data.io import kaggle
from lightning_hw.data.base import Split
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
    ``PrivateTest`` (3,589) -> test. The file is behind a Kaggle login: with ``kagglehub``
    installed and logged in it is fetched (``download: true``), otherwise the error says
    where to get it and where to put it.

    Args:
        root: folder holding ``fer2013/fer2013.csv``.
        download: try ``kagglehub`` when the file is missing.
        **kwargs: see :class:`~lightning_hw.data.images.ImageDataModule`.
    """

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
        kaggle.fetch(FER2013_KAGGLE, self.path, self.download)

    def load_splits(self) -> dict[str, Split]:
        self.prepare_data()
        labels, usages, pixel_rows = read_fer2013(self.path)
        images = np.empty((len(pixel_rows), PIXELS), dtype=np.uint8)
        for i, row in enumerate(pixel_rows):  # once per run; numpy parses each row in C
            values = np.fromstring(row, dtype=np.uint8, sep=" ")
            if values.size != PIXELS:
                raise DataError(f"row {i + 2} of {self.path.absolute()} does not have {PIXELS} pixel values (48x48)")
            images[i] = values
        images = torch.from_numpy(images.reshape(-1, 1, 48, 48))
        targets = torch.as_tensor(labels, dtype=torch.long)
        usage = np.asarray(usages)
        return {
            split: (images[mask], targets[mask])
            for split, name in zip(("train", "val", "test"), FER2013_USAGE)
            for mask in [torch.from_numpy(usage == name)]
        }


def read_fer2013(path: Path) -> tuple[list[int], list[str], list[str]]:
    """Columns of the FER2013 CSV, validated: emotions, usages, pixel strings.

    Args:
        path: ``fer2013.csv`` (column names may carry spaces, as in ``icml_face_data.csv``).

    Raises:
        DataError: wrong columns, an unknown Usage or emotion (the message names the row).
    """
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            missing = [c for c in ("emotion", "pixels", "Usage") if c not in header]
            if missing:
                raise DataError(
                    f"{path.absolute()} is not the FER2013 CSV: it lacks column(s) {', '.join(missing)} "
                    f"(found: {', '.join(header) or 'nothing'}); expected emotion,pixels,Usage"
                )
            i_emotion, i_pixels, i_usage = (header.index(c) for c in ("emotion", "pixels", "Usage"))
            labels, usages, pixels = [], [], []
            for line, row in enumerate(reader, start=2):
                try:
                    label, usage = int(row[i_emotion]), row[i_usage].strip()
                except (IndexError, ValueError):
                    raise DataError(f"row {line} of {path.absolute()} is malformed: {str(row)[:80]}") from None
                if usage not in FER2013_USAGE or not 0 <= label < len(FER2013_CLASSES):
                    raise DataError(
                        f"row {line} of {path.absolute()}: emotion must be 0-6 and Usage one of "
                        f"{', '.join(FER2013_USAGE)}, got {label} and {usage!r}"
                    )
                labels.append(label)
                usages.append(usage)
                pixels.append(row[i_pixels])
    except UnicodeDecodeError as err:
        raise DataError(f"{path.absolute()} is not a text CSV ({err}); download fer2013.csv again") from None
    if not labels:
        raise DataError(f"{path.absolute()} has no rows; download fer2013.csv again")
    return labels, usages, pixels
