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
    """A batch of image files not decoded yet: their bytes, packed in one tensor, and their paths.

    DataLoader workers return these when the GPU decodes; the datamodule decodes them in
    ``on_before_batch_transfer``, before Lightning moves the batch. One tensor per batch,
    not one per file: each tensor a worker sends holds a file descriptor until it is freed,
    and a batch of 512 files would run into the usual limit of 1,024 open files.

    Attributes:
        buffer: every file's bytes, one after the other (uint8, 1-D).
        offsets: file ``i`` is ``buffer[offsets[i]:offsets[i + 1]]`` (one more entry than files).
        paths: the files, for messages.
    """

    buffer: torch.Tensor
    offsets: list[int]
    paths: list[str]

    @classmethod
    def pack(cls, contents: Sequence[bytes], paths: Sequence[str | Path]) -> EncodedImages:
        """Files' bytes (e.g. from :func:`read_file`) as one batch."""
        offsets = [0]
        for content in contents:
            offsets.append(offsets[-1] + len(content))
        buffer = torch.frombuffer(bytearray(b"".join(contents)), dtype=torch.uint8) if offsets[-1] else torch.empty(0, dtype=torch.uint8)
        return cls(buffer, offsets, [str(p) for p in paths])

    @property
    def data(self) -> list[torch.Tensor]:
        """Each file's bytes (views of :attr:`buffer`), the decoders' input."""
        return [self.buffer[start:end] for start, end in zip(self.offsets, self.offsets[1:])]

    def __len__(self) -> int:
        return len(self.paths)

    def pin_memory(self) -> EncodedImages:
        # The decoder reads the bytes on the CPU side: page-locking them would only cost time.
        return self


def read_file(path: Path) -> bytes:
    """An image file's bytes.

    Raises:
        DataError: the file cannot be read or is empty (naming it).
    """
    try:
        content = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err.strerror or err}; delete or replace the file") from None
    if not content:
        raise DataError(f"cannot read image {path}: the file is empty; delete or replace the file")
    return content


def collate_encoded(items: Sequence[tuple[str, bytes, int]]) -> tuple[EncodedImages, torch.Tensor]:
    """DataLoader ``collate_fn`` for ``(path, bytes, label)`` items: ``(EncodedImages, labels)``."""
    paths, contents, labels = zip(*items)
    return EncodedImages.pack(contents, paths), torch.tensor(labels, dtype=torch.long)


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
        return decode(EncodedImages.pack([read_file(path)], [path]).data, "RGB" if channels == 3 else "GRAY", torch.device("cpu"))[0]
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
    files = batch.data
    jpegs = [i for i, data in enumerate(files) if is_jpeg(data)]
    if jpegs:
        _, decode = jpeg_decoder()
        try:
            decoded = decode([files[i] for i in jpegs], mode, device)
        except RuntimeError:  # one bad file fails the whole call: decode one by one to find it
            decoded = [_decode_one(decode, files[i], mode, device) for i in jpegs]
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
