"""``list``: the table of registered tasks and datamodules, cached between calls.

The table needs each class's docstring, hence importing every plugin (torch, Lightning:
seconds). What it shows can only change when the installed plugins or their source files
change, so the answer (rows and the ``warning:`` lines of broken plugins) is kept in one
file under the user's cache directory, keyed on a fingerprint that
:mod:`importlib.metadata` and a few ``stat`` calls give without importing anything:

* every entry point of the two groups, with its distribution's name, version and
  ``dist-info`` directory (a new version or a reinstall changes them);
* the size and mtime of every ``.py`` file of each entry point's top-level package, since an
  editable install changes without a version bump, and a class's docstring or a plugin's
  import error may come from any module of its package;
* the size and mtime of every directory on ``sys.path`` (but the current one): installing or
  uninstalling any distribution adds or removes entries there, and a plugin's import error
  (or its success) may come from a dependency that is not itself a plugin;
* the interpreter, so two environments sharing a cache directory do not mix.

Delete the cache file (``$XDG_CACHE_HOME/lightning-hw/list.json``) to force a fresh import.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

from lightning_hw import registry

#: bump when the cached content changes shape
CACHE_FORMAT = 1


def cache_file() -> Path:
    """Where the cached answer lives: ``$XDG_CACHE_HOME/lightning-hw/list.json`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lightning-hw" / "list.json"


def _stat(path: Path) -> list:
    try:
        info = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), info.st_mtime_ns, info.st_size]


def _source_stats(top: str) -> list:
    """Size and mtime of the source files of the top-level module or package ``top``, without importing it."""
    try:
        # A top-level name is located by the finders (the editable-install finder included)
        # without running any code of the package.
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return [top, "not found"]
    if spec.submodule_search_locations:
        return [_stat(p) for d in spec.submodule_search_locations for p in sorted(Path(d).rglob("*.py"))]
    return [_stat(Path(spec.origin))] if spec.origin else [top, spec.origin]


def fingerprint() -> str:
    """A hash of everything the table depends on (see the module docstring)."""
    parts: list = [CACHE_FORMAT, sys.executable, sys.version]
    tops: set[str] = set()
    for kind, group in registry.GROUPS.items():
        for ep in entry_points(group=group):
            dist = ep.dist
            info_dir = getattr(dist, "_path", None)  # PathDistribution's dist-info directory
            parts.append([
                kind, ep.name, ep.value, dist.name if dist else None, dist.version if dist else None,
                _stat(Path(info_dir)) if info_dir is not None else None,
            ])  # fmt: skip
            tops.add(ep.value.split(":")[0].split(".")[0])
    parts.extend(_source_stats(top) for top in sorted(tops))
    # Not the current directory (sys.path[0] under `python -m`): making a file there changes nothing installed.
    here = os.getcwd()
    parts.extend(_stat(Path(entry)) for entry in sys.path if entry and os.path.abspath(entry) != here)
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def table_rows(components: tuple[registry.Component, ...]) -> list[list[str]]:
    """The table's rows (kind, name, distribution, description in rich markup)."""
    rows = []
    for comp in components:
        description = comp.description if comp.error is None else f"[red]failed to load: {comp.error}[/red]"
        if registry.ambiguous_name_message(comp.kind, comp.name):
            # A short name several plugins provide only resolves by its full path.
            description = f"[yellow]name clash, use class_path: {comp.class_path}[/yellow] {description}"
        rows.append([comp.kind, comp.name, comp.distribution, description])
    return rows


def print_table(rows: list[list[str]]) -> None:
    """Print the rows as the ``list`` table (rich imports in a few hundredths of a second)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lightning-hw tasks and datamodules")
    for column in ("kind", "name", "distribution", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=140).print(table)


def load_components() -> tuple[list[list[str]], str]:
    """Import every plugin now: the table's rows, and what to print on stderr about broken plugins.

    Each broken plugin is one ``warning:`` line (as :func:`lightning_hw.cli.report_plugin_problems`
    prints it); other warnings raised while importing plugins are kept in Python's format.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", registry.PluginLoadWarning)
        components = registry.discover()
    lines = []
    for record in caught:
        if issubclass(record.category, registry.PluginLoadWarning):
            lines.append(f"warning: {record.message}\n")
        else:
            lines.append(warnings.formatwarning(record.message, record.category, record.filename, record.lineno))
    return table_rows(components), "".join(lines)


def _read(path: Path, key: str) -> dict | None:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("key") != key:
        return None
    return cached


def _write(path: Path, content: dict) -> None:
    from lightning_hw.atomic import atomic_open

    try:
        with atomic_open(path) as file:
            json.dump(content, file)
    except OSError:
        pass  # a read-only or full cache directory only costs the next call its speed


def cached_list() -> int:
    """Print the table and the broken plugins' warnings, from the cache when it is current; returns 0."""
    path, key = cache_file(), fingerprint()
    cached = _read(path, key)
    if cached is None:
        rows, problems = load_components()
        cached = {"key": key, "rows": rows, "stderr": problems}
        _write(path, cached)
    sys.stderr.write(cached["stderr"])
    print_table(cached["rows"])
    return 0
