"""JPEG files decoded in batches on the training device: nvJPEG on a GPU (``ImageFolder(decoder="nvjpeg")``).

Pillow decodes in CPU threads or DataLoader workers, one file at a time; on a GPU machine
with few CPU cores per GPU that can starve the GPU. With ``decoder: nvjpeg`` the workers
only read each file's bytes; the main process hands a whole batch of encoded JPEGs to
nvJPEG, which decodes them on the GPU, and the images are resized there.

The decoder library is TorchCodec (``pip install lightning-hw[nvjpeg]``), the successor of
torchvision's decoders; where it is missing or was built for another torch, torchvision's
own (deprecated, still shipped) ``decode_jpeg`` is used: both run nvJPEG on CUDA devices
and libjpeg-turbo on the CPU, so a run without a GPU (and ``predict`` on a laptop) decodes
the same way at full resolution. Files that are not JPEGs, or that nvJPEG cannot decode
(CMYK, for one), are read by Pillow instead.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lightning_hw.data.io.image_files import read_image
from lightning_hw.errors import DataError

#: the first bytes of every JPEG file (SOI marker, then the next marker's 0xFF)
JPEG_SIGNATURE = b"\xff\xd8\xff"

#: JpegDecoder: (encoded JPEGs, "RGB" or "GRAY", device) -> decoded uint8 (C, H, W) images on the device
JpegDecoder = Callable[[list[torch.Tensor], str, torch.device], list[torch.Tensor]]


@dataclass
class EncodedImages:
    """A batch of image files not decoded yet: each file's bytes and its path (for messages).

    DataLoader workers return these when the GPU decodes; the datamodule decodes them in
    ``on_before_batch_transfer``, before Lightning moves the batch.
    """

    data: list[torch.Tensor]
    paths: list[str]

    def __len__(self) -> int:
        return len(self.data)

    def pin_memory(self) -> EncodedImages:
        # The decoder reads the bytes on the CPU side: page-locking them would only cost time.
        return self


def read_encoded(path: Path) -> torch.Tensor:
    """A file's bytes as a 1-D uint8 tensor (the decoders' input).

    Raises:
        DataError: the file cannot be read (naming it).
    """
    try:
        return torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err.strerror or err}; delete or replace the file") from None


def collate_encoded(items: Sequence[tuple[str, torch.Tensor, int]]) -> tuple[EncodedImages, torch.Tensor]:
    """DataLoader ``collate_fn`` for ``(path, bytes, label)`` items: ``(EncodedImages, labels)``."""
    paths, data, labels = zip(*items)
    return EncodedImages(list(data), list(paths)), torch.tensor(labels, dtype=torch.long)


def is_jpeg(data: torch.Tensor) -> bool:
    """Whether encoded bytes start like a JPEG file (whatever the file's name says)."""
    return data.numel() >= 3 and bytes(data[:3].tolist()) == JPEG_SIGNATURE


@functools.cache
def jpeg_decoder() -> tuple[str, JpegDecoder]:
    """The JPEG decoder to use and its name: TorchCodec's, else torchvision's."""
    try:
        from torchcodec.decoders import decode_jpeg as torchcodec_decode
    except Exception:  # noqa: BLE001 - not installed, or its compiled ops do not load with this torch
        return "torchvision.io", _torchvision_decode

    def decode(data: list[torch.Tensor], mode: str, device: torch.device) -> list[torch.Tensor]:
        return torchcodec_decode(data, mode=mode, device=device)

    return "torchcodec", decode


def decode_jpeg_on_cpu(path: Path, channels: int) -> torch.Tensor | None:
    """A JPEG file decoded at full scale on the CPU (libjpeg-turbo, EXIF orientation applied).

    Returns:
        uint8 ``(C, H, W)``, or ``None`` when no fast decoder is installed or it refuses the file
        (Pillow then reads it).
    """
    name, decode = jpeg_decoder()
    if name != "torchcodec":  # torchvision's deprecated decoder is kept for the GPU only
        return None
    try:
        return decode([read_encoded(path)], "RGB" if channels == 3 else "GRAY", torch.device("cpu"))[0]
    except RuntimeError:
        return None


def _torchvision_decode(data: list[torch.Tensor], mode: str, device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # deprecated since torchvision 0.29 in favour of TorchCodec
        warnings.simplefilter("ignore")
        return decode_jpeg(data, mode=ImageReadMode[mode], device=device, apply_exif_orientation=True)


def decode_batch(
    batch: EncodedImages,
    channels: int,
    device: torch.device,
    finish: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Decode a batch of image files on ``device``, JPEGs together in one decoder call.

    Args:
        batch: the files' bytes and paths.
        channels: 3 (RGB) or 1 (greyscale).
        device: where to decode (a CUDA device: nvJPEG) and where the images stay.
        finish: turns one decoded full-resolution image into the stored size (resize, crop),
            on ``device``; every image must come out the same shape.

    Returns:
        ``(N, C, H, W)`` uint8 images on ``device``, in the batch's order.

    Raises:
        DataError: a file is no readable image (naming it).
    """
    mode = "RGB" if channels == 3 else "GRAY"
    images: list[torch.Tensor | None] = [None] * len(batch)
    jpegs = [i for i, data in enumerate(batch.data) if is_jpeg(data)]
    if jpegs:
        _, decode = jpeg_decoder()
        try:
            decoded = decode([batch.data[i] for i in jpegs], mode, device)
        except RuntimeError:  # one bad file fails the whole call: decode one by one to find it
            decoded = [_decode_one(decode, batch.data[i], mode, device) for i in jpegs]
        for i, image in zip(jpegs, decoded):
            images[i] = image
    for i, image in enumerate(images):
        if image is None:  # not a JPEG, or one the JPEG decoder refused: Pillow names a bad file
            image = read_image(Path(batch.paths[i]), channels).to(device)
        images[i] = finish(image)
    return torch.stack(images)


def _decode_one(decode: JpegDecoder, data: torch.Tensor, mode: str, device: torch.device) -> torch.Tensor | None:
    try:
        return decode([data], mode, device)[0]
    except RuntimeError:
        return None
