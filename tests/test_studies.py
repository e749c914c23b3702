"""Studies (variants of a config, each in its own process) and the report that compares them."""

from __future__ import annotations

import csv
from collections import Counter
import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from lightning_hw import reports
from lightning_hw.studies import grid as studies, runner
from lightning_hw.errors import ConfigError, DataError

from conftest import QUICKSTART, REPO
from reliability_helpers import error_of
from lightning_hw.cli import warm_start

TESTS = Path(__file__).resolve().parent
# The tiny run every study test starts from (the quickstart cut to a few batches, W&B off).
TINY = {
    "trainer.max_epochs": 4,
    "trainer.limit_train_batches": 3,
    "trainer.limit_val_batches": 2,
    "trainer.limit_test_batches": 2,
    "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False,
    "run.wandb": "disabled",
    "trainer.callbacks": [{"class_path": "study_helpers.KillOnce"}],
}


def write_study(directory: Path, variants: dict, **extra) -> Path:
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump({"config": str(QUICKSTART), "args": TINY, "variants": variants, **extra}, sort_keys=False))
    return path


# -- reading and planning (no training) --------------------------------------------------------


def test_variants_become_fit_arguments(workdir):
    path = write_study(workdir, {"base": None, "adam": {"optimizer": "torch.optim.Adam", "optimizer.init_args.lr": 0.01}})
    study = studies.load_study(path)
    assert study.name == "tiny" and [v.name for v in study.variants] == ["base", "adam"]
    command = studies.fit_command(study, study.variants[1], ["--trainer.max_epochs", "2"])
    assert command[3:6] == ["fit", "--config", str(QUICKSTART)]
    # shared args, then the variant's, then the command line's, then where the run goes
    joined = " ".join(command)
    assert joined.index("--trainer.max_epochs 4") < joined.index("--optimizer torch.optim.Adam") < joined.index(
        "--trainer.max_epochs 2"
    ) < joined.index("--run.name adam")
    assert '--trainer.callbacks [{"class_path": "study_helpers.KillOnce"}]' in joined  # lists as JSON
    assert "--trainer.enable_progress_bar false" in joined
    assert command[-6:-2] == ["--run.group", "tiny", "--run.name", "adam"]
    assert command[-2:] == ["--run.notes", "study tiny, variant adam: --optimizer torch.optim.Adam --optimizer.init_args.lr 0.01"]


def test_seeds_multiply_the_variants(workdir):
    study = studies.load_study(write_study(workdir, {"a": None, "b": None}, seeds=[1, 2]))
    assert [v.name for v in study.variants] == ["a-seed1", "a-seed2", "b-seed1", "b-seed2"]
    command = studies.fit_command(study, study.variants[1], [])
    assert command[command.index("--seed_everything") + 1] == "2"


def test_variant_config_files_and_their_paths(workdir):
    (workdir / "configs").mkdir()
    (workdir / "configs" / "other.yaml").write_text("trainer: {max_epochs: 1}\n")
    path = write_study(workdir, {"other": {"config": "configs/other.yaml", "trainer.max_epochs": 3}})
    assert studies.load_study(path).variants[0].args == ["--config", "configs/other.yaml", "--trainer.max_epochs", "3"]
    with pytest.raises(ConfigError, match=r"config file configs/missing.yaml not found \(paths are relative"):
        studies.load_study(write_study(workdir, {"x": {"config": "configs/missing.yaml"}}))
    # A study inside a project's configs/studies/ finds configs/... from any working directory.
    (workdir / "configs" / "studies").mkdir()
    inside = workdir / "configs" / "studies" / "s.yaml"
    inside.write_text("config: configs/other.yaml\nvariants: {a: null}\n")
    (workdir / "elsewhere").mkdir()
    os.chdir(workdir / "elsewhere")
    assert studies.load_study(inside).configs == [str(workdir / "configs" / "other.yaml")]



def test_study_args_hold_for_a_variant_with_its_own_config_file(workdir, capsys):
    """`args:` are for every variant: a variant's `config:` (a whole experiment) must not undo them.

    The shipped CV studies (overfitting_cv.yaml, catsdogs_cv.yaml) give each variant its config
    file; `args: {trainer.max_epochs: 3}` there trained 50 epochs, the config's, without a word.
    """
    (workdir / "other.yaml").write_text(QUICKSTART.read_text())  # sets its own max_epochs, as any experiment does
    path = workdir / "cv.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cv", "folds": 2, "args": {"trainer.max_epochs": 3, "model.init_args.lr": 0.5},
        "variants": {"own": {"config": "other.yaml", "model.init_args.lr": 0.25}},
    }))
    assert studies.main([str(path), "--dry-run", "--only", "own-fold1"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    command = shlex.split(line.split(None, 2)[2])
    # The printed command's fit arguments, parsed by fit's own main() in this process.
    from lightning_hw.cli import main

    assert command[1:4] == ["-m", "lightning_hw", "fit"], command
    with pytest.raises(SystemExit) as exit_info:
        main([*command[3:], "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["max_epochs"] == 3  # the study's args, not the variant's file
    assert config["model"]["init_args"]["lr"] == 0.25  # the variant's own option still beats the study's args
    assert (config["data"]["init_args"]["folds"], config["data"]["init_args"]["fold"]) == (2, 1)


def test_a_variant_refused_for_its_own_typo_fails_and_the_others_train_without_a_base_config(workdir, capsys):
    """Each variant names its config (overfitting_cv.yaml's way): one variant's typo stopped the whole study.

    The check of what every run shares parsed the shared options without any config file, which
    names no model or data: `fit` refuses that always, so every refusal looked shared.
    """
    tiny = {k: v for k, v in TINY.items() if k != "trainer.callbacks"} | {"trainer.max_epochs": 1}
    path = workdir / "own.yaml"
    path.write_text(yaml.safe_dump({
        "name": "own", "args": tiny,
        "variants": {"good": {"config": str(QUICKSTART)}, "typo": {"config": str(QUICKSTART), "model.init_args.lrr": 0.1}},
    }))
    assert warm_start.warm_up(wait=180)
    starts = Counter(warm_start.STARTS)
    assert studies.main([str(path), "--workers", "2"]) == 1
    # Both fits and the check of what they share (`fit --print_config`, after the typo was refused) forked
    # from the warm process: the check started a fresh interpreter, ~5 s of imports.
    assert Counter(warm_start.STARTS) - starts == Counter(forked=3)
    out = capsys.readouterr()
    assert "stopped" not in out.err
    # With several workers the fits' output goes only to their logs: the FAILED line names the error.
    (line,) = [line for line in out.out.splitlines() if "typo: FAILED" in line]
    assert "typo: FAILED (exit 2, run not started): error: Classifier has no option 'lrr'" in line
    assert line.endswith(f"; see {Path('runs') / 'own' / 'typo' / studies.LOG_FILE}")
    assert "lrr" in (workdir / "runs" / "own" / "typo" / studies.LOG_FILE).read_text()
    assert studies.is_finished_run(workdir / "runs" / "own" / "good")  # the other variant trained
    # The report compares the one run, and says which variant did not train and why (it passed over it).
    assert reports.main([str(workdir / "runs" / "own")]) == 0
    note = "- note: typo did not train (error: Classifier has no option 'lrr'"
    assert note in (workdir / "runs" / "own" / "report" / "report.md").read_text() and note in capsys.readouterr().out
    # Its folder, which holds only the study's log, reported by itself: it said "no runs under it;
    # train some first, e.g. with `study`" (which had just tried); it now says what became of it.
    code, error = error_of(["report", str(Path("runs") / "own" / "typo")], capsys)
    assert code == 1 and error.startswith(f"error: {Path('runs') / 'own' / 'typo'} holds no run: study own's fit of it never trained (error: Classifier has no option 'lrr'")
    assert error.endswith(f"see {Path('runs') / 'own' / 'typo' / studies.LOG_FILE}, fix the study file and run the study again")
    # A fit of its name by hand trained there beside the study's log (exit 0); the study then passed
    # over it as "finished outside the study", and the report compared it as the variant.
    code, error = error_of(["fit", "--config", str(QUICKSTART), "--run.root", "runs", "--run.group", "own", "--run.name", "typo"], capsys)
    assert code == 2 and error == (
        f"error: {Path('runs') / 'own' / 'typo'} belongs to study own: it holds only the study's log of its fit, which never "
        "trained (error: Classifier has no option 'lrr'; did you mean lr? (accepted: net, num_classes, input_shape, head, "
        "class_names, lr)); run the study again to train it there, or give another --run.name"
    )
    assert sorted(p.name for p in (workdir / "runs" / "own" / "typo").iterdir()) == [studies.LOG_FILE]  # nothing written there
    # A typo in what every variant shares still stops the study at once, config files and all.
    assert studies.main([str(path), "--trainer.max_epochz", "2"]) == 2
    assert "refused before training: error:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"config": str(QUICKSTART), "variants": {}}, "`variants` must map variant names"),
        ({"config": str(QUICKSTART), "variants": {"a b": None}}, "variant name 'a b' must be"),
        ({"config": str(QUICKSTART), "variant": {"a": None}}, r"unknown key\(s\) variant"),
        ({"variants": {"a": None}}, "variant a has no config"),
        ({"config": str(QUICKSTART), "variants": {"a": ["--x"]}}, "variant a must be a mapping"),
    ],
)
def test_bad_study_files_fail_in_one_line(workdir, spec, message):
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=message) as err:
        studies.load_study(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"seeds": ["a"]}, r"`seeds` must be whole numbers, e\.g\. `seeds: \[1, 2, 3\]`; got 'a'"),
        ({"seeds": [1.5]}, r"`seeds` must be whole numbers.*got 1\.5"),
        ({"seeds": [1, 2, 1]}, r"seed 1 is given twice in `seeds`; give each seed once"),
        ({"seed": [1, 2]}, r"`seed` is the sampler's seed, a whole number, got \[1, 2\]; to train every variant once per seed, write `seeds:`"),
        ({"seed": "x"}, r"`seed` is the sampler's seed, a whole number, got 'x'$"),
    ],
)
def test_bad_seeds_stop_the_study_in_one_line(workdir, capsys, extra, message):
    """`seeds: [a]` was a ValueError traceback and `seeds: [1, 1]` listed (and ran) one run twice;
    `seed: [1, 2]` (meaning `seeds:`) passed `--dry-run` and was a TypeError traceback when run."""
    from lightning_hw.cli import main

    path = write_study(workdir, {"a": None}, **extra)
    for argv in (["study", str(path), "--dry-run"], ["study", str(path)]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: study "), err
        assert re.search(message, err[0]), err[0]
    assert not (workdir / "runs").exists()


def test_dry_run_lists_states_and_commands(workdir, capsys):
    path = write_study(workdir, {"done": None, "half": None, "todo": None})
    (workdir / "runs" / "tiny" / "done").mkdir(parents=True)
    (workdir / "runs" / "tiny" / "done" / studies.FINISHED_FILE).write_text("{}")
    (workdir / "runs" / "tiny" / "half" / "checkpoints").mkdir(parents=True)
    (workdir / "runs" / "tiny" / "half" / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert studies.main([str(path), "--dry-run", "--trainer.max_epochs", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Study tiny: 3 runs in runs/tiny (1 finished, 1 to resume, 1 to start)"
    states = {line.split()[0]: line.split()[1] for line in out[1:]}
    assert states == {"done": "finished", "half": "resume", "todo": "new"}
    half = next(line for line in out if line.split()[0] == "half")
    assert half.endswith("--ckpt_path last") and "--trainer.max_epochs 2" in half
    assert not list((workdir / "runs" / "tiny" / "todo").glob("*"))  # nothing ran


def test_finished_variant_with_other_arguments_is_skipped_with_a_note(workdir, capsys):
    path = write_study(workdir, {"a": {"trainer.max_epochs": 3}})
    (job,) = studies.plan(studies.load_study(path))
    job.run_dir.mkdir(parents=True)
    marker = {"fit_args": runner.fit_args(job.command)}
    (job.run_dir / studies.FINISHED_FILE).write_text(json.dumps(marker))
    assert studies.main([str(path)]) == 0  # nothing ran
    out = capsys.readouterr().out.splitlines()
    assert out[1] == f"  a: finished before, skipped ({job.run_dir})"
    assert out[2].startswith("Study tiny complete.") and len(out) == 3
    assert studies.main([str(path), "--trainer.max_epochs", "5"]) == 0
    assert f"note: it ran with other arguments than now, move {job.run_dir} aside" in capsys.readouterr().out
    # The preview says it too (it listed the run as finished with the arguments given now, silently).
    assert studies.main([str(path), "--dry-run"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # the same arguments: no note
    assert studies.main([str(path), "--dry-run", "--trainer.max_epochs", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:2] == ["a", "finished"]
    assert out[2].strip() == f"note: it ran with other arguments than now, move {job.run_dir} aside to run it again"


def test_export_sweep_is_a_grid_over_the_variants(workdir, capsys):
    path = write_study(workdir, {"b": None, "a": None}, seeds=[7, 8])
    out = workdir / "sweep.yaml"
    assert studies.main([str(path), "--export-sweep", str(out)]) == 0
    sweep = yaml.safe_load(out.read_text())
    assert sweep["method"] == "grid" and sweep["project"] == "lightning-hw"
    written = out.read_text()
    with pytest.raises(ConfigError, match=r"--export-sweep: .*sweep.yaml exists and is left unchanged"):
        studies.main([str(path), "--export-sweep", str(out)])
    assert out.read_text() == written
    assert sweep["parameters"] == {"variant": {"values": ["b", "a"]}, "seed": {"values": [7, 8]}}
    assert sweep["command"] == ["${env}", "python", "-m", "lightning_hw", "study", str(path), "${args}"]
    # What an agent runs (`${args}` expands to --variant=a --seed=8) selects exactly one run:
    capsys.readouterr()
    assert studies.main([str(path), "--variant=a", "--seed=8", "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in listed] == ["a-seed8"]


def test_export_sweep_keeps_the_fit_options_and_root_given_to_study(workdir, capsys):
    """`study FILE --export-sweep OUT --trainer.max_epochs 2 --root elsewhere`: the options were
    dropped, so the agents trained the file's max_epochs into runs/ without a word."""
    from lightning_hw.cli import main

    path = write_study(workdir, {"a": None}, seeds=[7, 8])
    out = workdir / "sweep.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path), "--export-sweep", str(out), "--trainer.max_epochs", "2", "--root", "elsewhere", "--run.project=mine"])
    assert exit_info.value.code == 0
    sweep = yaml.safe_load(out.read_text())
    assert sweep["project"] == "mine"
    assert sweep["command"][-1] == "${args}"
    # What an agent runs: the command with ${args} as W&B expands it (here listed, not trained).
    agent = [*sweep["command"][4:-1], "--variant=a", "--seed=8", "--dry-run"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(agent)
    assert exit_info.value.code == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.startswith(f"Study tiny: 1 runs in {Path('elsewhere') / 'tiny'} ")
    fit = shlex.split(line.split(None, 2)[2])
    assert fit[fit.index("--trainer.max_epochs", fit.index("--trainer.max_epochs") + 1) + 1] == "2"  # after the study's 4
    assert fit[fit.index("--run.root") + 1] == "elsewhere" and "--run.project=mine" in fit


def test_variant_with_a_seed_the_study_lacks_is_refused(workdir, capsys):
    """`--variant a --seed 9` (a sweep of another version of the file, a typo) listed and ran every seed of `a`."""
    from lightning_hw.cli import main

    with_seeds = write_study(workdir, {"a": None, "b": None}, seeds=[7, 8])
    (workdir / "plain").mkdir()
    without = write_study(workdir / "plain", {"a": None})
    for path, message in ((with_seeds, "study tiny has no seed 9; its seeds are 7, 8"), (without, "study tiny has no seed 9; it has no `seeds:`, leave out --seed")):
        for argv in (["study", str(path), "--variant", "a", "--seed", "9", "--dry-run"], ["study", str(path), "--variant=a", "--seed=9"]):
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            assert exit_info.value.code == 2
            assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not (workdir / "runs").exists()


def assert_the_shared_refusal_stops_the_grid(workdir: Path, capsys, args: dict, error: str) -> None:
    """A grid of two variants over ``args``: the first run's refusal (its ``error`` line) stops the study, the other never starts."""
    path = write_study(workdir, {"a": None, "b": None}, args=args)
    assert studies.main([str(path)]) == 2
    out = capsys.readouterr()
    assert f"refused before training: {error}" in out.out, out.out
    assert "Study tiny stopped: its fit refused what every run shares" in out.err
    assert len([d for d in (workdir / "runs" / "tiny").iterdir() if d.name in ("a", "b")]) == 1  # the other never started


def test_a_grid_whose_shared_monitor_is_never_logged_stops_at_its_first_run(workdir, capsys):
    """A misspelt run.monitor of the study's args is every run's: the first refusal stops the grid (no variant sets it)."""
    args = {**{k: v for k, v in TINY.items() if k != "trainer.callbacks"}, "run.monitor": "val/accc"}
    assert_the_shared_refusal_stops_the_grid(workdir, capsys, args, "error: run.monitor val/accc is not a metric this run logs")


def test_a_grid_whose_shared_early_stopping_monitor_is_never_logged_stops_at_its_first_run(workdir, capsys):
    """A misspelt monitor of a callback in the study's args (EarlyStopping's) failed each run in turn, as if a run's own."""
    early = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/accc"}}
    args = {**{k: v for k, v in TINY.items() if k != "trainer.callbacks"}, "trainer.callbacks": [early]}
    assert_the_shared_refusal_stops_the_grid(
        workdir, capsys, args, "error: the monitor of EarlyStopping val/accc is not a metric this run logs"
    )
    # A variant that sets its own callbacks may be the only one refused: the others still train.
    path = write_study(workdir, {"a": None, "b": {"trainer.callbacks": [{**early, "init_args": {"monitor": "val/acc"}}]}},
                       args=args, name="own")
    assert studies.main([str(path)]) == 1
    assert "a: FAILED" in capsys.readouterr().out
    assert studies.is_finished_run(workdir / "runs" / "own" / "b")


def test_a_variant_setting_its_callbacks_in_a_mapping_is_not_stopped_by_another_runs_callback_monitor(workdir, capsys):
    """``trainer: {callbacks: [...]}`` in a variant sets its own callbacks as ``trainer.callbacks`` does: another run's
    refused callback monitor is not every run's (it stopped the study before that variant trained)."""
    early = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/accc"}}
    args = {**{k: v for k, v in TINY.items() if k != "trainer.callbacks"}, "trainer.callbacks": [early]}
    own = {"trainer": {"callbacks": [{**early, "init_args": {"monitor": "val/acc"}}]}}
    path = write_study(workdir, {"a": None, "b": own}, args=args, name="nested")
    assert studies.main([str(path)]) == 1
    assert "a: FAILED" in capsys.readouterr().out
    assert studies.is_finished_run(workdir / "runs" / "nested" / "b")


def test_an_option_the_study_sets_for_each_run_is_refused(workdir, capsys):
    """Given to ``study``, it was overridden without a word (``--data.init_args.folds 3`` beside ``folds: 5``), or it
    overrode a searched parameter: ``--model.init_args.lr 0.1`` trained every trial at 0.1 while the study recorded
    the sampled lrs."""
    from lightning_hw.cli import main

    grid = write_study(workdir, {"a": {"model.init_args.lr": 0.1}, "b": {"model.init_args.lr": 0.01}}, seeds=[1], folds=2)
    (workdir / "search").mkdir()
    search = workdir / "search" / "tiny.yaml"
    search.write_text(yaml.safe_dump({"config": str(QUICKSTART), "args": TINY, "trials": 2,
                                      "search": {"model.init_args.lr": {"float": [0.01, 0.3], "log": True}}}))
    for path, option, message in (
        (grid, "--data.init_args.folds", "study tiny sets --data.init_args.folds for each run itself (every fold of its "
         "folds: 2); leave it out, or change folds: in the study file"),
        (grid, "--seed_everything", "study tiny sets --seed_everything for each run itself (from its seeds:); leave it "
         "out, or change seeds: in the study file"),
        (grid, "--run.root", "study tiny sets --run.root for each run itself (its runs go under the study's --root); "
         "give the study --root DIR instead"),
        (search, "--model.init_args.lr", "study tiny sets --model.init_args.lr for each run itself (the search samples "
         "it for each trial); leave it out, or take it out of search: in the study file"),
    ):
        argv = ["study", str(path), option if "=" in option else f"{option}=3"]
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--dry-run"] if path == grid else argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not (workdir / "runs").exists() and not (workdir / "search" / "runs").exists()


def test_a_run_setting_in_a_study_files_args_is_refused(workdir, capsys):
    """`args: {run.root: DIR}` was overridden without a word by the study's own --run.root: a search's trials
    trained into runs/<study> under the current directory, and `report DIR/<study>` found nothing there."""
    from lightning_hw.cli import main

    (workdir / "search").mkdir()
    search = workdir / "search" / "tiny.yaml"
    search.write_text(yaml.safe_dump({"config": str(QUICKSTART), "args": {**TINY, "run.root": str(workdir / "mine")}, "trials": 2,
                                      "search": {"model.init_args.lr": {"float": [0.01, 0.3], "log": True}}}))
    grid = write_study(workdir, {"a": {"run": {"name": "mine"}}})
    for path, argv, message in (
        (search, [], f"study {search}: args sets run.root, which the study sets for each run itself (its runs go under "
         "the study's --root); give the study file root: DIR (or the study --root DIR) instead"),
        (grid, ["--dry-run"], f"study {grid}: variant a sets run.name, which the study sets for each run itself (it "
         "names each run after its variant, seed and fold, or trial-<N>); leave it out"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["study", str(path), *argv])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not any(p.name in ("runs", "mine") for p in workdir.rglob("*"))


def test_shipped_study_files_are_studies():
    """Every study in configs/studies/ parses; those whose configs exist on this branch also plan."""
    paths = sorted((REPO / "configs" / "studies").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"reuters_heads", "overfitting", "augmentation"}
    heads = yaml.safe_load((REPO / "configs" / "studies" / "reuters_heads.yaml").read_text())["variants"]
    assert sorted(v["model.init_args.head"] for v in heads.values()) == sorted(
        ["sigmoid_bce", "softmax_ce", "sigmoid_mse", "softmax_mse", "linear_mse"]
    )
    from lightning_hw.nets.losses import HEADS

    assert {v["model.init_args.head"] for v in heads.values()} <= set(HEADS)
    for path in paths:
        spec = yaml.safe_load(path.read_text())
        if "search" in spec:  # an Optuna search (tests/test_search.py)
            continue
        assert set(spec) <= set(studies.STUDY_KEYS) and spec["variants"], path
        try:
            study = studies.load_study(path)  # configs/x.yaml resolves from configs/studies/ upwards
        except ConfigError as err:  # a config another issue adds is not on this branch yet
            assert "not found" in str(err), err
            continue
        assert studies.plan(study)


# -- a real study: kill one variant, re-run, resume; then the report ---------------------------


@pytest.fixture(scope="module")
def resumed_study(tmp_path_factory):
    """Run a three-variant study in which `killed` SIGKILLs itself in epoch 2, then run it again."""
    root = tmp_path_factory.mktemp("study")
    old_cwd, old_path = Path.cwd(), os.environ.get("PYTHONPATH")
    os.chdir(root)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), old_path]))
    try:
        killer = [{"class_path": "study_helpers.KillOnce", "init_args": {"kill_at_epoch": 2}}]
        path = write_study(
            root,
            {
                "sgd": None,
                # last.ckpt after every epoch (the default interval would skip the short epoch 1)
                "killed": {"trainer.callbacks": killer, "run.checkpoint_interval": 0},
                "adam": {"optimizer": "torch.optim.Adam", "optimizer.init_args.lr": 0.01},
            },
        )
        from contextlib import redirect_stdout
        from io import StringIO

        first_out, second_out = StringIO(), StringIO()
        with redirect_stdout(first_out):
            first = studies.main([str(path), "--jobs", "3"])
        study_dir = root / "runs" / "tiny"
        before = {name: (study_dir / name / studies.FINISHED_FILE).stat().st_mtime_ns for name in ("sgd", "adam")}
        with redirect_stdout(second_out):
            second = studies.main([str(path)])
        yield {
            "dir": study_dir,
            "codes": (first, second),
            "outputs": (first_out.getvalue(), second_out.getvalue()),
            "markers_before": before,
        }
    finally:
        os.chdir(old_cwd)
        if old_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_path


def journal(run_dir: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in (run_dir / "journal.txt").read_text().splitlines()]


@pytest.mark.slow
def test_rerun_skips_finished_variants_and_resumes_the_killed_one(resumed_study):
    study_dir = resumed_study["dir"]
    first_out, second_out = resumed_study["outputs"]
    assert resumed_study["codes"] == (1, 0)
    assert "killed: FAILED (exit -9, run training)" in first_out  # SIGKILL, as a crash or an OOM kill would be

    # Second run: the two finished variants were skipped (their markers untouched, one process each).
    assert "sgd: finished before, skipped" in second_out and "adam: finished before, skipped" in second_out
    assert "[1/1] killed: resuming from checkpoints/last.ckpt" in second_out
    for name in ("sgd", "adam"):
        assert (study_dir / name / studies.FINISHED_FILE).stat().st_mtime_ns == resumed_study["markers_before"][name]
        assert journal(study_dir / name) == [(journal(study_dir / name)[0][0], e) for e in range(4)]

    # The killed variant: process 1 ran epochs 0-2 and died in epoch 2; process 2 started at
    # epoch 2 (restored from last.ckpt, written at the end of epoch 1), not at 0.
    epochs = journal(study_dir / "killed")
    pids = list(dict.fromkeys(pid for pid, _ in epochs))
    assert len(pids) == 2
    assert [e for p, e in epochs if p == pids[0]] == [0, 1, 2]
    assert [e for p, e in epochs if p == pids[1]] == [2, 3]
    log = (study_dir / "killed" / studies.LOG_FILE).read_text()
    assert "--ckpt_path last" in log and "Restoring states from the checkpoint path at" in log
    assert str(Path("runs/tiny/killed/checkpoints/last.ckpt")) in log
    marker = json.loads((study_dir / "killed" / studies.FINISHED_FILE).read_text())
    assert marker["resumed"] is True and marker["command"][-2:] == ["--ckpt_path", "last"]

    # Its metrics.csv kept the epochs from before the kill and has the test of the best checkpoint.
    curves = reports.read_metrics(study_dir / "killed" / "metrics.csv")
    assert sorted(curves["val/acc"]) == [0, 1, 2, 3] and sorted(curves["train/loss"]) == [0, 1, 2, 3]
    assert "test/acc" in curves


@pytest.mark.slow
def test_report_on_the_study(resumed_study, capsys):
    study_dir = resumed_study["dir"]
    assert reports.main([str(study_dir)]) == 0
    printed = capsys.readouterr().out
    out = study_dir / "report"

    expected = {}
    for name in ("adam", "killed", "sgd"):
        rows = list(csv.DictReader((study_dir / name / "metrics.csv").open()))
        val_acc = {int(r["epoch"]): float(r["val/acc"]) for r in rows if r["val/acc"]}
        val_loss = {int(r["epoch"]): float(r["val/loss"]) for r in rows if r["val/loss"]}
        test_acc = [float(r["test/acc"]) for r in rows if r["test/acc"]][-1]
        expected[name] = (val_acc, val_loss, test_acc)

    table = list(csv.DictReader((out / "report.csv").open()))
    assert [row["run"] for row in table] == ["adam", "killed", "sgd"]
    for row in table:
        val_acc, val_loss, test_acc = expected[row["run"]]
        assert int(row["epochs"]) == 4
        assert float(row["val/acc"]) == val_acc[3]  # final = last epoch
        assert float(row["best val/acc"]) == max(val_acc.values())
        assert float(row["best val/loss"]) == min(val_loss.values())  # losses: lower is better
        assert val_loss[int(row["best val/loss epoch"])] == min(val_loss.values())
        assert float(row["test/acc"]) == test_acc
        # The printed (and Markdown) table shows the same numbers.
        line = next(line for line in printed.splitlines() if line.startswith(f"| {row['run']} |"))
        assert f"{val_acc[3]:.4f}" in line and f"{test_acc:.4f}" in line
    assert (out / "report.md").read_text().count("| killed |") == 1

    # One PNG per metric with a curve; each figure has one line per run with that run's values.
    from PIL import Image

    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(f"{s}_{m}.png" for s in ("train", "val") for m in ("acc", "f1", "loss"))
    assert Image.open(out / "val_acc.png").size == (700, 450)
    runs, _ = reports.load_runs([study_dir])
    lines = reports.figure(runs, "val/acc").axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["adam", "killed", "sgd"]
    for line in lines:
        val_acc = expected[line.get_label()][0]
        assert list(line.get_xdata()) == [0, 1, 2, 3] and list(line.get_ydata()) == [val_acc[e] for e in range(4)]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # wandb-workspaces' pydantic v1 validators
def test_wandb_report_is_built_with_the_same_panels(resumed_study):
    pytest.importorskip("wandb_workspaces")
    runs, _ = reports.load_runs([resumed_study["dir"]])
    columns, rows = reports.table(runs)
    table_md = reports.markdown(columns, rows)
    metrics = reports.plotted_metrics(runs)
    report = reports.wandb_report(runs, table_md, metrics, "Tiny study", entity="someone")  # built, not saved
    assert report.project == "lightning-hw" and report.entity == "someone"
    heading, table_block, grid = report.blocks
    assert table_block.text == table_md
    assert [panel.y for panel in grid.panels] == [[m] for m in metrics]
    assert {panel.x for panel in grid.panels} == {"epoch"}
    assert [runset.filters for runset in grid.runsets] == ["Metric(\"Group\") == 'tiny'"]


def test_report_needs_runs(workdir):
    (workdir / "empty").mkdir()
    with pytest.raises(DataError, match=r"no runs under empty \(no metrics.csv\)"):
        reports.main(["empty"])


def test_report_seed_table_averages_over_seeds(workdir):
    for name, values in {"a-seed1": [0.5, 0.7], "a-seed2": [0.6, 0.9], "b-seed1": [0.4, 0.4]}.items():
        run = workdir / "runs" / "s" / name
        run.mkdir(parents=True)
        rows = ["epoch,step,val/acc,val/loss"] + [f"{e},{e},{v},{1 - v}" for e, v in enumerate(values)]
        (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert reports.main(["runs/s"]) == 0
    by_variant = {r["variant"]: r for r in csv.DictReader((workdir / "runs" / "s" / "report" / "report-seeds.csv").open())}
    assert float(by_variant["a"]["val/acc mean"]) == pytest.approx(0.8)
    assert float(by_variant["a"]["val/acc sd"]) == pytest.approx(0.1414, abs=1e-4)
    assert float(by_variant["a"]["best val/loss mean"]) == pytest.approx(0.2)
    assert by_variant["b"]["seeds"] == "1"


def test_study_and_report_errors_are_one_line_from_main(workdir, capsys):
    from lightning_hw.cli import main

    for argv in (["study", "nope.yaml"], ["report", "nowhere"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code in (1, 2)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.slow
def test_e8_study_on_the_reuters_fixture(workdir):
    """The five heads of E8, two epochs each, on a Reuters file in the real reuters.npz layout."""
    fixtures = pytest.importorskip("lightning_hw.data.fixtures.classification", reason="the Reuters datamodule comes with the datasets issue")
    if not (REPO / "configs" / "reuters.yaml").is_file() or not hasattr(fixtures, "write_reuters"):
        pytest.skip("configs/reuters.yaml and its fixture come with the datasets issue")
    root = fixtures.write_reuters(workdir / "reuters")
    study_file = REPO / "configs" / "studies" / "reuters_heads.yaml"
    fast = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--run.wandb", "disabled"]
    argv = [str(study_file), "--jobs", "2", "--trainer.max_epochs", "2", "--data.init_args.root", str(root), *fast, *quiet]
    assert studies.main(argv) == 0
    heads = ["linear_mse", "sigmoid_bce", "sigmoid_mse", "softmax_ce", "softmax_mse"]
    assert sorted(p.parent.name for p in (workdir / "runs" / "reuters_heads").glob(f"*/{studies.FINISHED_FILE}")) == heads
    for head in heads:
        config = yaml.safe_load((workdir / "runs" / "reuters_heads" / head / "config.yaml").read_text())
        assert config["model"]["init_args"]["head"] == head and config["trainer"]["max_epochs"] == 2
    assert reports.main([str(workdir / "runs" / "reuters_heads")]) == 0
    table = list(csv.DictReader((workdir / "runs" / "reuters_heads" / "report" / "report.csv").open()))
    assert [row["run"] for row in table] == heads and all(row["epochs"] == "2" and row["test/acc"] for row in table)


def test_a_run_another_process_is_finishing_is_not_counted_twice(workdir):
    """Two processes sharing a grid: one has recorded run b finished on disk and is about to tell the study, when
    the other is handed b (GridSampler hands out visited runs too). It told b finished as well: two COMPLETE trials
    of one run (CI, under load: ['a', 'b', 'b', 'c']), so b counted twice. It gives the trial back instead."""
    import optuna

    from lightning_hw.studies import search

    path = write_study(workdir, {"a": None, "b": None, "c": None}, storage=f"sqlite:///{workdir / 'grid.db'}")
    study_file = studies.load_study(path)
    settings = search.grid_search(study_file, study_file.options)
    study, storage = runner.open_study(settings, heartbeat=False)
    first = runner._GridAsker(study, storage, settings, ["a", "b", "c"], everything=True)
    study.enqueue_trial({runner.GRID_PARAM: "b"})
    finishing = first.next()  # the first process trains b ...
    assert finishing.params[runner.GRID_PARAM] == "b"
    run_b = settings.directory / "b"
    run_b.mkdir(parents=True)
    (run_b / "metrics.csv").write_text(f"epoch,step,{settings.metric}\n0,3,0.5\n")
    (run_b / studies.FINISHED_FILE).write_text("{}\n")  # ... and has recorded it finished, not yet told the study
    study.enqueue_trial({runner.GRID_PARAM: "b"})  # what the other process's ask will hand out
    other = runner._GridAsker(study, storage, settings, ["a", "b", "c"], everything=True).next()
    assert other.params[runner.GRID_PARAM] in ("a", "c")
    runner._tell_finished(study, finishing, run_b, settings)  # the first process tells
    complete = [t.params[runner.GRID_PARAM] for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete == ["b"]


def test_two_processes_share_a_grid_through_a_journal_file(workdir, capsys):
    """The same grid command on two 'machines' (one journal file both see): every run trains once."""
    import subprocess
    import sys

    import optuna

    from lightning_hw.studies import search

    journal_file = workdir / "shared" / "grid.log"
    path = write_study(
        workdir, {"a": None, "b": {"model.init_args.lr": 0.05}, "c": {"model.init_args.lr": 0.2}},
        storage=f"journal://{journal_file}",
    )
    command = [sys.executable, "-m", "lightning_hw", "study", str(path), "--trainer.max_epochs", "1"]
    # the study's runs import study_helpers.KillOnce (not inherited from another test's environment)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    processes = [
        warm_start.popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    study_dir = workdir / "runs" / "tiny"
    for name in ("a", "b", "c"):  # one fit each, whichever process took it
        log = (study_dir / name / studies.LOG_FILE).read_text()
        assert sum(line.startswith("$ ") for line in log.splitlines()) == 1, name
        assert (study_dir / name / studies.FINISHED_FILE).is_file()
    settings = search.grid_search(studies.load_study(path), studies.load_study(path).options)
    trials = optuna.load_study(study_name=settings.optuna_name, storage=search.open_storage(settings.storage)).get_trials()
    complete = [t.params["run"] for t in trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == ["a", "b", "c"]
    # Run again (in this process: it has nothing to train): nothing trains.
    capsys.readouterr()
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 0
    again = capsys.readouterr().out
    assert "3 finished, 0 to resume, 0 to start" in again, again
    assert all(sum(line.startswith("$ ") for line in (study_dir / name / studies.LOG_FILE).read_text().splitlines()) == 1
               for name in ("a", "b", "c"))


@pytest.mark.parametrize("to_the_group", [True, False], ids=["process-group", "study-process-only"])
def test_sigterm_to_the_study_stops_it_as_ctrl_c_does(workdir, to_the_group):
    """SIGTERM to the study's process group (``timeout``, a scheduler), or to the study's process alone
    (``kill PID``, ``docker stop``): the fit saves last.ckpt, the study queues the run again, keeps the fit's
    output in study.log and says how to continue, exit 143. Sent to the study alone, the signal had not reached
    the fit: the study waited for the run to train all its epochs before it stopped."""
    import signal
    import subprocess
    import sys
    import time

    import optuna

    from lightning_hw.studies import search

    # last.ckpt after every epoch; 400 epochs: still training when the signal comes, however fast the machine
    path = write_study(workdir, {"a": {"run.checkpoint_interval": 0}})
    command = [sys.executable, "-m", "lightning_hw", "study", str(path), "--trainer.max_epochs", "400"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    run_dir = workdir / "runs" / "tiny" / "a"
    study = warm_start.popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (run_dir / "checkpoints" / "last.ckpt").is_file():
            assert study.poll() is None and time.monotonic() < deadline, "the run never saved a checkpoint"
            time.sleep(0.2)
        if to_the_group:
            os.killpg(study.pid, signal.SIGTERM)  # as `timeout -s TERM` does: the study and its fit
        else:
            os.kill(study.pid, signal.SIGTERM)  # the study passes it on to its fit
        out = study.communicate(timeout=60)[0]
    finally:
        if study.poll() is None:
            os.killpg(study.pid, signal.SIGKILL)
            study.wait()
    assert study.returncode == 143, out
    assert "[1/1] a: interrupted (SIGTERM); run the study again to resume it" in out
    assert "Study interrupted; run the same command again to continue it" in out
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    log = (run_dir / studies.LOG_FILE).read_text()  # the fit's last lines were kept
    # At its next step, with last.ckpt saved there: the copy the study passes on to a fit that the group's
    # signal reached too is not a second signal (which stops at once).
    assert "interrupted by SIGTERM at step" in log and "interrupted by SIGTERM at once" not in log, log[-2000:]
    # Not left RUNNING (a rerun would wait for its heartbeat to go stale): failed and queued again.
    settings = search.grid_search(studies.load_study(path), studies.load_study(path).options)
    trials = optuna.load_study(study_name=settings.optuna_name, storage=search.open_storage(settings.storage)).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]


def test_a_second_sigterm_to_the_study_process_stops_its_fit_at_once_and_the_record_stays_true(workdir):
    """``kill PID`` of a study, then again (the usual "harder"), while its fit is in a long step. The study passed
    each on, but its fit took the second copy for the echo of the first (as when the process group is signalled)
    and trained on to the end of its step; and the study, interrupted again while it waited, took its fit's
    thread for ended and exited at once: the fit orphaned, the end of its output lost, its trial left RUNNING."""
    import signal
    import subprocess
    import sys
    import time

    import optuna

    from lightning_hw.studies import search

    slow = [{"class_path": "study_helpers.SlowStep", "init_args": {"step": 2, "seconds": 120}}]  # a 2-minute step
    path = write_study(workdir, {"a": {"trainer.callbacks": slow}})
    command = [sys.executable, "-m", "lightning_hw", "study", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    run_dir = workdir / "runs" / "tiny" / "a"
    study = warm_start.popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (run_dir / "slow-step").is_file():
            assert study.poll() is None and time.monotonic() < deadline, "the run never reached its slow step"
            time.sleep(0.1)
        os.kill(study.pid, signal.SIGTERM)  # the study alone: it passes it on
        while "stopping after this step" not in (run_dir / studies.LOG_FILE).read_text():
            assert study.poll() is None and time.monotonic() < deadline, "the fit never got the study's SIGTERM"
            time.sleep(0.1)
        os.kill(study.pid, signal.SIGTERM)  # again: stop now
        sent = time.monotonic()
        out = study.communicate(timeout=100)[0]
        waited = time.monotonic() - sent
        fits = descendants_of_session(study.pid)
    finally:
        if study.poll() is None:
            study.kill()
            study.wait()
        for pid in descendants_of_session(study.pid):  # none should be left: never let one outlive the test
            os.kill(pid, signal.SIGKILL)
    assert study.returncode == 143 and waited < 60, (waited, out)  # not at the end of the 2-minute step
    assert not fits, f"fits outlived their study: {fits}"
    log = (run_dir / studies.LOG_FILE).read_text()  # the fit's last lines were kept
    assert "interrupted by SIGTERM at once" in log, log[-2000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    assert "[1/1] a: interrupted (SIGTERM)" in out
    settings = search.grid_search(studies.load_study(path), studies.load_study(path).options)
    trials = optuna.load_study(study_name=settings.optuna_name, storage=search.open_storage(settings.storage)).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]  # not left RUNNING


def test_a_study_killed_outright_leaves_no_file_of_its_own(workdir):
    """A study SIGKILLed (the out-of-memory killer, ``kill -9``) while its fit trained left its count of passed-on
    SIGTERMs behind, ``$TMPDIR/lightning-hw-study-stops-<random>``, one more file for every study killed so."""
    import signal
    import subprocess
    import sys
    import time

    slow = [{"class_path": "study_helpers.SlowStep", "init_args": {"step": 2, "seconds": 120}}]
    path = write_study(workdir, {"a": {"trainer.callbacks": slow}})
    tmp = workdir / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    study = subprocess.Popen([sys.executable, "-m", "lightning_hw", "study", str(path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not (workdir / "runs" / "tiny" / "a" / "slow-step").is_file():
            assert study.poll() is None and time.monotonic() < deadline, "the run never reached its slow step"
            time.sleep(0.1)
        study.kill()
        study.wait()
    finally:
        if study.poll() is None:
            study.kill()
            study.wait()
        for pid in descendants_of_session(study.pid):  # its orphaned fit
            os.kill(pid, signal.SIGKILL)
    assert [p.name for p in tmp.iterdir() if p.name.startswith("lightning-hw-study")] == []


def test_two_studies_run_at_once_in_one_process_both_finish(workdir, monkeypatch):
    """Two studies run from two threads of one process (a notebook): the first to end closed the other's count of
    passed-on SIGTERMs (a module global), and the second ended in an AttributeError traceback on ``None.close()``."""
    import threading

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    paths = []
    for name in ("one", "two"):
        (workdir / name).mkdir()
        paths.append(write_study(workdir / name, {"a": None}, name=name))
    codes: dict[str, object] = {}

    def study(path: Path) -> None:
        try:
            codes[path.parent.name] = studies.main([str(path), "--trainer.max_epochs", "1"])
        except BaseException as err:  # noqa: BLE001 - the test reports it
            codes[path.parent.name] = repr(err)

    threads = [threading.Thread(target=study, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert codes == {"one": 0, "two": 0}
    assert all((workdir / "runs" / name / "a" / "status.json").is_file() for name in ("one", "two"))


def descendants_of_session(session: int) -> list[int]:
    """The processes still running in session ``session`` (a study started with ``start_new_session``), from ``/proc``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # the session id; a zombie has ended
            found.append(int(stat.parent.name))
    return found


def test_a_fit_a_worker_starts_as_the_study_is_stopped_is_stopped_too(workdir, monkeypatch, capsys):
    """A SIGTERM that comes while a worker is between two fits (asking the storage for the next run) reached
    no fit: the worker then started one, which trained all its epochs (the study waiting for it) and
    finished though the study was stopped. It is passed on to that fit too: stopped, and queued again."""
    import signal
    import time

    import optuna

    from lightning_hw.studies import runner, search

    path = write_study(workdir, {"a": None})
    execute = runner.execute

    def signalled_first(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # to the study alone (kill PID), before its fit starts
        time.sleep(0.5)  # the study's handler runs in the main thread meanwhile
        return execute(*args, **kwargs)

    monkeypatch.setattr(runner, "execute", signalled_first)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    code = studies.main([str(path), "--trainer.max_epochs", "30"])
    printed = capsys.readouterr().out
    assert code == 143 and "[1/1] a: interrupted (SIGTERM); nothing was saved; running the study again starts it anew" in printed
    assert not studies.is_finished_run(workdir / "runs" / "tiny" / "a")
    settings = search.grid_search(studies.load_study(path), studies.load_study(path).options)
    trials = optuna.load_study(study_name=settings.optuna_name, storage=search.open_storage(settings.storage)).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]


def test_a_study_fit_stopping_at_once_takes_the_studys_copy_of_the_signal_as_the_same_one(monkeypatch, tmp_path):
    """A SIGTERM to the process group outside training (set-up, the test after fit) stops a study's fit at once,
    and the copy its study passes on arrives while it unwinds: taken as a new signal, it raised again in the
    middle of writing the run's status (a signal handler cannot be driven through the CLI at that moment)."""
    import signal

    from lightning_hw.runs.interrupts import RunInterrupted, SignalWatch
    from lightning_hw.studies.grid import STUDY_PARENT_ENV, STUDY_STOPS_ENV

    monkeypatch.setenv(STUDY_PARENT_ENV, str(os.getppid()))  # as the study sets it for its fit
    (tmp_path / "stops").write_text("1")  # the study passed on the process group's SIGTERM (its count)
    monkeypatch.setenv(STUDY_STOPS_ENV, str(tmp_path / "stops"))
    watch = SignalWatch()
    with pytest.raises(RunInterrupted):
        watch._handle(signal.SIGTERM, None)  # from the process group: stops at once
    watch._handle(signal.SIGTERM, None)  # the study's copy of it: nothing more
    with pytest.raises(RunInterrupted):
        watch._handle(signal.SIGTERM, None)  # another SIGTERM is one


def test_a_study_fit_takes_the_studys_copy_arriving_after_it_stopped_training_as_the_same_signal(monkeypatch, tmp_path):
    """The process group's SIGTERM stops a study's fit at its next step; the study's copy of it may arrive only
    once the fit has saved last.ckpt and left the training loop (the study's handler waits for a CPU, the
    fit's step is short). Taken as a new signal there, it raised again in the middle of writing the run's
    status, and the fit said it stopped at once (a signal handler cannot be driven through the CLI then)."""
    import signal

    from lightning_hw.runs.interrupts import RunInterrupted, SignalWatch
    from lightning_hw.studies.grid import STUDY_PARENT_ENV, STUDY_STOPS_ENV

    monkeypatch.setenv(STUDY_PARENT_ENV, str(os.getppid()))  # as the study sets it for its fit
    (tmp_path / "stops").write_text("1")  # the study passed on the process group's SIGTERM (its count)
    monkeypatch.setenv(STUDY_STOPS_ENV, str(tmp_path / "stops"))
    watch = SignalWatch()
    watch.training = True
    watch._handle(signal.SIGTERM, None)  # from the process group: stop at the next step
    watch.training = False  # stopped there (GracefulStop.on_exception): the run's clean-up runs
    watch._handle(signal.SIGTERM, None)  # the study's copy of it: nothing more
    with pytest.raises(RunInterrupted):
        watch._handle(signal.SIGTERM, None)  # another SIGTERM is one


def test_grid_on_a_journal_does_not_call_a_study_complete_while_a_run_is_running(workdir, capsys, monkeypatch):
    """A journal has no heartbeat: a run RUNNING in it (another process's, or one that died) is left to it,
    and the summary says so, with --retry-running for when no process trains it, not "complete"."""
    from lightning_hw.studies import search

    path = write_study(workdir, {"a": None, "b": None}, storage=f"journal://{workdir / 'grid.log'}")
    settings = search.grid_search(studies.load_study(path), studies.load_study(path).options)
    study, _ = runner.open_study(settings)
    study.enqueue_trial({search.GRID_PARAM: "b"})
    assert study.ask(settings.space).params == {search.GRID_PARAM: "b"}  # RUNNING, as a process that was killed leaves it
    # the study's runs import study_helpers.KillOnce
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    code = studies.main([str(path), "--trainer.max_epochs", "1"])
    printed = capsys.readouterr()
    assert code == 0 and studies.is_finished_run(workdir / "runs" / "tiny" / "a")
    assert not studies.is_finished_run(workdir / "runs" / "tiny" / "b")
    assert "complete" not in printed.out
    assert "1 run(s) RUNNING in the storage, left to the process that runs them: b" in printed.err
    assert "--retry-running" in printed.err


@pytest.mark.parametrize(
    "content, why",
    [
        (b"epoch,step,val/acc\n0,0,0.5\nx,1,0.6\n", "line 3: epoch 'x' is not a number"),
        (b"epoch,step,val/acc\n0,0,0.5\n1,1,abc\n", "line 3: val/acc 'abc' is not a number"),
        (b"epoch,step,val/acc\n0,0,0.5\n\xff\xfe\x00garbage\n", "not UTF-8 text"),
        (b'epoch,step,val/acc\n0,0,0.5\n1,1,"' + b"z" * 200_000, "field larger than field limit (131072)"),
    ],
)
def test_report_on_a_corrupt_metrics_file_fails_in_one_line(workdir, capsys, content, why):
    from lightning_hw.cli import main

    for name in ("good", "bad"):
        (workdir / "runs" / "s" / name).mkdir(parents=True)
        (workdir / "runs" / "s" / name / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5\n")
    (workdir / "runs" / "s" / "bad" / "metrics.csv").write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {Path('runs/s/bad/metrics.csv')} cannot be read as a metrics file ({why}); "
        "repair it, or leave its run out by naming the other runs"
    ]
    assert (workdir / "runs" / "s" / "bad" / "metrics.csv").read_bytes() == content  # left as it was


def test_metrics_row_with_a_stray_extra_cell_keeps_its_values(workdir):
    (workdir / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5,7\n1,1,0.6\n")
    assert reports.read_metrics(workdir / "metrics.csv") == {"val/acc": {0: 0.5, 1: 0.6}}


def test_report_leaves_out_a_metrics_row_still_being_written(workdir, capsys):
    """A run training now appends rows to its metrics.csv: the report read its half-written last
    row `1,5,0.` as val/acc 0.0 at epoch 1, a value the run never had."""
    from lightning_hw.cli import main

    run = workdir / "runs" / "s" / "a"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,val/acc,val/loss\n0,2,0.5,0.9\n1,5,0.")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s"])
    assert exit_info.value.code == 0
    (row,) = csv.DictReader((workdir / "runs" / "s" / "report" / "report.csv").open())
    assert (row["epochs"], float(row["val/acc"]), float(row["val/loss"])) == ("1", 0.5, 0.9)


def test_only_does_not_call_the_whole_study_complete(workdir, capsys, monkeypatch):
    """`--only a` finishes `a`; the study's other runs have not run, so the study is not "complete"."""
    path = write_study(workdir, {"a": None, "b": None})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    assert studies.main([str(path), "--only", "a", "--trainer.max_epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Study tiny complete" not in out
    assert "Study tiny: the 1 run(s) asked for finished; 1 of its 2 runs not yet: b (run the study without --only or --variant for them)." in out
    assert studies.main([str(path), "--only", "b", "--trainer.max_epochs", "1"]) == 0  # the last one: now it is
    assert "Study tiny complete. Compare the runs with: python -m lightning_hw report runs/tiny" in capsys.readouterr().out


def test_report_again_leaves_no_summary_of_an_earlier_report(workdir):
    """A summary this report does not write (the runs are no longer all folds) must not stay from the last one."""
    def run(name: str, value: float) -> None:
        (workdir / "runs" / "s" / name).mkdir(parents=True)
        (workdir / "runs" / "s" / name / "metrics.csv").write_text(f"epoch,step,val/acc\n0,0,{value}\n")

    run("a-fold0", 0.5)
    run("a-fold1", 0.7)
    assert reports.main(["runs/s"]) == 0
    out = workdir / "runs" / "s" / "report"
    assert (out / "report-folds.csv").is_file()
    run("baseline", 0.9)  # e.g. `fit --run.group s --run.name baseline`: not a fold, so no mean over folds
    assert reports.main(["runs/s"]) == 0
    assert "over folds" not in (out / "report.md").read_text()
    assert not (out / "report-folds.csv").exists()


def test_report_on_one_run_writes_into_that_run_not_over_its_study_report(workdir, capsys):
    """`report runs/s/a` writes runs/s/a/report/ (as `<DIR>/report`), leaving the study's runs/s/report/ as it was."""
    for name in ("a", "b"):
        (workdir / "runs" / "s" / name).mkdir(parents=True)
        (workdir / "runs" / "s" / name / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5\n")
    assert reports.main(["runs/s"]) == 0
    study_report = (workdir / "runs" / "s" / "report" / "report.csv").read_text()
    assert reports.main(["runs/s/a"]) == 0
    assert (workdir / "runs" / "s" / "report" / "report.csv").read_text() == study_report
    assert [row["run"] for row in csv.DictReader((workdir / "runs" / "s" / "a" / "report" / "report.csv").open())] == ["a"]
    assert f"Report written to {Path('runs/s/a/report')}:" in capsys.readouterr().out


def test_output_piped_into_a_reader_that_stops_ends_without_a_traceback(workdir):
    """`study FILE --dry-run | head`: the reader goes away mid-listing; the command stops quietly (exit 1)."""
    import subprocess
    import sys

    path = write_study(workdir, {"a": None, "b": None, "c": None}, folds=40)  # 120 runs: more than one pipe write
    study = warm_start.popen(
        [sys.executable, "-m", "lightning_hw", "study", str(path), "--dry-run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert study.stdout.readline().startswith("Study tiny: 120 runs")
    study.stdout.close()  # as `head -1` does
    err = study.stderr.read()
    assert study.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_report_into_a_folder_of_the_users_deletes_none_of_its_files(workdir):
    """--out DIR with a file named like a report table (and no report there): it is the user's, kept."""
    (workdir / "runs" / "s" / "a").mkdir(parents=True)
    (workdir / "runs" / "s" / "a" / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5\n")
    mine = workdir / "mine"
    mine.mkdir()
    (mine / "evaluations.csv").write_text("my own table\n")
    assert reports.main(["runs/s", "--out", str(mine)]) == 0
    assert (mine / "evaluations.csv").read_text() == "my own table\n"


def test_report_out_into_a_run_is_refused_and_the_run_kept_as_it_was(workdir, capsys):
    """`report runs/s --out runs/s/a` wrote report.csv, report.md and val_acc.png among run a's
    own files (and an earlier report's tables there were deleted): a run's record is its own."""
    from lightning_hw.cli import main

    for name in ("a", "b"):
        run = workdir / "runs" / "s" / name
        run.mkdir(parents=True)
        (run / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5\n")
        (run / "status.json").write_text('{"status": "finished"}\n')
    run_a = workdir / "runs" / "s" / "a"
    before = sorted(p.name for p in run_a.rglob("*"))
    for out, where in (("runs/s/a", "is a run's directory, whose"), ("runs/s/a/sub", f"is inside {Path('runs/s/a')}, a run whose"),
                       ("runs/s/a/report", f"is inside {Path('runs/s/a')}, a run whose")):
        with pytest.raises(SystemExit) as exit_info:
            main(["report", "runs/s", "--out", out])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: --out {Path(out)} {where} files no other command changes; write the report elsewhere "
            f"(without --out it goes to {Path('runs/s/report')})"
        ]
    assert sorted(p.name for p in run_a.rglob("*")) == before
    # A run's own report goes into its report/ folder, as without --out.
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/s/a", "--out", "runs/s/a/report"])
    assert exit_info.value.code == 0 and (run_a / "report" / "report.csv").is_file()


def test_report_marks_runs_that_did_not_finish(workdir, capsys):
    """A run still training, interrupted, or killed must not read as finished in the table."""
    import socket

    states = {
        "done": {"status": "finished"},
        "stopped": {"status": "interrupted", "signal": "SIGTERM"},
        "running": {"status": "training"},  # its command holds the lock: this very process
        "killed": {"status": "training"},  # SIGKILL: no command holds its lock any more
    }
    for name, status in states.items():
        run = workdir / "runs" / "g" / name
        run.mkdir(parents=True)
        (run / "metrics.csv").write_text("epoch,step,val/acc\n0,1,0.5\n1,2,0.7\n")
        (run / "status.json").write_text(json.dumps(status))
    (workdir / "runs" / "g" / "running" / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    (workdir / "runs" / "g" / "killed" / ".lock").write_text(f"{socket.gethostname()} 999999999\n")

    assert reports.main(["runs/g"]) == 0
    table = {r["run"]: r for r in csv.DictReader((workdir / "runs" / "g" / "report" / "report.csv").open())}
    assert {name: row["status"] for name, row in table.items()} == {
        "done": "finished", "stopped": "interrupted", "running": "training", "killed": "died while training",
    }
    assert "| running | 2 | training | 0.7000 |" in capsys.readouterr().out


def test_report_of_finished_runs_has_no_status_column(workdir):
    run = workdir / "runs" / "g" / "a"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,val/acc\n0,1,0.5\n")
    (run / "status.json").write_text(json.dumps({"status": "finished"}))
    assert reports.main(["runs/g"]) == 0
    assert "status" not in (workdir / "runs" / "g" / "report" / "report.csv").read_text()


def test_report_lists_a_run_that_died_in_its_first_epoch(workdir, capsys, monkeypatch):
    """A run killed before it wrote a metrics row (its first epoch) has a record but no metrics.csv:
    the report left it out ("Comparison of 1 runs"), as if the study had only the run that finished."""
    from lightning_hw.cli import main

    killer = [{"class_path": "study_helpers.KillOnce", "init_args": {"kill_at_epoch": 0}}]
    path = write_study(workdir, {"a": None, "b": {"trainer.callbacks": killer}})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 1
    assert not (workdir / "runs" / "tiny" / "b" / "metrics.csv").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "runs/tiny"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Comparison of 2 runs in tiny")
    table = {r["run"]: r for r in csv.DictReader((workdir / "runs" / "tiny" / "report" / "report.csv").open())}
    assert {name: (row["epochs"], row["status"]) for name, row in table.items()} == {
        "a": ("1", "finished"), "b": ("0", "died while training"),
    }
    assert table["b"]["val/acc"] == "" and "| b | 0 | died while training | - |" in out


def test_finished_variant_whose_config_file_changed_is_skipped_with_a_note(workdir, capsys, monkeypatch):
    """Editing the base config between two runs of a study (a new lr, say) skipped the finished runs
    without a word, as if they had trained with the edited file; other arguments get a note."""
    base = workdir / "base.yaml"
    base.write_text(QUICKSTART.read_text())
    path = write_study(workdir, {"a": None})
    path.write_text(path.read_text().replace(str(QUICKSTART), str(base)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 0
    run_dir = Path("runs/tiny/a")
    record = sorted(p.name for p in run_dir.rglob("*"))
    capsys.readouterr()
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 0  # unchanged: no note
    assert capsys.readouterr().out.splitlines()[1] == f"  a: finished before, skipped ({run_dir})"
    base.write_text(base.read_text() + "\n# lr tried again\n")  # a comment changes nothing that trains
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"  a: finished before, skipped ({run_dir})"
    settings = yaml.safe_load(base.read_text())
    settings["optimizer"]["init_args"]["lr"] = 0.5
    base.write_text(yaml.safe_dump(settings))
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"  a: finished before, skipped ({run_dir}); note: its config file {base} changed since it ran, "
        f"move {run_dir} aside to run it again"
    )
    assert sorted(p.name for p in run_dir.rglob("*")) == record  # nothing of the run rewritten


def test_a_variant_given_twice_in_the_study_file_is_refused(workdir, capsys):
    """A variant copied and not renamed: YAML kept only the last one, and the study ran one run
    where the file shows two, without a word."""
    from lightning_hw.cli import main

    path = workdir / "twice.yaml"
    path.write_text(
        f"config: {QUICKSTART}\nvariants:\n  a:\n    model.init_args.lr: 0.01\n  a:\n    model.init_args.lr: 0.1\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path), "--dry-run"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: study file {path} gives `a` twice (line 5); YAML would keep only the last one: rename or remove one"
    ]
    assert not (workdir / "runs").exists()


def test_a_variant_built_on_another_with_a_yaml_merge_key_may_override_its_options(workdir, capsys):
    """`b: {<<: *a, lr: 0.05}` is YAML's way to copy a variant and change one option; the check for keys
    given twice saw the merged-in `lr` beside b's own and refused the file."""
    from lightning_hw.cli import main

    path = workdir / "merged.yaml"
    path.write_text(
        f"config: {QUICKSTART}\nvariants:\n  a: &a\n    model.init_args.lr: 0.01\n    trainer.max_epochs: 2\n"
        "  b:\n    <<: *a\n    model.init_args.lr: 0.1\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path), "--dry-run"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    study = studies.load_study(path)
    args = {v.name: v.args for v in study.variants}
    assert sorted(args) == ["a", "b"]
    assert "0.1" in args["b"] and "0.01" not in args["b"] and "2" in args["b"]


def test_a_seed_with_no_metric_row_yet_is_left_out_of_the_mean_with_a_note(workdir, capsys):
    """Listed in the table since a run without a metrics row counts, a seed interrupted in its first epoch
    also counted in `seeds` of the mean: "2 seeds, val/acc 0.7000 ± 0.0000" from one seed's values."""
    for name, status in (("a-seed1", "finished"), ("a-seed2", "interrupted"), ("b-seed1", "finished"), ("b-seed2", "finished")):
        run = workdir / "runs" / "g" / name
        run.mkdir(parents=True)
        if name != "a-seed2":
            (run / "metrics.csv").write_text(f"epoch,step,val/acc\n0,1,0.5\n1,2,{0.6 if name == 'b-seed2' else 0.7}\n")
        (run / "status.json").write_text(json.dumps({"status": status}))
    assert reports.main(["runs/g"]) == 0
    out = capsys.readouterr().out
    seeds = {r["variant"]: r for r in csv.DictReader((workdir / "runs" / "g" / "report" / "report-seeds.csv").open())}
    assert seeds["a"]["seeds"] == "1" and seeds["b"]["seeds"] == "2"
    assert "note: a-seed2 (interrupted) has no metric row yet: it is not in the mean ± sd" in out
    assert "| a-seed2 | 0 | interrupted | - |" in out  # still listed in the comparison


def test_study_help_shows_every_option_and_the_warm_start_switch_the_readme_documents(capsys):
    """``study --help`` said nothing of LIGHTNING_HW_WARM_START=0 (how to start every fit afresh) nor of the
    options a study refuses; README's study commands and the help name the same ``study`` options."""
    from lightning_hw.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--help"])
    assert exit_info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Studies and reports", 1)[1].split("\n## ", 1)[0]
    in_help = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*(?![\w.-])", shown)) - {"--help"}
    documented = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*(?![\w.-])", section))
    assert in_help <= documented, in_help - documented
    for used in re.findall(r"lightning_hw study \S+ (--[a-z-]+)(?![\w.])", section):
        assert used in in_help
    assert "LIGHTNING_HW_WARM_START=0" in section and "LIGHTNING_HW_WARM_START=0 starts every run afresh" in shown
    assert "--run.name, --run.group, --run.root (give --root)" in shown


def test_a_fit_by_hand_into_a_study_run_starting_now_is_not_told_it_never_trained(workdir, capsys):
    """A study's log with no error in it is that of a fit starting now (or stopped before it trained): the
    refusal said "which never trained ...; run the study again", a second study beside the running one."""
    run_dir = workdir / "runs" / "own" / "v"
    run_dir.mkdir(parents=True)
    (run_dir / studies.LOG_FILE).write_text(f"\n# 2026-12-07T16:00:00\n$ python -m lightning_hw fit --config {QUICKSTART}\n")
    code, error = error_of(["fit", "--config", str(QUICKSTART), "--run.root", "runs", "--run.group", "own", "--run.name", "v"], capsys)
    log = Path("runs") / "own" / "v" / studies.LOG_FILE
    assert code == 2 and error == (
        f"error: {Path('runs') / 'own' / 'v'} belongs to study own: it holds only the study's log of its fit, with no error "
        f"in it (the fit may be starting now, or was stopped before it trained; see {log}); unless the study is running, "
        "run it again to train it there, or give another --run.name"
    )
    assert sorted(p.name for p in run_dir.iterdir()) == [studies.LOG_FILE]  # nothing written there


def test_a_run_stopped_in_its_test_after_fit_is_rerun_with_one_test_row(workdir, capsys, monkeypatch):
    """A disk full at the end of a run's test after fit (its row logged): the study's rerun of the run
    (`fit --ckpt_path last`) trained nothing and tested again, a second test row in its metrics.csv."""
    full = [{"class_path": "study_helpers.DiskFullAfterTestOnce"}]
    path = write_study(workdir, {"a": {"trainer.callbacks": full}})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    run = workdir / "runs" / "tiny" / "a"
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 1
    assert json.loads((run / "status.json").read_text())["during"] == "the test after fit (training had finished)"
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    tests = [(r["epoch"], r["step"]) for r in rows if r["test/acc"]]
    assert tests == [("0", "3")], rows
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_a_study_in_a_notebook_leaves_no_database_open(workdir, monkeypatch):
    """After an in-process `study`, optuna.db stayed open (two connections) until the garbage collector ran:
    Optuna's storage sits in a reference cycle."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    path = write_study(workdir, {"a": None})
    assert studies.main([str(path), "--trainer.max_epochs", "1"]) == 0
    fds = Path("/proc/self/fd")
    opened = [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink() and os.path.exists(os.readlink(fd))] if fds.is_dir() else []
    assert not [f for f in opened if f.endswith("optuna.db")], opened
