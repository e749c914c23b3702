"""NME and PCK against hand computations, with missing points and faces without a normaliser."""

from __future__ import annotations

import math

import torch

from lightning_hw.tasks.landmark_metrics import NME, PCK

EYES = ([0], [1])
NAN = math.nan


def faces():
    """Three faces of four points in pixels; face C has no right eye (no inter-ocular distance)."""
    target = torch.tensor(
        [
            [[10, 20], [30, 20], [20, 30], [NAN, NAN]],  # A: eyes 20 px apart, point 3 missing
            [[50, 50], [80, 90], [65, 100], [65, 120]],  # B: eyes 50 px apart
            [[10, 10], [NAN, NAN], [20, 20], [20, 30]],  # C
        ]
    )
    pred = target.nan_to_num(5.0).clone()
    pred[0, 0] += torch.tensor([0.5, 0.0])  # A: errors 0.5, 0, 5 -> normalised 0.025, 0, 0.25
    pred[0, 2] += torch.tensor([3.0, 4.0])
    pred[1, 0] += torch.tensor([0.0, 1.0])  # B: errors 1, 4, 0, 0 -> normalised 0.02, 0.08, 0, 0
    pred[1, 1] += torch.tensor([4.0, 0.0])
    pred[2] += 7.0  # C: large errors, but C cannot be normalised by its eyes
    return pred, target


def test_nme_by_hand_inter_ocular():
    pred, target = faces()
    metric = NME(EYES)
    metric.update(pred, target)
    nme_a = (0.5 + 0 + 5) / 3 / 20
    nme_b = (1 + 4 + 0 + 0) / 4 / 50
    torch.testing.assert_close(metric.compute(), torch.tensor((nme_a + nme_b) / 2))
    assert metric.skipped == 1 and metric.faces == 2


def test_nme_by_hand_bounding_box_diagonal_without_eye_indices():
    pred, target = faces()
    metric = NME(None)
    metric.update(pred[:1], target[:1])
    diagonal = math.hypot(30 - 10, 30 - 20)  # box of the three present points of A
    torch.testing.assert_close(metric.compute(), torch.tensor((0.5 + 0 + 5) / 3 / diagonal))


def test_pck_counts_present_points_under_the_threshold():
    pred, target = faces()
    pck10, pck05 = PCK(0.1, EYES), PCK(0.05, EYES)
    for metric in (pck10, pck05):
        metric.update(pred, target)
    # Normalised errors of the 7 counted points: A 0.025, 0, 0.25; B 0.02, 0.08, 0, 0.
    torch.testing.assert_close(pck10.compute(), torch.tensor(6 / 7))
    torch.testing.assert_close(pck05.compute(), torch.tensor(5 / 7))


def test_metrics_accumulate_over_batches_like_one_batch():
    pred, target = faces()
    whole, parts = NME(EYES), NME(EYES)
    whole.update(pred, target)
    parts.update(pred[:1], target[:1])
    parts.update(pred[1:], target[1:])
    torch.testing.assert_close(parts.compute(), whole.compute())


def test_zero_zero_targets_are_missing_too():
    pred, target = faces()
    zeros = target.clone()
    zeros[0, 3] = 0.0  # MUCT's "unavailable" marker instead of NaN
    a, b = NME(EYES), NME(EYES)
    a.update(pred, target)
    b.update(pred, zeros)
    torch.testing.assert_close(a.compute(), b.compute())


def test_no_countable_face_gives_nan_not_an_error():
    metric = NME(EYES)
    metric.update(torch.zeros(1, 2, 2), torch.full((1, 2, 2), NAN))
    assert math.isnan(metric.compute().item())
