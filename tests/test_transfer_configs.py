"""The E5 configs, the fine-tuning overlay, the studies and the offline demo, through the CLI."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_hw.callbacks.feature_cache import FeatureCache
from lightning_hw.cli import HWCLI
from lightning_hw.data.fixtures.classification import write_image_folder
from lightning_hw.cli import warm_start

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted(p for p in (REPO / "configs" / "studies").glob("*net*.yaml") if not p.stem.endswith("_search"))  # searches: test_search


@pytest.fixture
def indoor_outdoor(workdir):
    return write_image_folder(workdir / "io", classes=("indoor", "outdoor"), per_class=10, size=(36, 44), layout="folder")


def quiet(workdir, *extra: str) -> list[str]:
    return [
        "--run.root", str(workdir / "runs"), "--run.wandb", "disabled",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "features", "head_widths"),
    [("resnet152", (2048, 1, 1), [1024, 64, 2]), ("densenet201", (1920, 1, 1), [256, 1])],
)
def test_e5_config_fast_dev_run_on_an_image_folder(config, features, head_widths, indoor_outdoor, workdir, capsys):
    # The acceptance command, at 32x32 instead of 128x128 to spare the CPU.
    cli = HWCLI(args=[
        "fit", "--config", str(REPO / "configs" / f"{config}.yaml"), "--data.init_args.root", str(indoor_outdoor),
        "--trainer.fast_dev_run", "true", "--model.init_args.net.init_args.pretrained", "false",
        "--data.init_args.image_size", "32", "--data.init_args.batch_size", "4", *quiet(workdir),
    ])
    net = cli.model.net
    assert net.model_name == config and net.feature_shape == features
    assert [m.out_features for m in net.head if hasattr(m, "out_features")] == head_widths
    # ImageNet preprocessing came from the backbone, not from the config.
    assert cli.datamodule.mean == pytest.approx([0.485, 0.456, 0.406]) and cli.datamodule.interpolation.value == "bicubic"
    out = capsys.readouterr().out
    assert "Preprocessing from the backbone's timm data config" in out
    assert "Test confusion matrix (rows: true class, columns: predicted)" in out and "outdoor" in out
    assert "true \\ predicted   indoor  outdoor" in out
    lines = out.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("true \\ predicted"))) + 1:][:2]
    assert [line.split()[0] for line in table] == ["indoor", "outdoor"]
    assert sum(int(v) for line in table for v in line.split()[1:]) == 2  # the fast_dev_run's one test batch
    assert not cli.run_dir.exists()  # a fast_dev_run saves nothing, the matrix's files included


@pytest.mark.slow
def test_transfer_demo_trains_the_head_then_fine_tunes(workdir, monkeypatch, capsys, caplog):
    """...and a run stopped inside the fine-tuning epoch resumes to the same metrics and weights.

    After the unfreezing, the checkpoint's optimizer holds the unfrozen layers' group and its lr: a new
    --finetune.lr would be recorded but never used (refused). Before it, the new lr is the one the backbone trains at.
    """
    from reliability_helpers import error_of

    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    args = [
        "fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--trainer.max_epochs", "2",
        "--finetune.unfreeze_at_epoch", "1", "--data.init_args.image_size", "32",
        "--trainer.limit_train_batches", "2", *quiet(workdir),
    ]
    cli = HWCLI(args=[*args, "--run.name", "whole"])
    # SIGTERM after step 3: epoch 1's first batch, the backbone's last blocks unfrozen at its start (lr 0.001, the config's).
    stopped = warm_start.run(
        [sys.executable, "-m", "lightning_hw", *args, "--run.name", "cut",
         "--trainer.callbacks+=reliability_helpers.SignalAtStep", "--trainer.callbacks.step", "3"],
        capture_output=True, text=True, cwd=workdir,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])},
    )
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    runs = workdir / "runs" / "transfer_demo"
    whole, cut = runs / "whole", runs / "cut"

    before = {p.relative_to(cut): p.read_bytes() for p in cut.rglob("*") if p.is_file()}
    code, line = error_of([*args, "--run.name", "cut", "--ckpt_path", "last", "--finetune.lr", "0.1"], capsys)
    assert code == 2
    assert line.startswith(f"error: cannot resume {cut} with other settings than its checkpoint restores "
                           "(finetune.init_args.lr 0.001 -> 0.1)")
    last = cut / "checkpoints" / "last.ckpt"
    code, line = error_of([*args, "--run.name", "new", "--ckpt_path", str(last), "--finetune.lr", "0.1"], capsys)
    assert code == 2
    assert line.startswith(f"error: cannot start run {runs / 'new'} from {last} with other settings")
    assert {p.relative_to(cut): p.read_bytes() for p in cut.rglob("*") if p.is_file()} == before
    assert not (runs / "new").exists()
    # Taken at the end of epoch 0, before the unfreezing: a new run fine-tunes at the lr it is given.
    head_trained = cut / "checkpoints" / "best-epoch000.ckpt"
    fresh = HWCLI(args=[*args, "--run.name", "fresh", "--ckpt_path", str(head_trained), "--finetune.lr", "0.1",
                        "--run.test_after_fit", "false"])
    assert [g["lr"] for g in fresh.trainer.optimizers[0].param_groups] == [0.003, 0.1]

    # Lightning skips on_train_epoch_start inside a resumed epoch: the backbone must be unfrozen anyway, and the
    # resume does not first say that the backbone is frozen until epoch 1.
    caplog.clear()
    HWCLI(args=[*args, "--run.name", "cut", "--ckpt_path", "last"])
    assert "FreezeBackbone: epoch 1: unfroze 10 modules (8,393,728 parameters) at lr 0.001" in caplog.text
    assert "backbone frozen" not in caplog.text
    assert (cut / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    final = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)

    groups = cli.trainer.optimizers[0].param_groups
    assert [g["lr"] for g in groups] == [0.003, 0.001]
    assert (cli.run_dir / "confusion_matrix.png").is_file()
    rows = list(csv.reader((cli.run_dir / "confusion_matrix.csv").open()))
    assert rows[0] == ["true \\ predicted", "non-face", "face"]
    assert sum(int(v) for r in rows[1:] for v in r[1:]) == 20  # the 20 test photos
    assert not (workdir / "cache").exists()  # the backbone trained: nothing cached
    rows = list(csv.DictReader((cli.run_dir / "metrics.csv").open()))
    assert any(r.get("test/acc") for r in rows)


@pytest.mark.slow
def test_the_default_fine_tuning_lr_written_out_resumes_and_a_run_unfrozen_at_epoch_0_has_no_earlier_checkpoint(workdir, capsys, caplog):
    """A run fine-tuned at the default lr (none given: the head's 0.003 / 10) resumed with `--finetune.lr 0.0003`
    was refused as "None -> 0.0003", though that is the lr it trained at. Another lr is refused, saying what
    None was, and without the advice to start from a checkpoint of before the unfreezing: unfrozen at epoch 0,
    the run has none."""
    from conftest import tiny_run_args
    from reliability_helpers import error_of, output_of

    args = tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32",
        "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--run.test_after_fit", "false",
        "--finetune.unfreeze_at_epoch", "0", "--finetune.lr", "null", "--run.name", "r",
    )
    output_of(*args)
    run = workdir / "runs" / "transfer_demo" / "r"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, line = error_of([*args, "--trainer.max_epochs", "2", "--ckpt_path", "last", "--finetune.lr", "0.1"], capsys)
    assert code == 2
    assert line == (
        f"error: cannot resume {run} with other settings than its checkpoint restores (finetune.init_args.lr None "
        "(the head's lr / 10: 0.0003) -> 0.1): its optimizer and random states would keep the run's, so config.yaml "
        "would name settings it never trained with; resume without changing them, or train a new run (another --run.name)"
    )
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    caplog.clear()
    output_of(*args, "--trainer.max_epochs", "2", "--ckpt_path", "last", "--finetune.lr", "0.0003")
    assert "FreezeBackbone: epoch 1: unfroze 10 modules (8,393,728 parameters) at lr 0.0003" in caplog.text
    assert yaml.safe_load((run / "config.yaml").read_text())["finetune"]["init_args"]["lr"] == 0.0003
    assert [row["epoch"] for row in csv.DictReader((run / "metrics.csv").open()) if row.get("val/loss")] == ["0", "1"]


@pytest.mark.slow
def test_a_checkpoint_whose_optimizer_has_other_groups_is_one_line_and_leaves_no_run(workdir, monkeypatch, capsys):
    """A head trained without FreezeBackbone, fine-tuned from its checkpoint with it (and the reverse): torch refused
    the optimizer state in the first step with a ValueError traceback, as FreezeBackbone leaves the frozen weights out."""
    import re

    from reliability_helpers import error_of

    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    demo = (REPO / "configs" / "transfer_demo.yaml").read_text()
    (workdir / "nofreeze.yaml").write_text(re.sub(r"\nfinetune:\n(?:  .*\n|  #.*\n)+", "\n", demo))
    tiny = ["--trainer.max_epochs", "1", "--data.init_args.image_size", "32", "--trainer.limit_train_batches", "2",
            "--run.test_after_fit", "false", *quiet(workdir)]
    runs = workdir / "runs"
    for trained, other in (("nofreeze.yaml", REPO / "configs" / "transfer_demo.yaml"), (REPO / "configs" / "transfer_demo.yaml", "nofreeze.yaml")):
        cli = HWCLI(args=["fit", "--config", str(trained), *tiny, "--run.name", "head"])
        last = cli.run_dir / "checkpoints" / "last.ckpt"
        code, line = error_of(["fit", "--config", str(other), *tiny, "--trainer.max_epochs", "2", "--run.name", "go-on",
                               "--ckpt_path", str(last)], capsys)
        assert code == 2
        assert line == (
            f"error: checkpoint {last} holds an optimizer state of other parameter groups than this run's optimizer "
            "(a FreezeBackbone in one of the two runs only, or another optimizer set-up), so training cannot go on "
            f"from it; run with --config {cli.run_dir / 'config.yaml'}, or train without --ckpt_path"
        )
        assert not list(runs.glob("*/go-on"))


@pytest.mark.slow
def test_transfer_demo_with_a_frozen_backbone_uses_the_cache(workdir, monkeypatch):
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    args = ["fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--trainer.max_epochs", "2",
            "--finetune.unfreeze_at_epoch", "null", "--finetune.last_blocks", "null",
            "--data.init_args.image_size", "32", *quiet(workdir)]
    first = HWCLI(args=args)
    assert cache_of(first).events == {"train": "computed", "val": "computed", "test": "computed"}
    assert len(list((workdir / "cache" / "features").glob("resnet18-*.pt"))) == 3
    second = HWCLI(args=args)
    assert cache_of(second).events == {"train": "hit", "val": "hit", "test": "hit"}
    assert len(list((workdir / "cache" / "features").glob("resnet18-*.pt"))) == 3


def cache_of(cli: HWCLI) -> FeatureCache:
    return next(c for c in cli.trainer.callbacks if isinstance(c, FeatureCache))


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_study_variants_are_valid_overrides(study, indoor_outdoor, workdir, capsys, monkeypatch):
    from lightning_hw.studies.grid import fit_command, load_study

    monkeypatch.chdir(REPO)  # the study files name their configs from the repository root
    loaded = load_study(study, root=str(workdir / "runs"))
    assert loaded.variants
    for variant in loaded.variants:
        name = variant.name
        command = fit_command(loaded, variant, ["--data.init_args.root", str(indoor_outdoor)])
        args = command[command.index("fit"):] + ["--run.wandb", "disabled", "--print_config"]
        with pytest.raises(SystemExit) as exit_info:
            HWCLI(args=args)
        assert exit_info.value.code == 0, name
        printed = yaml.safe_load(capsys.readouterr().out)
        freezer = printed["finetune"]
        assert freezer["class_path"].endswith("FreezeBackbone"), name
        if "finetune" in study.stem:
            assert freezer["init_args"]["unfreeze_at_epoch"] == 20, name
            key, value = variant.args[0], variant.args[1]  # e.g. --finetune.last_layers 10
            assert str(freezer["init_args"][key.split(".")[-1]]) in (value, str(float(value))), name


@pytest.mark.parametrize("config", ["transfer_demo", "resnet152", "densenet201"])
@pytest.mark.parametrize("presets", [["gpu"], ["ddp"], ["compile"], ["gpu", "compile"], ["compile", "gpu"]])
def test_presets_stack_without_moving_the_fine_tuning_overrides(config, presets, workdir, capsys):
    """The README's E5 commands with presets after them: --finetune.X still sets the schedule."""
    stacked = [a for p in presets for a in ("--config", str(REPO / "configs" / "trainer" / f"{p}.yaml"))]
    args = ["fit", "--config", str(REPO / "configs" / f"{config}.yaml"), *stacked,
            "--finetune.unfreeze_at_epoch", "0", "--finetune.last_blocks", "3", "--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        HWCLI(args=args)
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["finetune"]["init_args"]["unfreeze_at_epoch"] == 0
    assert printed["finetune"]["init_args"]["last_blocks"] == 3
    alone = yaml.safe_load((REPO / "configs" / f"{config}.yaml").read_text())
    names = [c["class_path"].rsplit(".", 1)[-1] for c in printed["trainer"]["callbacks"]]
    # The experiment's callbacks keep their settings; the presets' follow them.
    assert names[: len(alone["trainer"]["callbacks"])] == [
        c["class_path"].rsplit(".", 1)[-1] for c in alone["trainer"]["callbacks"]
    ]
    assert "FreezeBackbone" not in names


def _printed(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        HWCLI(args=[*args, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("presets", [["gpu"], ["compile"], ["gpu", "compile"]])
def test_presets_stack_in_any_order_with_the_fine_tuning_overlay(presets, workdir, capsys):
    """Presets given before e5_finetune.yaml (or before the network config) keep their callbacks.

    e5_finetune.yaml replaces the network config's callbacks (no FeatureCache while the backbone
    trains); the callbacks and plugins a preset appends must survive that, whatever the order.
    """
    stacked = [a for p in presets for a in ("--config", str(REPO / "configs" / "trainer" / f"{p}.yaml"))]
    network = ["--config", str(REPO / "configs" / "densenet201.yaml")]
    overlay = ["--config", str(REPO / "configs" / "e5_finetune.yaml")]
    overrides = ["--finetune.from_layer", "160"]
    orders = {
        "documented": [*network, *overlay, *stacked],
        "presets in the middle": [*network, *stacked, *overlay],
        "presets first": [*stacked, *network, *overlay],
    }
    printed = {name: _printed(["fit", *files, *overrides], capsys) for name, files in orders.items()}
    expected = printed["documented"]["trainer"]
    names = [c["class_path"].rsplit(".", 1)[-1] for c in expected["callbacks"]]
    assert "FeatureCache" not in names and "EarlyStoppingFrom" in names
    assert {"gpu": "ChannelsLast", "compile": "CompileNet"}[presets[-1]] in names
    for name, config in printed.items():
        assert config["trainer"]["callbacks"] == expected["callbacks"], name
        assert config["trainer"]["plugins"] == expected["plugins"], name
        assert config["finetune"]["init_args"]["from_layer"] == 160, name
        assert config["trainer"]["max_epochs"] == 80, name


def test_a_preset_given_first_keeps_yaml_values_json_cannot_say(workdir, capsys):
    """A re-appended item keeps what its YAML says: ``.inf`` (not JSON) and an unquoted date (a string to jsonargparse)."""
    preset = workdir / "preset.yaml"
    preset.write_text(
        "trainer:\n  callbacks+:\n"
        "    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
        "      init_args: {monitor: val/loss, divergence_threshold: .inf}\n"
        "    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        "      init_args: {dirpath: 2026-12-06}\n"
    )
    quickstart = str(REPO / "configs" / "quickstart.yaml")
    orders = {"preset last": [quickstart, str(preset)], "preset first": [str(preset), quickstart]}
    printed = {
        name: _printed(["fit", *(a for f in files for a in ("--config", f))], capsys)["trainer"]["callbacks"]
        for name, files in orders.items()
    }
    assert printed["preset first"] == printed["preset last"]
    stopping, checkpoint = printed["preset first"][-2:]
    assert stopping["init_args"]["divergence_threshold"] == float("inf")
    assert checkpoint["init_args"]["dirpath"] == "2026-12-06"


def test_only_lists_a_later_file_replaces_get_the_appended_items_again(tmp_path):
    from lightning_hw.cli.stacking import keep_appended_items

    preset = tmp_path / "preset.yaml"
    preset.write_text("trainer:\n  callbacks+:\n    - ModelCheckpoint\n    - {class_path: Timer, init_args: {interval: step}}\n")
    replacing = tmp_path / "replacing.yaml"
    replacing.write_text("trainer:\n  callbacks:\n    - EarlyStopping\n")
    other = tmp_path / "other.yaml"
    other.write_text("trainer:\n  max_epochs: 3\n")
    args = ["--config", str(preset), f"--config={other}", "--trainer.max_epochs", "2"]
    assert keep_appended_items(args) == args  # nothing replaced: nothing added
    assert keep_appended_items(["--config", str(preset), f"--config={replacing}", "--x", "1"]) == [
        "--config", str(preset), f"--config={replacing}",
        "--trainer.callbacks+", "ModelCheckpoint",
        "--trainer.callbacks+", "{class_path: Timer, init_args: {interval: step}}",
        "--x", "1",
    ]
    # a replacing list that already holds the class (a run's saved config) does not get it twice
    saved = tmp_path / "saved.yaml"
    saved.write_text("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n")
    assert keep_appended_items(["--config", str(preset), "--config", str(saved)]) == [
        "--config", str(preset), "--config", str(saved),
        "--trainer.callbacks+", "{class_path: Timer, init_args: {interval: step}}",
    ]
    # a list replaced before the preset appends is left alone
    assert keep_appended_items(["--config", str(replacing), "--config", str(preset)]) == [
        "--config", str(replacing), "--config", str(preset)
    ]


def test_a_schedule_given_twice_is_refused(workdir, capsys):
    from lightning_hw.cli import main

    args = ["fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), *quiet(workdir),
            "--trainer.callbacks+=lightning_hw.callbacks.finetuning.FreezeBackbone", "--trainer.fast_dev_run", "true"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code != 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: the fine-tuning schedule is given twice: in finetune: and as a FreezeBackbone in trainer.callbacks; keep one"
    )


def test_a_list_set_with_a_dotted_key_keeps_what_a_preset_appended(workdir, capsys):
    """``trainer.callbacks:`` at the top of a file replaces the list as ``trainer: {callbacks: ...}`` does."""
    flat = workdir / "flat.yaml"
    flat.write_text("trainer.callbacks:\n  - class_path: lightning_hw.callbacks.plots.MetricCurves\n")
    presets = ["--config", str(REPO / "configs" / "trainer" / "compile.yaml")]
    experiment = ["--config", str(REPO / "configs" / "quickstart.yaml"), "--config", str(flat)]
    for files in ([*presets, *experiment], [*experiment, *presets]):
        names = [c["class_path"].rsplit(".", 1)[-1] for c in _printed(["fit", *files], capsys)["trainer"]["callbacks"]]
        assert names == ["MetricCurves", "CompileNet"], files


NO_CACHE = """
trainer:
  callbacks:
    - class_path: lightning_hw.callbacks.feature_cache.FeatureCache
      init_args:
        enabled: false
"""


@pytest.fixture
def cached_demo_run(workdir, monkeypatch):
    """A transfer demo run whose backbone stayed frozen, so FeatureCache trained its head."""
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    cli = HWCLI(args=["fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--trainer.max_epochs", "1",
                      "--data.init_args.image_size", "32", "--run.name", "r1", *quiet(workdir)])
    assert cache_of(cli).events["test"] == "computed"
    return cli.run_dir


def _predictions(run_dir, name="predictions.csv"):
    path = sorted((run_dir / "eval").glob(f"predict-*/{name}"))[-1]
    return {row["id"]: row for row in csv.DictReader(path.open())}


@pytest.mark.slow
def test_predict_after_a_cached_run_names_each_row_after_its_own_sample(cached_demo_run, workdir):
    from lightning_hw.cli import main

    ckpt = str(cached_demo_run / "checkpoints" / "last.ckpt")
    config = str(cached_demo_run / "config.yaml")
    (workdir / "no_cache.yaml").write_text(NO_CACHE)
    main(["predict", "--ckpt_path", ckpt, "--config", config, "--config", str(workdir / "no_cache.yaml")])
    on_images = _predictions(cached_demo_run)
    main(["predict", "--ckpt_path", ckpt])  # the run's config: FeatureCache in its callbacks
    rows = _predictions(cached_demo_run)
    assert len(rows) == len(on_images) == 20
    for sample_id, row in rows.items():  # the same sample under the same id: its label and probabilities
        assert row["target"] == on_images[sample_id]["target"], sample_id
        assert float(row["prob_face"]) == pytest.approx(float(on_images[sample_id]["prob_face"]), abs=1e-5)


@pytest.mark.slow
def test_predict_from_image_files_after_a_cached_run(cached_demo_run, workdir):
    from PIL import Image
    from skimage.data import lfw_subset

    from lightning_hw.cli import main

    photos = workdir / "photos"
    photos.mkdir()
    for i, crop in enumerate(lfw_subset()[[0, 1, 150]]):
        Image.fromarray((crop * 255).round().astype("uint8")).save(photos / f"photo{i}.png")
    main(["predict", "--ckpt_path", str(cached_demo_run / "checkpoints" / "last.ckpt"), "--predict_from", str(photos)])
    rows = _predictions(cached_demo_run, "predictions-photos.csv")
    assert sorted(rows) == ["photo0.png", "photo1.png", "photo2.png"]


@pytest.mark.slow
def test_a_damaged_cache_file_is_computed_again(workdir, monkeypatch):
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    args = ["fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--trainer.max_epochs", "1",
            "--data.init_args.image_size", "32", *quiet(workdir)]
    first = HWCLI(args=args)
    [train] = (workdir / "cache" / "features").glob("resnet18-train-*.pt")
    stored = torch.load(train, weights_only=True)
    whole = train.read_bytes()
    train.write_bytes(whole[: len(whole) // 2])  # a copy cut short, a full disk...
    second = HWCLI(args=args)
    assert cache_of(second).events == {"train": "computed", "val": "hit", "test": "hit"}
    again = torch.load(train, weights_only=True)  # written again, whole
    assert torch.equal(again["features"], stored["features"]) and torch.equal(again["labels"], stored["labels"])
    test_acc = [r["test/acc"] for cli in (first, second) for r in csv.DictReader((cli.run_dir / "metrics.csv").open()) if r.get("test/acc")]
    assert test_acc[0] == test_acc[1]


@pytest.mark.slow
def test_max_epochs_below_the_unfreeze_epoch_is_said(workdir, monkeypatch, caplog):
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    said = ("unfreeze_at_epoch 20 is not below max_epochs 1, so the backbone stays frozen for the whole run; to fine-tune "
            "it, raise --trainer.max_epochs above 20; to train it frozen on purpose, without this warning: "
            "--finetune.unfreeze_at_epoch null --finetune.last_blocks null$")  # transfer_demo.yaml's last_blocks: 2
    with caplog.at_level("INFO"), pytest.warns(UserWarning, match=said):
        HWCLI(args=["fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--config",
                    str(REPO / "configs" / "e5_finetune.yaml"), "--trainer.max_epochs", "1",
                    "--data.init_args.image_size", "32", *quiet(workdir)])
    assert "backbone frozen for the whole run" in caplog.text and "until epoch 20" not in caplog.text


def _readme_frozen_demo_command() -> list[str]:
    """The README's command that trains the transfer demo frozen throughout, as arguments after ``python -m lightning_hw``."""
    readme = (REPO / "README.md").read_text()
    [line] = [l for l in readme.splitlines() if "transfer_demo.yaml" in l and "# frozen throughout" in l]
    command = line.split("#", 1)[0].split()
    return command[command.index("lightning_hw") + 1:]


@pytest.mark.slow
def test_the_readme_frozen_demo_trains_frozen_without_contrary_advice(workdir, monkeypatch, caplog, recwarn):
    """The README's frozen run (``--trainer.max_epochs 8``) warned "raise --trainer.max_epochs": the opposite
    of the frozen run asked for. Its command now says frozen on purpose, and gets no warning."""
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    command = [a.replace("configs/", f"{REPO}/configs/") for a in _readme_frozen_demo_command()]
    with caplog.at_level("INFO"):
        HWCLI(args=[*command, "--trainer.max_epochs", "1", "--data.init_args.image_size", "32",
                    "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--run.test_after_fit", "false",
                    *quiet(workdir)])
    assert "FreezeBackbone: backbone frozen for the whole run" in caplog.text
    assert [str(w.message) for w in recwarn if "FreezeBackbone" in str(w.message)] == []


def test_a_frozen_run_from_a_schedule_with_last_blocks_is_refused_with_the_whole_fix(capsys):
    """``--finetune.unfreeze_at_epoch null`` on the demo was refused without naming ``--finetune.last_blocks null``."""
    from reliability_helpers import error_of

    code, line = error_of(["fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"),
                           "--finetune.unfreeze_at_epoch", "null", "--run.wandb", "disabled"], capsys)
    assert code == 2, line
    assert line.endswith("to keep the backbone frozen for the whole run, leave last_blocks out too (--finetune.last_blocks null)"), line


def test_a_from_layer_past_the_backbone_is_refused_before_a_run_directory_is_named(workdir, capsys):
    """``--finetune.from_layer`` past the backbone's end printed ``Run directory: runs/...`` before its refusal,
    though the refusal removed that directory: the line named a run that does not exist."""
    from lightning_hw.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--finetune.last_blocks", "null",
              "--finetune.from_layer", "60", "--data.init_args.image_size", "32", *quiet(workdir)])
    printed = capsys.readouterr()
    assert exit_info.value.code == 2
    assert printed.err.strip().splitlines()[-1] == (
        "error: FreezeBackbone: from_layer 60 is outside the backbone's 60 layers; give one from 0 to 59"
    )
    assert "Run directory" not in printed.out + printed.err
    assert not (workdir / "runs").exists() or list((workdir / "runs").rglob("*")) == []


@pytest.mark.parametrize("form", ["separate", "inline"])
def test_an_option_given_to_a_presets_callback_survives_a_later_experiment_config(form, workdir, capsys):
    """``--config compile.yaml --trainer.callbacks.init_args.mode X --config quickstart.yaml`` compiled with mode None.

    The later file replaced the callbacks; CompileNet was appended again from compile.yaml as written,
    without the option given to it, which was dropped without a word.
    """
    option = ["--trainer.callbacks.init_args.mode", "max-autotune-no-cudagraphs"]
    option = option if form == "separate" else ["=".join(option)]
    compile_preset = ["--config", str(REPO / "configs" / "trainer" / "compile.yaml")]
    quickstart = ["--config", str(REPO / "configs" / "quickstart.yaml")]
    orders = {"preset first": [*compile_preset, *option, *quickstart], "preset last": [*quickstart, *compile_preset, *option]}
    for order, args in orders.items():
        callbacks = _printed(["fit", *args], capsys)["trainer"]["callbacks"]
        assert [c["class_path"].rsplit(".", 1)[-1] for c in callbacks] == ["ClassificationInterpretation", "CompileNet"], order
        assert callbacks[-1]["init_args"]["mode"] == "max-autotune-no-cudagraphs", order


def test_a_runs_config_and_wandb_say_which_preprocessing_came_from_the_backbone(workdir, capsys):
    """config.yaml showed `interpolation: bilinear` and `mean: null` (the values as given, which a rerun links
    again) while the run resized bicubic and normalised with ImageNet's mean/std: a user writing their own
    preprocessing from it lost accuracy. W&B's config showed the same."""
    import wandb_files
    from conftest import tiny_run_args
    from reliability_helpers import output_of

    output_of(*tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32",
        "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--run.test_after_fit", "false",
        "--run.wandb", "offline", "--run.name", "r",
    ))
    run = workdir / "runs" / "transfer_demo" / "r"
    text = (run / "config.yaml").read_text()
    assert text.split("\nseed_everything:")[0].endswith(
        "\n# When this config runs, the backbone's timm data config gives these data settings (below: as given):\n"
        "#   data.init_args.mean: [0.485, 0.456, 0.406]\n"
        "#   data.init_args.std: [0.229, 0.224, 0.225]\n"
        "#   data.init_args.interpolation: bicubic"
    )
    given = yaml.safe_load(text)["data"]["init_args"]
    assert (given["mean"], given["std"], given["interpolation"]) == (None, None, "bilinear")
    (wandb_file,) = wandb_files.run_files(run)
    wandb_files.wait_for_exit(wandb_file)
    used = wandb_files.config(wandb_file)["data"]["init_args"]
    assert (used["mean"], used["std"], used["interpolation"]) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "bicubic")


def test_a_run_recorded_without_the_preprocessing_note_resumes_without_a_copy_of_its_config(workdir, monkeypatch, capsys):
    """Runs recorded before the note: a resume with the same settings kept their config.yaml as config-until-<time>.yaml,
    which says the settings changed."""
    from lightning_hw.callbacks.guards import NonFiniteLossGuard
    from lightning_hw.cli import main
    from conftest import tiny_run_args
    from reliability_helpers import output_of

    args = tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32",
        "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--run.test_after_fit", "false",
        "--trainer.max_epochs", "2", "--run.name", "r",
    )
    real = NonFiniteLossGuard.on_before_backward

    def interrupt_in_epoch_1(self, trainer, *rest):  # Ctrl-C in a notebook, from a callback the config does not name
        if trainer.global_step == 1:
            raise KeyboardInterrupt
        return real(self, trainer, *rest)

    monkeypatch.setattr(NonFiniteLossGuard, "on_before_backward", interrupt_in_epoch_1)
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 130
    monkeypatch.undo()
    config = workdir / "runs" / "transfer_demo" / "r" / "config.yaml"
    recorded = "".join(line for line in config.read_text().splitlines(keepends=True) if not line.startswith("#   data."))
    config.write_text(recorded.replace("# When this config runs, the backbone's timm data config gives these data settings (below: as given):\n", ""))
    output_of(*args, "--ckpt_path", "last")
    assert json.loads((config.parent / "status.json").read_text())["status"] == "finished"
    assert not list(config.parent.glob("config-until-*"))
    assert "#   data.init_args.interpolation: bicubic" in config.read_text()


def test_a_fine_tuning_fit_gives_back_the_warning_filter_it_set(workdir, monkeypatch):
    """FreezeBackbone hid Lightning's "module(s) in eval mode" warning with a filter set as it was built, which stayed
    for the rest of a notebook's session: a later fit of the user's own, with a module left in eval mode by mistake,
    was never warned."""
    import warnings

    from conftest import tiny_run_args
    from reliability_helpers import output_of

    def eval_mode_filters() -> list:
        return [f for f in warnings.filters if f[1] is not None and "eval mode" in f[1].pattern]

    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    args = tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32",
        "--finetune.unfreeze_at_epoch", "null", "--finetune.last_blocks", "null", "--run.test_after_fit", "false",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output_of(*args)
        left = eval_mode_filters()
    assert not [w for w in caught if "eval mode at the start of training" in str(w.message)]  # still hidden during the fit
    assert left == []
