"""Batched Keras-style augmentation: torchvision's geometry, one random draw per image, offline expansion."""

from __future__ import annotations

import types

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from lightning_hw.data.augment.images import Augment, affine_batch, expand_offline
from lightning_hw.data.fixtures.classification import write_image_folder
from lightning_hw.data.datasets.image_folder import ImageFolder
from lightning_hw.errors import ConfigError


@pytest.mark.parametrize(
    "angle, translate, scale, shear",
    [(30.0, (3.0, -2.0), 1.2, 0.0), (-45.0, (0.0, 0.0), 0.8, 10.0), (90.0, (1.5, 4.0), 1.0, -20.0)],
)
def test_batched_affine_is_torchvisions_affine(angle, translate, scale, shear):
    images = torch.rand(3, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    expected = torch.stack(
        [
            TF.affine(im, angle=angle, translate=list(translate), scale=scale, shear=[shear, 0.0],
                      interpolation=TF.InterpolationMode.BILINEAR)
            for im in images
        ]
    )
    n = images.shape[0]
    out = affine_batch(
        images, torch.full((n,), angle), torch.tensor([translate] * n), torch.full((n,), scale), torch.full((n,), shear)
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_every_image_gets_its_own_transform():
    same = torch.rand(1, 1, 16, 16).expand(32, 1, 16, 16).contiguous()
    out = Augment(rotation=30, width_shift=0.1)(same, generator=torch.Generator().manual_seed(1))
    assert out.shape == same.shape
    distinct = {tuple(img.flatten()[:40].tolist()) for img in out}
    assert len(distinct) == 32


def test_flips_flip_about_half_of_the_batch_and_nothing_else():
    images = torch.arange(64 * 4 * 4, dtype=torch.float32).view(64, 1, 4, 4)
    out = Augment(horizontal_flip=True)(images, generator=torch.Generator().manual_seed(0))
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert torch.all(flipped ^ kept) and 16 < int(flipped.sum()) < 48


def test_no_settings_is_the_identity_and_uint8_stays_uint8():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(Augment()(images), images)
    out = Augment(rotation=10, brightness=0.2)(images)
    assert out.dtype == torch.uint8 and out.shape == images.shape


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="fill_mode"):
        Augment(fill_mode="wrap")
    with pytest.raises(ConfigError, match="must be >= 0"):
        Augment(rotation=-5)


def test_offline_expansion_adds_k_seeded_copies():
    images = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    augment = Augment(rotation=20, horizontal_flip=True)
    expanded = expand_offline(images, augment, copies=8, seed=3)
    assert expanded.shape == (45, 1, 12, 12)
    assert torch.equal(expanded[:5], images)
    assert torch.equal(expanded, expand_offline(images, augment, copies=8, seed=3))
    assert not torch.equal(expanded[5:10], images)


def test_imagefolder_expands_only_the_training_split(tmp_path):
    root = write_image_folder(tmp_path / "cd", per_class=10)
    plain = ImageFolder(root=str(root), image_size=16)
    expanded = ImageFolder(root=str(root), image_size=16, offline_augment=Augment(rotation=15), offline_copies=3)
    plain.setup("fit")
    expanded.setup("fit")
    assert expanded.data["train"][0].shape[0] == 4 * plain.data["train"][0].shape[0]
    assert torch.equal(expanded.data["train"][1], plain.data["train"][1].repeat(4))
    for split in ("val", "test"):
        assert torch.equal(expanded.data[split][0], plain.data[split][0])


def test_online_augmentation_runs_on_training_batches_only(tmp_path):
    root = write_image_folder(tmp_path / "cd", per_class=10)
    dm = ImageFolder(root=str(root), image_size=16, augment=Augment(rotation=40, horizontal_flip=True))
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    dm.trainer = types.SimpleNamespace(training=False)
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)[0], batch[0].float() / 255)
    dm.trainer = types.SimpleNamespace(training=True)
    assert not torch.equal(dm.on_after_batch_transfer(batch, 0)[0], batch[0].float() / 255)
