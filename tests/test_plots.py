"""Learning curves, the prediction grid and the model summary land in the run directory and in W&B."""

from __future__ import annotations

import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from matplotlib.figure import Figure
from PIL import Image

from lightning_hw.callbacks.plots import MetricCurves, PredictionGrid, log_figure
from lightning_hw.cli import HWCLI

CALLBACKS = [
    {"class_path": "lightning_hw.callbacks.plots.MetricCurves"},
    {"class_path": "lightning_hw.callbacks.plots.PredictionGrid", "init_args": {"num_images": 3}},
    {"class_path": "lightning_hw.callbacks.plots.ModelSummaryFile"},
]


def test_log_figure_saves_a_png_and_logs_it_to_wandb(tmp_path, monkeypatch):
    wandb_logger = WandbLogger(save_dir=str(tmp_path), offline=True)  # never started: log_image is replaced
    logged = []
    monkeypatch.setattr(wandb_logger, "log_image", lambda **kwargs: logged.append(kwargs))
    trainer = Trainer(logger=[CSVLogger(tmp_path, name="", version=""), wandb_logger], default_root_dir=tmp_path)
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    path = log_figure(trainer, "demo/line", fig, caption="a line")
    assert path == tmp_path / "demo" / "line.png"
    assert Image.open(path).format == "PNG"
    assert logged == [{"key": "plots/demo/line", "images": [str(path)], "step": 0, "caption": ["a line"]}]


def test_log_figure_without_loggers_uses_the_root_dir(tmp_path):
    trainer = Trainer(logger=False, default_root_dir=tmp_path)
    assert log_figure(trainer, "x", Figure()) == tmp_path / "x.png"
    assert (tmp_path / "x.png").is_file()


def test_fit_draws_curves_predictions_and_summary(tiny_args, workdir):
    overlay = workdir / "plots.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": CALLBACKS}}))
    cli = HWCLI(args=tiny_args("fit", "--config", str(overlay), "--trainer.max_epochs", "2", "--run.name", "p"))
    run_dir = workdir / "runs" / "quickstart" / "p"  # the group is the first config's, not the overlay's
    for name in ("curves.png", "predictions.png", "model_summary.txt"):
        assert (run_dir / name).is_file(), name
    curves = next(c for c in cli.trainer.callbacks if isinstance(c, MetricCurves))
    assert sorted(curves.history["train/loss"]) == [0, 1] and sorted(curves.history["val/acc"]) == [0, 1]
    assert "9,610 parameters" in (run_dir / "model_summary.txt").read_text()  # 64*128+128 + 128*10+10


def test_grid_titles_name_the_classes():
    grid = PredictionGrid(num_images=3)
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    fig = grid.figure(x, torch.tensor([0, 1, 2]), torch.tensor([0, 2, 2]), ["cat", "dog", "bird"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["predicted: cat / actual: cat", "predicted: bird / actual: dog", "predicted: bird / actual: bird"]
    colours = [ax.title.get_color() for ax in fig.axes if ax.get_title()]
    assert colours == ["green", "red", "green"]


@pytest.mark.slow
def test_figures_reach_an_offline_wandb_run(tiny_args, workdir):
    overlay = workdir / "plots.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": CALLBACKS[:2]}}))
    HWCLI(args=tiny_args("fit", "--config", str(overlay), "--run.wandb", "offline", "--run.name", "w"))
    media = list((workdir / "runs" / "quickstart" / "w" / "wandb").glob("offline-run-*/files/media/images/plots/*.png"))
    assert sorted(p.name.split("_")[0] for p in media) == ["curves", "predictions"]
