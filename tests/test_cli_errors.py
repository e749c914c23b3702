"""The error layer's contract with jsonargparse: one test per message form that ``cli_errors.explain`` reads.

jsonargparse has no structured errors, so :func:`~lightning_hw.cli.errors.explain` recognises
each report by its wording. Every test here triggers its form through the real parser and
checks both jsonargparse's own wording and our one line: when a new jsonargparse words a form
differently, the test named after that form fails and says which version did it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jsonargparse
import pytest
import yaml

import lightning_hw.cli.parser as cli
from lightning_hw.cli.errors import explain
from lightning_hw.cli.commands import SUBCOMMANDS
from reliability_helpers import error_of
from lightning_hw.cli import warm_start

JSONARGPARSE = f"jsonargparse {jsonargparse.__version__}"
COMMANDS = "fit, validate, test, predict, list, study, report, export, lr-find, new-plugin"


@pytest.fixture
def explained(capsys, monkeypatch):
    """Run the CLI; return jsonargparse's own message and our one ``error:`` line (exit code 2)."""

    def run(args: list[str]) -> tuple[str, str]:
        seen: list[str] = []

        def spy(message: str, subcommand, parser, args=None) -> str:
            seen.append(message)
            return explain(message, subcommand, parser, args)

        monkeypatch.setattr(cli, "explain", spy)
        code, line = error_of(args, capsys)
        assert code == 2, line
        assert seen, f"{JSONARGPARSE}: {args} did not fail in the parser: {line}"
        return seen[-1], line

    return run


def assert_form(pattern: str, message: str) -> None:
    """jsonargparse still words this report the way ``explain`` reads it."""
    assert re.search(pattern, message), f"{JSONARGPARSE} words it differently now; explain() expects {pattern!r} in:\n{message}"


# -- one test per form ---------------------------------------------------------------------------


def test_form_invalid_choice_of_subcommand(explained):
    message, line = explained(["studdy", "configs/studies/overfitting.yaml"])
    assert_form(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    # The table's commands, not only the four jsonargparse knows (study was left out).
    assert line == f"error: unknown command 'studdy'; did you mean study? commands: {COMMANDS}", JSONARGPARSE


def test_form_subcommand_not_provided(explained):
    message, line = explained([])
    assert_form(r'expected "subcommand" to be one of .* but it was not provided', message)
    assert line == f"error: no command given; commands: {COMMANDS} (see python -m lightning_hw --help)", JSONARGPARSE


def test_form_unrecognized_arguments(tiny_args, explained):
    message, line = explained(tiny_args("fit", "--frobnicate", "1"))
    assert_form(r"unrecognized arguments: (.*)", message)
    assert line == "error: unknown option --frobnicate (options: python -m lightning_hw fit --help)", JSONARGPARSE


def test_form_does_not_accept_option(tiny_args, workdir, explained):
    args = tiny_args("fit")
    config = yaml.safe_load(open(args[2]))
    config["trainer"]["max_epoch"] = 3
    args[2] = str(workdir / "typo.yaml")
    Path(args[2]).write_text(yaml.safe_dump(config))
    message, line = explained(args)
    assert_form(r"does not accept option '([^']+)'", message)
    assert line.startswith(
        f"error: unknown option 'trainer.max_epoch' (in {workdir / 'typo.yaml'}); did you mean trainer.max_epochs"
    ), f"{JSONARGPARSE}: {line}"


def test_form_option_is_not_accepted(tiny_args, explained):
    message, line = explained(tiny_args("fit", "--model.init_args.hed", "x"))
    assert_form(r"Option '([^']+)' is not accepted", message)
    assert_form(r"class_path='([\w.]+)'|class_path '([\w.]+)'", message)  # which class: for its options
    assert line.startswith("error: Classifier has no option 'hed'; did you mean head? (accepted: "), f"{JSONARGPARSE}: {line}"


@pytest.mark.parametrize("option", ["input_shape", "num_outputs", "hiden"])
def test_a_nets_sizes_set_in_its_init_args_are_not_called_an_unfit_net(tiny_args, explained, option):
    # MLP takes (input_shape, num_outputs) first and is a fine net; setting one of them was answered
    # "MLP cannot be a net", and a typo's listing offered both as accepted options.
    _, line = explained(tiny_args("fit", f"--model.init_args.net.init_args.{option}", "3"))
    assert "cannot be a net" not in line, line
    if option == "hiden":
        assert line == (
            "error: MLP has no option 'hiden'; did you mean hidden? (accepted: hidden, activation, dropout, "
            "batch_norm, l1, l2)"
        ), JSONARGPARSE
    else:
        assert line.startswith(f"error: MLP's {option} is not set in its init_args: the task gives it"), line
        assert line.endswith(f"; remove {option}"), line


def test_form_expected_a_dot_import_path(tiny_args, explained):
    message, line = explained(tiny_args("fit", "--optimizer", "Adamm"))
    assert_form(r'Parser key "([^"]+)"', message)
    assert_form(r"Expected a dot import path string: ?'?([\w.]+)'?", message)
    assert line.startswith("error: --optimizer: no class named 'Adamm'; did you mean Adam"), f"{JSONARGPARSE}: {line}"


@pytest.mark.parametrize("form", ["option", "config"])
def test_a_short_name_of_our_own_callback_names_its_full_class_path(tiny_args, workdir, form):
    """``--trainer.callbacks+=FeatureCache`` (or ``class_path: FeatureCache`` in a config) said only
    "no class named 'FeatureCache'", of a class the README names: short names resolve only for
    classes already imported, and ours are imported when a config names them in full. (A fresh
    process: in this one, another test may have imported the class.)"""
    (workdir / "callbacks.yaml").write_text("trainer:\n  callbacks:\n    - class_path: FeatureCache\n")
    extra = ["--trainer.callbacks+=FeatureCache"] if form == "option" else ["--config", str(workdir / "callbacks.yaml")]
    done = warm_start.run(
        [sys.executable, "-m", "lightning_hw", *tiny_args("fit", *extra)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "error: --trainer.callbacks: 'FeatureCache' is lightning-hw's lightning_hw.callbacks.feature_cache.FeatureCache, "
        "which a short name does not find: give that full class_path"
    ), done.stderr


def test_form_import_path_not_a_subclass(tiny_args, explained):
    """Was "no class named 'does'": the form lost its value, which only "Given value:" still names."""
    message, line = explained(tiny_args("fit", "--optimizer", "torch.nn.Linear"))
    assert_form(r"Import path (?:'?[\w.]+'? )?does not correspond to a subclass of (\w+)", message)
    assert_form(r"Given value: (.*)", message)
    assert line == "error: --optimizer: torch.nn.Linear is not a subclass of Optimizer", JSONARGPARSE


def test_form_file_does_not_exist(tmp_path):
    """No option of ours is file-typed yet (--config is checked before parsing): a real parser with one."""
    from jsonargparse.typing import Path_fr

    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--weights", type=Path_fr)
    missing = tmp_path / "nothere.pt"
    with pytest.raises(jsonargparse.ArgumentError) as err:
        parser.parse_args(["--weights", str(missing)])
    assert_form(r"File does not exist: '?([^'\n]+)'?", str(err.value))
    assert explain(str(err.value), None, parser) == f"--weights: file not found: {missing}", JSONARGPARSE


def test_form_expected_a_type_got_value(tiny_args, explained):
    message, line = explained(tiny_args("fit", "--trainer.max_epochs", "many"))
    assert_form(r"Expected an? <class '(\w+)'>", message)
    assert_form(r"(?:Given value|Got value): (.*)", message)
    assert line == "error: --trainer.max_epochs: expected int, got many", JSONARGPARSE


def test_form_expected_a_list_says_how_to_give_one(tiny_args, explained, capsys):
    """``--run.tags e1`` (one value where a list belongs) said only 'expected list, got e1'."""
    message, line = explained(tiny_args("fit", "--run.tags", "e1"))
    assert_form(r"Expected an? <class '(\w+)'>", message)
    assert line == (
        "error: --run.tags: expected list, got e1; give a list, --run.tags '[e1]', or add one item with --run.tags+ e1"
    ), JSONARGPARSE
    for form in (["--run.tags", "[e1]"], ["--run.tags+", "e1"]):  # both forms the line gives are taken
        with pytest.raises(SystemExit) as done:
            cli.main(tiny_args("fit", *form, "--print_config"))
        assert done.value.code in (0, None)
        assert "tags:\n  - e1\n" in capsys.readouterr().out


def test_form_expected_a_literal(tiny_args, explained):
    message, line = explained(tiny_args("predict", "--on_unreadable", "maybe"))
    assert_form(r"Expected an? typing\.Literal\[(.*)\]", message)
    assert line == "error: --on_unreadable: expected one of 'fail', 'skip', got maybe", JSONARGPARSE


def test_any_other_report_is_folded_into_one_line():
    line = explain("Something new\n  happened here\n", "fit")
    assert line == "Something new happened here (options: python -m lightning_hw fit --help)"


# -- the table of subcommands and the program name -----------------------------------------------


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_of_the_table_runs(name, capsys):
    """``main()`` dispatches each name in the table (``--help`` of each; ``list`` takes no options)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name] if name == "list" else [name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") or "lightning-hw tasks and datamodules" in out


def test_help_lists_every_subcommand_and_names_the_program(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/lightning-hw", "--help"])
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: lightning-hw ")  # the console script
    description = "".join(out.split())  # argparse wraps lines, also at hyphens ("new-" / "plugin")
    for name, command in SUBCOMMANDS.items():
        assert "".join(f"{name} ({command.help})".split()) in description


@pytest.mark.slow
def test_help_of_python_m_names_python_m():
    """It said ``usage: __main__.py``."""
    result = warm_start.run([sys.executable, "-m", "lightning_hw", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: python -m lightning_hw ")


# -- a net that does not take the sizes ----------------------------------------------------------

BAD_NETS = '''
import torch


class NoSizes(torch.nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.layer = torch.nn.LazyLinear(hidden)


class NoArgs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
'''



def fit_with_modules_in(folder: Path, config: dict) -> subprocess.CompletedProcess:
    """``fit`` on ``config`` as a subprocess in ``folder``, whose Python modules it can import (a user's own classes)."""
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return warm_start.run(
        [sys.executable, "-m", "lightning_hw", "fit", "--config", "config.yaml", "--run.wandb", "disabled"],
        capture_output=True, text=True, cwd=folder,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        # jsonargparse takes `hidden` for input_shape and refused it as "no option 'hidden'; did you mean hidden?"
        ({"class_path": "bad_nets.NoSizes", "init_args": {"hidden": 8}}, "NoSizes(hidden)"),
        # parsed without complaint, then the call failed with a jsonargparse traceback
        ({"class_path": "bad_nets.NoSizes"}, "NoSizes(hidden)"),
        ({"class_path": "bad_nets.NoArgs"}, "NoArgs()"),
    ],
)
def test_a_net_without_input_shape_and_num_outputs_is_one_line(tmp_path, net, expected):
    (tmp_path / "bad_nets.py").write_text(BAD_NETS)
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1},
        "model": {"class_path": "Classifier", "init_args": {"net": net}},
        "data": {"class_path": "TwoMoons", "init_args": {"n_samples": 40}},
    }
    result = fit_with_modules_in(tmp_path, config)
    name = expected.split("(")[0]
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        f"error: {name} cannot be a net: the task calls it as {name}(input_shape, num_outputs, ...), so its first two "
        f"init parameters must be input_shape and num_outputs ({expected})"
    ]
    assert not (tmp_path / "runs").exists()


# -- a datamodule without a size its task links --------------------------------------------------

SHAPELESS_DATA = '''
import torch

from lightning_hw import InMemoryDataModule


class Shapeless(InMemoryDataModule):
    @property
    def class_names(self):
        return ["a", "b"]

    def load_tensors(self):
        return torch.randn(40, 3), torch.randint(0, 2, (40,))
'''


def test_a_datamodule_without_a_linked_size_is_one_line(tmp_path):
    # Classifier links input_shape from the data; the base's input_shape raises NotImplementedError,
    # which came out as a traceback from inside jsonargparse's argument links.
    (tmp_path / "shapeless.py").write_text(SHAPELESS_DATA)
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1},
        "model": {"class_path": "Classifier", "init_args": {"net": {"class_path": "lightning_hw.nets.mlp.MLP"}}},
        "data": {"class_path": "shapeless.Shapeless"},
    }
    result = fit_with_modules_in(tmp_path, config)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "error: datamodule Shapeless does not implement input_shape (NotImplementedError), which the task Classifier "
        "takes from the data (its linked_from_data); define input_shape in Shapeless, e.g. as a property "
        "(plugins/README.md, section 3)"
    ]
    assert not (tmp_path / "runs").exists()


def test_a_projects_own_config_yaml_is_not_called_a_run_trained_with_a_mistyped_class(tmp_path):
    # The renamed-class advice ("the run X was trained with it") is for a run's saved config.yaml;
    # any file called config.yaml got it, for a class that was merely mistyped.
    (tmp_path / "config.yaml").write_text("model: {}\n")
    args = ["fit", "--config", str(tmp_path / "config.yaml")]
    assert cli._run_words(args) is None
    (tmp_path / "metrics.csv").write_text("epoch\n0\n")  # a run's record: config and metrics
    assert cli._run_words(args) == f"the run {tmp_path}"


def test_a_monitor_the_task_never_logs_is_one_line_and_leaves_no_run(tiny_args, workdir, capsys):
    """`--run.monitor val/accc` was Lightning's ModelCheckpoint traceback at the first epoch's end,
    leaving a failed run that trained and could not be resumed; now the sanity check refuses it."""
    code, line = error_of(tiny_args("fit", "--run.monitor", "val/accc"), capsys)
    assert code == 2
    assert line == (
        "error: run.monitor val/accc is not a metric this run logs (did you mean val/acc?); "
        "give one of val/acc, val/f1, val/loss to run.monitor"
    )
    assert not [p for p in (workdir / "runs").rglob("*") if p.is_file()]  # nothing trained, nothing recorded
    # A metric the task skips while sanity checking (no close match: no typo) is checked after the first real
    # validation: such a task trains, and a monitor it never logs is refused then.
    skipping = ("--model", "reliability_helpers.MetricsAfterSanityCheck", "--run.test_after_fit", "false")
    cli.HWCLI(args=tiny_args("fit", "--run.monitor", "val/acc", "--run.name", "skips", *skipping))
    assert (workdir / "runs" / "quickstart" / "skips" / "checkpoints" / "last.ckpt").is_file()
    code, line = error_of(tiny_args("fit", "--run.monitor", "val/top5", "--run.name", "top5", *skipping), capsys)
    assert code == 2 and line.startswith("error: run.monitor val/top5 is not a metric this run logs; give one of val/acc")


def test_a_monitor_outside_the_tasks_own_names_is_refused_before_the_first_epoch(tiny_args, workdir, capsys):
    """`--run.monitor val/precision` (no typo of a logged name) was refused only after the first epoch (on the
    landmark demo with 3,000 faces: after 66 steps, a failed run with a metrics.csv left); the task names what it logs."""
    code, line = error_of(tiny_args("fit", "--run.monitor", "val/precision"), capsys)
    assert (code, line) == (2, "error: run.monitor val/precision is not a metric this run logs; give one of val/acc, val/f1, "
                               "val/loss to run.monitor")
    assert not (workdir / "runs").exists()  # nothing trained, nothing recorded
    # A subclass logging a name of its own, or a callback of the user's logging one: never refused (checked once logged).
    own = ("--model", "reliability_helpers.OwnValidationMetric", "--run.monitor", "val/own")
    callback = ("--trainer.callbacks+=reliability_helpers.LogsValidationMetric", "--run.monitor", "val/from_callback")
    for name, extra in (("own", own), ("callback", callback)):
        cli.HWCLI(args=tiny_args("fit", "--run.name", name, "--run.test_after_fit", "false", *extra))
        assert (workdir / "runs" / "quickstart" / name / "checkpoints" / "last.ckpt").is_file()


def test_an_early_stopping_monitor_the_task_never_logs_is_one_line_and_leaves_no_run(tiny_args, workdir, capsys):
    """`--trainer.callbacks+=EarlyStopping --trainer.callbacks.monitor val/accc` was Lightning's RuntimeError traceback
    at the first epoch's end (exit 1), leaving a failed run; a non-strict one (strict: false) only warns, so it trains."""
    early = ("--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor", "val/accc")
    code, line = error_of(tiny_args("fit", *early), capsys)
    assert (code, line) == (2, "error: the monitor of EarlyStopping val/accc is not a metric this run logs (did you mean "
                               "val/acc?); give one of val/acc, val/f1, val/loss to EarlyStopping's monitor")
    assert not (workdir / "runs").exists()  # nothing trained, nothing recorded
    cli.HWCLI(args=tiny_args("fit", *early, "--trainer.callbacks.strict", "false", "--run.name", "lenient",
                             "--run.test_after_fit", "false"))
    assert (workdir / "runs" / "quickstart" / "lenient" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("where", ["config", "command line"])
def test_form_class_path_names_no_class_of_its_module(tiny_args, workdir, explained, where):
    """A misspelled callback class (ClassificationInterpretaton) gave jsonargparse's Union report cut off at
    "has no attribute...", or "expected a path but ... either not accessible or invalid"."""
    typo = "lightning_hw.callbacks.interpretation.ClassificationInterpretaton"
    args = tiny_args("fit")
    if where == "config":
        (workdir / "typo.yaml").write_text(f"trainer:\n  callbacks:\n    - class_path: {typo}\n")
        args += ["--config", str(workdir / "typo.yaml")]
    else:
        args += [f"--trainer.callbacks+={typo}"]
    message, line = explained(args)
    assert_form(r"Problem with given class_path '([\w.]+)':\s*module '([\w.]+)' has no attribute '(\w+)'", message)
    assert line == (
        f"error: --trainer.callbacks: no class named '{typo}': lightning_hw.callbacks.interpretation has no "
        "ClassificationInterpretaton; did you mean ClassificationInterpretation?"
    ), JSONARGPARSE
