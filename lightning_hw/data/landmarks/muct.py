"""MUCT: 3,755 faces with 76 manual landmarks (E6's 76-point set), from its public archives.

Download from https://github.com/StephenMilborrow/muct (details at http://www.milbo.org/muct)
the landmark archive and the five camera archives, and extract them into one folder::

    mkdir -p data/muct
    for f in muct-landmarks-v1 muct-a-jpg-v1 muct-b-jpg-v1 muct-c-jpg-v1 muct-d-jpg-v1 muct-e-jpg-v1; do
        tar xzf $f.tar.gz -C data/muct
    done

which gives ``data/muct/muct-landmarks/muct76-opencv.csv`` and ``data/muct/jpg/i000qa-fn.jpg``...
The CSV has a header ``name,tag,x00,y00,x01,y01,...,x75,y75`` and one row per image, in
OpenCV coordinates (origin top left, pixels of the 480x640 photo). Image names encode
the subject (``i000``), the lighting set (``q``) and the camera (``a``...``e``): cameras
b and c see the face from the side, and there points hidden behind the nose or the
cheek are stored as ``(0, 0)``: "unavailable", read here as missing. Rows whose name
starts with ``ir`` are the landmarks of mirrored images, which the archives do not
contain; they are skipped (``augment.horizontal_flip`` mirrors on the fly instead).

Points follow the Stasm/XM2VTS numbering, left and right as seen by the viewer:
0-14 face outline (7 chin), 15-20 and 21-26 eyebrows, 27-30 left eye with pupil 31,
32-35 right eye with pupil 36, 37-47 nose, 48-66 mouth (48 and 54 corners), 67 nose tip,
68-71 and 72-75 extra points between the left and right eye corners.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_hw.data.base import SPLIT_NAMES
from lightning_hw.data.landmarks.csv_folder import read_landmark_csv
from lightning_hw.data.landmarks.base import (
    EyeIndices,
    LandmarkFiles,
    Record,
    check_files_exist,
    folder_holding,
    root_off_message,
)
from lightning_hw.errors import ConfigError, DataError

MUCT_URL = "https://github.com/StephenMilborrow/muct"
MUCT_CSV = Path("muct-landmarks") / "muct76-opencv.csv"
MUCT_IMAGES = "jpg"
MUCT_CAMERAS = ("a", "b", "c", "d", "e")
MUCT_NUM_LANDMARKS = 76
#: mirror partners (Stasm's landmark table; 68-75 pair up as the eye corners they lie between)
MUCT_FLIP_PAIRS: list[tuple[int, int]] = [
    *((i, 14 - i) for i in range(7)),  # outline; 7 (chin) stays
    *((15 + i, 21 + i) for i in range(6)),  # eyebrows
    *((27 + i, 32 + i) for i in range(5)),  # eye corners, lids and pupils
    (37, 45), (38, 44), (39, 43), (40, 42), (46, 47),  # nose; 41 (base) stays
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 62), (63, 65),  # mouth; 51, 57, 61, 64, 66 stay
    *((68 + i, 72 + i) for i in range(4)),  # extra eye points
]
#: the pupils: the reports' inter-ocular distance l is measured between them
MUCT_EYES: EyeIndices = ([31], [36])


def _archive_hint(root: Path) -> str:
    archives = ", ".join(f"muct-{c}-jpg-v1.tar.gz" for c in MUCT_CAMERAS)
    return (
        f"download muct-landmarks-v1.tar.gz and the image archives ({archives}) from {MUCT_URL} "
        f"(see http://www.milbo.org/muct) and extract them into {root} (tar xzf ARCHIVE -C {root})"
    )


def _damaged_hint(root: Path) -> str:
    return (
        f"extract muct-landmarks-v1.tar.gz into {root} again (tar xzf muct-landmarks-v1.tar.gz -C {root}), "
        f"or download it again from {MUCT_URL} if that fails too"
    )


class MUCT(LandmarkFiles):
    """The MUCT face database: 76 landmarks per face, 480x640 photos from five cameras.

    Args:
        root: the folder the archives were extracted into (holds ``muct-landmarks/`` and ``jpg/``).
        cameras: camera views to use (``a``-``e``); ``[a, d, e]`` avoids the side views,
            which have unavailable points.
        split_by_subject: put all photos of one person in the same split, so that
            validation and test faces are of people never seen in training (the five
            cameras photograph each subject at the same moment); so are ``folds``. ``False``: split photos.
        **kwargs: ``image_size`` (default 256x192, the photos' 4:3 shape), ``channels``,
            ``augment``, ``mean``, ``std``, batch size, ``splits`` and seeds (see
            :class:`~lightning_hw.data.landmarks.base.LandmarkFiles`).
    """

    def __init__(
        self,
        root: str = "data/muct",
        cameras: list[str] = list(MUCT_CAMERAS),  # noqa: B006 - jsonargparse shows list defaults; never mutated
        split_by_subject: bool = True,
        image_size: int | tuple[int, int] = (256, 192),
        **kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, **kwargs)
        unknown = sorted(set(cameras) - set(MUCT_CAMERAS))
        if unknown or not cameras:
            raise ConfigError(f"MUCT cameras are {', '.join(MUCT_CAMERAS)}; got {list(cameras)}")
        self.root = Path(root)
        self.cameras = list(cameras)
        self.split_by_subject = split_by_subject
        csv_path = self.root / MUCT_CSV
        if not csv_path.is_file():
            found = folder_holding(self.root, MUCT_CSV)
            if found is not None:
                raise DataError(root_off_message("MUCT landmarks", csv_path, found, MUCT_CSV))
            if (self.root / MUCT_CSV.name).is_file():  # put there by hand, not extracted
                raise DataError(f"MUCT landmarks not found at {csv_path}, but {self.root / MUCT_CSV.name} is there: move it into {csv_path.parent}")
            raise DataError(f"MUCT landmarks not found at {csv_path}: {_archive_hint(self.root)}")
        names, points, _ = read_landmark_csv(csv_path, skip_columns=1, zero_is_missing=True, damaged_hint=_damaged_hint(self.root))
        if points.shape[1] != MUCT_NUM_LANDMARKS:
            raise DataError(f"{csv_path} has {points.shape[1]} points per row, MUCT has {MUCT_NUM_LANDMARKS}; is it muct76-opencv.csv?")
        keep = [i for i, name in enumerate(names) if not name.startswith("ir") and name[5:6] in self.cameras]
        if not keep:
            raise DataError(f"{csv_path} has no rows for cameras {self.cameras} (names like i000qa-fn, camera letter 6th)")
        self.names = [names[i] for i in keep]
        self.points = points[keep]

    @property
    def num_landmarks(self) -> int:
        return MUCT_NUM_LANDMARKS

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return list(MUCT_FLIP_PAIRS)

    @property
    def eye_indices(self) -> EyeIndices:
        return MUCT_EYES

    def annotation_source(self) -> str:
        return f"{self.root / MUCT_CSV} (is it damaged or another version? extract muct-landmarks-v1.tar.gz again)"

    def read_records(self) -> list[Record]:
        paths = [self.root / MUCT_IMAGES / f"{name}.jpg" for name in self.names]
        check_files_exist(paths, "MUCT images", _archive_hint(self.root))
        return list(zip(paths, self.points))

    def split_records(self) -> dict[str, list[Record]]:
        if not self.split_by_subject:
            return super().split_records()
        records = self.read_records()
        subjects = sorted({name[1:4] for name in self.names})
        parts = self.split_positions(len(subjects))  # folds, too, are cut between subjects
        split_of = {subjects[i]: split for split, idx in zip(SPLIT_NAMES, parts) for i in idx.tolist()}
        return {split: [r for r, name in zip(records, self.names) if split_of[name[1:4]] == split] for split in SPLIT_NAMES}
