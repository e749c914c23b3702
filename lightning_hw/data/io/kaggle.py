"""Files that live behind a Kaggle login: fetch them with ``kagglehub`` if possible, else say where to put them.

``kagglehub`` is an optional dependency (``pip install 'lightning-hw[kaggle]'``); it uses the
credentials of ``kagglehub.login()`` / ``~/.kaggle/kaggle.json`` / ``KAGGLE_USERNAME`` and
``KAGGLE_KEY``. Without it, or when the download fails (not logged in, competition rules
not accepted, offline), the user gets one message with the Kaggle page and the exact path.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from lightning_hw.atomic import atomic_open
from lightning_hw.errors import DataError


@dataclass(frozen=True)
class KaggleFile:
    """A file distributed on Kaggle.

    Args:
        what: the dataset's name, for messages.
        page: the Kaggle page a person downloads it from.
        handle: ``owner/dataset`` (datasets) or the competition's slug.
        competition: whether ``handle`` is a competition (else a dataset).
        names: file names that hold the data, in order of preference, searched for in
            the download (inside archives too).
    """

    what: str
    page: str
    handle: str
    competition: bool
    names: tuple[str, ...]

    def missing_message(self, path: Path, reason: str = "") -> str:
        """One line: what is missing, where to get it, where to put it (and why the download failed)."""
        why = f" (automatic download: {reason})" if reason else ""
        return (
            f"{self.what} file {path.name} not found at {path.absolute()}: download it from {self.page} "
            f"(Kaggle login needed) and put it there{why}"
        )


def fetch(file: KaggleFile, path: Path, download: bool) -> Path:
    """Make sure ``path`` exists: it is there, or ``kagglehub`` fetches it, or a :class:`DataError` says how.

    Args:
        file: what to fetch.
        path: where the datamodule reads it.
        download: try ``kagglehub`` when the file is missing.
    """
    if path.is_file():
        return path
    if not download:
        raise DataError(file.missing_message(path))
    try:
        import kagglehub
    except ImportError:
        raise DataError(file.missing_message(path, "pip install 'lightning-hw[kaggle]' and log in to enable it")) from None
    try:
        get = kagglehub.competition_download if file.competition else kagglehub.dataset_download
        folder = Path(get(file.handle))
    except Exception as err:  # noqa: BLE001 - auth, rules, network: all end in the same advice
        reason = f"kagglehub failed: {type(err).__name__}: {err}".splitlines()[0]
        raise DataError(file.missing_message(path, reason)) from None
    found = _find(folder, file.names)
    if found is None:
        raise DataError(file.missing_message(path, f"no {' or '.join(file.names)} in the download at {folder}"))
    # Moved into place whole: an interrupted copy must not be found at `path` next time and read as the data set.
    with open(found, "rb") as source, atomic_open(path, "wb") as copy:
        shutil.copyfileobj(source, copy)
    print(f"Copied {found} to {path}")
    return path


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` under ``folder``, unpacking archives found there if needed."""
    for name in names:
        hits = sorted(folder.rglob(name))
        if hits:
            return hits[0]
    for archive in sorted(folder.rglob("*")):
        target = archive.with_name(archive.name + ".extracted")
        is_tar = archive.name.endswith((".tar.gz", ".tgz", ".tar"))
        if target.exists() or not (is_tar or archive.suffix == ".zip"):
            continue
        # Unpacked beside the target and renamed when whole: a half-unpacked folder would be
        # taken as unpacked next time, and its cut-off CSV read as the data set.
        partial = archive.with_name(archive.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            if is_tar:
                with tarfile.open(archive) as tar:
                    tar.extractall(partial, filter="data")
            else:
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(partial)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
            shutil.rmtree(partial, ignore_errors=True)
            raise DataError(
                f"cannot unpack {archive} of the Kaggle download ({type(err).__name__}: {err}); it is damaged: "
                f"delete {folder} (kagglehub's copy) and run again to download it again"
            ) from None
        partial.rename(target)
        for name in names:
            hits = sorted(target.rglob(name))
            if hits:
                return hits[0]
    return None
