"""Plugins end to end: the installed example plugins, broken plugins, name clashes, the new-plugin scaffold.

Fake plugins are real installed distributions: a ``*.dist-info`` directory (METADATA and
entry_points.txt) and a module, written into a temporary directory on ``sys.path``
(or ``PYTHONPATH`` for a subprocess), which is all ``importlib.metadata`` looks at.
"""

from __future__ import annotations

import csv
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from lightning_hw import registry
from lightning_hw.cli import HWCLI, main, warm_start
from lightning_hw.errors import ConfigError
from lightning_hw.registry import PluginLoadWarning
from lightning_hw.scaffold.new_plugin import new_plugin_main

REPO = Path(__file__).resolve().parents[1]
PRICE_CONFIG = REPO / "plugins" / "price-regression" / "configs" / "price_regression.yaml"


def fake_distribution(site: Path, dist: str, modules: dict[str, str], entry_points: dict[str, dict[str, str]]) -> None:
    """Write an installed distribution ``dist`` with ``modules`` (name -> source) into ``site``.

    Args:
        site: a directory on ``sys.path``.
        dist: the distribution name.
        modules: module name -> source code.
        entry_points: group -> {name: "module:attr"}.
    """
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    sections = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(sections))


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A directory on ``sys.path`` for fake distributions; their modules are forgotten afterwards."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    before = set(sys.modules)
    yield path
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(path) in sys.modules[name].__file__:
            del sys.modules[name]


def _add_broken_plugin(site: Path) -> None:
    fake_distribution(
        site,
        "broken-plugin",
        {"broken_plugin": "raise RuntimeError('this plugin is broken')\n"},
        {"lightning_hw.tasks": {"BrokenTask": "broken_plugin:BrokenTask"}},
    )
    importlib.invalidate_caches()


# -- the example plugins, installed by `make` ------------------------------------------------------


def _require_distribution(name: str) -> None:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed; `make test` installs plugins/* (or pip install -e plugins/...)")


def test_list_shows_where_every_component_comes_from(capsys):
    _require_distribution("lightning-hw-price-regression")
    _require_distribution("lightning-hw-uci-tables")
    with pytest.raises(SystemExit) as exit_info:
        main(["list"])
    assert exit_info.value.code == 0
    rows = {line.split("│")[2].strip(): line.split("│")[3].strip() for line in capsys.readouterr().out.splitlines()
            if line.count("│") >= 4 and line.split("│")[2].strip()}  # fmt: skip
    assert rows["PriceRegressor"] == rows["MobilePriceCSV"] == "lightning-hw-price-regression"
    assert rows["Wine"] == rows["BreastCancer"] == "lightning-hw-uci-tables"
    assert rows["Classifier"] == rows["Digits"] == "lightning-hw"


@pytest.mark.slow
def test_installed_price_regression_runs_its_config_by_short_name(workdir):
    _require_distribution("lightning-hw-price-regression")
    from hw_price_regression.fixtures import write_mobile_price_csv

    config = yaml.safe_load(PRICE_CONFIG.read_text())
    assert config["model"]["class_path"] == "PriceRegressor" and config["data"]["class_path"] == "MobilePriceCSV"
    write_mobile_price_csv(workdir / "kaggle" / "train.csv", rows=120)
    from reliability_helpers import output_of

    printed = output_of(  # in this process: the plugin's classes come from its installed entry points either way
        "fit", "--config", str(PRICE_CONFIG), "--data.init_args.root", str(workdir / "kaggle"),
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--run.root", str(workdir / "runs"), "--run.name", "smoke", "--run.wandb", "disabled",
    )  # fmt: skip
    assert "test/rmse" in printed and "test/r2" in printed
    saved = yaml.safe_load((workdir / "runs" / "price_regression" / "smoke" / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "hw_price_regression.task.PriceRegressor"
    assert saved["data"]["class_path"] == "hw_price_regression.data.MobilePriceCSV"


# -- broken plugins --------------------------------------------------------------------------------


def test_a_broken_plugin_is_one_warning_and_the_rest_loads(site):
    _add_broken_plugin(site)
    fake_distribution(
        site,
        "exiting-plugin",
        {"exiting_plugin": "import sys\nsys.exit('bye')\n"},
        {"lightning_hw.datamodules": {"Exiting": "exiting_plugin:Exiting"}},
    )
    fake_distribution(
        site,
        "not-a-class-plugin",
        {"not_a_class_plugin": "def Helper():\n    pass\n"},
        {"lightning_hw.tasks": {"Helper": "not_a_class_plugin:Helper"}},
    )
    importlib.invalidate_caches()
    with pytest.warns(PluginLoadWarning) as caught:
        components = registry.discover()
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginLoadWarning)]
    assert len(messages) == 3
    broken = next(m for m in messages if "'broken-plugin'" in m)
    assert "task 'BrokenTask' (broken_plugin:BrokenTask) failed to import" in broken
    assert "RuntimeError: this plugin is broken" in broken and "pip uninstall broken-plugin" in broken
    assert any("'exiting-plugin'" in m and "SystemExit: bye" in m for m in messages)
    assert any("'not-a-class-plugin'" in m and "is not a LightningModule subclass" in m for m in messages)
    failed = {c.name: c for c in components if c.error}
    assert set(failed) == {"BrokenTask", "Exiting", "Helper"}
    assert "raise RuntimeError" in failed["BrokenTask"].details  # the traceback, for --debug
    assert {"Classifier", "Digits"} <= {c.name for c in components if c.obj is not None}


@pytest.mark.slow
def test_an_entry_point_naming_a_class_its_module_lacks_is_not_said_to_be_skipped(site):
    """``MyTask = typo_plugin:MyTsk`` was "failed to import and is skipped", yet a config naming ``MyTask`` trained it."""
    fake_distribution(
        site,
        "typo-plugin",
        {"typo_plugin": "from lightning.pytorch import LightningModule\nclass MyTask(LightningModule):\n    pass\n"},
        {"lightning_hw.tasks": {"MyTask": "typo_plugin:MyTsk"}},
    )
    importlib.invalidate_caches()
    with pytest.warns(PluginLoadWarning) as caught:
        registry.discover()
    said = [str(w.message) for w in caught if issubclass(w.category, PluginLoadWarning) and "typo-plugin" in str(w.message)]
    assert said == [
        "plugin 'typo-plugin': task 'MyTask' (typo_plugin:MyTsk) names 'MyTsk', which its module typo_plugin does not "
        "define (AttributeError: module 'typo_plugin' has no attribute 'MyTsk'); fix the entry point in the plugin's "
        "pyproject.toml and reinstall it (pip install -e its folder)"
    ]


def test_an_entry_point_naming_a_misspelt_module_whose_class_loads_otherwise_is_not_said_to_be_skipped(site, capsys):
    """``MyTask = typo_plugn:MyTask`` was "failed to import and is skipped", yet the plugin's other entry point
    imported ``typo_plugin`` and a config naming ``MyTask`` trained it."""
    fake_distribution(
        site,
        "typo-plugin",
        {"typo_plugin": """
            from lightning_hw import Classifier
            from lightning_hw.data.datasets.digits import Digits
            class MyTask(Classifier):
                pass
            class MyData(Digits):
                pass
        """},
        {"lightning_hw.tasks": {"MyTask": "typo_plugn:MyTask"}, "lightning_hw.datamodules": {"MyData": "typo_plugin:MyData"}},
    )
    importlib.invalidate_caches()
    with pytest.raises(SystemExit) as exit_info:
        main(["list"])
    assert exit_info.value.code == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "typo-plugin" in line]
    assert said == [
        "warning: plugin 'typo-plugin': task 'MyTask' (typo_plugn:MyTask) names module typo_plugn, which does not exist "
        "(ModuleNotFoundError: No module named 'typo_plugn'); its class is still available as typo_plugin.MyTask (that "
        "module is imported by the plugin's datamodule entry point 'MyData'), so configs naming MyTask use it; fix the "
        "entry point in the plugin's pyproject.toml and reinstall it (pip install -e its folder)"
    ]
    with pytest.raises(SystemExit) as exit_info:  # what the warning says: a config naming MyTask gets it
        main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--model", "MyTask", "--print_config"])
    assert exit_info.value.code == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["class_path"] == "typo_plugin.MyTask"


def test_a_broken_plugin_does_not_break_the_cli(site, workdir):
    _add_broken_plugin(site)
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "disabled"}
    # Forked from the warm process, which has imported no lightning-hw and no plugin: each command imports
    # them afresh, as a new interpreter would, without ~5 s of torch and Lightning imports each.
    listing = warm_start.run([sys.executable, "-m", "lightning_hw", "list"], capture_output=True, text=True, env=env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stderr.strip().splitlines() == [
        "warning: plugin 'broken-plugin': task 'BrokenTask' (broken_plugin:BrokenTask) failed to import and is "
        "skipped: RuntimeError: this plugin is broken; fix it or uninstall it (pip uninstall broken-plugin)"
    ]
    assert any("BrokenTask" in line and "failed to load" in line for line in listing.stdout.splitlines())
    fit = warm_start.run(
        [
            sys.executable, "-m", "lightning_hw", "fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
            "--trainer.fast_dev_run", "true", "--run.root", str(workdir / "runs"), "--run.wandb", "disabled",
        ],
        capture_output=True, text=True, env=env, cwd=workdir,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert sum("broken-plugin" in line for line in fit.stderr.splitlines()) == 1
    assert "Traceback" not in fit.stderr and "fast_dev_run: nothing was saved" in fit.stdout


def test_a_name_whose_plugin_failed_to_import_says_so(site, tiny_args, capsys):
    """Not "did you mean BreastCancer?": BrokenData is registered, its plugin just did not import."""
    from reliability_helpers import error_of

    fake_distribution(
        site,
        "broken-data-plugin",
        {"broken_data": "raise ImportError('No module named torchaudio')\n"},
        {"lightning_hw.datamodules": {"BrokenData": "broken_data:BrokenData"}},
    )
    importlib.invalidate_caches()
    code, line = error_of(tiny_args("fit", "--data", "BrokenData"), capsys)  # the warning line is checked elsewhere
    assert code == 2
    assert line == (
        "error: datamodule 'BrokenData' is not available: its plugin broken-data-plugin failed to import: "
        "ImportError: No module named torchaudio (fix it or uninstall it (pip uninstall broken-data-plugin); "
        "--debug shows the traceback)"
    )


def test_a_plugin_missing_a_module_it_imports_says_to_install_it(site, tiny_args, capsys):
    """``import pandas`` in a plugin without pandas installed: the advice was 'fix it or uninstall it',
    for code that needs no fix; installing the module is what makes it work."""
    from reliability_helpers import error_of

    fake_distribution(
        site,
        "needs-plugin",
        {"needs_data": "import not_installed_here.sub\n"},
        {"lightning_hw.datamodules": {"NeedsData": "needs_data:NeedsData"}},
    )
    importlib.invalidate_caches()
    code, line = error_of(tiny_args("fit", "--data", "NeedsData"), capsys)
    assert code == 2
    assert line == (
        "error: datamodule 'NeedsData' is not available: its plugin needs-plugin failed to import: "
        "ModuleNotFoundError: No module named 'not_installed_here' (install the module it needs, 'not_installed_here' "
        "(often `pip install not_installed_here`; the package's name may differ), or uninstall the plugin "
        "(pip uninstall needs-plugin); --debug shows the traceback)"
    )


@pytest.mark.parametrize(
    ("class_path", "expected"),
    [
        (
            "some_plugin.data.Foo",
            "error: unknown datamodule 'some_plugin.data.Foo': there is no module some_plugin; is its plugin "
            "installed? (pip install the package that provides some_plugin, or pip install -e its folder); installed: ",
        ),
        (
            "lightning_hw.data.nothere.Foo",  # the package is installed: no advice to install a plugin
            "error: unknown datamodule 'lightning_hw.data.nothere.Foo': there is no module lightning_hw.data.nothere; "
            "installed: ",
        ),
        (
            "failing_module.Foo",
            "error: unknown datamodule 'failing_module.Foo': module failing_module failed to import: "
            "RuntimeError: half-installed; installed: ",
        ),
        ("lightning_hw.data.datasets.digits.Nope", "error: unknown datamodule 'lightning_hw.data.datasets.digits.Nope': module "
         "lightning_hw.data.datasets.digits has no Nope; installed: "),
    ],
    ids=["plugin-not-installed", "module-missing-in-package", "module-fails-on-import", "class-missing"],
)
def test_a_class_path_that_does_not_import_says_why(site, tiny_args, capsys, class_path, expected):
    from reliability_helpers import error_of

    (site / "failing_module.py").write_text("raise RuntimeError('half-installed')\n")
    code, line = error_of(tiny_args("fit", "--data", class_path), capsys)
    assert code == 2 and line.startswith(expected)
    assert "Digits" in line and "did you mean" not in line


@pytest.mark.parametrize(
    ("class_path", "hint"),
    [("hw_gone.data.Digitz", None), ("hw_gone.data.Digits", "did you mean Digits?")],
    ids=["similar-name-not-suggested", "same-class-elsewhere-suggested"],
)
def test_a_class_of_an_uninstalled_plugin_is_not_matched_to_another_plugins_class(tiny_args, capsys, class_path, hint):
    """A run of an uninstalled plugin: "did you mean <some similar class>?" would not fit its checkpoint."""
    from reliability_helpers import error_of

    code, line = error_of(tiny_args("fit", "--data", class_path), capsys)
    assert code == 2 and "there is no module hw_gone; is its plugin installed?" in line
    if hint is None:
        assert "did you mean" not in line, line
    else:
        assert hint in line, line


NO_TEST_SPLIT_SOURCE = '''
import torch

from lightning_hw import InMemoryDataModule


class NoTestSplit(InMemoryDataModule):
    """Data that comes split in two: train and val, no test."""

    @property
    def class_names(self) -> list[str]:
        return ["a", "b"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (4,)

    def load_splits(self):
        x, y = torch.randn(40, 4), torch.arange(40) % 2
        return {"train": (x[:30], y[:30]), "val": (x[30:], y[30:])}
'''


def test_a_datamodule_without_a_test_split_is_refused_before_training(site, tiny_args, workdir, capsys):
    """Not a KeyError traceback after training, with the run marked failed: one line, and no run."""
    from reliability_helpers import error_of

    fake_distribution(
        site, "two-split-plugin", {"two_split": NO_TEST_SPLIT_SOURCE}, {"lightning_hw.datamodules": {"NoTestSplit": "two_split:NoTestSplit"}}
    )
    importlib.invalidate_caches()
    code, line = error_of(tiny_args("fit", "--data", "NoTestSplit"), capsys)
    assert code == 1
    assert line.startswith("error: NoTestSplit.load_splits() returned no 'test' split (it returned 'train', 'val'); ")
    assert not (workdir / "runs").exists()


MISSHAPEN_SOURCE = '''
import torch

from lightning_hw import InMemoryDataModule


class Narrow(InMemoryDataModule):
    """Says 4 features per sample, loads 3."""

    @property
    def class_names(self) -> list[str]:
        return ["a", "b"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (4,)

    def load_tensors(self):
        return torch.randn(40, 3), torch.arange(40) % 2


class Unequal(Narrow):
    """40 samples, 30 labels."""

    def load_tensors(self):
        return torch.randn(40, 4), torch.arange(30) % 2
'''


@pytest.mark.parametrize(
    ("data", "standardize", "expected"),
    [
        ("Narrow", "true", "error: Narrow.load_tensors() returned samples of shape (3,), but its input_shape is (4,) "),
        ("Narrow", "false", "error: Narrow.load_tensors() returned samples of shape (3,), but its input_shape is (4,) "),
        ("Unequal", "false", "error: Narrow.load_tensors() returned 40 samples but 30 targets; "),
    ],
    ids=["narrow-standardized", "narrow", "fewer-targets"],
)
def test_a_datamodule_whose_tensors_do_not_fit_its_shape_is_one_line_and_no_run(
    site, tiny_args, workdir, capsys, data, standardize, expected
):
    """Tracebacks from deep inside the first step (``mat1 and mat2 shapes cannot be multiplied``), the split
    (``IndexError: index 32 is out of bounds``) or a ``mean and std need ...`` about settings never given."""
    from reliability_helpers import error_of

    fake_distribution(
        site, "misshapen-plugin", {"misshapen": MISSHAPEN_SOURCE},
        {"lightning_hw.datamodules": {"Narrow": "misshapen:Narrow", "Unequal": "misshapen:Unequal"}},
    )  # fmt: skip
    importlib.invalidate_caches()
    code, line = error_of(tiny_args("fit", "--data", data, "--data.init_args.standardize", standardize), capsys)
    assert code == 1 and line.startswith(expected.replace("Narrow.load", f"{data}.load")), line
    assert not (workdir / "runs").exists()


FORGOTTEN_METHOD_SOURCE = '''
import torch

from lightning_hw import InMemoryDataModule, Task


class NoStepTask(Task):
    """A task written from the README that forgot shared_step."""

    linked_from_data = ("num_classes", "input_shape")

    def __init__(self, num_classes: int = 2, input_shape: tuple[int, ...] = (1,)):
        super().__init__()
        self.layer = torch.nn.Linear(64, num_classes)


class NoLoadData(InMemoryDataModule):
    """A datamodule that forgot load_tensors (and load_splits)."""

    @property
    def class_names(self) -> list[str]:
        return ["a", "b"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (64,)
'''


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--model", "NoStepTask"], "error: task NoStepTask does not implement shared_step(batch, stage)"),
        (["--data", "NoLoadData"], "error: datamodule NoLoadData implements neither load_tensors() nor load_splits()"),
    ],
    ids=["task-without-shared_step", "datamodule-without-load_tensors"],
)
def test_a_plugin_class_that_forgot_its_method_is_one_line_and_no_run(site, tiny_args, workdir, capsys, option, expected):
    """A NotImplementedError traceback (exit 1) from deep inside Lightning was all a plugin author got."""
    from reliability_helpers import error_of

    fake_distribution(
        site,
        "forgetful-plugin",
        {"forgetful": FORGOTTEN_METHOD_SOURCE},
        {"lightning_hw.tasks": {"NoStepTask": "forgetful:NoStepTask"},
         "lightning_hw.datamodules": {"NoLoadData": "forgetful:NoLoadData"}},
    )  # fmt: skip
    importlib.invalidate_caches()
    code, line = error_of(tiny_args("fit", *option), capsys)
    assert code == 2 and line.startswith(expected), line
    assert "plugins/README.md" in line  # where the method is explained
    assert not (workdir / "runs").exists()


KERAS_NAMES_SOURCE = '''
import torch
import torch.nn.functional as F

from lightning_hw import Task


class KerasNamesTask(Task):
    """Logs val_loss and val_acc (Keras' names), not the contract's val/loss and val/acc."""

    monitor, monitor_mode = "val/acc", "max"
    linked_from_data = ("num_classes", "input_shape")

    def __init__(self, num_classes: int = 2, input_shape: tuple[int, ...] = (1,)):
        super().__init__()
        self.layer = torch.nn.Linear(64, num_classes)

    def shared_step(self, batch, stage):
        x, y = batch
        logits = self.layer(x.flatten(1))
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True)
        self.log(f"{stage}_acc", (logits.argmax(-1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss
'''


def test_a_task_logging_other_names_than_its_monitor_is_refused_before_training(site, tiny_args, workdir, capsys):
    """Its monitor val/acc was checked only after the first epoch (the sanity check logged no val/ name), which
    left a failed run behind, and the line said "it logs no val/ metric" without naming what it does log."""
    from reliability_helpers import error_of

    fake_distribution(
        site, "keras-names-plugin", {"keras_names": KERAS_NAMES_SOURCE},
        {"lightning_hw.tasks": {"KerasNamesTask": "keras_names:KerasNamesTask"}},
    )  # fmt: skip
    importlib.invalidate_caches()
    code, line = error_of(tiny_args("fit", "--model", "KerasNamesTask", "--run.monitor", "val/acc"), capsys)
    assert code == 2
    assert line == (
        "error: run.monitor val/acc is not a metric this run logs; it logs val_acc, val_loss in validation, none "
        "under val/: log them as val/<name> (the names checkpoints, reports and plots use), or change run.monitor"
    )
    assert not (workdir / "runs").exists()  # refused at the sanity check: nothing trained, nothing recorded


MISNAMED_MONITOR_SOURCE = '''
from lightning_hw import Classifier


class MisnamedMonitorTask(Classifier):
    """Logs val/acc, val/f1 and val/loss; its monitor names another."""

    monitor = "val/accc"

'''


def test_a_monitor_set_by_the_task_class_is_said_to_be_the_task_class(site, tiny_args, workdir, capsys):
    """The line said ``run.monitor val/accc is not a metric this run logs; give one of ... to run.monitor`` for a
    task whose class attribute ``monitor`` is misspelt: run.monitor was never set, and the class is what to fix."""
    from reliability_helpers import error_of

    fake_distribution(
        site, "misnamed-monitor-plugin", {"misnamed_monitor": MISNAMED_MONITOR_SOURCE},
        {"lightning_hw.tasks": {"MisnamedMonitorTask": "misnamed_monitor:MisnamedMonitorTask"}},
    )  # fmt: skip
    importlib.invalidate_caches()
    # The quickstart config sets run.monitor; without it the task's monitor is used.
    code, line = error_of(tiny_args("fit", "--model", "MisnamedMonitorTask", "--run.monitor", "null"), capsys)
    assert code == 2
    assert line == (
        "error: MisnamedMonitorTask.monitor val/accc is not a metric this run logs (did you mean val/acc?); give one "
        "of val/acc, val/f1, val/loss to MisnamedMonitorTask.monitor (the task class's attribute) or --run.monitor"
    )
    assert not (workdir / "runs").exists()  # refused at the sanity check: nothing trained, nothing recorded
    # Given on the command line, it is run.monitor that is wrong.
    code, line = error_of(tiny_args("fit", "--model", "MisnamedMonitorTask", "--run.monitor", "val/f11"), capsys)
    assert code == 2 and line.startswith("error: run.monitor val/f11 is not a metric") and line.endswith(" to run.monitor")


def test_report_keeps_a_figure_per_metric_when_a_plugin_logs_keras_style_names(workdir, capsys):
    """``train_loss`` (a plugin's own name) and ``train/loss`` would both be drawn to train_loss.png."""
    for run, key in (("contract", "train/loss"), ("keras", "train_loss")):
        (workdir / "runs" / run).mkdir(parents=True)
        (workdir / "runs" / run / "metrics.csv").write_text(f"epoch,step,{key}\n0,1,0.9\n1,2,0.5\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs"])
    assert exit_info.value.code == 0
    out = workdir / "runs" / "report"
    images = re.findall(r"!\[(.+?)\]\((.+?)\)", (out / "report.md").read_text())
    assert sorted(metric for metric, _ in images) == ["train/loss", "train_loss"]
    assert len({file for _, file in images}) == 2 and all((out / file).is_file() for _, file in images)
    assert "and 2 figures" in capsys.readouterr().out


def test_an_entry_point_named_otherwise_than_its_class_is_said_at_once_and_when_used(site, tiny_args, capsys):
    """Configs resolve short names by class name: ``Blobs = "alias_plugin:BlobData"`` cannot be written ``Blobs``."""
    from reliability_helpers import error_of

    fake_distribution(
        site,
        "alias-plugin",
        {"alias_plugin": "from lightning_hw.data.datasets.digits import Digits\n\n\nclass BlobData(Digits):\n    pass\n"},
        {"lightning_hw.datamodules": {"Blobs": "alias_plugin:BlobData"}},
    )
    importlib.invalidate_caches()
    with pytest.warns(PluginLoadWarning) as caught:
        registry.discover()
    assert [str(w.message) for w in caught] == [
        "plugin 'alias-plugin': datamodule entry point 'Blobs' (alias_plugin:BlobData) is not named as its class "
        "BlobData, and configs name the class: rename the entry point to BlobData in the plugin's pyproject.toml "
        "and reinstall it (pip install -e its folder)"
    ]
    code, line = error_of(tiny_args("fit", "--data", "Blobs"), capsys)
    assert (code, line) == (
        2,
        "error: datamodule 'Blobs' is the entry-point name of class BlobData (from alias-plugin); configs name "
        "the class: write BlobData or alias_plugin.BlobData",
    )


# -- name clashes ----------------------------------------------------------------------------------

CLASH_SOURCE = '''
from lightning_hw.tasks.classification import Classifier


class ClashTask(Classifier):
    """The classifier, as packaged by {dist}."""
'''


def _add_clashing_plugins(site: Path) -> None:
    for module in ("alpha_clash", "beta_clash"):
        dist = module.replace("_", "-")
        fake_distribution(
            site,
            dist,
            {module: CLASH_SOURCE.format(dist=dist)},
            {"lightning_hw.tasks": {"ClashTask": f"{module}:ClashTask"}},
        )
    importlib.invalidate_caches()


def test_a_name_clash_is_reported_and_resolved_by_the_full_class_path(site, tiny_args, workdir, capsys):
    _add_clashing_plugins(site)
    with pytest.warns(PluginLoadWarning) as caught:
        registry.discover()
    assert [str(w.message) for w in caught] == [
        "task 'ClashTask' is provided by several plugins; write the full class path in your config: "
        "alpha_clash.ClashTask (from alpha-clash) or beta_clash.ClashTask (from beta-clash)"
    ]
    with pytest.raises(SystemExit):
        main(["list"])
    listing = [line for line in capsys.readouterr().out.splitlines() if "ClashTask" in line]
    assert len(listing) == 2 and all("name clash, use class_path:" in line for line in listing)

    with pytest.raises(ConfigError) as err:
        HWCLI(args=tiny_args("fit", "--model", "ClashTask"))
    assert str(err.value) == (
        "task 'ClashTask' is ambiguous: several plugins provide it; write its full class path: "
        "alpha_clash.ClashTask (from alpha-clash) or beta_clash.ClashTask (from beta-clash)"
    )

    # A config naming the short name, with the full path given after it: the config's name still parses.
    short = workdir / "short_name.yaml"
    short.write_text(yaml.safe_dump({**yaml.safe_load(open(tiny_args()[2])), "model": {"class_path": "ClashTask"}}))
    args = tiny_args("fit", "--model", "beta_clash.ClashTask")
    args[2] = str(short)
    with pytest.raises(ConfigError) as err:
        HWCLI(args=args)
    assert str(err.value) == (
        "task 'ClashTask' is ambiguous: several plugins provide it; write its full class path: "
        "alpha_clash.ClashTask (from alpha-clash) or beta_clash.ClashTask (from beta-clash) "
        "(where the config or an earlier option names ClashTask)"
    )

    config = yaml.safe_load(open(tiny_args()[2]))
    config["model"]["class_path"] = "beta_clash.ClashTask"
    path = workdir / "full_path.yaml"
    path.write_text(yaml.safe_dump(config))
    args = tiny_args("fit", "--trainer.fast_dev_run", "true")
    args[2] = str(path)
    cli = HWCLI(args=args)
    assert type(cli.model).__module__ == "beta_clash" and cli.model.num_classes == 10


def test_one_class_under_two_entry_points_is_no_clash(site, recwarn):
    fake_distribution(
        site,
        "reexport-plugin",
        {},
        {"lightning_hw.tasks": {"Classifier": "lightning_hw.tasks.classification:Classifier"}},
    )
    importlib.invalidate_caches()
    registry.discover()
    assert not [w for w in recwarn if issubclass(w.category, PluginLoadWarning)]
    assert len(registry.providers("task", "Classifier")) == 2
    assert registry.ambiguous_name_message("task", "Classifier") is None


# -- new-plugin ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["9lives"], "error: plugin name '9lives' is not usable: start with a letter"),
        (["torch"], "error: a module named 'torch' is already importable, so plugin 'torch' would clash with it"),
        (["class"], "error: plugin name 'class' gives the module name 'class', a Python keyword"),
        (["taken", "--dir", "."], "error: taken already exists and is not empty; choose another NAME or --dir"),
    ],
)
def test_new_plugin_refuses_bad_names_in_one_line(workdir, capsys, argv, expected):
    (workdir / "taken").mkdir()
    (workdir / "taken" / "keep.txt").write_text("mine")
    assert new_plugin_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected)
    assert (workdir / "taken" / "keep.txt").read_text() == "mine"


def _new_plugin(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightning_hw", "new-plugin", *argv], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize("name", ["pillow", "Scikit_Learn"])
def test_new_plugin_refuses_the_name_of_an_installed_distribution(workdir, name):
    # Its module name (pillow, scikit_learn) is free, but `pip install -e` would replace Pillow / scikit-learn.
    result = _new_plugin(workdir, name)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: a distribution named {importlib.metadata.distribution(name).metadata['Name']!r} is already "
        f"installed, and `pip install -e` of plugin {name!r} would replace it; choose another name"
    ]
    assert list(workdir.iterdir()) == []


def test_new_plugin_into_a_file_is_one_line_and_writes_nothing(workdir):
    (workdir / "notes").write_text("mine")
    result = _new_plugin(workdir, "my-plugin", "--dir", "notes")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --dir notes is a file, not a directory; pass a directory to create my-plugin/ in"
    ]
    result = _new_plugin(workdir, "notes")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: notes already exists and is a file; choose another NAME or --dir"]
    assert (workdir / "notes").read_text() == "mine" and sorted(p.name for p in workdir.iterdir()) == ["notes"]


def test_new_plugin_fills_an_empty_folder_and_a_new_one(workdir):
    (workdir / "my-plugin").mkdir()
    assert _new_plugin(workdir, "my-plugin").returncode == 0
    assert _new_plugin(workdir, "other", "--dir", "new/sub").returncode == 0
    for root, module in [(workdir / "my-plugin", "my_plugin"), (workdir / "new" / "sub" / "other", "other")]:
        assert (root / module / "task.py").is_file() and (root / "configs" / f"{module}.yaml").is_file()
    # Nothing of the staging directory is left beside the package.
    assert sorted(p.name for p in workdir.iterdir()) == ["my-plugin", "new"]
    assert [p.name for p in (workdir / "new" / "sub").iterdir()] == ["other"]


def test_new_plugin_prints_next_commands_that_a_shell_runs_as_shown(workdir, capsys):
    """Under ``--dir "my code"`` it printed ``pip install -e my code/spaced``: pip was given two paths."""
    import shlex

    assert new_plugin_main(["spaced", "--dir", "my code"]) == 0
    commands = capsys.readouterr().out.split("Next:\n", 1)[1].splitlines()
    root = workdir / "my code" / "spaced"
    assert [Path(workdir, shlex.split(c)[-1]) for c in commands if c.strip().startswith(("pip", "python -m pytest"))] == [
        root, root
    ]  # fmt: skip
    (fit,) = [shlex.split(c) for c in commands if " fit " in c]
    assert Path(workdir, fit[-1]) == root / "configs" / "spaced.yaml" and Path(workdir, fit[-1]).is_file()


def test_new_plugin_gives_its_folder_the_usual_mode_without_setting_the_umask(tmp_path, monkeypatch):
    # mkdtemp's folder is private (0700); its mode is taken from the umask, read as atomic_open reads
    # it: setting and restoring it let another thread's files be created with none in between.
    import os

    from lightning_hw.atomic import current_umask
    from lightning_hw.scaffold.new_plugin import write_plugin

    mask = current_umask()

    def no_umask(mask):
        raise AssertionError("os.umask called")

    monkeypatch.setattr(os, "umask", no_umask)
    root, _ = write_plugin("mode-check", tmp_path)
    assert root.stat().st_mode & 0o777 == 0o777 & ~mask


@pytest.mark.slow
def test_new_plugin_scaffold_installs_and_passes_its_own_test(workdir, capsys):
    name = "hw-scaffold-selftest"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    with pytest.raises(SystemExit) as exit_info:
        main(["new-plugin", name, "--dir", str(workdir)])
    assert exit_info.value.code == 0
    root = workdir / name
    assert f"pip install -e {root}" in capsys.readouterr().out
    pyproject = (root / "pyproject.toml").read_text()
    assert 'HwScaffoldSelftestTask = "hw_scaffold_selftest.task:HwScaffoldSelftestTask"' in pyproject
    assert 'HwScaffoldSelftestData = "hw_scaffold_selftest.data:HwScaffoldSelftestData"' in pyproject
    # Installed into a directory of its own, put on the tests' path: the shared environment is
    # never changed, so tests running meanwhile in another worker never see a half-installed plugin.
    # --no-build-isolation and --no-deps: offline and fast, with this environment's setuptools.
    site = workdir / "site"
    install = subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(root)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    # From the workdir, not the package directory: the tests must import the installed package.
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)],
        capture_output=True, text=True, cwd=workdir, env={**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": path},
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "3 passed" in tests.stdout


# -- a class renamed after a run was trained with it ----------------------------------------------


def test_a_run_whose_task_class_was_renamed_says_how_to_keep_it_loadable(tmp_path, monkeypatch):
    """The run is trained in this process; every command after the rename runs in a process of its own
    (forked from the warm process, which imported no lightning-hw), which imports the module as it is now
    (this process keeps the OldTask it imported)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return warm_start.run(
            [sys.executable, "-m", "lightning_hw", *args, "--run.wandb", "disabled"],
            capture_output=True, text=True, cwd=tmp_path, env=env,
        )  # fmt: skip

    module = tmp_path / "renamed_task.py"
    module.write_text("from lightning_hw import Classifier\n\n\nclass OldTask(Classifier):\n    pass\n")
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1, "enable_progress_bar": False},
        "model": {"class_path": "renamed_task.OldTask", "init_args": {"net": {"class_path": "lightning_hw.nets.mlp.MLP"}}},
        "data": {"class_path": "TwoMoons", "init_args": {"n_samples": 40}},
    }
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    import contextlib

    monkeypatch.syspath_prepend(str(tmp_path))  # renamed_task, as PYTHONPATH gives it to the commands below
    with contextlib.chdir(tmp_path):
        main(["fit", "--config", "old.yaml", "--run.name", "r", "--run.wandb", "disabled"])
    run_dir = tmp_path / "runs" / "old" / "r"
    record = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    module.write_text("from lightning_hw import Classifier\n\n\nclass NewTask(Classifier):\n    pass\n")
    config["model"]["class_path"] = "renamed_task.NewTask"
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(config))
    advice = (
        "was trained with it: if OldTask was renamed, add `OldTask = <its new name>` to renamed_task so that runs "
        "trained before the rename still load"
    )
    ckpt = "runs/old/r/checkpoints/last.ckpt"
    # The run's own config (found from the checkpoint), and a config that names the new class: the
    # checkpoint's class did not parse ("does not fit this config (Parser key "model":)"), and the
    # advice was to use the run's config, which names the class that is gone.
    for args, trained_with in [([], "the run runs/old/r"), (["--config", "new.yaml"], f"checkpoint {ckpt}")]:
        result = cli("test", "--ckpt_path", ckpt, *args)
        assert result.returncode == 2
        (line,) = [line for line in result.stderr.splitlines() if not line.startswith("Using the config")]
        assert line.startswith("error: unknown task 'renamed_task.OldTask': module renamed_task has no OldTask")
        assert line.endswith(f"; {trained_with} {advice}")
    # The advice, followed, makes the run load again; its record is untouched throughout.
    module.write_text(module.read_text() + "\n\nOldTask = NewTask\n")
    result = cli("test", "--ckpt_path", ckpt)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(path.read_bytes() == data for path, data in record.items())


def test_export_of_a_run_whose_plugin_classes_are_gone_says_what_to_do(tmp_path, monkeypatch):
    """``export`` said only ``cannot rebuild a OldTask(...) from .../config.yaml: Parser key "model":`` (and
    ``cannot build the datamodule of ...: Parser key "data":``) where ``test`` names the class, asks whether its
    plugin is installed or says how to keep a renamed class loadable."""
    import contextlib

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    task_module, data_module = tmp_path / "gone_task.py", tmp_path / "gone_data.py"
    task_module.write_text("from lightning_hw import Classifier\n\n\nclass OldTask(Classifier):\n    pass\n")
    data_module.write_text("from lightning_hw.data.datasets.moons import TwoMoons\n\n\nclass OldData(TwoMoons):\n    pass\n")
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1, "enable_progress_bar": False},
        "model": {"class_path": "gone_task.OldTask", "init_args": {"net": {"class_path": "lightning_hw.nets.mlp.MLP"}}},
        "data": {"class_path": "gone_data.OldData", "init_args": {"n_samples": 40}},
    }
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.syspath_prepend(str(tmp_path))
    with contextlib.chdir(tmp_path):
        main(["fit", "--config", "old.yaml", "--run.name", "r", "--run.wandb", "disabled"])
    run_dir = tmp_path / "runs" / "old" / "r"
    record = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    ckpt = "runs/old/r/checkpoints/last.ckpt"

    def export() -> str:  # forked from the warm process, which imported neither module: it imports them as they are now
        result = warm_start.run(
            [sys.executable, "-m", "lightning_hw", "export", "--ckpt_path", ckpt],
            capture_output=True, text=True, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr[-3000:]
        (line,) = result.stderr.splitlines()
        return line

    # The task's plugin uninstalled.
    task_source = task_module.read_text()
    task_module.unlink()
    line = export()
    assert line.startswith(
        "error: unknown task 'gone_task.OldTask': there is no module gone_task; is its plugin installed?"
    ), line
    # The task back, the datamodule's class renamed.
    task_module.write_text(task_source)
    data_module.write_text(data_module.read_text().replace("OldData", "NewData"))
    line = export()
    assert line.startswith("error: unknown datamodule 'gone_data.OldData': module gone_data has no OldData"), line
    assert line.endswith(
        "; the run runs/old/r was trained with it: if OldData was renamed, add `OldData = <its new name>` to "
        "gone_data so that runs trained before the rename still load"
    ), line
    assert all(path.read_bytes() == data for path, data in record.items())
    assert not (run_dir / "eval").exists() or not any((run_dir / "eval").iterdir())


# -- a task and datamodule written as the README's "Writing your own" says ---------------------------

OWN_SOURCE = '''
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_hw import InMemoryDataModule, Task


class OwnBlobs(InMemoryDataModule):
    """Three blobs in 5-D."""

    @property
    def class_names(self):
        return ["a", "b", "c"]

    @property
    def input_shape(self):
        return (5,)

    def load_tensors(self):
        y = torch.arange(120) % 3
        return torch.randn(120, 5, generator=torch.Generator().manual_seed(0)) + 2 * y[:, None].float(), y


class OwnTask(Task):
    """A linear classifier whose sizes come from the data only."""

    monitor, monitor_mode = "val/acc", "max"
    linked_from_data = ("num_classes", "input_shape")

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], lr: float | None = None):
        super().__init__(lr=lr)
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_metrics", MetricCollection({"acc": MulticlassAccuracy(num_classes)}, prefix=f"{stage}/"))

    def shared_step(self, batch, stage):
        x, y = batch
        out = self.net(x)
        loss = F.cross_entropy(out, y)
        self.log_loss(stage, loss, y.shape[0])
        self.collect(stage, out.argmax(1), y)
        return loss
'''


def test_a_task_whose_linked_arguments_have_no_default_trains(site, workdir):
    """``num_classes: int`` with no default was refused ("the following arguments are required: num_classes,
    input_shape"): the first parse, which learns the classes, ran before the data links were added."""
    fake_distribution(
        site, "own-plugin", {"own_plugin": OWN_SOURCE},
        {"lightning_hw.tasks": {"OwnTask": "own_plugin:OwnTask"}, "lightning_hw.datamodules": {"OwnBlobs": "own_plugin:OwnBlobs"}},
    )  # fmt: skip
    importlib.invalidate_caches()
    config = workdir / "own.yaml"
    config.write_text(yaml.safe_dump({"seed_everything": 0, "model": {"class_path": "OwnTask"}, "data": {"class_path": "OwnBlobs"}}))
    args = ["--config", str(config), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled"]
    main(["fit", *args, "--run.name", "r"])
    run = workdir / "runs" / "own" / "r"
    hparams = torch_load(run / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert (hparams["num_classes"], tuple(hparams["input_shape"])) == (3, (5,))
    # And the commands that read the run back: its checkpoint's settings parse too.
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--run.wandb", "disabled"])
    assert len(list((run / "eval").glob("test-*/metrics.csv"))) == 1


def test_a_task_that_forgot_save_hyperparameters_exports_with_the_sizes_fit_linked(site, workdir, capsys):
    """fit, test and predict worked, but export rebuilt the task without its linked sizes (the checkpoint held no
    hyper_parameters) and said the checkpoint did not fit "a a model()", advising the config it had used."""
    source = OWN_SOURCE.replace("        self.save_hyperparameters()\n", "") + (
        "\n    def forward(self, x):  # what export exports\n        return self.net(x)\n"
    )
    assert "save_hyperparameters" not in source
    fake_distribution(
        site, "own-plugin", {"own_plugin": source},
        {"lightning_hw.tasks": {"OwnTask": "own_plugin:OwnTask"}, "lightning_hw.datamodules": {"OwnBlobs": "own_plugin:OwnBlobs"}},
    )  # fmt: skip
    importlib.invalidate_caches()
    config = workdir / "own.yaml"
    config.write_text(yaml.safe_dump({"seed_everything": 0, "model": {"class_path": "OwnTask"}, "data": {"class_path": "OwnBlobs"}}))
    main(["fit", "--config", str(config), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
          "--run.wandb", "disabled", "--run.name", "r", "--run.test_after_fit", "false"])  # fmt: skip
    ckpt = workdir / "runs" / "own" / "r" / "checkpoints" / "last.ckpt"
    assert not torch_load(ckpt).get("hyper_parameters")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(ckpt), "--output", str(workdir / "own.onnx")])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert (workdir / "own.onnx").is_file()
    assert "onnxruntime on the raw samples" in capsys.readouterr().out


def test_predict_and_export_of_a_task_without_forward_say_so_in_one_line(site, workdir, capsys):
    """A task written as "Writing your own" says (shared_step, no forward) trains and tests; predict and export
    ended in torch's ``NotImplementedError: Module [OwnTask] is missing the required "forward" function``
    traceback (export's inside a page of torch.export advice)."""
    from reliability_helpers import error_of

    fake_distribution(
        site, "own-plugin", {"own_plugin": OWN_SOURCE},
        {"lightning_hw.tasks": {"OwnTask": "own_plugin:OwnTask"}, "lightning_hw.datamodules": {"OwnBlobs": "own_plugin:OwnBlobs"}},
    )  # fmt: skip
    importlib.invalidate_caches()
    config = workdir / "own.yaml"
    config.write_text(yaml.safe_dump({"seed_everything": 0, "model": {"class_path": "OwnTask"}, "data": {"class_path": "OwnBlobs"}}))
    main(["fit", "--config", str(config), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
          "--run.wandb", "disabled", "--run.name", "r", "--run.test_after_fit", "false"])  # fmt: skip
    run = workdir / "runs" / "own" / "r"
    ckpt = str(run / "checkpoints" / "last.ckpt")
    expected = "error: task OwnTask does not implement forward(x); "
    for args in (["predict", "--ckpt_path", ckpt, "--run.wandb", "disabled"], ["export", "--ckpt_path", ckpt]):
        code, line = error_of(args, capsys)
        assert code == 2 and line.startswith(expected), line
    assert not (run / "eval").exists()


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def test_list_does_not_describe_an_undocumented_class_with_its_base_classes_docstring(site, capsys):
    """``class MyTask(Task)`` without a docstring was listed as "Base class of lightning-hw tasks (and of plugin tasks).\""""
    fake_distribution(
        site, "bare-plugin", {"bare_plugin": "from lightning_hw import Task\n\n\nclass BareTask(Task):\n    pass\n"},
        {"lightning_hw.tasks": {"BareTask": "bare_plugin:BareTask"}},
    )  # fmt: skip
    importlib.invalidate_caches()
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "--debug"])  # --debug: never the cached table
    assert exit_info.value.code == 0
    (row,) = [line.split("│") for line in capsys.readouterr().out.splitlines() if "BareTask" in line]
    assert [cell.strip() for cell in row[1:5]] == ["task", "BareTask", "bare-plugin", ""]


# -- a new plugin author's mistakes, each one line --------------------------------------------------

AUTHOR_MISTAKES_SOURCE = '''
from lightning_hw import Classifier
from lightning_hw.nets import NetFactory


class ItemLossTask(Classifier):
    """Returns the loss as a Python float (``loss.item()``), as a logging habit makes one write."""

    def shared_step(self, batch, stage):
        return super().shared_step(batch, stage).item()


class NoReturnTask(Classifier):
    """Forgets to return the loss."""

    def shared_step(self, batch, stage):
        super().shared_step(batch, stage)


class CaseMonitorTask(Classifier):
    """Its monitor differs from the logged val/f1 in case only."""

    monitor = "val/F1"


class NoLogLossTask(Classifier):
    """Collects its predictions but never calls log_loss; it checkpoints on val/loss."""

    monitor, monitor_mode = "val/loss", "min"

    def shared_step(self, batch, stage):
        x, y = batch
        outputs = self(x)
        self.collect(stage, self.head.predict(outputs.detach()), y)
        return self.head.loss(outputs, y)


class LossMonitorTask(Classifier):
    """Checkpoints on val/loss; its monitor_mode is the one it inherits, Classifier's "max" for val/acc."""

    monitor = "val/loss"


class InitMonitorTask(Classifier):
    """Checkpoints on the metric its init arguments name, in the direction they give (set on the instance)."""

    def __init__(self, net: NetFactory, num_classes: int = 2, input_shape: tuple[int, ...] = (1,),
                 class_names: list[str] | None = None, lr: float | None = None, watch: str = "val/acc",
                 watch_mode: str = "max") -> None:
        super().__init__(net, num_classes=num_classes, input_shape=input_shape, class_names=class_names, lr=lr)
        self.monitor, self.monitor_mode = watch, watch_mode


class ManualOptimizationTask(Classifier):
    """Optimises by hand (Lightning's manual optimization) in shared_step, which then returns no loss, as Lightning allows."""

    @property
    def automatic_optimization(self) -> bool:
        return False

    def shared_step(self, batch, stage):
        loss = super().shared_step(batch, stage)
        if stage != "train":
            return loss
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return None


class NarrowTask(Classifier):
    """Takes no class names (it needs none): Classifier's linked_from_data, inherited, names one it does not take."""

    def __init__(self, net: NetFactory, num_classes: int = 2, input_shape: tuple[int, ...] = (1,),
                 lr: float | None = None) -> None:
        super().__init__(net, num_classes=num_classes, input_shape=input_shape, lr=lr)


class RenamedLinkTask(Classifier):
    """Takes the class count as n_classes: Classifier's linked_from_data, inherited, names num_classes."""

    def __init__(self, net: NetFactory, n_classes: int = 3, input_shape: tuple[int, ...] = (1,),
                 class_names: list[str] | None = None, lr: float | None = None) -> None:
        super().__init__(net, num_classes=n_classes, input_shape=input_shape, class_names=class_names, lr=lr)


class MisnamedLinkTask(Classifier):
    """Its linked_from_data names class_name, no init argument of the task (class_names is)."""

    linked_from_data = ("num_classes", "input_shape", "class_name")
'''


@pytest.fixture
def author_mistakes(site):
    """The tasks of ``AUTHOR_MISTAKES_SOURCE``, installed as the distribution ``mistakes-plugin``."""
    tasks = ("ItemLossTask", "NoReturnTask", "CaseMonitorTask", "NoLogLossTask", "LossMonitorTask", "InitMonitorTask", "ManualOptimizationTask", "NarrowTask", "RenamedLinkTask", "MisnamedLinkTask")
    fake_distribution(
        site, "mistakes-plugin", {"author_mistakes": AUTHOR_MISTAKES_SOURCE},
        {"lightning_hw.tasks": {name: f"author_mistakes:{name}" for name in tasks}},
    )  # fmt: skip
    importlib.invalidate_caches()


@pytest.mark.parametrize(
    ("task", "returned"),
    [("ItemLossTask", "a float"), ("NoReturnTask", "None")],
    ids=["float", "none"],
)
def test_a_shared_step_that_returns_no_loss_tensor_is_one_line_and_no_run(author_mistakes, tiny_args, workdir, capsys, task, returned):
    """``loss.item()`` ended in Lightning's MisconfigurationException traceback about a ``training_step`` the
    author never wrote; a missing ``return`` skipped every step (one Lightning warning) and recorded a finished
    run of untrained weights, tested as if it had trained."""
    from reliability_helpers import error_of

    code, line = error_of(tiny_args("fit", "--model", task), capsys)
    assert code == 2
    assert line.startswith(f"error: task {task} shared_step(batch, 'train') returned {returned}, not the batch's loss"), line
    assert "plugins/README.md" in line
    assert not (workdir / "runs").exists()


def test_a_task_optimising_by_hand_may_return_no_loss_from_shared_step(author_mistakes, tiny_args, workdir):
    """With Lightning's manual optimization a training step may return nothing; such a task was refused as
    "shared_step(batch, 'train') returned None, not the batch's loss" though it trained as Lightning allows."""
    import json

    main(tiny_args("fit", "--model", "ManualOptimizationTask", "--run.name", "r", "--trainer.max_epochs", "2"))
    run = workdir / "runs" / "quickstart" / "r"
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    rows = [row for row in csv.DictReader((run / "metrics.csv").open()) if row.get("train/loss")]
    assert len(rows) >= 2 and float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])  # it trained


def test_a_monitor_that_differs_in_case_from_a_logged_metric_is_refused_before_training(author_mistakes, tiny_args, workdir, capsys):
    """``val/F1`` for the logged ``val/f1`` was not close enough to be called a typo at the sanity check: the run
    trained its first epoch and stayed behind, marked failed, and the line suggested nothing."""
    from reliability_helpers import error_of

    code, line = error_of(tiny_args("fit", "--model", "CaseMonitorTask", "--run.monitor", "null"), capsys)
    assert code == 2
    assert line.startswith("error: CaseMonitorTask.monitor val/F1 is not a metric this run logs (did you mean val/f1?)"), line
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    ("task", "name", "meant"),
    [("MisnamedLinkTask", "class_name", "class_names"), ("RenamedLinkTask", "num_classes", "n_classes")],
    ids=["misspelt-in-the-task", "renamed-by-a-subclass"],
)
def test_a_linked_from_data_name_that_is_no_init_argument_is_one_line(author_mistakes, tiny_args, workdir, capsys, task, name, meant):
    """A name in ``linked_from_data`` that the task's ``__init__`` does not take was skipped without a word: the
    task kept its default for the argument meant (a net of the wrong size: a shape traceback in the first step, or
    silently wrong class names). So was one a subclass renamed (``n_classes`` for the ``num_classes`` its base
    links): a net of its default size trained on the digits' 10 classes, dropped as for an argument the subclass
    leaves out (``NarrowTask``'s ``class_names``)."""
    from reliability_helpers import error_of

    code, line = error_of(tiny_args("fit", "--model", task), capsys)
    assert code == 2
    assert line.startswith(
        f"error: {task}.linked_from_data names {name}, which is not an init argument of {task} (did you mean {meant}?)"
    ), line
    assert not (workdir / "runs").exists()


def test_a_task_monitoring_val_loss_it_never_logs_is_told_to_call_log_loss(author_mistakes, tiny_args, capsys):
    """The line said only "give one of val/acc, val/f1 to NoLogLossTask.monitor": the task's monitor was right,
    its shared_step lacked the self.log_loss call that logs val/loss."""
    from reliability_helpers import error_of

    code, line = error_of(tiny_args("fit", "--model", "NoLogLossTask", "--run.monitor", "null"), capsys)
    assert code == 2
    assert line == (
        "error: NoLogLossTask.monitor val/loss is not a metric this run logs; a Task logs <stage>/loss when its "
        "shared_step calls self.log_loss(stage, loss, batch_size) (see \"4. A task\" in plugins/README.md): call "
        "it, or give one of val/acc, val/f1 to NoLogLossTask.monitor (the task class's attribute) or --run.monitor"
    ), line


@pytest.mark.parametrize(
    "task",
    [["LossMonitorTask"], ["InitMonitorTask", "--model.init_args.watch", "val/loss", "--model.init_args.watch_mode", "min"]],
    ids=["inherited-mode", "set-on-the-instance"],
)
def test_a_monitor_set_without_its_mode_keeps_the_best_epoch_by_what_the_name_says(author_mistakes, tiny_args, workdir, task):
    """A task class that set ``monitor = "val/loss"`` and inherited ``monitor_mode = "max"`` (or set
    ``monitor = "val/f1"`` and inherited Task's "min") kept its worst epoch as the best checkpoint, and fit tested
    that one, without a word. A mode set beside the monitor, or on a subclass of it, is kept as it is; so is one
    set with it on the task itself, in ``__init__`` (read from the class, Classifier's "max" kept the worst)."""
    main_args = tiny_args("fit", "--model", *task, "--run.monitor", "null", "--run.name", "r",
                          "--trainer.max_epochs", "3", "--run.test_after_fit", "false")  # fmt: skip
    main(main_args)
    run = workdir / "runs" / "quickstart" / "r"
    rows = [row for row in csv.DictReader((run / "metrics.csv").open()) if row.get("val/loss")]
    losses = {int(row["epoch"]): float(row["val/loss"]) for row in rows}
    lowest, highest = min(losses, key=losses.get), max(losses, key=losses.get)
    assert lowest != highest, losses  # else the test could not tell the modes apart
    assert [p.name for p in (run / "checkpoints").glob("best-*.ckpt")] == [f"best-epoch{lowest:03d}.ckpt"]


def test_a_search_on_a_monitor_set_without_its_mode_optimises_in_the_direction_the_name_says(author_mistakes, workdir):
    """A search's default objective is what fit checkpoints on: for ``LossMonitorTask`` it maximised val/loss."""
    from lightning_hw.studies import search

    config = workdir / "loss_monitor.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "LossMonitorTask"}, "data": {"class_path": "Digits"}}))
    study = workdir / "s.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "config": str(config), "search": {"model.init_args.lr": {"float": [1e-3, 0.1]}}}))
    spec = search.load_search(study)
    assert (spec.metric, spec.direction) == ("val/loss", "minimize")


def test_a_task_that_drops_an_argument_its_base_links_from_the_data_still_trains(author_mistakes, tiny_args, workdir):
    """A subclass whose ``__init__`` leaves out an argument of its base (``class_names``) inherits the base's
    ``linked_from_data``: that name is the base's, no typo of the author's, and was refused as one."""
    main(tiny_args("fit", "--model", "NarrowTask", "--run.name", "r", "--trainer.max_epochs", "1"))
    run = workdir / "runs" / "quickstart" / "r"
    import torch

    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["hyper_parameters"]
    assert saved["num_classes"] == 10 and saved["input_shape"] == (1, 8, 8), saved  # the digits' sizes, linked
