"""Landmark datamodules: images plus ``(K, 2)`` points per face, augmented together.

A batch is ``(images, points)``: uint8 images ``(N, C, H, W)`` as stored and float
points ``(N, K, 2)`` in continuous pixel coordinates of the stored image (see
:mod:`lightning_hw.data.augment.landmarks`), ``NaN`` where a point is not annotated.
Every dataset converts its own "missing" convention (MUCT's ``(0, 0)``, an empty CSV
cell) to ``NaN`` when it reads its files, so that augmentation cannot move a marker into
a real-looking position. :meth:`LandmarkDataModule.on_after_batch_transfer` then, on
the accelerator and for the whole batch: scales the pixels, augments images and points
(training only), normalises the pixels and divides the points by the image width and
height, so the task receives targets in ``(0, 1)``.

:class:`LandmarkFiles` is the base of the datasets stored as image files plus
annotations (MUCT, CelebA, any CSV): it decodes and resizes each image once, moving its
points with ``torchvision.transforms.v2`` on ``tv_tensors.KeyPoints``, and keeps the
result in memory when it fits, else streams it from disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lightning_hw.data.base import SPLIT_NAMES, Split
from lightning_hw.data.epoch_order import TensorBatchLoader
from lightning_hw.data.io.image_files import file_id, image_file_size, is_image_input, read_image_and_size
from lightning_hw.data.loading import decode_threads
from lightning_hw.data.images import DRAFT_NOTE, ImageDataModule, check_image_settings
from lightning_hw.data.streaming import IN_MEMORY_LIMIT_BYTES, StreamingFallback
from lightning_hw.data.augment.landmarks import LandmarkAugment, flip_permutation, mark_off_canvas
from lightning_hw.data.landmarks.off_image import check_points_on_images
from lightning_hw.errors import ConfigError, DataError

#: ``(image file, (K, 2) points in that file's pixels, NaN = missing)``
Record = tuple[Path, torch.Tensor]
EyeIndices = tuple[list[int], list[int]]


class LandmarkDataModule(ImageDataModule):
    """Base of the landmark datamodules: what the task must know, and per-batch augmentation.

    Subclasses implement :meth:`load_splits` (or :meth:`load_tensors`) returning uint8
    images and ``(N, K, 2)`` float points, plus :attr:`image_shape`,
    :attr:`num_landmarks`, and where they exist :attr:`flip_pairs` and :attr:`eye_indices`.

    Args:
        augment: random transforms applied to every training batch, points included
            (see :class:`~lightning_hw.data.augment.landmarks.LandmarkAugment`).
        **kwargs: ``mean``, ``std``, ``standardize``, ``flatten`` (see
            :class:`~lightning_hw.data.images.ImageDataModule`), batch size, splits, seeds.
    """

    def __init__(self, augment: LandmarkAugment | None = None, **kwargs: Any) -> None:
        # The image-only augmentation of the base would move pixels without their points.
        super().__init__(augment=None, offline_augment=None, offline_copies=0, **kwargs)
        self.landmark_augment = augment
        self._permutation: torch.Tensor | None = None
        self._predict_sizes: torch.Tensor | None = None

    # -- what the task must know -----------------------------------------------------------

    @property
    def num_landmarks(self) -> int:
        """Points per face (the task outputs twice as many numbers)."""
        raise NotImplementedError

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        """``(left, right)`` index pairs that swap under a horizontal flip; empty if unknown."""
        return []

    @property
    def eye_indices(self) -> EyeIndices | None:
        """Point indices of the (viewer's) left and right eye, averaged into eye centres.

        The task normalises errors by the distance between the two centres (inter-ocular
        NME); ``None`` makes it use the bounding-box diagonal of the face instead.
        """
        return None

    @property
    def class_names(self) -> list[str]:
        return []

    def setup(self, stage: str | None = None) -> None:
        self.prepare_flip()
        super().setup(stage)

    def training_shapes(self) -> torch.Tensor | None:
        """The training split's points as stored, normalised to (0, 1) and never augmented: ``(N, K, 2)``, ``NaN`` = missing.

        The task's mean-shape baseline is the mean of these: the targets of the training
        steps are augmented (flipped, rotated, points pushed off the image dropped), so their
        mean is not the training set's. Read from memory, no image decoded; ``None`` before set-up.
        """
        if not self.raw_data:
            return None
        images, points = self.raw_data["train"][:2]
        h, w = images.shape[-2:]
        return points.float() / torch.tensor([w, h], dtype=torch.float32)

    def prepare_flip(self) -> None:
        """Build the flip permutation (checked before any data is read) if the augmentation flips."""
        if self.landmark_augment is None or not self.landmark_augment.horizontal_flip:
            return
        if not self.flip_pairs:
            raise ConfigError(
                f"augment.horizontal_flip needs flip pairs, which {type(self).__name__} does not know; "
                "give flip_pairs (which points swap when the face is mirrored) or switch the flip off"
            )
        self._permutation = flip_permutation(self.num_landmarks, self.flip_pairs)

    # -- per batch -----------------------------------------------------------------------------

    def transform_batch(
        self, images: torch.Tensor, points: torch.Tensor, train: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw batch -> (model input, targets in (0, 1)): scale, augment (training), normalise.

        Args:
            images: stored images ``(N, C, H, W)`` (uint8, or float in [0, 1]).
            points: ``(N, K, 2)`` pixel coordinates, ``NaN`` = missing.
            train: apply the random augmentation.
        """
        x = self.preprocess.scale(images)
        points = points.float()
        if train and self.landmark_augment is not None:
            x, points = self.landmark_augment(x, points, permutation=self._permutation)
        h, w = x.shape[-2:]
        target = points / torch.tensor([w, h], dtype=points.dtype, device=points.device)
        return self.preprocess.normalize(x), target

    def on_after_batch_transfer(self, batch: Split, dataloader_idx: int) -> Split:
        if len(batch) == 1:  # new samples from a CSV: no points, and the model input is their image
            return (self.preprocess(batch[0]),)
        if self._predict_sizes is not None and self.trainer is not None and self.trainer.predicting:
            images, sizes = batch  # image files: no points, and each file's (W, H) for the task
            return (self.preprocess(images), None, sizes)
        images, points, *rest = batch
        train = self.trainer is not None and self.trainer.training
        return (*self.transform_batch(images, points, train=train), *rest)

    # -- predicting on image files ---------------------------------------------------------------

    def file_image_size(self, path: Path) -> tuple[int, int]:
        """``(H, W)`` of an image file as :meth:`read_image_file` decodes it (EXIF orientation applied)."""
        return image_file_size(path)

    def predict_from(self, path: str | Path, on_unreadable: str = "fail") -> list[str]:
        """Predict on the samples of ``path`` (see :meth:`read_inputs`); for image files, note each file's size.

        Every reader resizes the whole image to the model input (no crop, aspect ratio not
        kept), so a point at a fraction of the input's width and height sits at the same
        fraction of the file's: the task multiplies by the file's ``(W, H)`` to give points
        in the file's pixels, which :meth:`predict_dataloader` serves with each image.
        """
        ids = super().predict_from(path, on_unreadable)
        source = Path(path)
        self._predict_sizes = None
        if source.is_dir() or is_image_input(source):
            folder = source if source.is_dir() else source.parent  # ids are the files' names
            sizes = [self.file_image_size(folder / name) for name in ids]
            # Whole numbers, which the precision plugin leaves alone: as bfloat16 a width of 2601 px was 2592.
            self._predict_sizes = torch.tensor([(w, h) for h, w in sizes], dtype=torch.int64)
        return ids

    def predict_dataloader(self) -> TensorBatchLoader:
        """The test split, or the samples of :meth:`predict_from`; image files with their ``(W, H)``."""
        if self._predict_sizes is None:
            return super().predict_dataloader()
        self._warn_if_other_units(self._predict_raw)
        return self._shard((self._predict_raw, self._predict_sizes), "predict", batch_size=self.eval_batch_size)


def decode_with_points(
    path: Path,
    points: torch.Tensor,
    size: tuple[int, int],
    channels: int = 3,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an image, resize it to ``size`` and move its landmarks with it.

    See :func:`decode_with_points_and_size`, which also returns the file's size.
    """
    return decode_with_points_and_size(path, points, size, channels, interpolation)[:2]


def decode_with_points_and_size(
    path: Path,
    points: torch.Tensor,
    size: tuple[int, int],
    channels: int = 3,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Read an image, resize it to ``size`` and move its landmarks with it.

    JPEGs are decoded at a reduced scale when that is still larger than ``size`` (much
    faster for photos); both resizes are applied to the points through
    ``tv_tensors.KeyPoints``, so they follow the pixels exactly.

    Args:
        path: the image file.
        points: ``(K, 2)`` landmarks in the file's pixel coordinates (``NaN`` = missing).
        size: output ``(H, W)``.
        channels: 3 (RGB) or 1 (greyscale).
        interpolation: resize filter.

    Returns:
        uint8 ``(C, H, W)`` image, float ``(K, 2)`` points in its pixels, and the file's
        ``(H, W)``; points annotated outside the photo are missing (a sigmoid output could
        never reach them; :func:`~lightning_hw.data.landmarks.off_image.check_points_on_images`
        says how many there are).
    """
    image, original = read_image_and_size(path, channels, min_size=size, exif_rotate=False)
    keypoints = tv_tensors.KeyPoints(points.float(), canvas_size=original)
    if tuple(image.shape[-2:]) != original:  # the draft decode shrank the image
        keypoints = TF.resize(keypoints, list(image.shape[-2:]))
    image = TF.resize(tv_tensors.Image(image), list(size), interpolation=interpolation, antialias=True)
    keypoints = TF.resize(keypoints, list(size))
    return image.as_subclass(torch.Tensor), mark_off_canvas(keypoints.as_subclass(torch.Tensor), size), original


class LandmarkFiles(StreamingFallback, LandmarkDataModule):
    """Base of landmark sets stored as image files plus annotations.

    Subclasses implement :meth:`read_records` (every ``(path, points)`` of the set) and,
    for sets that come with their own split, :meth:`split_records`.

    Args:
        image_size: size the images are resized to, ``S`` or ``(H, W)``; the points move
            with them. The aspect ratio is not kept (what Keras ``load_img`` does).
        channels: 3 (RGB) or 1 (greyscale).
        interpolation: resize filter (``bilinear``, ``bicubic``, ...).
        in_memory: keep the decoded images in memory (``None``: when they take < 4 GiB).
        num_workers: threads decoding the files once, or DataLoader worker processes when
            streaming; ``None``: one per CPU core this process may use.
        **kwargs: ``augment``, ``mean``, ``std``, ``standardize``, ``flatten``, batch size,
            splits and seeds (see :class:`LandmarkDataModule`).
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 224,
        channels: int = 3,
        interpolation: str = "bilinear",
        in_memory: bool | None = None,
        num_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.interpolation = check_image_settings(channels, interpolation)
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.channels = channels
        self.in_memory_setting = in_memory
        self.num_workers = num_workers
        self._split_records: dict[str, list[Record]] = {}
        self._points_checked = False
        self._train_header_sizes: torch.Tensor | None = None  # read once in setup, for training_shapes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.image_size)

    # -- reading -------------------------------------------------------------------------------

    def read_records(self) -> list[Record]:
        """Every ``(image path, (K, 2) points)`` of the set, points in the file's pixels."""
        raise NotImplementedError

    def split_records(self) -> dict[str, list[Record]]:
        """Records per split; default: a seeded split of :meth:`read_records` by :attr:`splits` (or :attr:`fold`)."""
        records = self.read_records()
        parts = self.split_positions(len(records))
        return {name: [records[i] for i in idx.tolist()] for name, idx in zip(SPLIT_NAMES, parts)}

    def split_ids(self, split: str) -> list[str]:
        """Each image's path under the data set's ``root`` (where it has one), in the split's order."""
        root = getattr(self, "root", None)
        return [file_id(path, Path(root) if root is not None else None) for path, _ in self._records()[split]]

    def decode(self, path: Path, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One record as a resized uint8 image and its moved points."""
        return self.decode_with_size(path, points)[:2]

    def decode_with_size(self, path: Path, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """:meth:`decode`, plus the file's ``(H, W)`` (for :meth:`check_points`)."""
        return decode_with_points_and_size(path, points, self.image_size, self.channels, self.interpolation)

    def read_image_file(self, path: Path) -> torch.Tensor:
        # The training decoder, without points (and, as in training, without EXIF rotation:
        # annotations refer to the stored pixels).
        return decode_with_points(path, torch.empty(0, 2), self.image_size, self.channels, self.interpolation)[0]

    def file_image_size(self, path: Path) -> tuple[int, int]:
        return image_file_size(path, exif_rotate=False)  # the stored pixels, as read_image_file reads them

    def decode_description(self) -> dict[str, Any]:
        return {**super().decode_description(), "reader": f"Pillow, stored orientation (no EXIF rotation); {DRAFT_NOTE}"}

    def _decode_all(self, records: list[Record]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode ``records``: uint8 images, their moved points, and each file's ``(H, W)``."""
        if not records:
            empty = torch.empty(0, *self.image_shape, dtype=torch.uint8), torch.empty(0, self.num_landmarks, 2)
            return *empty, torch.empty(0, 2, dtype=torch.int64)
        # Pillow releases the GIL while it decodes, so threads decode in parallel.
        with ThreadPoolExecutor(max_workers=decode_threads(self.num_workers)) as pool:
            decoded = list(pool.map(lambda record: self.decode_with_size(*record), records))
        sizes = torch.tensor([d[2] for d in decoded], dtype=torch.int64)
        return torch.stack([d[0] for d in decoded]), torch.stack([d[1] for d in decoded]), sizes

    def _header_sizes(self, records: list[Record]) -> torch.Tensor:
        """Each file's stored ``(H, W)`` from its header alone (no pixels decoded), as ``(N, 2)``."""
        # Opening a file reads its header only; threads overlap the waits on the disk.
        with ThreadPoolExecutor(max_workers=decode_threads(self.num_workers)) as pool:
            sizes = list(pool.map(lambda record: image_file_size(record[0], exif_rotate=False), records))
        return torch.tensor(sizes, dtype=torch.int64).view(-1, 2)

    def annotation_source(self) -> str:
        """The annotation file(s), as named when their points are refused (default: the data set's root)."""
        return str(getattr(self, "root", "the annotations"))

    def annotation_point_names(self) -> list[str] | None:
        """The annotation file's name of each point, where it has them."""
        return None

    def check_points(self, records: dict[str, list[Record]], sizes: dict[str, torch.Tensor]) -> None:
        """Say (once) how many annotated points lie outside their images; refuse a set of mostly such points.

        Args:
            records: each split's ``(path, points in the file's pixels)``.
            sizes: each split's ``(N, 2)`` file sizes ``(H, W)``.
        """
        if self._points_checked:
            return
        parts = [name for name in records if records[name]]
        paths = [path for name in parts for path, _ in records[name]]
        if paths:
            points = torch.cat([torch.stack([p for _, p in records[name]]).float() for name in parts])
            root = getattr(self, "root", None)
            check_points_on_images(
                paths, points, torch.cat([sizes[name] for name in parts]), self.annotation_source(),
                root=Path(root) if root is not None else None, point_names=self.annotation_point_names(),
            )
        self._points_checked = True

    def _records(self) -> dict[str, list[Record]]:
        if not self._split_records:
            self._split_records = self.split_records()
            self.check_folds_applied()  # a set with its own split (CelebA) cannot take folds
        return self._split_records

    @property
    def in_memory(self) -> bool:
        """Whether the decoded images are kept in memory (decided from their size unless set)."""
        if self.in_memory_setting is not None:
            return self.in_memory_setting
        count = sum(len(r) for r in self._records().values())
        return count * math.prod(self.image_shape) <= IN_MEMORY_LIMIT_BYTES

    def load_splits(self) -> dict[str, Split]:
        records = self._records()
        decoded = {name: self._decode_all(part) for name, part in records.items()}
        self.check_points(records, {name: d[2] for name, d in decoded.items()})
        return {name: d[:2] for name, d in decoded.items()}

    def setup(self, stage: str | None = None) -> None:
        if self.in_memory:
            super().setup(stage)
            return
        records = self._records()
        for name, part in records.items():
            if not part:
                raise DataError(self.empty_split_message(name))
        self.prepare_flip()
        # Streamed images are decoded in DataLoader workers, out of sight: their sizes come from the headers.
        if not self._points_checked:
            sizes = {name: self._header_sizes(part) for name, part in records.items()}
            self._train_header_sizes = sizes["train"]
            self.check_points(records, sizes)
        if self.standardize_images and self.mean is None:
            step = max(1, len(records["train"]) // 2000)  # decoding every image would take a pass
            self.preprocess = self.build_preprocess(self._decode_all(records["train"][::step])[0])
        else:
            self.preprocess = self.build_preprocess(None)

    def training_shapes(self) -> torch.Tensor | None:
        if self.in_memory:
            return super().training_shapes()
        # Streamed: the records' points are in each file's pixels; the whole file is resized to the
        # input (no crop), so a point's fraction of the file's size is its target. Headers only.
        records = self._records()["train"]
        if not records:
            return None
        points = torch.stack([p for _, p in records]).float()
        sizes = self._train_header_sizes
        if sizes is None or len(sizes) != len(records):  # a large set's headers take seconds: read once (setup)
            sizes = self._header_sizes(records)
        h, w = sizes.float().unbind(-1)
        # As decoding does: a point outside its image is not annotated.
        return mark_off_canvas(points / torch.stack([w, h], dim=-1).unsqueeze(1), (1, 1))

    # -- streaming loaders (only when the images are not kept in memory) -----------------------

    def stream_items(self, split: str) -> list[Record]:
        return self._records()[split]

    def decode_item(self, item: Record) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(*item)


def check_files_exist(paths: Sequence[Path], what: str, hint: str) -> None:
    """Raise one :class:`DataError` naming the missing files (a few, and how many).

    Args:
        paths: files that must exist.
        what: what they are, e.g. ``"MUCT images"``.
        hint: what to do, appended to the message.
    """
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"{len(missing)} of {len(paths)} {what} are missing ({shown}{more}); {hint}")


def folder_holding(root: Path, relative: Path | str) -> Path | None:
    """The folder one level off ``root`` that holds ``relative``, when ``root`` does not.

    ``root`` set one folder too deep (to a folder of the data set, or to one of its files) or
    one too shallow (the folder above the data set) is the commonest way to have every file
    "missing"; the advice to download the data again would then be wrong.

    Args:
        root: the configured data set folder.
        relative: a file the data set folder must hold, relative to it (e.g. ``muct-landmarks/muct76-opencv.csv``).

    Returns:
        The folder to give as ``root`` (its parent or grandparent, or one of its sub-folders), or ``None``.
    """
    candidates = [root.parent, root.parent.parent]
    if root.is_dir():
        candidates += sorted(sub for sub in root.iterdir() if sub.is_dir() and not sub.name.startswith("."))
    return next((folder for folder in candidates if folder != root and (folder / relative).is_file()), None)


def root_off_message(what: str, expected: Path, found: Path, relative: Path | str) -> str:
    """One line for :func:`folder_holding`'s find: where it looked, where the file is, the ``root`` to set."""
    return (
        f"{what} not found at {expected}, but {found / relative} is there: "
        f"set --data.init_args.root {found} (the folder that holds {relative})"
    )
