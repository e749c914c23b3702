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


def first_non_pixel(values: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first value that is no pixel value (a whole number 0-255), or ``None``.

    Checked before a cast to uint8, which would silently wrap 300 to 44 (and -1 to 255).

    Args:
        values: numbers read from a dataset file, any shape.
    """
    if values.dtype == np.uint8:
        return None
    bad = (values < 0) | (values > 255)
    if values.dtype.kind == "f":
        bad |= ~np.isfinite(values) | (values != np.round(values))  # NaN compares False above
    elif values.dtype.kind not in "iu":
        return (0,) * values.ndim  # strings, objects: nothing here is a pixel value
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


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
    path: str | os.PathLike, shape: Sequence[int], feature_names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Samples to predict from a CSV: one row each, with or without a header row.

    The first row is a header when none of its cells is a number, data when all are; a
    row that mixes both, or that reads ``0,1,2,...`` (column numbers or data?), is refused
    rather than guessed. With a header, an ``id`` column names the samples, and when the
    datamodule knows its ``feature_names`` those columns are taken by name (case and
    surrounding spaces ignored; other columns, such as a label, are left out) and a missing
    or repeated one is refused; otherwise, and without a header, the columns are the features in order.

    Args:
        path: the CSV file.
        shape: shape of one raw sample (the row is reshaped to it).
        feature_names: the datamodule's feature column names, if it has them.

    Returns:
        One id per row (the ``id`` column, else the row number from 0) and the values
        ``(rows, prod(shape))`` as float32.

    Raises:
        DataError: missing or unreadable file, an ambiguous first row, the wrong columns
            (a feature column missing or repeated), or a cell that is not a finite number
            (naming its line and column).
    """
    what = "predict input"
    path = require_file(path, what)
    try:
        lines = list(enumerate(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))), start=1))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{what} {path} is not a text CSV file ({type(err).__name__}); save it as plain CSV") from None
    rows = [(number, [c.strip() for c in row]) for number, row in lines if any(c.strip() for c in row)]
    if not rows:
        raise DataError(f"{what} {path} is empty")
    first_line, first = rows[0]
    header = _header_of(path, first_line, first)
    body = rows[1:] if header is not None else rows
    if not body:
        if len(first) == 1 and ";" in first[0]:  # one sample written with ';': its numbers read as one name
            raise DataError(f"{what} {path}: the values seem separated by ';'; save the file with commas")
        raise DataError(f"{what} {path} has a header but no rows")
    width = math.prod(shape)
    columns = list(range(len(first)))
    id_column = None
    if header is not None:
        lower = [h.lower() for h in header]
        if "id" in lower:
            id_column = lower.index("id")
            columns.remove(id_column)
        if feature_names:
            wanted = [n.strip().lower() for n in feature_names]
            missing = [n for n, key in zip(feature_names, wanted) if key not in lower]
            if missing:
                raise DataError(
                    f"{what} {path} lacks the feature column(s) {', '.join(missing[:5])}"
                    f"{' ...' if len(missing) > 5 else ''} (it has {_shown(header)}); the model takes "
                    f"{', '.join(feature_names[:5])}{', ...' if len(feature_names) > 5 else ''}"
                )
            # Names are matched ignoring case, so "RAM" and "ram" are one feature: taking the
            # first of two such columns would be a guess at which one holds the values.
            positions = {key: [i for i, h in enumerate(lower) if h == key] for key in wanted}
            repeated = [(n, positions[key]) for n, key in zip(feature_names, wanted) if len(positions[key]) > 1]
            if repeated:
                found = ", ".join(f"{n} ({', '.join(str(i + 1) for i in at)})" for n, at in repeated[:5])
                raise DataError(
                    f"{what} {path} has the feature column(s) {found} more than once (names are read ignoring "
                    "case); keep one column per feature"
                )
            columns = [positions[key][0] for key in wanted]
    if len(columns) != width:
        hint = "keep only the input columns (drop ids and labels)"
        if ";" in first[0] and len(first) == 1:
            hint = "the values seem separated by ';'; save the file with commas"
        elif header is not None and header[0] == "":
            hint = "its first column has no name (a saved pandas index? write it with index=False)"
        shown = f"; columns: {_shown(header)}" if header is not None else ""
        raise DataError(
            f"{what} {path} has {len(columns)} input columns, the model takes {width} values per sample "
            f"(input shape {tuple(shape)}){shown}; {hint}"
        )
    values = np.empty((len(body), width), dtype=np.float32)
    for row_index, (line, row) in enumerate(body):
        if len(row) != len(first):
            raise DataError(
                f"{what} {path}: line {line} has {len(row)} fields, the first row has {len(first)}; give every row "
                "the same columns"
            )
        for j, col in enumerate(columns):
            value = finite_number(row[col])
            if value is None:
                name = f" ({header[col]})" if header is not None else ""
                raise DataError(
                    f"{what} {path}: line {line}, column {col + 1}{name} is {row[col]!r}, not a finite number; {FILL_IN}"
                )
            values[row_index, j] = value
    ids = [row[id_column] for _, row in body] if id_column is not None else [str(i) for i in range(len(body))]
    return ids, values


#: what to do about a cell of a sample to predict that is no number: the model has no input for "unknown"
FILL_IN = "the model needs a number in every input column: fill it in, or leave that row out"


def finite_number(cell: str) -> float | None:
    """A CSV cell's value, ``None`` when it is no finite number (``nan``, ``inf`` and text are none)."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _shown(names: Sequence[str], most: int = 6) -> str:
    return ", ".join(repr(n) if n else "(unnamed)" for n in names[:most]) + (", ..." if len(names) > most else "")


def _header_of(path: Path, line: int, first: list[str]) -> list[str] | None:
    """The first row as a header, ``None`` when it is data; refuses a row it would have to guess about."""
    what = "predict input"
    numeric = [_is_number(c) for c in first]
    if all(numeric):
        if _looks_like_column_numbers(first):
            raise DataError(
                f"{what} {path}: the first row is {', '.join(first[:3])}, ... (column numbers or data?); "
                "name the columns (e.g. x0, x1, ...) or drop that row"
            )
        return None
    filled = [c for c in first if c]
    if filled and all(_is_number(c) for c in filled):  # numbers with an empty cell: a sample missing a value
        column = first.index("") + 1
        raise DataError(f"{what} {path}: line {line}, column {column} is empty, not a number; {FILL_IN}")
    if any(numeric):
        raise DataError(
            f"{what} {path}: the first row ({_shown(first, 4)}) mixes names and numbers, so it is neither a header "
            "nor a sample; make it all column names or all numbers"
        )
    return first
