"""The course experiments' configs (E1, E3, E4) driven through the CLI on tiny fixtures.

Each test runs a config of ``configs/`` as a new user would, on the fixture of its data set
written in the real on-disk format, and checks the run's numbers or its one-line error.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from conftest import REPO
from reliability_helpers import error_of, output_of

from lightning_hw.data.fixtures import classification as fixtures

CONFIGS = REPO / "configs"


def fast(config: str, root: Path, runs: Path, *extra: str) -> list[str]:
    """``fit --config configs/<config>`` on ``root``, quiet, W&B off, runs under ``runs``."""
    return [
        "fit", "--config", str(CONFIGS / config),
        "--data.init_args.root", str(root),
        "--trainer.enable_progress_bar", "false",
        "--run.root", str(runs),
        "--run.wandb", "disabled",
        *extra,
    ]


def metric_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_e3_on_ten_photos_validates_on_its_one_validation_photo(workdir):
    # 10 photos with E3's splits (0.536/0.134/0.33) leave one photo to validate on: torchmetrics
    # squeezed its one prediction to a scalar and the first validation crashed with a traceback.
    photos = fixtures.write_image_folder(workdir / "photos", per_class=5)
    output_of(*fast("catsdogs_mlp.yaml", photos, workdir / "runs", "--trainer.max_epochs", "2", "--run.name", "ten"))
    rows = metric_rows(workdir / "runs" / "catsdogs_mlp" / "ten")
    val_acc = [float(row["val/acc"]) for row in rows if row["val/acc"]]
    assert len(val_acc) == 2 and all(value in (0.0, 1.0) for value in val_acc)  # one photo: right or wrong
    assert [row["test/acc"] for row in rows if row["test/acc"]]


def test_e1_mnist_with_a_truncated_gz_put_there_by_hand_is_one_line_and_leaves_no_partial_file(workdir, capsys):
    # The .gz files fetched by hand are unpacked at start; a truncated one was an EOFError
    # traceback that left half an IDX file behind, read as the data set by the next run.
    fixtures.write_mnist(workdir / "data", gzip_only=True)
    raw = workdir / "data" / "MNIST" / "raw"
    archive = raw / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:200])
    code, line = error_of(fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false"), capsys)
    assert code == 1
    assert f"cannot unpack {archive}" in line and "delete it and download it again" in line
    assert archive.stat().st_size == 200  # the user's file is left as it is
    assert not (raw / "train-images-idx3-ubyte").exists() and not list(raw.glob("*.partial"))
    assert all(p.name.endswith(".gz") for p in raw.iterdir())  # no half-unpacked file under any name
    assert not (workdir / "runs").exists()

    archive.write_text("<html>404 Not Found</html>")  # an error page saved under the archive's name
    code, line = error_of(fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false"), capsys)
    assert code == 1 and "BadGzipFile" in line and "the file is damaged" in line


def test_e1_mnist_images_and_labels_of_different_downloads_are_refused_in_one_line(workdir, capsys):
    # Label and image files of two downloads (or one cut short by hand) disagree in length:
    # torchvision reads both, and the hold-out split failed with an IndexError traceback.
    fixtures.write_mnist(workdir / "data", n_train=60)
    fixtures.write_mnist(workdir / "other", n_train=50)
    raw = workdir / "data" / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes((workdir / "other/MNIST/raw/train-labels-idx1-ubyte").read_bytes())
    code, line = error_of(fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false"), capsys)
    assert code == 1
    assert "train-images-idx3-ubyte and train-labels-idx1-ubyte" in line and "hold 60 images but 50 labels" in line
    assert not (workdir / "runs").exists()


def test_e1_fer2013_without_publictest_rows_says_the_usage_column_splits_it(workdir, capsys):
    # The generic "raise its fraction in --data.init_args.splits" was false for FER2013, whose
    # splits come from the Usage column: changing `splits` changes nothing.
    fixtures.write_fer2013(workdir / "data")
    path = workdir / "data" / "fer2013" / "fer2013.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if not line.endswith(",PublicTest")) + "\n")
    code, line = error_of(fast("fer2013_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false"), capsys)
    assert code == 1
    assert "has no PublicTest rows, so the val split is empty" in line and "Usage column" in line
    assert "raise its fraction" not in line
    assert not (workdir / "runs").exists()


def test_e1_fer2013_saved_again_by_excel_with_a_byte_order_mark_is_read(workdir):
    # Excel's "CSV UTF-8" starts the file with a BOM; it stuck to the first column's name and
    # the file was refused as lacking the column "emotion" (its message showed "\ufeffemotion").
    fixtures.write_fer2013(workdir / "data")
    path = workdir / "data" / "fer2013" / "fer2013.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    printed = output_of(*fast("fer2013_mlp.yaml", workdir / "data", workdir / "runs", "--trainer.max_epochs", "1",
                              "--data.init_args.download", "false", "--run.name", "bom"))
    assert "Test (best checkpoint" in printed
    assert metric_rows(workdir / "runs" / "fer2013_mlp" / "bom")


def test_e3_on_a_folder_of_only_cats_is_refused_before_training(workdir, capsys):
    # Every file named cat.<n>.jpg: one class. It was refused with binary_bce by advice to use
    # softmax_ce, and with softmax_ce it trained a one-class model whose test crashed.
    photos = fixtures.write_image_folder(workdir / "photos", classes=("cat",), per_class=12)
    for head in ("binary_bce", "softmax_ce"):
        code, line = error_of(fast("catsdogs_mlp.yaml", photos, workdir / "runs", "--model.init_args.head", head), capsys)
        assert code == 1
        assert line == (
            f"error: the images in {photos} form one class, 'cat' (labels='prefix': the class is each image's file name "
            "up to the first '.'); a classifier needs at least two: add the other class's images"
        )
    assert not (workdir / "runs").exists()


def test_e1_model_summary_file_lists_the_dense_layers_with_exact_counts_as_keras_summary(workdir):
    # model_summary.txt held Lightning's table at depth 2: the task's metric bookkeeping, and the
    # net only as "MLP 101 K" without its Dense layers, so the report's summary() could not be checked.
    fixtures.write_mnist(workdir / "data")
    output_of(*fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--trainer.max_epochs", "1", "--run.name", "e1"))
    lines = (workdir / "runs" / "mnist_mlp" / "e1" / "model_summary.txt").read_text().splitlines()
    dense = [28 * 28 * 128 + 128, 128 * 10 + 10]  # Dense(128), Dense(10): weights + biases
    assert lines[0] == f"Model: Classifier, {sum(dense):,} parameters ({sum(dense):,} trainable, 0.41 MB)"
    layers = [line.split() for line in lines[1:]]
    assert [row for row in layers if row[1] == "Linear"] == [
        ["net.layers.1", "Linear", f"{dense[0]:,}"], ["net.layers.3", "Linear", f"{dense[1]:,}"]
    ]
    assert not any("metrics" in line or "epoch_loss" in line for line in lines)


def val_losses(run: Path) -> list[float]:
    return [float(row["val/loss"]) for row in metric_rows(run) if row["val/loss"]]


def test_e4_measured_numbers_in_the_config_comments_hold(workdir):
    # The comments of moons_overfit.yaml and moons_regularized.yaml (and README's table) give
    # measured numbers, epochs counted from 0 as metrics.csv and the checkpoint names count (the
    # README had counted from 1, as curves.png does, beside a best-epoch035.ckpt for its "epoch 36");
    # the regularised one claimed the validation loss falls in every epoch, but it rises once.
    runs = workdir / "runs"
    for config in ("moons_overfit.yaml", "moons_regularized.yaml"):
        output_of("fit", "--config", str(CONFIGS / config), "--trainer.enable_progress_bar", "false",
                  "--run.root", str(runs), "--run.wandb", "disabled", "--run.name", "m")

    # Measured on this CPU with the pinned torch; another CPU may round differently, so the
    # numbers are compared to the comments' precision and the curves' shapes, not bit for bit.
    overfit = runs / "moons_overfit" / "m"
    losses = val_losses(overfit)
    best = min(range(len(losses)), key=losses.__getitem__)
    assert abs(best - 35) <= 3 and losses[-1] > losses[best] + 0.01  # the validation loss turns up
    assert [p.name for p in (overfit / "checkpoints").glob("best-*")] == [f"best-epoch{best:03d}.ckpt"]
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| E4 | `configs/moons_overfit.yaml`"))
    said = int(re.search(r"val loss min 0\.295 \(epoch (\d+)", row).group(1))
    assert said == best and f"`best-epoch{said:03d}.ckpt`" in row  # the checkpoint a user finds for that epoch
    assert (losses[best], losses[-1]) == pytest.approx((0.295, 0.313), abs=0.003)
    train = [float(row["train/loss"]) for row in metric_rows(overfit) if row["train/loss"]]
    assert train[-1] == pytest.approx(0.213, abs=0.003)
    assert float(next(row["test/acc"] for row in metric_rows(overfit) if row["test/acc"])) == pytest.approx(0.88, abs=0.02)

    regularized = runs / "moons_regularized" / "m"
    losses = val_losses(regularized)
    rises = [round(b - a, 4) for a, b in zip(losses, losses[1:]) if b >= a]
    assert len(rises) <= 1 and all(rise < 0.001 for rise in rises)  # falls in every epoch but (at most) one, barely
    rise_epochs = [epoch for epoch in range(1, len(losses)) if losses[epoch] >= losses[epoch - 1]]
    row = next(line for line in readme.splitlines() if line.startswith("| E4 | `configs/moons_regularized.yaml`"))
    assert re.search(r"\+0\.0002 at epoch (\d+)", row).group(1) == str(*rise_epochs)  # metrics.csv's epoch
    assert losses[-1] == pytest.approx(0.397, abs=0.003)
    assert "(+0.0002 at epoch 45;" in (CONFIGS / "moons_regularized.yaml").read_text()
    rows = metric_rows(regularized)
    last = {key: float(value) for row in rows if row["epoch"] == "49" for key, value in row.items() if value}
    assert (last["train/acc"], last["val/acc"]) == pytest.approx((0.81, 0.86), abs=0.02)
    # train/loss is the data loss as val/loss is (it had held the penalties too: 0.550); they are train/penalty.
    assert (last["train/loss"], last["train/penalty"]) == pytest.approx((0.473, 0.078), abs=0.003)
    assert "train/penalty" not in metric_rows(overfit)[0]  # a net without penalties logs none
    assert float(next(row["test/acc"] for row in rows if row["test/acc"])) == pytest.approx(0.75, abs=0.02)


def test_e1_a_root_one_folder_off_names_where_the_files_are(workdir, capsys, monkeypatch):
    # root set to the folder of the files themselves (or the CSV put straight into root) was
    # reported as missing data, with the advice to download it again (and, with download: true,
    # MNIST and CIFAR-10 would download a second copy into a folder nested one level deeper).
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)  # nothing may be downloaded here
    fixtures.write_mnist(workdir / "data", gzip_only=True)
    fixtures.write_cifar10(workdir / "data")
    fixtures.write_fer2013(workdir / "data")
    data, runs = workdir / "data", workdir / "runs"
    (workdir / "flat").mkdir()
    (data / "fer2013" / "fer2013.csv").rename(workdir / "flat" / "fer2013.csv")

    def error(config: str, root: Path) -> str:
        code, line = error_of(fast(config, root, runs), capsys)  # download: true, as the configs
        assert code == 1
        return line

    line = error("mnist_mlp.yaml", data / "MNIST" / "raw")
    assert line.endswith(f"but they are in {data / 'MNIST' / 'raw'}: set --data.init_args.root {data} (the folder that holds MNIST/raw)")
    assert error("mnist_mlp.yaml", data / "MNIST").endswith(f"set --data.init_args.root {data} (the folder that holds MNIST/raw)")
    line = error("cifar10_mlp.yaml", data / "cifar-10-batches-py")
    assert line.endswith(f"set --data.init_args.root to the folder that holds cifar-10-batches-py/ ({data})")
    line = error("fer2013_mlp.yaml", workdir / "flat")
    assert line == (
        f"error: FER2013 file fer2013/fer2013.csv not found in {workdir / 'flat'}, but {workdir / 'flat' / 'fer2013.csv'} "
        f"is there: move it to {workdir / 'flat' / 'fer2013' / 'fer2013.csv'}"
    )
    assert "--data.init_args.root is the CSV itself" in error("fer2013_mlp.yaml", workdir / "flat" / "fer2013.csv")
    assert not (data / "MNIST" / "raw" / "MNIST").exists() and not (data / "cifar-10-batches-py" / "cifar-10-batches-py").exists()
    assert not runs.exists()


def test_e1_fer2013_from_a_damaged_kaggle_archive_is_one_line_and_leaves_nothing_half_unpacked(workdir, capsys, monkeypatch):
    # kagglehub's copy held a truncated fer2013.tar.gz: unpacking it was an EOFError traceback,
    # and the half-unpacked folder counted as unpacked next time, its cut-off CSV copied into data/.
    import sys
    import tarfile
    import types

    cache = workdir / "kaggle-cache"
    cache.mkdir()
    source = fixtures.write_fer2013(workdir / "src") / "fer2013" / "fer2013.csv"
    archive = cache / "fer2013.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="fer2013/fer2013.csv")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(competition_download=lambda handle: str(cache)))
    for _ in range(2):  # the second run must not find a half-unpacked folder
        code, line = error_of(fast("fer2013_mlp.yaml", workdir / "data", workdir / "runs"), capsys)
        assert code == 1
        assert line.startswith(f"error: cannot unpack {archive} of the Kaggle download (EOFError: ")
        assert line.endswith(f"it is damaged: delete {cache} (kagglehub's copy) and run again to download it again")
    assert sorted(p.name for p in cache.iterdir()) == ["fer2013.tar.gz"]
    assert not (workdir / "data").exists() and not (workdir / "runs").exists()


def test_e3_a_stray_file_name_is_named_not_answered_with_softmax(workdir, capsys):
    # One photo renamed Cat.1.jpg makes a third class, 'Cat': the binary head refused the data
    # with the advice "use softmax_ce", which would train a 3-class model with a one-photo class.
    photos = fixtures.write_image_folder(workdir / "photos", per_class=6)
    (photos / "cat.1.jpg").rename(photos / "Cat.1.jpg")
    code, line = error_of(fast("catsdogs_mlp.yaml", photos, workdir / "runs"), capsys)
    assert code == 2
    assert line == (
        "error: head 'binary_bce' is for 2 classes, the data has 3 ('Cat', 'cat', 'dog'); "
        "fix the data's labels, or use softmax_ce for more than 2 classes"
    )
    assert not (workdir / "runs").exists()


def test_e1_fer2013_cut_short_says_to_download_again_and_a_blank_line_is_no_row(workdir, capsys):
    # A download cut short ends in half a row: the error quoted the row without saying what to
    # do. A blank line (an editor's extra newline) was refused as a malformed row.
    fixtures.write_fer2013(workdir / "data")
    path = workdir / "data" / "fer2013" / "fer2013.csv"
    full = path.read_text()
    path.write_text(full + "\n")  # a blank line at the end
    output_of(*fast("fer2013_mlp.yaml", workdir / "data", workdir / "runs", "--trainer.max_epochs", "1",
                    "--data.init_args.download", "false", "--run.name", "blank"))

    lines = full.splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:300])  # the last row cut in its pixels
    code, line = error_of(fast("fer2013_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false"), capsys)
    assert code == 1
    assert line.startswith(f"error: line {len(lines)} of {path} is malformed (2 of 3 columns: ")
    assert line.endswith("the file is damaged or cut short: download fer2013.csv again")


def test_e1_splits_given_to_a_data_set_with_its_own_split_are_refused(workdir, capsys):
    # MNIST, CIFAR-10, FER2013, Reuters and CelebA come with their own split: --data.init_args.splits
    # was accepted and ignored, so the run trained and tested on another split than the one asked for.
    fixtures.write_mnist(workdir / "data")
    args = fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.splits", "[0.8, 0.1, 0.1]")
    code, line = error_of(args, capsys)
    assert code == 2
    assert line == (
        "error: MNIST comes with its own split and does not use --data.init_args.splits: its 10,000 test images "
        "are the test split, and --data.init_args.val_fraction of the 60,000 training images validate"
    )
    assert not (workdir / "runs").exists()
    fixtures.write_fer2013(workdir / "data")
    code, line = error_of(fast("fer2013_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.splits", "[0.5, 0.3, 0.2]"), capsys)
    assert code == 2 and "FER2013 comes with its own split" in line and "Usage column" in line
    # The default fractions, as every saved config.yaml holds them, still run.
    printed = output_of(*fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.splits", "[0.7, 0.2, 0.1]",
                              "--trainer.max_epochs", "1", "--run.name", "default"))
    run = workdir / "runs" / "mnist_mlp" / "default"
    assert (run / "metrics.csv").is_file() and (run / "predictions.png").is_file()
    # The closing line lists the record's files; PredictionGrid's figure is no predictions CSV.
    assert printed.rstrip().endswith(f"Run saved in {run} (checkpoints/, config.yaml, metrics.csv)")


def test_e1_an_mnist_file_that_is_a_web_page_or_cut_short_is_named(workdir, capsys):
    # torchvision asserts on a bad IDX header: the message was "(AssertionError: )", naming no file.
    fixtures.write_mnist(workdir / "data")
    raw = workdir / "data" / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_text("<html><body>Not Found</body></html>")
    args = fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false")
    code, line = error_of(args, capsys)
    assert code == 1
    assert line == (f"error: {raw.absolute() / 'train-labels-idx1-ubyte'} is not an IDX file "
                    "(it starts with b'<htm'); delete it to download it again")
    fixtures.write_mnist(workdir / "data")
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:3000])
    code, line = error_of(args, capsys)
    assert code == 1
    assert line == (f"error: {images.absolute()} holds 3,000 bytes where its header (20 x 28 x 28) makes 15,696: "
                    "it is cut short or damaged; delete it to download it again")
    assert not (workdir / "runs").exists()
    assert images.stat().st_size == 3000  # the user's file is named, not touched


def test_e1_e8_an_empty_split_of_a_data_set_with_its_own_split_names_what_cuts_it(workdir, capsys):
    # The advice was to "raise its fraction in --data.init_args.splits", which these data sets refuse.
    fixtures.write_mnist(workdir / "data", n_train=1, n_test=5)  # val_fraction holds out the one image
    code, line = error_of(fast("mnist_mlp.yaml", workdir / "data", workdir / "runs"), capsys)
    assert code == 1
    assert line == (
        "error: the train split of MNIST is empty; MNIST comes with its own split (its 10,000 test images are the "
        "test split, and --data.init_args.val_fraction of the 60,000 training images validate): change that or add data"
    )
    fixtures.write_reuters(workdir / "two", n=2)  # Keras' 80% of 2 newswires is 1, which validates
    code, line = error_of(fast("reuters.yaml", workdir / "two", workdir / "runs"), capsys)
    assert code == 1
    assert line.startswith("error: the train split of Reuters is empty; Reuters comes with its own split (--data.init_args.test_split")
    assert "--data.init_args.splits" not in line
    assert not (workdir / "runs").exists()


def test_e8_a_reuters_maxlen_that_drops_every_newswire_is_named(workdir, capsys):
    # The advice was to change test_split or val_fraction, which cannot bring back what maxlen dropped.
    fixtures.write_reuters(workdir / "data")
    code, line = error_of(fast("reuters.yaml", workdir / "data", workdir / "runs", "--data.init_args.maxlen", "3"), capsys)
    assert (code, line) == (
        1,
        "error: the train split of Reuters is empty; --data.init_args.maxlen 3 keeps 0 of its 120 newswires "
        "(those shorter than 3 tokens, the start mark included): raise it, or set it to null",
    )
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("test_split", ["1.5", "0", "-0.2"])
def test_e8_a_reuters_test_split_outside_0_1_is_refused(workdir, capsys, test_split):
    # 1.5 cut the newswires at a negative index: the run trained on the first half and tested on
    # the second without a word, its config.yaml saying test_split 1.5.
    fixtures.write_reuters(workdir / "data")
    code, line = error_of(fast("reuters.yaml", workdir / "data", workdir / "runs", "--data.init_args.test_split", test_split), capsys)
    assert (code, line) == (2, f"error: test_split must be between 0 and 1, got {float(test_split)}")
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("download", ["true", "false"])
def test_e8_a_reuters_root_set_to_the_npz_file_itself_is_one_line(workdir, capsys, download):
    # With download true, making the download's folder failed on the file: a FileExistsError traceback;
    # with false, the advice was to download the file that is there.
    fixtures.write_reuters(workdir / "data")
    args = fast("reuters.yaml", workdir / "data" / "reuters.npz", workdir / "runs", "--data.init_args.download", download)
    code, line = error_of(args, capsys)
    assert (code, line) == (
        1,
        f"error: Reuters file reuters.npz not found at {workdir / 'data' / 'reuters.npz' / 'reuters.npz'}: "
        f"--data.init_args.root is a file; set it to the folder that holds reuters.npz ({workdir / 'data'})",
    )
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    ("config", "write", "inside", "holds"),
    [
        ("mnist_mlp.yaml", fixtures.write_mnist, "MNIST/raw/t10k-labels-idx1-ubyte", "MNIST/raw"),
        ("cifar10_mlp.yaml", fixtures.write_cifar10, "cifar-10-batches-py/test_batch", "cifar-10-batches-py/"),
    ],
    ids=["mnist", "cifar10"],
)
def test_e1_a_root_set_to_one_of_the_data_files_is_one_line(workdir, capsys, config, write, inside, holds):
    # CIFAR-10's download failed under the file and its clean-up raised again: a NotADirectoryError
    # traceback; MNIST's advice was to put the files in a folder under the file.
    write(workdir / "data")
    code, line = error_of(fast(config, workdir / "data" / inside, workdir / "runs"), capsys)
    assert code == 1
    assert line.endswith(f": --data.init_args.root is a file; set it to the folder that holds {holds} ({workdir / 'data'})")
    assert not (workdir / "runs").exists()


def test_e7_a_root_one_folder_off_names_where_train_csv_is(workdir, capsys, monkeypatch):
    # train.csv straight in root, or root set to mobile-price-classification/ or to the CSV, was
    # reported missing with the advice to download it "and put it there", where it already was.
    import sys

    monkeypatch.setitem(sys.modules, "kagglehub", None)  # nothing may be downloaded here
    data, runs = fixtures.write_mobile_price(workdir / "data"), workdir / "runs"
    folder = data / "mobile-price-classification"
    (workdir / "flat").mkdir()
    (workdir / "flat" / "train.csv").write_bytes((folder / "train.csv").read_bytes())

    def error(root: Path) -> str:
        code, line = error_of(fast("mobile_price.yaml", root, runs), capsys)  # download: true, as the config
        assert code == 1
        return line

    where = "error: Mobile Price Classification file mobile-price-classification/train.csv not found in"
    assert error(folder) == f"{where} {folder}, but it is at {folder / 'train.csv'}: set --data.init_args.root {data}"
    assert error(folder / "train.csv") == (
        f"{where} {folder / 'train.csv'}: --data.init_args.root is the CSV itself; set it to the folder that holds "
        f"mobile-price-classification/train.csv ({data})"
    )
    assert error(workdir / "flat") == (
        f"{where} {workdir / 'flat'}, but {workdir / 'flat' / 'train.csv'} is there: "
        f"move it to {workdir / 'flat' / 'mobile-price-classification' / 'train.csv'}"
    )
    (workdir / "flat" / "train.csv").write_text("id,label\n1,0\n")  # another data set's train.csv: not this one
    assert "download it from https://www.kaggle.com/" in error(workdir / "flat")
    assert not runs.exists()


def test_e7_a_bad_value_in_train_csv_names_its_line_and_column(workdir, capsys):
    # A value that is no number read "has a row that is not 21 numbers" with neither its line nor its
    # column; a NaN was read, and standardisation turned its whole column into NaN.
    csv_path = fixtures.write_mobile_price(workdir / "data") / "mobile-price-classification" / "train.csv"
    good = csv_path.read_text().splitlines()

    def error(line: int, column: int, value: str) -> str:
        rows = [row.split(",") for row in good]
        rows[line - 1][column - 1] = value
        csv_path.write_text("\n".join(",".join(row) for row in rows) + "\n")
        code, line_ = error_of(fast("mobile_price.yaml", workdir / "data", workdir / "runs"), capsys)
        assert code == 1
        return line_

    assert error(5, 14, "3.2GB") == f"error: line 5 of {csv_path}: column 14 (ram) is '3.2GB', not a finite number"
    assert error(7, 3, "nan") == f"error: line 7 of {csv_path}: column 3 (clock_speed) is 'nan', not a finite number"
    assert error(9, 21, "4") == f"error: line 9 of {csv_path}: price_range is '4', it must be 0, 1, 2 or 3"
    csv_path.write_text("\n".join(good[:10]) + "\n" + good[10][:12] + "\n")  # a download cut short
    code, line = error_of(fast("mobile_price.yaml", workdir / "data", workdir / "runs"), capsys)
    assert line.startswith(f"error: line 11 of {csv_path} has ") and line.endswith(
        "fields, the header has 21; the file is damaged or cut short: download train.csv again"
    )
    assert not (workdir / "runs").exists()

    # Saved again by Excel: the byte-order mark no longer sticks to the first column's name.
    from lightning_hw.data.datasets.mobile_price import read_mobile_price

    csv_path.write_text("\n".join(good) + "\n", encoding="utf-8-sig")
    features, target = read_mobile_price(csv_path)
    assert features.shape == (len(good) - 1, 20) and target.shape == (len(good) - 1,)


def test_e1_a_cifar10_root_set_to_its_archive_names_the_folder_that_holds_it(workdir, capsys):
    # The advice named only the cifar-10-batches-py/ folder, which a user with the downloaded archive does not have.
    (workdir / "data").mkdir()
    archive = workdir / "data" / "cifar-10-python.tar.gz"
    archive.write_bytes(b"not really")
    code, line = error_of(fast("cifar10_mlp.yaml", archive, workdir / "runs", "--data.init_args.download", "false"), capsys)
    assert code == 1
    assert line.endswith(
        f": --data.init_args.root is a file; set it to the folder that holds cifar-10-batches-py/ or cifar-10-python.tar.gz ({workdir / 'data'})"
    )
    assert archive.read_bytes() == b"not really"
    assert not (workdir / "runs").exists()


def test_e1_e8_a_data_folder_that_cannot_be_written_is_named_and_a_good_archive_not_called_damaged(workdir, capsys, read_only):
    # MNIST's .gz files in a read-only folder: unpacking failed on the write, and the error called
    # the good archive damaged and said to delete it. Reuters' download into such a folder, and
    # MNIST's, said to download the file by hand and put it where nothing can be put (Reuters': a traceback).
    fixtures.write_mnist(workdir / "data", gzip_only=True)
    raw = workdir / "data" / "MNIST" / "raw"
    read_only(workdir / "data")
    fix = "make it writable, or set --data.init_args.root to a folder that can be written"
    code, line = error_of(fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false"), capsys)
    assert (code, line) == (1, f"error: cannot save the unpacked train-images-idx3-ubyte in {raw} (Read-only file system): {fix}")
    assert all(p.name.endswith(".gz") for p in raw.iterdir()) and len(list(raw.iterdir())) == 4  # kept, nothing added
    new = workdir / "data" / "new"
    code, line = error_of(fast("mnist_mlp.yaml", new, workdir / "runs"), capsys)
    assert (code, line) == (1, f"error: cannot save the MNIST files in {new / 'MNIST' / 'raw'} (Read-only file system): {fix}")
    code, line = error_of(fast("reuters.yaml", new, workdir / "runs"), capsys)
    assert (code, line) == (1, f"error: cannot save reuters.npz in {new} (Read-only file system): {fix}")
    assert not new.exists() and not (workdir / "runs").exists()


def cifar10_archive(workdir: Path, last: str = "test_batch") -> Path:
    """``data/cifar-10-python.tar.gz`` of the fixture's batches, ``last`` the last member (as in the real archive's order)."""
    import tarfile

    source = fixtures.write_cifar10(workdir / "source") / "cifar-10-batches-py"
    (workdir / "data").mkdir()
    archive = workdir / "data" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.iterdir(), key=lambda p: p.name == last):
            tar.add(path, arcname=f"cifar-10-batches-py/{path.name}")
    return archive


def test_e1_a_cifar10_archive_put_there_by_hand_is_checked_used_and_never_deleted(workdir, capsys, monkeypatch):
    # An archive in root whose MD5 was not torchvision's was deleted without a word when the
    # download failed (a user's file: CIFAR-100's under this name, a browser download cut short);
    # a verified one, with download: false, was not unpacked: the error said to download it.
    import hashlib
    import urllib.error
    import urllib.request

    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    archive = cifar10_archive(workdir)
    content = archive.read_bytes()
    for download, again in (("true", "run again to download it"), ("false", f"download {torchvision.datasets.CIFAR10.url} again")):
        code, line = error_of(fast("cifar10_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", download), capsys)
        assert (code, line) == (
            1,
            f"error: {archive} is not CIFAR-10's archive: its MD5 is not torchvision's {torchvision.datasets.CIFAR10.tgz_md5} "
            f"(it is cut short, damaged, or another file, such as CIFAR-100's); delete it and {again}",
        )
        assert archive.read_bytes() == content
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", hashlib.md5(content).hexdigest())  # as if it were the real one
    output_of(*fast("cifar10_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false", "--trainer.fast_dev_run", "true"))
    assert sorted(p.name for p in (workdir / "data").iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert len(list((workdir / "data" / "cifar-10-batches-py").iterdir())) == 7


def test_e1_a_cifar10_unpack_cut_by_ctrl_c_leaves_no_partial_batch_and_the_next_run_unpacks_again(workdir, capsys, monkeypatch):
    # The archive was unpacked straight into cifar-10-batches-py/: Ctrl-C while its last batch was
    # written left all six files there, one cut short; the next run found nothing missing and failed
    # on it, asking to delete the folder and download 170 MB again.
    import hashlib
    import tarfile

    import torchvision

    from lightning_hw.cli import main

    archive = cifar10_archive(workdir, last="test_batch")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    real_copy = tarfile.copyfileobj

    def ctrl_c_in_test_batch(src, dst, length=None, *args, **kwargs):
        if "test_batch" in getattr(dst, "name", ""):
            real_copy(src, dst, length // 2, *args, **kwargs)
            raise KeyboardInterrupt
        real_copy(src, dst, length, *args, **kwargs)

    monkeypatch.setattr(tarfile, "copyfileobj", ctrl_c_in_test_batch)
    with pytest.raises(SystemExit) as exit_info:
        main(fast("cifar10_mlp.yaml", workdir / "data", workdir / "runs"))
    assert exit_info.value.code == 130
    folder = workdir / "data" / "cifar-10-batches-py"
    source = workdir / "source" / "cifar-10-batches-py"
    for path in folder.iterdir() if folder.exists() else []:  # what is there is whole
        assert path.read_bytes() == (source / path.name).read_bytes(), path.name
    monkeypatch.setattr(tarfile, "copyfileobj", real_copy)
    output_of(*fast("cifar10_mlp.yaml", workdir / "data", workdir / "runs", "--trainer.fast_dev_run", "true"))
    assert sorted(p.name for p in (workdir / "data").iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_e1_the_other_files_of_the_fer2013_kaggle_download_are_named_with_what_to_do(workdir, capsys):
    # The competition's download holds icml_face_data.csv, fer2013.tar.gz, train.csv and test.csv.
    # icml_face_data.csv (or the archive) beside where fer2013.csv goes was "not found: download it
    # from Kaggle"; train.csv put in its place was refused with no word on which file to use.
    import csv
    import shlex

    from lightning_hw.data.datasets.fer2013 import FER2013_KAGGLE

    source = fixtures.write_fer2013(workdir / "source") / "fer2013" / "fer2013.csv"
    with open(source, newline="") as f:
        rows = list(csv.reader(f))

    def write(path: Path, columns: list[str]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([columns] + [[row[rows[0].index(c.strip())] for c in columns] for row in rows[1:]])
        return path

    def error(root: Path) -> str:
        code, line = error_of(fast("fer2013_mlp.yaml", root, workdir / "runs", "--data.init_args.download", "false"), capsys)
        assert code == 1
        return line

    icml = write(workdir / "icml" / "fer2013" / "icml_face_data.csv", ["emotion", " Usage", " pixels"])
    assert error(workdir / "icml") == (
        f"error: FER2013 file fer2013/fer2013.csv not found in {workdir / 'icml'}, but {icml} (the same table) is there: "
        "rename it to fer2013.csv"
    )
    icml.rename(icml.with_name("fer2013.csv"))  # as the message says: then it is read
    output_of(*fast("fer2013_mlp.yaml", workdir / "icml", workdir / "smoke", "--trainer.fast_dev_run", "true"))

    (workdir / "packed").mkdir()
    archive = workdir / "packed" / "fer2013.tar.gz"
    archive.write_bytes(b"the archive")
    root = workdir / "packed"
    assert error(root) == (
        f"error: FER2013 file fer2013/fer2013.csv not found in {root}, but {archive} is there: unpack it in {root} "
        f"(tar xzf {shlex.quote(str(archive))} -C {shlex.quote(str(root))}), which gives fer2013/fer2013.csv"
    )
    use = f"expected emotion,pixels,Usage: use fer2013.csv (in fer2013.tar.gz) or icml_face_data.csv from {FER2013_KAGGLE.page}"
    train = write(workdir / "train" / "fer2013" / "fer2013.csv", ["emotion", "pixels"])
    assert error(workdir / "train") == (
        f"error: {train} is not the FER2013 CSV: it lacks column(s) Usage (found: emotion, pixels): it looks like the "
        f"competition's train.csv, which has no Usage column to split by; {use}"
    )
    test = write(workdir / "test" / "fer2013" / "fer2013.csv", ["pixels"])
    assert error(workdir / "test") == (
        f"error: {test} is not the FER2013 CSV: it lacks column(s) emotion, Usage (found: pixels): it looks like the "
        f"competition's test.csv, which has no emotions; {use}"
    )
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("other", ["FashionMNIST", "KMNIST"])
def test_e1_a_fashion_mnist_gz_put_where_mnist_goes_is_refused(workdir, capsys, monkeypatch, other):
    # Fashion-MNIST (and KMNIST) ship the same file names in the same format: their .gz files put
    # in MNIST/raw were unpacked and trained on as digits without a word.
    import hashlib

    import torchvision

    fixtures.write_mnist(workdir / "data", gzip_only=True)
    raw = workdir / "data" / "MNIST" / "raw"
    archive = raw / "train-labels-idx1-ubyte.gz"
    dataset = getattr(torchvision.datasets, other)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()  # as if the fixture's file were that data set's
    monkeypatch.setattr(dataset, "resources", [(name, md5 if name == archive.name else h) for name, h in dataset.resources])
    code, line = error_of(fast("mnist_mlp.yaml", workdir / "data", workdir / "runs", "--data.init_args.download", "false"), capsys)
    assert (code, line) == (
        1,
        f"error: {archive} is {other}'s train-labels-idx1-ubyte.gz, not MNIST's (the same names and format, other images): "
        f"move it away and put MNIST's from {torchvision.datasets.MNIST.mirrors[0]} there",
    )
    assert all(p.name.endswith(".gz") for p in raw.iterdir()) and archive.is_file()  # none unpacked
    assert not (workdir / "runs").exists()
