"""``eval`` and ``report`` are folders of a group (``runs/<group>/eval/``, ``runs/<group>/report/``), not run names.

Before, ``fit --run.name eval`` made ``runs/<group>/eval`` a run, and an evaluation of an outside
checkpoint (``test --config ... --ckpt_path outside.ckpt``) then wrote its records among that
run's files (``runs/<group>/eval/test-<time>/``); ``report runs/<group>`` likewise wrote into a
run named ``report``. A new run of such a name is refused; one made before stays usable.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from conftest import QUICKSTART
from reliability_helpers import error_of, output_of

HOLDS = {
    "eval": "the group's evaluations of checkpoints from outside its runs",
    "report": "the group's report (report runs/<group>)",
}


@pytest.mark.parametrize("name", ["eval", "report"])
def test_a_new_run_of_a_reserved_name_is_refused(tiny_args, workdir, capsys, name):
    code, line = error_of(tiny_args("fit", "--run.name", name), capsys)
    assert code == 2
    group = workdir / "runs" / "quickstart"
    assert line == f"error: run name {name!r} is reserved: {group / name}/ holds {HOLDS[name]}; give another --run.name"
    assert not group.exists()  # no run folder made (nor its group)


@pytest.mark.parametrize("name, reserved", [("Eval", "eval"), ("REPORT", "report")])
def test_a_reserved_name_in_another_case_is_refused(tiny_args, workdir, capsys, name, reserved):
    """``Eval`` and ``REPORT`` trained runs: on a case-insensitive filesystem (macOS's default) they are the group's folders."""
    code, line = error_of(tiny_args("fit", "--run.name", name), capsys)
    group = workdir / "runs" / "quickstart"
    assert code == 2
    assert line == (f"error: run name {name!r} is reserved (in any case: {name!r} is {reserved!r} on a case-insensitive "
                    f"filesystem): {group / reserved}/ holds {HOLDS[reserved]}; give another --run.name")
    assert not group.exists()


def test_a_reserved_name_from_a_config_file_is_refused(tiny_args, workdir, capsys):
    named = workdir / "named.yaml"
    named.write_text("run:\n  name: eval\n")
    code, line = error_of(tiny_args("fit", "--config", str(named)), capsys)
    assert code == 2 and line.startswith("error: run name 'eval' is reserved: ")
    assert not (workdir / "runs").exists()


def test_an_evaluation_filed_under_a_reserved_name_is_refused(trained_run, tiny_args, workdir, capsys):
    """``test --run.name eval`` of an outside checkpoint, with no such run, would make ``runs/<group>/eval/eval/``."""
    loose = workdir / "outside.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", loose)
    code, line = error_of(tiny_args("test", "--ckpt_path", str(loose), "--run.name", "eval"), capsys)
    assert code == 2 and line.startswith("error: run name 'eval' is reserved: ")
    assert not (workdir / "runs").exists()


def test_a_study_variant_of_a_reserved_name_is_refused_at_dry_run(workdir, capsys):
    study = workdir / "heads.yaml"
    study.write_text(yaml.safe_dump({"config": str(QUICKSTART), "variants": {"report": {"trainer.max_epochs": 1}}}))
    code, line = error_of(["study", str(study), "--dry-run"], capsys)
    assert code == 2
    assert line == (
        f"error: study {study}: run name 'report' is reserved: runs/heads/report/ holds {HOLDS['report']}; rename the variant"
    )


def test_an_outside_evaluation_no_longer_lands_in_a_run(trained_run, tiny_args, workdir, capsys):
    """The collision itself: the group's evaluation of an outside checkpoint goes to runs/<group>/eval/, which no run holds."""
    error_of(tiny_args("fit", "--run.name", "eval"), capsys)
    loose = workdir / "outside.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", loose)
    output_of(*tiny_args("test", "--ckpt_path", str(loose)))
    group_eval = workdir / "runs" / "quickstart" / "eval"
    assert [p.name for p in group_eval.iterdir()][0].startswith("test-")
    assert not (group_eval / "config.yaml").exists() and not (group_eval / "checkpoints").exists()


def test_a_run_named_eval_before_the_check_can_still_be_evaluated_resumed_and_reported(trained_run, workdir):
    """A run of a reserved name made by an earlier version is a record like any: evaluate, continue and report it."""
    root = workdir / "runs"
    old = root / "quickstart" / "eval"
    shutil.copytree(trained_run, old)
    config = yaml.safe_load((old / "config.yaml").read_text())
    config["run"].update(root=str(root), name="eval")
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    quick = ["--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false", "--run.wandb", "disabled"]

    said = output_of("test", "--config", str(old / "config.yaml"), "--ckpt_path", "last", *quick)
    assert f"Evaluation saved in {old / 'eval'}/test-" in said
    output_of(
        "fit", "--config", str(old / "config.yaml"), "--ckpt_path", "last", "--trainer.max_epochs", "3",
        "--run.test_after_fit", "false", *quick,
    )
    epochs = {row.split(",")[0] for row in (old / "metrics.csv").read_text().splitlines()[1:]}
    assert epochs == {"0", "1", "2"}  # continued in place
    output_of("report", str(old))
    assert (old / "report" / "report.md").is_file()


def test_a_group_report_is_not_written_into_a_run_named_report_before_the_check(trained_run, workdir, capsys):
    """``report runs/<group>`` wrote its report.md, report.csv and figures among the files of a run
    named ``report`` made before the name was reserved, while ``--out`` to that folder was refused
    as "a run's directory, whose files no other command changes" (and named it as the default)."""
    group = workdir / "runs" / "quickstart"
    old = group / "report"
    shutil.copytree(trained_run, old)
    before = sorted(p.name for p in old.rglob("*"))
    code, line = error_of(["report", str(group)], capsys)
    assert code == 2
    assert line == (
        f"error: {old} is a run named 'report' (made before the name was kept for a group's report), "
        f"whose files no other command changes; write this report elsewhere: python -m lightning_hw report {group} --out {group / 'group-report'}"
    )
    assert sorted(p.name for p in old.rglob("*")) == before
    # the printed command works
    output_of("report", str(group), "--out", str(group / "group-report"))
    assert (group / "group-report" / "report.md").is_file()
    assert sorted(p.name for p in old.rglob("*")) == before


def test_an_outside_evaluation_is_not_written_into_a_run_named_eval_before_the_check(trained_run, tiny_args, workdir, capsys):
    """``test --ckpt_path outside.ckpt`` files its scores under ``runs/<group>/eval/``: where a run named
    ``eval`` was made before the name was reserved, its ``test-<time>/`` landed among that run's files."""
    group = workdir / "runs" / "quickstart"
    old = group / "eval"
    shutil.copytree(trained_run, old)
    before = sorted(p.name for p in old.iterdir())
    loose = workdir / "outside.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", loose)
    code, line = error_of(tiny_args("test", "--ckpt_path", str(loose)), capsys)
    assert code == 2
    assert line == (
        f"error: {old} is a run named 'eval' (made before the name was kept for a group's evaluations), whose files "
        f"no other command changes; file this evaluation under a name of its own: add --run.name NAME (it goes to {group}/NAME/eval/)"
    )
    assert sorted(p.name for p in old.iterdir()) == before
    said = output_of(*tiny_args("test", "--ckpt_path", str(loose), "--run.name", "outside"))  # as the line says
    assert f"Evaluation saved in {group / 'outside' / 'eval'}/test-" in said
    assert sorted(p.name for p in old.iterdir()) == before
