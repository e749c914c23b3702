"""Landmarks annotated outside their image: counted, said, and refused when they are most of a set.

Such a point cannot be learned (a sigmoid output never reaches it; augmentation would move
it further), so the readers treat it as not annotated (see
:func:`~lightning_hw.data.landmarks.base.decode_with_points`). A few of them are real
annotations of a face cut by the photo's edge; many of them mean the file holds points in
other units (fractions of the image size, pixels of a larger original photo, x and y
swapped), and silently dropping those would train on almost nothing. So this module counts
them for the whole set, warns in one line, and refuses a set where they are a large share.
The same rules hold for points that all lie within 0-1 (fractions, which stay "inside" the
image but crowd into its top-left pixel).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from lightning_hw.errors import DataError, LightningHWWarning

#: refuse a set when at least this share of all its annotated points lies outside their images
REFUSE_SHARE = 0.5
#: ... or when at least this share of one landmark's annotated points does
REFUSE_LANDMARK_SHARE = 0.9
#: ... and that landmark is annotated at least this often (a rare point's few mistakes are a warning)
MIN_ANNOTATED_FOR_LANDMARK_RULE = 5
#: images at least this many pixels on each side cannot have every point in their top-left pixel
MIN_SIDE_FOR_FRACTION_RULE = 8


class PointsOffImageWarning(LightningHWWarning):
    """Some annotated landmarks lie outside their image and are treated as not annotated."""


def points_off_image(points: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Which annotated points lie outside ``[0, W] x [0, H]`` of their image.

    Args:
        points: ``(N, K, 2)`` ``x, y`` in each file's pixels, ``NaN`` = not annotated.
        sizes: ``(N, 2)`` ``(H, W)`` of each file.

    Returns:
        ``(N, K)`` bool.
    """
    height, width = sizes[:, None, 0].to(points.dtype), sizes[:, None, 1].to(points.dtype)
    x, y = points[..., 0], points[..., 1]
    inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    annotated = ~torch.isnan(points).any(dim=-1)
    return annotated & ~inside


def check_points_on_images(
    paths: Sequence[Path],
    points: torch.Tensor,
    sizes: torch.Tensor,
    source: str,
    root: Path | None = None,
    point_names: Sequence[str] | None = None,
) -> None:
    """Warn when annotated points lie outside their images; refuse when they are most of the set.

    Args:
        paths: each sample's image file.
        points: ``(N, K, 2)`` annotations in the files' pixels (``NaN`` = not annotated).
        sizes: ``(N, 2)`` ``(H, W)`` of the files, as stored (no EXIF turn: annotations refer to stored pixels).
        source: the annotation file(s) to check, named in the advice (e.g. ``"faces/landmarks.csv"``).
        root: the data set's folder; files are named relative to it.
        point_names: the annotation file's name of each point, where it has them.

    Raises:
        DataError: a large share of the points (or nearly all of one landmark's) lie outside,
            or every point lies within 0-1 (fractions, not pixels).
    """
    if len(paths) == 0:
        return
    annotated = ~torch.isnan(points).any(dim=-1)
    total = int(annotated.sum())
    if total == 0:
        return
    _refuse_fractions(points, sizes, annotated, source)
    off = points_off_image(points, sizes)
    count = int(off.sum())
    if count == 0:
        return
    sample, point = (int(i) for i in off.nonzero()[0])  # the first file (in split order) with one
    x, y = points[sample, point].tolist()
    height, width = sizes[sample].tolist()
    example = (
        f"e.g. {_point_name(point, point_names)} of {_file_name(paths[sample], root)} at ({x:g}, {y:g}) "
        f"on its {width}x{height} (WxH) image"
    )
    per_landmark = off.sum(dim=0) / annotated.sum(dim=0).clamp(min=1)
    lost = [
        k for k in range(points.shape[1])
        if per_landmark[k] >= REFUSE_LANDMARK_SHARE and int(annotated[:, k].sum()) >= MIN_ANNOTATED_FOR_LANDMARK_RULE
    ]
    said = f"{count} of {total} annotated landmark points ({count / total:.1%}) lie outside their image"
    if count / total >= REFUSE_SHARE or lost:
        which = f", {_lost_landmarks(lost, per_landmark, point_names)}" if lost else ""
        raise DataError(
            f"{said}{which} ({example}); {_likely_cause(points, sizes, off)}; training would treat them as not "
            f"annotated and learn almost nothing: fix the points in {source}"
        )
    cause = _swapped(points, sizes) or (
        "a few are faces cut by the photo's edge; more usually mean points in other units (fractions of the image "
        "size, pixels of a larger original photo, x and y swapped)"
    )
    # Once per job: every DDP process reads the set, and each would say it.
    rank_zero_warn(
        f"{said} ({example}) and are treated as not annotated; {cause}: check {source}",
        category=PointsOffImageWarning,
    )


def _refuse_fractions(points: torch.Tensor, sizes: torch.Tensor, annotated: torch.Tensor, source: str) -> None:
    """Every coordinate within 0-1 on images of many pixels: fractions of the size, not pixels."""
    if int(sizes.min()) < MIN_SIDE_FOR_FRACTION_RULE:
        return
    values = points[annotated]
    if bool(((values >= 0) & (values <= 1)).all()):
        raise DataError(
            f"every annotated landmark coordinate of {source} lies within 0-1, while the images are at least "
            f"{int(sizes[:, 1].min())}x{int(sizes[:, 0].min())} pixels: these look like fractions of the image size; "
            "landmarks are given in pixels of the image file (x times its width, y times its height)"
        )


def _swapped(points: torch.Tensor, sizes: torch.Tensor) -> str | None:
    """Whether exchanging x and y would put (nearly) every annotated point inside its image."""
    # On square images an exchange moves no point in or out: nothing to tell.
    if not bool((sizes[:, 0] != sizes[:, 1]).any()):
        return None
    annotated = int((~torch.isnan(points).any(dim=-1)).sum())
    if int(points_off_image(points.flip(-1), sizes).sum()) > 0.01 * annotated:
        return None
    return "with x and y exchanged every point would lie inside its image (are the columns y, x instead of x, y?)"


def _likely_cause(points: torch.Tensor, sizes: torch.Tensor, off: torch.Tensor) -> str:
    """What the points outside most likely are, judged from where they lie."""
    swapped = _swapped(points, sizes)
    if swapped:
        return swapped
    if bool((points[off] >= 0).all()):
        reach = points[~torch.isnan(points).any(dim=-1)].amax(dim=0)
        largest = sizes.amax(dim=0)
        return (
            f"the points reach x={reach[0]:g}, y={reach[1]:g} on images of at most {int(largest[1])}x{int(largest[0])} "
            "(WxH): are they pixels of larger original photos? scale them to the image files' pixels"
        )
    return "some lie at negative coordinates: are they measured from another origin (the image centre) or in other units?"


def _lost_landmarks(lost: list[int], per_landmark: torch.Tensor, point_names: Sequence[str] | None) -> str:
    shown = ", ".join(f"{float(per_landmark[k]):.0%} of {_point_name(k, point_names)}'s" for k in lost[:5])
    more = f" and of {len(lost) - 5} more points" if len(lost) > 5 else ""
    return f"{shown}{more}"


def _point_name(index: int, point_names: Sequence[str] | None) -> str:
    if point_names is not None and index < len(point_names) and point_names[index]:
        return f"point {index} ({point_names[index]})"
    return f"point {index}"


def _file_name(path: Path, root: Path | None) -> str:
    if root is not None and Path(path).is_relative_to(root):
        return Path(path).relative_to(root).as_posix()
    return str(path)
