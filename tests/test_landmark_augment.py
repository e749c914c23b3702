"""Landmark augmentation: flips swap left/right indices, warps move points as torchvision does."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from lightning_hw.data.augment.images import affine_batch
from lightning_hw.data.augment.landmarks import (
    LandmarkAugment,
    RandomHorizontalFlipWithPairs,
    affine_points,
    flip_permutation,
    forward_affine_matrix,
    hflip_points,
)
from lightning_hw.data.landmarks.synthetic_faces import SyntheticFaces
from lightning_hw.errors import ConfigError


def test_flip_permutation_swaps_each_pair_and_keeps_the_rest():
    assert flip_permutation(6, [(0, 1), (3, 5)]).tolist() == [1, 0, 2, 5, 4, 3]
    with pytest.raises(ConfigError, match="two flip pairs"):
        flip_permutation(4, [(0, 1), (1, 2)])
    with pytest.raises(ConfigError, match="there are 4 landmarks"):
        flip_permutation(4, [(0, 4)])


def test_hflip_mirrors_x_and_renumbers_left_and_right():
    points = torch.tensor([[[10.0, 5.0], [30.0, 6.0], [20.0, 15.0], [math.nan, math.nan]]])
    flipped = hflip_points(points, width=40, permutation=flip_permutation(4, [(0, 1)]))
    # The new point 0 (viewer's left eye) is the mirror of the old point 1 (the old right eye).
    expected = torch.tensor([[[10.0, 6.0], [30.0, 5.0], [20.0, 15.0], [math.nan, math.nan]]])
    torch.testing.assert_close(flipped, expected, equal_nan=True)


def test_flipped_faces_keep_each_label_on_its_feature():
    """On drawn faces: after a flip, point 0 is still on the viewer's left eye's dark pupil."""
    dm = SyntheticFaces(num_samples=32, image_size=48, rotation=10.0, missing_rate=0.0)
    images, points = dm.load_tensors()
    images = images.float() / 255
    augment = LandmarkAugment(horizontal_flip=True)
    out, moved = augment(images, points, flip_permutation(5, dm.flip_pairs), generator=torch.Generator().manual_seed(1))
    flipped = ~torch.isclose(out, images).all(dim=(1, 2, 3))
    assert 0 < flipped.sum() < len(images)  # a fresh draw per image
    expected = torch.where(flipped.view(-1, 1, 1), hflip_points(points, 48, flip_permutation(5, dm.flip_pairs)), points)
    torch.testing.assert_close(moved, expected)
    eyes = moved[:, :2]
    assert (eyes[:, 0, 0] < eyes[:, 1, 0]).all()  # left eye left of the right eye, flipped or not
    cols, rows = eyes[..., 0].long(), eyes[..., 1].long()
    pupil = out.mean(dim=1)[torch.arange(32).unsqueeze(1), rows, cols]
    assert pupil.mean() < 0.15 and (pupil < 0.4).all()  # the pupils are drawn black (plus noise)


def test_v2_flip_transform_renumbers_keypoints_like_the_batched_flip():
    image = tv_tensors.Image(torch.rand(3, 8, 10))
    kp = tv_tensors.KeyPoints(torch.tensor([[2.0, 3.0], [7.0, 3.5], [5.0, 6.0]]), canvas_size=(8, 10))
    out_image, out_kp = RandomHorizontalFlipWithPairs([(0, 1)], p=1.0)(image, kp)
    torch.testing.assert_close(out_image.as_subclass(torch.Tensor), image.flip(-1).as_subclass(torch.Tensor))
    expected = hflip_points(kp.as_subclass(torch.Tensor), 10, flip_permutation(3, [(0, 1)]))
    torch.testing.assert_close(out_kp.as_subclass(torch.Tensor), expected)
    assert isinstance(out_kp, tv_tensors.KeyPoints)


def test_affine_moves_points_as_torchvision_moves_keypoints():
    h, w = 40, 56
    points = torch.tensor([[[10.5, 12.5], [30.5, 20.5], [45.5, 33.5]]])
    angle, translate, scale, shear = torch.tensor([20.0]), torch.tensor([[3.0, -2.0]]), torch.tensor([1.1]), torch.tensor([5.0])
    moved = affine_points(points, forward_affine_matrix(angle, translate, scale, shear), (h, w))
    reference = TF.affine(tv_tensors.KeyPoints(points[0], canvas_size=(h, w)), angle=20.0, translate=[3.0, -2.0], scale=1.1, shear=[5.0, 0.0])
    torch.testing.assert_close(moved[0], reference.as_subclass(torch.Tensor))
    # ...and where affine_batch moves the pixels: a bright blob follows its point.
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    image = torch.exp(-((xs - points[0, 1, 0]) ** 2 + (ys - points[0, 1, 1]) ** 2) / 2).expand(1, 1, h, w)
    warped = affine_batch(image, angle, translate, scale, shear)[0, 0]
    centroid = torch.stack([(warped * xs).sum(), (warped * ys).sum()]) / warped.sum()
    torch.testing.assert_close(centroid, moved[0, 1], atol=0.05, rtol=0)


def test_points_pushed_off_the_canvas_become_missing():
    images = torch.rand(64, 1, 20, 20)
    points = torch.tensor([[1.0, 10.0], [10.0, 10.0]]).expand(64, 2, 2).clone()
    _, moved = LandmarkAugment(width_shift=0.3)(images, points, generator=torch.Generator().manual_seed(0))
    lost = torch.isnan(moved).any(dim=-1)
    assert lost[:, 0].any() and not lost[:, 1].any()  # the point near the edge sometimes leaves
    assert torch.isnan(moved[lost]).all()  # both coordinates of a lost point are missing
    inside = moved[~lost]
    assert ((inside >= 0) & (inside <= 20)).all()


def test_flip_without_pairs_is_a_config_error():
    with pytest.raises(ConfigError, match="flip_pairs"):
        LandmarkAugment(horizontal_flip=True)(torch.rand(2, 1, 4, 4), torch.rand(2, 3, 2))
