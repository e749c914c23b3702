"""CelebA's five landmarks (E6's 5-point set), read through ``torchvision.datasets.CelebA``.

CelebA (202,599 aligned and cropped 178x218 celebrity photos) is on Google Drive, which
often refuses scripted downloads. Put these files from the CelebA page
(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html: "Align&Cropped Images", "Anno" and
"Eval" folders) into ``<root>/celeba/``::

    <root>/celeba/img_align_celeba/000001.jpg ...     (extract img_align_celeba.zip)
    <root>/celeba/list_landmarks_align_celeba.txt
    <root>/celeba/list_eval_partition.txt
    <root>/celeba/identity_CelebA.txt
    <root>/celeba/list_attr_celeba.txt
    <root>/celeba/list_bbox_celeba.txt

torchvision checks the MD5 of each text file (it reads all five, even for landmarks
only), or fetches everything with ``download: true`` (needs ``pip install gdown``).
The points are ``lefteye, righteye, nose, leftmouth, rightmouth`` (left = viewer's left)
in pixels of the aligned photos, and the split is CelebA's own partition
(162,770 train / 19,867 valid / 19,962 test), so ``splits`` is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_hw.data.landmarks.base import (
    EyeIndices,
    LandmarkFiles,
    Record,
    check_files_exist,
    folder_holding,
    root_off_message,
)
from lightning_hw.errors import DataError

CELEBA_FOLDER = "celeba"
CELEBA_IMAGES = "img_align_celeba"
#: the file that tells where a CelebA folder is (``root`` holds ``celeba/``, which holds it)
CELEBA_LANDMARKS = Path(CELEBA_FOLDER) / "list_landmarks_align_celeba.txt"
CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CELEBA_POINTS = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
#: torchvision split name per lightning-hw split
CELEBA_SPLITS = {"train": "train", "val": "valid", "test": "test"}


class CelebALandmarks(LandmarkFiles):
    """CelebA aligned faces with their five landmarks, in CelebA's official split.

    Args:
        root: the folder that holds ``celeba/`` (torchvision's layout; see the module docstring).
        download: let torchvision fetch the files from Google Drive (needs ``gdown``; often
            blocked by Drive's quota, in which case download them by hand).
        **kwargs: ``image_size`` (default 128x104, the photos' shape halved-ish), ``channels``,
            ``in_memory`` (the full set at this size streams from disk), ``num_workers``,
            ``augment``, ``mean``, ``std``, batch size and seeds (see
            :class:`~lightning_hw.data.landmarks.base.LandmarkFiles`).
    """

    own_split = "CelebA's own partition (list_eval_partition.txt) splits it"

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        image_size: int | tuple[int, int] = (128, 104),
        **kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, **kwargs)
        self.root = Path(root)
        self.download = download
        # Fail before a model is built (and its weights fetched) when the files are not there.
        missing = [] if download else self._missing_files()
        if missing:
            found = folder_holding(self.root, CELEBA_LANDMARKS)
            if found is not None:
                raise DataError(root_off_message("CelebA", self.root / CELEBA_FOLDER, found, f"{CELEBA_FOLDER}/"))
            raise self._not_usable(f"missing: {', '.join(missing)}")

    @property
    def num_landmarks(self) -> int:
        return len(CELEBA_POINTS)

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return [(0, 1), (3, 4)]

    @property
    def eye_indices(self) -> EyeIndices:
        return ([0], [1])

    def prepare_data(self) -> None:
        if self.download:
            self._dataset("all")

    def _missing_files(self) -> list[str]:
        """The CelebA files torchvision needs that are not in ``<root>/celeba`` (names only)."""
        from torchvision.datasets import CelebA

        folder = self.root / CELEBA_FOLDER
        missing = [name for _, _, name in CelebA.file_list if not name.endswith(".zip") and not (folder / name).is_file()]
        if not (folder / CELEBA_IMAGES).is_dir():
            missing.insert(0, f"{CELEBA_IMAGES}/ (extract img_align_celeba.zip)")
        return missing

    def _not_usable(self, what: str) -> DataError:
        folder = self.root / CELEBA_FOLDER
        return DataError(
            f"CelebA not usable in {folder} ({what}); get the aligned images and the Anno/Eval text files from "
            f"the Google Drive linked at {CELEBA_PAGE} into {folder}, or set download: true (needs gdown)"
        )

    def _dataset(self, split: str):
        from torchvision.datasets import CelebA

        try:
            return CelebA(str(self.root), split=split, target_type="landmarks", download=self.download)
        except ImportError as err:  # gdown, for download=True
            raise DataError(f"downloading CelebA needs gdown ({err}); pip install gdown, or put the files by hand") from None
        except RuntimeError:
            missing = self._missing_files()
            what = f"missing: {', '.join(missing)}" if missing else "a file does not match torchvision's MD5 (corrupt or another version)"
            raise self._not_usable(what) from None

    def split_records(self) -> dict[str, list[Record]]:
        records = {}
        for ours, theirs in CELEBA_SPLITS.items():
            dataset = self._dataset(theirs)
            images = Path(dataset.root) / dataset.base_folder / CELEBA_IMAGES
            points = dataset.landmarks_align.view(-1, len(CELEBA_POINTS), 2).float()
            records[ours] = [(images / name, p) for name, p in zip(dataset.filename, points)]
        paths = [path for part in records.values() for path, _ in part]
        self._refuse_nested_images(paths)
        check_files_exist(paths, "CelebA images", f"extract img_align_celeba.zip into {self.root / CELEBA_FOLDER}")
        return records

    def annotation_source(self) -> str:
        return str(self.root / CELEBA_FOLDER / "list_landmarks_align_celeba.txt")

    def annotation_point_names(self) -> list[str]:
        return list(CELEBA_POINTS)

    def _refuse_nested_images(self, paths: list[Path]) -> None:
        """``img_align_celeba.zip`` holds the folder ``img_align_celeba/``: unzipped into one of that name, it nests."""
        if paths and not paths[0].is_file() and (paths[0].parent / CELEBA_IMAGES / paths[0].name).is_file():
            images = paths[0].parent
            raise DataError(
                f"the CelebA images are in {images / CELEBA_IMAGES}, one folder too deep (img_align_celeba.zip holds "
                f"the folder {CELEBA_IMAGES}/ itself): move them up into {images}, or unzip the archive in "
                f"{images.parent} (unzip img_align_celeba.zip -d {images.parent})"
            )

    def read_records(self) -> list[Record]:
        return [record for part in self.split_records().values() for record in part]
