"""Errors the user can fix. The CLI prints their message as one line (no traceback unless --debug)."""


from collections.abc import Callable
from typing import Any

from lightning_hw._compat.torch import worker_error_original


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do next."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        # Raised in a DataLoader worker, it is raised again in the main process with the
        # worker's traceback as its message: keep the one line the user should read.
        if len(args) == 1 and isinstance(args[0], str):
            args = (worker_error_original(args[0], type(self)) or args[0],)
        super().__init__(*args)


class ConfigError(UserError, ValueError):
    """A config value, option or class name that cannot work.

    Args:
        fact: what is wrong.
        advice: what to change in the config, kept apart so that a message about settings
            that did not come from the config (e.g. a checkpoint's) can leave it out.
    """

    def __init__(self, fact: str = "", advice: str | None = None) -> None:
        super().__init__(f"{fact}; {advice}" if advice else fact)
        self.fact = fact
        self.advice = advice


class MissingMethodError(ConfigError, NotImplementedError):
    """A task or datamodule class that does not implement a method its base leaves to it.

    Still a ``NotImplementedError`` for code that catches one; a :class:`ConfigError` so that
    the CLI says it in one line (a plugin author's first run) rather than as a traceback from
    deep inside Lightning.

    Args:
        kind: ``"task"`` or ``"datamodule"``.
        cls: the class that lacks the method.
        missing: what it does not implement, e.g. ``"shared_step(batch, stage)"``.
        advice: what to implement, and where that is explained.
    """

    def __init__(self, kind: str, cls: type, missing: str, advice: str) -> None:
        super().__init__(f"{kind} {cls.__name__} {missing}", advice)


class DataError(UserError, ValueError):
    """A dataset file that is missing, corrupt or inconsistent."""

    exit_code = 1


class ConstructorError(UserError):
    """A task's, datamodule's or net's own ``__init__`` raised while the config was built.

    A plugin's check of its arguments (``raise ValueError("at most 5 features")``) or a bug:
    jsonargparse wrapped it in a "Does not validate against any of the Union subtypes" error
    whose traceback (some 60 lines) shows only jsonargparse. The line gives the exception and
    where it was raised; ``--debug`` shows the whole traceback.

    Args:
        raised: the exception the ``__init__`` raised.
    """

    exit_code = 1

    def __init__(self, raised: BaseException) -> None:
        import sysconfig
        import traceback

        frames = traceback.extract_tb(raised.__traceback__)
        # The last frame in the user's own code (a plugin being written is rarely installed into
        # site-packages), not torch's line that refused the net's sizes; else the raising one.
        libraries = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        own = [frame for frame in frames if not frame.filename.startswith(libraries)]
        frame = (own or frames or [None])[-1]
        where = f"{frame.filename}:{frame.lineno}, in {frame.name}" if frame else "building the config's classes"
        reason = (f"{type(raised).__name__}: {raised}".strip().splitlines() or [type(raised).__name__])[0]
        super().__init__(f"{reason} (raised at {where}, while the config's classes were built; --debug shows the traceback)")


class TrainingError(UserError):
    """Training cannot go on (e.g. the loss became NaN); the message says where and why."""

    exit_code = 1


def raised_in_constructor(err: BaseException) -> BaseException | None:
    """The exception a class's ``__init__`` raised, behind jsonargparse's error about it (else ``None``).

    jsonargparse builds the config's classes and, when one raises, raises its own ``ValueError``
    ("Does not validate against any of the Union subtypes") from the original: the original is
    the first exception behind jsonargparse's. Not the last one in the chain: an ``__init__``
    that raises while handling another error (``raise ValueError("pip install x")`` in an
    ``except ImportError:``) would be said by the error it handled, its own advice lost.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and "Union subtypes" in str(current) and id(current) not in seen:
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return current if current is not err else None


def user_error_in(err: BaseException) -> UserError | None:
    """The :class:`UserError` behind ``err``, if a library wrapped one (jsonargparse re-raises
    errors from ``__init__`` as ``ValueError``s carrying the original as their cause)."""
    return _first_in_chain(err, lambda e: isinstance(e, UserError))


def _first_in_chain(err: BaseException, matches: Callable[[BaseException], bool]) -> Any:
    """The first exception in ``err``'s chain (``err``, then each cause or context) that ``matches``, or ``None``."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if matches(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def disk_full_in(err: BaseException) -> OSError | None:
    """The "no space left" (or "disk quota exceeded") error behind ``err``, if that is what it is.

    ``torch.save`` into a full disk raises a ``RuntimeError`` ("unexpected pos ...") while
    handling the ``OSError``; so the whole chain is searched.
    """
    import errno

    full = _os_error_in(err, (errno.ENOSPC, errno.EDQUOT))
    if full is None and _sqlite_full_in(err):
        # A study's Optuna storage (SQLite) on a full disk says so in its own error, no OSError behind it.
        full = OSError(errno.ENOSPC, "No space left on device (SQLite: database or disk is full)")
    return full


def _sqlite_full_in(err: BaseException) -> bool:
    """Whether ``err``'s chain holds SQLite's ``SQLITE_FULL`` (Optuna's error wraps SQLAlchemy's, which wraps it)."""
    import sqlite3

    return _first_in_chain(
        err, lambda e: isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    ) is not None


def not_writable_in(err: BaseException) -> OSError | None:
    """The "read-only file system" (or "permission denied") error behind ``err``, if that is what it is."""
    import errno

    return _os_error_in(err, (errno.EROFS, errno.EACCES, errno.EPERM))


def _os_error_in(err: BaseException, codes: tuple[int, ...]) -> OSError | None:
    """The ``OSError`` of one of these ``errno`` codes in ``err``'s chain (its causes and contexts), if any."""
    return _first_in_chain(err, lambda e: isinstance(e, OSError) and e.errno in codes)


class LightningHWWarning(UserWarning):
    """A warning of lightning-hw: shown as one ``warning: <message>`` line (see ``cli.verbosity``).

    Subclass it (or pass it as ``category``) for a warning a user should read: Python's own
    format prefixes the file and line that warned and repeats that source line.
    """


class ExportError(UserError):
    """An exported model does not reproduce the PyTorch model's outputs."""

    exit_code = 1
