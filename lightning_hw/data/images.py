"""Image datamodules: images kept as uint8, turned into model inputs one batch at a time.

Every image dataset here holds its pixels as ``uint8`` tensors ``(N, C, H, W)`` (4x less
memory than float: CIFAR-10's 60,000 images are 184 MB) and yields raw ``(images, labels)``
batches. :meth:`ImageDataModule.on_after_batch_transfer`, which Lightning calls once the
batch is on the accelerator, then does the per-batch work on the device:
scale to [0, 1] -> random augmentation (training only) -> normalise -> flatten (for MLPs).
Plots can therefore show the raw images of a batch while the model sees normalised ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lightning_hw.data.augment.images import Augment, expand_offline
from lightning_hw.data.base import InMemoryDataModule, Split
from lightning_hw.data.io.image_files import read_image
from lightning_hw.data.preprocess import Preprocess
from lightning_hw.errors import ConfigError


def check_image_settings(channels: int, interpolation: str) -> InterpolationMode:
    """Validate the image settings every image datamodule takes.

    Args:
        channels: 1 (greyscale) or 3 (RGB).
        interpolation: a torchvision ``InterpolationMode`` name (``bilinear``, ``bicubic``...).

    Returns:
        The interpolation mode.
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels}")
    try:
        return InterpolationMode(interpolation.lower())
    except ValueError:
        options = ", ".join(m.value for m in InterpolationMode)
        raise ConfigError(f"unknown interpolation {interpolation!r}; use one of {options}") from None


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units.

    Args:
        images: ``(N, C, H, W)`` uint8 (or float in [0, 1]) images.
        chunk: images converted to float at a time (bounds the memory used).
    """
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].to(torch.float64)
        if images.dtype == torch.uint8:
            part = part / 255.0
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel is only centred
    return mean.tolist(), std.tolist()


#: how the ``reader`` of :meth:`ImageDataModule.decode_description` decodes a JPEG (its pixels depend on it)
DRAFT_NOTE = (
    "a JPEG is decoded at a reduced scale still at least draft_to [H, W] (Pillow's "
    "Image.draft(color, (W, H)), before the EXIF turn), then resized"
)


class ImageDataModule(InMemoryDataModule):
    """Base of the image datamodules: uint8 storage, per-batch scaling, augmentation, normalisation.

    Subclasses implement :meth:`load_splits` (or :meth:`load_tensors`) returning uint8
    images ``(N, C, H, W)`` and integer labels, plus :attr:`class_names` and :attr:`image_shape`.

    Args:
        mean: per-channel mean to subtract after scaling to [0, 1] (e.g. ImageNet's
            ``[0.485, 0.456, 0.406]`` from a timm data config).
        std: per-channel standard deviation to divide by.
        standardize: without ``mean``/``std``: compute them per channel on the training
            split (never on validation or test data). ``False`` and no ``mean``/``std``:
            pixels are only scaled to [0, 1].
        augment: random transforms applied on the fly to every training batch (E1, E3(b)).
        offline_augment: random transforms used once, at set-up, to expand the training
            split (E3(a)); validation and test data are never augmented.
        offline_copies: transformed copies of every training image added by ``offline_augment``.
        flatten: give the model flat vectors of ``C*H*W`` values (the reports' MLPs).
        **kwargs: batch size, split fractions and seeds; see
            :class:`~lightning_hw.data.base.InMemoryDataModule`.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        standardize: bool = False,
        augment: Augment | None = None,
        offline_augment: Augment | None = None,
        offline_copies: int = 8,
        flatten: bool = False,
        **kwargs: Any,
    ) -> None:
        # Pixel statistics are per channel here, not the base class's per-feature standardisation.
        super().__init__(standardize=False, **kwargs)
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std (one value per channel), or neither")
        if offline_copies < 0:
            raise ConfigError(f"offline_copies must be >= 0, got {offline_copies}")
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self.standardize_images = standardize
        self.augment = augment
        self.offline_augment = offline_augment
        self.offline_copies = offline_copies
        self.flatten = flatten

    # -- what the task must know -----------------------------------------------------------

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one stored image."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = self.image_shape
        return (shape[0] * shape[1] * shape[2],) if self.flatten else tuple(shape)

    # -- raw samples ---------------------------------------------------------------------------

    raw_units = "pixel values 0-255 as decoded from the image file"
    preprocess_per_batch = True  # uint8 in memory, scaled and normalised on the device per batch

    @property
    def raw_input_shape(self) -> tuple[int, int, int]:
        return tuple(self.image_shape)

    def read_image_file(self, path: Path) -> torch.Tensor:
        """One image file as a raw sample: uint8 ``(C, H, W)`` at the training size.

        Training data stored in files is decoded by this same method; the default decodes
        with Pillow (EXIF orientation applied) and resizes with :attr:`interpolation`
        (antialiased), as the datasets that keep their own images were resized.

        Raises:
            DataError: the file is not a readable image (naming it).
        """
        channels, height, width = self.image_shape
        image = read_image(path, channels, min_size=(height, width))
        if tuple(image.shape[-2:]) != (height, width):
            image = TF.resize(image, [height, width], interpolation=self.resize_interpolation, antialias=True)
        return image

    @property
    def resize_interpolation(self) -> InterpolationMode:
        """The filter images are resized with (the datamodule's ``interpolation``, else bilinear)."""
        mode = getattr(self, "interpolation", InterpolationMode.BILINEAR)
        return mode if isinstance(mode, InterpolationMode) else InterpolationMode(str(mode))

    def decode_description(self) -> dict[str, Any]:
        """How an image file becomes a raw sample, for the ONNX metadata and people."""
        channels, height, width = self.image_shape
        return {
            "reader": f"Pillow, EXIF orientation applied; {DRAFT_NOTE}",
            "color": "RGB" if channels == 3 else "L",  # Pillow's mode names
            "draft_to": [height, width],
            "resize_to": [height, width],
            "interpolation": self.resize_interpolation.value,
            "antialias": True,
            "layout": "N x C x H x W",
        }

    # -- set-up --------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        super().setup(stage)
        self.prepare_images(self.data["train"][0])

    def prepare_images(self, train_images: torch.Tensor) -> None:
        """Expand the training images offline if asked (after :attr:`preprocess` took its statistics).

        Args:
            train_images: the training split's uint8 images (before any expansion).
        """
        if self.offline_augment is not None and self.offline_copies > 0 and self.data:
            images, labels = self.data["train"][:2]
            expanded = expand_offline(images, self.offline_augment, self.offline_copies, seed=self.split_seed)
            self.data["train"] = (expanded, labels.repeat(self.offline_copies + 1))

    def build_preprocess(self, train_images: torch.Tensor | None) -> Preprocess:
        """The image preprocessing: /255, the channel mean/std (given, or from ``train_images``), flatten.

        Args:
            train_images: training images (all, or a sample when streaming) for ``standardize``;
                ``None`` when no statistics are needed.
        """
        mean, std = self.mean, self.std
        if mean is None and self.standardize_images and train_images is not None:
            mean, std = channel_stats(train_images)
        channels = self.image_shape[0]
        if mean is not None and (len(mean) not in (1, channels) or len(std) not in (1, channels)):
            raise ConfigError(f"mean and std need 1 or {channels} values (one per channel), got {len(mean)} and {len(std)}")
        return Preprocess(
            self.raw_input_shape,
            units=f"{self.raw_units}, {'RGB' if channels == 3 else 'greyscale'}",
            divide_by=255.0,
            mean=mean,
            std=std,
            flatten=self.flatten,
            decode=self.decode_description(),
        )

    # -- per batch -----------------------------------------------------------------------------

    def to_model_input(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        """Turn raw images into what the network sees: :attr:`preprocess`, with augmentation when training.

        Args:
            images: a batch of stored images ``(N, C, H, W)`` (uint8, values 0-255).
            train: apply the on-the-fly augmentation (between scaling and normalisation).
        """
        if not (train and self.augment is not None):
            return self.preprocess(images)
        return self.preprocess.normalize(self.augment(self.preprocess.scale(images)))

    def on_after_batch_transfer(self, batch: Split, dataloader_idx: int) -> Split:
        images, *rest = batch
        train = self.trainer is not None and self.trainer.training
        return (self.to_model_input(images, train=train), *rest)
