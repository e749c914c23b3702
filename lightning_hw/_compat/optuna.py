"""Optuna's internals: the database connections an ``RDBStorage`` keeps open."""

from __future__ import annotations

from typing import Any


def close_storage(storage: Any) -> None:
    """Close the database connections ``storage`` holds (an ``RDBStorage``'s SQLAlchemy engine); others are left as they are.

    Optuna has no ``close()``: its storage, in a reference cycle, kept ``optuna.db`` open after
    an in-process ``study`` until the garbage collector ran. The storage stays usable: the
    engine opens a connection again when asked.
    """
    engine = getattr(storage, "engine", None)
    if engine is None:  # a journal, or a storage of another kind: nothing held open between calls
        return
    storage.remove_session()
    engine.dispose()
