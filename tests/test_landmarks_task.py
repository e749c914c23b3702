"""LandmarkRegressor through the CLI on SyntheticFaces: links, logged metrics, plots, predictions."""

from __future__ import annotations

import csv

import pytest
import torch

from lightning_hw.cli import HWCLI, main
from lightning_hw.data.landmarks.synthetic_faces import SyntheticFaces
from lightning_hw.nets.small_cnn import SmallCNN
from lightning_hw.tasks.landmarks import LandmarkRegressor
from tests.conftest import REPO, tiny_run_args

DEMO = REPO / "configs" / "landmarks_demo.yaml"


@pytest.fixture
def demo_args(workdir):
    """The demo config cut to a few small batches of small faces (one thing flipped per test)."""

    def build(subcommand: str = "fit", *extra: str) -> list[str]:
        small_faces = ["--data.init_args.num_samples", "160", "--data.init_args.image_size", "32",
                       "--data.init_args.batch_size", "16"]
        return tiny_run_args(subcommand, DEMO, workdir / "runs", *small_faces, *extra)

    return build


def test_fit_logs_landmark_metrics_draws_the_test_faces_and_reports_the_baseline(demo_args, workdir):
    cli = HWCLI(args=demo_args("fit", "--run.name", "r1"))
    # Sizes came from the datamodule: 5 points + the demo's contour points, 3-channel 32x32 images.
    assert cli.model.num_landmarks == cli.datamodule.num_landmarks == 5 + cli.datamodule.contour_points
    assert cli.model.hparams.input_shape == (3, 32, 32) and cli.model.eye_indices == [[0], [1]]
    run_dir = workdir / "runs" / "landmarks_demo" / "r1"
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    logged = {key for row in rows for key, value in row.items() if value}
    expected = {"train/loss", "train/nme", "val/loss", "val/nme", "val/pck", "val/pck@0.05", "test/loss", "test/nme",
                "test/pck", "test/nme_mean_shape"}
    assert expected <= logged
    assert (run_dir / "landmarks_test.png").stat().st_size > 10_000
    # The mean shape the baseline uses is the mean of the training split's points.
    shape = cli.model.mean_shape
    assert shape is not None and shape.shape == (cli.model.num_landmarks, 2) and ((shape > 0) & (shape < 1)).all()


def test_predictions_come_back_in_pixels():
    dm = SyntheticFaces(num_samples=40, image_size=32, splits=(0.5, 0.25, 0.25), batch_size=8)
    dm.setup("fit")
    model = LandmarkRegressor(net=SmallCNN((3, 32, 32), 10, channels=[8, 16]), num_landmarks=5, input_shape=(3, 32, 32))
    model.eval()
    x, _ = dm.transform_batch(*next(iter(dm.test_dataloader())))
    with torch.no_grad():
        out = model.predict_step((x,), 0)
    torch.testing.assert_close(out["landmarks"], out["normalized"] * 32)
    assert out["landmarks"].shape == (8, 5, 2)


def test_a_net_factory_gets_twice_the_number_of_landmarks(demo_args):
    cli = HWCLI(args=demo_args("fit", "--data.init_args.contour_points", "6", "--trainer.fast_dev_run", "true"))
    assert cli.model.num_landmarks == 11
    assert cli.model.net.head[-2].out_channels == 11  # soft-argmax: one score map per point -> 22 outputs


@pytest.mark.slow
def test_muct_resnet50_config_runs_on_the_muct_fixture(workdir):
    from lightning_hw.data.fixtures.landmarks import write_muct
    from lightning_hw.nets.backbones import TimmNet

    root = write_muct(workdir / "muct", subjects=("000", "001", "002", "003"))
    cli = HWCLI(args=[
        "fit", "--config", str(REPO / "configs" / "landmarks_muct_resnet50.yaml"),
        "--data.init_args.root", str(root),
        "--data.init_args.image_size", "[64, 48]",
        "--data.init_args.batch_size", "4",
        "--data.init_args.num_workers", "0",
        "--data.init_args.splits", "[0.5, 0.25, 0.25]",
        "--model.init_args.net.init_args.pretrained", "false",  # no network in tests
        "--trainer.fast_dev_run", "true",
        "--run.root", str(workdir / "runs"), "--run.wandb", "disabled",
    ])
    net = cli.model.net
    assert isinstance(net, TimmNet) and net.model_name == "resnet50"
    # The reports' top: global average pooling -> Dense(2K) -> sigmoid.
    assert net.feature_shape == (2048,) and net.head[-1].out_features == 152
    assert isinstance(cli.model.activation, torch.nn.Sigmoid) and cli.model.eye_indices == [[31], [36]]
    assert cli.datamodule.landmark_augment.horizontal_flip and cli.trainer.state.finished
    # ResNet's ImageNet normalisation came from the backbone's timm data config, not from the YAML.
    assert cli.datamodule.mean == pytest.approx([0.485, 0.456, 0.406]) and cli.datamodule.std == pytest.approx([0.229, 0.224, 0.225])


def test_celeba_config_resolves(workdir, capsys):
    with pytest.raises(SystemExit):
        HWCLI(args=["fit", "--config", str(REPO / "configs" / "landmarks_celeba5.yaml"), "--print_config"])
    printed = capsys.readouterr().out
    assert "CelebALandmarks" in printed and "resnet50" in printed and "horizontal_flip: true" in printed


@pytest.mark.slow
def test_a_few_epochs_beat_the_mean_shape_by_far(demo_args, workdir):
    """The drawn faces must be *learned*: the mean-shape baseline is far behind after a short run."""
    args = demo_args("fit", "--data.init_args.num_samples", "1200", "--data.init_args.image_size", "48",
                     "--trainer.max_epochs", "3", "--model.init_args.plot_samples", "0")
    for limit in ("--trainer.limit_train_batches", "--trainer.limit_val_batches", "--trainer.limit_test_batches"):
        args[args.index(limit) + 1] = "1.0"
    cli = HWCLI(args=args)
    metrics = cli.trainer.callback_metrics
    assert metrics["test/nme"] < 0.5 * metrics["test/nme_mean_shape"], {k: float(v) for k, v in metrics.items()}


def csv_faces_fit(root, runs, *extra: str) -> list[str]:
    """``fit`` of the demo's model on a LandmarkCSV folder of 40 faces (4 test faces: one test batch), quiet."""
    return tiny_run_args(
        "fit", DEMO, runs, "--data", "LandmarkCSV", "--data.init_args.root", str(root),
        "--data.init_args.image_size", "16", "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0",
        "--data.init_args.flip_pairs", "[[0, 1]]", "--data.init_args.eye_indices", "[[0], [1]]",
        "--model.init_args.plot_samples", "0", "--trainer.callbacks", "[]", *extra,
    )


def mean_shape_nme_by_hand(root, train_ids: list[str], test_ids: list[str], size: tuple[int, int]) -> float:
    """The NME of the training rows' mean points on the test rows, read from ``landmarks.csv`` (pixels of ``size`` (H, W))."""
    with open(root / "landmarks.csv", newline="") as f:
        rows = {row[0]: torch.tensor([float(c) if c else float("nan") for c in row[1:]]).view(-1, 2) for row in list(csv.reader(f))[1:]}
    scale = torch.tensor([1 / size[1], 1 / size[0]])
    train = torch.stack([rows[name] for name in train_ids]) * scale
    mean = torch.nanmean(train, dim=0)
    total = 0.0
    for name in test_ids:
        points = rows[name] * scale
        eyes = torch.linalg.vector_norm(points[0] - points[1])
        annotated = ~points.isnan().any(dim=-1)
        total += float((torch.linalg.vector_norm(mean - points, dim=-1)[annotated] / eyes).mean())
    return total / len(test_ids)


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_the_mean_shape_baseline_is_the_training_sets_not_its_augmented_copies(workdir, monkeypatch, in_memory):
    # With flips, rotations and shifts, the baseline was the mean of the augmented training targets:
    # test/nme_mean_shape 0.4856 where the training rows' mean shape scores 0.4510 (40 faces, 2 epochs).
    from lightning_hw.data.fixtures.landmarks import write_landmark_csv
    from lightning_hw.data.io.image_files import image_file_size
    from lightning_hw.data.landmarks import base

    headers_read = []
    monkeypatch.setattr(base, "image_file_size", lambda path, **kw: headers_read.append(path) or image_file_size(path, **kw))
    root = write_landmark_csv(workdir / "faces", n=40, k=5, size=(52, 40))
    augment = "{rotation: 40, width_shift: 0.2, horizontal_flip: true}"
    cli = HWCLI(args=csv_faces_fit(root, workdir / "runs", "--data.init_args.augment", augment,
                                   "--data.init_args.in_memory", in_memory, "--trainer.limit_test_batches", "1.0"))
    ids = {split: cli.datamodule.split_ids(split) for split in ("train", "test")}
    assert len(ids["test"]) == 4
    expected = mean_shape_nme_by_hand(root, ids["train"], ids["test"], size=(52, 40))
    assert float(cli.trainer.callback_metrics["test/nme_mean_shape"]) == pytest.approx(expected, rel=1e-4)
    if in_memory == "false":  # each file's header read once (setup), not again for the baseline (6 s for CelebA's)
        assert len(headers_read) == len(set(headers_read)) == 40


def test_other_eye_indices_beside_a_checkpoint_are_said_and_recorded_or_refused_on_a_resume(workdir, capsys):
    # `test --ckpt_path ... --data.init_args.eye_indices [[2], [3]]` normalised test/nme by another distance
    # (0.4975 where the run's test scored 0.5510) and recorded it as the run's test/nme, without a word.
    from lightning_hw.data.fixtures.landmarks import write_landmark_csv
    from reliability_helpers import error_of

    root = write_landmark_csv(workdir / "faces", n=40, k=5, size=(52, 40))
    HWCLI(args=csv_faces_fit(root, workdir / "runs", "--run.name", "r1"))
    run = workdir / "runs" / "landmarks_demo" / "r1"
    capsys.readouterr()
    with pytest.warns(UserWarning) as caught:
        main(["test", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--data.init_args.eye_indices", "[[2], [3]]"])
    said = [str(w.message) for w in caught if "eye_indices" in str(w.message)]
    assert said == [
        "the checkpoint was trained with eye_indices [[0], [1]], this data gives eye_indices [[2], [3]]: NME and PCK "
        "here are normalised by another distance and are not comparable with the run's; use the run's config.yaml "
        "(its eye_indices) for comparable scores"
    ]
    (evaluation,) = (run / "eval").iterdir()
    assert (evaluation / "caveats.txt").read_text() == said[0] + "\n"
    # The same eye points as training's: no caveat.
    main(["test", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    assert sorted(p.name for p in (run / "eval").iterdir() if (p / "caveats.txt").is_file()) == [evaluation.name]
    # A resume would pick its best checkpoint by val/nme of two normalisers: refused, the run left as it was.
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    code, line = error_of(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_epochs", "2",
                           "--data.init_args.eye_indices", "[[2], [3]]"], capsys)
    assert code != 0 and line == (
        "error: the checkpoint was trained with eye_indices [[0], [1]], this data gives eye_indices [[2], [3]]: val/nme "
        "and PCK would be normalised by another distance than the checkpoint's; use its run's config.yaml (its "
        "eye_indices), or train a new run without --ckpt_path"
    )
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
