"""Reading dataset files with one clear line for every way they can be wrong.

A dataset file can be missing (not downloaded, or behind a login), damaged (a truncated
download, an HTML error page saved as ``.csv``) or the wrong file (other columns). Each case
raises :class:`~lightning_hw.errors.DataError` naming the file and what to do, which the CLI
prints as one line.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_hw.errors import DataError


def require_file(path: str | os.PathLike, what: str = "dataset file", hint: str = "") -> Path:
    """Return ``path`` if it is a file, else fail with where it was expected and how to get it.

    Args:
        path: where the file should be.
        what: what it is, for the message (e.g. ``"FER2013 CSV"``).
        hint: how to obtain it (e.g. ``"download fer2013.csv from kaggle.com/... and put it there"``).
    """
    path = Path(path)
    if path.is_file():
        return path
    problem = "is a directory, not a file" if path.is_dir() else "not found"
    raise DataError(f"{what} {problem}: {path}" + (f"; {hint}" if hint else ""))


def read_csv_table(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    what: str = "dataset file",
    hint: str = "",
) -> tuple[list[str], np.ndarray]:
    """Read a CSV with a header row and numeric values.

    Args:
        path: the CSV file.
        columns: columns that must be present (in any order); ``None``: every column.
        what: what the file is, for messages.
        hint: how to obtain the file, if it is missing.

    Returns:
        The header and a ``(rows, len(header))`` float64 array.

    Raises:
        DataError: the file is missing, not a readable CSV, lacks ``columns``, has rows of the
            wrong length, or non-numeric values.
    """
    path = require_file(path, what, hint)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(
            f"{what} {path} is not a text CSV file (is it compressed or damaged? download it again)"
        ) from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        raise DataError(f"{what} {path} is not a valid CSV ({err}); download it again") from None
    rows = [r for r in rows if r]
    if not rows:
        raise DataError(f"{what} {path} is empty; download it again")
    header = [h.strip() for h in rows[0]]
    if columns is not None:
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(
                f"{what} {path} lacks the column(s) {', '.join(missing)} (it has: {', '.join(header[:12])}"
                f"{', ...' if len(header) > 12 else ''}); is it the right file?"
            )
    if len(rows) == 1:
        raise DataError(f"{what} {path} has a header but no rows")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(
                f"{what} {path} is damaged: line {i} has {len(row)} field{'s' * (len(row) != 1)}, "
                f"the header has {len(header)}; "
                "download it again"
            )
        try:
            values[i - 2] = [float(v) for v in row]
        except ValueError:
            bad = next(j for j, v in enumerate(row) if not _is_number(v))
            raise DataError(
                f"{what} {path}: column {header[bad]!r} has the non-numeric value {row[bad]!r} on line {i}"
            ) from None
    return header, values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
