"""Search studies on Optuna: sampling, pruning, resuming a killed study, several processes on one storage."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import yaml

from lightning_hw import reports
from lightning_hw.studies import grid as studies, search
from lightning_hw.errors import ConfigError
from lightning_hw.studies.runner import counted, finished, open_study, trial_id

from conftest import QUICKSTART, REPO

import optuna  # noqa: E402 - a dependency of lightning-hw, never skipped
from lightning_hw.cli import warm_start

# Every trial: the quickstart cut to a few batches, no test after fit, W&B off.
TINY = {
    "trainer.max_epochs": 3,
    "trainer.limit_train_batches": 3,
    "trainer.limit_val_batches": 2,
    "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False,
    "run.wandb": "disabled",
    "run.test_after_fit": False,
}
LR_AND_WIDTH = {
    "model.init_args.lr": {"float": [1.0e-3, 0.3], "log": True},
    "model.init_args.net.init_args.hidden": {"categorical": [[16], [32, 16]]},
}


def write_search(directory: Path, name: str = "s", **spec) -> Path:
    path = directory / f"{name}.yaml"
    body = {"name": name, "config": str(QUICKSTART), "args": TINY, "search": LR_AND_WIDTH, "sampler": "random", "pruner": "none", **spec}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def load(path: Path, root: str | None = None):
    """The study's trials, read back from its storage."""
    spec = search.load_search(path, root=root)
    return optuna.load_study(study_name=spec.name, storage=search.open_storage(spec.storage)).get_trials()


def command(path: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "lightning_hw", "study", str(path), *argv]


def fits_in(run_dir: Path) -> int:
    """How many `fit` processes the runner started in a run directory (one command line each in study.log)."""
    return sum(line.startswith("$ ") for line in (run_dir / studies.LOG_FILE).read_text().splitlines())


# -- reading a search study (no training) --------------------------------------------------------


def test_search_file_parses_into_optuna_objects(workdir):
    path = write_search(workdir, search={**LR_AND_WIDTH, "data.init_args.batch_size": {"int": [16, 128], "step": 16}}, sampler="tpe",
                        pruner={"median": {"n_startup_trials": 1}}, trials=4, objective="val/acc")
    spec = search.load_search(path)
    assert (spec.metric, spec.direction, spec.trials, spec.sampler) == ("val/acc", "maximize", 4, "tpe")
    assert spec.storage == f"sqlite:///{(workdir / 'runs' / 's' / 'optuna.db').resolve()}"
    batch = spec.space["data.init_args.batch_size"]
    assert (batch.low, batch.high, batch.step) == (16, 128, 16) and spec.space["model.init_args.lr"].log
    assert search.make_pruner(spec.pruner).__class__.__name__ == "MedianPruner"
    # The default objective is what fit's checkpoints monitor: the quickstart's run.monitor, val/loss.
    assert (search.load_search(write_search(workdir)).metric, search.load_search(write_search(workdir)).direction) == ("val/loss", "minimize")
    assert search.load_search(write_search(workdir, objective={"metric": "val/f1", "direction": "minimize"})).direction == "minimize"
    assert search.load_search(write_search(workdir, storage="journal://j.log")).storage == f"journal://{(workdir / 'j.log').resolve()}"
    # Categorical lists travel as JSON and come back as lists on the fit command line.
    hidden = spec.space["model.init_args.net.init_args.hidden"]
    assert search.as_value(hidden.choices[1], hidden) == [32, 16]


def test_a_search_optimises_the_metric_its_task_sets_in_init(workdir, monkeypatch, capsys):
    """A task that picks its monitor in ``__init__`` (``watch: val/loss``) was searched on its class's
    ``val/acc``, maximized, while each trial's checkpoints kept its best ``val/loss``."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    config = yaml.safe_load(QUICKSTART.read_text())
    del config["run"]  # no run.monitor: the task's own decides
    config["model"]["class_path"] = "reliability_helpers.MonitorChosenAtInit"
    (workdir / "watched.yaml").write_text(yaml.safe_dump(config))
    path = write_search(workdir, config=str(workdir / "watched.yaml"), trials=1)
    # From the study file's args too, where the metric goes up: val/f1, maximized.
    f1 = search.load_search(write_search(workdir, name="f1", config=str(workdir / "watched.yaml"), args={**TINY, "model.init_args.watch": "val/f1"}))
    assert (f1.metric, f1.direction) == ("val/f1", "maximize")
    assert studies.main([str(path)]) == 0
    assert "objective val/loss minimize" in capsys.readouterr().out
    (trial,) = load(path)
    run = workdir / "runs" / "s" / "trial-0"
    curve = reports.read_metrics(run / "metrics.csv")["val/loss"]
    assert trial.value == min(curve.values())
    (best,) = (run / "checkpoints").glob("best-*.ckpt")  # the epoch its checkpoint kept is the trial's value
    assert best.name == f"best-epoch{min(curve, key=curve.get):03d}.ckpt"


def test_a_search_optimises_the_metric_its_trials_are_given(workdir, monkeypatch, capsys):
    """The task's monitor as the trials' fit builds it: from a config file in the study's ``args:``
    and from the options given on the ``study`` command line (which every trial gets). Both were
    left out: the base config's ``val/acc`` was maximized while the trials checkpointed on ``val/loss``."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    config = yaml.safe_load(QUICKSTART.read_text())
    del config["run"]  # no run.monitor: the task's own decides
    config["model"]["class_path"] = "reliability_helpers.MonitorChosenAtInit"
    config["model"]["init_args"]["watch"] = "val/acc"
    (workdir / "watched.yaml").write_text(yaml.safe_dump(config))
    (workdir / "watch_f1.yaml").write_text("model:\n  init_args:\n    watch: val/f1\n")
    args = {**TINY, "config": "watch_f1.yaml"}
    f1 = search.load_search(write_search(workdir, name="f1", config="watched.yaml", args=args))
    assert (f1.metric, f1.direction) == ("val/f1", "maximize")
    path = write_search(workdir, config="watched.yaml", args=args, trials=1)
    assert studies.main([str(path), "--model.init_args.watch", "val/loss"]) == 0
    assert "objective val/loss minimize" in capsys.readouterr().out
    (trial,) = load(path)
    curve = reports.read_metrics(workdir / "runs" / "s" / "trial-0" / "metrics.csv")["val/loss"]
    assert trial.value == min(curve.values())


def test_a_search_reads_the_task_monitor_without_its_weights_and_says_when_it_cannot(workdir, monkeypatch, capsys):
    """With no objective, the study builds the task to read the monitor its ``__init__`` chooses.
    A backbone's weights were fetched for it (a hub probe or a download in the study process; a
    weights file read): where they could not be, the class attribute (``val/acc`` here) was
    optimised without a word, while the trials' checkpoints kept their best ``val/loss``. Now the
    weights are not fetched, and a task that cannot be built is named with why, in one line."""
    from lightning_hw.data.fixtures.classification import write_image_folder

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    images = write_image_folder(workdir / "io", classes=("indoor", "outdoor"), per_class=2, size=(32, 32), layout="folder")
    net = {"class_path": "lightning_hw.nets.backbones.TimmNet",
           "init_args": {"model_name": "resnet18", "weights_file": str(workdir / "absent.safetensors")}}
    config = {"model": {"class_path": "reliability_helpers.MonitorChosenAtInit", "init_args": {"net": net, "watch": "val/loss"}},
              "data": {"class_path": "ImageFolder", "init_args": {"root": str(images), "image_size": 32}}}
    (workdir / "timm.yaml").write_text(yaml.safe_dump(config))
    study = write_search(workdir, config="timm.yaml", trials=1, search={"model.init_args.lr": {"float": [1.0e-3, 0.1]}})
    studies.main([str(study)])  # its one trial fails: the weights file is not there
    out = capsys.readouterr().out
    assert "objective val/loss minimize)" in out and "class attribute" not in out
    unbuilt = write_search(workdir, name="unbuilt", config="timm.yaml", trials=1, search={"model.init_args.lr": {"float": [1.0e-3, 0.1]}})
    studies.main([str(unbuilt), "--data.init_args.root", "nowhere"])
    (note,) = [line for line in capsys.readouterr().out.splitlines() if "class attribute" in line]
    assert note.startswith("Study unbuilt: objective val/acc maximize: MonitorChosenAtInit's class attribute `monitor`, as the task could not be built here")
    assert f"(image folder {workdir / 'nowhere'} not found" in note and note.endswith("set `objective:` in the study file to be sure")


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"search": {"model.init_args.lr": {"uniform": [0, 1]}}}, "give exactly one of float, int, categorical"),
        ({"search": {"model.init_args.lr": {"float": [0.3, 0.1]}}}, r"float needs \[low, high\] numbers with low < high"),
        ({"search": {"model.init_args.lr": {"float": [0, 0.1], "log": True}}}, "log needs a low bound above 0"),
        ({"search": {"x": {"int": [1, 4], "step": 0}}}, "step must be a positive number"),
        ({"search": {"x": {"categorical": []}}}, "categorical needs a non-empty list"),
        ({"search": {}}, "`search` must map fit options to distributions"),
        ({"sampler": "bayes"}, "unknown sampler 'bayes'; use one of tpe, random, grid, cmaes"),
        ({"pruner": "asha"}, "unknown pruner 'asha'"),
        ({"pruner": {"median": {"n_startup": 1}}}, "pruner median: .*n_startup"),
        ({"sampler": "grid"}, "sampler grid needs categorical or stepped"),
        ({"variants": {"a": None}}, "has both `variants` .* and `search`"),
        ({"trials": 0}, "trials must be a whole number of at least 1"),
        ({"objective": "train/loss"}, "the objective must be a validation metric"),
        ({"storage": "mysql-on-my-laptop"}, "storage must be sqlite, journal:///path or a database URL"),
        ({"seeds": [1, 2]}, r"unknown key\(s\) seeds"),
    ],
)
def test_bad_search_files_fail_in_one_line(workdir, spec, message):
    with pytest.raises(ConfigError, match=message) as err:
        search.load_search(write_search(workdir, **spec))
    assert "\n" not in str(err.value)


def test_search_errors_are_one_line_from_main(workdir, capsys):
    from lightning_hw.cli import main

    path = write_search(workdir, sampler="bayes")
    for argv in (["study", str(path)], ["study", str(write_search(workdir, name="ok")), "--only", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    assert not (workdir / "runs").exists()


# -- running searches ------------------------------------------------------------------------------


def test_seeded_search_repeats_its_parameters_and_reports(workdir, capsys):
    """Two trials at once, twice from the same seed (random sampler: parameters do not depend on results;
    trials are asked one at a time, so trial N gets the same parameters however the workers interleave)."""
    path = write_search(workdir, trials=2, seed=7)
    assert studies.main([str(path), "--root", "a", "--workers", "2"]) == 0
    # The worker done first waits for the other's trial, which runs here: it said it waited for
    # trials "RUNNING elsewhere" that might have died, with --retry-running advice.
    assert "waiting for the trials RUNNING elsewhere" not in capsys.readouterr().out
    assert studies.main([str(path), "--root", "b", "--workers", "2", "--trainer.max_epochs", "1"]) == 0
    first, second = load(path, "a"), load(path, "b")
    assert [t.params for t in first] == [t.params for t in second]
    assert len({t.params["model.init_args.lr"] for t in first}) == 2
    assert [t.state.name for t in first] == ["COMPLETE"] * 2
    # Each trial is a fit run of its own, with its sampled options on the command line.
    for trial in first:
        run = workdir / "a" / "s" / f"trial-{trial.number}"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["model"]["init_args"]["lr"] == trial.params["model.init_args.lr"]
        assert json.dumps(config["model"]["init_args"]["net"]["init_args"]["hidden"]) == trial.params["model.init_args.net.init_args.hidden"]
        curve = reports.read_metrics(run / "metrics.csv")["val/loss"]
        assert trial.value == min(curve.values()) and trial.user_attrs["epochs"] == 3
        assert json.loads((run / "status.json").read_text())["status"] == "finished"
    # Running it again asks nothing: the study has its trials.
    capsys.readouterr()
    assert studies.main([str(path), "--root", "a"]) == 0
    assert "2 of 2 trials finished" in capsys.readouterr().out and len(load(path, "a")) == 2

    assert reports.main([str(workdir / "a" / "s")]) == 0
    out = workdir / "a" / "s" / "report"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1"] and {r["state"] for r in rows} == {"complete"}
    best = min(first, key=lambda t: t.value)
    assert float(rows[best.number]["val/loss"]) == best.value
    assert (out / "optuna_history.png").is_file() and (out / "optuna_importance.png").is_file()
    assert (out / "val_loss.png").is_file() and "## Search: s" in (out / "report.md").read_text()
    best_file = workdir / "a" / "s" / "best.yaml"
    config = yaml.safe_load(best_file.read_text())
    assert config["model"]["init_args"]["lr"] == best.params["model.init_args.lr"] and config["trainer"]["max_epochs"] == 3
    # best.yaml is a config `fit` takes as it is (parsed by fit's own main(), in this process).
    from lightning_hw.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(best_file), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["lr"] == best.params["model.init_args.lr"]


def test_clearly_worse_trial_is_pruned(workdir):
    """lr 0 cannot learn: after one complete trial, the median pruner stops it at its first epoch."""
    path = write_search(
        workdir, search={"model.init_args.lr": {"categorical": [0.2, 0.0]}}, sampler="grid", seed=1,
        pruner={"median": {"n_startup_trials": 1, "n_warmup_steps": 0}}, trials=2,
    )
    assert studies.main([str(path)]) == 0
    trials = load(path)
    by_lr = {t.params["model.init_args.lr"]: t for t in trials}
    assert [t.params["model.init_args.lr"] for t in trials] == [0.2, 0.0]  # the grid's order for seed 1
    assert by_lr[0.2].state.name == "COMPLETE" and by_lr[0.0].state.name == "PRUNED"
    assert list(by_lr[0.0].intermediate_values) == [0]
    run = workdir / "runs" / "s" / f"trial-{by_lr[0.0].number}"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "pruned" and status["pruned_at_epoch"] == 0
    assert "stopped_by" not in status and "Training stopped" not in (run / "study.log").read_text()  # "pruned" says it
    assert (run / "checkpoints" / "last.ckpt").is_file()  # ended like any fit: checkpoints saved
    assert sorted(reports.read_metrics(run / "metrics.csv")["val/loss"]) == [0]


def test_killed_study_resumes_and_reasks_the_trial_that_died(workdir):
    # The grid's order for seed 1: trial 0 trains 3 epochs and finishes, trial 1 would train 400
    # (it is still training when the study is killed, however slow or fast the machine).
    path = write_search(workdir, trials=2, heartbeat=1, seed=1, sampler="grid", args={**TINY, "run.checkpoint_interval": 0},
                        search={"trainer.max_epochs": {"categorical": [3, 400]}})
    study_dir = workdir / "runs" / "s"
    first = warm_start.popen(command(path), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not (study_dir / "trial-1" / "checkpoints" / "last.ckpt").is_file():  # saved after every epoch
            assert first.poll() is None and time.monotonic() < deadline, "trial 1 never saved a checkpoint"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)  # the study and its trial's fit, with no clean-up
        first.wait()
    assert [t.state.name for t in load(path)] == ["COMPLETE", "RUNNING"]
    epochs_before = sorted(reports.read_metrics(study_dir / "trial-1" / "metrics.csv")["val/loss"])

    # Asked again with the same parameters; the extra argument (passed to every trial) keeps it short: 3 epochs of
    # 3 steps (not --trainer.max_epochs 3, which the search samples: refused, as the trial's params would say 400).
    resumed = warm_start.run(command(path, "--trainer.max_steps", "9"), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from checkpoints/last.ckpt, again for trial 1" in resumed.stdout
    trials = load(path)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[2]) == 1
    assert [t.number for t in finished(trials)] == [0, 2]
    assert fits_in(study_dir / "trial-0") == 1  # the finished trial was not run again
    # The retry continued the dead trial's run in its directory, from its last checkpoint.
    assert not (study_dir / "trial-2").exists() and trials[2].user_attrs["run_dir"].endswith("trial-1")
    assert json.loads((study_dir / "trial-1" / "status.json").read_text())["status"] == "finished"
    assert sorted(reports.read_metrics(study_dir / "trial-1" / "metrics.csv")["val/loss"]) == [0, 1, 2]
    assert epochs_before and epochs_before == list(range(len(epochs_before)))


def test_killed_trial_without_a_checkpoint_starts_afresh_in_its_own_directory(workdir, capsys):
    """A retry of a trial that died before any last.ckpt cannot continue it: it trains in trial-<N>."""
    path = write_search(workdir, trials=1, heartbeat=1, search={"trainer.max_epochs": {"categorical": [2]}})
    study, _ = open_study(search.load_search(path))
    dead = study.ask(search.load_search(path).space)
    dead.set_user_attr("run_dir", str(workdir / "runs" / "s" / "trial-0"))
    (workdir / "runs" / "s" / "trial-0").mkdir(parents=True)
    (workdir / "runs" / "s" / "trial-0" / "status.json").write_text('{"status": "training"}')
    capsys.readouterr()
    assert studies.main([str(path), "--retry-running"]) == 0  # the study in this process; its trial's fit is one of its own
    assert "[trial 1]: starting, again for trial 0" in capsys.readouterr().out
    assert json.loads((workdir / "runs" / "s" / "trial-0" / "status.json").read_text()) == {"status": "training"}  # untouched
    assert json.loads((workdir / "runs" / "s" / "trial-1" / "status.json").read_text())["status"] == "finished"


def run_in_two_processes(path: Path) -> None:
    """The same ``study`` command in another process and, meanwhile, in this one; both must end with exit 0.

    This process is the second machine (``studies.main``, as ``python -m lightning_hw study`` runs
    it): two study processes still share one storage, without paying a second interpreter's imports.
    """
    other = warm_start.popen(command(path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        code = studies.main([str(path)])
    finally:
        output = other.communicate(timeout=150)[0]
    assert (other.returncode, code) == (0, 0), output


def test_two_processes_on_one_journal_finish_one_study(workdir):
    path = write_search(workdir, trials=2, storage=f"journal://{workdir / 'shared' / 'study.log'}")
    run_in_two_processes(path)
    check_one_study(load(path), workdir / "runs" / "s", 2)


def check_one_study(trials: list, study_dir: Path, expected: int) -> None:
    """Exactly ``expected`` trials finished, each trained once in its own run directory."""
    budget = counted(trials)
    assert len(budget) == expected and all(t.state.name == "COMPLETE" for t in budget)
    for trial in budget:
        assert fits_in(study_dir / f"trial-{trial.number}") == 1
    assert sorted(p.name for p in study_dir.glob("trial-*")) == sorted(f"trial-{t.number}" for t in trials if not t.user_attrs.get("surplus"))


# -- PostgreSQL ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server of this machine's Debian packages, in a temporary folder, on a unix socket."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    found = shutil.which("pg_ctl") or (str(bins[-1]) if bins else None)
    if not found:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql to run this test")
    bin_dir = Path(found).parent
    as_user: list[str] = []
    folder = tmp_path / "pg"
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user, in a folder it can reach
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL as another user")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to start PostgreSQL as")
        folder = Path(tempfile.mkdtemp(prefix="lightning-hw-pg-"))
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder.mkdir(exist_ok=True)
    data, port = folder / "data", _free_port()
    warm_start.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth", "trust"], check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=''"
    warm_start.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@/postgres?host={folder}&port={port}"
    finally:
        warm_start.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        if as_user:
            shutil.rmtree(folder, ignore_errors=True)


def test_two_processes_on_postgresql_finish_one_study(workdir, postgres):
    path = write_search(workdir, trials=2, storage=postgres)
    run_in_two_processes(path)
    trials = load(path)
    check_one_study(trials, workdir / "runs" / "s", 2)
    assert reports.main([str(workdir / "runs" / "s")]) == 0  # the report reads the trials from the server
    assert len(list(csv.DictReader((workdir / "runs" / "s" / "report" / "trials.csv").open()))) == len(counted(trials))


def test_unreachable_database_is_one_line(workdir, tmp_path):
    path = write_search(workdir, storage=f"postgresql://postgres@/postgres?host={tmp_path}&port={_free_port()}")
    with pytest.raises(ConfigError, match="cannot open storage postgresql://") as err:
        studies.main([str(path)])
    assert "\n" not in str(err.value)


def test_shipped_search_studies_parse():
    for name in ("quickstart_search", "reuters_search", "resnet152_head_search", "densenet201_head_search", "transfer_demo_head_search"):
        path = REPO / "configs" / "studies" / f"{name}.yaml"
        try:
            spec = search.load_search(path)
        except ConfigError as err:  # a config another issue adds is not on this branch yet
            assert "not found" in str(err), err
            continue
        assert spec.space and spec.trials >= 8


def test_a_search_with_another_objective_under_the_same_name_is_refused(workdir, capsys):
    """Two search files named alike share runs/<name>/optuna.db: the second must not count, compare and
    relabel the first's val/acc trials as its own val/f1 ones (same direction, so not caught by that)."""
    first = write_search(workdir, name="s", trials=1, objective="val/acc")
    assert studies.main([str(first)]) == 0
    record = (workdir / "runs" / "s" / "search.json").read_text()
    other = workdir / "other"
    other.mkdir()
    second = write_search(other, name="s", trials=2, objective="val/f1")
    with pytest.raises(ConfigError, match=r"study s in sqlite:///.*optuna.db searched for val/acc; this file says val/f1") as err:
        studies.main([str(second)])
    assert "\n" not in str(err.value)
    assert (workdir / "runs" / "s" / "search.json").read_text() == record  # the report still reads val/acc
    assert [t.number for t in load(first)] == [0] and not (workdir / "runs" / "s" / "trial-1").exists()


def test_a_study_run_again_does_not_repeat_the_parameters_it_tried(workdir):
    """Each `study` invocation builds its sampler anew: seeded alike, it drew the values of the
    study's first trials again (a resumed or extended search, every machine joining one)."""
    path = write_search(workdir, trials=1, sampler="random", search={"model.init_args.lr": {"float": [1.0e-3, 0.3], "log": True}})
    assert studies.main([str(path)]) == 0
    write_search(workdir, trials=2, sampler="random", search={"model.init_args.lr": {"float": [1.0e-3, 0.3], "log": True}})
    assert studies.main([str(path)]) == 0  # one more trial, in a new invocation
    first, second = load(path)
    assert first.params != second.params
    # A new study still draws what its seed gives (a search is reproducible from its file).
    fresh = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    assert first.params == fresh.ask(search.load_search(path).space).params


def test_report_of_a_search_whose_storage_is_gone_fails_in_one_line_and_creates_none(workdir, capsys):
    """search.json names runs/<study>/optuna.db; deleted (or moved), report must not make an empty one."""
    from reliability_helpers import error_of

    run = workdir / "runs" / "s" / "trial-0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5\n")
    storage = workdir / "runs" / "s" / "optuna.db"
    record = {"study": "s", "storage": f"sqlite:///{storage}", "metric": "val/acc", "direction": "maximize", "configs": [], "args": {}}
    (workdir / "runs" / "s" / "search.json").write_text(json.dumps(record))
    code, line = error_of(["report", "runs/s"], capsys)
    assert code == 1
    assert line == (
        f"error: {Path('runs/s/search.json')} names the storage sqlite:///{storage}, which does not exist (moved or "
        "deleted?); the search's trials, best.yaml and Optuna plots are read from it"
    )
    assert not storage.exists() and not (workdir / "runs" / "s" / "report").exists()


def test_a_mistyped_option_stops_the_search_without_using_up_its_budget(workdir, capsys):
    """Every trial's fit refused `--wokers`: the search used to count them all and then call itself done."""
    path = write_search(workdir, trials=2)
    assert studies.main([str(path), "--wokers", "2"]) == 2
    out = capsys.readouterr()
    assert "refused before training: error: unknown option" in out.out and "wokers" in out.out
    assert "Study s stopped: its fit refused what every run shares (see the error above)." in out.err
    assert len(finished(load(path))) == 0  # nothing counted against the budget of 2
    assert studies.main([str(path)]) == 0  # fixed: both trials train
    trials = load(path)
    assert len(finished(trials)) == 2 and all(t.state.name == "COMPLETE" for t in finished(trials))


def test_a_misspelt_objective_stops_the_search_at_once_and_the_fixed_file_goes_on(workdir, capsys):
    """`objective: val/accc`: every trial trained to its end and was failed for want of it, using
    up the budget; then the fixed file was refused ("searched for val/accc") under the same name."""
    from lightning_hw.cli import main

    path = write_search(workdir, trials=1, objective="val/accc")
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path)])
    assert exit_info.value.code == 2
    out = capsys.readouterr()
    assert (
        "[trial 0] refused before training: error: the study's objective val/accc is not a metric this run logs "
        "(did you mean val/acc?); give one of val/acc, val/f1, val/loss to `objective:` in the study file"
    ) in out.out
    assert "Traceback" not in out.out + out.err
    assert len(finished(load(path))) == 0  # nothing counted against the budget
    assert not (workdir / "runs" / "s" / "trial-0" / "metrics.csv").exists()  # stopped before training
    write_search(workdir, trials=1, objective="val/acc")
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path)])
    assert exit_info.value.code == 0
    (done,) = finished(load(path))
    assert done.state.name == "COMPLETE" and done.value is not None
    # A misspelt run.monitor of the study's args (every trial's) stops it the same way, and counts nothing.
    monitored = write_search(workdir, name="m", trials=1, objective="val/acc", args={**TINY, "run.monitor": "val/accc"})
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(monitored)])
    assert exit_info.value.code == 2
    assert "refused before training: error: run.monitor val/accc is not a metric this run logs" in capsys.readouterr().out
    assert len(finished(load(monitored))) == 0


def test_a_search_on_a_misspelt_run_monitor_names_the_run_monitor(workdir, capsys):
    """A search file without `objective:` searches on what its runs checkpoint on; given `--run.monitor val/acuracy`,
    the line said to give a metric "to `objective:` in the study file" (it has none, and the monitor was refused next)."""
    from lightning_hw.cli import main

    path = write_search(workdir, trials=2)
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path), "--run.monitor", "val/acuracy"])
    assert exit_info.value.code == 2
    out = capsys.readouterr()
    assert (
        "[trial 0] refused before training: error: run.monitor val/acuracy is not a metric this run logs (did you mean "
        "val/acc?); give one of val/acc, val/f1, val/loss to run.monitor"
    ) in out.out, out.out
    assert "Study s stopped: its fit refused what every run shares (see the error above)." in out.err
    assert len(finished(load(path))) == 0


def test_a_search_whose_trials_never_validate_stops_before_its_first_trial_trains(workdir, capsys):
    """`trainer.limit_val_batches: 0` in a search's args: each trial trained to its end and was failed
    ("no val/acc in its metrics.csv, run finished"), trial after trial, the whole budget used up."""
    from lightning_hw.cli import main

    path = write_search(workdir, trials=2, objective="val/acc", args={**TINY, "trainer.limit_val_batches": 0})
    optuna.logging.set_verbosity(optuna.logging.INFO)
    filters = list(warnings.filters)
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path)])
    assert exit_info.value.code == 2
    # Run from a notebook, the study gave Optuna's log level and the warning filters it set for itself back.
    assert optuna.logging.get_verbosity() == optuna.logging.INFO and warnings.filters == filters
    out = capsys.readouterr()
    assert (
        "[trial 0] refused before training: error: the study's objective val/acc is read from the trials' validation, "
        "but this fit runs none (trainer.limit_val_batches is 0); let the trials validate"
    ) in out.out
    assert "Study s stopped: its fit refused what every run shares (see the error above)." in out.err
    assert "[trial 1]" not in out.out and "Traceback" not in out.out + out.err
    assert len(finished(load(path))) == 0  # nothing counted against the budget
    assert not (workdir / "runs" / "s" / "trial-0" / "metrics.csv").exists()  # stopped before training
    # Trials that train no epoch (each was a `finished` run of 0 epochs, failed): fit refuses them, and the study stops.
    untrained = write_search(workdir, name="z", trials=2, objective="val/acc", args={**TINY, "trainer.max_epochs": 0})
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(untrained)])
    assert exit_info.value.code == 2
    assert ("[trial 0] refused before training: error: trainer.max_epochs is 0: this fit would train nothing, and a run "
            "that never trained is not kept; give --trainer.max_epochs 1 or more") in capsys.readouterr().out
    assert len(finished(load(untrained))) == 0


def test_a_project_name_wandb_refuses_stops_the_search_without_using_up_its_budget(workdir, capsys):
    """`run.project: me/e1` in a study's args (every trial's): fit refuses the name before training, and the
    search failed every trial on it, its whole budget used up; fixed, the study then trained nothing."""
    from lightning_hw.cli import main

    path = write_search(workdir, trials=2, args={**TINY, "run.wandb": "offline", "run.project": "me/e1"})
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path)])
    assert exit_info.value.code == 2
    out = capsys.readouterr()
    assert "[trial 0] refused before training: error: run.project 'me/e1' cannot name a W&B project" in out.out
    assert "Study s stopped: its fit refused what every run shares (see the error above)." in out.err
    assert len(finished(load(path))) == 0  # nothing counted against the budget of 2
    write_search(workdir, trials=2)  # fixed: both trials train
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path)])
    assert exit_info.value.code == 0
    assert len(finished(load(path))) == 2 and all(t.state.name == "COMPLETE" for t in finished(load(path)))


def test_a_study_waiting_for_a_trial_running_elsewhere_says_so(workdir, capsys):
    """A study run again right after a kill waited for the dead trial's heartbeat to go stale in silence."""
    path = write_search(workdir, trials=1, heartbeat=1)
    spec = search.load_search(path)
    study, storage = open_study(spec)
    running = study.ask(spec.space)  # as a killed process leaves it: RUNNING, with a recent heartbeat
    storage.record_heartbeat(trial_id(storage, spec.optuna_name, running.number))
    assert studies.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "Study s: waiting for the trials RUNNING elsewhere; if their process died, they are failed and queued again " \
        "once their heartbeat has stopped for 2 s" in out
    trials = load(path)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"] and trials[1].params == trials[0].params


def test_a_trial_refused_for_its_own_values_fails_and_the_search_goes_on(workdir, capsys):
    """Two dropout rates fit the two-layer net, not the one-layer one: that trial fails, the other trains."""
    path = write_search(
        workdir, trials=2, sampler="grid",
        args={**TINY, "model.init_args.net.init_args.dropout": [0.1, 0.2]},
        search={"model.init_args.net.init_args.hidden": {"categorical": [[16], [32, 16]]}},
    )  # fmt: skip
    assert studies.main([str(path)]) == 1
    out = capsys.readouterr()
    assert "FAILED (exit 2" in out.out and "stopped" not in out.err
    states = {str(t.params["model.init_args.net.init_args.hidden"]): t.state.name for t in load(path)}
    assert states == {"[16]": "FAIL", "[32, 16]": "COMPLETE"}, states
def test_report_on_one_trial_is_a_run_report_not_the_search_report(workdir, capsys):
    """`report runs/s/trial-0` reports that run: it neither rewrites the search's best.yaml nor needs its storage."""
    run = workdir / "runs" / "s" / "trial-0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5\n")
    storage = workdir / "runs" / "s" / "optuna.db"  # gone: only the search's own report reads it
    record = {"study": "s", "storage": f"sqlite:///{storage}", "metric": "val/acc", "direction": "maximize", "configs": [], "args": {}}
    (workdir / "runs" / "s" / "search.json").write_text(json.dumps(record))
    assert reports.main(["runs/s/trial-0"]) == 0
    assert sorted(p.name for p in (run / "report").iterdir()) == [".report-files.json", "report.csv", "report.md", "val_acc.png"]
    assert not storage.exists() and not (workdir / "runs" / "s" / "best.yaml").exists()


def test_a_searched_config_file_may_set_the_callbacks_another_trials_monitor_refused(workdir, capsys):
    """A searched ``config`` (a file per trial) may set the callbacks: one trial's refused EarlyStopping monitor
    (the base config's val/accc) is not every trial's, and stopped the search before the other file trained."""
    early = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/accc"}}
    base = workdir / "early_stopping.yaml"
    base.write_text(yaml.safe_dump({"trainer": {"callbacks": [early]}}))
    own = workdir / "own_callbacks.yaml"
    own.write_text(yaml.safe_dump({"trainer": {"callbacks": [{**early, "init_args": {"monitor": "val/acc"}}]}}))
    plain = workdir / "plain.yaml"
    plain.write_text(yaml.safe_dump({"trainer": {"max_epochs": 2}}))
    path = write_search(workdir, trials=2, sampler="grid", seed=1, config=[str(QUICKSTART), str(base)],
                        search={"config": {"categorical": [str(own), str(plain)]}})
    assert studies.main([str(path)]) == 1
    out = capsys.readouterr()
    assert "stopped" not in out.err, out.out
    assert [t.state.name for t in load(path)].count("COMPLETE") == 1, out.out


def test_a_heartbeat_on_a_full_disk_is_no_traceback(workdir, monkeypatch, capsys):
    """A study's heartbeat thread on a full disk (SQLite's `database or disk is full`) printed a traceback of its own
    beside the study's one line (checked on a 1.5 MB tmpfs); it beats again at its next interval."""
    import sqlite3
    import threading

    from optuna.storages import RDBStorage

    real_beat, beats, crashed = RDBStorage.record_heartbeat, [], []

    def beat_on_a_full_disk(self, trial_id):
        beats.append(trial_id)
        if len(beats) > 1:
            return real_beat(self, trial_id)
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as err:
            err.sqlite_errorcode = sqlite3.SQLITE_FULL  # as SQLite sets it
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from err

    monkeypatch.setattr(RDBStorage, "record_heartbeat", beat_on_a_full_disk)
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    path = write_search(workdir, trials=1, heartbeat=1, search={"trainer.max_epochs": {"categorical": [2]}})
    assert studies.main([str(path)]) == 0
    assert crashed == [] and len(beats) > 1
