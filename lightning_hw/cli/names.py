"""What a command line names: its ``--config`` files, and the task and datamodule classes it asks for.

The class names are used only to turn jsonargparse's long "does not validate against any
Union subtype" report into one line that names the misspelled class and the closest
available ones. The last value given wins, as in the parser itself.
"""

from __future__ import annotations

from pathlib import Path

import yaml

#: CLI key -> registry kind
KEYS = {"model": "task", "data": "datamodule"}


def option_values(args: list[str], *names: str) -> list[tuple[int, str]]:
    """Each value given to the options ``names``: the index of the argument that holds it, and the value.

    Args:
        args: the command line after the program name; ``--opt VALUE`` and ``--opt=VALUE``
            alike (an option at the very end has the value ``""``, at index ``len(args)``).
        names: the option's spellings, e.g. ``"--config", "-c"``.
    """
    found = []
    for i, arg in enumerate(args):
        key, inline, value = arg.partition("=")
        if key in names:
            found.append((i, value) if inline else (i + 1, args[i + 1] if i + 1 < len(args) else ""))
    return found


def config_arguments(args: list[str]) -> list[tuple[int, str]]:
    """Each ``--config``/``-c`` file of a command line: the index of the argument that holds its path, and the path.

    Every spelling the parser (argparse's, under jsonargparse) takes: ``--config F``,
    ``--config=F``, ``-c F``, ``-c=F`` and ``-cF``.
    """
    attached = [(i, arg[2:]) for i, arg in enumerate(args) if arg.startswith("-c") and len(arg) > 2 and arg[2] != "="]
    return sorted(option_values(args, "--config", "-c") + attached)


def _class_path(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("class_path"), str):
        return value["class_path"]
    return None


def _from_config_file(path: str, subcommand: str | None) -> dict[str, str]:
    try:
        content = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(content, dict):
        return {}
    if subcommand and isinstance(content.get(subcommand), dict):
        content = content[subcommand]
    found = {}
    for key in KEYS:
        name = _class_path(content.get(key))
        if name:
            found[key] = name
    return found


def requested_class_names(args: list[str]) -> dict[str, str]:
    """Map ``model``/``data`` to the class name the arguments ask for (where they name one).

    Args:
        args: the command line after the program name, e.g. ``["fit", "--config", "a.yaml"]``.
    """
    return dict(named_class_names(args))


def named_class_names(args: list[str]) -> list[tuple[str, str]]:
    """Every ``(model|data, class name)`` the arguments name, in order: config files and options alike.

    A name that a later one replaces still has to parse (jsonargparse resolves each config
    file's ``class_path`` as it reads it), so an ambiguous short name in a config fails even
    when the command line names the full class path after it.

    Args:
        args: the command line after the program name, e.g. ``["fit", "--config", "a.yaml"]``.
    """
    subcommand = args[0] if args and not args[0].startswith("-") else None
    found: list[tuple[str, str]] = []
    for i, arg in enumerate(args):
        key, has_inline, value = arg.partition("=")
        if not has_inline:
            value = args[i + 1] if i + 1 < len(args) else ""
        if key in ("--config", "-c"):
            found.extend(_from_config_file(value, subcommand).items())
        for name in KEYS:
            if key not in (f"--{name}", f"--{name}.class_path"):
                continue
            try:
                class_path = _class_path(yaml.safe_load(value) if value.strip().startswith("{") else value)
            except yaml.YAMLError:
                class_path = None
            if class_path and Path(class_path).suffix in (".yaml", ".yml", ".json"):
                # `--model model.yaml` names a file holding the model's class_path and init_args.
                try:
                    class_path = _class_path(yaml.safe_load(Path(class_path).read_text()))
                except (OSError, yaml.YAMLError):
                    class_path = None
            if class_path:
                found.append((name, class_path))
    return found
