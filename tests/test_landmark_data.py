"""Landmark datamodules on fixtures in the real on-disk formats (MUCT, CelebA, CSV) and SyntheticFaces."""

from __future__ import annotations

import csv
import os
import re

import pytest
import torch

from lightning_hw.data.landmarks.celeba import CelebALandmarks
from lightning_hw.data.augment.landmarks import LandmarkAugment
from lightning_hw.data.landmarks.csv_folder import LandmarkCSV
from lightning_hw.data.fixtures.landmarks import write_celeba, write_landmark_csv, write_muct
from lightning_hw.data.landmarks.muct import MUCT, MUCT_FLIP_PAIRS
from lightning_hw.data.landmarks.off_image import PointsOffImageWarning
from lightning_hw.data.landmarks.synthetic_faces import SyntheticFaces
from lightning_hw.errors import ConfigError, DataError
from lightning_hw.tasks.landmark_metrics import NME
from lightning_hw.cli import main
from reliability_helpers import error_of
from tests.conftest import REPO
from lightning_hw.cli import warm_start


def assert_eyes_on_marks(images: torch.Tensor, points: torch.Tensor, eyes: tuple[int, int]) -> None:
    """The fixtures draw white squares on the eye points: after resizing they must still be there."""
    for image, pts in zip(images, points):
        for i in eyes:
            col, row = int(pts[i, 0]), int(pts[i, 1])
            assert image[:, row, col].float().mean() > 180, f"point {i} at {pts[i].tolist()} is not on its mark"


# -- MUCT ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def muct_root(tmp_path_factory):
    return write_muct(tmp_path_factory.mktemp("muct"))


def test_muct_reads_the_opencv_csv_layout(muct_root):
    dm = MUCT(root=str(muct_root), image_size=(40, 30), batch_size=4, num_workers=1, splits=(0.5, 0.25, 0.25))
    assert dm.num_landmarks == 76 and dm.eye_indices == ([31], [36])
    assert len(dm.names) == 6 * 5 and not any(name.startswith("ir") for name in dm.names)  # mirror rows skipped
    side = torch.tensor([name[5] in "bc" for name in dm.names])
    # (0, 0) "unavailable" points (side views only) are missing; every other point is a number.
    assert torch.isnan(dm.points[side][:, [0, 1, 2, 15, 27, 68]]).all()
    assert not torch.isnan(dm.points[~side]).any()
    assert torch.isnan(dm.points[side]).any(dim=-1).sum(dim=1).eq(6).all()
    dm.setup("fit")
    images, points = dm.data["train"]
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 40, 30)
    # The points moved with the 80x60 -> 40x30 resize and still sit on the eyes drawn in the JPEGs.
    assert_eyes_on_marks(images, points, (31, 36))
    x, target = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert x.shape[1:] == (3, 40, 30) and target.shape[1:] == (76, 2)
    present = target[~torch.isnan(target)]
    assert present.min() >= 0 and present.max() <= 1  # normalised by width and height


def test_muct_split_keeps_each_subject_in_one_split(muct_root):
    dm = MUCT(root=str(muct_root), splits=(0.5, 0.25, 0.25))
    subjects = {name: {path.name[1:4] for path, _ in records} for name, records in dm.split_records().items()}
    assert all(subjects.values())
    assert not (subjects["train"] & subjects["val"] or subjects["train"] & subjects["test"] or subjects["val"] & subjects["test"])
    assert sum(len(s) for s in subjects.values()) == 6


def test_muct_cameras_and_flip_pairs(muct_root):
    dm = MUCT(root=str(muct_root), cameras=["a", "d", "e"])
    assert {name[5] for name in dm.names} == {"a", "d", "e"} and not torch.isnan(dm.points).any()
    partner = dict(MUCT_FLIP_PAIRS) | {b: a for a, b in MUCT_FLIP_PAIRS}
    assert partner[31] == 36 and partner[48] == 54 and partner[0] == 14 and 7 not in partner
    with pytest.raises(ConfigError, match="cameras are a, b, c, d, e"):
        MUCT(root=str(muct_root), cameras=["f"])


def test_muct_missing_files_say_where_to_get_them_and_where_to_put_them(tmp_path, muct_root):
    with pytest.raises(DataError) as err:
        MUCT(root=str(tmp_path / "nowhere"))
    message = str(err.value)
    assert "github.com/StephenMilborrow/muct" in message and "muct-landmarks-v1.tar.gz" in message
    assert str(tmp_path / "nowhere" / "muct-landmarks" / "muct76-opencv.csv") in message
    partial = write_muct(tmp_path / "partial", subjects=("000", "001"))
    for jpg in (partial / "jpg").glob("*qb-fn.jpg"):
        jpg.unlink()
    dm = MUCT(root=str(partial))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert "2 of 10 MUCT images are missing" in message and "i000qb-fn.jpg" in message
    assert "muct-b-jpg-v1.tar.gz" in message and str(partial) in message


# -- any CSV ------------------------------------------------------------------------------------


def test_landmark_csv_header_missing_cells_and_resizing(tmp_path):
    root = write_landmark_csv(tmp_path / "faces", n=12, k=5, size=(52, 40))
    dm = LandmarkCSV(root=str(root), image_size=(26, 20), flip_pairs=[[0, 1]], eye_indices=[[0], [1]], splits=(0.5, 0.25, 0.25))
    assert dm.num_landmarks == 5 and dm.point_names == ["x1", "x2", "x3", "x4", "x5"]
    missing = torch.isnan(dm.points).any(dim=-1)
    assert missing[::3, 4].all() and missing.sum() == 4  # the empty cells of every third row
    dm.setup("fit")
    images, points = dm.data["train"]
    assert images.shape == (6, 3, 26, 20)
    assert_eyes_on_marks(images, points, (0, 1))


def test_landmark_csv_streams_the_same_batches_it_would_hold_in_memory(tmp_path):
    root = write_landmark_csv(tmp_path / "faces", n=9)
    held = LandmarkCSV(root=str(root), image_size=16, batch_size=3, in_memory=True, num_workers=0, splits=(0.6, 0.2, 0.2))
    streamed = LandmarkCSV(root=str(root), image_size=16, batch_size=3, in_memory=False, num_workers=0, splits=(0.6, 0.2, 0.2))
    held.setup("fit")
    streamed.setup("fit")
    for a, b in zip(held.val_dataloader(), streamed.val_dataloader()):
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[1], b[1], equal_nan=True)


def test_landmark_csv_errors_name_the_file_and_line(tmp_path):
    root = write_landmark_csv(tmp_path / "faces", n=3)
    with open(root / "landmarks.csv", "a") as f:
        f.write("face_009.png,1.0,2.0,3.0\n")
    with pytest.raises(DataError, match=r"landmarks.csv, line 5: 3 coordinate values"):
        LandmarkCSV(root=str(root))
    with pytest.raises(DataError, match="landmark file .* not found"):
        LandmarkCSV(root=str(tmp_path / "faces"), csv_file="other.csv")
    root = write_landmark_csv(tmp_path / "ok", n=3)
    with pytest.raises(ConfigError, match="there are 5 landmarks"):
        LandmarkCSV(root=str(root), flip_pairs=[[0, 5]])
    with pytest.raises(ConfigError, match="augment.horizontal_flip needs flip pairs"):
        LandmarkCSV(root=str(root), augment=LandmarkAugment(horizontal_flip=True)).setup("fit")


# -- CelebA -------------------------------------------------------------------------------------


def test_celeba_landmarks_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets.celeba as tv_celeba

    root = write_celeba(tmp_path, n=15)
    # The fixture's text files cannot have CelebA's MD5s; everything else is torchvision's own code.
    monkeypatch.setattr(tv_celeba, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    dm = CelebALandmarks(root=str(root), image_size=(109, 89), num_workers=1)
    assert dm.num_landmarks == 5 and dm.flip_pairs == [(0, 1), (3, 4)]
    dm.setup("fit")
    assert {name: len(x) for name, (x, _) in dm.data.items()} == {"train": 9, "val": 3, "test": 3}  # the partition file
    images, points = dm.data["train"]
    assert images.shape[1:] == (3, 109, 89)
    assert_eyes_on_marks(images, points, (0, 1))


def test_celeba_without_files_says_where_to_put_them(tmp_path):
    with pytest.raises(DataError) as err:
        CelebALandmarks(root=str(tmp_path))  # before any model is built
    message = str(err.value)
    assert str(tmp_path / "celeba") in message and "list_landmarks_align_celeba.txt" in message
    assert "img_align_celeba/" in message and "mmlab.ie.cuhk.edu.hk" in message
    write_celeba(tmp_path, n=5)  # present, but not CelebA's files: torchvision's MD5 check fails
    with pytest.raises(DataError, match="does not match torchvision's MD5"):
        CelebALandmarks(root=str(tmp_path)).setup("fit")


# -- SyntheticFaces -----------------------------------------------------------------------------


def test_synthetic_faces_are_reproducible_varied_and_partly_unannotated():
    dm = SyntheticFaces(num_samples=200, image_size=32, contour_points=4, missing_rate=0.1)
    images, points = dm.load_tensors()
    again, again_points = SyntheticFaces(num_samples=200, image_size=32, contour_points=4, missing_rate=0.1).load_tensors()
    assert torch.equal(images, again) and torch.equal(points.isnan(), again_points.isnan())
    assert images.shape == (200, 3, 32, 32) and points.shape == (200, 9, 2)
    assert dm.flip_pairs == [(0, 1), (3, 4), (5, 8), (6, 7)]
    missing = torch.isnan(points).any(dim=-1).float().mean()
    assert 0.05 < missing < 0.2
    # A model that ignores the pixels and predicts the mean shape is far off: the faces move.
    mean_shape = points.nanmean(dim=0)
    nme = NME(dm.eye_indices)
    nme.update(mean_shape.expand_as(points), points)
    assert nme.compute() > 0.3


@pytest.mark.parametrize("count", ["0", "-5"])
def test_synthetic_faces_without_faces_is_one_line(workdir, capsys, count):
    # It was a traceback from torch.cat (no chunk of faces drawn), after the model was built.
    args = ["fit", "--config", str(REPO / "configs" / "landmarks_demo.yaml"), "--data.init_args.num_samples", count,
            "--run.root", str(workdir / "runs"), "--run.wandb", "disabled"]
    assert error_of(args, capsys) == (2, f"error: num_samples must be at least 1, got {count}")


# -- through the CLI: points in the wrong units --------------------------------------------------


def landmark_fit(root, runs, *extra: str) -> list[str]:
    """``fit`` of the landmark demo's model on a LandmarkCSV folder: one batch of each split, quiet."""
    return [
        "fit", "--config", str(REPO / "configs" / "landmarks_demo.yaml"),
        "--data", "LandmarkCSV", "--data.init_args.root", str(root),
        "--data.init_args.image_size", "16", "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0",
        "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false",
        "--run.root", str(runs), "--run.wandb", "disabled", *extra,
    ]


def rewrite_points(root, change) -> None:
    """Apply ``change(values: list[float | None]) -> list`` to every row of ``root/landmarks.csv``."""
    with open(root / "landmarks.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    out = [header]
    for name, *cells in rows:
        values = change([float(c) if c else None for c in cells])
        out.append([name, *("" if v is None else f"{v:g}" for v in values)])
    with open(root / "landmarks.csv", "w", newline="") as f:
        csv.writer(f).writerows(out)


def scaled(factor_x: float, factor_y: float):
    return lambda values: [None if v is None else v * (factor_x if i % 2 == 0 else factor_y) for i, v in enumerate(values)]


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_points_in_pixels_of_a_larger_photo_are_refused_not_dropped(workdir, capsys, in_memory):
    # Points annotated on the 2x original photo: 60% of them fell outside the image and were
    # silently read as "not annotated"; the run trained on what was left, without a word.
    root = write_landmark_csv(workdir / "faces", n=40, k=5, size=(52, 40))
    rewrite_points(root, scaled(2, 2))
    code, line = error_of(landmark_fit(root, workdir / "runs", "--data.init_args.in_memory", in_memory), capsys)
    assert code == 1
    count, total = re.search(r"error: (\d+) of (\d+) annotated landmark points \(\d+\.\d%\) lie outside their image", line).groups()
    assert int(total) == 40 * 5 - 14 and int(count) > int(total) / 2  # 14 empty cells: every third row's last point
    assert re.search(r"e\.g\. point \d \(x\d\) of face_\d{3}\.png at \(\d+, \d+\) on its 40x52 \(WxH\) image", line)
    assert "pixels of larger original photos" in line and line.endswith(f"fix the points in {root / 'landmarks.csv'}")
    assert not (workdir / "runs").exists()


def test_a_header_of_numbers_is_said_to_be_one(workdir, capsys):
    """``image,1,2,...,10`` was read as a face named "image": "1 of 13 images ... are missing (faces/image)"."""
    root = write_landmark_csv(workdir / "faces", n=12, k=5)
    csv_path = root / "landmarks.csv"
    header, rest = csv_path.read_text().split("\n", 1)
    csv_path.write_text("image," + ",".join(str(i) for i in range(1, 11)) + "\n" + rest)
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert (code, line) == (1, (
        f"error: the first row of {csv_path} names image 'image', which is not in {root}, though the images of its 12 "
        "other rows are: if that row is a header, its column names are numbers, so it was read as a face: name the "
        f"columns image, x1, y1, x2, y2, ... (or delete the row); else put image under {root}"
    ))
    assert not (workdir / "runs").exists()
    csv_path.write_text(header + "\n" + rest)  # a named header, and the first face's image gone: missing, as before
    (root / "face_000.png").unlink()
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert code == 1 and line.startswith("error: 1 of 12 images named in"), line


def test_an_image_on_two_rows_is_refused_naming_the_image_and_lines(workdir, capsys):
    """Read as two faces without a word: face_003.png (two sets of points) went to validation and test, face_007.png twice to training."""
    root = write_landmark_csv(workdir / "faces", n=40, k=5, size=(52, 40))
    csv_path = root / "landmarks.csv"
    lines = csv_path.read_text().splitlines()
    moved = lines[4].split(",")
    moved[1] = "30.0"  # face_003.png's first x, annotated otherwise on the second row
    csv_path.write_text("\n".join([*lines, ",".join(moved), lines[8]]) + "\n")
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert (code, line) == (1, (
        f"error: {csv_path} names 2 images on more than one row: face_003.png (lines 5 and 42, different points); "
        "face_007.png (lines 9 and 43, the same points); keep one row per image (an image on two rows is two faces, "
        "which the split can put in training and test alike): delete the extra rows, or keep the one with the right points"
    ))
    assert not (workdir / "runs").exists()


def test_points_as_fractions_of_the_image_are_refused(workdir, capsys):
    root = write_landmark_csv(workdir / "faces", n=20, k=5, size=(52, 40))
    rewrite_points(root, scaled(1 / 40, 1 / 52))  # inside the image, but all in its top-left pixel
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert code == 1 and "lies within 0-1" in line and "fractions of the image size" in line


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_a_few_points_outside_their_image_are_one_warning_with_an_example(workdir, capsys, in_memory):
    root = write_landmark_csv(workdir / "faces", n=20, k=5, size=(52, 40))
    moved = iter([True, True])  # point 2 of the first two rows: beyond the right edge (a face cut by the photo)

    def push_out(values):
        if next(moved, False):
            values[4] = 41.5
        return values

    rewrite_points(root, push_out)
    message = off_image_warning(landmark_fit(root, workdir / "runs", "--data.init_args.in_memory", in_memory))
    assert message.startswith(f"2 of {20 * 5 - 7} annotated landmark points (2.2%) lie outside their image")
    assert re.search(r"e\.g\. point 2 \(x3\) of face_00[01]\.png at \(41\.5, \d+\) on its 40x52 \(WxH\) image", message)
    assert message.endswith(f"check {root / 'landmarks.csv'}")


def test_x_and_y_exchanged_on_tall_images_are_named(workdir):
    root = write_landmark_csv(workdir / "faces", n=20, k=5, size=(52, 40))
    rewrite_points(root, lambda v: [v[i + 1] if i % 2 == 0 else v[i - 1] for i in range(len(v))])
    message = off_image_warning(landmark_fit(root, workdir / "runs"))
    assert "with x and y exchanged every point would lie inside its image" in message


def off_image_warning(args: list[str]) -> str:
    """Run the CLI (it must succeed); the one warning about points outside their images."""
    with pytest.warns(PointsOffImageWarning) as caught:
        main(args)
    said = [str(w.message) for w in caught if issubclass(w.category, PointsOffImageWarning)]
    assert len(said) == 1, said  # the CLI prints each as one `warning:` line
    return said[0]


# -- through the CLI: damaged annotation files --------------------------------------------------


def muct_fit(root, runs, *extra: str) -> list[str]:
    """``fit`` of the landmark demo's model on a MUCT folder (the ResNet50 config's model is not needed here)."""
    return landmark_fit(root, runs, "--data", "MUCT", "--data.init_args.root", str(root), *extra)


@pytest.mark.parametrize("cut", ["between_x_and_y", "after_a_pair"])
def test_a_cut_off_muct_csv_says_to_extract_the_archive_again(workdir, capsys, cut):
    # It said `line 20: 49 points, but the rows before have 76` (or `97 coordinate values ...`)
    # and no more: nothing about the file being cut off, or what to do.
    root = write_muct(workdir / "muct", subjects=("000", "001"))
    csv_path = root / "muct-landmarks" / "muct76-opencv.csv"
    text = csv_path.read_text()
    end = text.index("\n", len(text) // 2)
    cells = text[end + 1 :].split("\n")[0].split(",")  # the next row: name, tag, x00, y00, ...
    kept = text[: end + 1] + ",".join(cells[: 2 + 2 * 49 + (cut == "between_x_and_y")])
    csv_path.write_text(kept)
    code, line = error_of(muct_fit(root, workdir / "runs"), capsys)
    assert code == 1
    expected_problem = "49 points, but the rows before have 76" if cut == "after_a_pair" else "99 coordinate values after the image name"
    assert line.startswith(f"error: {csv_path}, line {kept.count(chr(10)) + 1}: ") and expected_problem in line
    assert line.endswith(
        f"the file is cut off: extract muct-landmarks-v1.tar.gz into {root} again (tar xzf muct-landmarks-v1.tar.gz -C {root}), "
        "or download it again from https://github.com/StephenMilborrow/muct if that fails too"
    )


def test_a_short_row_of_ones_own_csv_is_to_be_fixed_and_a_cut_off_one_copied_again(workdir, capsys):
    root = write_landmark_csv(workdir / "faces", n=6, k=5)
    rows = (root / "landmarks.csv").read_text().splitlines()
    rows[3] = ",".join(rows[3].split(",")[:7])  # 3 points where the others have 5
    (root / "landmarks.csv").write_text("\n".join(rows) + "\n")
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert code == 1 and "line 4: 3 points, but the rows before have 5; fix that row" in line
    (root / "landmarks.csv").write_text("\n".join(rows[:3] + [rows[3]]))  # the same row, last and without its line break
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert code == 1 and line.endswith("line 4: 3 points, but the rows before have 5; the file ends in the middle of this row "
                                       "(cut off while copied or downloaded?): copy or write it again")


def test_a_landmark_csv_separated_by_semicolons_says_so(workdir, capsys):
    # As Excel saves a CSV in many locales: it was `line 1: 0 coordinate values after the image name`.
    root = write_landmark_csv(workdir / "faces", n=6)
    (root / "landmarks.csv").write_text((root / "landmarks.csv").read_text().replace(",", ";"))
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert code == 1 and line == (
        f"error: {root / 'landmarks.csv'}, line 1: one column, 'image;x1;y1;x2;y2;x3;y3;x4;y4;x5;y5': the file is separated "
        "by semicolons, not commas; save it as a comma-separated file (with decimal points: 61.5, not 61,5)"
    )


def test_a_landmark_csv_with_mac_line_ends_is_read_and_one_in_cp1252_is_named(workdir, capsys):
    # Both were `error: Error: new-line character seen in unquoted field ...` / `error: UnicodeDecodeError:
    # 'utf-8' codec can't decode byte 0xe9 ...`, each raised "at" a line of the library or of Python's codecs.
    root = write_landmark_csv(workdir / "faces", n=6)
    rows = (root / "landmarks.csv").read_text().splitlines()
    rows[3] = rows[3].replace(",", ",?", 1)
    (root / "landmarks.csv").write_text("\r".join(rows) + "\r")  # Excel for Mac's "CSV (Macintosh)": lone \r ends rows
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert code == 1 and f"{root / 'landmarks.csv'}, line 4: column 2 is '?" in line  # read row by row, counted right
    (root / "landmarks.csv").write_bytes("\r\n".join(rows[:3] + ["visage_\xe9.png" + rows[4][12:]]).encode("cp1252"))
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert code == 1 and line == (
        f"error: {root / 'landmarks.csv'} is not a UTF-8 text CSV: save it as 'CSV UTF-8 (comma delimited)', "
        "or point --data.init_args.csv_file at the CSV"
    )
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        # Both eye centres were one point: the run trained and logged nan for every NME and PCK, and kept a "best" checkpoint.
        ("eye_indices", "[[0], [0]]", "eye_indices [[0], [0]] give both eyes the same points; give [[left eye's points], "
                                      "[right eye's points]], e.g. [[0], [1]]"),
        # It said "landmark 2 appears in two flip pairs".
        ("flip_pairs", "[[1, 0], [2, 2]]", "flip pair [2, 2] pairs point 2 with itself; leave it out: a point in no pair "
                                           "(nose tip, chin) keeps its index"),
    ],
    ids=["eye_indices", "flip_pairs"],
)
def test_eye_indices_or_flip_pairs_naming_one_point_twice_are_refused(workdir, capsys, option, value, expected):
    root = write_landmark_csv(workdir / "faces", n=12)
    code, line = error_of(landmark_fit(root, workdir / "runs", f"--data.init_args.{option}", value), capsys)
    assert code == 2 and line == f"error: {expected}"
    assert not (workdir / "runs").exists()


# -- through the CLI: root one folder off ---------------------------------------------------------


def test_a_muct_root_one_folder_off_names_the_folder_to_give(workdir, capsys):
    # root set to muct-landmarks/ (or jpg/, the CSV, the folder above) got the advice to download
    # and extract all six archives again, into the wrong folder.
    root = write_muct(workdir / "data" / "muct", subjects=("000", "001"))
    advice = f"set --data.init_args.root {root} (the folder that holds muct-landmarks/muct76-opencv.csv)"
    for wrong in (root / "muct-landmarks", root / "jpg", root / "muct-landmarks" / "muct76-opencv.csv", root.parent):
        code, line = error_of(muct_fit(wrong, workdir / "runs"), capsys)
        assert code == 1 and line.endswith(f"but {root / 'muct-landmarks' / 'muct76-opencv.csv'} is there: {advice}"), wrong
    (root / "muct-landmarks" / "muct76-opencv.csv").rename(root / "muct76-opencv.csv")  # put by hand beside jpg/
    code, line = error_of(muct_fit(root, workdir / "runs"), capsys)
    assert line.endswith(f"but {root / 'muct76-opencv.csv'} is there: move it into {root / 'muct-landmarks'}")
    assert not (workdir / "runs").exists()


def test_a_celeba_root_one_folder_off_names_the_folder_to_give(workdir, capsys, monkeypatch):
    import torchvision.datasets.celeba as tv_celeba

    root = write_celeba(workdir / "data", n=10)  # torchvision fails on a split of one image (a 0-d tensor)
    for wrong in (root / "celeba", root / "celeba" / "img_align_celeba", workdir):
        code, line = error_of(landmark_fit(root, workdir / "runs", "--data", "CelebALandmarks", "--data.init_args.root", str(wrong)), capsys)
        assert code == 1 and line.endswith(f"set --data.init_args.root {root} (the folder that holds celeba/)"), wrong
    # img_align_celeba.zip unzipped into a folder of its own name: every image was "missing".
    monkeypatch.setattr(tv_celeba, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    images = root / "celeba" / "img_align_celeba"
    images.rename(root / "celeba" / "unzipped")
    images.mkdir()
    (root / "celeba" / "unzipped").rename(images / "img_align_celeba")
    code, line = error_of(landmark_fit(root, workdir / "runs", "--data", "CelebALandmarks", "--data.init_args.root", str(root)), capsys)
    assert code == 1 and f"the CelebA images are in {images / 'img_align_celeba'}, one folder too deep" in line
    assert line.endswith(f"move them up into {images}, or unzip the archive in {root / 'celeba'} (unzip img_align_celeba.zip -d {root / 'celeba'})")


def test_a_landmark_csv_root_or_images_dir_one_folder_off_names_the_setting(workdir, capsys):
    root = write_landmark_csv(workdir / "data" / "faces", n=6)
    for wrong in (root.parent, root / "landmarks.csv"):
        code, line = error_of(landmark_fit(wrong, workdir / "runs"), capsys)
        assert code == 1 and line.endswith(f"set --data.init_args.root {root} (the folder that holds landmarks.csv)"), wrong
    (root / "images").mkdir()
    for image in root.glob("*.png"):
        image.rename(root / "images" / image.name)
    code, line = error_of(landmark_fit(root, workdir / "runs"), capsys)
    assert code == 1 and line.endswith(f"but {root / 'images' / 'face_000.png'} is there: set --data.init_args.images_dir images")


def test_points_outside_their_image_are_one_warning_under_ddp_too(workdir):
    """Two DDP processes each load the set: the warning was printed once by each, while the README
    says it once."""
    import sys

    from lightning_hw.runs import naming

    root = write_landmark_csv(workdir / "faces", n=20, k=5, size=(52, 40))
    moved = iter([True])

    def push_out(values):
        if next(moved, False):
            values[4] = 41.5
        return values

    rewrite_points(root, push_out)
    args = [a for a in landmark_fit(root, workdir / "runs") if a not in ("--trainer.fast_dev_run", "true")]
    args += ["--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", naming.RUN_DIR_ENV)}
    proc = warm_start.run([sys.executable, "-m", "lightning_hw", *args], cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if "lie outside their image" in line]
    assert len(said) == 1, said
