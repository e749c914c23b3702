"""Tiny landmark datasets in the exact on-disk formats of MUCT, CelebA and a landmark CSV.

The tests point the landmark datamodules at these; each writer returns the ``root`` to
give the datamodule. Every image marks two of its landmarks (the eyes) with white squares
on a grey background, so a test can check that the points still sit on the marks after
decoding and resizing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

MARK = 2  # half-size in pixels of the white squares drawn on the eye points


def _image_with_marks(size: tuple[int, int], marks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey noisy ``(H, W, 3)`` uint8 image with white squares centred on ``marks`` (pixel coords)."""
    h, w = size
    image = np.clip(rng.normal(80, 10, size=(h, w, 3)), 0, 255).astype(np.uint8)
    for x, y in marks:
        col, row = int(x), int(y)  # continuous coordinates: pixel (col, row) covers [col, col + 1]
        image[max(row - MARK, 0) : row + MARK + 1, max(col - MARK, 0) : col + MARK + 1] = 255
    return image


def _face_points(rng: np.random.Generator, k: int, size: tuple[int, int], eyes: tuple[int, int]) -> np.ndarray:
    """``(k, 2)`` integer-valued points inside the image, the two eyes well apart and away from the edges."""
    h, w = size
    points = np.stack([rng.integers(MARK + 2, w - MARK - 2, k), rng.integers(MARK + 2, h - MARK - 2, k)], -1).astype(float)
    points[eyes[0]] = [round(w * 0.3) + 0.5, round(h * 0.4) + 0.5]
    points[eyes[1]] = [round(w * 0.7) + 0.5, round(h * 0.4) + 0.5]
    return points


def write_muct(
    root: str | Path,
    subjects: tuple[str, ...] = ("000", "001", "002", "003", "004", "005"),
    cameras: str = "abcde",
    size: tuple[int, int] = (80, 60),
    seed: int = 0,
) -> Path:
    """MUCT as its archives extract: ``jpg/<name>.jpg`` and ``muct-landmarks/muct76-opencv.csv``.

    The CSV has MUCT's header (``name,tag,x00,y00,...,x75,y75``), one row per photo named
    ``i<subject>q<camera>-fn``, integer OpenCV coordinates, ``0,0`` for unavailable points
    in the side views (cameras b and c), and an ``ir...`` mirror row per photo (whose
    image, as in the real archives, does not exist). Photos are ``size`` (H, W), a
    scaled-down 640x480.

    Args:
        root: the folder the archives would be extracted into.
        subjects: three-digit subject numbers.
        cameras: camera letters to write photos for.
        size: ``(H, W)`` of the photos.
        seed: random seed.
    """
    root = Path(root)
    (root / "jpg").mkdir(parents=True, exist_ok=True)
    (root / "muct-landmarks").mkdir(parents=True, exist_ok=True)
    from PIL import Image

    rng = np.random.default_rng(seed)
    header = ["name", "tag"] + [f"{axis}{i:02d}" for i in range(76) for axis in ("x", "y")]
    rows = []
    for subject in subjects:
        for camera in cameras:
            name = f"i{subject}q{camera}-fn"
            points = _face_points(rng, 76, size, eyes=(31, 36))
            image = _image_with_marks(size, points[[31, 36]], rng)
            Image.fromarray(image, "RGB").save(root / "jpg" / f"{name}.jpg", quality=95)
            stored = np.floor(points).astype(int)  # the file holds whole pixels
            if camera in "bc":
                stored[[0, 1, 2, 15, 27, 68]] = 0  # points hidden by the turned head
            mirrored = stored.copy()
            mirrored[:, 0] = np.where(stored[:, 0] > 0, size[1] - 1 - stored[:, 0], 0)
            rows.append([name, "0000", *stored.reshape(-1).tolist()])
            rows.append([f"ir{subject}q{camera}-fn", "0000", *mirrored.reshape(-1).tolist()])
    with open(root / "muct-landmarks" / "muct76-opencv.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def write_landmark_csv(root: str | Path, n: int = 20, k: int = 5, size: tuple[int, int] = (52, 40), seed: int = 0) -> Path:
    """A folder of PNG faces and ``landmarks.csv`` (header, float pixels, an empty cell = missing).

    Points 0 and 1 are the eyes (marked in the images); every third image has point
    ``k - 1`` unannotated.

    Args:
        root: the folder to create.
        n: images.
        k: points per image.
        size: ``(H, W)`` of the images.
        seed: random seed.
    """
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(root / "landmarks.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *(f"{axis}{i + 1}" for i in range(k) for axis in ("x", "y"))])
        for i in range(n):
            points = _face_points(rng, k, size, eyes=(0, 1))
            Image.fromarray(_image_with_marks(size, points[:2], rng), "RGB").save(root / f"face_{i:03d}.png")
            cells = [f"{v:.1f}" for v in points.reshape(-1)]
            if i % 3 == 0:
                cells[-2:] = ["", ""]
            writer.writerow([f"face_{i:03d}.png", *cells])
    return root


CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def write_celeba(root: str | Path, n: int = 15, size: tuple[int, int] = (218, 178), seed: int = 0) -> Path:
    """CelebA as torchvision expects it in ``root/celeba``: aligned JPEGs and the five annotation files.

    The text files have CelebA's layouts (a count line and a header where CelebA has
    them, space-padded columns); partitions cycle train, train, train, valid, test.
    Their MD5s are of course not CelebA's: tests bypass torchvision's check.

    Args:
        root: the datamodule's ``root``.
        n: images (``000001.jpg``...).
        size: ``(H, W)``; CelebA's aligned photos are 218x178.
        seed: random seed.
    """
    from PIL import Image

    folder = Path(root) / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    landmarks, partitions = [], []
    for i, name in enumerate(names):
        points = _face_points(rng, 5, size, eyes=(0, 1))
        Image.fromarray(_image_with_marks(size, points[:2], rng), "RGB").save(folder / "img_align_celeba" / name, quality=95)
        landmarks.append(f"{name} " + " ".join(f"{int(v):>4d}" for v in np.floor(points).reshape(-1)))
        partitions.append(f"{name} {(0, 0, 0, 1, 2)[i % 5]}")
    point_header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    files = {
        "list_landmarks_align_celeba.txt": [str(n), point_header, *landmarks],
        "list_eval_partition.txt": partitions,
        "identity_CelebA.txt": [f"{name} {rng.integers(1, 10180)}" for name in names],
        "list_bbox_celeba.txt": [str(n), "image_id x_1 y_1 width height", *(f"{name}    95  71 226 313" for name in names)],
        "list_attr_celeba.txt": [
            str(n),
            " ".join(CELEBA_ATTRS),
            *(f"{name} " + " ".join(f"{v:>2d}" for v in rng.choice([-1, 1], len(CELEBA_ATTRS))) for name in names),
        ],
    }
    for filename, lines in files.items():
        (folder / filename).write_text("\n".join(lines) + "\n")
    return Path(root)
