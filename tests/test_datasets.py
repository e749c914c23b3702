"""The course datasets on tiny fixtures in their real on-disk formats; errors for missing and corrupt files.

Nothing here touches the network: downloads are exercised with ``urlopen`` replaced by a
fake that serves bytes from memory (or fails as an offline machine does).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import tarfile
import types
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from lightning_hw.data.fixtures import classification as fixtures
from lightning_hw.data.datasets.cifar10 import CIFAR10, CIFAR10_CLASSES
from lightning_hw.data.datasets.fer2013 import FER2013
from lightning_hw.data.datasets.mnist import MNIST
from lightning_hw.data.datasets.mobile_price import MOBILE_PRICE_COLUMNS, MobilePrice
from lightning_hw.data.datasets.reuters import REUTERS_URL, Reuters, keras_sequences
from lightning_hw.errors import DataError


class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns, serving ``content``."""

    url = None  # no redirect
    length = None  # unknown size

    def info(self):
        import email.message

        return email.message.Message()  # no headers (no Content-Length)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def offline(monkeypatch):
    """Every URL fails as on a machine without network."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# -- MNIST ------------------------------------------------------------------------------------


def test_mnist_reads_torchvision_idx_files(tmp_path):
    fixtures.write_mnist(tmp_path, n_train=40, n_test=10)
    dm = MNIST(root=str(tmp_path), download=False, val_fraction=0.25)
    dm.setup("fit")
    assert [dm.data[s][0].shape[0] for s in ("train", "val", "test")] == [30, 10, 10]
    assert dm.input_shape == (1, 28, 28) and dm.class_names[3] == "3"
    written = np.frombuffer((tmp_path / "MNIST/raw/t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    assert torch.equal(dm.data["test"][0].flatten(), torch.from_numpy(written.copy()))
    assert dm.data["test"][1].tolist() == [i % 10 for i in range(10)]


def test_mnist_unpacks_gz_files_put_there_by_hand(tmp_path, offline):
    fixtures.write_mnist(tmp_path, gzip_only=True)
    dm = MNIST(root=str(tmp_path))
    dm.prepare_data()
    assert dm.missing_files() == []
    dm.setup("fit")
    assert dm.data["test"][0].shape == (20, 1, 28, 28)


def test_mnist_missing_files_name_the_mirror_and_the_folder(tmp_path, offline):
    with pytest.raises(DataError) as err:
        MNIST(root=str(tmp_path), download=False).setup("fit")
    message = one_line(err)
    assert "MNIST files train-images-idx3-ubyte, train-labels-idx1-ubyte" in message
    assert f"not found in {tmp_path / 'MNIST' / 'raw'}" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message
    with pytest.raises(DataError, match=r"put them there \(automatic download failed: Error downloading train-images.*unreachable"):
        MNIST(root=str(tmp_path), download=True).prepare_data()


def test_mnist_corrupt_file_is_a_clear_error(tmp_path):
    fixtures.write_mnist(tmp_path)
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="train-images-idx3-ubyte is cut short inside its header; delete it to download it again"):
        MNIST(root=str(tmp_path), download=False).setup("fit")


def test_mnist_images_that_are_not_bytes_are_refused(tmp_path):
    """An IDX file may declare int32 pixels; 300 must not reach training as a (wrapped) byte.

    torchvision refuses them itself; this keeps it so (and one line) should its reader change.
    """
    import struct

    fixtures.write_mnist(tmp_path, n_train=20, n_test=10)
    images = np.full((20, 28, 28), 300, dtype=">i4")
    header = struct.pack(">BBBB", 0, 0, 0x0C, 3) + struct.pack(">3I", *images.shape)
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte").write_bytes(header + images.tobytes())
    with pytest.raises(DataError) as err:
        MNIST(root=str(tmp_path), download=False).setup("fit")
    message = one_line(err)
    assert message.endswith("train-images-idx3-ubyte holds IDX values of type 0x0c, not the unsigned bytes (0x08) of MNIST; "
                            "delete it to download it again")


# -- CIFAR-10 ---------------------------------------------------------------------------------


def test_cifar10_reads_the_python_pickles(tmp_path):
    fixtures.write_cifar10(tmp_path, per_batch=8, n_test=12)
    dm = CIFAR10(root=str(tmp_path), download=False, val_fraction=0.25)
    dm.setup("fit")
    assert [dm.data[s][0].shape[0] for s in ("train", "val", "test")] == [30, 10, 12]
    assert dm.class_names == list(CIFAR10_CLASSES) and dm.input_shape == (3, 32, 32)
    import pickle

    with open(tmp_path / "cifar-10-batches-py/test_batch", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    # Row layout: 1024 red values, 1024 green, 1024 blue -> (3, 32, 32) planes.
    assert torch.equal(dm.data["test"][0][5, 1], torch.from_numpy(raw["data"][5, 1024:2048].reshape(32, 32)))


def test_cifar10_missing_corrupt_and_bad_checksum(tmp_path, monkeypatch):
    with pytest.raises(DataError) as err:
        CIFAR10(root=str(tmp_path), download=False).setup("fit")
    message = one_line(err)
    assert f"not found in {tmp_path / 'cifar-10-batches-py'}" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    # A download whose MD5 is not torchvision's is refused.
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: FakeResponse(b"not the archive"))
    with pytest.raises(DataError, match=r"unpack it in .*\(automatic download failed: File not found or corrupted"):
        CIFAR10(root=str(tmp_path)).prepare_data()
    assert not (tmp_path / "cifar-10-python.tar.gz").exists() and not (tmp_path / "cifar-10-python.tar.gz.partial").exists()
    fixtures.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py/data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"cannot read CIFAR-10 batch .*data_batch_3"):
        CIFAR10(root=str(tmp_path), download=False).setup("fit")


def test_cifar10_keeps_a_verified_archive_whose_unpacking_failed(tmp_path, monkeypatch):
    """The clean-up after a failed unpack deleted the user's good 170 MB archive along with a corrupt download's."""
    import torchvision

    source = tmp_path / "source"
    fixtures.write_cifar10(source)
    root = tmp_path / "data"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("a verified archive is not downloaded again"))
    (root / "cifar-10-batches-py").write_text("a file where the archive unpacks its folder")  # the unpack fails
    with pytest.raises(DataError, match=r"cannot unpack .*FileExistsError.*the archive is kept: fix that and run again"):
        CIFAR10(root=str(root)).prepare_data()
    assert archive.is_file() and not (root / ".cifar-10-batches-py.partial").exists()
    (root / "cifar-10-batches-py").unlink()  # the obstacle gone, the kept archive unpacks without a download
    CIFAR10(root=str(root)).prepare_data()
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar10_pickles_cannot_run_code(tmp_path):
    fixtures.write_cifar10(tmp_path)
    import os
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "cifar-10-batches-py/test_batch", "wb") as f:
        pickle.dump({"data": Exploit()}, f)
    with pytest.raises(DataError, match="refusing to load posix.system"):
        CIFAR10(root=str(tmp_path), download=False).setup("fit")


def test_cifar10_pixel_values_outside_0_255_are_refused(tmp_path):
    """A batch whose data is wider than bytes: 300 would wrap to 44 in a plain cast to uint8."""
    import pickle

    fixtures.write_cifar10(tmp_path, per_batch=4, n_test=4)
    path = tmp_path / "cifar-10-batches-py/data_batch_2"
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry["data"] = entry["data"].astype(np.int64)
    entry["data"][2, 7] = 300
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)
    with pytest.raises(DataError) as err:
        CIFAR10(root=str(tmp_path), download=False).setup("fit")
    message = one_line(err)
    assert f"cannot read CIFAR-10 batch {path}" in message
    assert "value 300 at index [2, 7] of its data is not a pixel value 0-255" in message


# -- FER2013 ----------------------------------------------------------------------------------


def test_fer2013_splits_by_usage_with_named_emotions(tmp_path):
    fixtures.write_fer2013(tmp_path, per_usage=(21, 7, 14))
    dm = FER2013(root=str(tmp_path), download=False)
    dm.setup("fit")
    assert [dm.data[s][0].shape[0] for s in ("train", "val", "test")] == [21, 7, 14]
    assert dm.class_names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    first_row = (tmp_path / "fer2013/fer2013.csv").read_text().splitlines()[1].split(",")
    pixels = torch.tensor([int(v) for v in first_row[1].split()], dtype=torch.uint8)
    assert torch.equal(dm.data["train"][0][0].flatten(), pixels)


def test_fer2013_missing_file_names_kaggle_page_and_path(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # not installed
    expected = tmp_path / "fer2013" / "fer2013.csv"
    for download in (False, True):
        with pytest.raises(DataError) as err:
            FER2013(root=str(tmp_path), download=download).setup("fit")
        message = one_line(err)
        assert f"FER2013 file fer2013.csv not found at {expected}" in message
        assert "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge" in message
    assert "pip install 'lightning-hw[kaggle]'" in message


def test_fer2013_is_fetched_with_kagglehub_when_logged_in(tmp_path, monkeypatch):
    # kagglehub's competition download unpacks the competition's files; the CSV is in a tarball.
    cache = tmp_path / "kaggle-cache"
    source = fixtures.write_fer2013(tmp_path / "src") / "fer2013" / "fer2013.csv"
    cache.mkdir()
    with tarfile.open(cache / "fer2013.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="fer2013/fer2013.csv")
    calls = []
    fake = types.SimpleNamespace(competition_download=lambda handle: calls.append(handle) or str(cache))
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    dm = FER2013(root=str(tmp_path / "data"))
    dm.setup("fit")
    assert calls == ["challenges-in-representation-learning-facial-expression-recognition-challenge"]
    assert (tmp_path / "data/fer2013/fer2013.csv").read_bytes() == source.read_bytes()
    assert dm.data["test"][0].shape == (14, 1, 48, 48)


def test_fer2013_wrong_columns_and_bad_rows(tmp_path):
    path = tmp_path / "fer2013" / "fer2013.csv"
    path.parent.mkdir()
    path.write_text("label,image\n0,1 2 3\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) emotion, pixels, Usage"):
        FER2013(root=str(tmp_path), download=False).setup("fit")
    path.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(DataError, match=r"line 2 of .* does not have 2304 pixel values"):
        FER2013(root=str(tmp_path), download=False).setup("fit")
    path.write_text("emotion,pixels,Usage\n9,1 2 3,Training\n")
    with pytest.raises(DataError, match=r"emotion must be 0-6"):
        FER2013(root=str(tmp_path), download=False).setup("fit")


# -- Reuters ----------------------------------------------------------------------------------


def keras_load_data(xs, labels, num_words, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2, index_from=3):
    """Keras' reuters.load_data, transcribed with plain lists: the reference for the vectorised version."""
    indices = np.arange(len(xs))
    np.random.RandomState(seed).shuffle(indices)
    xs, labels = xs[indices], labels[indices]
    xs = [[start_char] + [w + index_from for w in x] for x in xs]
    if maxlen:
        kept = [(x, y) for x, y in zip(xs, labels) if len(x) < maxlen]
        xs, labels = [x for x, _ in kept], np.array([y for _, y in kept])
    xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    return xs, labels


@pytest.mark.parametrize("num_words, skip_top, maxlen", [(40, 0, None), (1000, 5, 20)])
def test_reuters_follows_keras_index_conventions(tmp_path, num_words, skip_top, maxlen):
    fixtures.write_reuters(tmp_path, n=120)
    raw = np.load(tmp_path / "reuters.npz", allow_pickle=True)  # the test's own file: safe here
    expected_x, expected_y = keras_load_data(raw["x"], raw["y"], num_words, skip_top, maxlen)
    rows, tokens, labels, _, _ = keras_sequences(raw["x"], raw["y"], num_words, skip_top=skip_top, maxlen=maxlen)
    assert labels.tolist() == expected_y.tolist()
    assert [tokens[rows == i].tolist() for i in range(len(labels))] == expected_x

    dm = Reuters(root=str(tmp_path), download=False, num_words=num_words, skip_top=skip_top, maxlen=maxlen, val_fraction=0.1)
    dm.setup("fit")
    cut = int(len(expected_y) * 0.8)  # Keras' train/test boundary
    test_x, test_y = dm.data["test"]
    assert test_y.tolist() == expected_y[cut:].tolist()
    multi_hot = torch.zeros(len(test_y), num_words, dtype=torch.uint8)
    for i, seq in enumerate(expected_x[cut:]):
        multi_hot[i, seq] = 1
    assert torch.equal(test_x, multi_hot)
    assert dm.data["train"][0].shape[0] + dm.data["val"][0].shape[0] == cut
    assert dm.input_shape == (num_words,) and dm.num_classes == 46 and dm.class_names[3] == "earn"
    features, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert features.dtype == torch.float32


def test_reuters_downloads_with_sha256_check(tmp_path, monkeypatch):
    content = (fixtures.write_reuters(tmp_path / "src") / "reuters.npz").read_bytes()
    served = []

    def serve(request, *args, **kwargs):
        served.append(request.full_url)
        return FakeResponse(content)

    monkeypatch.setattr(torch.hub, "urlopen", serve)
    # Keras' checksum: the fixture's bytes do not match it, so nothing is kept.
    with pytest.raises(DataError) as err:
        Reuters(root=str(tmp_path / "data")).prepare_data()
    assert "the download of Reuters from " + REUTERS_URL + " is corrupt (invalid hash value" in one_line(err)
    assert served == [REUTERS_URL] and not list((tmp_path / "data").iterdir())
    # With a matching checksum the file lands where the loader reads it.
    monkeypatch.setattr("lightning_hw.data.datasets.reuters.REUTERS_SHA256", hashlib.sha256(content).hexdigest())
    dm = Reuters(root=str(tmp_path / "data"), num_words=100)
    dm.setup("fit")
    assert (tmp_path / "data" / "reuters.npz").read_bytes() == content


def test_reuters_missing_and_corrupt_files(tmp_path, offline):
    with pytest.raises(DataError) as err:
        Reuters(root=str(tmp_path), download=False).setup("fit")
    message = one_line(err)
    assert f"reuters.npz not found at {tmp_path / 'reuters.npz'}" in message and REUTERS_URL in message
    with pytest.raises(DataError, match=r"could not download Reuters .*network is unreachable.*put it at"):
        Reuters(root=str(tmp_path)).prepare_data()
    import os

    np.savez(tmp_path / "reuters.npz", x=np.array([os.system], dtype=object), y=np.zeros(1, dtype=np.int64))
    with pytest.raises(DataError, match=r"cannot read .*reuters.npz .*refusing to load"):
        Reuters(root=str(tmp_path), download=False).setup("fit")
    (tmp_path / "reuters.npz").write_bytes(gzip.compress(b"truncated"))
    with pytest.raises(DataError, match=r"cannot read .*reuters.npz \(BadZipFile"):
        Reuters(root=str(tmp_path), download=False).setup("fit")


# -- Mobile price -----------------------------------------------------------------------------


def test_mobile_price_standardises_on_the_training_split(tmp_path):
    fixtures.write_mobile_price(tmp_path, n=100)
    dm = MobilePrice(root=str(tmp_path), download=False)
    dm.setup("fit")
    train_x = dm.data["train"][0]
    torch.testing.assert_close(train_x.mean(0), torch.zeros(20), atol=1e-5, rtol=0)
    assert dm.input_shape == (20,) and dm.class_names[-1] == "very high cost"
    raw = MobilePrice(root=str(tmp_path), download=False, standardize=False)
    raw.setup("fit")
    ram = MOBILE_PRICE_COLUMNS.index("ram")
    mean, std = raw.data["train"][0][:, ram].mean(), raw.data["train"][0][:, ram].std()
    # Validation data is scaled with the training statistics, not its own.
    torch.testing.assert_close(dm.data["val"][0][:, ram], (raw.data["val"][0][:, ram] - mean) / std)


def test_mobile_price_wrong_columns_and_missing_file(tmp_path, monkeypatch):
    columns = [c for c in MOBILE_PRICE_COLUMNS if c != "wifi"] + ["price"]
    fixtures.write_mobile_price(tmp_path, columns=columns)
    with pytest.raises(DataError) as err:
        MobilePrice(root=str(tmp_path), download=False).setup("fit")
    assert "(missing wifi, price_range; unexpected price)" in one_line(err)
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(DataError) as err:
        MobilePrice(root=str(tmp_path / "none")).setup("fit")
    message = one_line(err)
    assert f"train.csv not found at {tmp_path / 'none' / 'mobile-price-classification' / 'train.csv'}" in message
    assert "https://www.kaggle.com/datasets/iabhishekofficial/mobile-price-classification" in message
