"""MNIST (E1): 60,000 + 10,000 handwritten digits, 28x28 grey, read from torchvision's files."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import torchvision

from lightning_hw.atomic import atomic_open
from lightning_hw.data.base import Split
from lightning_hw.data.images import ImageDataModule
from lightning_hw.data.io.download import write_problem
from lightning_hw.errors import DataError


def idx_problem(path: Path) -> str | None:
    """What is wrong with an IDX file of unsigned bytes (MNIST's format), or ``None`` when it is whole.

    The header is two zero bytes, the type code 0x08 (unsigned byte), the number of
    dimensions and each dimension as a big-endian int32; the values follow, one byte each.
    A web page saved in its place or a file cut short is caught here, by name.
    """
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4:
            return "is cut short inside its header"
        if header[:2] != b"\x00\x00" or not 1 <= header[3] <= 3:
            return f"is not an IDX file (it starts with {header!r})"
        if header[2] != 0x08:
            return f"holds IDX values of type {header[2]:#04x}, not the unsigned bytes (0x08) of MNIST"
        dims = f.read(4 * header[3])
    if len(dims) < 4 * header[3]:
        return "is cut short inside its header"
    shape = [int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4)]
    expected = 4 + len(dims) + math.prod(shape)
    size = path.stat().st_size
    if size != expected:
        return f"holds {size:,} bytes where its header ({' x '.join(map(str, shape))}) makes {expected:,}: it is cut short or damaged"
    return None


class _Damaged(Exception):
    """Reading a ``.gz`` failed (its cause says how): the archive is damaged, unlike a failed write."""


def _copy_gunzipped(source: gzip.GzipFile, out: BinaryIO) -> None:
    """Copy ``source``'s content to ``out``; a failure to read it raises :class:`_Damaged`.

    Reads and writes both raise ``OSError``; they are told apart here because their advice is
    opposite: a damaged archive is deleted and downloaded again, a folder that cannot be written
    holds a good archive that must be kept.
    """
    while True:
        try:
            chunk = source.read(1 << 20)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise _Damaged() from err
        if not chunk:
            return
        out.write(chunk)


class MNIST(ImageDataModule):
    """MNIST digits as torchvision stores them: IDX files in ``<root>/MNIST/raw``.

    Missing files are downloaded (with ``download: true``) by torchvision from its mirrors,
    with its MD5 checksums; ``.gz`` files put there by hand are unpacked. Pixels are scaled
    to [0, 1] (the E1 report fed raw 0-255 values to its MLP and got ~53%).

    Args:
        root: folder that holds (or will hold) ``MNIST/raw``.
        download: fetch missing files.
        val_fraction: share of the 60,000 training images held out for validation
            (the 10,000 test images are the test set); with ``folds``, the folds cut the 60,000 instead.
        **kwargs: see :class:`~lightning_hw.data.images.ImageDataModule` (``augment``,
            ``standardize``, ``flatten``...) and the batch-size and seed arguments.
    """

    own_split = (
        "its 10,000 test images are the test split, and --data.init_args.val_fraction of the 60,000 training images validate"
    )

    def __init__(self, root: str = "data", download: bool = True, val_fraction: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.download = download
        self.val_fraction = val_fraction

    @property
    def class_names(self) -> list[str]:
        return [str(d) for d in range(10)]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, 28, 28)

    @property
    def raw_folder(self) -> Path:
        """Where torchvision keeps the IDX files."""
        return self.root / "MNIST" / "raw"

    def missing_files(self) -> list[str]:
        """The extracted IDX files torchvision needs that are not in :attr:`raw_folder`."""
        names = [Path(name).stem for name, _ in torchvision.datasets.MNIST.resources]
        return [name for name in names if not (self.raw_folder / name).is_file()]

    def prepare_data(self) -> None:
        missing = self.missing_files()
        if not missing:
            return
        misplaced = self._misplaced(missing)
        if misplaced:  # before any download: the user has the files, one folder off
            raise DataError(misplaced)
        if self.root.is_file():  # the advice would be to put the files in a folder under it
            raise DataError(
                f"MNIST files {', '.join(missing)} not found in {self.raw_folder.absolute()}: --data.init_args.root is a file; "
                "set it to the folder that holds MNIST/raw"
                + (f" ({self.root.parent.parent.parent})" if self.root.parent.name == "raw" and self.root.parent.parent.name == "MNIST" else "")
            )
        # Files fetched by hand (the .gz from a mirror) only need unpacking.
        archives = {name: self.raw_folder / f"{name}.gz" for name in missing if (self.raw_folder / f"{name}.gz").is_file()}
        for archive in archives.values():  # all checked before any is unpacked
            self._refuse_look_alike(archive)
        for name, archive in archives.items():
            self._unpack(archive, self.raw_folder / name)
        missing = self.missing_files()
        if not missing or not self.download:
            return
        try:
            torchvision.datasets.MNIST(str(self.root), train=True, download=True)
        except (RuntimeError, OSError) as err:
            problem = write_problem(err, self.raw_folder, "the MNIST files")
            if problem:
                raise DataError(problem) from None
            reason = " ".join(str(err).split())[:300]  # torchvision's report spans lines (one per mirror)
            raise DataError(self._missing_message(missing, reason)) from None

    def _misplaced(self, missing: list[str]) -> str | None:
        """The message for files that are there, but not in :attr:`raw_folder` (``root`` one level off).

        ``root`` set to the ``raw`` folder itself or to ``MNIST``, or files put straight in
        ``root`` or ``root/MNIST``, would otherwise be reported missing (and, with ``download: true``,
        downloaded again into a folder nested one level deeper).
        """
        for folder in (self.root, self.root / "MNIST", self.root / "raw"):
            if all((folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in missing):
                break
        else:
            return None
        where = f"MNIST files {', '.join(missing)} not found in {self.raw_folder.absolute()}, but they are in {folder.absolute()}"
        if folder.name == "raw" and folder.parent.name == "MNIST":
            return f"{where}: set --data.init_args.root {folder.parent.parent} (the folder that holds MNIST/raw)"
        return f"{where}: move them into {self.raw_folder.absolute()}"

    def _refuse_look_alike(self, archive: Path) -> None:
        """Refuse a ``.gz`` of Fashion-MNIST or KMNIST, known by torchvision's MD5 of it.

        They are drop-in replacements for MNIST: the same file names, sizes and format, so
        nothing else tells them apart, and a run would train on clothes labelled as digits.

        Raises:
            DataError: naming the data set the file belongs to and where MNIST's is.
        """
        from torchvision.datasets.utils import calculate_md5

        others = {
            md5: dataset.__name__
            for dataset in (torchvision.datasets.FashionMNIST, torchvision.datasets.KMNIST)
            for _, md5 in dataset.resources
        }
        other = others.get(calculate_md5(str(archive)))
        if other:
            raise DataError(
                f"{archive.absolute()} is {other}'s {archive.name}, not MNIST's (the same names and format, other images): "
                f"move it away and put MNIST's from {torchvision.datasets.MNIST.mirrors[0]} there"
            )

    def _unpack(self, archive: Path, target: Path) -> None:
        """Unpack a ``.gz`` put in :attr:`raw_folder` by hand into ``target``, whole or not at all.

        Args:
            archive: the ``.gz`` file.
            target: the IDX file it holds.

        Raises:
            DataError: the archive is truncated or not gzip (an interrupted download, an HTML
                error page); the archive is left as it is, and no partial IDX file is left behind
                (it would be read as the data set the next time).
        """
        try:
            with gzip.open(archive, "rb") as source, atomic_open(target, "wb") as out:
                _copy_gunzipped(source, out)
        except _Damaged as damaged:
            err = damaged.__cause__
            mirror = torchvision.datasets.MNIST.mirrors[0]
            raise DataError(
                f"cannot unpack {archive.absolute()} ({type(err).__name__}: {err}); the file is damaged: "
                f"delete it and download it again from {mirror}"
            ) from None
        except OSError as err:  # writing the IDX file: the archive is fine, the folder is not
            problem = write_problem(err, self.raw_folder, f"the unpacked {target.name}")
            raise DataError(problem or f"cannot unpack {archive.absolute()} into {target.absolute()} ({err})") from None

    def _missing_message(self, missing: list[str], failure: str | None = None) -> str:
        mirror = torchvision.datasets.MNIST.mirrors[0]
        where = f"MNIST files {', '.join(missing)} not found in {self.raw_folder.absolute()}"
        if failure:
            return f"{where}: download the .gz files from {mirror} and put them there (automatic download failed: {failure})"
        return f"{where}: set --data.init_args.download true, or download the .gz files from {mirror} and put them there"

    def load_splits(self) -> dict[str, Split]:
        self.prepare_data()  # a no-op when present; set-up on a node that skipped prepare_data
        missing = self.missing_files()
        if missing:
            raise DataError(self._missing_message(missing))
        for name in (Path(name).stem for name, _ in torchvision.datasets.MNIST.resources):
            problem = idx_problem(self.raw_folder / name)
            if problem:  # torchvision would fail on a bare assert, naming no file
                raise DataError(f"{(self.raw_folder / name).absolute()} {problem}; delete it to download it again")
        try:
            train = torchvision.datasets.MNIST(str(self.root), train=True, download=False)
            test = torchvision.datasets.MNIST(str(self.root), train=False, download=False)
        except Exception as err:  # noqa: BLE001 - torchvision asserts on malformed IDX headers
            raise DataError(
                f"cannot read the MNIST files in {self.raw_folder.absolute()} ({type(err).__name__}: {err}); "
                "delete them to download them again"
            ) from None
        for split, name in ((train, "train"), (test, "t10k")):
            if len(split.data) != len(split.targets):  # files of two downloads: torchvision does not compare them
                raise DataError(
                    f"the MNIST files {name}-images-idx3-ubyte and {name}-labels-idx1-ubyte in {self.raw_folder.absolute()} "
                    f"hold {len(split.data)} images but {len(split.targets)} labels; delete them to download them again"
                )
        train_split, val_split = self.hold_out((train.data.unsqueeze(1), train.targets), self.val_fraction)
        return {"train": train_split, "val": val_split, "test": (test.data.unsqueeze(1), test.targets)}
