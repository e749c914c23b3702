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
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from lightning_hw.errors import DataError, LightningHWWarning

if TYPE_CHECKING:
    from PIL import Image

OnUnreadable = Literal["fail", "skip"]
ON_UNREADABLE = ("fail", "skip")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

T = TypeVar("T")


class UnreadableImagesWarning(LightningHWWarning):
    """Some image files could not be read and were skipped (``on_unreadable="skip"``)."""


class NonImageFilesWarning(LightningHWWarning):
    """``predict --predict_from`` left out files of its folder whose names have no image suffix."""


class UnreadSubfoldersWarning(LightningHWWarning):
    """``predict --predict_from`` read a folder's top level while its sub-folders also hold images."""


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden (starts with a dot): never a class, never an image.

    Such entries are what tools leave next to the photos: ``.ipynb_checkpoints/`` (Jupyter's
    copies, which would become a class and shift every label), ``.DS_Store``, and the
    ``._photo.jpg`` AppleDouble files of macOS (metadata with an image's suffix, not images).
    Every layout of an image folder and ``predict --predict_from`` skip them by this rule.
    """
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    """Whether a file of this name is read as an image: an :data:`IMAGE_SUFFIXES` suffix, not hidden."""
    return not is_hidden(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES


def is_image_input(path: Path) -> bool:
    """Whether ``predict --predict_from path`` names one image file: an existing file with an :data:`IMAGE_SUFFIXES` suffix.

    A hidden name counts too: a file the user named is read (and refused if it is no image),
    whereas a folder's hidden files are left out unseen.
    """
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def non_image_files(folder: Path) -> list[str]:
    """The names of the files directly in ``folder`` that are not read as images, hidden ones left out, sorted."""
    return sorted(p.name for p in folder.iterdir() if not is_hidden(p.name) and not is_image_name(p.name) and p.is_file())


def file_id(path: Path, root: Path | None) -> str:
    """A sample's id in predictions: its file's path under ``root`` (``/``-separated), else the path as given."""
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.as_posix()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, hidden ones left out), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if is_image_name(p.name) and p.is_file())


def walk_images(folder: str | os.PathLike) -> list[Path]:
    """The image files in ``folder`` and its sub-folders at any depth, hidden folders and files left out.

    In the order of torchvision's ``ImageFolder`` (folders by path, then files by name), which
    lightning-hw used before, so the samples of a folder, and its seeded split, stay the same.
    """
    found = []
    for path, folders, names in os.walk(folder, followlinks=True):
        folders[:] = [name for name in folders if not is_hidden(name)]  # os.walk does not enter them
        found.append((path, names))
    return [Path(path, name) for path, names in sorted(found) for name in sorted(names) if is_image_name(name)]


def images_in_subfolders(folder: Path) -> dict[str, int]:
    """How many image files each (non-hidden) sub-folder of ``folder`` holds at any depth, empty ones left out."""
    held = {sub.name: len(walk_images(sub)) for sub in sorted(folder.iterdir()) if sub.is_dir() and not is_hidden(sub.name)}
    return {name: count for name, count in held.items() if count}


def _named(held: dict[str, int], most: int) -> str:
    return ", ".join(f"{name}/" for name in list(held)[:most]) + (f" ... ({len(held)} in all)" if len(held) > most else "")


def no_images_message(folder: Path, most: int = 3) -> str:
    """Why ``predict --predict_from folder`` found nothing to read, and where the images are if it can tell.

    ``predict`` reads only the folder's top level: a folder in the class-folder layout (the
    images in ``<class>/`` sub-folders) is named with the sub-folders that hold images.
    """
    held = images_in_subfolders(folder)
    if not held:
        others = non_image_files(folder)
        return f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}" + (
            f"; it holds {len(others)} other file(s): {_listed(others, most)}" if others else ""
        )
    return (
        f"predict input {folder} holds no image files at its top level (--predict_from reads only that level); "
        f"its sub-folders {_named(held, most)} hold {sum(held.values())}: pass one of them "
        f"(--predict_from {folder / next(iter(held))}) or move the files up into one folder"
    )


def _listed(names: Sequence[str], most: int) -> str:
    return ", ".join(names[:most]) + (f" ... ({len(names)} in all)" if len(names) > most else "")


def warn_non_image_files(folder: Path, read: int, most: int = 3) -> None:
    """Say which files ``predict --predict_from folder`` leaves out for not being images, if any.

    Without it a folder's ``notes.txt`` or ``.heic`` photo would simply yield fewer rows than
    files. Hidden files (``.DS_Store``, macOS's ``._photo.jpg``) stay unmentioned: listings
    hide them too, and they are never images (see :func:`is_hidden`). Emits one
    :class:`NonImageFilesWarning` (nothing when every visible file is an image).
    """
    others = non_image_files(folder)
    if others:
        warnings.warn(
            f"predicting the {read} image file(s) in {folder}; left out {len(others)} file(s) whose names do not end "
            f"in {', '.join(IMAGE_SUFFIXES)}: {_listed(others, most)}",
            NonImageFilesWarning,
            stacklevel=2,
        )


def warn_unread_subfolders(folder: Path, read: int, most: int = 3) -> None:
    """Say that ``predict --predict_from folder`` leaves the images of its sub-folders out, if they hold any.

    Emits one :class:`UnreadSubfoldersWarning` (nothing when no sub-folder holds images).
    """
    held = images_in_subfolders(folder)
    if held:
        warnings.warn(
            f"predicting the {read} image file(s) at the top level of {folder}; its sub-folders {_named(held, most)} "
            f"hold {sum(held.values())} more, which --predict_from does not read (pass each folder on its own)",
            UnreadSubfoldersWarning,
            stacklevel=2,
        )


def decode_failure(err: Exception, path: str | os.PathLike) -> str:
    """What a decoder's exception says, in one line, without the path it repeats."""
    text = (str(err).strip().splitlines() or [""])[0].replace(f"'{path}'", "").replace(str(path), "").strip(" :")
    return text or type(err).__name__


def read_image(
    path: Path, channels: int = 3, min_size: tuple[int, int] | None = None, exif_rotate: bool = True
) -> torch.Tensor:
    """Decode an image file to uint8 ``(C, H, W)`` with Pillow (any format it knows).

    Pillow rather than ``torchvision.io``: torchvision's decoders are deprecated since 0.29.
    Every image lightning-hw reads (training, ``predict``, landmarks) goes through here or
    :func:`read_image_and_size`.

    Args:
        path: the file.
        channels: 3 (RGB) or 1 (greyscale).
        min_size: ``(H, W)`` the image will be resized to; JPEGs are then decoded directly
            at a reduced scale that is still at least this large (much faster for photos).
        exif_rotate: turn the image as its EXIF orientation says (phone photos); landmark
            sets are annotated on the stored pixels, so they read without it.

    Raises:
        DataError: the file cannot be decoded (the message names it).
    """
    return read_image_and_size(path, channels, min_size, exif_rotate)[0]


def read_image_and_size(
    path: Path, channels: int = 3, min_size: tuple[int, int] | None = None, exif_rotate: bool = True
) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`read_image`, plus the ``(H, W)`` of the full-resolution image (a reduced-scale decode is smaller).

    Points annotated on the file's pixels are moved to the decoded image by that ratio.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            stored_size = img.size
            full_size = _full_size(img, exif_rotate)
            sixteen_bits = img.mode.startswith("I;16")  # the file's own mode (the EXIF turn may make it I)
            if min_size is not None:
                img.draft("RGB" if channels == 3 else "L", (min_size[1], min_size[0]))
            if exif_rotate:
                if img.format == "JPEG" and img.size == stored_size and (img.mode == "L" or img.mode == "RGB" == _MODES[channels]):
                    # At full scale libjpeg-turbo through TorchCodec gives Pillow's very pixels
                    # (EXIF turn included) about twice as fast (issue 17): Pillow's conversion
                    # and copies cost as much as the decoding. Reduced-scale decoding stays Pillow's.
                    from lightning_hw.data.io.jpeg_batch import decode_jpeg_on_cpu

                    decoded = decode_jpeg_on_cpu(path, channels)
                    if decoded is not None:
                        return decoded, full_size
                img = ImageOps.exif_transpose(img)
            if sixteen_bits:
                img = _to_8_bits(img)
            return TF.pil_to_tensor(img.convert(_MODES[channels])), full_size
    except Exception as err:  # noqa: BLE001 - any decoder failure means the same to the user
        raise DataError(f"cannot read image {path}: {decode_failure(err, path)}; delete or replace the file") from None


def image_file_size(path: Path, exif_rotate: bool = True) -> tuple[int, int]:
    """The full-resolution ``(H, W)`` of an image file as :func:`read_image` turns it, from its header only.

    Raises:
        DataError: the file is not a readable image.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            return _full_size(img, exif_rotate)
    except Exception as err:  # noqa: BLE001 - any decoder failure means the same to the user
        raise DataError(f"cannot read image {path}: {decode_failure(err, path)}; delete or replace the file") from None


def _full_size(img: Image.Image, exif_rotate: bool) -> tuple[int, int]:
    """``(H, W)`` of an opened image before any reduced-scale decoding, after the EXIF turn if asked."""
    height, width = img.size[1], img.size[0]
    if exif_rotate and img.getexif().get(_EXIF_ORIENTATION, 1) in _QUARTER_TURNS:
        return width, height
    return height, width


def _to_8_bits(img: Image.Image) -> Image.Image:
    """A 16-bit greyscale image scaled to 8 bits (``value * 255 / 65535``, rounded).

    Pillow's ``convert`` clips such values to 0-255 instead of scaling them, which turns a
    16-bit PNG or TIFF into a black-and-white one. Pillow opens these files in a mode
    ``I;16...``; after the EXIF turn the image may be in mode ``I`` (32-bit integers), with
    the same values. Files that are 32-bit integers themselves (mode ``I`` when opened) and
    floating-point ones (mode ``F``) are left to ``convert``: their range is unknown, and it
    reads them as 0-255.
    """
    from PIL import Image

    values = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
    # round(v * 255 / 65535) = round(v / 257) = (v + 128) // 257 (v / 257 never ends in exactly .5)
    return Image.fromarray(((values + 128) // 257).astype(np.uint8))


_EXIF_ORIENTATION = 0x0112
_MODES = {3: "RGB", 1: "L"}  # Pillow's mode per channel count
_QUARTER_TURNS = (5, 6, 7, 8)  # orientations that swap width and height


def read_all(
    paths: Sequence[Path],
    decode: Callable[[Path], T],
    on_unreadable: OnUnreadable = "fail",
    what: str = "image",
    how_to_skip: str = "set on_unreadable to skip",
) -> tuple[list[T], list[int]]:
    """Decode every file, failing on or skipping the unreadable ones.

    Args:
        paths: the files.
        decode: reads one file (e.g. ``functools.partial(read_image, channels=3)``).
        on_unreadable: ``"fail"``: raise :class:`DataError` at the first bad file; ``"skip"``:
            leave bad files out and emit one :class:`UnreadableImagesWarning` with their count.
        what: what a file is, for messages.
        how_to_skip: how the user asks for ``skip``, for the message of ``fail`` (``predict``:
            ``add --on_unreadable skip``).

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
        except DataError as err:  # a reader that already names the file
            if on_unreadable == "fail":
                raise DataError(f"{err} (or {how_to_skip})") from None
            skipped.append((path, _without_path(str(err), path)))
            continue
        except (OSError, ValueError, SyntaxError) as err:  # what Pillow raises for damaged files
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if on_unreadable == "fail":
                raise DataError(
                    f"cannot read {what} {path}: {reason}; remove or replace it, or {how_to_skip}"
                ) from None
            skipped.append((path, reason))
            continue
        kept.append(i)
    if skipped:
        warnings.warn(skipped_files_line(skipped, len(paths), what), UnreadableImagesWarning, stacklevel=2)
    return items, kept


#: how many skipped files the warning names (the rest are counted)
SKIPPED_NAMED = 3


def skipped_files_line(skipped: Sequence[tuple[Path, str]], total: int, what: str = "image") -> str:
    """One line: how many files were skipped, which (the first :data:`SKIPPED_NAMED`, then a count), and why the first.

    Args:
        skipped: ``(path, reason)`` of each file left out, the reason without the path.
        total: how many files there were.
        what: what a file is.
    """
    named = ", ".join(str(path) for path, _ in skipped[:SKIPPED_NAMED])
    more = f" and {len(skipped) - SKIPPED_NAMED} more" if len(skipped) > SKIPPED_NAMED else ""
    return f"skipped {len(skipped)} of {total} {what} files, unreadable: {named}{more} (the first: {skipped[0][1]})"


def _without_path(message: str, path: Path) -> str:
    """A reader's message about ``path`` without the path and the advice (the warning names the file, and skipping was asked for)."""
    message = message.removeprefix(f"cannot read image {path}: ")
    return message.removesuffix("; delete or replace the file")
