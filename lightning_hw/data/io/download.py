"""Fetching public dataset files with a checksum, and reading pickled ones safely.

Downloads go through ``torch.hub.download_url_to_file``: it writes to a temporary file,
checks the SHA-256 and only then moves the file into place, so an interrupted or
tampered download never leaves a half file where the loader would find it.
"""

from __future__ import annotations

import errno
import io
import pickle
import urllib.error
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from lightning_hw.errors import DataError


def download_file(url: str, path: Path, sha256: str, what: str) -> Path:
    """Download ``url`` to ``path`` unless it is there, verifying its SHA-256.

    Args:
        url: the public URL.
        path: where the file must end up.
        sha256: the expected SHA-256 hex digest.
        what: the dataset's name, for messages.

    Raises:
        DataError: the download failed or its checksum is wrong (nothing is left at ``path``).
    """
    if path.is_file():
        return path
    import torch.hub

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"Downloading {what} from {url} to {path}")
        torch.hub.download_url_to_file(url, str(path), hash_prefix=sha256, progress=True)
    except RuntimeError as err:
        if "invalid hash value" in str(err):
            raise DataError(f"the download of {what} from {url} is corrupt ({err}); run again to retry") from None
        raise DataError(f"could not download {what} from {url} ({err}); {manual_hint(url, path)}") from None
    except OSError as err:  # URLError, HTTPError, no network; or a folder that cannot be written
        problem = write_problem(err, path.parent, path.name)
        raise DataError(problem or f"could not download {what} from {url} ({err}); {manual_hint(url, path)}") from None
    return path


#: errno values of a file that cannot be created or written where it must go
_CANNOT_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}


def write_problem(err: BaseException, folder: Path, what: str) -> str | None:
    """The message for ``what`` that could not be saved in ``folder``, or ``None`` when ``err`` is another failure.

    A download or an unpack that cannot write must not be answered with "the file is damaged:
    delete it" (a good file would be lost) or "download it yourself and put it there" (nothing
    can be put there): the folder is what needs changing.

    Args:
        err: what the download or unpack raised.
        folder: where the file was to be written.
        what: the file (or files) to be written, for the message.
    """
    if not isinstance(err, OSError) or isinstance(err, urllib.error.URLError) or err.errno not in _CANNOT_WRITE:
        return None
    fixes = {errno.ENOSPC: "free some space there", errno.EDQUOT: "free some space there", errno.ENOTDIR: "a part of that path is a file"}
    fix = fixes.get(err.errno, "make it writable")
    return (
        f"cannot save {what} in {folder.absolute()} ({err.strerror}): {fix}, "
        "or set --data.init_args.root to a folder that can be written"
    )


def manual_hint(source: str, path: Path) -> str:
    """The standard "fetch it yourself" sentence of a missing-file message."""
    return f"download {source} yourself and put it at {path.absolute()}"


# -- reading pickled data without letting the file run code -----------------------------------

#: What rebuilding numpy arrays and plain containers needs; anything else in a pickle is refused.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 2 pickles store byte strings (CIFAR batches)
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Pickle reader that rebuilds numpy arrays and builtins only (a dataset file must not run code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a dataset file should only hold arrays")


def load_pickle(path: Path, encoding: str = "ASCII") -> Any:
    """Unpickle a dataset file with :class:`_RestrictedUnpickler`.

    Args:
        path: the file.
        encoding: how to decode Python 2 strings (``latin1`` for the CIFAR batches).
    """
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, encoding=encoding).load()


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` archive, including object arrays, without ``allow_pickle=True``.

    Object arrays (ragged sequences such as Keras' ``reuters.npz``) can only be stored as
    pickles; they are read with :class:`_RestrictedUnpickler`, everything else with
    pickling disabled.

    Args:
        path: the archive.
    """
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            buffer = io.BytesIO(archive.read(member))
            version = np.lib.format.read_magic(buffer)
            # Format 3.0 differs from 2.0 only in the header's text encoding, not its layout.
            read_header = np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0
            _, _, dtype = read_header(buffer)
            if dtype.hasobject:
                array = _RestrictedUnpickler(buffer).load()
            else:
                buffer.seek(0)
                array = np.lib.format.read_array(buffer, allow_pickle=False)
            arrays[member[: -len(".npy")]] = array
    return arrays
