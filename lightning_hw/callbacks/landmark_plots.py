"""Test images with their true and predicted landmarks drawn (E6's figure).

At the end of testing, :class:`LandmarkPlots` draws the first test images as stored
(before normalisation) with the points the test predicted for them: true points as green
circles, predictions as red crosses, joined by a line. The figure is saved as
``<run>/landmarks_test.png`` and logged to W&B as ``plots/landmarks_test`` (through
:func:`lightning_hw.callbacks.plots.log_figure`, like every figure of a run).

The predictions are those of the test loop (``test_step``'s ``points``, as
:class:`~lightning_hw.callbacks.interpretation.WorstFaces` reads them), not of a second
forward pass after it: while a :class:`~lightning_hw.callbacks.feature_cache.FeatureCache`
serves the test, the datamodule's loaders and batch hook give backbone features and the
net takes features, so images fed to the model after the loop are not what it reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from lightning_hw.callbacks.interpretation import KeptTestSamples
from lightning_hw.callbacks.plots import log_figure


def draw_landmarks(images: torch.Tensor, true: torch.Tensor, pred: torch.Tensor, columns: int = 4):
    """A grid of images with true (green circles) and predicted (red crosses) points.

    Args:
        images: ``(N, C, H, W)`` uint8 or [0, 1] float images.
        true: ``(N, K, 2)`` true points in pixels (``NaN`` = missing, not drawn).
        pred: ``(N, K, 2)`` predicted points in pixels.
        columns: images per row.

    Returns:
        The matplotlib figure.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    n = images.shape[0]
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(2.6 * columns, 2.6 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    pixels = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        h, w = pixels.shape[-2:]
        image = pixels[i].permute(1, 2, 0).clamp(0, 1).numpy()
        # extent puts pixel i at [i, i + 1]: points are continuous pixel coordinates.
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", extent=(0, w, h, 0))
        t, p = true[i].numpy(), pred[i].numpy()
        present = ~(torch.isnan(true[i]).any(dim=-1)).numpy()
        for (tx, ty), (px, py) in zip(t[present], p[present]):
            ax.plot([tx, px], [ty, py], color="yellow", linewidth=0.8)
        ax.scatter(t[present, 0], t[present, 1], s=28, facecolors="none", edgecolors="lime", linewidths=1.2)
        ax.scatter(p[:, 0], p[:, 1], s=22, c="red", marker="x", linewidths=1.2)
    fig.suptitle("landmarks: true (green circles), predicted (red crosses)")
    fig.tight_layout()
    return fig


class LandmarkPlots(KeptTestSamples):
    """Draw the first test images with their true and predicted points after testing.

    Needs a task whose ``test_step`` returns its predicted points (``{"loss", "points"}``)
    and that has ``to_pixels``, as :class:`~lightning_hw.tasks.landmarks.LandmarkRegressor`;
    for another task's test it runs the model on the first test images itself.

    Args:
        num_images: how many test images to draw.
        name: file stem of the figure in the run directory (W&B key ``plots/<name>``).
    """

    output_key = "points"
    task_method = "to_pixels"
    missing = "gives no predicted points from test_step"

    def __init__(self, num_images: int = 16, name: str = "landmarks_test") -> None:
        super().__init__(num_images)
        self.num_images = num_images
        self.name = name
        self.path: Path | None = None

    def collect(self, trainer: Trainer, pl_module: LightningModule, output: torch.Tensor, batch: Any) -> None:  # noqa: D102
        position = self.positions(trainer, output.shape[0], output.device)
        # The first faces of the split, over all processes: the score falls with the position.
        self.top.update(-position.float(), inputs=batch[0], points=output, target=batch[1], position=position)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "transform_batch") or self.num_images <= 0:
            return
        if self._unsupported is not None:
            self._draw_from_a_second_pass(trainer, pl_module)
            return
        kept = self.top.gathered(trainer)
        if kept is None:
            return
        _, fields = kept
        images = self.images_to_draw(trainer, fields, f"{self.name}.png")
        if images is None:
            return
        true, pred = (pl_module.to_pixels(fields[name].to(pl_module.device)).cpu() for name in ("target", "points"))
        fig = draw_landmarks(images, true, pred)
        self.path = log_figure(trainer, self.name, fig, caption="true: green circles, predicted: red crosses")

    def _draw_from_a_second_pass(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Predict the first test images' points with the model after the test (a task whose ``test_step`` gives none)."""
        dm = trainer.datamodule
        images, points = [], []
        for batch in dm.test_dataloader():  # raw batches: the pixels as stored
            images.append(batch[0])
            points.append(batch[1])
            if sum(len(b) for b in images) >= self.num_images:
                break
        images = torch.cat(images)[: self.num_images]
        points = torch.cat(points)[: self.num_images].float()
        # The datamodule's batch hook, as the test loop prepares a batch: scaled, normalised and in
        # the trainer's precision (bfloat16 under bf16-true, which the net's weights are in).
        x = dm.on_after_batch_transfer((images, points), 0)[0]
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            pred = pl_module.to_pixels(pl_module(x.to(pl_module.device))).float().cpu()
        pl_module.train(was_training)
        fig = draw_landmarks(images, points, pred)
        self.path = log_figure(trainer, self.name, fig, caption="true: green circles, predicted: red crosses")
