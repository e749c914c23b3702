"""k-fold cross-validation: folds of every kind of datamodule, bad fold settings, a CV study and its report."""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

import wandb_files

from lightning_hw import reports
from lightning_hw.data.base import InMemoryDataModule
from lightning_hw.data.datasets.digits import Digits
from lightning_hw.data.datasets.fer2013 import FER2013
from lightning_hw.data.datasets.image_folder import ImageFolder
from lightning_hw.data.datasets.mnist import MNIST
from lightning_hw.data.datasets.moons import TwoMoons
from lightning_hw.data.fixtures import classification as fixtures
from lightning_hw.data.fixtures.landmarks import write_celeba, write_muct
from lightning_hw.data.landmarks.celeba import CelebALandmarks
from lightning_hw.data.folds import fold_indices
from lightning_hw.data.landmarks.muct import MUCT
from lightning_hw.errors import ConfigError
from lightning_hw.studies import grid as studies

from conftest import QUICKSTART
from reliability_helpers import error_of
from lightning_hw.cli import warm_start

TESTS = Path(__file__).resolve().parent


def assert_within_one_per_class(part: torch.Tensor, pool: torch.Tensor, folds: int) -> None:
    """Every class has floor or ceil of its share of ``pool`` in ``part`` (one fold of ``folds``)."""
    classes = int(pool.max()) + 1
    have, total = torch.bincount(part, minlength=classes), torch.bincount(pool, minlength=classes)
    for c in range(classes):
        assert abs(have[c].item() - total[c].item() / folds) < 1, (c, have.tolist(), total.tolist())


# -- the one fold function -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The least populated class")  # class 3 has one sample, on purpose
def test_fold_indices_partition_stratify_and_are_seeded():
    labels = torch.tensor([0] * 23 + [1] * 9 + [2] * 4 + [3] * 1)[torch.randperm(37, generator=torch.Generator().manual_seed(0))]
    vals = []
    for fold in range(4):
        train, val = fold_indices(labels, 4, fold, seed=3)
        assert sorted(train.tolist() + val.tolist()) == list(range(37))  # train = everything but the fold
        assert_within_one_per_class(labels[val], labels, 4)
        assert_within_one_per_class(labels[train], labels, 4 / 3)
        vals.append(val)
    assert sorted(torch.cat(vals).tolist()) == list(range(37))  # the validation folds partition the samples
    assert torch.equal(fold_indices(labels, 4, 2, seed=3)[1], vals[2])
    assert not torch.equal(fold_indices(labels, 4, 2, seed=4)[1], vals[2])
    # Not class labels (a count, float targets): plain shuffled folds of even sizes.
    for targets in (10, torch.rand(10, 3)):
        parts = [fold_indices(targets, 3, f, seed=0)[1] for f in range(3)]
        assert sorted(torch.cat(parts).tolist()) == list(range(10)) and sorted(len(p) for p in parts) == [3, 3, 4]


# -- every kind of datamodule: the test split is kept, the rest is partitioned -------------------


def rows(split: tuple[torch.Tensor, ...]) -> Counter:
    """The samples of a split as a multiset of (input bytes, target) (data sets may repeat a sample)."""
    x, y = split[0], split[1]
    return Counter((x[i].numpy().tobytes(), y[i].numpy().tobytes()) for i in range(x.shape[0]))


def check_folds_of(build, folds: int, stratified: bool = True) -> None:
    """The folds of ``build(**fold_args)`` (an in-memory datamodule) against its split without folds."""
    plain = build()
    plain.setup("fit")
    pool = rows(plain.raw_data["train"]) + rows(plain.raw_data["val"])
    pool_labels = torch.cat([plain.raw_data["train"][1], plain.raw_data["val"][1]])
    validated = Counter()
    for fold in range(folds):
        dm = build(folds=folds, fold=fold)
        dm.setup("fit")
        for a, b in zip(dm.raw_data["test"], plain.raw_data["test"]):
            assert torch.equal(a, b)  # the test split is exactly the one without folds, in its order
        train, val = rows(dm.raw_data["train"]), rows(dm.raw_data["val"])
        assert train + val == pool  # each fold's train and val hold exactly the non-test samples
        validated += val
        if stratified:
            assert_within_one_per_class(dm.raw_data["val"][1], pool_labels, folds)
        split = dm.state_dict()["split"]
        expected = {"splits": list(dm.splits), "split_seed": dm.split_seed, "folds": folds, "fold": fold}
        if dm.sample_names() is not None:  # a folder's files, so that a changed folder is noticed
            expected["samples"] = split["samples"]
            assert split["samples"]["count"] == len(dm.sample_names())
        assert split == expected
    assert validated == pool  # the k validation sets do not overlap and cover every non-test sample


def test_digits_folds_of_the_quickstart_split():
    check_folds_of(lambda **kw: Digits(splits=(0.7, 0.2, 0.1), standardize=True, **kw), folds=5)


def test_moons_folds_of_the_e4_split():
    check_folds_of(lambda **kw: TwoMoons(n_samples=200, noise=0.3, splits=(0.72, 0.18, 0.1), **kw), folds=5)


def test_image_folder_folds(tmp_path):
    root = fixtures.write_image_folder(tmp_path / "catsdogs", classes=("cat", "dog", "fox"), per_class=9)
    build = lambda **kw: ImageFolder(root=str(root), labels="prefix", image_size=12, splits=(0.5, 0.2, 0.3), **kw)  # noqa: E731
    check_folds_of(build, folds=3)
    # The file lists (what the streaming path reads) are folded the same way.
    plain, folded = build()._split(), [build(folds=3, fold=f)._split() for f in range(3)]
    assert all(parts["test"] == plain["test"] for parts in folded)
    assert sorted(p for parts in folded for p in parts["val"]) == sorted(plain["train"] + plain["val"])


def test_mnist_folds_cut_the_training_set_and_keep_the_official_test_set(tmp_path):
    fixtures.write_mnist(tmp_path, n_train=40, n_test=10)
    check_folds_of(lambda **kw: MNIST(root=str(tmp_path), download=False, val_fraction=0.25, **kw), folds=4)
    dm = MNIST(root=str(tmp_path), download=False, folds=4, fold=0)
    dm.setup("fit")
    assert [dm.raw_data[s][0].shape[0] for s in ("train", "val", "test")] == [30, 10, 10]  # val_fraction unused


def test_fer2013_folds_cut_training_and_public_test(tmp_path):
    fixtures.write_fer2013(tmp_path, per_usage=(21, 7, 14))
    check_folds_of(lambda **kw: FER2013(root=str(tmp_path), download=False, **kw), folds=4)


def test_muct_folds_are_cut_between_subjects(tmp_path):
    root = write_muct(tmp_path / "muct", size=(40, 30))
    plain = MUCT(root=str(root), splits=(0.5, 0.25, 0.25)).split_records()
    subjects = lambda records: {path.name[1:4] for path, _ in records}  # noqa: E731
    validated = []
    for fold in range(3):
        parts = MUCT(root=str(root), splits=(0.5, 0.25, 0.25), folds=3, fold=fold).split_records()
        assert [p for p, _ in parts["test"]] == [p for p, _ in plain["test"]]
        assert not subjects(parts["train"]) & subjects(parts["val"])  # no person in training and validation
        assert subjects(parts["train"]) | subjects(parts["val"]) == subjects(plain["train"] + plain["val"])
        validated += [p for p, _ in parts["val"]]
    assert sorted(validated) == sorted(p for p, _ in plain["train"] + plain["val"])


# -- what the datamodule refuses, and what it records --------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"folds": 3, "fold": 3}, "fold must be 0 to 2 with folds 3, got 3"),
    ({"folds": 3, "fold": -1}, "fold must be 0 to 2 with folds 3, got -1"),
    ({"folds": 1, "fold": 0}, "folds must be at least 2"),
    ({"fold": 1}, "--data.init_args.fold 1 needs --data.init_args.folds"),
    ({"folds": 5}, "folds 5 needs --data.init_args.fold: which fold validates, 0 to 4"),
])
def test_bad_fold_settings_are_refused_when_the_datamodule_is_built(kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        TwoMoons(**kwargs)
    assert "\n" not in str(err.value)


def test_more_folds_than_samples_and_fixed_validation_splits_are_refused():
    with pytest.raises(ConfigError, match="12 folds need at least 12 samples outside the test split, there are 9"):
        TwoMoons(n_samples=10, splits=(0.5, 0.4, 0.1), folds=12, fold=0).setup("fit")

    class FixedSplits(InMemoryDataModule):  # a data set that comes with its own validation split
        def load_splits(self):
            x, y = torch.zeros(6, 2), torch.tensor([0, 1] * 3)
            return {"train": (x[:2], y[:2]), "val": (x[2:4], y[2:4]), "test": (x[4:], y[4:])}

    with pytest.raises(ConfigError, match="FixedSplits has a fixed validation split, so it cannot be cross-validated"):
        FixedSplits(folds=2, fold=0).setup("fit")


def test_celeba_with_its_own_partition_refuses_folds(tmp_path, monkeypatch):
    import torchvision.datasets.celeba as tv_celeba

    root = write_celeba(tmp_path, n=10)
    monkeypatch.setattr(tv_celeba, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))  # a fixture's MD5s
    with pytest.raises(ConfigError, match="CelebALandmarks has a fixed validation split"):
        CelebALandmarks(root=str(root), image_size=(109, 89), num_workers=1, folds=3, fold=0).setup("fit")


def test_checkpoint_records_the_fold_and_a_resume_on_another_fold_is_refused():
    trained = Digits(folds=5, fold=0)
    trained.setup("fit")
    state = trained.state_dict()
    for stage, other in (("fit", Digits(folds=5, fold=1)), ("fit", Digits())):
        other.setup(stage)
        other.trainer = types.SimpleNamespace(state=types.SimpleNamespace(fn=stage))
        with pytest.raises(ConfigError, match="trained on another split of the data than this Digits makes") as err:
            other.load_state_dict(state)
        assert "fold 0 in training" in str(err.value) and "config.yaml" in str(err.value)
    same = Digits(folds=5, fold=0)
    same.setup("fit")
    same.trainer = types.SimpleNamespace(state=types.SimpleNamespace(fn="fit"))
    same.load_state_dict(state)  # the same fold resumes
    # Testing a fold's checkpoint without folds: the test split is the same, nothing to say.
    tested = Digits()
    tested.setup("test")
    tested.trainer = types.SimpleNamespace(state=types.SimpleNamespace(fn="test"))
    tested.load_state_dict(state)
    moved = Digits(split_seed=7)
    moved.setup("test")
    moved.trainer = tested.trainer
    with pytest.warns(UserWarning, match="split_seed 42 in training, 7 here"):
        moved.load_state_dict(state)


# -- through the command line --------------------------------------------------------------------


def test_cli_fold_out_of_range_is_one_line_and_leaves_no_run(workdir, capsys):
    args = ["fit", "--config", str(QUICKSTART), "--data.init_args.folds", "3", "--data.init_args.fold", "3",
            "--run.root", "runs", "--run.wandb", "disabled"]
    from lightning_hw.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()  # the error alone
    assert line.startswith("error:")
    assert "fold must be 0 to 2 with folds 3, got 3" in line
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_a_fold_out_of_range_beside_a_checkpoint_is_said_as_it_is(subcommand, trained_run, capsys):
    """`test --ckpt_path <run's checkpoint> --data.init_args.folds 3 --data.init_args.fold 7` blamed the checkpoint
    ("holds a Classifier ..., which does not fit this config (fold must be ...); run with --config <the run's
    config.yaml>", the config it had used): the data's own settings are the error, with no evaluation written."""
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    before = sorted(p.relative_to(trained_run) for p in trained_run.rglob("*"))
    code, line = error_of([subcommand, "--ckpt_path", str(ckpt), "--data.init_args.folds", "3", "--data.init_args.fold", "7"], capsys)
    assert (code, line) == (2, "error: fold must be 0 to 2 with folds 3, got 7")
    assert sorted(p.relative_to(trained_run) for p in trained_run.rglob("*")) == before


def test_cli_too_many_folds_is_one_line_and_leaves_no_run(tiny_args, workdir, capsys):
    # The error comes when the data is read, still before the run directory exists.
    code, line = error_of(tiny_args("fit", "--data.init_args.folds", "2000", "--data.init_args.fold", "0"), capsys)
    assert code != 0 and "2000 folds need at least 2000 samples outside the test split" in line
    assert not (workdir / "runs").exists()


def test_cli_validating_a_fold_checkpoint_on_another_fold_keeps_a_caveat(tiny_args, workdir):
    """The validation split is a fold: another fold's checkpoint trained on it. The test split is not."""
    from lightning_hw.cli import main

    folds = ("--data.init_args.folds", "3", "--data.init_args.fold")
    main(tiny_args("fit", *folds, "0", "--run.name", "fold0", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "fold0"
    checkpoint = str(run / "checkpoints" / "last.ckpt")

    def evaluate(subcommand: str, fold: str, *extra: str) -> str | None:
        """The caveats.txt of ``subcommand`` on ``fold`` (``None`` when it wrote none)."""
        before = set((run / "eval").iterdir()) if (run / "eval").is_dir() else set()
        main([subcommand, "--ckpt_path", checkpoint, *folds, fold, "--trainer.enable_progress_bar", "false", *extra])
        (evaluation,) = set((run / "eval").iterdir()) - before
        caveats = evaluation / "caveats.txt"
        return caveats.read_text() if caveats.is_file() else None

    with pytest.warns(UserWarning, match=r"fold 0 in training, 1 here\): this validation split may hold samples"):
        said = evaluate("validate", "1", "--run.wandb", "offline")
    assert said is not None and "fold 0 in training, 1 here" in said
    # W&B's copy of the evaluation says it too: in its summary, and as a tag to filter on
    (evaluation,) = [p for p in (run / "eval").iterdir() if (p / "caveats.txt").is_file()]
    (wandb_file,) = wandb_files.run_files(evaluation)
    wandb_files.wait_for_exit(wandb_file)
    assert wandb_files.summary(wandb_file)["caveats"] == said.splitlines()
    assert "caveat" in wandb_files.tags(wandb_file)
    assert evaluate("validate", "0") is None
    # The test split is the same whatever the fold; the training folds' mean/std are not, and
    # the warning says why (it asked "has the data changed?"); the checkpoint's are used.
    with pytest.warns(UserWarning, match=r"mean/std .* differ from the checkpoint's \(its split is another: fold 0 in training, 1 here\)"):
        assert evaluate("test", "1") is None


# -- studies: folds as a study key, and the report over folds -------------------------------------


def test_study_folds_multiply_the_variants_and_add_the_fold_arguments(workdir):
    path = workdir / "cv.yaml"
    path.write_text(yaml.safe_dump({"config": str(QUICKSTART), "folds": 3, "seeds": [1, 2], "variants": {"a": None, "b": None}}))
    study = studies.load_study(path)
    assert study.folds == 3
    assert [v.name for v in study.variants][:4] == ["a-seed1-fold0", "a-seed1-fold1", "a-seed1-fold2", "a-seed2-fold0"]
    assert len(study.variants) == 12
    command = studies.fit_command(study, study.variants[4], [])
    joined = " ".join(command)
    assert "--seed_everything 2 --data.init_args.folds 3 --data.init_args.fold 1" in joined
    assert "--run.name a-seed2-fold1" in joined
    path.write_text(yaml.safe_dump({"config": str(QUICKSTART), "folds": 1, "variants": {"a": None}}))
    with pytest.raises(ConfigError, match="`folds` must be a whole number of at least 2"):
        studies.load_study(path)


def write_metrics(run: Path, values: list[float], test: float) -> None:
    run.mkdir(parents=True)
    lines = ["epoch,step,val/acc,val/loss,test/acc"] + [f"{e},{e},{v},{1 - v}," for e, v in enumerate(values)]
    (run / "metrics.csv").write_text("\n".join([*lines, f"{len(values) - 1},{len(values)},,,{test}"]) + "\n")


def test_report_over_folds_per_seed_then_over_seeds(workdir):
    acc = {"a-seed1-fold0": 0.5, "a-seed1-fold1": 0.7, "a-seed2-fold0": 0.6, "a-seed2-fold1": 1.0}
    for name, value in acc.items():
        write_metrics(workdir / "runs" / "s" / name, [value / 2, value], test=value)
    assert reports.main(["runs/s"]) == 0
    out = workdir / "runs" / "s" / "report"
    by_fold = {r["variant"]: r for r in csv.DictReader((out / "report-folds.csv").open())}
    assert set(by_fold) == {"a-seed1", "a-seed2"} and by_fold["a-seed1"]["folds"] == "2"
    assert float(by_fold["a-seed2"]["val/acc mean"]) == pytest.approx(0.8)
    assert float(by_fold["a-seed2"]["val/acc sd"]) == pytest.approx(statistics.stdev([0.6, 1.0]))
    (by_seed,) = csv.DictReader((out / "report-seeds.csv").open())
    assert by_seed["variant"] == "a" and by_seed["seeds"] == "2"
    assert float(by_seed["test/acc mean"]) == pytest.approx(0.7)  # the mean of the seeds' means 0.6 and 0.8
    assert float(by_seed["test/acc sd"]) == pytest.approx(statistics.stdev([0.6, 0.8]))
    text = (out / "report.md").read_text()
    assert "## Mean ± standard deviation over folds" in text
    assert "## Mean ± standard deviation over seeds (of each seed's mean over folds)" in text


def test_a_mean_over_one_fold_claims_no_spread(workdir, capsys):
    """One fold of three trained: its "mean ± sd" read `0.6000 ± 0.0000`, as if folds had agreed."""
    write_metrics(workdir / "runs" / "s" / "one-fold0", [0.5, 0.6], test=0.7)
    for fold, value in enumerate([0.6, 0.8]):
        write_metrics(workdir / "runs" / "s" / f"two-fold{fold}", [value / 2, value], test=value)
    assert reports.main(["runs/s"]) == 0
    printed = capsys.readouterr().out
    assert "| one | 1 | 2.0000 (1 value) | 0.6000 (1 value) | 0.6000 (1 value) | 0.7000 (1 value) |" in printed, printed
    assert f"| two | 2 | 2.0000 ± 0.0000 | 0.7000 ± {statistics.stdev([0.6, 0.8]):.4f} |" in printed
    by_fold = {r["variant"]: r for r in csv.DictReader((workdir / "runs" / "s" / "report" / "report-folds.csv").open())}
    assert (by_fold["one"]["val/acc mean"], by_fold["one"]["val/acc sd"]) == ("0.6", "")


def test_published_report_holds_the_means_over_folds_and_seeds(workdir, monkeypatch, capsys):
    """`--publish` gave W&B only the runs' table: a cross-validation there had no mean ± sd."""
    for name, value in {"a-fold0": 0.5, "a-fold1": 0.7}.items():
        write_metrics(workdir / "runs" / "s" / name, [value / 2, value], test=value)
    published = {}

    class Saved:
        url = "https://wandb.ai/someone/lightning-hw/reports/x"

        def save(self):
            return self

    def build(runs, table_md, *args):
        published["markdown"] = table_md
        return Saved()

    monkeypatch.setattr(reports, "check_can_publish", lambda runs: None)
    monkeypatch.setattr(reports, "_default_entity", lambda: "someone")
    monkeypatch.setattr(reports, "wandb_report", build)
    assert reports.main(["runs/s", "--publish"]) == 0
    text = (workdir / "runs" / "s" / "report" / "report.md").read_text()
    folds = text[text.index("## Mean ± standard deviation over folds"):].split("\n\n![")[0].strip()
    assert "| a | 2 |" in folds and folds in published["markdown"]
    assert published["markdown"].startswith("| run |") and "![" not in published["markdown"]



def test_report_says_when_the_folds_of_a_variant_are_not_one_cross_validation(workdir, capsys):
    """A study rerun after `folds: 3` became `folds: 5` keeps fold0-2 (3-fold) and trains fold3-4 (5-fold).

    Their mean ± sd mixes two experiments (the validation folds overlap); the report said nothing.
    """
    def run(name: str, folds: int, fold: int, seed: int = 42, lr: float = 0.1) -> None:
        write_metrics(workdir / "runs" / "s" / name, [0.5, 0.6 + fold / 100], test=0.7)
        # Where a run was recorded (another machine's runs/, W&B offline there) is no other experiment.
        where = {"root": f"/machine{fold % 2}/runs", "wandb": ("offline", "online")[fold % 2]}
        config = {"seed_everything": seed, "model": {"init_args": {"lr": lr}},
                  "data": {"init_args": {"folds": folds, "fold": fold}},
                  "run": {"name": name, "notes": f"study s: {name}", **where}}
        (workdir / "runs" / "s" / name / "config.yaml").write_text(yaml.safe_dump(config))

    for fold in range(5):
        run(f"mixed-fold{fold}", 3 if fold < 3 else 5, fold)
        run(f"alike-seed1-fold{fold}", 5, fold, seed=1)
        run(f"alike-seed2-fold{fold}", 5, fold, seed=2)  # seeds and folds differ as they should: no note
    for fold in range(2):
        run(f"short-fold{fold}", 3, fold)
    run("edited-fold0", 2, 0)
    run("edited-fold1", 2, 1, lr=0.01)
    assert reports.main(["runs/s"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert notes == [  # in the order of the runs' names
        "note: edited: its runs differ in model.init_args.lr (0.1 in edited-fold0; 0.01 in edited-fold1), so its "
        "mean ± sd mixes experiments; move aside the runs of the setting you no longer want and run the study again "
        "before comparing",
        "note: mixed: its runs differ in data.init_args.folds (3 in mixed-fold0, mixed-fold1, mixed-fold2; "
        "5 in mixed-fold3, mixed-fold4), so its mean ± sd mixes experiments; move aside the runs of the setting "
        "you no longer want and run the study again before comparing",
        "note: short: of its 3 folds, short has 2; its mean ± sd is not over every fold",
    ]
    text = (workdir / "runs" / "s" / "report" / "report.md").read_text()
    assert all(f"- {note}" in text for note in notes)

@pytest.mark.slow
def test_three_fold_study_and_its_report(tmp_path, monkeypatch, capsys):
    """A 3-fold study of the quickstart (one epoch of three batches per fold), then `report`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    tiny = {
        "trainer.max_epochs": 1,
        "trainer.limit_train_batches": 3,
        "trainer.enable_progress_bar": False,
        "trainer.enable_model_summary": False,
        "run.wandb": "disabled",
    }
    path = tmp_path / "cv.yaml"
    path.write_text(yaml.safe_dump({"name": "cv", "config": str(QUICKSTART), "args": tiny, "folds": 3, "variants": {"mlp": None}}))
    assert studies.main([str(path), "--jobs", "2"]) == 0  # the study in this process, its fold runs' fits in their own
    study_dir = tmp_path / "runs" / "cv"
    names = [f"mlp-fold{i}" for i in range(3)]
    for fold, name in enumerate(names):  # each run's record says which fold it trained on
        data = yaml.safe_load((study_dir / name / "config.yaml").read_text())["data"]["init_args"]
        assert (data["folds"], data["fold"]) == (3, fold)

    assert reports.main([str(study_dir)]) == 0
    printed = capsys.readouterr().out
    out = study_dir / "report"
    assert [row["run"] for row in csv.DictReader((out / "report.csv").open())] == names  # every fold run listed
    (row,) = csv.DictReader((out / "report-folds.csv").open())
    assert row["variant"] == "mlp" and row["folds"] == "3"
    for metric in ("val/acc", "val/loss", "test/acc"):
        own = []
        for name in names:  # the fold runs' own numbers, straight from their metrics.csv
            values = [r[metric] for r in csv.DictReader((study_dir / name / "metrics.csv").open()) if r[metric]]
            own.append(float(values[-1]))
        assert float(row[f"{metric} mean"]) == pytest.approx(statistics.fmean(own), rel=1e-12)
        assert float(row[f"{metric} sd"]) == pytest.approx(statistics.stdev(own), rel=1e-12)
    val_loss = [float(r["val/loss"]) for n in names for r in csv.DictReader((study_dir / n / "metrics.csv").open()) if r["val/loss"]]
    assert len(set(val_loss)) > 1  # the folds validate on different samples
    assert "Mean ± sd over folds:" in printed and "| mlp | 3 |" in printed
    assert "## Mean ± standard deviation over folds" in (out / "report.md").read_text()


def test_study_leaves_a_fold_run_finished_outside_it_as_it_is(workdir):
    """A run of the study's name trained by hand (``fit ... --run.name mlp-fold0``) is no run of the study.

    The study "resumed" it (it has last.ckpt but no study-finished.json): the finished run trained
    no further, but its config.yaml was rewritten with the study's settings, and the report's
    mean ± sd counted it as one of the folds without a note, trained otherwise as it was.
    """
    run = workdir / "runs" / "cv" / "mlp-fold0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"a checkpoint")
    (run / "config.yaml").write_text("trainer: {limit_train_batches: null}\n")
    (run / "status.json").write_text('{"status": "finished", "name": "mlp-fold0"}')
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    study = workdir / "cv.yaml"
    study.write_text(yaml.safe_dump({"name": "cv", "config": str(QUICKSTART), "folds": 2, "variants": {"mlp": None},
                                     "args": {"run.wandb": "disabled", "trainer.max_epochs": 1}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}

    def study_command(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "lightning_hw", "study", str(study), "--variant", "mlp-fold0", *extra]
        return warm_start.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=workdir)

    dry = study_command("--dry-run")
    assert "0 to resume" in dry.stdout and "--ckpt_path" not in dry.stdout, dry.stdout + dry.stderr
    proc = study_command()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{Path('runs/cv/mlp-fold0')} finished outside study cv" in proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
