"""``python -m lightning_hw new-plugin NAME``: write a plugin package that installs and runs as is.

    python -m lightning_hw new-plugin my-plugin --dir ~/code
    pip install -e ~/code/my-plugin && python -m pytest ~/code/my-plugin

The package has a pyproject with both entry points, a task, a datamodule, a config
that uses their short names, and a test (see :mod:`lightning_hw.scaffold.templates`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import keyword
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from lightning_hw.atomic import current_umask
from lightning_hw.errors import ConfigError, UserError
from lightning_hw.scaffold.templates import FILES

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*")


@dataclass(frozen=True)
class PluginNames:
    """The names derived from a plugin's NAME.

    Args:
        dist: the distribution name (``pip install``/``pip uninstall`` use it), NAME itself.
        module: the import name: lower case, ``-`` replaced by ``_``.
        task: the task class and its entry-point name, ``<CamelCase NAME>Task``.
        data: the datamodule class and its entry-point name, ``<CamelCase NAME>Data``.
    """

    dist: str
    module: str
    task: str
    data: str

    @classmethod
    def from_name(cls, name: str) -> PluginNames:
        """Check ``name`` and derive the others from it.

        Raises:
            ConfigError: the name is no valid distribution name, names an installed distribution
                (``pip install -e`` would replace it), or its module name is a Python keyword or
                already importable (the plugin would shadow that module).
        """
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"plugin name {name!r} is not usable: start with a letter, then letters, digits and "
                f"single '-' or '_' between them (e.g. my-plugin)"
            )
        module = name.lower().replace("-", "_")
        if keyword.iskeyword(module):
            raise ConfigError(f"plugin name {name!r} gives the module name {module!r}, a Python keyword; choose another")
        if importlib.util.find_spec(module) is not None:
            raise ConfigError(
                f"a module named {module!r} is already importable, so plugin {name!r} would clash with it; "
                f"choose another name"
            )
        try:
            # Names compare normalised (PEP 503). `pip install -e` of a plugin called Pillow or
            # scikit_learn would uninstall that distribution, whatever module name the plugin gets.
            installed = importlib.metadata.distribution(name).metadata["Name"]
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed:
            raise ConfigError(
                f"a distribution named {installed!r} is already installed, and `pip install -e` of plugin {name!r} "
                f"would replace it; choose another name"
            )
        prefix = "".join(part[0].upper() + part[1:] for part in re.split(r"[-_]", name))
        return cls(dist=name, module=module, task=f"{prefix}Task", data=f"{prefix}Data")


def write_plugin(name: str, parent: Path) -> tuple[Path, PluginNames]:
    """Write the plugin package ``parent/name``.

    Args:
        name: the plugin's distribution name, e.g. ``my-plugin``.
        parent: the directory to create it in.

    Returns:
        The package directory and the names used.

    Raises:
        ConfigError: bad name, ``parent`` is a file, ``parent/name`` exists and is not an empty
            directory, or the files could not be written (then nothing is left behind).
    """
    names = PluginNames.from_name(name)
    root = parent / name
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"--dir {parent} is a file, not a directory; pass a directory to create {name}/ in")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} already exists and is a file; choose another NAME or --dir")
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} already exists and is not empty; choose another NAME or --dir")
    values = {"dist": names.dist, "module": names.module, "task": names.task, "data": names.data}
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # Written beside its place and renamed into it: a failure leaves no half package.
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
        try:
            for relative, text in FILES.items():
                path = staging / Template(relative).substitute(values)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(Template(text).substitute(values))
            staging.chmod(0o777 & ~current_umask())  # mkdtemp's is private (0700)
            staging.replace(root)  # an empty directory at root is replaced too
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except OSError as err:
        raise ConfigError(f"could not write the plugin to {root}: {err.strerror or err}") from err
    return root, names


def new_plugin_main(argv: list[str], debug: bool = False) -> int:
    """The ``new-plugin`` subcommand: parse ``argv``, write the package, say what to do next.

    Args:
        argv: the arguments after ``new-plugin``, e.g. ``["my-plugin", "--dir", "plugins"]``.
        debug: raise errors with their traceback instead of printing one line.

    Returns:
        The exit code: 0, or the error's code after printing ``error: ...``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m lightning_hw new-plugin",
        description="Write a lightning-hw plugin package (a task, a datamodule, a config, a test) that installs "
        "with pip and runs as is.",
    )
    parser.add_argument("name", metavar="NAME", help="distribution name of the plugin, e.g. my-plugin")
    parser.add_argument("--dir", default=".", help="directory to create the package NAME/ in (default: .)")
    args = parser.parse_args(argv)
    try:
        root, names = write_plugin(args.name, Path(args.dir))
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    files = "\n".join(f"  {p.relative_to(root)}" for p in sorted(root.rglob("*")) if p.is_file())
    # Quoted for the shell, so that each command runs as shown under a --dir such as "my code".
    package, config = shlex.quote(str(root)), shlex.quote(str(root / "configs" / (names.module + ".yaml")))
    print(
        f"Created the plugin {names.dist} in {root}:\n{files}\n"
        f"Task {names.task} and datamodule {names.data} are declared as entry points in pyproject.toml. Next:\n"
        f"  pip install -e {package}\n"
        f"  python -m lightning_hw list\n"
        f"  python -m lightning_hw fit --config {config}\n"
        f"  python -m pytest {package}"
    )
    return 0
