"""Entry-point discovery: built-ins, a working plugin, a broken plugin, name clashes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lightning_hw import registry
from lightning_hw.cli import HWCLI
from lightning_hw.registry import PluginLoadWarning


def fake_distribution(site: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> Path:
    """Write an installed-looking distribution (dist-info + modules) into ``site``."""
    dist_info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch) -> Path:
    site = fake_distribution(
        tmp_path / "site", "hw-broken-plugin",
        {"lightning_hw.tasks": {"BrokenTask": "hw_broken_mod:BrokenTask"}},
        {"hw_broken_mod": "raise ImportError('needs a package that is not installed')\n"},
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtins_are_registered_like_plugins():
    names = {(c.kind, c.name): c for c in registry.discover()}
    for key in [("task", "Classifier"), ("datamodule", "Digits"), ("datamodule", "TwoMoons")]:
        assert names[key].distribution == "lightning-hw" and names[key].obj is not None
        assert names[key].description


def test_broken_plugin_is_one_warning_and_the_cli_still_works(broken_plugin, tiny_args):
    with pytest.warns(PluginLoadWarning) as caught:
        components = registry.discover()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "hw-broken-plugin" in messages[0] and "needs a package that is not installed" in messages[0]
    broken = next(c for c in components if c.name == "BrokenTask")
    assert broken.obj is None and broken.error
    assert "BrokenTask" not in {c.name for c in registry.available("task")}
    cli = HWCLI(args=tiny_args("fit", "--trainer.fast_dev_run", "true"))
    assert cli.trainer.state.finished


def test_plugin_task_is_usable_by_short_name(tmp_path, monkeypatch, tiny_args):
    site = fake_distribution(
        tmp_path / "site", "hw-good-plugin",
        {"lightning_hw.tasks": {"WideClassifier": "hw_good_mod:WideClassifier"}},
        {"hw_good_mod": '''
            from lightning_hw.tasks.classification import Classifier

            class WideClassifier(Classifier):
                """A classifier from a plugin."""
        '''},
    )
    monkeypatch.syspath_prepend(str(site))
    found = {c.name: c for c in registry.available("task")}
    assert found["WideClassifier"].distribution == "hw-good-plugin"
    cli = HWCLI(args=tiny_args("fit", "--model.class_path", "WideClassifier", "--trainer.fast_dev_run", "true"))
    assert type(cli.model).__name__ == "WideClassifier" and cli.model.num_classes == 10


def test_name_clash_names_both_full_paths(tmp_path, monkeypatch):
    site = fake_distribution(
        tmp_path / "site", "hw-clash-plugin",
        {"lightning_hw.datamodules": {"Digits": "hw_clash_mod:Digits"}},
        {"hw_clash_mod": '''
            from lightning_hw.data.datasets.digits import Digits as _Base

            class Digits(_Base):
                """Another Digits."""
        '''},
    )
    monkeypatch.syspath_prepend(str(site))
    with pytest.warns(PluginLoadWarning, match=r"datamodule 'Digits' is provided by several plugins.*hw_clash_mod\.Digits"):
        registry.discover()


def test_list_subprocess_survives_a_broken_plugin(broken_plugin):
    env = {**os.environ, "PYTHONPATH": str(broken_plugin)}
    result = subprocess.run([sys.executable, "-m", "lightning_hw", "list"], capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert "Classifier" in result.stdout and "BrokenTask" in result.stdout and "failed to load" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "hw-broken-plugin" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: plugin 'hw-broken-plugin': task 'BrokenTask'")
