"""`report` as a user runs it: a subprocess of the CLI, its screen (one line, exit code) and its disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from lightning_hw.cli import warm_start


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m lightning_hw ARGS`` in ``cwd``, with this checkout's package first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return warm_start.run([sys.executable, "-m", "lightning_hw", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def cli_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -c SCRIPT ARGS`` in ``cwd`` (a script that patches lightning-hw, then runs its CLI on ``ARGS``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return warm_start.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def a_report_and_a_run_added_since(root: Path) -> tuple[Path, dict[str, bytes]]:
    """Two runs reported in ``runs/s/report``, then a third run added (the next report differs): the folder and its files."""
    two_runs(root)
    assert cli("report", "runs/s", cwd=root).returncode == 0
    out = root / "runs" / "s" / "report"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run_c = root / "runs" / "s" / "c"
    run_c.mkdir()
    (run_c / "metrics.csv").write_text("epoch,step,val/acc\n0,1,0.9\n")
    return out, before


def two_runs(root: Path) -> None:
    """``runs/s/a`` and ``runs/s/b``: finished runs of two epochs each."""
    for name, acc in (("a", 0.5), ("b", 0.7)):
        run = root / "runs" / "s" / name
        run.mkdir(parents=True)
        (run / "metrics.csv").write_text(f"epoch,step,val/acc\n0,1,{acc - 0.1}\n1,2,{acc}\n")
        (run / "status.json").write_text('{"status": "finished"}\n')


def test_out_naming_a_file_is_refused_in_one_line_and_the_file_kept(workdir):
    """`report ... --out notes.txt` (a file that exists) ended in a FileExistsError traceback, exit 1."""
    two_runs(workdir)
    (workdir / "notes.txt").write_text("my notes\n")
    done = cli("report", "runs/s", "--out", "notes.txt", cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --out notes.txt is a file, not a folder; give a folder for the report's files (report.md, report.csv, figures)"
    ]
    assert (workdir / "notes.txt").read_text() == "my notes\n"


def test_a_run_whose_status_file_is_damaged_is_not_called_finished(workdir):
    """A status.json cut short (a full disk, an edit by hand) was read as no status, and the run
    listed as finished, with no status column at all: its record says nothing of how it ended."""
    import csv

    two_runs(workdir)
    damaged = workdir / "runs" / "s" / "b" / "status.json"
    damaged.write_text('{"status": "interr')
    done = cli("report", "runs/s", cwd=workdir)
    assert done.returncode == 0, done.stderr
    rows = {row["run"]: row for row in csv.DictReader((workdir / "runs" / "s" / "report" / "report.csv").open())}
    assert {name: row["status"] for name, row in rows.items()} == {"a": "finished", "b": "unknown (status.json unreadable)"}
    assert "| b | 2 | unknown (status.json unreadable) | 0.7000 |" in done.stdout
    assert damaged.read_text() == '{"status": "interr'  # left as it was


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "SIGINT (Ctrl-C)"), (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_while_the_report_draws_leaves_the_earlier_report_whole(workdir, signum, code, said):
    """Ctrl-C after report.csv was written but before the figures and report.md: the folder held the
    new table beside the earlier report's report.md and figures, two reports passing for one.
    SIGTERM (a scheduler's stop) ended the process at once, leaving the hidden half-written report."""
    out, before = a_report_and_a_run_added_since(workdir)
    # The CLI's own main, with Ctrl-C arriving as the first figure is drawn (after report.csv).
    interrupt_at_first_figure = (
        "import os, signal, sys; from lightning_hw import reports; draw = reports.figure\n"
        f"def figure(*args):\n    os.kill(os.getpid(), {int(signum)})\n    return draw(*args)\n"
        "reports.figure = figure\nfrom lightning_hw.cli.entry import main\nmain(sys.argv[1:])\n"
    )
    done = cli_script(interrupt_at_first_figure, "report", "runs/s", cwd=workdir)
    assert done.returncode == code, done.stderr
    assert done.stderr.strip().splitlines() == [f"interrupted by {said}: report stopped; runs/s/report is as it was"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing half-new, nothing left over
    # Into a new --out folder: "as it was" is no folder at all.
    done = cli_script(interrupt_at_first_figure, "report", "runs/s", "--out", "new/report", cwd=workdir)
    assert done.returncode == code and done.stderr.strip().endswith("new/report is as it was"), done.stderr
    assert not (workdir / "new").exists()


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "SIGINT (Ctrl-C)"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_that_arrives_in_a_finalizer_still_stops_the_report(workdir, signum, code, said):
    """A SIGTERM whose handler ran inside a finalizer (a ``__del__`` or weakref callback: matplotlib's
    figures run many while drawing) was lost: Python printed "Exception ignored in: ... Traceback ...
    RunInterrupted: SIGTERM", and the report went on, replaced the earlier one and exited 0."""
    out, before = a_report_and_a_run_added_since(workdir)
    signal_in_a_finalizer = (
        "import os, signal, sys, time; from lightning_hw import reports; draw = reports.figure\n"
        f"class Dropped:\n    def __del__(self):\n        os.kill(os.getpid(), {int(signum)}); time.sleep(0.2)\n"
        "def figure(*args):\n    Dropped()\n    return draw(*args)\n"
        "reports.figure = figure\nfrom lightning_hw.cli.entry import main\nmain(sys.argv[1:])\n"
    )
    done = cli_script(signal_in_a_finalizer, "report", "runs/s", cwd=workdir)
    assert done.returncode == code, done.stderr
    assert done.stderr.strip().splitlines() == [f"interrupted by {said}: report stopped; runs/s/report is as it was"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_publish_under_wandb_mode_offline_names_that_setting_not_a_login(workdir):
    """Logged in, with WANDB_MODE=offline left in the shell: `--publish` said "needs a W&B login:
    run `wandb login`", which the user had done; another login changed nothing."""
    two_runs(workdir)
    key = {"WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567", "HOME": str(workdir)}
    for mode in ("offline", "disabled"):
        env = {**os.environ, **key, "WANDB_MODE": mode, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        done = warm_start.run(
            [sys.executable, "-m", "lightning_hw", "report", "runs/s", "--publish"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: --publish needs W&B online, but WANDB_MODE={mode} is set in the environment: "
            "run it with WANDB_MODE=online (and `wandb sync` for runs logged offline)"
        ]
    # Not logged in at all: the login is what is missing.
    env = {**os.environ, "HOME": str(workdir), "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("WANDB_MODE", None)
    env.pop("WANDB_API_KEY", None)
    done = warm_start.run(
        [sys.executable, "-m", "lightning_hw", "report", "runs/s", "--publish"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --publish needs a W&B login: run `wandb login` (and `wandb sync` for runs logged offline)"
    ]


def test_report_piped_into_a_reader_that_stops_is_written_whole(workdir):
    """`report runs/s | head -1`: the reader goes away after the title; the report is written all
    the same (printing stops quietly, exit 1), not left out, nor half written."""
    two_runs(workdir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    report = warm_start.popen(
        [sys.executable, "-m", "lightning_hw", "report", "runs/s"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert report.stdout.readline() == "Comparison of 2 runs in s\n"
    report.stdout.close()  # as `head -1` does
    err = report.stderr.read()
    assert report.wait(timeout=300) in (0, 1) and "Traceback" not in err, err
    out = workdir / "runs" / "s" / "report"
    assert sorted(p.name for p in out.iterdir()) == [".report-files.json", "report.csv", "report.md", "val_acc.png"]


def search_study(root: Path, accuracies: list[float], params: list[dict] | None = None) -> Path:
    """``runs/s``: an Optuna search (``search.json``, ``optuna.db``) whose complete trials reached
    ``accuracies``, each with its run folder, written directly (no training). Trials already in
    the study are kept; trials are added up to ``len(accuracies)``."""
    import json

    import optuna
    from optuna.distributions import FloatDistribution

    study_dir = root / "runs" / "s"
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(study_dir / 'optuna.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize", load_if_exists=True)
    for number in range(len(study.trials), len(accuracies)):
        lr = (params[number] if params else {"lr": 0.01 * (number + 1)})["lr"]
        run = study_dir / f"trial-{number}"
        run.mkdir()
        (run / "metrics.csv").write_text(f"epoch,step,val/acc\n0,1,{accuracies[number]}\n")
        (run / "status.json").write_text('{"status": "finished"}\n')
        (run / "config.yaml").write_text(f"model:\n  init_args:\n    lr: {lr}\nrun:\n  name: trial-{number}\n")
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr}, distributions={"lr": FloatDistribution(1e-3, 1.0)}, value=accuracies[number],
            user_attrs={"run_dir": str(run.resolve()), "epochs": 1},
        ))
    record = {"study": "s", "storage": storage, "metric": "val/acc", "direction": "maximize", "configs": [], "args": {}}
    (study_dir / "search.json").write_text(json.dumps(record))
    return study_dir


def test_ctrl_c_after_a_search_report_chose_its_best_trial_leaves_best_yaml_as_it_was(workdir, monkeypatch, capsys):
    """best.yaml was written straight into the study directory, before the Optuna plots were drawn:
    Ctrl-C there said "runs/s/report is as it was", with best.yaml already naming the new best trial."""
    from lightning_hw.cli import main
    from lightning_hw.studies import search_report

    study_dir = search_study(workdir, [0.5])
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s"])
    assert exit_info.value.code == 0
    best = (study_dir / "best.yaml").read_text()
    assert "Best trial 0 " in best
    search_study(workdir, [0.5, 0.6])  # a better trial since: the next report's best.yaml differs
    draw = search_report._plots

    def plots(*args, **kwargs):  # Ctrl-C as the Optuna plots are drawn, after the best trial was chosen
        os.kill(os.getpid(), signal.SIGINT)
        return draw(*args, **kwargs)

    monkeypatch.setattr(search_report, "_plots", plots)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s"])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().endswith(f"report stopped; {Path('runs/s/report')} is as it was")
    assert (study_dir / "best.yaml").read_text() == best
    assert sorted(p.name for p in study_dir.iterdir()) == ["best.yaml", "optuna.db", "report", "search.json", "trial-0", "trial-1"]
    # Not stopped, the report moves the new best.yaml into place with the rest.
    monkeypatch.setattr(search_report, "_plots", draw)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s"])
    assert exit_info.value.code == 0 and "Best trial 1 " in (study_dir / "best.yaml").read_text()


def test_a_report_leaves_none_of_an_earlier_reports_files_it_does_not_write(workdir, capsys):
    """A search of 2 trials drew optuna_importance.png; the report of a search with 1 complete trial,
    written into the same folder, draws none, and the earlier one stayed there as if it were this
    report's. The report's own earlier files go; a file of the user's in the folder stays."""
    from lightning_hw.cli import main

    search_study(workdir, [0.5, 0.6])
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s", "--out", "compare"])
    assert exit_info.value.code == 0
    compare = workdir / "compare"
    assert (compare / "optuna_importance.png").is_file()
    (compare / "notes.txt").write_text("my notes\n")
    search_study(workdir / "other", [0.7])  # another search, with one trial: no importance plot
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "other/runs/s", "--out", "compare"])
    assert exit_info.value.code == 0
    assert not (compare / "optuna_importance.png").exists()
    assert sorted(p.name for p in compare.iterdir()) == [
        ".report-files.json", "notes.txt", "optuna_history.png", "report.csv", "report.md", "trials.csv", "val_acc.png",
    ]
    assert (compare / "notes.txt").read_text() == "my notes\n"
    # A hand-edited list naming the folder itself or its parent is no list: it had unlink() fail with a traceback.
    (compare / ".report-files.json").write_text(json.dumps({"files": ["report.md", "", "..", "."]}))
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "other/runs/s", "--out", "compare"])
    assert exit_info.value.code == 0 and compare.is_dir() and (compare / "notes.txt").is_file()


def test_out_into_a_folder_holding_the_users_own_report_md_is_refused_and_the_files_kept(workdir, capsys):
    """`report runs/s --out notes` replaced the report.md and report.csv the user had written in notes/
    (no report had written them): a report replaces only the files an earlier report wrote."""
    from lightning_hw.cli import main

    two_runs(workdir)
    notes = workdir / "notes"
    notes.mkdir()
    (notes / "report.md").write_text("my own report\n")
    (notes / "report.csv").write_text("my,own\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s", "--out", "notes"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --out notes holds report.csv, report.md, which no earlier report there wrote (a report lists its files "
        "in .report-files.json), and this report would replace them; move them aside, or give another folder with --out"
    ]
    assert sorted(p.name for p in notes.iterdir()) == ["report.csv", "report.md"]  # no stage left behind either
    assert (notes / "report.md").read_text() == "my own report\n" and (notes / "report.csv").read_text() == "my,own\n"
    # An earlier report's own files in an --out folder are replaced, as before.
    for _ in range(2):
        with pytest.raises(SystemExit) as exit_info:
            main(["report", "runs/s", "--out", "compare"])
        assert exit_info.value.code == 0
    assert (workdir / "compare" / "report.md").read_text().startswith("# Comparison of 2 runs in s")
    # A study's own report/ folder of a report written before reports listed their files is still its report's.
    for _ in range(2):
        (workdir / "runs" / "s" / "report" / ".report-files.json").unlink(missing_ok=True)
        with pytest.raises(SystemExit) as exit_info:
            main(["report", "runs/s"])
        assert exit_info.value.code == 0


def test_runs_of_different_tasks_get_a_note_under_the_table(workdir, capsys):
    """A classifier's cross-entropy and a landmark regressor's MSE shared the train/loss column
    without a word, reading as if one run did better. Runs of one task (E8's heads, whose losses
    differ on purpose) get no note."""
    from lightning_hw.cli import main

    def run(name: str, task: str, loss: float) -> None:
        directory = workdir / "runs" / "g" / name
        directory.mkdir(parents=True)
        (directory / "metrics.csv").write_text(f"epoch,step,train/loss\n0,1,{loss}\n")
        (directory / "config.yaml").write_text(f"model:\n  class_path: {task}\n  init_args:\n    head: {name}\n")

    run("softmax_ce", "lightning_hw.Classifier", 2.1)
    run("linear_mse", "Classifier", 0.2)  # one task, however the config spells its class
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/g"])
    assert exit_info.value.code == 0
    assert "note:" not in capsys.readouterr().out
    run("muct", "lightning_hw.LandmarkRegressor", 0.004)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/g"])
    assert exit_info.value.code == 0
    note = (
        "- note: the runs are of different tasks (Classifier: linear_mse, softmax_ce; LandmarkRegressor: muct): "
        "each task defines its own loss and metrics, so compare a column's values only between runs of one task"
    )
    assert note in capsys.readouterr().out.splitlines()
    assert note in (workdir / "runs" / "g" / "report" / "report.md").read_text().splitlines()


def test_a_report_reruns_into_an_out_folder_an_older_version_wrote(workdir, capsys):
    """`report runs/s/a runs/s/b --out runs/ab` (README's example) written before reports listed their files
    (no .report-files.json) was refused on the next run, as if its report.md and figures were the user's
    ("which no earlier report there wrote"); so was a run's report into its study's report/ folder."""
    from lightning_hw.cli import main

    two_runs(workdir)
    for out in ("runs/ab", "runs/s/report"):
        for _ in range(2):  # the first writes the folder; the second finds it as an older version left it
            (workdir / out / ".report-files.json").unlink(missing_ok=True)
            with pytest.raises(SystemExit) as exit_info:
                main(["report", "runs/s/a", *(["runs/s/b"] if out == "runs/ab" else []), "--out", out])
            assert exit_info.value.code == 0, capsys.readouterr().err
        assert sorted(p.name for p in (workdir / out).iterdir()) == [".report-files.json", "report.csv", "report.md", "val_acc.png"]
    # A folder whose report.md is not a report's table (the user's own, beside a report.csv) is still refused.
    (workdir / "runs" / "ab" / ".report-files.json").unlink()
    (workdir / "runs" / "ab" / "report.md").write_text("# My notes\n\nwhat I saw\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s", "--out", "runs/ab"])
    assert exit_info.value.code == 2
    assert (workdir / "runs" / "ab" / "report.md").read_text() == "# My notes\n\nwhat I saw\n"


def test_a_users_own_best_yaml_in_the_study_directory_is_refused_and_kept(workdir, monkeypatch, capsys):
    """A search's report replaced runs/s/best.yaml whatever it was: the user's own config of that name was
    lost without a word (exit 0). It is refused now, before any figure is drawn; a best.yaml a report
    wrote is still updated by the next report."""
    from lightning_hw import reports
    from lightning_hw.cli import main
    from reliability_helpers import error_of

    study_dir = search_study(workdir, [0.5, 0.6])
    mine = "# my tuned config\nmodel:\n  init_args:\n    lr: 0.5\n"
    (study_dir / "best.yaml").write_text(mine)
    draw = reports.figure
    monkeypatch.setattr(reports, "figure", lambda *args: pytest.fail("a figure was drawn"))
    for out in ([], ["--out", "compare"]):  # best.yaml goes into the study directory whichever the report folder
        code, line = error_of(["report", "runs/s", *out], capsys)
        assert code == 2
        assert line == (
            f"error: {Path('runs/s/best.yaml')} is not a best.yaml a report wrote (those open with '# Best trial N of "
            "search ...'), and this report would replace it with the best trial's config; move it aside (or rename it) "
            "and report again"
        )
    assert (study_dir / "best.yaml").read_text() == mine
    assert sorted(p.name for p in study_dir.iterdir()) == ["best.yaml", "optuna.db", "search.json", "trial-0", "trial-1"]
    assert not (workdir / "compare").exists()
    # Moved aside, the report writes its own best.yaml, and the next report (a better trial since) updates it.
    monkeypatch.setattr(reports, "figure", draw)
    (study_dir / "best.yaml").rename(workdir / "mine.yaml")
    for accuracies, best in (([0.5, 0.6], 1), ([0.5, 0.6, 0.7], 2)):
        search_study(workdir, accuracies)
        with pytest.raises(SystemExit) as exit_info:
            main(["report", "runs/s"])
        assert exit_info.value.code == 0
        assert (study_dir / "best.yaml").read_text().startswith(f"# Best trial {best} of search s (val/acc = ")


def test_a_report_refuses_the_users_files_before_it_draws(workdir, monkeypatch, capsys):
    """`report runs/s --out notes` with the user's own report.md there drew every figure (minutes for a
    big study) before it was refused; now the refusal comes first, and the folder is as it was."""
    from lightning_hw import reports
    from reliability_helpers import error_of

    two_runs(workdir)
    notes = workdir / "notes"
    notes.mkdir()
    (notes / "val_acc.png").write_bytes(b"my own figure")
    monkeypatch.setattr(reports, "figure", lambda *args: pytest.fail("a figure was drawn"))
    code, line = error_of(["report", "runs/s", "--out", "notes"], capsys)
    assert code == 2 and line.startswith("error: --out notes holds val_acc.png, which no earlier report there wrote")
    assert sorted(p.name for p in notes.iterdir()) == ["val_acc.png"] and (notes / "val_acc.png").read_bytes() == b"my own figure"


def test_the_evaluations_table_names_the_checkpoint_each_evaluation_scored(workdir):
    """Two ``test`` runs of one run (its best and its last checkpoint) were told apart only by their time."""
    import csv

    from lightning_hw.cli import HWCLI
    from reliability_helpers import output_of, tiny_fit_args

    HWCLI(args=tiny_fit_args(workdir, "--run.name", "r", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    tested = {}
    for ckpt in (best, run / "checkpoints" / "last.ckpt"):
        before = set((run / "eval").glob("test-*"))
        output_of("test", "--ckpt_path", str(ckpt), "--trainer.limit_test_batches", "2")
        (evaluation,) = set((run / "eval").glob("test-*")) - before
        with (evaluation / "metrics.csv").open(newline="") as f:
            tested[evaluation.name] = (ckpt.name, float(next(csv.DictReader(f))["test/loss"]))

    output_of("report", str(run.parent), "--out", str(workdir / "report"))
    with (workdir / "report" / "evaluations.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["evaluation"]: (row["checkpoint"], float(row["test/loss"])) for row in rows} == tested
    assert "| run | evaluation | checkpoint |" in (workdir / "report" / "report.md").read_text()


def test_an_evaluation_directory_given_as_a_run_is_refused_and_nothing_written_into_it(workdir, capsys):
    """`report runs/s/a/eval/test-<time>` reported the evaluation as a run of 0 epochs, into the run's record."""
    from reliability_helpers import error_of

    two_runs(workdir)
    evaluation = workdir / "runs" / "s" / "a" / "eval" / "test-20261207-093246"
    evaluation.mkdir(parents=True)
    (evaluation / "metrics.csv").write_text("epoch,step,test/acc\n1,2,0.5\n")
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    code, line = error_of(["report", str(evaluation)], capsys)
    assert code == 1
    assert line == (
        f"error: {evaluation} is an evaluation of a checkpoint (validate/test/predict), not a run; "
        f"report its run, {evaluation.parent.parent}, whose report lists its evaluations apart from its epochs"
    )
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before


def test_runs_of_a_study_named_eval_are_reported_not_taken_for_evaluations(workdir, capsys):
    """A study (or ``--run.group``) named ``eval``: ``report runs/eval/a`` was refused as "an evaluation of a
    checkpoint", and ``report runs`` said "no runs under runs", though both runs had their status.json."""
    import csv
    import shutil

    from reliability_helpers import error_of, output_of

    two_runs(workdir)
    shutil.move(workdir / "runs" / "s", workdir / "runs" / "eval")
    evaluation = workdir / "runs" / "eval" / "a" / "eval" / "test-20261207-093246"  # an evaluation of run a
    evaluation.mkdir(parents=True)
    (evaluation / "metrics.csv").write_text("epoch,step,test/acc\n1,2,0.5\n")

    output_of("report", "runs/eval/a", "--out", "one")
    assert [row["run"] for row in csv.DictReader((workdir / "one" / "report.csv").open())] == ["a"]
    output_of("report", "runs", "--out", "all")
    assert [row["run"] for row in csv.DictReader((workdir / "all" / "report.csv").open())] == ["a", "b"]
    code, line = error_of(["report", str(evaluation)], capsys)  # the evaluation itself is still no run
    assert code == 1 and line.startswith(f"error: {evaluation} is an evaluation of a checkpoint"), line


def test_an_evaluation_of_a_group_without_runs_is_refused_with_advice_that_holds(workdir, capsys):
    """``test --ckpt_path downloaded.ckpt`` files its scores under ``runs/<group>/eval/``; a group with no run yet.
    ``report`` of that evaluation advised "report the runs of runs/solo", which then said "no runs under runs/solo"."""
    from reliability_helpers import error_of

    evaluation = workdir / "runs" / "solo" / "eval" / "test-20261207-101018"
    evaluation.mkdir(parents=True)
    (evaluation / "metrics.csv").write_text("epoch,step,test/acc\n1,2,0.5\n")
    code, line = error_of(["report", str(evaluation)], capsys)
    assert code == 1
    assert line == (
        f"error: {evaluation} is an evaluation of a checkpoint (validate/test/predict), not a run, and "
        f"{evaluation.parent.parent} holds no run whose report would list it; its scores are in "
        f"{evaluation / 'metrics.csv'}"
    )
    assert "no runs under" in error_of(["report", str(evaluation.parent.parent)], capsys)[1]  # as the line says


@pytest.mark.parametrize("owner", ["group-without-runs", "its-run"])
def test_a_prediction_is_refused_naming_its_predictions_not_a_metrics_csv(owner, trained_run, workdir, capsys):
    """``report`` of a ``predict`` evaluation said "its scores are in <evaluation>/metrics.csv", a file predict never
    writes (or advised reporting its run, whose report lists only evaluations with scores). It names its predictions."""
    import shutil

    from conftest import QUICKSTART
    from reliability_helpers import error_of, output_of

    if owner == "its-run":
        run = workdir / "runs" / "quickstart" / "r"
        shutil.copytree(trained_run, run)
        ckpt, evaluations = run / "checkpoints" / "last.ckpt", run / "eval"
    else:  # a checkpoint from outside any run: filed under runs/<group>/eval/
        ckpt, evaluations = shutil.copy(trained_run / "checkpoints" / "last.ckpt", workdir / "model.ckpt"), workdir / "runs" / "quickstart" / "eval"
    before = set(evaluations.glob("predict-*"))  # the shared run may hold another test's prediction
    output_of("predict", "--config", str(QUICKSTART), "--ckpt_path", str(ckpt), "--run.root", str(workdir / "runs"),
              "--run.wandb", "disabled", "--trainer.limit_predict_batches", "2", "--trainer.enable_progress_bar", "false")  # fmt: skip
    (evaluation,) = set(evaluations.glob("predict-*")) - before
    predictions = sorted(evaluation.glob("predictions*.csv"))
    assert predictions and not (evaluation / "metrics.csv").exists()
    code, line = error_of(["report", str(evaluation)], capsys)
    assert code == 1
    assert line == (
        f"error: {evaluation} is an evaluation of a checkpoint (validate/test/predict), not a run, and no report lists "
        f"it (it holds no scores); its predictions are in {', '.join(map(str, predictions))}"
    )


def test_the_evaluations_of_checkpoints_from_outside_any_run_are_told_apart_by_their_path(workdir):
    """Two downloaded checkpoints both named ``model.ckpt``, tested into the group's ``eval/``: the table named
    each "model.ckpt", though their evaluations recorded ``ext/a/model.ckpt`` and ``ext/b/model.ckpt``."""
    import csv

    from reliability_helpers import output_of

    two_runs(workdir)
    for name, where in (("test-20261207-100001", "ext/a/model.ckpt"), ("test-20261207-100002", "ext/b/model.ckpt")):
        evaluation = workdir / "runs" / "s" / "eval" / name
        evaluation.mkdir(parents=True)
        (evaluation / "metrics.csv").write_text("epoch,step,test/acc\n1,2,0.5\n")
        (evaluation / "config-test.yaml").write_text(f"ckpt_path: {where}\n")
    output_of("report", "runs/s", "--out", "out")
    with (workdir / "out" / "evaluations.csv").open(newline="") as f:
        assert [(row["run"], row["checkpoint"]) for row in csv.DictReader(f)] == [("-", "ext/a/model.ckpt"), ("-", "ext/b/model.ckpt")]


def test_a_finished_run_whose_metrics_csv_was_cut_short_is_not_shown_as_a_shorter_run(workdir, capsys):
    """A finished run of 2 epochs whose metrics.csv was cut inside its epoch-1 rows (a copy that
    stopped, a full disk) was listed as a finished run of 1 epoch, with epoch 0's values as its final
    ones and no word; one cut to nothing, as a finished run of 0 epochs. The report was the only
    place its loss showed, and the mean over folds took those values as the fold's."""
    import csv

    from reliability_helpers import output_of

    two_runs(workdir)
    for run, epochs in (("a", 2), ("b", 2)):
        (workdir / "runs" / "s" / run / "status.json").write_text(json.dumps({"status": "finished", "epoch": epochs}))
    cut = workdir / "runs" / "s" / "b" / "metrics.csv"
    cut.write_text("epoch,step,val/acc\n0,1,0.6\n1,2,0.")  # the last row cut inside its number
    printed = output_of("report", "runs/s")
    note = (
        "note: runs/s/b/metrics.csv holds 1 of the 2 epochs its status.json says the run trained "
        "(cut short or damaged): b's values are those of its last epoch there, not the run's"
    )
    assert note in printed
    assert f"- {note}" in (workdir / "runs" / "s" / "report" / "report.md").read_text()
    rows = {row["run"]: row for row in csv.DictReader((workdir / "runs" / "s" / "report" / "report.csv").open())}
    assert {name: row["status"] for name, row in rows.items()} == {"a": "finished", "b": "finished, metrics.csv cut short"}
    assert cut.read_text() == "epoch,step,val/acc\n0,1,0.6\n1,2,0."  # left as it was
    cut.write_text("")  # emptied
    assert "runs/s/b/metrics.csv holds 0 of the 2 epochs its status.json says the run trained (cut short or damaged): b has no values here" in output_of("report", "runs/s")


def test_a_run_named_twice_in_other_spellings_is_compared_once(workdir):
    """`report runs/s /abs/path/runs/s/m-fold0` (the study and one of its runs, by absolute path)
    listed that run twice and counted it twice in the mean over folds: `m | 3` folds, with the
    note "of its 2 folds, m has 3"."""
    from reliability_helpers import output_of

    for fold, acc in ((0, 0.5), (1, 0.7)):
        run = workdir / "runs" / "s" / f"m-fold{fold}"
        run.mkdir(parents=True)
        (run / "metrics.csv").write_text(f"epoch,step,val/acc\n0,1,{acc}\n")
        (run / "status.json").write_text('{"status": "finished", "epoch": 1}\n')
    printed = output_of("report", "runs/s", str(workdir / "runs" / "s" / "m-fold0"), "--out", "compare")
    assert printed.count("| m-fold0 |") == 1
    assert "| m | 2 | 1.0000 ± 0.0000 | 0.6000 ± 0.1414 | 0.6000 ± 0.1414 |" in printed, printed
    assert "has 3" not in printed


def test_a_report_of_one_run_says_one_run(workdir):
    """"Comparison of 1 runs in s"."""
    two_runs(workdir)
    done = cli("report", "runs/s/a", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Comparison of 1 run in s\n"), done.stdout[:200]
