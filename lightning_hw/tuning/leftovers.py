"""What an lr-find killed mid-sweep leaves behind, and how the next lr-find tells it from a live sweep.

Lightning's finder saves the fresh weights as ``.lr_find_<uuid>.ckpt`` in the sweep's directory
and deletes it once it has loaded them back. A sweep stopped by a signal it can handle removes
its directory; one killed outright (``SIGKILL``, the out-of-memory killer, a power cut) cannot,
so ``lr-find-<time>/`` stays with that hidden file alone (the size of the model's weights: 44 kB
for the quickstart, 230 MB for a ResNet152).

A live sweep holds an exclusive ``flock`` on its directory from the moment it creates it; the
kernel drops the lock when the process dies, however it dies. So a directory of leftovers
whose lock can be taken belongs to no running sweep, and the next lr-find of the group
removes it. Nothing else is ever removed: a directory holding any other file (a finished
sweep's ``lr_find.json``, a run's files) is left as it is.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

#: Lightning's temporary checkpoint (``.lr_find_<uuid4>.ckpt``), and the ``atomic_open`` temporary
#: file that a kill during its save leaves (``..lr_find_<uuid4>.ckpt.<random>.tmp``)
LEFTOVER = re.compile(r"\.?\.lr_find_[0-9a-f-]{36}\.ckpt(\..+\.tmp)?")


class SweepLock:
    """An exclusive ``flock`` on a sweep's directory, held while the sweep runs.

    Args:
        directory: the sweep's directory (just created).
    """

    def __init__(self, directory: Path) -> None:
        self._fd: int | None = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            # A file system without locks (ENOLCK on some FUSE or SMB mounts): the sweep runs unmarked,
            # and is safe all the same, since another lr-find that cannot check a lock removes nothing.
            self.release()

    def release(self) -> None:
        """Drop the lock (also dropped when the process ends)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _only_leftovers(directory: Path) -> list[Path]:
    """The leftover files of ``directory`` when it holds those and nothing else (else ``[]``)."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    if entries and all(LEFTOVER.fullmatch(entry.name) and entry.is_file() for entry in entries):
        return entries
    return []


def _is_locked(directory: Path) -> bool:
    """Whether a running sweep holds ``directory``'s lock (or it cannot be checked: then it is left alone)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock, if it was taken
    return False


def clear_abandoned_sweeps(parent: Path, prefix: str) -> list[str]:
    """Remove the ``<prefix>-*`` directories of ``parent`` that a killed sweep left with its temporary checkpoint alone.

    Args:
        parent: the group's directory.
        prefix: the sweep directories' name prefix (``lr-find``).

    Returns:
        One line per removed directory, saying what it held.
    """
    said = []
    for directory in sorted(parent.glob(f"{prefix}-*")):
        leftovers = _only_leftovers(directory)
        if not leftovers or _is_locked(directory):
            continue
        size = sum(path.stat().st_size for path in leftovers)
        names = ", ".join(sorted(path.name for path in leftovers))
        try:
            for path in leftovers:
                path.unlink()
            directory.rmdir()
        except OSError as err:  # another lr-find removed it first, or no permission: say nothing false
            if directory.exists():
                said.append(f"could not remove {directory}, left by an lr-find killed before it finished: {err}")
            continue
        said.append(
            f"removed {directory}: an lr-find killed before it finished left only its temporary copy of "
            f"the starting weights there ({names}, {size:,} bytes)"
        )
    return said
