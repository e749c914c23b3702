"""Reading dataset files with one clear line for every way they can be wrong.

A dataset file can be missing (not downloaded, or behind a login), damaged (a truncated
download, an HTML error page saved as ``.csv``) or the wrong file (other columns). Each case
raises :class:`~lightning_hw.errors.DataError` naming the file and what to do, which the CLI
prints as one line.
"""

from __future__ import annotations

import csv
import io
import math
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


def _looks_like_column_numbers(cells: Sequence[str]) -> bool:
    """``0,1,2,...`` or ``1,2,3,...``: a header of column numbers (pandas' default) or data? Cannot tell."""
    try:
        values = [float(c) for c in cells]
    except ValueError:
        return False
    n = len(values)
    return n >= 3 and (values == [float(i) for i in range(n)] or values == [float(i) for i in range(1, n + 1)])


def read_input_csv(
    path: str | os.PathLike, shape: Sequence[int], names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Samples to predict from a CSV: one row each, with or without a header row.

    The first row is a header when none of its cells is a number, data when all are; a
    row that mixes both, or that reads ``0,1,2,...`` (column numbers or data?), is refused
    rather than guessed. With a header, an ``id`` column names the samples, and when the
    datamodule knows its feature ``names`` those columns are taken (others, such as a label,
    are left out); without one every column is a feature.

    Args:
        path: the CSV file.
        shape: shape of one raw sample (the row is reshaped to it).
        names: the datamodule's feature column names, if it has them.

    Returns:
        One id per row (the ``id`` column, else the row number from 0) and the values
        ``(rows, prod(shape))`` as float32.

    Raises:
        DataError: missing or unreadable file, an ambiguous first row, the wrong number of
            columns, or a cell that is not a finite number (naming line and column).
    """
    what = "predict input"
    path = require_file(path, what)
    try:
        rows = [r for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{what} {path} is not a text CSV file ({type(err).__name__}); save it as plain CSV") from None
    if not rows:
        raise DataError(f"{what} {path} is empty")
    first = [c.strip() for c in rows[0]]
    numeric = [_is_number(c) for c in first]
    if all(numeric) and _looks_like_column_numbers(first):
        raise DataError(
            f"{what} {path}: the first row is {', '.join(first[:3])}, ... (column numbers or data?); "
            "name the columns (e.g. x0, x1, ...) or drop that row"
        )
    if any(numeric) and not all(numeric):
        shown = ", ".join(first[:4]) + (", ..." if len(first) > 4 else "")
        raise DataError(
            f"{what} {path}: the first row ({shown}) mixes names and numbers, so it is neither a header nor a sample; "
            "make it all column names or all numbers"
        )
    header = None if all(numeric) else first
    body = rows[1:] if header is not None else rows
    if not body:
        raise DataError(f"{what} {path} has a header but no rows")
    width = math.prod(shape)
    columns = list(range(len(first)))
    ids = [str(i) for i in range(len(body))]
    if header is not None:
        lower = [h.lower() for h in header]
        if "id" in lower:
            id_col = lower.index("id")
            ids = [row[id_col].strip() if id_col < len(row) else "" for row in body]
            columns.remove(id_col)
        if names and all(n in header for n in names):
            columns = [header.index(n) for n in names]
    if len(columns) != width:
        raise DataError(
            f"{what} {path} has {len(columns)} columns, the model takes {width} values per sample "
            f"(input shape {tuple(shape)}); keep only the input columns (drop ids and labels)"
        )
    values = np.empty((len(body), width), dtype=np.float32)
    start = 2 if header is not None else 1
    for line, row in enumerate(body, start=start):
        if len(row) != len(first):
            raise DataError(f"{what} {path}: line {line} has {len(row)} fields, the first row has {len(first)}")
        for j, col in enumerate(columns):
            cell = row[col].strip()
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                name = f" ({header[col]})" if header is not None else ""
                raise DataError(f"{what} {path}: line {line}, column {col + 1}{name} is {cell!r}, not a finite number")
            values[line - start, j] = value
    return ids, values
