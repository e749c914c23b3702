"""ImageFolder on image folders written by the test: the label layouts, decoding, errors, and the files
that training and ``predict --predict_from`` read (hidden entries, suffixes, 16-bit images)."""

from __future__ import annotations

import csv
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from conftest import REPO, tiny_run_args
from lightning_hw.cli import main
from lightning_hw.data.fixtures.classification import write_image_folder
from lightning_hw.data.datasets.image_folder import ImageFolder, scan_folder
from lightning_hw.data.io.image_files import read_image
from lightning_hw.errors import ConfigError, DataError
from reliability_helpers import error_of

CATSDOGS = REPO / "configs" / "catsdogs_mlp.yaml"


@pytest.fixture
def prefix_folder(tmp_path):
    return write_image_folder(tmp_path / "catsdogs", classes=("cat", "dog"), per_class=10)


def test_prefix_labels_are_known_before_setup(prefix_folder):
    dm = ImageFolder(root=str(prefix_folder), labels="prefix", image_size=28, flatten=True)
    assert dm.class_names == ["cat", "dog"] and dm.num_classes == 2
    assert dm.input_shape == (3 * 28 * 28,)
    assert not dm.data  # nothing decoded yet
    names = {p.name.split(".")[0]: label for p, label in dm.samples}
    assert names == {"cat": 0, "dog": 1}


def test_images_are_decoded_once_resized_and_split(prefix_folder):
    dm = ImageFolder(root=str(prefix_folder), image_size=(28, 30), batch_size=4)
    dm.setup("fit")
    sizes = {name: x.shape[0] for name, (x, _) in dm.data.items()}
    assert sizes == {"train": 14, "val": 4, "test": 2}
    images, labels = dm.data["train"]
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 28, 30)
    # The fixture's dogs are brighter than its cats: decoding kept the content.
    means = images.float().mean(dim=(1, 2, 3))
    assert means[labels == 1].min() > means[labels == 0].max()
    # A split is the same for every instance (seeded), and no image is in two splits.
    again = ImageFolder(root=str(prefix_folder), image_size=(28, 30))
    again.setup("fit")
    assert torch.equal(again.data["val"][0], dm.data["val"][0])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 28, 30) and x.dtype == torch.uint8


def test_batches_become_scaled_normalised_flat_inputs(prefix_folder):
    dm = ImageFolder(root=str(prefix_folder), image_size=16, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], flatten=True)
    dm.setup("fit")
    raw, labels = next(iter(dm.val_dataloader()))
    x, y = dm.on_after_batch_transfer((raw, labels), 0)
    assert x.shape == (raw.shape[0], 3 * 16 * 16) and x.dtype == torch.float32
    torch.testing.assert_close(x, ((raw.float() / 255 - 0.5) / 0.25).flatten(1))
    assert torch.equal(y, labels)


def test_standardize_uses_training_statistics_per_channel(prefix_folder):
    dm = ImageFolder(root=str(prefix_folder), image_size=16, standardize=True)
    dm.setup("fit")
    x = dm.to_model_input(dm.data["train"][0])
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)


def test_folder_layout_with_chosen_classes_greyscale_and_centre_crop(tmp_path):
    root = write_image_folder(tmp_path / "io", classes=("indoor", "outdoor"), per_class=6, layout="folder")
    dm = ImageFolder(root=str(root), classes=["outdoor", "indoor"], channels=1, image_size=24, crop_pct=0.875)
    assert dm.class_names == ["outdoor", "indoor"]
    assert all((label == 0) == (p.parent.name == "outdoor") for p, label in dm.samples)
    dm.setup("fit")
    assert dm.data["train"][0].shape[1:] == (1, 24, 24)


def test_streaming_gives_the_same_images_as_the_in_memory_path(prefix_folder):
    kwargs = dict(root=str(prefix_folder), image_size=20, batch_size=3, num_workers=0)
    memory, stream = ImageFolder(**kwargs), ImageFolder(in_memory=False, **kwargs)
    memory.setup("fit")
    stream.setup("fit")
    streamed = torch.cat([x for x, _ in stream.val_dataloader()])
    assert torch.equal(streamed, memory.data["val"][0])


def test_streaming_trains_on_the_in_memory_batches(prefix_folder):
    """Same seed, same training batches, whether the folder is held in memory or streamed by workers."""
    kwargs = dict(root=str(prefix_folder), image_size=20, batch_size=3, shuffle_seed=5)
    memory, stream = ImageFolder(**kwargs), ImageFolder(in_memory=False, num_workers=2, **kwargs)
    memory.setup("fit")
    stream.setup("fit")
    for _ in range(2):
        for (held, held_labels), (streamed, streamed_labels) in zip(
            memory.train_dataloader(), stream.train_dataloader(), strict=True
        ):
            assert torch.equal(held, streamed) and torch.equal(held_labels, streamed_labels)


def test_a_streamed_fit_ends_its_decoding_workers_when_the_command_returns(prefix_folder, workdir):
    """The training loader's persistent workers outlived an in-process fit without a test after it
    (a notebook's ``HWCLI``, a test): Lightning ends a ``DataLoader``'s workers after fit, but not
    those of the loader wrapping it, so they lived on until it was garbage collected, each then
    waiting 5 s to join."""
    import multiprocessing

    from lightning_hw.cli import HWCLI

    HWCLI(args=tiny_run_args(
        "fit", REPO / "configs" / "catsdogs_online_aug.yaml", workdir / "runs",
        "--data.init_args.root", str(prefix_folder), "--data.init_args.in_memory", "false",
        "--data.init_args.num_workers", "2", "--trainer.max_epochs", "2", "--run.test_after_fit", "false",
    ))
    assert len(list((workdir / "runs" / "catsdogs_online_aug").glob("*/checkpoints/last.ckpt"))) == 1
    assert multiprocessing.active_children() == []


def test_per_image_transform_runs_at_decode_time(prefix_folder):
    plain = ImageFolder(root=str(prefix_folder), image_size=12)
    inverted = ImageFolder(root=str(prefix_folder), image_size=12, transform=v2.RandomInvert(p=1.0))
    plain.setup("fit")
    inverted.setup("fit")
    assert torch.equal(inverted.data["test"][0], 255 - plain.data["test"][0])
    resizing = ImageFolder(root=str(prefix_folder), image_size=12, transform=v2.Resize(8))
    with pytest.raises(ConfigError, match="must keep the size"):
        resizing.setup("fit")


def test_missing_folder_is_one_line_saying_where_to_put_images(tmp_path):
    with pytest.raises(DataError) as err:
        ImageFolder(root=str(tmp_path / "nowhere"))
    message = str(err.value)
    assert "\n" not in message
    assert f"image folder {tmp_path / 'nowhere'} not found: put the images there" in message


def test_unreadable_image_names_the_file(prefix_folder):
    (prefix_folder / "cat.99.jpg").write_bytes(b"this is not a JPEG")
    dm = ImageFolder(root=str(prefix_folder), image_size=16)
    with pytest.raises(DataError, match=r"cannot read image .*cat\.99\.jpg.*delete or replace the file"):
        dm.setup("fit")


def test_empty_folder_and_bad_settings_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFolder(root=str(tmp_path / "empty"))
    root = write_image_folder(tmp_path / "p", per_class=2)
    with pytest.raises(ConfigError, match="labels must be one of"):
        ImageFolder(root=str(root), labels="suffix")
    with pytest.raises(DataError, match="no sub-folder for class"):
        ImageFolder(root=str(write_image_folder(tmp_path / "f", per_class=2, layout="folder")), classes=["cow"])


def test_cli_reports_a_missing_folder_in_one_line(workdir, capsys):
    from lightning_hw.cli import main

    args = ["fit", "--model", "Classifier", "--model.init_args.net", "lightning_hw.nets.mlp.MLP",
            "--data", "ImageFolder", "--data.init_args.root", "photos", "--run.wandb", "disabled"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: image folder {workdir / 'photos'} not found: put the images there")
    assert not any("Traceback" in line for line in err)


@pytest.mark.slow
def test_a_folder_whose_files_changed_since_training_is_noticed(workdir, capsys):
    """Same fractions and seed, other files: another split. A resume would train on images the run
    validated or tested on, so it is refused (the run left as it was); a test is warned."""
    import shutil

    from conftest import REPO, tiny_run_args
    from lightning_hw.cli import main

    photos = write_image_folder(workdir / "photos", per_class=10, size=(20, 24))
    run = workdir / "runs" / "catsdogs_mlp" / "grow"

    def command(subcommand: str, *extra: str) -> list[str]:
        return tiny_run_args(subcommand, REPO / "configs" / "catsdogs_mlp.yaml", workdir / "runs",
                             "--data.init_args.root", str(photos), "--run.name", "grow", *extra)

    def exit_code(args: list[str]) -> int:
        try:
            main(args)
        except SystemExit as stop:
            return stop.code
        return 0

    assert exit_code(command("fit")) == 0
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for i in range(3):  # new photos, as a user adds more to a folder
        shutil.copy(photos / "cat.0.jpg", photos / f"cat.{100 + i}.jpg")
    capsys.readouterr()

    assert exit_code(command("fit", "--ckpt_path", "last", "--trainer.max_epochs", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the checkpoint was trained on another split of the data"), err[-3:]
    assert "the data held 20 samples in training, 23 here" in err[-1] and "restore the files" in err[-1]
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    with pytest.warns(UserWarning, match="20 samples in training, 23 here.*this test split may hold samples it was trained on"):
        assert exit_code(command("test", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))) == 0
    # The warning scrolls away; the evaluation's record keeps it beside its scores, and the report shows it.
    (evaluation,) = (run / "eval").iterdir()
    caveat = (evaluation / "caveats.txt").read_text()
    assert "20 samples in training, 23 here" in caveat and "this test split may hold samples" in caveat
    assert "caveats.txt" in capsys.readouterr().out.strip().splitlines()[-1]  # Evaluation saved in ... (..., caveats.txt, ...)
    from lightning_hw import reports

    assert reports.main([str(run), "--out", str(workdir / "report")]) == 0
    with open(workdir / "report" / "evaluations.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["evaluation"] == evaluation.name and "this test split may hold samples" in row["caveat"]
    assert "| caveat |" in (workdir / "report" / "report.md").read_text()

    # predict on other files uses no split of the folder: nothing to warn about
    new = write_image_folder(workdir / "new", per_class=2, size=(20, 24))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert exit_code(command("predict", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--predict_from", str(new))) == 0
    assert not [w for w in caught if "split" in str(w.message)]
    # predict without --predict_from predicts the test split, and says so (there is no "predict split")
    with pytest.warns(UserWarning, match="20 samples in training, 23 here.*this test split may hold samples it was trained on"):
        assert exit_code(command("predict", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))) == 0
    (predicted,) = [d for d in (run / "eval").iterdir() if (d / "predictions.csv").is_file()]
    assert "this test split may hold samples" in (predicted / "caveats.txt").read_text()

    # a checkpoint saved before the listing was recorded cannot tell: it says so
    old = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = [value for value in old.values() if isinstance(value, dict) and "split" in value]
    del state["split"]["samples"]
    torch.save(old, workdir / "old.ckpt")
    with pytest.warns(UserWarning, match="does not record which samples ImageFolder split"):
        # under a name of its own: a file from outside the run is not filed as the run's evaluation
        assert exit_code(command("test", "--ckpt_path", str(workdir / "old.ckpt"), "--run.name", "old")) == 0


# -- hidden entries, image suffixes, 16-bit files: training and predict read the same files alike --


def add_hidden_entries(folder: Path, photo: Path) -> None:
    """What Jupyter and macOS leave in a folder: none of it is a class or an image."""
    (folder / ".ipynb_checkpoints").mkdir()
    shutil.copy(photo, folder / ".ipynb_checkpoints" / f"{photo.stem}-checkpoint.jpg")
    (folder / f"._{photo.name}").write_bytes(b"\x00\x05\x16\x07AppleDouble metadata, not a JPEG")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def fit_on(root: Path, runs: Path, *extra: str) -> dict:
    """``fit`` (configs/catsdogs_mlp.yaml, a softmax head, 8x8 images) on ``root``; its last checkpoint's hyper-parameters."""
    main(tiny_run_args("fit", CATSDOGS, runs, "--data.init_args.root", str(root), "--data.init_args.image_size", "8",
                       "--model.init_args.head", "softmax_ce", *extra))
    (checkpoint,) = runs.glob("*/*/checkpoints/last.ckpt")
    return torch.load(checkpoint, weights_only=True)["hyper_parameters"] | {"checkpoint": checkpoint}


def predictions(checkpoint: Path, source: Path, capsys) -> list[dict[str, str]]:
    """``predict --predict_from source``: the rows of the CSV it wrote."""
    capsys.readouterr()
    main(["predict", "--ckpt_path", str(checkpoint), "--predict_from", str(source)])
    written = re.search(r"rows written to (\S+\.csv)", capsys.readouterr().out).group(1)
    with open(written, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def hidden_entries_run(tmp_path_factory):
    """A class-folder layout with a Jupyter checkpoint folder, AppleDouble files and a .DS_Store, fitted with labels auto."""
    base = tmp_path_factory.mktemp("hidden")
    root = write_image_folder(base / "photos", per_class=8, size=(20, 24), layout="folder")
    add_hidden_entries(root, root / "cat" / "cat.0.jpg")
    add_hidden_entries(root / "cat", root / "cat" / "cat.1.jpg")
    return root, fit_on(root, base / "runs", "--data.init_args.labels", "auto")


def test_hidden_folders_and_files_are_neither_classes_nor_samples(hidden_entries_run, capsys):
    root, trained = hidden_entries_run
    assert trained["class_names"] == ["cat", "dog"] and trained["num_classes"] == 2
    rows = predictions(trained["checkpoint"], root / "cat", capsys)
    assert sorted(row["id"] for row in rows) == [f"cat.{i}.jpg" for i in range(8)]
    for labels in ("folder", "prefix"):  # the other layouts, by the same rule
        flat = root / "cat" if labels == "prefix" else root
        samples, names = scan_folder(flat, labels)
        assert not any(part.startswith(".") for p, _ in samples for part in p.relative_to(flat).parts)
        assert names == (["cat"] if labels == "prefix" else ["cat", "dog"])


def test_predict_on_a_class_folder_layout_says_where_the_images_are(hidden_entries_run, capsys):
    root, trained = hidden_entries_run
    code, error = error_of(["predict", "--ckpt_path", str(trained["checkpoint"]), "--predict_from", str(root)], capsys)
    assert code == 1
    assert error == (
        f"error: predict input {root} holds no image files at its top level (--predict_from reads only that level); "
        f"its sub-folders cat/, dog/ hold 16: pass one of them (--predict_from {root / 'cat'}) "
        "or move the files up into one folder"
    )


def test_predict_on_a_folder_with_files_and_sub_folders_says_what_it_left_out(hidden_entries_run, tmp_path, capsys):
    import shutil

    from lightning_hw.data.io.image_files import UnreadSubfoldersWarning

    root, trained = hidden_entries_run
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "dog", mixed / "more dogs")
    for jpeg in sorted((root / "cat").glob("cat.[0-2].jpg")):
        shutil.copy(jpeg, mixed / jpeg.name)
    said = (
        f"predicting the 3 image file(s) at the top level of {mixed}; its sub-folders more dogs/ hold 8 more, "
        "which --predict_from does not read (pass each folder on its own)"
    )
    with pytest.warns(UnreadSubfoldersWarning, match=re.escape(said)):
        rows = predictions(trained["checkpoint"], mixed, capsys)
    assert sorted(row["id"] for row in rows) == ["cat.0.jpg", "cat.1.jpg", "cat.2.jpg"]


def test_predict_on_a_folder_names_the_files_it_leaves_out_as_not_images(hidden_entries_run, tmp_path, capsys):
    """A notes.txt or .heic photo beside the images was left out in silence: fewer rows than files, no word why."""
    from lightning_hw.data.io.image_files import NonImageFilesWarning

    root, trained = hidden_entries_run
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for jpeg in sorted((root / "cat").glob("cat.[0-2].jpg")):
        shutil.copy(jpeg, mixed / jpeg.name)
    for name in ("notes.txt", "photo.heic", "labels.csv", "summary.json"):
        (mixed / name).write_text("not an image")
    (mixed / ".DS_Store").write_bytes(b"\0")  # hidden, as in any listing: left out unmentioned
    said = (
        f"predicting the 3 image file(s) in {mixed}; left out 4 file(s) whose names do not end in "
        ".png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp, .ppm, .pgm: labels.csv, notes.txt, photo.heic ... (4 in all)"
    )
    with pytest.warns(NonImageFilesWarning, match=f"^{re.escape(said)}$"):
        rows = predictions(trained["checkpoint"], mixed, capsys)
    assert [row["id"] for row in rows] == ["cat.0.jpg", "cat.1.jpg", "cat.2.jpg"]  # one row per image, in order

    for jpeg in mixed.glob("*.jpg"):
        jpeg.unlink()
    code, error = error_of(["predict", "--ckpt_path", str(trained["checkpoint"]), "--predict_from", str(mixed)], capsys)
    assert (code, error) == (
        1,
        f"error: no image files (.png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp, .ppm, .pgm) in {mixed}; "
        "it holds 4 other file(s): labels.csv, notes.txt, photo.heic ... (4 in all)",
    )


def test_predict_on_one_image_file_gives_the_folders_prediction_for_it(hidden_entries_run, tmp_path, capsys):
    """``--predict_from photo.jpg`` was refused ("takes a folder of images or a .csv file")."""
    root, trained = hidden_entries_run
    in_folder = {row["id"]: row for row in predictions(trained["checkpoint"], root / "dog", capsys)}
    for name in ("dog.3.jpg", "dog.6.jpg"):
        (alone,) = predictions(trained["checkpoint"], root / "dog" / name, capsys)
        assert alone["id"] == name and alone["predicted"] == in_folder[name]["predicted"]
        for column in ("prob_cat", "prob_dog"):
            assert float(alone[column]) == pytest.approx(float(in_folder[name][column]), abs=1e-5)
    checkpoint = str(trained["checkpoint"])
    (tmp_path / "broken.jpg").write_text("<html>not an image</html>")
    code, error = error_of(["predict", "--ckpt_path", checkpoint, "--predict_from", str(tmp_path / "broken.jpg")], capsys)
    assert (code, error) == (
        1,
        f"error: cannot read image {tmp_path / 'broken.jpg'}: cannot identify image file; "
        "delete or replace the file (or add --on_unreadable skip)",
    )
    (tmp_path / "notes.txt").write_text("not an image")
    code, error = error_of(["predict", "--ckpt_path", checkpoint, "--predict_from", str(tmp_path / "notes.txt")], capsys)
    assert (code, error) == (
        2,
        "error: --predict_from takes a folder of images, an image file (.png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, "
        f".webp, .ppm, .pgm) or a .csv file, not {tmp_path / 'notes.txt'}",
    )


def split_predictions(checkpoint: Path, capsys, *extra: str) -> list[dict[str, str]]:
    """``predict`` on the test split (``extra``: options for the run's config): the rows of its CSV."""
    capsys.readouterr()
    main(["predict", "--ckpt_path", str(checkpoint), *extra])
    written = re.search(r"rows written to (\S+predictions\.csv)", capsys.readouterr().out).group(1)
    with open(written, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_split_predictions_are_named_after_their_files(hidden_entries_run, in_memory, capsys):
    """Test-split rows carry each image's path under the root: the same file predicted alone gives the same numbers."""
    root, trained = hidden_entries_run
    rows = split_predictions(trained["checkpoint"], capsys, "--data.init_args.in_memory", in_memory)
    assert rows and all((root / row["id"]).is_file() for row in rows)
    assert all(row["id"].split("/")[0] == row["target_class"] for row in rows)  # the class folder is the label
    by_file = {f"{folder}/{row['id']}": row for folder in ("cat", "dog") for row in predictions(trained["checkpoint"], root / folder, capsys)}
    for row in rows:
        for name in ("prob_cat", "prob_dog"):
            assert float(row[name]) == pytest.approx(float(by_file[row["id"]][name]), abs=1e-5), row["id"]


def test_gif_files_are_trained_on_and_predicted_alike(tmp_path, capsys):
    """torchvision's ImageFolder suffixes leave GIFs out; lightning-hw's training and predict both read them."""
    from PIL import Image

    root = write_image_folder(tmp_path / "photos", per_class=8, size=(20, 24))
    for jpeg in root.glob("dog.*.jpg"):  # the dogs become GIFs
        with Image.open(jpeg) as img:
            img.save(jpeg.with_suffix(".gif"))
        jpeg.unlink()
    trained = fit_on(root, tmp_path / "runs", "--data.init_args.labels", "prefix")
    assert trained["class_names"] == ["cat", "dog"]
    rows = predictions(trained["checkpoint"], root, capsys)
    assert sorted(row["id"] for row in rows) == sorted(p.name for p in root.iterdir())
    assert sum(row["id"].endswith(".gif") for row in rows) == 8


def test_16_bit_images_are_scaled_to_8_bits_on_every_path(tmp_path):
    """A 16-bit greyscale file of an 8-bit image x 257 decodes to that image, whatever reads it."""
    from PIL import Image

    rng = np.random.default_rng(0)
    eight, sixteen = tmp_path / "eight", tmp_path / "sixteen"
    eight.mkdir()
    sixteen.mkdir()
    for i in range(10):
        grey = rng.integers(0, 256, size=(12, 10), dtype=np.uint8)
        grey[0, :2] = (0, 255)
        name = f"{'cat' if i < 5 else 'dog'}.{i}"
        Image.fromarray(grey).save(eight / f"{name}.png")
        wide = Image.fromarray(grey.astype(np.uint16) * 257)
        assert wide.mode == "I;16"
        wide.save(sixteen / f"{name}.{'tif' if i % 3 == 0 else 'png'}")  # TIFF keeps I;16 too
    for path in sixteen.iterdir():
        expected = read_image(eight / f"{path.stem}.png", channels=1)
        assert torch.equal(read_image(path, channels=1), expected)
        assert torch.equal(read_image(path, channels=3), expected.expand(3, -1, -1))
    # value * 255 / 65535, rounded (not Pillow's clipping to 0-255)
    Image.fromarray(np.array([[0, 128, 129, 3 * 257 + 128, 65534, 65535]], dtype=np.uint16)).save(tmp_path / "levels.png")
    assert read_image(tmp_path / "levels.png", channels=1).flatten().tolist() == [0, 0, 1, 3, 255, 255]
    # A file of 32-bit integers (mode I) has no known range: read as 0-255, as before.
    Image.fromarray(np.array([[0, 100, 200, 255]], dtype=np.int32)).save(tmp_path / "int32.tif")
    assert read_image(tmp_path / "int32.tif", channels=1).flatten().tolist() == [0, 100, 200, 255]
    # Training (Pillow and the batched decoder, which hands files that are not JPEGs to Pillow) and predict.
    for decoder in ("pillow", "nvjpeg"):
        for channels in (1, 3):
            settings = dict(labels="prefix", image_size=(12, 10), channels=channels, decoder=decoder, num_workers=0)
            wide_dm, narrow_dm = ImageFolder(root=str(sixteen), **settings), ImageFolder(root=str(eight), **settings)
            wide_dm.setup("fit")
            narrow_dm.setup("fit")
            for split in ("train", "val", "test"):
                assert torch.equal(wide_dm.data[split][0], narrow_dm.data[split][0])
            wide_ids, wide_inputs = wide_dm.read_inputs(sixteen)
            narrow_ids, narrow_inputs = narrow_dm.read_inputs(eight)
            assert [Path(i).stem for i in wide_ids] == [Path(i).stem for i in narrow_ids]
            assert torch.equal(wide_inputs, narrow_inputs)


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_empty_split_says_the_same_held_in_memory_or_streamed(tmp_path, in_memory):
    """The streamed folder had its own shorter copy of the message (without the splits it had, or "add data")."""
    root = write_image_folder(tmp_path / "io", classes=("a", "b"), per_class=2, size=(20, 20), layout="folder")
    folder = ImageFolder(root=str(root), image_size=16, batch_size=2, in_memory=in_memory, splits=[0.9, 0.05, 0.05])
    with pytest.raises(DataError) as err:
        folder.setup("fit")
    assert str(err.value) == (
        "the val split of ImageFolder is empty; raise its fraction in --data.init_args.splits (now [0.9, 0.05, 0.05]) or add data"
    )


@pytest.mark.parametrize("layout", ["folder", "prefix"])
def test_cli_reports_an_empty_class_in_one_line_that_says_what_to_do(workdir, capsys, layout):
    from lightning_hw.cli import main

    photos = write_image_folder(workdir / "photos", per_class=3, size=(20, 24), layout=layout)
    classes = ["cat", "cow", "dog"] if layout == "prefix" else None  # a named class without files
    if layout == "folder":
        (photos / "cow").mkdir()  # a class folder still to be filled
    args = ["fit", "--model", "Classifier", "--model.init_args.net", "lightning_hw.nets.mlp.MLP",
            "--data", "ImageFolder", "--data.init_args.root", "photos", "--run.wandb", "disabled"]
    if classes:
        args += ["--data.init_args.classes", "[cat, cow, dog]"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: class(es) cow have no images in photos: add images (.png, .jpg")
    assert err[-1].endswith(", or train on the others with --data.init_args.classes '[cat, dog]'")
    assert not any("Traceback" in line for line in err) and not (workdir / "runs").exists()


def _folder_of_the_other_layout(workdir: Path, case: str) -> Path:
    """Photos of two classes, ``indoor`` and ``outdoor``, laid out as a user might have them for ``case``."""
    if case == "prefix files, labels folder":
        return write_image_folder(workdir / "photos", ("indoor", "outdoor"), per_class=3, size=(20, 24), layout="prefix")
    if case == "class folders, labels prefix":
        return write_image_folder(workdir / "photos", ("indoor", "outdoor"), per_class=3, size=(20, 24), layout="folder")
    # One folder too high: photos/all/<class>/ (read as the one class 'all') or photos/all/<class>.<n>.jpg.
    layout = "folder" if case == "class folders one level down, labels folder" else "prefix"
    write_image_folder(workdir / "photos" / "all", ("indoor", "outdoor"), per_class=3, size=(20, 24), layout=layout)
    return workdir / "photos"


@pytest.mark.parametrize(
    ("case", "labels", "expected"),
    [
        ("prefix files, labels folder", "folder",
         "error: photos holds 6 images but no class sub-folders (labels='folder' reads photos/<class>/*.jpg); named "
         "<class>.<anything>, they are of the classes indoor, outdoor: set --data.init_args.labels prefix"),
        ("class folders, labels prefix", "prefix",
         "error: no images at the top level of photos (labels='prefix' reads photos/<class>.<anything>.jpg); its "
         "sub-folders indoor/, outdoor/ hold 6: if they are the classes, set --data.init_args.labels folder"),
        ("prefix files one level down, labels prefix", "prefix",
         "error: no images at the top level of photos (labels='prefix' reads photos/<class>.<anything>.jpg); its "
         "sub-folder all/ holds 6: set --data.init_args.root photos/all"),
        ("class folders one level down, labels folder", "folder",
         "error: the images in {photos} form one class, 'all' (labels='folder': the class is each image's sub-folder); "
         "a classifier needs at least two; all/ itself holds the classes indoor, outdoor: set --data.init_args.root photos/all"),
        ("prefix files one level down, labels auto", "auto",
         "error: the images in {photos} form one class, 'all' (labels='folder': the class is each image's sub-folder); "
         "a classifier needs at least two; all/ itself holds the classes indoor, outdoor: set --data.init_args.root photos/all"),
    ],
)
def test_a_folder_of_the_other_layout_is_told_the_setting_that_reads_it(workdir, capsys, case, labels, expected):
    """An E3 folder (``indoor.0.jpg``) given to an E5 config (``labels: folder``), or the reverse, or a root one
    folder too high: it was said to hold no images (or one class to complete) although it held them all."""
    photos = _folder_of_the_other_layout(workdir, case)
    args = ["fit", "--model", "Classifier", "--model.init_args.net", "lightning_hw.nets.mlp.MLP",
            "--data", "ImageFolder", "--data.init_args.root", "photos", "--data.init_args.labels", labels,
            "--run.wandb", "disabled"]
    code, line = error_of(args, capsys)
    assert (code, line) == (1, expected.format(photos=photos))
    assert not (workdir / "runs").exists()
