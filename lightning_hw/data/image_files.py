"""Image files into tensors, with one policy for files that cannot be read.

A folder of photos collected by hand (E3, E5) often holds a few files that are not images
(a truncated download, a ``.DS_Store``, an HTML page saved as ``.jpg``). ``on_unreadable``
decides: ``"fail"`` (default) stops with one line naming the first bad file; ``"skip"``
leaves such files out and warns once with their count, so a run log always says how much
data was dropped. Image datamodules and ``predict --predict_from <folder>`` share this.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch

from lightning_hw.errors import DataError

OnUnreadable = Literal["fail", "skip"]
ON_UNREADABLE = ("fail", "skip")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

T = TypeVar("T")


class UnreadableImagesWarning(UserWarning):
    """Some image files could not be read and were skipped (``on_unreadable="skip"``)."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike, channels: int = 3, size: tuple[int, int] | None = None) -> torch.Tensor:
    """One image as a ``(channels, height, width)`` float tensor in ``[0, 1]``.

    Args:
        path: the image file (any format Pillow reads).
        channels: 1 (grey) or 3 (RGB).
        size: ``(height, width)`` to resize to (bilinear), or ``None`` to keep the file's size.

    Raises:
        OSError, ValueError: the file is not a readable image (see :func:`read_all`).
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)


def read_all(
    paths: Sequence[Path],
    decode: Callable[[Path], T],
    on_unreadable: OnUnreadable = "fail",
    what: str = "image",
) -> tuple[list[T], list[int]]:
    """Decode every file, failing on or skipping the unreadable ones.

    Args:
        paths: the files.
        decode: reads one file (e.g. ``functools.partial(read_image, channels=3, size=(128, 128))``).
        on_unreadable: ``"fail"``: raise :class:`DataError` at the first bad file; ``"skip"``:
            leave bad files out and emit one :class:`UnreadableImagesWarning` with their count.
        what: what a file is, for messages.

    Returns:
        The decoded items and the indices (into ``paths``) they came from.
    """
    if on_unreadable not in ON_UNREADABLE:
        raise DataError(f"on_unreadable must be one of {', '.join(ON_UNREADABLE)}, got {on_unreadable!r}")
    items: list[T] = []
    kept: list[int] = []
    skipped: list[tuple[Path, str]] = []
    for i, path in enumerate(paths):
        try:
            items.append(decode(path))
        except (OSError, ValueError, SyntaxError) as err:  # what Pillow raises for damaged files
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if on_unreadable == "fail":
                raise DataError(
                    f"cannot read {what} {path}: {reason}; remove or replace it, or set on_unreadable to skip"
                ) from None
            skipped.append((path, reason))
            continue
        kept.append(i)
    if skipped:
        first, reason = skipped[0]
        warnings.warn(
            f"skipped {len(skipped)} unreadable {what} file(s) of {len(paths)} (first: {first}: {reason})",
            UnreadableImagesWarning,
            stacklevel=2,
        )
    return items, kept
