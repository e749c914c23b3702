"""Bad input: one clear ``error:`` line, a non-zero exit, no traceback (one test per kind).

Unknown task and datamodule names are covered in ``test_cli.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_hw.cli import main
from reliability_helpers import error_of, output_of
from lightning_hw.cli import warm_start

HELPERS_DIR = str(Path(__file__).parent)
QUICKSTART_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def write_config(workdir: Path, tiny_args, change) -> list[str]:
    """The tiny quickstart args with its config file replaced by a changed copy."""
    args = tiny_args("fit")
    config = yaml.safe_load(open(args[2]))
    change(config)
    path = workdir / "changed.yaml"
    path.write_text(yaml.safe_dump(config))
    args[2] = str(path)
    return args


# -- arguments and config files ---------------------------------------------------------------


@pytest.mark.parametrize(("project", "why"), [("me/e1", "it has /"), ("", "it is empty"), ("e1:bn", "it has :")])
def test_a_project_name_wandb_refuses_stops_a_new_run_before_it_trains(tiny_args, workdir, capsys, project, why):
    """W&B checked the name only as its run started: the run trained on with the CSV log alone
    ('W&B could not start (UsageError: Invalid project name ...)'), its W&B record lost to a typo."""
    code, line = error_of(tiny_args("fit", "--run.wandb", "offline", "--run.project", project), capsys)
    assert code == 2 and line == (
        f"error: run.project {project!r} cannot name a W&B project ({why}; W&B refuses / \\ # ? % : and names "
        "over 128 characters); give another --run.project"
    )
    assert not (workdir / "runs").exists()  # refused before anything was created
    from lightning_hw.runs.config import RunConfig

    RunConfig(project=project, wandb="disabled").check_wandb_project()  # without W&B the name is not used


def test_a_project_name_wandb_refuses_stops_a_new_run_from_a_checkpoint_too(tiny_args, workdir, capsys):
    """A new run started from another run's checkpoint (``--ckpt_path FILE --run.name NEW``), or by
    ``--ckpt_path last`` where there is nothing yet to continue, was not checked: it trained with the
    CSV log alone ('W&B could not start (UsageError: Invalid project name ...)')."""
    main(tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"))
    record = {p: p.read_bytes() for p in (workdir / "runs").rglob("*") if p.is_file()}
    ckpt = str(workdir / "runs" / "quickstart" / "r" / "checkpoints" / "last.ckpt")
    refused = (
        "error: run.project 'me/e1' cannot name a W&B project (it has /; W&B refuses / \\ # ? % : and names "
        "over 128 characters); give another --run.project"
    )
    bad = ("--run.wandb", "offline", "--run.project", "me/e1", "--trainer.max_epochs", "2")
    for extra in (("--ckpt_path", ckpt, "--run.name", "r2"), ("--ckpt_path", "last", "--run.name", "r3")):
        capsys.readouterr()
        code, line = error_of(tiny_args("fit", *bad, *extra), capsys)
        assert code == 2 and line == refused, (extra, line)
    assert {p: p.read_bytes() for p in (workdir / "runs").rglob("*") if p.is_file()} == record  # no new run


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--model.init_args.hed", "x"], "error: Classifier has no option 'hed'; did you mean head?"),
        (["--model.init_args.net.init_args.hiden", "[8]"], "error: MLP has no option 'hiden'; did you mean hidden?"),
        (
            ["--trainer.callbacks+=ModelChekpoint"],
            "error: --trainer.callbacks: no class named 'ModelChekpoint'; did you mean ModelCheckpoint",
        ),
        (["--trainer.max_epochs", "many"], "error: --trainer.max_epochs: expected int, got many"),
        (["--frobnicate", "1"], "error: unknown option --frobnicate"),
        (["--trainer.accelerator", "gpuu"], "error: invalid trainer settings: You selected an invalid accelerator"),
        (["--model.init_args.head", "binary_bce"], "error: head 'binary_bce' is for 2 classes, the data has 10 ('0', '1', '2', '3', '4', '5', ...); "
         "fix the data's labels, or use softmax_ce for more than 2 classes"),
    ],
    ids=["task-option", "net-option", "callback-class", "wrong-type", "unknown-option", "trainer-setting", "head-for-2-classes"],
)
def test_unknown_or_invalid_argument(tiny_args, capsys, extra, expected):
    code, line = error_of(tiny_args("fit", *extra), capsys)
    assert code == 2 and line.startswith(expected)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # E7's underfit run with --optimizer.init_args.nesterov false left out
        (["--optimizer.init_args.momentum", "0", "--optimizer.init_args.nesterov", "true"],
         "error: optimizer SGD refuses its settings: Nesterov momentum requires a momentum and zero dampening; "
         "change them under optimizer: (--optimizer.init_args.<name>)"),
        (["--model.init_args.lr", "-1"], "error: optimizer SGD refuses its settings: Invalid learning rate: -1.0; "),
        (["--lr_scheduler", "torch.optim.lr_scheduler.OneCycleLR", "--lr_scheduler.init_args.max_lr", "0.1"],
         "error: lr_scheduler OneCycleLR refuses its settings: You must define either total_steps OR (epochs AND "
         "steps_per_epoch); change them under lr_scheduler: (--lr_scheduler.init_args.<name>)"),
        # a position to resume at, given to a new optimizer: torch's KeyError('initial_lr') was a traceback
        (["--lr_scheduler", "torch.optim.lr_scheduler.StepLR", "--lr_scheduler.init_args.step_size", "1",
          "--lr_scheduler.init_args.last_epoch", "5"],
         "error: lr_scheduler StepLR refuses its settings: param 'initial_lr' is not specified in param_groups[0] "
         "when resuming scheduler with last_epoch >= 0; leave last_epoch under lr_scheduler: at -1 "
         "(--lr_scheduler.init_args.last_epoch -1): the optimizer is new, with no schedule to resume; "
         "--ckpt_path last resumes a run's scheduler where it stopped"),
    ],
    ids=["nesterov-without-momentum", "negative-lr", "scheduler", "scheduler-last-epoch"],
)
def test_optimizer_settings_torch_refuses_are_one_line(tiny_args, workdir, capsys, extra, expected):
    """torch checks them only when it builds the optimizer, with a ValueError: that was a traceback."""
    code, line = error_of(tiny_args("fit", *extra), capsys)
    assert code == 2 and line.startswith(expected)
    assert not (workdir / "runs").exists()


def test_an_lr_adam_refuses_is_one_line_without_an_optimizer_section(tiny_args, workdir, capsys):
    """The task's own Adam (no optimizer: section) is built inside fit: its ValueError was a traceback there."""

    def without_optimizer(config: dict) -> None:
        del config["optimizer"]

    args = write_config(workdir, tiny_args, without_optimizer)
    code, line = error_of([*args, "--model.init_args.lr", "-1"], capsys)
    assert (code, line) == (2, "error: optimizer Adam refuses its settings: Invalid learning rate: -1.0; change --model.init_args.lr")
    assert not (workdir / "runs").exists()


def test_unknown_key_in_config_file_suggests_the_option(tiny_args, workdir, capsys):
    args = write_config(workdir, tiny_args, lambda c: c["trainer"].update(max_epoch=3))
    code, line = error_of(args, capsys)
    assert code == 2
    assert line.startswith(
        f"error: unknown option 'trainer.max_epoch' (in {workdir / 'changed.yaml'}); did you mean trainer.max_epochs"
    )


def test_unknown_key_in_a_stacked_config_file_names_that_file(tiny_args, workdir, capsys):
    """With presets stacked, "(in a config file?)" left the user to search every file given for the typo."""
    (workdir / "mine.yaml").write_text("trainer:\n  max_epochs: 2\n")
    (workdir / "preset.yaml").write_text("trainer:\n  max_epoch: 3\n")
    args = [*tiny_args("fit"), "--config", "mine.yaml", "--config=preset.yaml"]
    code, line = error_of(args, capsys)
    assert code == 2
    assert line.startswith("error: unknown option 'trainer.max_epoch' (in preset.yaml); did you mean trainer.max_epochs"), line


def test_unknown_subcommand_suggests_the_closest(tiny_args, capsys):
    code, line = error_of(tiny_args("fitt"), capsys)
    assert code == 2 and line.startswith("error: unknown command 'fitt'; did you mean fit?")


def test_config_file_not_found(tiny_args, workdir, capsys):
    args = tiny_args("fit")
    args[2] = str(workdir / "nothere.yaml")
    code, line = error_of(args, capsys)
    assert (code, line) == (2, f"error: config file not found: {workdir / 'nothere.yaml'}")


def test_config_file_not_yaml(tiny_args, workdir, capsys):
    path = workdir / "broken.yaml"
    path.write_text("trainer:\n  max_epochs: 3\n model: [unclosed\n")
    args = tiny_args("fit")
    args[2] = str(path)
    code, line = error_of(args, capsys)
    assert code == 2 and line.startswith(f"error: config file {path} is not valid YAML: ") and "line 3" in line


@pytest.mark.parametrize("text", ["", "# only a comment\n"], ids=["empty", "comments"])
def test_config_file_empty(tiny_args, workdir, capsys, text):
    path = workdir / "empty.yaml"
    path.write_text(text)
    code, line = error_of([*tiny_args("fit"), "--config", str(path)], capsys)
    assert (code, line) == (2, (
        f"error: config file {path} is empty (or only comments); give a YAML mapping of sections "
        "(trainer:, model:, data:, ...), or leave the file out"
    ))


# -- data ---------------------------------------------------------------------------------------

POINTS = "x1,x2,label\n" + "".join(f"{i * 0.1},{-i * 0.2},{i % 2}\n" for i in range(40))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "error: points CSV not found: "),
        (POINTS[: POINTS.index("\n", 100) + 4], "is damaged: line 8 has 1 field, the header has 3; download it again"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not a text CSV file"),
        (POINTS.replace("label", "target"), "lacks the column(s) label (it has: x1, x2, target); is it the right"),
    ],
    ids=["missing", "truncated", "binary", "wrong-columns"],
)
def test_dataset_file_missing_corrupt_or_wrong_columns(tiny_args, workdir, capsys, content, expected):
    path = workdir / "points.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    args = tiny_args("fit", "--data", "reliability_helpers.CSVPoints", "--data.init_args.path", str(path))
    code, line = error_of(args, capsys)
    assert code == 1 and expected in line and str(path) in line


@pytest.mark.parametrize("batch_size", ["0", "-5"])
def test_batch_size_below_one(tiny_args, workdir, capsys, batch_size):
    """Was a ZeroDivisionError (0) and a ValueError from the loader's ``__len__`` (-5)."""
    code, line = error_of(tiny_args("fit", "--data.init_args.batch_size", batch_size), capsys)
    assert (code, line) == (2, f"error: batch_size must be at least 1, got {batch_size}")
    assert not (workdir / "runs").exists()


def _fer2013_with_pixel(root: Path, value: str) -> Path:
    """The FER2013 fixture CSV with pixel 6 of its third row (CSV line 4) replaced by ``value``."""
    from lightning_hw.data.fixtures import classification as fixtures

    path = fixtures.write_fer2013(root, per_usage=(7, 7, 7)) / "fer2013" / "fer2013.csv"
    lines = path.read_text().splitlines()
    emotion, pixels, usage = lines[3].split(",")
    values = pixels.split()
    values[5] = value
    lines[3] = ",".join([emotion, " ".join(values), usage])
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("value", "expected"),
    [("x", "pixel 6 is 'x', not a whole number 0-255"), ("300", "pixel 6 is 300, outside 0-255")],
    ids=["non-numeric", "above-255"],  # was a numpy traceback, and 300 silently read as 44
)
def test_fer2013_bad_pixel_names_file_and_line(tiny_args, workdir, capsys, value, expected):
    path = _fer2013_with_pixel(workdir / "data", value)
    args = tiny_args("fit", "--data", "FER2013", "--data.init_args.root", str(workdir / "data"),
                     "--data.init_args.download", "false")  # fmt: skip
    code, line = error_of(args, capsys)
    assert code == 1
    assert line == f"error: line 4 of {path}: {expected}; the file is damaged: download fer2013.csv again"
    assert not (workdir / "runs").exists()


def test_labels_out_of_range_stop_before_training(tiny_args, capsys):
    args = tiny_args("fit", "--data", "reliability_helpers.ShiftedMoons")
    code, line = error_of(args, capsys)
    assert code == 1
    assert line == (
        "error: the labels of the train split of ShiftedMoons run from 1 to 2, but the task has num_classes=2 "
        "(labels must be 0..1); fix the dataset's labels or its class names, or set --model.init_args.num_classes"
    )


def test_empty_split(tiny_args, capsys):
    code, line = error_of(tiny_args("fit", "--data.init_args.splits", "[1.0, 0.0, 0.0]"), capsys)
    assert code == 1
    assert line.startswith("error: the val split of Digits is empty; raise its fraction in --data.init_args.splits")


def test_unreadable_image_fails_by_default_and_is_counted_when_skipped(tiny_args, workdir, trained_run, capsys):
    from PIL import Image

    folder = workdir / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), color=40 * i).save(folder / f"img{i}.png")
    for i in range(4):
        (folder / f"broken{i}.png").write_bytes(b"<html>not an image</html>")
    ckpt = str(trained_run / "checkpoints" / "last.ckpt")
    args = tiny_args("predict", "--ckpt_path", ckpt, "--predict_from", str(folder))
    code, line = error_of(args, capsys)
    assert code == 1
    assert line.startswith(f"error: cannot read image {folder / 'broken0.png'}: cannot identify image file")

    from lightning_hw.data.io.image_files import UnreadableImagesWarning

    # One line: how many, which (the first three, then a count), why the first; it named the
    # first file alone, twice ("first: F: cannot read image F: ...; delete or replace the file").
    with pytest.warns(UnreadableImagesWarning) as warned:
        main(args + ["--on_unreadable", "skip"])
    (message,) = [str(w.message) for w in warned if w.category is UnreadableImagesWarning]
    named = ", ".join(str(folder / f"broken{i}.png") for i in range(3))
    assert message == f"skipped 4 of 7 image files, unreadable: {named} and 1 more (the first: cannot identify image file)"
    # An evaluation writes into its own directory, never among the run's training files.
    (written,) = (trained_run / "eval").glob("predict-*/predictions-images.csv")
    rows = written.read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["id", "img0.png", "img1.png", "img2.png"]


# -- checkpoints and training -----------------------------------------------------------------


def test_checkpoint_of_a_different_model(tiny_args, trained_run, capsys):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    args = tiny_args("test", "--ckpt_path", str(ckpt), "--model.init_args.net.init_args.hidden", "[16]")
    code, line = error_of(args, capsys)
    assert code == 2
    assert line.startswith(f"error: checkpoint {ckpt} does not fit the configured model: it holds a Classifier(")
    assert "with net MLP(hidden=[128]" in line
    assert "the config asks for net MLP(hidden=[16]" in line
    assert "net.layers.1.weight: [128, 64] in the checkpoint, [16, 64] in the model" in line
    assert line.endswith(f"run with --config {trained_run / 'config.yaml'}, leaving its net as it is")


def test_checkpoint_of_another_task_class_says_so_as_export_does(trained_run, workdir, capsys):
    """A classification checkpoint with the landmarks config: fit, test and predict said only that
    it "does not fit ... net SmallCNN", where export said it holds a Classifier, not a LandmarkRegressor."""
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    demo = QUICKSTART_CONFIG.parent / "landmarks_demo.yaml"
    record = sorted(p.relative_to(trained_run) for p in trained_run.rglob("*"))
    for subcommand in ("fit", "test", "predict"):
        args = [subcommand, "--config", str(demo), "--ckpt_path", str(ckpt), "--run.root", str(workdir / "runs")]
        code, line = error_of(args, capsys)
        assert code == 2
        assert line == (
            f"error: checkpoint {ckpt} holds a Classifier but the config configures a LandmarkRegressor; "
            f"run with --config {trained_run / 'config.yaml'}"
        )
    code, line = error_of(["export", "--ckpt_path", str(ckpt), "--config", str(demo), "--output", str(workdir / "x.onnx")], capsys)
    assert code == 2
    assert line == f"error: {ckpt} holds a Classifier but {demo} configures a LandmarkRegressor; pass --config with the config it was trained with"
    assert not (workdir / "runs").exists() and not (workdir / "x.onnx").exists()
    assert sorted(p.relative_to(trained_run) for p in trained_run.rglob("*")) == record


def test_checkpoint_beside_other_data_settings_names_them(workdir, capsys):
    """The run's own config with another ``num_words``: the net is the same and its input size
    comes from the data, so "run with --config <the config just given>" would be no help."""
    from conftest import REPO, tiny_run_args

    from lightning_hw.cli import HWCLI
    from lightning_hw.data.fixtures.classification import write_reuters

    root = write_reuters(workdir / "data", n=60)
    data = ["--data.init_args.root", str(root)]
    HWCLI(args=tiny_run_args("fit", REPO / "configs" / "reuters.yaml", workdir / "runs", *data, "--run.name", "r"))
    run = workdir / "runs" / "reuters" / "r"
    ckpt = run / "checkpoints" / "last.ckpt"
    args = ["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt), "--data.init_args.num_words", "500"]
    code, line = error_of(args, capsys)
    assert code == 2
    assert "the config asks for net" not in line  # it asks for the same net
    assert "(net.layers.1.weight: [64, 1000] in the checkpoint, [64, 500] in the model)" in line
    assert line.endswith("data settings differ from the run's (the data sizes the net): num_words 1000 -> 500; leave them as the run had them")
    assert not (run / "eval").exists()


def test_checkpoint_of_another_task_gives_no_advice_the_config_already_follows(workdir, capsys):
    """A 2-class binary_bce checkpoint with the quickstart (softmax_ce, 10 classes): the head is the
    checkpoint's, so "use softmax_ce" (which the config already says) would be wrong advice."""
    from conftest import REPO, tiny_run_args

    from lightning_hw.cli import HWCLI

    moons = REPO / "configs" / "moons_overfit.yaml"
    assert yaml.safe_load(moons.read_text())["model"]["init_args"]["head"] == "binary_bce"
    HWCLI(args=tiny_run_args("fit", moons, workdir / "moons", "--run.name", "m", "--run.test_after_fit", "false"))
    ckpt = workdir / "moons" / "moons_overfit" / "m" / "checkpoints" / "last.ckpt"
    code, line = error_of(tiny_run_args("test", QUICKSTART_CONFIG, workdir / "runs", "--ckpt_path", str(ckpt)), capsys)
    assert code == 2
    assert line.startswith(f"error: checkpoint {ckpt} holds a Classifier(num_classes=2, input_shape=(2,), head='binary_bce')")
    assert "which does not fit this config (head 'binary_bce' is for 2 classes, the data has 10 ('0', '1', '2', '3', '4', '5', ...)); " in line
    assert "softmax_ce" not in line
    assert line.endswith(f"run with --config {ckpt.parents[1] / 'config.yaml'}")
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    ("ckpt", "expected"),
    [
        ("last", "error: --ckpt_path last continues a named run in its own directory: add --run.name NAME"),
        ("nothere.ckpt", "error: checkpoint not found: nothere.ckpt"),
    ],
    ids=["last-without-run-name", "missing-file"],
)
def test_ckpt_path_that_cannot_work(tiny_args, capsys, ckpt, expected):
    code, line = error_of(tiny_args("fit", "--ckpt_path", ckpt), capsys)
    assert code == 2 and line.startswith(expected)


def test_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tiny_args, workdir, capsys):
    args = tiny_args(
        "fit", "--run.name", "nan", "--trainer.max_epochs", "3",
        "--trainer.callbacks+=reliability_helpers.PoisonAtStep", "--trainer.callbacks.step", "4",
    )
    code, line = error_of(args, capsys)
    last = workdir / "runs" / "quickstart" / "nan" / "checkpoints" / "last.ckpt"
    assert code == 1
    assert line.startswith("error: the training loss became nan at step 5 (epoch 1, batch 1); training stopped before")
    assert f"the last good checkpoint is {last};" in line
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 3  # the end of epoch 0, before the poisoned step
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert sorted(p.name for p in last.parent.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]


def test_a_nan_from_adams_eps_under_16_true_says_so(tiny_args, capsys):
    """Adam's eps 1e-8 is 0 in float16: the advice to lower the lr or check the data sent the user the wrong way."""
    float16 = ("--trainer.precision", "16-true", "--optimizer", "torch.optim.Adam")
    code, line = error_of(tiny_args("fit", "--run.name", "f16", *float16), capsys)
    assert code == 1 and line.startswith("error: the training loss became nan at step 2 ")
    assert line.endswith(
        "under --trainer.precision 16-true the optimizer's eps 1e-08 is below float16's smallest normal number (6.1e-05), "
        "so its updates divide by about zero: train with --trainer.precision 16-mixed (bf16-mixed on a CPU), or give "
        "the optimizer an eps of 1e-4 (--optimizer.init_args.eps 1e-4; where the config has no optimizer: section, "
        "--optimizer torch.optim.Adam before it)"
    )
    main(tiny_args("fit", "--run.name", "eps", *float16, "--optimizer.init_args.eps", "1e-4"))  # as advised: it trains


@pytest.mark.slow
def test_a_failure_inside_training_is_one_line_in_a_real_process(tiny_args, workdir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HELPERS_DIR, os.environ.get("PYTHONPATH", "")])}
    result = warm_start.run(
        [sys.executable, "-m", "lightning_hw", *tiny_args("fit", "--data", "reliability_helpers.ShiftedMoons")],
        capture_output=True, text=True, env=env, cwd=workdir,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: the labels of the train split of ShiftedMoons")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a CUDA GPU")
@pytest.mark.parametrize("presets", [["gpu"], ["ddp"], ["multinode"], ["gpu", "ddp"]])
def test_gpu_preset_on_a_machine_without_a_gpu(tiny_args, workdir, capsys, presets):
    """One line that says to drop the presets given (multinode.yaml was told to drop gpu.yaml and ddp.yaml);
    before it, no claim of training in 16-bit on cuda."""
    from conftest import REPO

    files = [str(REPO / "configs" / "trainer" / f"{preset}.yaml") for preset in presets]
    args = tiny_args("fit", *(arg for path in files for arg in ("--config", path)))
    with pytest.warns() as caught:  # collects every warning, so that none about GradScaler goes unseen
        code, line = error_of(args, capsys)
    assert code == 2 and line.endswith(
        f"this machine has no CUDA GPU (torch.cuda.is_available() is False): drop {', '.join(files)} "
        f"({'they ask' if len(files) > 1 else 'it asks'} for one: trainer.accelerator gpu) to train on the CPU"
    ), line
    assert not [w for w in caught if "GradScaler" in str(w.message)]
    assert not (workdir / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a CUDA GPU")
def test_a_gpu_asked_for_on_the_command_line_or_by_a_runs_config_is_told_apart(tiny_args, workdir, capsys):
    """Both were told to drop gpu.yaml and ddp.yaml, which neither command had given."""
    code, line = error_of(tiny_args("fit", "--trainer.accelerator", "gpu"), capsys)
    assert code == 2 and line.endswith(
        "this machine has no CUDA GPU (torch.cuda.is_available() is False): give --trainer.accelerator cpu to train on the CPU"
    ), line
    assert not (workdir / "runs").exists()
    output_of(*tiny_args("fit", "--run.name", "r", "--run.test_after_fit", "false"))
    run = workdir / "runs" / "quickstart" / "r"
    config = run / "config.yaml"  # as a run trained on a GPU machine records it
    config.write_text(config.read_text().replace("accelerator: cpu", "accelerator: gpu").replace("accelerator: auto", "accelerator: gpu"))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, line = error_of(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_epochs", "2"], capsys)
    assert code == 2 and line.endswith(
        f"this machine has no CUDA GPU (torch.cuda.is_available() is False), and run {run} trained on one "
        "(its config.yaml says trainer.accelerator gpu): continue it on a machine with a GPU"
    ), line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


RAISING_SOURCES = {
    # A plugin task's own check of its arguments.
    "checked": (
        ["--model", "user_code.CheckedTask"],
        "from lightning_hw.tasks.classification import Classifier\n\n\n"
        "class CheckedTask(Classifier):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        raise ValueError('CheckedTask takes at most 5 features, got 64')\n",
        "ValueError: CheckedTask takes at most 5 features, got 64", 6, "__init__",
    ),
    # Raised while handling another error: said by its own message (its advice), not the ImportError's.
    "while-handling": (
        ["--model", "user_code.HandlingTask"],
        "from lightning_hw.tasks.classification import Classifier\n\n\n"
        "class HandlingTask(Classifier):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        try:\n"
        "            import not_installed_anywhere  # noqa: F401\n"
        "        except ImportError:\n"
        "            raise ValueError('HandlingTask needs not_installed_anywhere: pip install it')\n",
        "ValueError: HandlingTask needs not_installed_anywhere: pip install it", 9, "__init__",
    ),
    # A bug in a size the task takes from the data: jsonargparse's traceback of the link that read it.
    "size-property": (
        ["--data", "user_code.BuggyData"],
        "from lightning_hw.data.datasets.digits import Digits\n\n\n"
        "class BuggyData(Digits):\n"
        "    @property\n"
        "    def class_names(self):\n"
        "        return self.no_such_attribute\n",
        "AttributeError: 'BuggyData' object has no attribute 'no_such_attribute'", 7, "class_names",
    ),
}


@pytest.mark.parametrize("case", list(RAISING_SOURCES))
def test_user_code_that_raises_while_the_config_is_built_is_one_line_naming_where(tiny_args, workdir, capsys, monkeypatch, case):
    """An exception from a plugin's ``__init__`` or size property came out as some 60 lines of
    jsonargparse's traceback ending in 'Does not validate against any of the Union subtypes'."""
    options, source, said, line_number, function = RAISING_SOURCES[case]
    (workdir / "user_code.py").write_text(source)
    monkeypatch.syspath_prepend(str(workdir))
    code, line = error_of(tiny_args("fit", *options), capsys)
    assert code == 1 and line == (
        f"error: {said} (raised at {workdir / 'user_code.py'}:{line_number}, in {function}, while the config's "
        "classes were built; --debug shows the traceback)"
    ), line
    assert not (workdir / "runs").exists()


def test_net_sizes_torch_refuses_are_said_at_our_line_that_built_the_layer(tiny_args, capsys):
    """torch's own line (torch/nn/modules/linear.py) would point into a library."""
    import lightning_hw

    code, line = error_of(tiny_args("fit", "--model.init_args.net.init_args.hidden", "[-5]"), capsys)
    assert code == 1 and line.startswith("error: RuntimeError: Trying to create tensor with negative dimension -5")
    assert f"raised at {Path(lightning_hw.__file__).parent / 'nets' / 'mlp.py'}:" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a CUDA GPU")
def test_gpu_preset_on_a_machine_without_a_gpu_starts_no_wandb_run(tiny_args, workdir, capsys):
    """W&B said "Run data is saved locally in runs/quickstart/<name>/wandb/..." and that the command to upload
    it would follow; then the trainer refused the preset and the run directory, with that folder, was removed."""
    from conftest import REPO

    args = tiny_args("fit", "--config", str(REPO / "configs" / "trainer" / "gpu.yaml"), "--run.wandb", "offline")
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert captured.err.strip().splitlines()[-1].startswith("error: invalid trainer settings: No supported gpu backend found!")
    assert "W&B" not in captured.out and "wandb" not in captured.out + captured.err
    assert not (workdir / "runs").exists()
