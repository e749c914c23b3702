"""Config files that stack in any order: what a preset appends survives a later replacement.

Trainer presets add their callbacks and plugins with jsonargparse's ``callbacks+:`` (append),
while an experiment config sets ``callbacks:`` (the whole list). Given in the documented order
(experiment first, presets after) both are kept; given the other way round, jsonargparse lets
the later list replace the appended items and ``compile.yaml`` or ``gpu.yaml`` would silently do
nothing. Here every item a file appends is appended again after each later file that replaces
that list (unless that list already holds the class, as a run's saved config does), so the
result does not depend on the order of the files. An option given to such an item while it was
last in its list (``--trainer.callbacks.init_args.backend aot_eager`` right after
``compile.yaml``) is given again after it: the later file would otherwise drop it unsaid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_hw.cli.names import config_arguments

SECTION = "trainer"  # the section presets append to (callbacks+, plugins+)


def keep_appended_items(args: list[str]) -> list[str]:
    """``args`` with what earlier ``--config`` files appended re-appended after a file that replaces it.

    Args:
        args: the command line after the program name; its config files were checked already.

    Returns:
        The command line to parse: ``args`` itself when no file replaces a list another
        file appended to, else with ``--trainer.<list>+ <item>`` after each such file.

    Example:
        ``--config compile.yaml --config e5_finetune.yaml`` (which sets ``trainer.callbacks``)
        becomes ``--config compile.yaml --config e5_finetune.yaml --trainer.callbacks+
        '{class_path: ...CompileNet, ...}'``.
    """
    appended: dict[str, list[_Appended]] = {}  # list name -> the items earlier files appended to it
    last: dict[str, _Appended | None] = {}  # list name -> its last item, when a file appended it
    files = dict(config_arguments(args))  # index of the argument holding a file's path -> the path
    result: list[str] = []
    for i, arg in enumerate(args):
        result.append(arg)
        name = _list_addressed(arg)
        if name is not None and not arg.startswith(f"--{SECTION}.{name}."):
            last[name] = None  # the list set or appended to on the command line: its last item is not a file's
        elif name is not None and last.get(name) is not None:
            # jsonargparse gives --trainer.<list>.<option> to the list's last item: keep it with that item
            last[name].options += [arg] if "=" in arg or i + 1 >= len(args) else [arg, args[i + 1]]
        if i not in files:
            continue
        section = _trainer_section(files[i])
        for name in [n for n in section if not n.endswith("+")]:
            present = {_class_name(item) for item in _as_list(section[name])}
            last[name] = None
            for entry in appended.get(name, []):
                if _class_name(entry.item) not in present:  # e.g. a run's saved config already holds it
                    result += [f"--{SECTION}.{name}+", _as_value(entry.item), *entry.options]
                    last[name] = entry
        for name, items in section.items():
            if name.endswith("+") and _as_list(items):
                entries = [_Appended(item) for item in _as_list(items)]
                appended.setdefault(name[:-1], []).extend(entries)
                last[name[:-1]] = entries[-1]
    return result


@dataclass
class _Appended:
    """An item a config file appended to a list, and the options given to it on the command line since."""

    item: Any
    options: list[str] = field(default_factory=list)


def _list_addressed(arg: str) -> str | None:
    """The trainer list an option sets or addresses (``callbacks`` for ``--trainer.callbacks.init_args.x=1``), or ``None``."""
    prefix = f"--{SECTION}."
    if not arg.startswith(prefix):
        return None
    name = arg[len(prefix):].partition("=")[0].split(".")[0].rstrip("+")
    return name or None


def _as_list(items) -> list:
    return items if isinstance(items, list) else [] if items is None else [items]


def _as_value(item) -> str:
    """An appended item as a command-line value: one line of YAML, which keeps ``.inf`` and dates as written."""
    if isinstance(item, str):
        return item
    return yaml.safe_dump(item, default_flow_style=True, sort_keys=False, width=float("inf")).strip()


def _class_name(item) -> str:
    """``ModelCheckpoint`` for ``ModelCheckpoint``, ``lightning...ModelCheckpoint`` or its mapping."""
    path = item.get("class_path", "") if isinstance(item, dict) else str(item)
    return str(path).rsplit(".", 1)[-1]


def _trainer_section(path: str) -> dict:
    """The ``trainer:`` mapping of a config file, with its dotted keys (``trainer.callbacks:``); empty when none."""
    try:
        content = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}  # reported by check_config_files; nothing to keep
    if not isinstance(content, dict):
        return {}
    section = content.get(SECTION)
    section = dict(section) if isinstance(section, dict) else {}
    prefix = f"{SECTION}."
    section.update({key[len(prefix):]: value for key, value in content.items() if isinstance(key, str) and key.startswith(prefix)})
    return section
