"""Masked landmark losses: missing points change neither the loss nor any gradient; values by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_hw.errors import ConfigError
from lightning_hw.nets.landmark_losses import LOSSES, LandmarkLoss, face_normalizer, landmark_mask, wing

EYES = ([0], [1])


def batch(missing: str):
    """Two faces of three points; point 2 of face 0 and point 1 of face 1 are missing."""
    target = torch.tensor(
        [[[0.2, 0.3], [0.6, 0.3], [0.4, 0.7]], [[0.1, 0.2], [0.5, 0.2], [0.3, 0.6]]], dtype=torch.float64
    )
    marker = math.nan if missing == "nan" else 0.0
    target[0, 2] = marker
    target[1, 1] = marker
    pred = torch.tensor(
        [[[0.25, 0.3], [0.6, 0.2], [0.9, 0.9]], [[0.1, 0.2], [0.1, 0.1], [0.3, 0.66]]], dtype=torch.float64
    )
    return pred, target


@pytest.mark.parametrize("missing", ["nan", "zero"])
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("normalize", [False, True])
def test_missing_points_change_neither_loss_nor_gradient(name, missing, normalize):
    pred, target = batch(missing)
    loss_fn = LandmarkLoss(name, normalize=normalize, eye_indices=EYES if normalize else None)
    values, grads = [], []
    for moved in (pred[0, 2].tolist(), [-3.0, 7.0]):  # move the prediction of a missing point
        p = pred.clone()
        p[0, 2] = torch.tensor(moved, dtype=p.dtype)
        p.requires_grad_(True)
        loss = loss_fn(p, target)
        loss.backward()
        values.append(loss.detach())
        grads.append(p.grad.clone())
    assert torch.isfinite(values[0])
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(grads[0], grads[1])
    assert torch.isfinite(grads[0]).all()
    assert (grads[0][0, 2] == 0).all() and (grads[0][1, 1] == 0).all()
    # ...while a present point's prediction does move the loss.
    p = pred.clone()
    p[0, 0, 0] += 0.1
    assert loss_fn(p, target) != values[0]


def test_distance_loss_is_the_mean_euclidean_distance_over_present_points():
    pred, target = batch("nan")
    # Present points: face 0 -> 0.05, 0.1; face 1 -> 0, (missing), 0.06.
    expected = (0.05 + 0.1 + 0.0 + 0.06) / 4
    torch.testing.assert_close(LandmarkLoss("distance")(pred, target), torch.tensor(expected, dtype=torch.float64))
    l1 = (0.05 + 0 + 0 + 0.1 + 0 + 0 + 0 + 0.06) / 8
    torch.testing.assert_close(LandmarkLoss("l1")(pred, target), torch.tensor(l1, dtype=torch.float64))
    l2 = (0.05**2 + 0.1**2 + 0.06**2) / 8
    torch.testing.assert_close(LandmarkLoss("l2")(pred, target), torch.tensor(l2, dtype=torch.float64))


def test_inter_ocular_normalisation_divides_each_face_by_its_eye_distance():
    pred, target = batch("nan")
    # Face 0's eyes are 0.4 apart; face 1's right eye is missing, so face 1 drops out.
    loss = LandmarkLoss("distance", normalize=True, eye_indices=EYES)(pred, target)
    torch.testing.assert_close(loss, torch.tensor((0.05 / 0.4 + 0.1 / 0.4) / 2, dtype=torch.float64))
    norm, valid = face_normalizer(target, landmark_mask(target), EYES)
    assert valid.tolist() == [True, False]
    # Without eye indices: the bounding-box diagonal of the present points.
    norm, valid = face_normalizer(target, landmark_mask(target), None)
    torch.testing.assert_close(norm, torch.tensor([0.4, math.hypot(0.2, 0.4)], dtype=torch.float64))


def test_wing_is_logarithmic_then_linear_and_continuous():
    w, eps = 0.04, 0.008
    x = torch.tensor([0.0, 0.01, w, 0.1])
    values = wing(x, w, eps)
    assert values[0] == 0
    torch.testing.assert_close(values[1], torch.tensor(w * math.log1p(0.01 / eps)))
    torch.testing.assert_close(wing(torch.tensor(w - 1e-6), w, eps), wing(torch.tensor(w + 1e-6), w, eps), atol=1e-5, rtol=0)
    torch.testing.assert_close(values[3] - values[2], torch.tensor(0.1 - w))  # slope 1 beyond w


def test_a_batch_without_any_annotation_gives_zero_loss_that_still_backpropagates():
    pred = torch.rand(2, 3, 2, requires_grad=True)
    loss = LandmarkLoss("distance")(pred, torch.full((2, 3, 2), math.nan))
    loss.backward()
    assert loss.item() == 0 and torch.equal(pred.grad, torch.zeros_like(pred))


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError, match="distance, l1, l2, wing"):
        LandmarkLoss("huber")
