"""Synthetic face drawings with exact landmarks: a landmark set that needs no download.

Each image is a cartoon face (head, hair, eyebrows, eyes with irises, nose, mouth) drawn
at a random position, size, in-plane rotation and slight head turn, in random colours and
lighting, over a cluttered background with random blobs and pixel noise. The landmarks are
the points the drawing was made from, so the ground truth is exact:

    0 left eye centre, 1 right eye centre, 2 nose tip, 3 left mouth corner,
    4 right mouth corner (CelebA's five, left/right from the viewer), then
    ``contour_points`` points along the jaw from the left temple to the right.

Some labels are dropped at random (``missing_rate``, like MUCT's unannotated points)
and points that fall off the canvas are missing too; missing points are ``NaN``.

Nothing here is a fixed template a network could memorise: the face moves over about
a quarter of the image, its size varies by ~1.5x and its rotation by +-``rotation``
degrees, so predicting the mean shape is far off (the task reports that baseline's NME
next to the model's) and a network has to find the eyes, nose and mouth in the pixels.
Drawing is vectorised over a batch of faces (anti-aliased shapes from distance fields),
so thousands of faces take seconds.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lightning_hw.data.base import Split
from lightning_hw.data.augment.landmarks import mark_off_canvas
from lightning_hw.data.landmarks.base import EyeIndices, LandmarkDataModule
from lightning_hw.errors import ConfigError

FIVE_POINTS = ("left_eye", "right_eye", "nose_tip", "left_mouth", "right_mouth")


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (high - low) + low


class _Canvas:
    """Pixel grid of a batch of faces, in image pixels and in each face's own frame.

    The face frame has ``u`` across the face (-1 left edge, +1 right edge, viewer's
    left/right) and ``v`` down it (-1 top of the head, +1 chin).
    """

    def __init__(self, size: int, centre: torch.Tensor, half: torch.Tensor, angle: torch.Tensor) -> None:
        coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres, continuous convention
        ys, xs = torch.meshgrid(coords, coords, indexing="ij")
        self.x, self.y = xs.unsqueeze(0), ys.unsqueeze(0)  # (1, S, S)
        dx = self.x - centre[:, 0, None, None]
        dy = self.y - centre[:, 1, None, None]
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        self.u = (cos * dx + sin * dy) / half[:, 0, None, None]
        self.v = (-sin * dx + cos * dy) / half[:, 1, None, None]
        #: pixels per face unit along u and v, to turn face-frame distances into pixels
        self.pu, self.pv = half[:, 0, None, None], half[:, 1, None, None]

    def ellipse(self, cu: torch.Tensor, cv: torch.Tensor, ru: torch.Tensor | float, rv: torch.Tensor | float) -> torch.Tensor:
        """Coverage (0..1, anti-aliased over about one pixel) of an ellipse in the face frame."""
        ru = torch.as_tensor(ru)
        rv = torch.as_tensor(rv)
        ru = ru[:, None, None] if ru.ndim else ru
        rv = rv[:, None, None] if rv.ndim else rv
        du = (self.u - cu[:, None, None]) / ru
        dv = (self.v - cv[:, None, None]) / rv
        r = torch.hypot(du, dv)
        # (1 - r) times the smaller radius in pixels approximates the signed distance to the edge.
        pixels = torch.minimum(ru * self.pu, rv * self.pv)
        return ((1 - r) * pixels + 0.5).clamp(0, 1)

    def curve(self, left: torch.Tensor, right: torch.Tensor, bend: torch.Tensor, width: float) -> torch.Tensor:
        """Coverage of a bent stroke from ``left`` to ``right`` (``(n, 2)`` face-frame points)."""
        t = ((self.u - left[:, 0, None, None]) / (right[:, 0] - left[:, 0])[:, None, None]).clamp(0, 1)
        cu = left[:, 0, None, None] + t * (right[:, 0] - left[:, 0])[:, None, None]
        cv = left[:, 1, None, None] + t * (right[:, 1] - left[:, 1])[:, None, None] + bend[:, None, None] * 4 * t * (1 - t)
        dist = torch.hypot((self.u - cu) * self.pu, (self.v - cv) * self.pv)
        return (width * self.pv - dist + 0.5).clamp(0, 1)


def _paint(image: torch.Tensor, coverage: torch.Tensor, colour: torch.Tensor, opacity: float = 1.0) -> torch.Tensor:
    """Alpha-blend a per-face colour ``(n, 3)`` over ``image`` ``(n, 3, S, S)`` where ``coverage`` is set."""
    return torch.lerp(image, colour[:, :, None, None], (coverage * opacity).unsqueeze(1))


def render_faces(
    n: int,
    size: int = 64,
    contour_points: int = 0,
    rotation: float = 25.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` random faces and return their exact landmarks.

    Args:
        n: number of faces.
        size: images are ``size x size``.
        contour_points: jaw points added after the five main ones (0 or >= 2).
        rotation: maximum in-plane rotation in degrees.
        generator: random source (seeded by the caller for a reproducible set).

    Returns:
        float images ``(n, 3, size, size)`` in [0, 1] and ``(n, 5 + contour_points, 2)``
        points in continuous pixel coordinates (none missing yet).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    s = float(size)
    # -- pose and proportions (face-frame units unless the name says px) --
    centre = torch.stack([_uniform(n, 0.36, 0.64, g), _uniform(n, 0.38, 0.62, g)], -1) * s
    half_w = _uniform(n, 0.2, 0.3, g) * s
    half = torch.stack([half_w, half_w * _uniform(n, 1.15, 1.35, g)], -1)
    angle = torch.deg2rad(_uniform(n, -rotation, rotation, g))
    turn = _uniform(n, -0.15, 0.15, g)  # a slight head turn shifts the inner features sideways
    eye_v, eye_du = _uniform(n, -0.3, -0.14, g), _uniform(n, 0.32, 0.44, g)
    nose_v = _uniform(n, 0.08, 0.22, g)
    mouth_v, mouth_du = _uniform(n, 0.46, 0.62, g), _uniform(n, 0.22, 0.38, g)
    smile = _uniform(n, -0.06, 0.12, g)
    face_frame = [
        torch.stack([turn - eye_du, eye_v], -1),
        torch.stack([turn + eye_du, eye_v], -1),
        torch.stack([1.3 * turn, nose_v], -1),
        torch.stack([1.1 * turn - mouth_du, mouth_v], -1),
        torch.stack([1.1 * turn + mouth_du, mouth_v], -1),
    ]
    if contour_points:
        # Along the face outline from the left temple (170 deg) through the chin (90) to the right.
        for phi in torch.linspace(170.0, 10.0, contour_points):
            rad = math.radians(float(phi))
            face_frame.append(torch.stack([torch.full((n,), math.cos(rad)), torch.full((n,), math.sin(rad))], -1))
    uv = torch.stack(face_frame, 1)  # (n, K, 2)
    cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    px, py = uv[..., 0] * half[:, None, 0], uv[..., 1] * half[:, None, 1]
    points = torch.stack([cos * px - sin * py, sin * px + cos * py], -1) + centre[:, None, :]

    # -- colours --
    def colour(low: float, high: float, spread: float = 0.15) -> torch.Tensor:
        base = _uniform(n, low, high, g)[:, None]
        return (base + (torch.rand(n, 3, generator=g) - 0.5) * spread).clamp(0, 1)

    skin = colour(0.35, 0.9) * torch.tensor([1.0, 0.85, 0.72])
    hair = colour(0.02, 0.45, 0.2)
    canvas = _Canvas(size, centre, half, angle)

    # -- background: a gradient, clutter blobs (some face-sized) and later pixel noise --
    direction = torch.rand(n, 2, generator=g) * 2 - 1
    ramp = (direction[:, 0, None, None] * canvas.x + direction[:, 1, None, None] * canvas.y) / s
    image = colour(0.1, 0.9, 0.5)[:, :, None, None] * (1 + 0.4 * ramp.unsqueeze(1))
    for _ in range(4):
        blob_centre = torch.rand(n, 2, generator=g) * s
        radius = _uniform(n, 0.04, 0.22, g) * s
        dist = torch.hypot(canvas.x - blob_centre[:, 0, None, None], canvas.y - blob_centre[:, 1, None, None])
        image = _paint(image, (radius[:, None, None] - dist + 0.5).clamp(0, 1), torch.rand(n, 3, generator=g), 0.8)

    # -- head: hair behind, face, fringe --
    zero = torch.zeros(n)
    image = _paint(image, canvas.ellipse(zero, zero - 0.12, 1.1, 1.02), hair)
    light = torch.rand(n, 2, generator=g) * 2 - 1
    shade = 1 + 0.25 * (light[:, 0, None, None] * canvas.u + light[:, 1, None, None] * canvas.v)
    face = canvas.ellipse(zero, zero, 1.0, 1.0)
    image = torch.lerp(image, (skin[:, :, None, None] * shade.unsqueeze(1)).clamp(0, 1), face.unsqueeze(1))
    fringe = ((_uniform(n, -0.78, -0.55, g)[:, None, None] - canvas.v) * canvas.pv + 0.5).clamp(0, 1) * face
    image = _paint(image, fringe, hair)

    # -- eyebrows, eyes, nose, mouth --
    eye_ru, eye_rv = _uniform(n, 0.13, 0.18, g), _uniform(n, 0.07, 0.1, g)
    brow_gap = _uniform(n, 0.12, 0.2, g)
    for eye in (uv[:, 0], uv[:, 1]):
        image = _paint(image, canvas.ellipse(eye[:, 0], eye[:, 1] - brow_gap, eye_ru * 1.3, 0.04), hair)
        image = _paint(image, canvas.ellipse(eye[:, 0], eye[:, 1], eye_ru, eye_rv), torch.full((n, 3), 0.95))
        iris = eye_rv * 0.95
        image = _paint(image, canvas.ellipse(eye[:, 0], eye[:, 1], iris * half[:, 1] / half[:, 0], iris), colour(0.1, 0.6, 0.4))
        pupil = iris * 0.45
        image = _paint(image, canvas.ellipse(eye[:, 0], eye[:, 1], pupil * half[:, 1] / half[:, 0], pupil), torch.zeros(n, 3))
    nose = uv[:, 2]
    image = _paint(image, canvas.ellipse(nose[:, 0], nose[:, 1] - 0.12, 0.07, 0.16), skin * 0.6, 0.5)
    for side in (-1.0, 1.0):
        image = _paint(image, canvas.ellipse(nose[:, 0] + side * 0.07, nose[:, 1] + 0.015, 0.04, 0.022), skin * 0.25, 0.9)
    lips = colour(0.3, 0.55, 0.1) * torch.tensor([1.0, 0.35, 0.35])
    image = _paint(image, canvas.curve(uv[:, 3], uv[:, 4], smile, 0.035), lips)

    image = image + torch.randn(image.shape, generator=g) * 0.03
    return image.clamp(0, 1), points


class SyntheticFaces(LandmarkDataModule):
    """Rendered cartoon faces with exact landmarks (offline; for tests and the demo config).

    Args:
        num_samples: faces in the set (split by ``splits``).
        image_size: side of the square images.
        contour_points: jaw points after the five main ones (0 or >= 2).
        rotation: maximum in-plane rotation of the faces in degrees.
        missing_rate: probability that a point's label is dropped (``NaN``), like a
            landmark an annotator could not place.
        channels: 3 (RGB) or 1 (grey, the mean of the colour channels).
        seed: seed of the drawing (the same seed gives the same set).
        **kwargs: ``augment``, ``mean``, ``std``, ``standardize``, ``flatten``, batch size,
            splits and seeds (see :class:`~lightning_hw.data.landmarks.base.LandmarkDataModule`).
    """

    def __init__(
        self,
        num_samples: int = 8000,
        image_size: int = 48,
        contour_points: int = 0,
        rotation: float = 25.0,
        missing_rate: float = 0.1,
        channels: int = 3,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1, got {num_samples}")
        if contour_points == 1 or contour_points < 0:
            raise ConfigError(f"contour_points must be 0 or at least 2, got {contour_points}")
        if not 0 <= missing_rate < 1:
            raise ConfigError(f"missing_rate must be in [0, 1), got {missing_rate}")
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {channels}")
        self.num_samples = num_samples
        self.image_size = image_size
        self.contour_points = contour_points
        self.rotation = rotation
        self.missing_rate = missing_rate
        self.channels = channels
        self.seed = seed

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def num_landmarks(self) -> int:
        return 5 + self.contour_points

    @property
    def landmark_names(self) -> list[str]:
        """Names of the points, index = landmark."""
        return [*FIVE_POINTS, *(f"contour_{i}" for i in range(self.contour_points))]

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        last = 5 + self.contour_points - 1
        return [(0, 1), (3, 4), *((5 + i, last - i) for i in range(self.contour_points // 2))]

    @property
    def eye_indices(self) -> EyeIndices:
        return ([0], [1])

    def load_tensors(self, chunk: int = 512) -> Split:
        g = torch.Generator().manual_seed(self.seed)
        images, points = [], []
        for start in range(0, self.num_samples, chunk):
            count = min(chunk, self.num_samples - start)
            x, p = render_faces(count, self.image_size, self.contour_points, self.rotation, generator=g)
            if self.channels == 1:
                x = x.mean(dim=1, keepdim=True)
            images.append((x * 255).round().to(torch.uint8))
            points.append(p)
        all_points = mark_off_canvas(torch.cat(points), (self.image_size, self.image_size))
        dropped = torch.rand(all_points.shape[:2], generator=g) < self.missing_rate
        all_points[dropped] = math.nan
        return torch.cat(images), all_points
