"""Tiny datasets written in the exact on-disk formats of the real ones.

The test suite points every datamodule at these (nothing in the tests touches the
network), and they are handy for trying a config end to end before downloading anything:

    python -c "from lightning_hw.data.fixtures import write_mnist; write_mnist('/tmp/tiny')"
    python -m lightning_hw fit --config configs/mnist_mlp.yaml --data.init_args.root /tmp/tiny

Every writer draws from a seeded generator and makes the classes distinguishable (class k
is brighter, or uses its own words), so a few training steps already beat chance.
Each returns the path a datamodule's ``root`` should point at.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _class_images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...], num_classes: int) -> np.ndarray:
    """uint8 images whose mean brightness grows with the label, plus noise."""
    base = (labels.astype(np.float64) + 0.5) / num_classes * 200.0
    noise = rng.normal(0.0, 20.0, size=(len(labels), *shape))
    return np.clip(base.reshape(-1, *([1] * len(shape))) + noise, 0, 255).astype(np.uint8)


def write_image_folder(
    root: str | Path,
    classes: Sequence[str] = ("cat", "dog"),
    per_class: int = 10,
    size: tuple[int, int] = (36, 44),
    layout: str = "prefix",
    seed: int = 0,
) -> Path:
    """JPEG photos, named ``<class>.<i>.jpg`` (``layout="prefix"``, E3) or in ``<class>/`` folders.

    Args:
        root: the folder to create.
        classes: class names.
        per_class: images per class.
        size: ``(H, W)`` of the images (deliberately not square, not the model's size).
        layout: ``prefix`` or ``folder``.
        seed: random seed.
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name if layout == "folder" else root
        folder.mkdir(parents=True, exist_ok=True)
        pixels = _class_images(rng, np.full(per_class, label), (*size, 3), len(classes))
        for i, image in enumerate(pixels):
            Image.fromarray(image, "RGB").save(folder / f"{name}.{i}.jpg", quality=90)
    return root


def _idx(array: np.ndarray) -> bytes:
    """The IDX format of MNIST: magic (0, 0, type 0x08 = uint8, ndim), big-endian sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: str | Path, n_train: int = 60, n_test: int = 20, gzip_only: bool = False, seed: int = 0) -> Path:
    """MNIST as torchvision keeps it: IDX files in ``root/MNIST/raw`` (the ``.gz`` and extracted).

    Args:
        root: the datamodule's ``root``.
        n_train: training images.
        n_test: test images.
        gzip_only: write only the ``.gz`` files, as downloaded from a mirror.
        seed: random seed.
    """
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        files = {
            f"{prefix}-images-idx3-ubyte": _idx(_class_images(rng, labels, (28, 28), 10)),
            f"{prefix}-labels-idx1-ubyte": _idx(labels),
        }
        for name, content in files.items():
            (raw / f"{name}.gz").write_bytes(gzip.compress(content))
            if not gzip_only:
                (raw / name).write_bytes(content)
    return Path(root)


def write_cifar10(root: str | Path, per_batch: int = 10, n_test: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's python version: pickled dicts in ``root/cifar-10-batches-py``.

    Args:
        root: the datamodule's ``root``.
        per_batch: images in each of the five training batches.
        n_test: test images.
        seed: random seed.
    """
    from lightning_hw.data.cifar10 import CIFAR10_CLASSES

    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    for name, n in batches:
        labels = np.arange(n) % 10
        # Rows are 3072 values: the red plane, then green, then blue (32x32 each).
        data = _class_images(rng, labels, (3, 32, 32), 10).reshape(n, 3072)
        entry = {
            "batch_label": f"{name} of 1",
            "labels": labels.tolist(),
            "data": data,
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {"num_cases_per_batch": per_batch, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return Path(root)


def write_fer2013(root: str | Path, per_usage: Sequence[int] = (28, 14, 14), seed: int = 0) -> Path:
    """The Kaggle ``fer2013.csv`` (emotion, pixels, Usage) at ``root/fer2013/fer2013.csv``.

    Args:
        root: the datamodule's ``root``.
        per_usage: rows for Training, PublicTest and PrivateTest.
        seed: random seed.
    """
    from lightning_hw.data.fer2013 import FER2013_CLASSES, FER2013_FILE, FER2013_USAGE

    path = Path(root) / FER2013_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, n in zip(FER2013_USAGE, per_usage):
            labels = np.arange(n) % len(FER2013_CLASSES)
            for label, image in zip(labels, _class_images(rng, labels, (48 * 48,), len(FER2013_CLASSES))):
                writer.writerow([int(label), " ".join(map(str, image.tolist())), usage])
    return Path(root)


def write_reuters(root: str | Path, n: int = 120, num_classes: int = 46, vocabulary: int = 1500, seed: int = 0) -> Path:
    """Keras' ``reuters.npz``: ``x`` an object array of word-rank lists, ``y`` the topic indices.

    Args:
        root: the datamodule's ``root``; the file is ``root/reuters.npz``.
        n: newswires (Keras splits 80/20 into train/test after a seeded shuffle).
        num_classes: topics used (labels cycle through ``range(num_classes)``).
        vocabulary: largest word rank.
        seed: random seed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    x = np.empty(n, dtype=object)
    for i, label in enumerate(labels):
        # Frequent words shared by all topics, plus words typical of the topic.
        common = rng.integers(1, 50, size=rng.integers(5, 15)).tolist()
        topical = (10 + 7 * label + rng.integers(0, 5, size=6)).tolist()
        rare = rng.integers(1, vocabulary, size=3).tolist()
        x[i] = common + topical + rare
    np.savez(root / "reuters.npz", x=x, y=labels.astype(np.int64))
    return root


def write_mobile_price(root: str | Path, n: int = 80, seed: int = 0, columns: Sequence[str] | None = None) -> Path:
    """Kaggle's Mobile Price Classification ``train.csv`` at ``root/mobile-price-classification/``.

    Args:
        root: the datamodule's ``root``.
        n: phones.
        seed: random seed.
        columns: override the header (to test a file with wrong columns).
    """
    from lightning_hw.data.mobile_price import MOBILE_PRICE_COLUMNS, MOBILE_PRICE_FILE, MOBILE_PRICE_TARGET

    path = Path(root) / MOBILE_PRICE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    header = list(columns) if columns is not None else [*MOBILE_PRICE_COLUMNS, MOBILE_PRICE_TARGET]
    price = np.arange(n) % 4
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for label in price:
            features = rng.integers(0, 20, size=len(MOBILE_PRICE_COLUMNS)).astype(float)
            features[MOBILE_PRICE_COLUMNS.index("ram")] = 500 + 900 * label + rng.integers(0, 300)
            features[MOBILE_PRICE_COLUMNS.index("clock_speed")] = round(rng.uniform(0.5, 3.0), 1)
            row = [f"{v:g}" for v in features] + [int(label)]
            writer.writerow(row[: len(header)])
    return Path(root)
