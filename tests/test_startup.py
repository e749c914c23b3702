"""Quick answers: --help, a mistyped command, `list` from its cache and our subcommands' --help.

Timing would be a flaky test on a shared machine; what makes these commands slow is importing
torch and Lightning, so the tests check, in a fresh interpreter, that neither was imported.
The `list` cache is checked for its invalidation: installing, upgrading, reinstalling or
removing a plugin distribution, or editing a plugin's module, must each change its key.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lightning_hw.cli import listing
from lightning_hw.cli.entry import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning")

# Runs `python -m lightning_hw ARGS` and then says, as its last stderr line, which heavy modules it imported.
PROBE = textwrap.dedent(
    """
    import runpy, sys
    sys.argv = ["lightning_hw", *sys.argv[1:]]
    try:
        runpy.run_module("lightning_hw", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
    else:
        code = 0
    sys.stderr.write("\\nimported: " + ",".join(m for m in {heavy!r} if m in sys.modules) + "\\n")
    sys.exit(code)
    """
).format(heavy=HEAVY)


def run_cli(*args: str, cache: Path, site: Path | None = None) -> tuple[int, str, str, set[str]]:
    """Run the CLI in a fresh interpreter: exit code, stdout, stderr (without the probe's line), heavy modules imported."""
    path = [str(site)] if site else []
    path += [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "XDG_CACHE_HOME": str(cache), "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env)
    stderr, _, probe = done.stderr.rstrip("\n").rpartition("\n")
    assert probe.startswith("imported: "), done.stderr[-3000:]
    imported = set(filter(None, probe.removeprefix("imported: ").split(",")))
    return done.returncode, done.stdout, stderr.strip("\n"), imported


def write_distribution(site: Path, dist: str, version: str, files: dict[str, str], group: str, name: str, target: str) -> Path:
    """Install a distribution into ``site``: its ``files`` (relative path -> source) and a dist-info directory.

    Args:
        site: a directory on ``sys.path`` (or ``PYTHONPATH``).
        dist, version: the distribution's name and version.
        files: its modules, e.g. ``{"my_plugin.py": "..."}``.
        group, name, target: its one entry point, ``name = target`` in ``group``.

    Returns:
        The dist-info directory.
    """
    for relative, source in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {target}\n")
    importlib.invalidate_caches()
    return info


BROKEN = "raise RuntimeError('this plugin is broken')\n"
SOME = {"some_plugin.py": BROKEN}


# -- help and mistyped commands --------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_subcommand_without_importing_lightning(flag, tmp_path):
    code, out, err, imported = run_cli(flag, cache=tmp_path)
    assert (code, err, imported) == (0, "", set())
    lines = out.splitlines()
    assert lines[0].startswith("usage: python -m lightning_hw <command>")
    for name, command in SUBCOMMANDS.items():
        assert any(line.split(None, 1) == [name, command.help] for line in lines), name


def test_no_arguments_prints_the_help_and_exits_2(tmp_path):
    code, out, err, imported = run_cli(cache=tmp_path)
    assert (code, out, imported) == (2, "", set())
    assert err.startswith("usage: python -m lightning_hw") and "new-plugin" in err


def test_unknown_command_is_one_line_with_the_closest(tmp_path):
    code, out, err, imported = run_cli("fitt", "--config", "x.yaml", cache=tmp_path)
    assert (code, out, imported) == (2, "", set())
    assert err == f"error: unknown command 'fitt'; did you mean fit? commands: {', '.join(SUBCOMMANDS)}"
    code, _, err, _ = run_cli("xyzzy", cache=tmp_path)
    assert (code, err) == (2, f"error: unknown command 'xyzzy'; commands: {', '.join(SUBCOMMANDS)}")


@pytest.mark.parametrize("command", ["study", "report", "export", "lr-find", "new-plugin"])
def test_our_subcommands_help_without_importing_lightning(command, tmp_path):
    code, out, err, imported = run_cli(command, "--help", cache=tmp_path)
    assert (code, err, imported) == (0, "", set())
    assert out.startswith(f"usage: python -m lightning_hw {command}")


# -- list and its cache ----------------------------------------------------------------------------


def test_list_answers_from_its_cache_and_still_reports_a_broken_plugin(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    write_distribution(
        site, "broken-plugin", "0.1", {"broken_plugin.py": BROKEN}, "lightning_hw.tasks", "BrokenTask", "broken_plugin:BrokenTask"
    )
    first = run_cli("list", cache=cache, site=site)
    assert first[0] == 0 and "torch" in first[3]  # a miss imports every plugin
    assert (cache / "lightning-hw" / "list.json").is_file()
    warning = (
        "warning: plugin 'broken-plugin': task 'BrokenTask' (broken_plugin:BrokenTask) failed to import and is "
        "skipped: RuntimeError: this plugin is broken; fix it or uninstall it (pip uninstall broken-plugin)"
    )
    assert first[2] == warning
    assert any("BrokenTask" in line and "failed to load" in line for line in first[1].splitlines())
    assert any(" Classifier " in line and "lightning-hw" in line for line in first[1].splitlines())
    second = run_cli("list", cache=cache, site=site)
    assert second[:3] == first[:3] and second[3] == set()  # the same answer, without torch or Lightning

    # Editing the plugin's module (an editable install: no new version) is a miss that shows the change.
    module = site / "broken_plugin.py"
    module.write_text("raise RuntimeError('still broken, differently')\n")
    os.utime(module, ns=(1, 1))  # a different mtime whatever the file system's resolution
    third = run_cli("list", cache=cache, site=site)
    assert "torch" in third[3] and "RuntimeError: still broken, differently" in third[2]


def test_list_sees_a_plugin_fixed_by_installing_its_missing_dependency(tmp_path):
    """The warning says "fix it": installing the dependency the plugin lacks must show the fix, not the cached failure."""
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    source = (
        "import missing_dep\nfrom lightning_hw.tasks.classification import Classifier\n\n\n"
        "class DepTask(Classifier):\n    \"\"\"Needs missing_dep.\"\"\"\n"
    )
    write_distribution(site, "dep-plugin", "0.1", {"dep_plugin.py": source}, "lightning_hw.tasks", "DepTask", "dep_plugin:DepTask")
    first = run_cli("list", cache=cache, site=site)
    assert "No module named 'missing_dep'" in first[2]

    (site / "missing_dep.py").write_text("")  # pip install missing-dep: a new entry in site-packages
    os.utime(site, ns=(5, 5))  # a different mtime whatever the file system's resolution
    second = run_cli("list", cache=cache, site=site)
    assert second[0] == 0 and second[2] == ""
    assert any("DepTask" in line and "failed to load" not in line for line in second[1].splitlines())

    (site / "missing_dep.py").unlink()  # pip uninstall missing-dep: the plugin is broken again
    os.utime(site, ns=(6, 6))
    third = run_cli("list", cache=cache, site=site)
    assert "No module named 'missing_dep'" in third[2]


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A directory on ``sys.path`` for fake distributions, and a private cache directory."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    importlib.invalidate_caches()
    yield path
    importlib.invalidate_caches()


def test_list_cache_key_changes_when_a_plugin_is_installed_upgraded_reinstalled_or_removed(site):
    before = listing.fingerprint()
    assert listing.fingerprint() == before  # nothing changed: the cache is used
    info = write_distribution(site, "some-plugin", "0.1", SOME, "lightning_hw.datamodules", "Some", "some_plugin:Some")
    installed = listing.fingerprint()
    assert installed != before

    shutil.rmtree(info)  # pip install --upgrade: a new dist-info with the new version
    info = write_distribution(site, "some-plugin", "0.2", SOME, "lightning_hw.datamodules", "Some", "some_plugin:Some")
    upgraded = listing.fingerprint()
    assert upgraded not in (before, installed)

    os.utime(info, ns=(2, 2))  # reinstalled as the same version: its dist-info was written anew
    reinstalled = listing.fingerprint()
    assert reinstalled not in (before, installed, upgraded)

    shutil.rmtree(info)
    (site / "some_plugin.py").unlink()
    importlib.invalidate_caches()
    # Not `before` again: the directory on sys.path changed, which costs one import (a dependency installed
    # there can fix a plugin: test_list_sees_a_plugin_fixed_by_installing_its_missing_dependency).
    assert listing.fingerprint() not in (installed, upgraded, reinstalled)


def test_list_cache_key_changes_when_any_module_of_a_plugin_package_changes(site):
    # The entry point names a module inside a package, which imports a helper module beside it.
    files = {"pkg_plugin/__init__.py": "", "pkg_plugin/task.py": "from pkg_plugin.helpers import X\n", "pkg_plugin/helpers.py": "X = 1\n"}
    write_distribution(site, "pkg-plugin", "0.1", files, "lightning_hw.tasks", "T", "pkg_plugin.task:T")
    package = site / "pkg_plugin"
    before = listing.fingerprint()
    os.utime(package / "helpers.py", ns=(3, 3))
    assert listing.fingerprint() != before


def test_an_unwritable_cache_only_costs_speed(site, capsys, monkeypatch):
    monkeypatch.setattr(listing, "cache_file", lambda: site / "not-a-dir" / "list.json")
    (site / "not-a-dir").write_text("a file where the cache directory would be")
    monkeypatch.setattr(listing, "load_components", lambda: ([["task", "T", "d", "desc"]], "warning: w\n"))
    assert listing.cached_list() == 0
    out, err = capsys.readouterr()
    assert err == "warning: w\n" and " T " in out


@pytest.mark.parametrize(("signum", "code"), [(2, 130), (15, 143)], ids=["sigint", "sigterm"])
def test_a_signal_while_the_libraries_load_is_one_line_and_leaves_nothing(tmp_path, signum, code):
    """Ctrl-C or SIGTERM in the seconds before training starts: one line, 128 + signal, no traceback, no run directory.

    A KeyboardInterrupt inside an import used to surface as an unrelated RecursionError traceback.
    """
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "WANDB_MODE": "disabled"}
    args = [sys.executable, "-m", "lightning_hw", "fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--run.root", str(tmp_path / "runs")]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    time.sleep(1.0)  # importing torch and Lightning takes seconds; earlier or later, the answer must be the same
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"interrupted by {signal.Signals(signum).name}"), err
    assert not (tmp_path / "runs").exists()


def test_a_broken_pipe_other_than_stdout_is_not_silenced(tmp_path):
    """Only a reader of stdout that went away (`| head`) ends quietly; a BrokenPipeError from another pipe
    (a DataLoader worker's, a subprocess's) with stdout still open must not exit 1 without a word."""
    script = textwrap.dedent(
        """
        import lightning_hw.cli.entry as entry

        def fails(argv):
            raise BrokenPipeError(32, "Broken pipe (a worker's)")

        entry._main = fails
        entry.main(["fit"])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode != 0
    assert "BrokenPipeError" in done.stderr, done.stderr
