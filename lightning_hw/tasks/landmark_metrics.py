"""Landmark metrics as torchmetrics ``Metric``s: NME and PCK, skipping missing points.

Both take ``(N, K, 2)`` predicted and true points *in pixels* (so that a non-square
image does not stretch distances) and normalise every face's errors by a length of that
face (:func:`~lightning_hw.nets.landmark_losses.face_normalizer`): the inter-ocular
distance when the dataset names its eye points, else the diagonal of the bounding box
of the annotated points.

* NME (normalised mean error): per face, the mean over its annotated points of
  ``|pred - true| / norm``; then the mean over faces.
* PCK@t (percentage of correct keypoints): the fraction of annotated points with
  ``|pred - true| / norm < t``.

Missing points (``NaN`` or ``(0, 0)``) count in neither; a face without a normaliser (an
eye not annotated) or without any annotated point is left out and counted in ``skipped``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from lightning_hw.nets.landmark_losses import face_normalizer, landmark_mask


def normalized_errors(
    pred: torch.Tensor, target: torch.Tensor, eye_indices: Sequence[Sequence[int]] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point errors divided by the face's normaliser, and which of them count.

    Returns:
        ``(errors, counted)``, both ``(N, K)``.
    """
    mask = landmark_mask(target)
    norm, valid = face_normalizer(target, mask, eye_indices)
    diff = torch.where(mask.unsqueeze(-1), pred - target, torch.zeros_like(pred))
    errors = torch.linalg.vector_norm(diff, dim=-1) / norm.unsqueeze(1)
    return errors, mask & valid.unsqueeze(1)


def face_nme(pred: torch.Tensor, target: torch.Tensor, eye_indices: Sequence[Sequence[int]] | None) -> torch.Tensor:
    """The NME of every face ``(N,)``: the mean normalised error of its annotated points.

    ``NaN`` for a face that :class:`NME` leaves out (no annotated point, or no normaliser).
    """
    errors, counted = normalized_errors(pred.detach().float(), target.float(), eye_indices)
    points = counted.sum(dim=1)
    per_face = (errors * counted).sum(dim=1) / points.clamp_min(1)
    return torch.where(points > 0, per_face, torch.full_like(per_face, float("nan")))


class NME(Metric):
    """Normalised mean error over faces (lower is better).

    Args:
        eye_indices: ``(left, right)`` eye point indices (inter-ocular normalisation);
            ``None`` for the bounding-box diagonal.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, eye_indices: Sequence[Sequence[int]] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eye_indices = [list(side) for side in eye_indices] if eye_indices is not None else None
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("faces", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("skipped", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        per_face = face_nme(pred, target, self.eye_indices)
        faces = ~per_face.isnan()
        self.total += per_face[faces].sum().double()
        self.faces += faces.sum()
        self.skipped += (~faces).sum()

    def compute(self) -> torch.Tensor:
        if self.faces == 0:
            return torch.tensor(float("nan"))
        return (self.total / self.faces).float()


class PCK(Metric):
    """Fraction of annotated points within ``threshold`` normalised distance (higher is better).

    Args:
        threshold: the normalised distance below which a point is correct (0.05, 0.1...).
        eye_indices: as for :class:`NME`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.1, eye_indices: Sequence[Sequence[int]] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.eye_indices = [list(side) for side in eye_indices] if eye_indices is not None else None
        self.add_state("hits", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("points", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        errors, counted = normalized_errors(pred.detach().float(), target.float(), self.eye_indices)
        self.hits += ((errors < self.threshold) & counted).sum()
        self.points += counted.sum()

    def compute(self) -> torch.Tensor:
        if self.points == 0:
            return torch.tensor(float("nan"))
        return self.hits.double().div(self.points).float()
