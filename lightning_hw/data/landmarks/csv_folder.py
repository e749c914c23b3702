"""Any folder of images with a CSV of landmarks: ``image, x1, y1, x2, y2, ...``.

    image,x1,y1,x2,y2,x3,y3
    face_001.jpg,61.5,80.0,103.2,79.1,83.0,110.4
    face_002.jpg,58.0,77.5,,,85.1,112.0          <- an empty cell: point 2 not annotated

One row per image (an image on two rows is refused, with its lines). Coordinates are pixels
of the image file (x right, y down). A header row is optional
(recognised by non-numeric coordinate cells) and names the points; one whose column names are
all numbers reads as a face, which the missing-image check then says. Empty cells and
``nan`` mark a missing point; with ``zero_is_missing`` so does ``(0, 0)`` (MUCT's and the
E6 reports' convention). ``skip_columns`` skips columns between the name and the
coordinates (MUCT's ``tag``).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import torch

from lightning_hw.data.augment.landmarks import flip_permutation
from lightning_hw.data.landmarks.base import (
    EyeIndices,
    LandmarkFiles,
    Record,
    check_files_exist,
    folder_holding,
    root_off_message,
)
from lightning_hw.errors import ConfigError, DataError

MISSING_CELLS = ("", "nan", "NaN", "NAN", "na", "NA")


def _number(cell: str) -> float | None:
    cell = cell.strip()
    if cell in MISSING_CELLS:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return None


def read_landmark_csv(
    path: Path, skip_columns: int = 0, zero_is_missing: bool = False, damaged_hint: str | None = None
) -> tuple[list[str], torch.Tensor, list[str] | None]:
    """Read a landmark CSV: one row per image, its name, then ``x, y`` per point.

    Args:
        path: the CSV file.
        skip_columns: columns between the name and the first ``x`` (ignored).
        zero_is_missing: treat a point at exactly ``(0, 0)`` as not annotated.
        damaged_hint: what to do when a row is malformed, for a file that comes whole from
            somewhere (a data set's archive), where any malformed row means a damaged file.

    Returns:
        ``(names, points, point_names)``: image names as written, ``(N, K, 2)`` float
        points with ``NaN`` for missing ones, and the header's names of the x columns
        (``None`` without a header).

    Raises:
        DataError: the file is missing, empty, not UTF-8 text, or a row is malformed (naming file and line).
    """
    if not path.is_file():
        raise DataError(
            f"landmark file {path} not found: put a CSV with columns image, x1, y1, x2, y2, ... there, "
            "or point --data.init_args.csv_file at yours"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            text = file.read()
    except UnicodeDecodeError:
        # Another encoding (Excel's "CSV" on Windows writes cp1252) or no text at all (a spreadsheet, an image).
        raise DataError(
            f"{path} is not a UTF-8 text CSV: "
            + (damaged_hint or "save it as 'CSV UTF-8 (comma delimited)', or point --data.init_args.csv_file at the CSV")
        ) from None
    # newline="" on both: rows end at \r\n, \n or a lone \r (Excel for Mac's "CSV (Macintosh)"), and the
    # text keeps its line ends, which _row_advice reads.
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        lines = [(n, row) for n, row in enumerate(reader, start=1) if any(cell.strip() for cell in row)]
    except csv.Error as err:  # a field over csv's size limit: a binary file that happens to decode
        raise DataError(f"{path} is not a readable CSV ({err}); " + (damaged_hint or "save it as a comma-separated text file")) from None
    names: list[str] = []
    rows: list[list[float]] = []
    row_lines: list[int] = []
    header: list[str] | None = None
    first = 1 + skip_columns
    for line_no, row in lines:
        _refuse_other_separator(path, line_no, row)
        cells = row[first:]
        while cells and not cells[-1].strip() and len(cells) % 2:  # a trailing comma
            cells = cells[:-1]
        values = [_number(cell) for cell in cells]
        if not names and header is None and any(v is None for v in values):
            header = [cell.strip() for cell in cells]
            continue
        problem = _row_problem(values, cells, first, rows[0] if rows else None)
        if problem is not None:
            raise DataError(f"{path}, line {line_no}: {problem}; {_row_advice(line_no == lines[-1][0], text, damaged_hint)}")
        names.append(row[0].strip())
        rows.append(values)  # type: ignore[arg-type]
        row_lines.append(line_no)
    if not rows:
        raise DataError(f"{path} has no landmark rows (image, x1, y1, ...)" + (f"; {damaged_hint}" if damaged_hint else ""))
    _refuse_repeated_images(path, names, rows, row_lines, damaged_hint)
    points = torch.tensor(rows, dtype=torch.float32).view(len(rows), -1, 2)
    if zero_is_missing:
        points[(points == 0).all(dim=-1)] = math.nan
    points[torch.isnan(points).any(dim=-1)] = math.nan  # half a point is no point
    point_names = header[0::2] if header is not None and len(header) >= 2 * points.shape[1] else None
    return names, points, point_names


def _refuse_repeated_images(
    path: Path, names: list[str], rows: list[list[float]], row_lines: list[int], damaged_hint: str | None
) -> None:
    """Refuse an image named on several rows, naming the images and their lines.

    Each row is one face: an image on two rows was two faces, which the split could put
    in training and test alike (its test score then measured memory), and two sets of points
    for one face, of which neither is known to be right.
    """
    lines_of: dict[str, list[int]] = {}
    for name, line_no in zip(names, row_lines):
        lines_of.setdefault(name, []).append(line_no)
    repeated = {name: lines for name, lines in lines_of.items() if len(lines) > 1}
    if not repeated:
        return
    values_at = dict(zip(row_lines, rows))

    def described(name: str, lines: list[int]) -> str:
        # nan != nan: compare the cells as written, an empty cell equal to an empty cell
        same = len({tuple(map(str, values_at[line])) for line in lines}) == 1
        shown = ", ".join(map(str, lines[:-1])) + f" and {lines[-1]}"
        return f"{name} (lines {shown}, {'the same points' if same else 'different points'})"

    listed = "; ".join(described(name, lines) for name, lines in list(repeated.items())[:3])
    more = f"; and {len(repeated) - 3} more images" if len(repeated) > 3 else ""
    advice = damaged_hint or (
        "keep one row per image (an image on two rows is two faces, which the split can put in training and test alike): "
        "delete the extra rows, or keep the one with the right points"
    )
    count = f"{len(repeated)} image{'s' if len(repeated) > 1 else ''}"
    raise DataError(f"{path} names {count} on more than one row: {listed}{more}; {advice}")


def _refuse_other_separator(path: Path, line_no: int, row: list[str]) -> None:
    """A row that is one cell holding ``;`` or tabs: a file saved with another separator (Excel in many locales)."""
    if len(row) != 1:
        return
    separator = next((sep for sep in (";", "\t", "|") if sep in row[0]), None)
    if separator is not None:
        shown = row[0] if len(row[0]) <= 40 else row[0][:37] + "..."
        name = {";": "semicolons", "\t": "tabs", "|": "bars"}[separator]
        raise DataError(
            f"{path}, line {line_no}: one column, {shown!r}: the file is separated by {name}, not commas; "
            "save it as a comma-separated file (with decimal points: 61.5, not 61,5)"
        )


def _row_problem(values: list[float | None], cells: list[str], first: int, before: list[float] | None) -> str | None:
    """What is wrong with one row's coordinates (``None``: nothing)."""
    bad = next((i for i, v in enumerate(values) if v is None), None)
    if bad is not None:
        return f"column {first + bad + 1} is {cells[bad]!r}, not a number"
    if not values or len(values) % 2:
        return f"{len(values)} coordinate values after the image name; expected x, y pairs (x1, y1, x2, y2, ...)"
    if before is not None and len(values) != len(before):
        return f"{len(values) // 2} points, but the rows before have {len(before) // 2}"
    return None


def _row_advice(last: bool, text: str, damaged_hint: str | None) -> str:
    """What to do about a malformed row: a cut-off file is got again, a typo in one's own CSV is fixed."""
    # A copy or download that stopped early ends inside its last row, usually without the final line break.
    cut_off = last and not text.endswith(("\n", "\r"))
    if damaged_hint:
        return f"the file is {'cut off' if cut_off else 'damaged'}: {damaged_hint}"
    if cut_off:
        return "the file ends in the middle of this row (cut off while copied or downloaded?): copy or write it again"
    return "fix that row (every row: the image name, then x, y for each point; an empty cell for a missing one)"


class LandmarkCSV(LandmarkFiles):
    """A folder of images plus a landmark CSV (see the module docstring for the format).

    Args:
        root: the folder with the images (and, by default, the CSV).
        csv_file: the landmark CSV, relative to ``root`` (or absolute).
        images_dir: where the images are, relative to ``root`` (default: ``root`` itself).
        image_suffix: appended to the names in the CSV (e.g. ``.jpg`` when they have none).
        skip_columns: columns between the image name and the first ``x``.
        zero_is_missing: treat ``(0, 0)`` as "not annotated".
        flip_pairs: ``[left, right]`` index pairs that swap when the face is mirrored
            (needed for ``augment.horizontal_flip``).
        eye_indices: ``[[left eye points], [right eye points]]`` for inter-ocular NME;
            without it NME is normalised by the bounding-box diagonal.
        **kwargs: ``image_size``, ``channels``, ``in_memory``, ``augment``, ``mean``,
            ``std``, batch size, splits and seeds (see :class:`~lightning_hw.data.landmarks.base.LandmarkFiles`).
    """

    def __init__(
        self,
        root: str = "data/landmarks",
        csv_file: str = "landmarks.csv",
        images_dir: str | None = None,
        image_suffix: str = "",
        skip_columns: int = 0,
        zero_is_missing: bool = False,
        flip_pairs: list[tuple[int, int]] | None = None,
        eye_indices: tuple[list[int], list[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.csv_path = self.root / csv_file
        self.images_dir = self.root / images_dir if images_dir else self.root
        self.image_suffix = image_suffix
        self._refuse_root_off(csv_file)
        # Reading the CSV is cheap, and the task needs the number of points before set-up.
        self.names, self.points, self.point_names = read_landmark_csv(self.csv_path, skip_columns, zero_is_missing)
        self._flip_pairs = [tuple(pair) for pair in flip_pairs] if flip_pairs else []
        flip_permutation(self.num_landmarks, self._flip_pairs)  # validate now, not mid-training
        self._eye_indices = (list(eye_indices[0]), list(eye_indices[1])) if eye_indices is not None else None
        if self._eye_indices is not None:
            bad = [i for side in self._eye_indices for i in side if not 0 <= i < self.num_landmarks]
            if bad or not all(self._eye_indices):
                raise ConfigError(
                    f"eye_indices {list(map(list, self._eye_indices))} must be two non-empty lists of point "
                    f"indices below {self.num_landmarks}"
                )
            if set(self._eye_indices[0]) == set(self._eye_indices[1]):
                # Both eye centres would be one point: every face's inter-ocular distance 0, every NME and PCK nan.
                raise ConfigError(
                    f"eye_indices {list(map(list, self._eye_indices))} give both eyes the same points; "
                    "give [[left eye's points], [right eye's points]], e.g. [[0], [1]]"
                )

    @property
    def num_landmarks(self) -> int:
        return int(self.points.shape[1])

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return list(self._flip_pairs)

    @property
    def eye_indices(self) -> EyeIndices | None:
        return self._eye_indices

    def annotation_source(self) -> str:
        return str(self.csv_path)

    def annotation_point_names(self) -> list[str] | None:
        return self.point_names

    def _refuse_root_off(self, csv_file: str) -> None:
        """``root`` one folder off the folder that holds ``csv_file`` (where that folder can be told)."""
        if self.csv_path.is_file() or Path(csv_file).is_absolute():
            return
        found = folder_holding(self.root, csv_file)
        if found is not None:
            raise DataError(root_off_message("landmark file", self.csv_path, found, csv_file))

    def _refuse_images_one_folder_down(self, paths: list[Path]) -> None:
        """The images of the CSV in a sub-folder of :attr:`images_dir`: name the ``images_dir`` to give."""
        first = paths[0]
        if first.is_file() or not self.images_dir.is_dir():
            return
        sub = next((d for d in sorted(self.images_dir.iterdir()) if d.is_dir() and (d / first.name).is_file()), None)
        if sub is not None:
            setting = sub.relative_to(self.root).as_posix() if sub.is_relative_to(self.root) else str(sub)
            raise DataError(
                f"images named in {self.csv_path} not found in {self.images_dir}, but {sub / first.name} is there: "
                f"set --data.init_args.images_dir {setting}"
            )

    def _refuse_numbered_header(self, paths: list[Path]) -> None:
        """Only the first row's image missing: likely a header whose column names are numbers, read as a face.

        A header is recognised by its non-numeric coordinate cells; ``image,1,2,3,...`` has none, so
        it was a face named ``image``, and the message said an image was missing. It is not dropped
        as a header here: a first face whose image is missing looks the same, and would be lost.
        """
        if len(paths) < 2 or self.point_names is not None or paths[0].is_file() or not all(p.is_file() for p in paths[1:]):
            return
        raise DataError(
            f"the first row of {self.csv_path} names image {self.names[0]!r}, which is not in {self.images_dir}, though "
            f"the images of its {len(paths) - 1} other rows are: if that row is a header, its column names are numbers, "
            f"so it was read as a face: name the columns image, x1, y1, x2, y2, ... (or delete the row); else put "
            f"{paths[0].name} under {self.images_dir}"
        )

    def read_records(self) -> list[Record]:
        paths = [self.images_dir / f"{name}{self.image_suffix}" for name in self.names]
        self._refuse_images_one_folder_down(paths)
        self._refuse_numbered_header(paths)
        check_files_exist(
            paths, "images named in " + str(self.csv_path), f"put them under {self.images_dir} or fix images_dir/image_suffix"
        )
        return list(zip(paths, self.points))
