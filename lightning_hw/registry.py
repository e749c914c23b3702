"""Discovery of tasks and datamodules through Python entry points.

Built-ins are registered in our own ``pyproject.toml`` exactly as a plugin registers
its classes, so the CLI knows no class that is not listed here. Importing a class is
all jsonargparse needs to resolve a short ``class_path: Classifier`` (it searches the
imported subclasses of ``LightningModule``), so :func:`discover` must run before the
CLI parses anything.

Lightning's own loader for external callbacks is a plain loop; this one isolates
every plugin (a broken import is one warning, never a dead CLI), remembers which
distribution provided what, and suggests close names for typos.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

from lightning_hw.errors import LightningHWWarning

#: kind -> entry-point group
GROUPS = {"task": "lightning_hw.tasks", "datamodule": "lightning_hw.datamodules"}


class PluginLoadWarning(LightningHWWarning):
    """A plugin's entry point could not be imported or is not a usable class."""


@dataclass(frozen=True)
class Component:
    """One entry point of a task or datamodule group.

    Args:
        kind: ``"task"`` or ``"datamodule"``.
        name: the short name (the entry point's name, equal to the class name).
        target: the entry point's value, ``module:Class``.
        distribution: the installed distribution that declares it.
        obj: the loaded class, or ``None`` when loading failed.
        error: why loading failed, in one line.
        details: the traceback of a failed import (shown by ``--debug``).
    """

    kind: str
    name: str
    target: str
    distribution: str
    obj: type | None = None
    error: str | None = None
    details: str | None = None

    @property
    def class_path(self) -> str:
        """The full dotted path, usable as ``class_path`` in any config."""
        return self.target.replace(":", ".")

    @property
    def description(self) -> str:
        """First line of the class's own docstring (``""`` without one).

        Not :func:`inspect.getdoc`, which gives an undocumented class its base's docstring: a
        plugin task without one was listed as "Base class of lightning-hw tasks (and of plugin tasks)."
        """
        doc = inspect.cleandoc(self.obj.__doc__) if self.obj is not None and self.obj.__doc__ else None
        return doc.strip().splitlines()[0] if doc else ""


def _base_class(kind: str) -> type:
    from lightning.pytorch import LightningDataModule, LightningModule

    return LightningModule if kind == "task" else LightningDataModule


def _import_fix(distribution: str, target: str, reason: str) -> str:
    """What to do about a plugin that failed to import, given why (its first error line).

    A module the plugin imports and that is not installed (``No module named 'pandas'``) is
    fixed by installing it: "fix it or uninstall it" would send a user into working code. A
    missing module of the plugin's own package is the plugin's mistake (a misspelt entry point).

    Args:
        distribution: the plugin's distribution name.
        target: its entry point's value, ``module:Class``.
        reason: the import error's first line.
    """
    missing = re.match(r"ModuleNotFoundError: No module named '([^']+)'", reason)
    needed = missing.group(1).split(".")[0] if missing else None
    if needed and needed != target.split(":")[0].split(".")[0]:
        return (
            f"install the module it needs, {needed!r} (often `pip install {needed}`; the package's name may differ), "
            f"or uninstall the plugin (pip uninstall {distribution})"
        )
    return f"fix it or uninstall it (pip uninstall {distribution})"


def _load(kind: str, ep) -> Component:
    dist = ep.dist.name if ep.dist is not None else "unknown distribution"
    fix = f"fix it or uninstall it (pip uninstall {dist})"
    try:
        obj = ep.load()
    # SystemExit too: a plugin that calls sys.exit() on import must not end the CLI.
    except (Exception, SystemExit) as err:  # noqa: BLE001 - any plugin error must stay contained
        reason = (f"{type(err).__name__}: {err}".strip().splitlines() or [type(err).__name__])[0]
        fix = _import_fix(dist, ep.value, reason)
        if isinstance(err, AttributeError) and ep.module in sys.modules:
            # The module imported; only the name after ':' is wrong. Its classes are imported, so a
            # config naming one still finds it: "failed to import and is skipped" would be untrue.
            said = f"names {ep.attr!r}, which its module {ep.module} does not define ({reason})"
            fix = "fix the entry point in the plugin's pyproject.toml and reinstall it (pip install -e its folder)"
        elif _misspelt_module(ep.value, reason):
            # Said by discover() once every entry point has loaded: the plugin's other entry points
            # may import the module the class is really in, and then configs still find the class.
            return Component(kind, ep.name, ep.value, dist, None, reason, traceback.format_exc())
        else:
            said = f"failed to import and is skipped: {reason}"
        warnings.warn(f"plugin {dist!r}: {kind} {ep.name!r} ({ep.value}) {said}; {fix}", PluginLoadWarning, stacklevel=3)
        return Component(kind, ep.name, ep.value, dist, None, reason, traceback.format_exc())
    if not (inspect.isclass(obj) and issubclass(obj, _base_class(kind))):
        reason = f"{ep.value} is not a {_base_class(kind).__name__} subclass"
        warnings.warn(f"plugin {dist!r}: {kind} {ep.name!r} skipped: {reason}; {fix}", PluginLoadWarning, stacklevel=3)
        return Component(kind, ep.name, ep.value, dist, None, reason)
    if ep.name != obj.__name__:
        # jsonargparse resolves a short class_path by the class's name, never by the entry point's.
        warnings.warn(
            f"plugin {dist!r}: {kind} entry point {ep.name!r} ({ep.value}) is not named as its class {obj.__name__}, "
            f"and configs name the class: rename the entry point to {obj.__name__} in the plugin's pyproject.toml "
            "and reinstall it (pip install -e its folder)",
            PluginLoadWarning,
            stacklevel=3,
        )
    return Component(kind, ep.name, ep.value, dist, obj)


@functools.cache
def discover() -> tuple[Component, ...]:
    """Import every registered task and datamodule once per process.

    Returns:
        All components, loaded or failed, in a stable order (kind, name, distribution).
    """
    found: dict[tuple[str, str, str], Component] = {}
    for kind, group in GROUPS.items():
        for ep in entry_points(group=group):
            dist = ep.dist.name if ep.dist is not None else ""
            # The same distribution can be visible twice on sys.path (editable + build dir).
            key = (kind, ep.name, f"{dist}:{ep.value}")
            if key not in found:
                found[key] = _load(kind, ep)
    components = tuple(sorted(found.values(), key=lambda c: (c.kind, c.name, c.distribution)))
    for comp in components:
        if comp.error and _misspelt_module(comp.target, comp.error):
            _warn_about_misspelt_module(comp, components)
    _warn_about_clashes(components)
    return components


def _misspelt_module(target: str, reason: str) -> str | None:
    """The module an entry point names that does not exist, when it is the entry point's own (``module:Class``).

    Args:
        target: the entry point's value, ``module:Class``.
        reason: its import error's first line.
    """
    missing = re.match(r"ModuleNotFoundError: No module named '([^']+)'", reason)
    module = target.split(":")[0]
    if missing and (module == missing.group(1) or module.startswith(missing.group(1) + ".")):
        return missing.group(1)
    return None


def _warn_about_misspelt_module(comp: Component, components: tuple[Component, ...]) -> None:
    """Warn about an entry point naming a module that does not exist (``MyTask = my_plugn:MyTask``).

    When another entry point of the same plugin imported the module that defines a class of
    that name, configs naming it still find it (jsonargparse resolves a short name among the
    imported classes): the entry point is broken, but its class is not skipped.
    """
    attr = comp.target.split(":")[-1]
    imported_by = None
    for other in components:
        module = sys.modules.get(other.obj.__module__) if other.obj is not None and other.distribution == comp.distribution else None
        cls = getattr(module, attr, None)
        if inspect.isclass(cls) and issubclass(cls, _base_class(comp.kind)):
            imported_by = other
            break
    head = f"plugin {comp.distribution!r}: {comp.kind} {comp.name!r} ({comp.target})"
    if imported_by is None:
        said = f"failed to import and is skipped: {comp.error}; {_import_fix(comp.distribution, comp.target, comp.error)}"
    else:
        said = (
            f"names module {_misspelt_module(comp.target, comp.error)}, which does not exist ({comp.error}); its class is "
            f"still available as {imported_by.obj.__module__}.{attr} (that module is imported by the plugin's "
            f"{imported_by.kind} entry point {imported_by.name!r}), so configs naming {attr} use it; fix the entry point "
            "in the plugin's pyproject.toml and reinstall it (pip install -e its folder)"
        )
    warnings.warn(f"{head} {said}", PluginLoadWarning, stacklevel=4)


def _warn_about_clashes(components: tuple[Component, ...]) -> None:
    by_name: dict[tuple[str, str], list[Component]] = {}
    for comp in components:
        if comp.obj is not None:
            by_name.setdefault((comp.kind, comp.name), []).append(comp)
    for (kind, name), comps in by_name.items():
        # One class registered under two entry points (a re-export) is no clash.
        if len({id(c.obj) for c in comps}) > 1:
            warnings.warn(
                f"{kind} {name!r} is provided by several plugins; write the full class path in your config: "
                f"{_options(comps)}",
                PluginLoadWarning,
                stacklevel=3,
            )


def _options(comps: list[Component]) -> str:
    return " or ".join(f"{c.class_path} (from {c.distribution})" for c in comps)


def available(kind: str) -> list[Component]:
    """Loaded components of one kind (failed ones excluded)."""
    return [c for c in discover() if c.kind == kind and c.obj is not None]


def unknown_name_message(kind: str, name: str) -> str:
    """One line saying that ``name`` is not a known ``kind``, with the closest names.

    Args:
        kind: ``"task"`` or ``"datamodule"``.
        name: what the user wrote.
    """
    failed = next((c for c in discover() if c.kind == kind and c.error and name in (c.name, c.class_path)), None)
    if failed is not None:
        # A name that was registered: suggesting a similar one would hide why this one is gone.
        return (
            f"{kind} {name!r} is not available: its plugin {failed.distribution} failed to import: {failed.error} "
            f"({_import_fix(failed.distribution, failed.target, failed.error)}; --debug shows the traceback)"
        )
    names = sorted({c.name for c in available(kind)})
    wanted = name.rsplit(".", 1)[-1]
    if _package_absent(name):
        # A class of an uninstalled plugin: a similar name from another plugin would not fit its
        # checkpoint or config; only the same class found elsewhere (a moved module) is worth naming.
        close = [wanted] if wanted in names else []
    else:
        close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    listing = ", ".join(names) if names else "none (is lightning-hw installed?)"
    problem = _class_path_problem(name)
    if problem:
        return f"unknown {kind} {name!r}: {problem}; {hint}installed: {listing} (see `python -m lightning_hw list`)"
    return f"unknown {kind} {name!r}; {hint}available: {listing} (see `python -m lightning_hw list`)"


def _package_absent(name: str) -> bool:
    """Whether ``name`` is a dotted class path whose top-level package is not installed (found without importing it)."""
    if "." not in name:
        return False
    try:
        return importlib.util.find_spec(name.split(".", 1)[0]) is None
    except (ImportError, ValueError):
        return False


def _class_path_problem(name: str) -> str | None:
    """Why a dotted ``module.Class`` does not import, in a few words (``None`` for a short name or a class).

    Args:
        name: what the user wrote, e.g. ``some_plugin.data.Foo``.
    """
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        return None
    if _package_absent(name):  # the whole package is absent: a plugin that is not installed
        top = module_name.split(".", 1)[0]
        return (
            f"there is no module {top}; is its plugin installed? "
            f"(pip install the package that provides {top}, or pip install -e its folder)"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):  # package there, module not
            return f"there is no module {missing}"
        return f"module {module_name} failed to import: {_first_line(err)}"
    except (Exception, SystemExit) as err:  # noqa: BLE001 - a module that fails on import must not end the CLI
        return f"module {module_name} failed to import: {_first_line(err)}"
    if not hasattr(module, attr):
        return f"module {module_name} has no {attr}"
    return None


def renamed_class_hint(name: str, trained: str | None) -> str:
    """What to do when a recorded run names a class its module no longer has (``""`` otherwise).

    A run's ``config.yaml`` and checkpoints name the class it was trained with: a class renamed
    since (``module.Old`` gone, ``module.New`` there) keeps the run loadable only under its old
    name, as this package's own ``_moved.py`` does for its modules.

    Args:
        name: the class path that does not resolve, e.g. ``my_plugin.task.MyPluginTask``.
        trained: what was trained with it (``the run runs/g/r``), or ``None`` when nothing recorded names it.
    """
    module_name, _, attr = name.rpartition(".")
    if not module_name or trained is None:
        return ""
    try:
        module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - a module that does not import is no rename; the message says why
        return ""
    if hasattr(module, attr):
        return ""
    return (
        f"; {trained} was trained with it: if {attr} was renamed, add `{attr} = <its new name>` to "
        f"{module_name} so that runs trained before the rename still load"
    )


def _first_line(err: BaseException) -> str:
    return (f"{type(err).__name__}: {err}".strip().splitlines() or [type(err).__name__])[0]


def providers(kind: str, name: str) -> list[Component]:
    """The loaded components registered under the short ``name`` (more than one class: a clash)."""
    return [c for c in available(kind) if c.name == name]


def ambiguous_name_message(kind: str, name: str) -> str | None:
    """One line saying which full class paths to choose from, if several classes share the short ``name``.

    Args:
        kind: ``"task"`` or ``"datamodule"``.
        name: what the user wrote.
    """
    comps = providers(kind, name)
    if len({id(c.obj) for c in comps}) < 2:
        return None
    return f"{kind} {name!r} is ambiguous: several plugins provide it; write its full class path: {_options(comps)}"


def entry_point_name_message(kind: str, name: str) -> str | None:
    """One line saying that ``name`` is an entry point's name, not its class's (which is what configs write).

    Args:
        kind: ``"task"`` or ``"datamodule"``.
        name: what the user wrote.
    """
    comp = next((c for c in available(kind) if c.name == name and c.obj.__name__ != name), None)
    if comp is None:
        return None
    return (
        f"{kind} {name!r} is the entry-point name of class {comp.obj.__name__} (from {comp.distribution}); "
        f"configs name the class: write {comp.obj.__name__} or {comp.class_path}"
    )


def import_class(name: str, kind: str | None = None) -> type | None:
    """The class a config names: a full ``module.Class`` path, or a registered short name of ``kind``.

    The one place lightning-hw turns a class name into a class (the CLI's data links, the
    error explanations, studies reading a config's task). ``None`` when nothing importable
    of that name exists (or, with ``kind``, when it is not a class of that kind).

    Args:
        name: ``lightning_hw.tasks.classification.Classifier``, or ``Classifier`` with ``kind``.
        kind: ``"task"`` or ``"datamodule"``; short names resolve only with it.
    """
    if kind is not None:
        registered = next((c.obj for c in available(kind) if name in (c.name, c.class_path)), None)
        if registered is not None:
            return registered
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        return None
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except Exception:  # noqa: BLE001 - a module that fails to import does not resolve, whatever its error
        return None
    if not inspect.isclass(obj) or (kind is not None and not issubclass(obj, _base_class(kind))):
        return None
    return obj


def resolves(kind: str, name: str) -> bool:
    """Whether ``name`` is a registered short name or an importable class path of this kind."""
    return import_class(name, kind) is not None
