"""Landmark losses that skip points without ground truth, and the per-face normalisers.

Predictions and targets are ``(N, K, 2)`` tensors of ``(x, y)`` points. A target point
is *missing* when it is ``NaN`` (how lightning-hw datamodules mark it) or exactly
``(0, 0)`` (how MUCT and the E6 reports mark it). Missing points contribute nothing:
not to the loss value, and no gradient to their predictions, so a network is never
pulled towards the corner of the image where a marker happens to sit.

Losses (all means over the present points, or coordinates, of the batch):

``distance``  the reports' loss: mean Euclidean distance between predicted and true points
``l1``        mean absolute coordinate error (the reports' "per-axis L1 normalised by W and H")
``l2``        mean squared coordinate error
``wing``      Wing loss (Feng et al., CVPR 2018): logarithmic for small errors, L1 for large

With ``normalize=True`` each face's errors are divided by its inter-ocular distance
(or its bounding-box diagonal when the dataset names no eyes), the reports' "distance
normalised by the inter-ocular distance l"; faces whose normaliser cannot be computed
(an eye not annotated) are left out of the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from lightning_hw.errors import ConfigError

LOSSES = ("distance", "l1", "l2", "wing")


def landmark_mask(target: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` bool: the points whose ground truth is present (finite and not ``(0, 0)``)."""
    finite = torch.isfinite(target).all(dim=-1)
    at_origin = (target == 0).all(dim=-1)
    return finite & ~at_origin


def face_normalizer(
    target: torch.Tensor, mask: torch.Tensor, eye_indices: Sequence[Sequence[int]] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The length each face's errors are divided by, and whether it exists.

    Args:
        target: ``(N, K, 2)`` true points.
        mask: ``(N, K)`` present points (:func:`landmark_mask`).
        eye_indices: ``(left, right)`` lists of point indices whose means are the eye
            centres; the normaliser is the distance between the centres (inter-ocular).
            ``None``: the diagonal of the bounding box of the present points.

    Returns:
        ``(norm, valid)``, both ``(N,)``: ``valid`` is false where an eye point is missing,
        fewer than two points are present, or the length is 0.
    """
    filled = torch.where(mask.unsqueeze(-1), target, torch.zeros_like(target))
    if eye_indices is not None:
        left, right = (list(map(int, side)) for side in eye_indices)
        valid = mask[:, left].all(dim=1) & mask[:, right].all(dim=1)
        norm = torch.linalg.vector_norm(filled[:, left].mean(dim=1) - filled[:, right].mean(dim=1), dim=-1)
    else:
        big = torch.finfo(target.dtype).max
        low = torch.where(mask.unsqueeze(-1), filled, torch.full_like(filled, big)).amin(dim=1)
        high = torch.where(mask.unsqueeze(-1), filled, torch.full_like(filled, -big)).amax(dim=1)
        valid = mask.sum(dim=1) >= 2
        norm = torch.where(valid, torch.linalg.vector_norm(high - low, dim=-1), torch.zeros_like(low[:, 0]))
    valid = valid & (norm > 0)
    return torch.where(valid, norm, torch.ones_like(norm)), valid


def point_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(N, K, 2)`` prediction minus target, exactly 0 (and without gradient) where the target is missing."""
    safe_target = torch.where(mask.unsqueeze(-1), target, pred.detach())
    return torch.where(mask.unsqueeze(-1), pred - safe_target, torch.zeros_like(pred))


def wing(error: torch.Tensor, width: float, curvature: float) -> torch.Tensor:
    """Wing loss of absolute coordinate errors: ``w ln(1 + |x|/eps)`` below ``w``, ``|x| - C`` above.

    Args:
        error: coordinate errors (any shape).
        width: ``w``, where the log part turns linear (in the units of the coordinates).
        curvature: ``eps``, how sharply the log part bends.
    """
    x = error.abs()
    c = width - width * math.log1p(width / curvature)
    return torch.where(x < width, width * torch.log1p(x / curvature), x - c)


class LandmarkLoss:
    """A masked landmark loss by name; call it with ``(pred, target)`` of shape ``(N, K, 2)``.

    Args:
        name: ``distance``, ``l1``, ``l2`` or ``wing``.
        normalize: divide each face's errors by its inter-ocular distance (bounding-box
            diagonal without ``eye_indices``).
        eye_indices: ``(left, right)`` eye point indices, for ``normalize``.
        wing_width: Wing loss ``w``, in target units (0.04 of the image for (0, 1) targets:
            about the paper's 10 pixels on 256-pixel faces).
        wing_curvature: Wing loss ``eps`` (paper: 2 pixels of 256, so about 0.008).
    """

    def __init__(
        self,
        name: str = "distance",
        normalize: bool = False,
        eye_indices: Sequence[Sequence[int]] | None = None,
        wing_width: float = 0.04,
        wing_curvature: float = 0.008,
    ) -> None:
        if name not in LOSSES:
            raise ConfigError(f"unknown landmark loss {name!r}; choose one of {', '.join(LOSSES)}")
        if wing_width <= 0 or wing_curvature <= 0:
            raise ConfigError("wing_width and wing_curvature must be > 0")
        self.name = name
        self.normalize = normalize
        self.eye_indices = eye_indices
        per_point: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            # vector_norm's gradient at a zero vector is 0, so exact hits and masked points stay finite.
            "distance": lambda e: torch.linalg.vector_norm(e, dim=-1),
            "l1": lambda e: e.abs().mean(dim=-1),
            "l2": lambda e: e.square().mean(dim=-1),
            "wing": lambda e: wing(e, wing_width, wing_curvature).mean(dim=-1),
        }
        self._per_point = per_point[name]

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask = landmark_mask(target)
        errors = point_errors(pred, target, mask)
        if self.normalize:
            norm, valid = face_normalizer(target, mask, self.eye_indices)
            errors = errors / norm.detach().view(-1, 1, 1)
            mask = mask & valid.unsqueeze(1)
        weights = mask.to(pred.dtype)
        # Means over present points; a batch without any gives 0 (still connected to the graph).
        return (self._per_point(errors) * weights).sum() / weights.sum().clamp_min(1.0)
