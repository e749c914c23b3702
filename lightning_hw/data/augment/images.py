"""Random image augmentation on whole batches: what Keras ``ImageDataGenerator`` offered.

The reports augmented with ``ImageDataGenerator(rotation_range=..., width_shift_range=...,
zoom_range=..., horizontal_flip=...)``. :class:`Augment` takes the same settings (in YAML:
``augment: {rotation: 15, horizontal_flip: true}``) and applies them to a whole batch at once,
with a *different* random transform for every image.

Why not ``torchvision.transforms.v2.RandomAffine`` directly: a v2 transform draws one set of
random parameters per call, so on a batch tensor every image gets the same rotation, and
calling it once per image is a Python loop per sample. The geometry below is torchvision's
own (:func:`torchvision.transforms.v2.functional.affine`: the same inverse matrix, sampling
grid and ``grid_sample`` call), vectorised over a per-image parameter batch; the test suite
checks that both give the same image for the same parameters. :meth:`Augment.to_v2` returns
the equivalent per-image v2 pipeline for code that works on single images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lightning_hw.errors import ConfigError

#: Keras ``fill_mode`` -> ``grid_sample`` padding mode (Keras' default is "nearest").
FILL_MODES = {"nearest": "border", "constant": "zeros", "reflect": "reflection"}


def affine_batch(
    images: torch.Tensor,
    angle: torch.Tensor,
    translate: torch.Tensor,
    scale: torch.Tensor,
    shear: torch.Tensor,
    padding_mode: str = "zeros",
    mode: str = "bilinear",
) -> torch.Tensor:
    """Apply one affine transform per image, with torchvision's conventions.

    Args:
        images: float images ``(N, C, H, W)``.
        angle: ``(N,)`` rotation in degrees (counter-clockwise, as in torchvision).
        translate: ``(N, 2)`` shift in pixels ``(dx, dy)``.
        scale: ``(N,)`` zoom factor (> 1 enlarges).
        shear: ``(N,)`` shear along x in degrees.
        padding_mode: how pixels from outside the image are filled (``grid_sample``'s
            ``zeros``, ``border`` or ``reflection``).
        mode: ``bilinear`` or ``nearest``.

    Returns:
        The transformed images, same shape and dtype.
    """
    n, _, h, w = images.shape
    dtype = images.dtype if images.is_floating_point() else torch.float32
    device = images.device
    rot = torch.deg2rad(angle.to(device, dtype))
    sx = torch.deg2rad(shear.to(device, dtype))
    scale = scale.to(device, dtype)
    translate = translate.to(device, dtype)
    # torchvision's rotate-scale-shear matrix (y-shear 0), inverted and divided by the scale.
    a = torch.cos(rot)
    b = -torch.cos(rot) * torch.tan(sx) - torch.sin(rot)
    c = torch.sin(rot)
    d = -torch.sin(rot) * torch.tan(sx) + torch.cos(rot)
    inv = torch.stack([d, -b, -c, a], dim=-1).view(n, 2, 2) / scale.view(n, 1, 1)
    offset = -(inv @ translate.view(n, 2, 1))
    theta = torch.cat([inv, offset], dim=-1)  # (N, 2, 3), centred pixel coordinates
    # Output pixel centres in centred pixel coordinates, as torchvision's _affine_grid builds them.
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=device, dtype=dtype)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=device, dtype=dtype)
    base = torch.stack([xs.expand(h, w), ys.view(h, 1).expand(h, w), torch.ones(h, w, device=device, dtype=dtype)], -1)
    grid = base.view(1, h * w, 3) @ theta.transpose(1, 2)
    grid = grid / torch.tensor([0.5 * w, 0.5 * h], device=device, dtype=dtype)
    out = F.grid_sample(images.to(dtype), grid.view(n, h, w, 2), mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.to(images.dtype) if images.is_floating_point() else out.round().clamp(0, 255).to(images.dtype)




def v2_random_affine(settings: Any) -> Any:
    """torchvision's ``v2.RandomAffine`` for Keras-style settings.

    Args:
        settings: anything with ``rotation`` (degrees), ``width_shift``, ``height_shift``
            (fractions), ``zoom`` (fraction) and ``shear`` (degrees), e.g. :class:`Augment`.
    """
    from torchvision.transforms import v2

    shifts = (settings.width_shift, settings.height_shift)
    return v2.RandomAffine(
        degrees=settings.rotation,
        translate=shifts if any(shifts) else None,
        scale=(1 - settings.zoom, 1 + settings.zoom) if settings.zoom else None,
        shear=settings.shear or None,
        interpolation=v2.InterpolationMode.BILINEAR,
    )


@dataclass
class Augment:
    """Random per-image transforms in the spirit of Keras ``ImageDataGenerator``.

    Every range is symmetric and drawn independently for each image; 0 / ``False``
    switches a transform off.

    Args:
        rotation: maximum rotation in degrees (``rotation_range``).
        width_shift: maximum horizontal shift as a fraction of the width (``width_shift_range``).
        height_shift: maximum vertical shift as a fraction of the height (``height_shift_range``).
        zoom: zoom factor drawn from ``[1 - zoom, 1 + zoom]`` (``zoom_range``; one factor for
            both axes, as torchvision's ``RandomAffine(scale=...)``).
        shear: maximum shear angle in degrees (``shear_range``).
        horizontal_flip: flip left-right with probability 1/2.
        vertical_flip: flip upside-down with probability 1/2.
        brightness: multiply intensities by a factor from ``[1 - brightness, 1 + brightness]``.
        fill_mode: pixels that come from outside the image: ``nearest`` (repeat the edge,
            Keras' default), ``constant`` (black) or ``reflect``.
    """

    rotation: float = 0.0
    width_shift: float = 0.0
    height_shift: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness: float = 0.0
    fill_mode: str = "nearest"

    def __post_init__(self) -> None:
        if self.fill_mode not in FILL_MODES:
            raise ConfigError(f"augment.fill_mode must be one of {', '.join(FILL_MODES)}, got {self.fill_mode!r}")
        for name in ("rotation", "width_shift", "height_shift", "zoom", "shear", "brightness"):
            if getattr(self, name) < 0:
                raise ConfigError(f"augment.{name} is a range and must be >= 0, got {getattr(self, name)}")
        if self.zoom >= 1 or self.brightness >= 1:
            raise ConfigError("augment.zoom and augment.brightness must be < 1 (factors come from [1 - x, 1 + x])")

    @property
    def geometric(self) -> bool:
        """Whether an affine warp is needed (rotation, shift, zoom or shear)."""
        return any((self.rotation, self.width_shift, self.height_shift, self.zoom, self.shear))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform a batch ``(N, C, H, W)``, each image with its own random draw.

        Args:
            images: float images in [0, 1] (or uint8; the result keeps the dtype).
            generator: CPU random source (for reproducible offline expansion); the global
                one (seeded by ``seed_everything``) if ``None``.
        """
        n, _, h, w = images.shape

        def uniform(*shape: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
            # Parameters are drawn on the CPU (tiny) so one generator serves every device.
            return (torch.rand(*shape, generator=generator) * (high - low) + low).to(images.device)

        if self.geometric:
            images = affine_batch(
                images,
                angle=uniform(n) * self.rotation,
                translate=uniform(n, 2) * torch.tensor([self.width_shift * w, self.height_shift * h]).to(images.device),
                scale=uniform(n, low=1 - self.zoom, high=1 + self.zoom),
                shear=uniform(n) * self.shear,
                padding_mode=FILL_MODES[self.fill_mode],
            )
        if self.horizontal_flip:
            flip = uniform(n, low=0.0) < 0.5
            images = torch.where(flip.view(n, 1, 1, 1), images.flip(-1), images)
        if self.vertical_flip:
            flip = uniform(n, low=0.0) < 0.5
            images = torch.where(flip.view(n, 1, 1, 1), images.flip(-2), images)
        if self.brightness:
            factor = uniform(n, low=1 - self.brightness, high=1 + self.brightness).view(n, 1, 1, 1)
            top = 255 if images.dtype == torch.uint8 else 1.0
            images = (images.float() * factor).clamp(0, top).to(images.dtype)
        return images

    def to_v2(self):
        """The same random transforms as a per-image ``torchvision.transforms.v2`` pipeline.

        Differences: v2 shifts by whole pixels and fills with a constant (no ``nearest`` edge mode).
        """
        from torchvision.transforms import v2

        steps = []
        if self.geometric:
            steps.append(v2_random_affine(self))
        if self.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        if self.vertical_flip:
            steps.append(v2.RandomVerticalFlip())
        if self.brightness:
            steps.append(v2.ColorJitter(brightness=self.brightness))
        return v2.Compose(steps)


def expand_offline(images: torch.Tensor, augment: Augment, copies: int, seed: int, chunk: int = 1024) -> torch.Tensor:
    """The E3(a) offline expansion: ``copies`` augmented versions of every image, after the originals.

    Args:
        images: the training images ``(N, C, H, W)`` (uint8 or float).
        augment: the random transforms.
        copies: how many transformed copies of each image to add (8 in E3).
        seed: seed of the draws, so the expanded set is the same in every run.
        chunk: images transformed at once (bounds the memory of the sampling grids).

    Returns:
        ``(N * (copies + 1), C, H, W)``: the originals, then copy 1 of every image, copy 2, ...
    """
    generator = torch.Generator().manual_seed(seed)
    parts = [images]
    for _ in range(copies):
        parts.extend(augment(images[i : i + chunk], generator=generator) for i in range(0, images.shape[0], chunk))
    return torch.cat(parts)
