"""Random augmentation that moves landmarks with the image, on whole batches.

Coordinates are *continuous* pixel coordinates: an image of width ``W`` spans
``[0, W]``, pixel ``i`` covers ``[i, i + 1]``. That is the convention in which a resize
multiplies coordinates by the size ratio (as ``torchvision.transforms.v2`` does for
``tv_tensors.KeyPoints``), a horizontal flip maps ``x`` to ``W - x``, and normalised
coordinates are simply ``x / W`` and ``y / H``. A missing landmark is ``NaN``.

Three things differ from image-only augmentation (:class:`~lightning_hw.data.augment.images.Augment`):

* every image's random affine warp is applied to its points too (the forward matrix
  of the same transform :func:`~lightning_hw.data.augment.images.affine_batch` inverts; the
  test suite checks it against ``torchvision.transforms.v2.functional.affine`` on
  ``KeyPoints``);
* a horizontal flip also *renumbers* the points: the subject's left eye becomes the
  viewer's left eye of the mirrored face, so index ``i`` takes the point of its mirror
  partner (each dataset declares its ``flip_pairs``);
* points pushed off the canvas become missing (``NaN``), so the loss ignores them instead
  of learning to predict positions outside the image.

Why not ``torchvision.transforms.v2.RandomAffine`` directly: it draws one set of
parameters per call, so a batch would share one transform, and calling it per image is
a Python loop per sample. :meth:`LandmarkAugment.to_v2` returns the per-image v2
pipeline (with :class:`RandomHorizontalFlipWithPairs`) for code that works on single
``(image, KeyPoints)`` samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from lightning_hw.data.augment.images import FILL_MODES, affine_batch, v2_random_affine
from lightning_hw.errors import ConfigError


def flip_permutation(num_landmarks: int, flip_pairs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Index map of a mirrored face: point ``i`` of the flipped image is point ``perm[i]`` of the original.

    Args:
        num_landmarks: number of points.
        flip_pairs: ``(left, right)`` index pairs that swap under a horizontal flip;
            points in no pair (nose tip, chin) keep their index.

    Raises:
        ConfigError: an index is out of range, paired with itself, or appears in two pairs.
    """
    perm = list(range(num_landmarks))
    seen: set[int] = set()
    for pair in flip_pairs:
        if len(pair) != 2:
            raise ConfigError(f"flip_pairs entries are [left, right] index pairs, got {list(pair)}")
        a, b = int(pair[0]), int(pair[1])
        if a == b:  # else said to be "in two flip pairs"
            raise ConfigError(
                f"flip pair {[a, b]} pairs point {a} with itself; leave it out: a point in no pair (nose tip, chin) keeps its index"
            )
        for i in (a, b):
            if not 0 <= i < num_landmarks:
                raise ConfigError(f"flip pair {[a, b]} names point {i}, but there are {num_landmarks} landmarks")
            if i in seen:
                raise ConfigError(f"landmark {i} appears in two flip pairs")
            seen.add(i)
        perm[a], perm[b] = b, a
    return torch.tensor(perm, dtype=torch.long)


def forward_affine_matrix(
    angle: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor, shear: torch.Tensor
) -> torch.Tensor:
    """The ``(N, 2, 3)`` matrices that move points as :func:`affine_batch` moves pixels.

    They act on coordinates centred on the image centre ``(W / 2, H / 2)``: ``p' = A p + t``
    with ``A = scale * R(angle) @ Shear(shear)`` in torchvision's convention.
    """
    rot = torch.deg2rad(angle)
    sx = torch.deg2rad(shear)
    a = torch.cos(rot)
    b = -torch.cos(rot) * torch.tan(sx) - torch.sin(rot)
    c = torch.sin(rot)
    d = -torch.sin(rot) * torch.tan(sx) + torch.cos(rot)
    linear = torch.stack([a, b, c, d], dim=-1).view(-1, 2, 2) * scale.view(-1, 1, 1)
    return torch.cat([linear, translate.view(-1, 2, 1)], dim=-1)


def affine_points(points: torch.Tensor, matrix: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Apply per-image forward matrices to ``(N, K, 2)`` continuous pixel coordinates.

    Args:
        points: landmarks in pixels (``NaN`` stays ``NaN``).
        matrix: ``(N, 2, 3)`` from :func:`forward_affine_matrix`.
        size: ``(H, W)`` of the images.
    """
    h, w = size
    centre = torch.tensor([w * 0.5, h * 0.5], dtype=points.dtype, device=points.device)
    matrix = matrix.to(points.device, points.dtype)
    centred = points - centre
    moved = centred @ matrix[:, :, :2].transpose(1, 2) + matrix[:, :, 2].unsqueeze(1)
    return moved + centre


def mark_off_canvas(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Set points outside ``[0, W] x [0, H]`` to ``NaN`` (both coordinates)."""
    h, w = size
    inside = (points[..., 0] >= 0) & (points[..., 0] <= w) & (points[..., 1] >= 0) & (points[..., 1] <= h)
    return torch.where(inside.unsqueeze(-1), points, torch.full_like(points, math.nan))


def hflip_points(points: torch.Tensor, width: int, permutation: torch.Tensor) -> torch.Tensor:
    """Mirror ``(..., K, 2)`` points left-right and renumber them by ``permutation``."""
    flipped = points.clone()
    flipped[..., 0] = width - points[..., 0]
    return flipped[..., permutation.to(points.device), :]


@dataclass
class LandmarkAugment:
    """Random per-image transforms that keep landmarks on the features they mark.

    Every range is symmetric and drawn independently for each image; 0 / ``False``
    switches a transform off. The settings follow Keras ``ImageDataGenerator`` (as
    :class:`~lightning_hw.data.augment.images.Augment` does).

    Args:
        rotation: maximum rotation in degrees.
        width_shift: maximum horizontal shift as a fraction of the width.
        height_shift: maximum vertical shift as a fraction of the height.
        zoom: zoom factor drawn from ``[1 - zoom, 1 + zoom]``.
        shear: maximum shear angle in degrees.
        horizontal_flip: mirror with probability 1/2, swapping left/right point indices
            (needs the dataset's ``flip_pairs``).
        brightness: multiply intensities by a factor from ``[1 - brightness, 1 + brightness]``.
        contrast: scale each image's deviation from its mean by a factor from
            ``[1 - contrast, 1 + contrast]``.
        fill_mode: pixels that come from outside the image: ``constant`` (black),
            ``nearest`` (repeat the edge) or ``reflect``. ``constant`` is the default here
            because a reflected border can show a second, mirrored eye next to the real one.
    """

    rotation: float = 0.0
    width_shift: float = 0.0
    height_shift: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    horizontal_flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    fill_mode: str = "constant"

    def __post_init__(self) -> None:
        if self.fill_mode not in FILL_MODES:
            raise ConfigError(f"augment.fill_mode must be one of {', '.join(FILL_MODES)}, got {self.fill_mode!r}")
        for name in ("rotation", "width_shift", "height_shift", "zoom", "shear", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise ConfigError(f"augment.{name} is a range and must be >= 0, got {getattr(self, name)}")
        if self.zoom >= 1 or self.brightness >= 1 or self.contrast >= 1:
            raise ConfigError("augment.zoom, brightness and contrast must be < 1 (factors come from [1 - x, 1 + x])")

    @property
    def geometric(self) -> bool:
        """Whether an affine warp is needed."""
        return any((self.rotation, self.width_shift, self.height_shift, self.zoom, self.shear))

    def __call__(
        self,
        images: torch.Tensor,
        points: torch.Tensor,
        permutation: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform a batch, each image (and its points) with its own random draw.

        Args:
            images: float images ``(N, C, H, W)`` in [0, 1].
            points: ``(N, K, 2)`` landmarks in continuous pixel coordinates, ``NaN`` = missing.
            permutation: the dataset's :func:`flip_permutation` (required for ``horizontal_flip``).
            generator: CPU random source; the global one (seeded by ``seed_everything``) if ``None``.

        Returns:
            ``(images, points)``; points that left the canvas are ``NaN``.
        """
        n, _, h, w = images.shape

        def uniform(*shape: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
            return torch.rand(*shape, generator=generator) * (high - low) + low

        if self.geometric:
            angle = uniform(n) * self.rotation
            translate = uniform(n, 2) * torch.tensor([self.width_shift * w, self.height_shift * h])
            scale = uniform(n, low=1 - self.zoom, high=1 + self.zoom)
            shear = uniform(n) * self.shear
            images = affine_batch(images, angle, translate, scale, shear, padding_mode=FILL_MODES[self.fill_mode])
            points = affine_points(points, forward_affine_matrix(angle, translate, scale, shear), (h, w))
        if self.horizontal_flip:
            if permutation is None:
                raise ConfigError("horizontal_flip needs the dataset's flip_pairs (which points swap when mirrored)")
            flip = (uniform(n, low=0.0) < 0.5).to(images.device)
            images = torch.where(flip.view(n, 1, 1, 1), images.flip(-1), images)
            points = torch.where(flip.view(n, 1, 1), hflip_points(points, w, permutation), points)
        if self.brightness or self.contrast:
            factor = uniform(n, low=1 - self.brightness, high=1 + self.brightness).to(images.device).view(n, 1, 1, 1)
            spread = uniform(n, low=1 - self.contrast, high=1 + self.contrast).to(images.device).view(n, 1, 1, 1)
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = ((images - mean) * spread + mean) * factor
            images = images.clamp(0.0, 1.0)
        return images, mark_off_canvas(points, (h, w))

    def to_v2(self, flip_pairs: Sequence[Sequence[int]] = ()) -> Any:
        """The same random transforms as a per-sample ``torchvision.transforms.v2`` pipeline.

        Call it on ``(tv_tensors.Image, tv_tensors.KeyPoints)``. v2 does not mark points
        that leave the canvas; :func:`mark_off_canvas` does that afterwards.

        Args:
            flip_pairs: the dataset's flip pairs, for the horizontal flip.
        """
        steps: list[Any] = []
        if self.geometric:
            steps.append(v2_random_affine(self))
        if self.horizontal_flip:
            steps.append(RandomHorizontalFlipWithPairs(flip_pairs))
        if self.brightness or self.contrast:
            steps.append(v2.ColorJitter(brightness=self.brightness, contrast=self.contrast))
        return v2.Compose(steps)


class RandomHorizontalFlipWithPairs(v2.Transform):
    """``v2.RandomHorizontalFlip`` that also renumbers ``KeyPoints`` by their flip pairs.

    The points are mirrored in the continuous convention (``x -> W - x``), consistent
    with :func:`hflip_points`, and their last-but-one dimension is permuted.

    Args:
        flip_pairs: ``(left, right)`` index pairs.
        p: probability of flipping.
    """

    def __init__(self, flip_pairs: Sequence[Sequence[int]], p: float = 0.5) -> None:
        super().__init__()
        self.flip_pairs = [tuple(pair) for pair in flip_pairs]
        self.p = p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"flip": bool(torch.rand(()) < self.p)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["flip"]:
            return inpt
        if isinstance(inpt, tv_tensors.KeyPoints):
            perm = flip_permutation(inpt.shape[-2], self.flip_pairs)
            out = hflip_points(inpt.as_subclass(torch.Tensor), inpt.canvas_size[1], perm)
            return tv_tensors.wrap(out, like=inpt)
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Video)) or (
            isinstance(inpt, torch.Tensor) and type(inpt) is torch.Tensor
        ):
            return TF.horizontal_flip(inpt)
        return inpt
