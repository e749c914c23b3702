"""CIFAR-10 (E1): 50,000 + 10,000 colour images, 32x32, 10 classes, from the python pickles."""

from __future__ import annotations

import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from lightning_hw.data.base import Split
from lightning_hw.data.io.download import load_pickle, write_problem
from lightning_hw.data.io.files import first_non_pixel
from lightning_hw.data.images import ImageDataModule
from lightning_hw.errors import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


class CIFAR10(ImageDataModule):
    """CIFAR-10's "python version": pickled batches in ``<root>/cifar-10-batches-py``.

    A missing folder is downloaded (``download: true``) from torchvision's URL (the
    Toronto original) with torchvision's MD5 checksum and unpacked; ``cifar-10-python.tar.gz``
    put in ``root`` by hand is checked against that MD5 and unpacked (also with ``download:
    false``), and refused, not deleted, when it does not match. The batches are read
    here rather than through ``torchvision.datasets.CIFAR10`` with a pickle reader that only
    rebuilds arrays (a pickle can run code) and without re-hashing 180 MB on every start.

    Args:
        root: folder that holds (or will hold) ``cifar-10-batches-py``.
        download: fetch the archive when the folder is missing and ``root`` holds no archive.
        val_fraction: share of the 50,000 training images held out for validation; with
            ``folds``, the folds cut the 50,000 instead (the test batch stays the test set).
        **kwargs: see :class:`~lightning_hw.data.images.ImageDataModule`.
    """

    own_split = (
        "its test batch (10,000 images) is the test split, and --data.init_args.val_fraction of the 50,000 training images validate"
    )

    def __init__(self, root: str = "data", download: bool = True, val_fraction: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.download = download
        self.val_fraction = val_fraction

    @property
    def class_names(self) -> list[str]:
        return list(CIFAR10_CLASSES)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    @property
    def folder(self) -> Path:
        """Where the pickled batches are."""
        return self.root / CIFAR10_FOLDER

    def missing_files(self) -> list[str]:
        """Batches that are not in :attr:`folder`."""
        return [name for name in (*TRAIN_BATCHES, TEST_BATCH) if not (self.folder / name).is_file()]

    def _missing_message(self, missing: list[str], failure: str | None = None) -> str:
        url = torchvision.datasets.CIFAR10.url
        where = f"CIFAR-10 files {', '.join(missing)} not found in {self.folder.absolute()}"
        if failure:
            return f"{where}: download {url} and unpack it in {self.root.absolute()} (automatic download failed: {failure})"
        return f"{where}: set --data.init_args.download true, or download {url} and unpack it in {self.root.absolute()}"

    def prepare_data(self) -> None:
        missing = self.missing_files()
        if missing and all((self.root / name).is_file() for name in missing):
            # root is the batches folder itself: say so before downloading a second copy into it
            raise DataError(
                f"CIFAR-10 files {', '.join(missing)} not found in {self.folder.absolute()}, but they are in "
                f"{self.root.absolute()}: set --data.init_args.root to the folder that holds {CIFAR10_FOLDER}/"
                + (f" ({self.root.parent})" if self.root.name == CIFAR10_FOLDER else f", or move them into {self.folder.absolute()}")
            )
        if missing and self.root.is_file():  # root set to a batch file: the download could not even clean up after itself
            archive = torchvision.datasets.CIFAR10.filename
            if self.root.name == archive:  # the archive itself: its folder is the root, where it is unpacked
                holder = f" or {archive} ({self.root.parent})"
            else:
                holder = f" ({self.root.parent.parent})" if self.root.parent.name == CIFAR10_FOLDER else ""
            raise DataError(
                f"CIFAR-10 files {', '.join(missing)} not found in {self.folder.absolute()}: --data.init_args.root is a file; "
                f"set it to the folder that holds {CIFAR10_FOLDER}/{holder}"
            )
        if not missing:
            return
        archive = self.root / torchvision.datasets.CIFAR10.filename
        if archive.is_file():  # put there by hand, or kept from an earlier run: used once its MD5 is right
            self._check_archive(archive)
        elif self.download:
            self._download(archive, missing)
        else:
            return
        self._unpack(archive)

    def _check_archive(self, archive: Path) -> None:
        """Refuse an archive whose MD5 is not torchvision's, leaving it where it is (it is the user's file)."""
        from torchvision.datasets.utils import check_integrity

        spec = torchvision.datasets.CIFAR10
        if check_integrity(str(archive), spec.tgz_md5):
            return
        again = "run again to download it" if self.download else f"download {spec.url} again"
        raise DataError(
            f"{archive.absolute()} is not CIFAR-10's archive: its MD5 is not torchvision's {spec.tgz_md5} (it is cut "
            f"short, damaged, or another file, such as CIFAR-100's); delete it and {again}"
        )

    def _download(self, archive: Path, missing: list[str]) -> None:
        """Download the archive with torchvision's MD5 check; only a verified one gets the archive's name.

        The bytes go to ``<archive>.partial`` first: torchvision writes straight into the file it is
        given, and a download cut short (Ctrl-C, a lost connection) under the archive's own name
        would be taken for a file the user put there.
        """
        from torchvision.datasets.utils import download_url

        spec = torchvision.datasets.CIFAR10
        partial = archive.with_name(archive.name + ".partial")
        try:
            download_url(spec.url, str(self.root), filename=partial.name, md5=spec.tgz_md5)
            partial.replace(archive)
        except (RuntimeError, OSError) as err:
            partial.unlink(missing_ok=True)  # a corrupt or partial download must not linger
            problem = write_problem(err, self.root, spec.filename)
            reason = " ".join(str(err).split())[:300]  # torchvision's report spans lines (one per mirror)
            raise DataError(problem or self._missing_message(missing, reason)) from None

    def _unpack(self, archive: Path) -> None:
        """Unpack the verified archive so that each batch file appears whole or not at all.

        It is unpacked into a hidden folder beside :attr:`folder` and each file is then renamed
        into place: an unpack interrupted (Ctrl-C, SIGTERM, a full disk) leaves no cut-off batch
        that the next run would find and trust; it unpacks the missing ones again. The archive is kept.
        """
        from torchvision.datasets.utils import extract_archive

        staging = self.root / f".{CIFAR10_FOLDER}.partial"
        shutil.rmtree(staging, ignore_errors=True)  # what an interrupted unpack left
        try:
            extract_archive(str(archive), str(staging))
            self.folder.mkdir(exist_ok=True)
            for item in sorted((staging / CIFAR10_FOLDER).iterdir()):
                if not (self.folder / item.name).exists():
                    item.replace(self.folder / item.name)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            problem = write_problem(err, self.root, f"the unpacked {CIFAR10_FOLDER}/")
            raise DataError(
                problem or f"cannot unpack {archive.absolute()} into {self.folder.absolute()} ({type(err).__name__}: {err}); "
                "the archive is kept: fix that and run again"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _read(self, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for name in names:
            path = self.folder / name
            try:
                entry = load_pickle(path, encoding="latin1")
                data = np.asarray(entry["data"])
                bad = first_non_pixel(data)
                if bad is not None:  # a cast would wrap 300 to 44 without a word
                    raise ValueError(f"value {data[bad]} at index {list(bad)} of its data is not a pixel value 0-255")
                data = data.astype(np.uint8).reshape(-1, 3, 32, 32)
                target = np.asarray(entry["labels"], dtype=np.int64)
                if target.shape[0] != data.shape[0]:
                    raise ValueError(f"{data.shape[0]} images but {target.shape[0]} labels")
            except Exception as err:  # noqa: BLE001 - truncated, tampered or foreign file
                raise DataError(
                    f"cannot read CIFAR-10 batch {path.absolute()} ({type(err).__name__}: {err}); "
                    f"delete {self.folder.absolute()} to download it again"
                ) from None
            images.append(torch.from_numpy(data))
            labels.append(torch.from_numpy(target))
        return torch.cat(images), torch.cat(labels)

    def load_splits(self) -> dict[str, Split]:
        self.prepare_data()
        missing = self.missing_files()
        if missing:
            raise DataError(self._missing_message(missing))
        train, val = self.hold_out(self._read(TRAIN_BATCHES), self.val_fraction)
        return {"train": train, "val": val, "test": self._read((TEST_BATCH,))}
