"""Turn jsonargparse's multi-line parse errors into one line that says what to change.

jsonargparse reports, for instance, a misspelled ``--model.init_args.hed`` as ten lines about
"Union subtypes" and ``NestedArg``; the user needs "Classifier has no option 'hed'; did you
mean head?". Each known shape of report is recognised by its wording (jsonargparse has no
structured errors); anything else is folded into one line, so nothing is ever lost.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from pathlib import Path

import yaml

from lightning_hw._compat.argparse import parser_actions
from lightning_hw.cli.commands import SUBCOMMANDS, program_name, unknown_command_message
from lightning_hw.cli.names import config_arguments
from lightning_hw.errors import ConfigError

#: module whose classes a class-typed option may name by short name
CLASS_SOURCES = {
    "trainer.callbacks": "lightning.pytorch.callbacks",
    "trainer.logger": "lightning.pytorch.loggers",
    "optimizer": "torch.optim",
    "lr_scheduler": "torch.optim.lr_scheduler",
}


def check_config_files(args: list[str]) -> None:
    """Fail in one line on a ``--config`` file that is missing, not YAML, empty, or not a mapping.

    Args:
        args: the command line after the program name.
    """
    for _, value in config_arguments(args):
        path = Path(value)
        if not value or not path.is_file():
            hint = " (it is a directory)" if value and path.is_dir() else ""
            raise ConfigError(f"config file not found: {value or '(none given)'}{hint}")
        try:
            content = yaml.safe_load(path.read_text())
        except UnicodeDecodeError:
            raise ConfigError(f"config file {value} is not YAML (it is not even text)") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"config file {value} is not valid YAML: {problem}{where}") from None
        if content is None:  # jsonargparse would say only "Unexpected config"
            raise ConfigError(
                f"config file {value} is empty (or only comments); give a YAML mapping of sections "
                "(trainer:, model:, data:, ...), or leave the file out"
            )
        if not isinstance(content, dict):
            raise ConfigError(
                f"config file {value} must be a YAML mapping of sections (trainer:, model:, data:, ...), "
                f"not a {type(content).__name__}"
            )


def _suggest(name: str, candidates: list[str], n: int = 3) -> str:
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _options(parser) -> list[str]:
    """Every ``--option`` a (sub)parser accepts, without the per-class ``.help`` entries."""
    names = []
    for action in parser_actions(parser):
        for option in action.option_strings:
            if option.startswith("--") and not option.endswith((".help", "+")):
                names.append(option)
    return names


def _class_options(class_path: str) -> list[str]:
    """The init parameters of a class (following ``**kwargs`` into base classes, as jsonargparse does)."""
    try:
        from jsonargparse import ArgumentParser

        from lightning_hw.registry import import_class

        cls = import_class(class_path)
        if cls is None:
            return []
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, fail_untyped=False)
        return [o[2:] for o in _options(parser) if o not in ("--help", "--config", "--print_config")]
    except Exception:  # noqa: BLE001 - suggestions are a courtesy; never fail while explaining a failure
        try:
            return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        except Exception:  # noqa: BLE001
            return []


def _class_names(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    return [n for n, obj in vars(module).items() if inspect.isclass(obj) and not n.startswith("_")]


def _own_callback(name: str) -> str | None:
    """The full class path of lightning-hw's callback called ``name`` (``None`` when there is none)."""
    import pkgutil

    import lightning_hw.callbacks as package

    for info in pkgutil.iter_modules(package.__path__):
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except ImportError:
            continue
        found = vars(module).get(name)
        if inspect.isclass(found) and found.__module__ == module.__name__:
            return f"{module.__name__}.{name}"
    return None


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


#: WandbLogger's arguments that a ``run:`` option sets (the run's W&B logger is built from ``run:``)
RUN_LOGGER_OPTIONS = {
    "project": "project", "tags": "tags", "notes": "notes", "job_type": "job_type",
    "name": "name", "group": "group", "offline": "wandb", "mode": "wandb",
    # Where the run is written: runs/<group>/<name> under run.root (W&B's files go inside the run).
    "save_dir": "root", "dir": "root",
}


def _option_without_class(path: str, key: str, value: str) -> str:
    """One line for ``--<path>.init_args.<key> <value>`` given where ``path`` names no class.

    ``trainer.logger`` is the common case: LightningCLI's way to set W&B's project. The run's
    loggers (``metrics.csv`` and W&B) are built from the ``run:`` options instead, so the line
    names the one to use.
    """
    given = f"--{path} option {key}={value}"
    if path != "trainer.logger":
        return f"{given}: no class is named yet to take it; name the class first: --{path} CLASS --{path}.init_args.{key} {value}"
    where = "the run's loggers (metrics.csv and W&B) are set with run: options, not trainer.logger"
    run_option = RUN_LOGGER_OPTIONS.get(key)
    if run_option == "wandb":
        # offline=true / mode=offline both mean --run.wandb offline; offline=false means online.
        mode = value if key == "mode" else ("offline" if value.lower() in ("true", "1", "yes") else "online")
        return f"{given}: {where}; use --run.wandb {mode}"
    if run_option:
        return f"{given}: {where}; use --run.{run_option} {value}"
    return f"{given}: {where}; give them with --run.project, --run.tags, --run.notes, --run.job_type, --run.wandb, --run.root"


def config_files_setting(key: str, args: list[str], subcommand: str | None = None) -> list[str]:
    """The ``--config`` files among ``args`` that set the dotted ``key`` (``trainer.max_epoch``), in order.

    With presets stacked (``--config configs/resnet152.yaml --config configs/trainer/gpu.yaml``)
    an unknown key's message names the file to fix. A file that cannot be read names nothing:
    jsonargparse has said what it read.
    """
    setting = []
    for _, file in config_arguments(list(args)):
        try:
            content = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        for root in (content, content.get(subcommand) if subcommand and isinstance(content, dict) else None):
            node = root
            for part in key.split("."):
                node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if node is not _MISSING:
                setting.append(file)
                break
    return setting


_MISSING = object()


def _list_item_hint(name: str, cls: str, args: list[str]) -> str:
    """Where to give ``--trainer.callbacks.init_args.<name>`` when it reached another callback than meant.

    jsonargparse gives such an option to the last item of the list at that point of the command
    line: after a preset that appends its own callbacks (gpu.yaml after compile.yaml), that is
    the preset's last one, not the callback the option was meant for.

    Args:
        name: the option the class refused.
        cls: the class that refused it.
        args: the command line.
    """
    for list_name, item in (("callbacks", "callback"), ("plugins", "plugin")):
        spellings = {f"--trainer.{list_name}.init_args.{name}", f"--trainer.{list_name}.{name}"}
        given = next((arg.partition("=")[0] for arg in args if arg.partition("=")[0] in spellings), None)
        if given:
            return (
                f"; {given} goes to the last {item} given before it, here {cls}: give it right after the "
                f"--config that adds the {item} you mean"
            )
    return ""


def explain(message: str, subcommand: str | None, subparser=None, args: list[str] | None = None) -> str:
    """One readable line for a jsonargparse error message.

    Args:
        message: ``str()`` of the ``ArgumentError``.
        subcommand: the subcommand given (``fit``, ...), if any.
        subparser: the subcommand's parser, to suggest option names.
        args: the command line, to name the config file that sets an unknown key.
    """
    help_hint = f"{program_name()} {subcommand or ''} --help".replace("  ", " ")

    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if found:
        return unknown_command_message(found.group(1))
    if re.search(r'expected "subcommand" to be one of .* but it was not provided', message):
        return f"no command given; commands: {', '.join(SUBCOMMANDS)} (see {program_name()} --help)"

    found = re.search(r"unrecognized arguments: (.*)", message)
    if found:
        tokens = found.group(1).split()
        option = next((t.split("=", 1)[0] for t in tokens if t.startswith("-")), tokens[0] if tokens else "")
        return f"unknown option {option}{_suggest(option, _options(subparser))} (options: {help_hint})"

    found = re.search(r"does not accept option '([^']+)'", message)
    if found:
        option = "--" + found.group(1)
        suggestion = _suggest(option, _options(subparser)).replace("--", "")
        files = config_files_setting(found.group(1), args or [], subcommand)
        where = f"in {', '.join(files)}" if files else "in a config file?"
        return f"unknown option '{found.group(1)}' ({where}){suggestion} (options: {help_hint})"

    found = re.search(r"Option '([^']+)' is not accepted", message)
    if found:
        name = found.group(1)
        line = next(line for line in message.splitlines() if found.group(0) in line)
        inner = re.search(r"class_path='([\w.]+)'", line)
        outer = re.findall(r"class_path '([\w.]+)'", message[: message.find(found.group(0))])
        class_path = inner.group(1) if inner else (outer[-1] if outer else "")
        accepted = _class_options(class_path) if class_path else []
        cls = class_path.rsplit(".", 1)[-1] or "the class"
        if "expects a function or a callable class" in line:
            # A factory (a net: NetFactory) is called with the sizes as its first arguments, so
            # jsonargparse takes the class's first parameters for them and refuses them in init_args.
            sizes, options = accepted[:2], accepted[2:]
            if name in sizes and name in ("input_shape", "num_outputs"):
                return (
                    f"{cls}'s {name} is not set in its init_args: the task gives it, calling {cls}(input_shape, "
                    f"num_outputs, ...) with the data's input shape and its output head's size; remove {name}"
                )
            if name in sizes:
                return (
                    f"{cls} cannot be a net: the task calls it as {cls}(input_shape, num_outputs, ...), so its first "
                    f"two init parameters must be input_shape and num_outputs ({cls}({', '.join(accepted)}))"
                )
            accepted = options
        listing = f" (accepted: {', '.join(accepted)})" if accepted else ""
        return f"{cls} has no option '{name}'{_suggest(name, accepted)}{listing}{_list_item_hint(name, cls, args or [])}"

    keys = re.findall(r'Parser key "([^"]+)"', message)
    path = keys[0] + "".join(f".init_args.{k}" for k in keys[1:]) if keys else ""

    # A class_path whose module imports but holds no such class (a misspelled callback): jsonargparse
    # reports it inside a Union report (from a config) or as "expected a path" (on the command line).
    found = re.search(r"Problem with given class_path '([\w.]+)':\s*module '([\w.]+)' has no attribute '(\w+)'", message)
    if found and path:
        class_path, module, name = found.groups()
        try:
            candidates = [n for n, v in vars(importlib.import_module(module)).items() if inspect.isclass(v)]
        except Exception:  # noqa: BLE001 - the suggestion is a courtesy; the line stands without it
            candidates = []
        return f"--{path}: no class named '{class_path}': {module} has no {name}{_suggest(name, candidates)}"

    found = re.search(r"Import path (?:'?[\w.]+'? )?does not correspond to a subclass of (\w+)", message)
    given = re.search(r"(?:Given value|Got value): (.*)", message)
    if found and keys and given:
        base = found.group(1)
        return f"--{keys[0]}: {given.group(1).strip()} is not a subclass of {base}"

    found = re.search(r"Expected a dot import path string: ?'?([\w.]+)'?", message)
    if found and keys and keys[0] in CLASS_SOURCES:
        name = found.group(1)
        ours = _own_callback(name) if keys[0] == "trainer.callbacks" else None
        if ours:  # a short name resolves only for classes already imported; ours are not, until named
            return f"--{keys[0]}: '{name}' is lightning-hw's {ours}, which a short name does not find: give that full class_path"
        return f"--{keys[0]}: no class named '{name}'{_suggest(name, _class_names(CLASS_SOURCES[keys[0]]))}"

    found = re.search(r"File does not exist: '?([^'\n]+)'?", message)
    if found:
        return f"--{path or 'config'}: file not found: {found.group(1)}"

    # `--trainer.logger.init_args.project x` where no class is named yet: jsonargparse holds the
    # option as a NestedArg and refuses that as the option's value. It holds one too for a bad
    # value of a class that is named (`--data.init_args.splits 0.5`), and then says what the
    # named class refused ("Problem with given class_path"): that is said below, as the value's type.
    found = re.search(r"Given value: NestedArg\(key='([^']*)', val=(.*)\)\s*$", message)
    if found and path and "Problem with given class_path" not in message:
        # The value as the user typed it, ready to paste: without Python's quotes, a list as `[a,b]`.
        value = re.sub(r"['\"]", "", found.group(2).strip()).replace(", ", ",")
        return _option_without_class(path, found.group(1), value)

    expected = [
        line.strip().lstrip("- ")
        for line in message.splitlines()
        if line.strip().lstrip("- ").startswith("Expected") and "NoneType" not in line
    ]
    if path and expected:
        what = re.sub(r"Expected an? <class '(\w+)'>", r"\1", expected[-1])
        what = re.sub(r"Expected an? typing\.Literal\[(.*)\]", r"one of \1", what)
        what = re.sub(r"\.? ?Got value: .*", "", what)
        if what and what[0].isupper():
            what = what[0].lower() + what[1:]
        else:
            what = f"expected {what}"
        shown = f", got {given.group(1).strip()}" if given else ""
        if what == "expected list" and given:
            # One value where a list belongs (`--run.tags e1`): the two ways to say it.
            value = given.group(1).strip()
            shown += f"; give a list, --{path} '[{value}]', or add one item with --{path}+ {value}"
        return f"--{path}: {what}{shown}"

    return f"{_one_line(message)} (options: {help_hint})"
