"""A folder of images: labels from sub-folder names or from the file-name prefix (E3, E5).

Two layouts are read:

* ``labels: folder`` (torchvision ``ImageFolder``): ``root/<class>/<any name>.jpg``;
* ``labels: prefix`` (E3's Kaggle cats and dogs): ``root/cat.12.jpg`` -> class ``cat``.

Images are decoded once, resized, and, when they fit in memory (the usual case for the
course data sets: 100 photos at 28x28, 800 at 128x128), kept as one uint8 tensor that
batches are sliced from; larger folders are streamed from disk by DataLoader workers.
Pillow decodes in CPU threads or workers; ``decoder: nvjpeg`` decodes JPEGs in batches on
the GPU instead (see :mod:`lightning_hw.data.io.jpeg_batch`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF

from lightning_hw.data.base import SPLIT_NAMES, Split
from lightning_hw.data.io.image_files import (
    IMAGE_SUFFIXES,
    file_id,
    images_in_subfolders,
    is_hidden,
    list_images,
    read_image,
    walk_images,
)
from lightning_hw.data.io.jpeg_batch import EncodedImages, collate_encoded, decode_batch, read_file
from lightning_hw.data.loading import decode_threads
from lightning_hw.data.images import ImageDataModule, check_image_settings
from lightning_hw.data.streaming import IN_MEMORY_LIMIT_BYTES, StreamingFallback
from lightning_hw.errors import ConfigError, DataError

LABEL_MODES = ("auto", "folder", "prefix")
DECODERS = ("pillow", "nvjpeg")
#: files decoded per nvJPEG call when a folder is decoded into memory
NVJPEG_CHUNK = 256
#: images used to estimate mean/std when the data is streamed (decoding all would take a pass)
STREAMED_STATS_SAMPLES = 2000


def scan_folder(
    root: Path, labels: str = "auto", prefix_separator: str = ".", classes: Sequence[str] | None = None
) -> tuple[list[tuple[Path, int]], list[str]]:
    """List the images under ``root`` with their labels.

    Images are the files with an :data:`~lightning_hw.data.io.image_files.IMAGE_SUFFIXES`
    suffix, as for ``predict --predict_from``; hidden folders and files (``.ipynb_checkpoints/``,
    ``._photo.jpg``) are neither classes nor images (:func:`~lightning_hw.data.io.image_files.is_hidden`).

    Args:
        root: the image folder.
        labels: ``folder`` (one sub-folder per class), ``prefix`` (class = file name up to
            ``prefix_separator``) or ``auto`` (``folder`` when ``root`` has sub-folders).
        prefix_separator: what ends the class prefix of a file name.
        classes: keep only these classes, in this order (label = position); default: all,
            sorted by name.

    Returns:
        ``(samples, class_names)``: ``(path, label)`` pairs (by class name, then as
        :func:`~lightning_hw.data.io.image_files.walk_images` lists a class's files; by file
        name for ``prefix``), and the names.
    """
    if labels not in LABEL_MODES:
        raise ConfigError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
    if not root.is_dir():
        root = root.absolute()
        raise DataError(
            f"image folder {root} not found: put the images there, one sub-folder per class "
            f"({root}/<class>/*.jpg) or named <class>{prefix_separator}<anything>.jpg, "
            "or point --data.init_args.root at your folder"
        )
    if labels == "auto":
        labels = "folder" if any(p.is_dir() and not is_hidden(p.name) for p in root.iterdir()) else "prefix"
    if labels == "folder":
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
        names = list(classes) if classes is not None else found
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise DataError(f"no sub-folder for class(es) {', '.join(unknown)} in {root} (found: {', '.join(found)})")
        index = {name: i for i, name in enumerate(names)}
        # Classes in name order (not label order), as torchvision's ImageFolder listed them.
        samples = [(p, index[name]) for name in sorted(names) for p in walk_images(root / name)]
    else:
        files = list_images(root)
        prefixes = [p.name.split(prefix_separator, 1)[0] for p in files]
        names = list(classes) if classes is not None else sorted(set(prefixes))
        index = {name: i for i, name in enumerate(names)}
        samples = [(p, index[c]) for p, c in zip(files, prefixes) if c in index]
    if not samples:
        raise DataError(_nothing_found_message(root, labels, prefix_separator))
    counts = torch.bincount(torch.tensor([label for _, label in samples]), minlength=len(names))
    empty = [names[i] for i in range(len(names)) if counts[i] == 0]
    if empty:
        where = "in their sub-folders" if labels == "folder" else f"named <class>{prefix_separator}<anything>"
        kept = [name for name in names if name not in empty]
        raise DataError(
            f"class(es) {', '.join(empty)} have no images in {root}: add images ({', '.join(IMAGE_SUFFIXES)}) "
            f"{where}, or train on the others with --data.init_args.classes '[{', '.join(kept)}]'"
        )
    return samples, names


def _nothing_found_message(root: Path, labels: str, prefix_separator: str) -> str:
    """Why ``scan_folder`` found no samples in ``root``, and the setting that reads it when the layout tells.

    A folder of the other layout (the E3 cats and dogs, ``cat.12.jpg``, given to an E5 config's
    ``labels: folder``, or class sub-folders given to ``labels: prefix``) was said to hold no
    images at all, although it held them all.

    Args:
        root: the image folder, which exists.
        labels: the layout it was read with, ``folder`` or ``prefix`` (``auto`` resolved).
        prefix_separator: what ends the class prefix of a file name.
    """
    suffixes = ", ".join(IMAGE_SUFFIXES)
    if labels == "folder":
        top_level = list_images(root)
        if not top_level:
            return f"no images ({suffixes}) found in {root} or its sub-folders; check the folder"
        classes = sorted({path.name.split(prefix_separator, 1)[0] for path in top_level})
        layout = f"labels='folder' reads {root}/<class>/*.jpg"
        if 2 <= len(classes) < len(top_level):  # names that share prefixes, as cat.0.jpg, cat.1.jpg, dog.0.jpg
            return (
                f"{root} holds {len(top_level)} images but no class sub-folders ({layout}); named "
                f"<class>{prefix_separator}<anything>, they are of the classes {_some(classes)}: "
                "set --data.init_args.labels prefix"
            )
        return (
            f"{root} holds {len(top_level)} images but no class sub-folders ({layout}): move each class's "
            "images into a sub-folder named after it"
        )
    held = images_in_subfolders(root)
    layout = f"labels='prefix' reads {root}/<class>{prefix_separator}<anything>.jpg"
    if not held:
        return f"no images ({suffixes}) found in {root}; check the folder"
    if len(held) == 1:  # one folder too high: the images are all in root/<one folder>/
        inner = root / next(iter(held))
        return (
            f"no images at the top level of {root} ({layout}); its sub-folder {inner.name}/ holds "
            f"{sum(held.values())}: set --data.init_args.root {inner}"
        )
    return (
        f"no images at the top level of {root} ({layout}); its sub-folders "
        f"{_some([f'{name}/' for name in held])} hold {sum(held.values())}: if they are the classes, "
        "set --data.init_args.labels folder"
    )


def _some(names: Sequence[str], most: int = 5) -> str:
    """``names`` joined by commas, the first ``most`` of them and how many in all when there are more."""
    return ", ".join(names[:most]) + (f" ... ({len(names)} in all)" if len(names) > most else "")


class ImageFolder(StreamingFallback, ImageDataModule):
    """Images in a folder, labelled by sub-folder or file-name prefix, resized (and flattened for MLPs).

    Preprocessing follows timm's data config names, so a backbone's
    ``timm.data.resolve_data_config(...)`` maps onto it directly: ``input_size[1:]`` ->
    ``image_size``, ``interpolation``, ``crop_pct``, ``mean``, ``std``.

    Args:
        root: the image folder (see the module docstring for the two layouts).
        labels: ``folder``, ``prefix`` or ``auto`` (``folder`` if ``root`` has sub-folders).
        prefix_separator: end of the class prefix in a file name (``cat.12.jpg`` -> ``cat``).
        classes: keep only these classes, in this order; default: all, sorted by name.
        image_size: output size, ``S`` (square) or ``(H, W)``.
        interpolation: resize filter: ``bilinear``, ``bicubic``, ``nearest``...
        crop_pct: ``None``: resize straight to ``image_size`` (aspect ratio not kept; what
            Keras ``load_img(target_size=...)`` does). A fraction: resize the shorter side to
            ``image_size / crop_pct`` and crop the centre (timm's evaluation transform).
        channels: 3 (RGB) or 1 (greyscale).
        transform: an extra deterministic per-image transform on the resized uint8
            ``(C, H, W)`` tensor, run once at decode time (e.g. a
            ``torchvision.transforms.v2`` class); it must keep the image size.
        in_memory: keep the decoded images in memory (``None``: when they take < 4 GiB).
        num_workers: threads decoding the folder once, or DataLoader worker processes when
            streaming; ``None``: one per CPU core this process may use.
        decoder: ``pillow``: each file decoded on the CPU (JPEGs at a reduced scale when that
            is still larger than ``image_size``). ``nvjpeg``: JPEGs decoded in batches at full
            resolution on the training GPU and resized there; threads or workers only read the
            files (without a GPU the same library decodes on the CPU). Pixels differ from
            Pillow's by a few levels, so a model keeps the decoder it was trained with.
        **kwargs: ``mean``, ``std``, ``standardize``, ``augment``, ``offline_augment``,
            ``offline_copies``, ``flatten`` (see :class:`~lightning_hw.data.images.ImageDataModule`),
            batch size, ``splits`` (default 70/20/10) and seeds.
    """

    def __init__(
        self,
        root: str = "data/images",
        labels: str = "auto",
        prefix_separator: str = ".",
        classes: list[str] | None = None,
        image_size: int | tuple[int, int] = 224,
        interpolation: str = "bilinear",
        crop_pct: float | None = None,
        channels: int = 3,
        transform: torch.nn.Module | None = None,
        in_memory: bool | None = None,
        num_workers: int | None = None,
        decoder: str = "pillow",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.interpolation = check_image_settings(channels, interpolation)
        if decoder not in DECODERS:
            raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.decoder = decoder
        if crop_pct is not None and not 0 < crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.root = Path(root)
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.crop_pct = crop_pct
        self.channels = channels
        self.transform = transform
        self.num_workers = num_workers
        # Scanning (not decoding) is cheap, and the task needs the class names before set-up.
        self.samples, self._class_names = scan_folder(self.root, labels, prefix_separator, classes)
        self._refuse_one_class(labels, prefix_separator, classes)
        pixels = len(self.samples) * channels * math.prod(self.image_size)
        self.in_memory = pixels <= IN_MEMORY_LIMIT_BYTES if in_memory is None else in_memory
        self._split_samples: dict[str, list[tuple[Path, int]]] = {}

    def _refuse_one_class(self, labels: str, prefix_separator: str, classes: Sequence[str] | None) -> None:
        """Fail when the folder holds a single class: one class is no classification.

        Such a folder trained (every prediction right), then the test's 1x1 confusion matrix
        crashed with a traceback; with ``binary_bce`` the advice was a one-class softmax.

        Raises:
            DataError: one class, naming it and the labelling rule that found it.
        """
        if len(self._class_names) >= 2:
            return
        name = self._class_names[0]
        if classes is not None:
            raise DataError(f"classes keeps one class, {name!r}; a classifier needs at least two: list them all")
        inner = self._classes_one_folder_down(name, labels, prefix_separator)
        if labels == "auto":
            labels = "folder" if any(p.is_dir() and not is_hidden(p.name) for p in self.root.iterdir()) else "prefix"
        rule = "sub-folder" if labels == "folder" else f"file name up to the first {prefix_separator!r}"
        said = (
            f"the images in {self.root.absolute()} form one class, {name!r} (labels={labels!r}: the class is each "
            f"image's {rule}); a classifier needs at least two"
        )
        if inner:
            raise DataError(
                f"{said}; {name}/ itself holds the classes {_some(inner)}: "
                f"set --data.init_args.root {self.root / name}"
            )
        raise DataError(f"{said}: add the other class's images")

    def _classes_one_folder_down(self, name: str, labels: str, prefix_separator: str) -> list[str]:
        """The classes the one class folder ``root/name`` holds itself, read as ``labels`` says; none if under two.

        A root one folder too high (``photos/`` above ``photos/cat/``, ``photos/dog/``) reads as
        the one class ``photos``; pointed one folder down, it is the data set.
        """
        inner = self.root / name
        if not inner.is_dir():
            return []
        try:
            _, names = scan_folder(inner, labels, prefix_separator)
        except DataError:
            return []
        return names if len(names) >= 2 else []

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.image_size)

    # -- decoding ------------------------------------------------------------------------------

    def read_image_file(self, path: Path) -> torch.Tensor:
        return self.decode(path)

    def decode_description(self) -> dict[str, Any]:
        crop = (
            "none: the whole image is resized to resize_to (the aspect ratio is not kept)"
            if self.crop_pct is None
            else f"the shorter side resized to resize_to / {self.crop_pct}, then the centre cropped to resize_to"
        )
        described = {**super().decode_description(), "crop_pct": self.crop_pct, "crop": crop}
        described["draft_to"] = list(self._draft_size()) if self.decoder != "nvjpeg" else None
        if self.decoder == "nvjpeg":
            described["reader"] = (
                "JPEG: nvJPEG on a CUDA GPU, libjpeg-turbo on the CPU (TorchCodec or torchvision.io), at full "
                "resolution, EXIF orientation applied; other formats: Pillow"
            )
        return described

    def decode(self, path: Path) -> torch.Tensor:
        """Read one image file as a resized uint8 ``(C, H, W)`` tensor (training and ``predict`` alike).

        Args:
            path: the image file.

        Raises:
            DataError: the file cannot be decoded (naming the file).
        """
        if self.decoder == "nvjpeg":
            return self._decode_files([path], self.decode_device()).cpu()[0]
        return self.fit_to_size(read_image(path, self.channels, min_size=self._draft_size()))

    def _draft_size(self) -> tuple[int, int]:
        """The ``(H, W)`` Pillow decodes a JPEG to at least (reduced-scale decoding): what it is resized to."""
        if self.crop_pct is None:
            return tuple(self.image_size)
        resize = self._resize_size()
        return resize[0], resize[-1]

    def _resize_size(self) -> list[int]:
        """What a decoded image is resized to before the centre crop (``crop_pct`` set)."""
        scale = [math.floor(s / self.crop_pct) for s in self.image_size]
        # Square output: the shorter side to the scale (aspect kept); otherwise both sides.
        return [scale[0]] if self.image_size[0] == self.image_size[1] else scale

    def fit_to_size(self, image: torch.Tensor) -> torch.Tensor:
        """A decoded uint8 image, on any device, resized (and cropped) to ``image_size``, then ``transform``.

        Raises:
            ConfigError: ``transform`` changed the image's size.
        """
        if self.crop_pct is None:
            image = TF.resize(image, list(self.image_size), interpolation=self.interpolation, antialias=True)
        else:
            # timm's eval transform: shorter side to size / crop_pct, then the centre crop.
            image = TF.resize(image, self._resize_size(), interpolation=self.interpolation, antialias=True)
            image = TF.center_crop(image, list(self.image_size))
        if self.transform is not None:
            image = self.transform(image)
            if tuple(image.shape) != self.image_shape:
                raise ConfigError(
                    f"the transform turned a {self.image_shape} image into {tuple(image.shape)}; "
                    "it must keep the size (set image_size instead)"
                )
        return image

    def _decode_all(self, paths: list[Path]) -> torch.Tensor:
        threads = decode_threads(self.num_workers)
        if self.decoder == "nvjpeg":
            # Threads read the files; each chunk is one nvJPEG call, copied back to memory.
            return torch.cat([
                self._decode_files(paths[start : start + NVJPEG_CHUNK], self.decode_device(), threads).cpu()
                for start in range(0, len(paths), NVJPEG_CHUNK)
            ])
        # Pillow releases the GIL while it decodes, so threads decode in parallel.
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return torch.stack(list(pool.map(self.decode, paths)))

    # -- nvJPEG ----------------------------------------------------------------------------------

    def decode_device(self) -> torch.device:
        """Where ``decoder: nvjpeg`` decodes: the trainer's device, else the current GPU, else the CPU."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def _decode_files(self, paths: list[Path], device: torch.device, threads: int = 1) -> torch.Tensor:
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                contents = list(pool.map(read_file, paths))
        else:
            contents = [read_file(p) for p in paths]
        return self.decode_encoded(EncodedImages.pack(contents, paths), device)

    def decode_encoded(self, batch: EncodedImages, device: torch.device | None = None) -> torch.Tensor:
        """A batch of encoded files as uint8 ``(N, C, H, W)`` images on ``device`` (default :meth:`decode_device`)."""
        return decode_batch(batch, self.channels, device or self.decode_device(), self.fit_to_size)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Streamed with decoder nvjpeg: the workers read the files; the batch is decoded here,
        # straight onto the training device (Lightning's transfer then has nothing to move).
        if isinstance(batch[0], EncodedImages):
            batch = (self.decode_encoded(batch[0]), *batch[1:])
        return super().on_before_batch_transfer(batch, dataloader_idx)

    # -- splits --------------------------------------------------------------------------------

    def sample_names(self) -> list[str]:
        """Each image's path under ``root`` and its label: a file added, removed or relabelled changes the split."""
        return [f"{path.relative_to(self.root).as_posix()}\t{label}" for path, label in self.samples]

    def split_ids(self, split: str) -> list[str]:
        """Each image's path under ``root``, in the split's order (the in-memory and the streamed loaders' alike)."""
        # In memory the split is not kept (the decoded tensors are); it is seeded, so drawing it again gives it.
        samples = self._split_samples or self._split()
        return [file_id(path, self.root) for path, _ in samples[split]]

    def _split(self) -> dict[str, list[tuple[Path, int]]]:
        labels = torch.tensor([label for _, label in self.samples], dtype=torch.long)
        parts = self.split_positions(len(self.samples), labels)
        return {name: [self.samples[i] for i in idx.tolist()] for name, idx in zip(SPLIT_NAMES, parts)}

    def load_splits(self) -> dict[str, Split]:
        data = {}
        for name, samples in self._split().items():
            labels = torch.tensor([label for _, label in samples], dtype=torch.long)
            images = self._decode_all([p for p, _ in samples]) if samples else torch.empty(0, *self.image_shape, dtype=torch.uint8)
            data[name] = (images, labels)
        return data

    def setup(self, stage: str | None = None) -> None:
        if self.in_memory:
            super().setup(stage)
            return
        if self._split_samples:
            return
        self._split_samples = self._split()
        for name, samples in self._split_samples.items():
            if not samples:
                raise DataError(self.empty_split_message(name))
        train = self._split_samples["train"]
        step = max(1, len(train) // STREAMED_STATS_SAMPLES)
        sample = self._decode_all([p for p, _ in train[::step]]) if self.standardize_images and self.mean is None else None
        self.preprocess = self.build_preprocess(sample)
        if self.offline_augment is not None and self.offline_copies > 0:
            raise ConfigError("offline_augment needs the images in memory; set in_memory: true or use augment")

    # -- streaming loaders (only when the images are not kept in memory) -----------------------

    def stream_items(self, split: str) -> list[tuple[Path, int]]:
        return self._split_samples[split]

    def decode_item(self, item: tuple[Path, int]) -> tuple[torch.Tensor, int] | tuple[str, bytes, int]:
        path, label = item
        if self.decoder == "nvjpeg":  # the worker only reads; the batch is decoded on the GPU
            return str(path), read_file(path), label
        return self.decode(path), label

    def decode_raw_item(self, item: tuple[Path, int]) -> tuple[torch.Tensor, int]:
        if self.decoder != "nvjpeg":
            return self.decode_item(item)
        # Raw samples (export checks, top-loss figures) are decoded in the workers, where CUDA is
        # off limits: the same library on the CPU, within a level of nvJPEG's pixels.
        path, label = item
        return self._decode_files([path], torch.device("cpu"))[0], label

    @property
    def stream_collate(self):
        return collate_encoded if self.decoder == "nvjpeg" else None
