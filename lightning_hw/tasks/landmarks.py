"""Facial landmark regression (E6): a net regresses ``K`` points as ``2K`` numbers in (0, 1).

The E6 reports trained ImageNet ResNet50 -> global average pooling -> ``Dense(2K, sigmoid)``
on coordinates divided by the image width and height, with the mean Euclidean distance
to the annotated points as the loss (points stored as ``(0, 0)`` masked out), and
multiplied the outputs back to pixels to draw them. That is this task with
``loss: distance`` and ``output_activation: sigmoid`` (the defaults) and a
:class:`~lightning_hw.nets.backbones.TimmNet` net; see ``configs/landmarks_muct_resnet50.yaml``.

Logged per epoch: ``{train,val,test}/loss``, ``{train,val,test}/nme`` (the checkpoint
metric ``val/nme``), ``{val,test}/pck`` (PCK at the first of ``pck_thresholds``) and
``{val,test}/pck@T`` for the others. ``test/nme_mean_shape`` is the NME of the
no-image baseline that predicts the mean training shape (the training points as stored,
not augmented) for every face, so the model's ``test/nme`` can be read against it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from lightning_hw.errors import ConfigError, LightningHWWarning
from lightning_hw.nets import NetFactory, build_net
from lightning_hw.nets.landmark_losses import LandmarkLoss, landmark_mask
from lightning_hw.tasks.base import STAGES, Task
from lightning_hw.tasks.landmark_metrics import NME, PCK, face_nme

OUTPUT_ACTIVATIONS = ("sigmoid", "none")


class LandmarkRegressor(Task):
    """Regress ``num_landmarks`` ``(x, y)`` points, normalised to (0, 1) by image width and height.

    Args:
        net: the network, as a factory called with ``(input_shape, 2 * num_landmarks)``
            (from the CLI: a ``class_path`` such as ``lightning_hw.nets.backbones.TimmNet``), or a module.
        num_landmarks: points per face; linked from the datamodule.
        input_shape: shape of one model input; linked from the datamodule.
        image_shape: ``(C, H, W)`` of the images the points refer to; linked from the
            datamodule (default: ``input_shape`` when that is an image shape). Metrics are
            measured and predictions returned in these pixels.
        eye_indices: ``(left, right)`` eye point indices; linked from the datamodule.
            NME/PCK are normalised by the inter-ocular distance when given, else by the
            bounding-box diagonal.
        loss: ``distance`` (the reports' masked mean Euclidean distance), ``l1``, ``l2`` or
            ``wing``; missing points never count (see :mod:`lightning_hw.nets.landmark_losses`).
        output_activation: ``sigmoid`` (outputs in (0, 1), as in the reports) or ``none``.
        normalize_loss: divide each face's loss by its inter-ocular distance.
        wing_width: Wing loss ``w`` in normalised units.
        wing_curvature: Wing loss ``eps`` in normalised units.
        pck_thresholds: PCK thresholds; the first is logged as ``pck``, the others as ``pck@T``.
        plot_samples: test images drawn with their true and predicted points at the end of
            testing (``<run>/landmarks_test.png``, logged to W&B); 0 switches it off.
        lr: see :class:`~lightning_hw.tasks.base.Task`.
    """

    monitor = "val/nme"
    monitor_mode = "min"
    linked_from_data = ("num_landmarks", "input_shape", "image_shape", "eye_indices")

    def __init__(
        self,
        net: NetFactory,
        num_landmarks: int = 5,
        input_shape: tuple[int, ...] = (3, 64, 64),
        image_shape: tuple[int, int, int] | None = None,
        eye_indices: tuple[list[int], list[int]] | None = None,
        loss: str = "distance",
        output_activation: str = "sigmoid",
        normalize_loss: bool = False,
        wing_width: float = 0.04,
        wing_curvature: float = 0.008,
        pck_thresholds: list[float] = [0.1, 0.05],  # noqa: B006 - jsonargparse shows list defaults; never mutated
        plot_samples: int = 16,
        lr: float | None = None,
    ) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters(ignore=["net"])
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ConfigError(f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, got {output_activation!r}")
        if not pck_thresholds:
            raise ConfigError("pck_thresholds needs at least one threshold, e.g. [0.1, 0.05]")
        if image_shape is None:
            if len(input_shape) != 3:
                raise ConfigError(
                    f"input_shape {tuple(input_shape)} is not an image; give image_shape (C, H, W) to measure points in pixels"
                )
            image_shape = tuple(input_shape)
        self.num_landmarks = num_landmarks
        self.eye_indices = [list(side) for side in eye_indices] if eye_indices is not None else None
        self.plot_samples = plot_samples
        self.net = build_net(net, input_shape, 2 * num_landmarks)
        self.activation = nn.Sigmoid() if output_activation == "sigmoid" else nn.Identity()
        self.criterion = LandmarkLoss(loss, normalize_loss, self.eye_indices, wing_width, wing_curvature)
        # (x, y) scale from (0, 1) to pixels of the image the points refer to.
        self.register_buffer("pixel_scale", torch.tensor([image_shape[-1], image_shape[-2]], dtype=torch.float32), persistent=False)
        # Sum and count of the training points, for the mean-shape baseline (see on_train_start).
        self.register_buffer("shape_sum", torch.zeros(num_landmarks, 2, dtype=torch.float64))
        self.register_buffer("shape_count", torch.zeros(num_landmarks, dtype=torch.float64))
        self._shapes_from_data = False
        self.evaluation_caveats: list[str] = []  # what an evaluation's scores must be read with (caveats.txt)
        self.pck_names = ["pck", *(f"pck@{t:g}" for t in pck_thresholds[1:])]
        for stage in STAGES:  # train_metrics, val_metrics, test_metrics
            metrics = {"nme": NME(self.eye_indices)}
            if stage != "train":
                metrics.update({f"pck{i}": PCK(t, self.eye_indices) for i, t in enumerate(pck_thresholds)})
            setattr(self, f"{stage}_metrics", nn.ModuleDict(metrics))
        self.mean_shape_nme = NME(self.eye_indices)

    # -- outputs ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted points ``(N, K, 2)`` in normalised (0, 1) coordinates."""
        return self.activation(self.net(x)).view(x.shape[0], self.num_landmarks, 2)

    def describe_outputs(self) -> str:
        w, h = (int(v) for v in self.pixel_scale.tolist())
        return (
            f"points (N x {self.num_landmarks} x 2), (x, y) as fractions of the image width and height: "
            f"multiply by ({w}, {h}) for pixels of the {w}x{h} model input, or by an image file's width and "
            "height for pixels of that file (decoding resizes the whole file to the input, no crop)"
        )

    def validation_metric_names(self) -> set[str]:
        """``val/loss``, ``val/nme`` and the PCK names (``val/pck``, ``val/pck@0.05``...)."""
        return {"val/loss", "val/nme", *(f"val/{name}" for name in self.pck_names)}

    def to_pixels(self, points: torch.Tensor) -> torch.Tensor:
        """Normalised points -> pixels of the image (``x * W``, ``y * H``), in float32 under any precision.

        bfloat16 (``bf16-true``) holds 3 significant digits: a product in it is off by pixels.
        """
        return points.float() * self.pixel_scale.float()

    @property
    def mean_shape(self) -> torch.Tensor | None:
        """The mean training shape ``(K, 2)`` (normalised), or ``None`` before any training."""
        if self.shape_count.sum() == 0:
            return None
        mean = self.shape_sum / self.shape_count.clamp_min(1).unsqueeze(-1)
        # A point that was never annotated in training gets the image centre.
        return torch.where(self.shape_count.unsqueeze(-1) > 0, mean, torch.full_like(mean, 0.5)).float()

    def on_train_start(self) -> None:
        """Take the mean shape from the datamodule's training points as stored, where it gives them.

        The training steps' targets are augmented (flipped, rotated, points pushed off the image
        dropped): their running mean, which a datamodule without ``training_shapes`` leaves the
        baseline to, is not the training set's mean shape. Called after a resumed run's buffers
        are restored, so it replaces them.
        """
        super().on_train_start()
        datamodule = getattr(self.trainer, "datamodule", None)
        shapes = datamodule.training_shapes() if hasattr(datamodule, "training_shapes") else None
        self._shapes_from_data = shapes is not None
        if shapes is not None:
            self.shape_sum.zero_()
            self.shape_count.zero_()
            self.add_to_shape_sums(shapes.to(self.shape_sum.device))

    def add_to_shape_sums(self, points: torch.Tensor) -> None:
        """Add the annotated points of ``(N, K, 2)`` normalised ``points`` to the mean shape's sum and count."""
        mask = landmark_mask(points)
        self.shape_sum += torch.where(mask.unsqueeze(-1), points, torch.zeros_like(points)).sum(dim=0).double()
        self.shape_count += mask.sum(dim=0).double()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Say when the data's eye points differ from those the checkpoint's metrics were normalised by.

        ``eye_indices`` comes from the data, not from the checkpoint (it sizes nothing), so
        ``test --ckpt_path ... --data.init_args.eye_indices ...`` scored ``test/nme`` against
        another distance and recorded it beside training's without a word. As for another
        split: an evaluation goes on with a warning kept in its record (``caveats.txt``); a fit
        is refused, since its best checkpoint would be picked by ``val/nme`` of two normalisers.
        """
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("hyper_parameters") or {}
        if "eye_indices" not in saved:  # a checkpoint of a task that saved no hyperparameters says nothing
            return
        trained = [list(side) for side in saved["eye_indices"]] if saved["eye_indices"] is not None else None
        if trained == self.eye_indices:
            return
        describe = lambda eyes: f"eye_indices {eyes}" if eyes is not None else "no eye_indices (the bounding-box diagonal)"  # noqa: E731
        change = f"the checkpoint was trained with {describe(trained)}, this data gives {describe(self.eye_indices)}"
        stage = self.trainer.state.fn if self._trainer is not None else None  # a TrainerFn: equal to its str value
        if stage == "fit":
            raise ConfigError(
                f"{change}: val/nme and PCK would be normalised by another distance than the checkpoint's; "
                "use its run's config.yaml (its eye_indices), or train a new run without --ckpt_path"
            )
        if stage in ("validate", "test"):
            message = (
                f"{change}: NME and PCK here are normalised by another distance and are not comparable with the "
                "run's; use the run's config.yaml (its eye_indices) for comparable scores"
            )
            warnings.warn(message, LightningHWWarning, stacklevel=2)
            self.evaluation_caveats.append(message)

    # -- steps -----------------------------------------------------------------------------

    def shared_step(self, batch, stage: str) -> torch.Tensor:
        x, target = batch[0], batch[1]
        return self._finish_step(self(x), target, stage)

    def _finish_step(self, pred: torch.Tensor, target: torch.Tensor, stage: str) -> torch.Tensor:
        """The loss of predicted points ``pred``; accumulates the epoch's loss, points and mean shape."""
        loss = self.criterion(pred, target)
        if stage == "train" and not self._shapes_from_data:
            self.add_to_shape_sums(target)
        self.log_loss(stage, loss, batch_size=pred.shape[0])
        self.collect(stage, self.to_pixels(pred.detach()), self.to_pixels(target))
        return self.add_penalty(stage, loss, pred.shape[0])

    def test_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor] | torch.Tensor:
        """The batch's loss and its predicted points (``points``, normalised), which callbacks read per face.

        :class:`~lightning_hw.callbacks.interpretation.WorstFaces` takes them from here
        (``on_test_batch_end``): no second forward pass. A subclass with its own ``shared_step``
        keeps it (and returns its loss only).
        """
        if type(self).shared_step is not LandmarkRegressor.shared_step:
            return super().test_step(batch, batch_idx)
        x, target = batch[0], batch[1]
        pred = self(x)
        return {"loss": self._finish_step(pred, target, "test"), "points": pred.detach()}

    def face_errors(self, points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each face's NME ``(N,)`` as ``test/nme`` averages it (``NaN``: a face the metric leaves out).

        Args:
            points: predicted points ``(N, K, 2)``, normalised (``forward``).
            target: true points, normalised, as in the batch.
        """
        return face_nme(self.to_pixels(points), self.to_pixels(target), self.eye_indices)

    def compute_epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """NME and PCK of the epoch's collected points (in pixels), and the mean-shape NME on test."""
        outputs = self.epoch_outputs[f"{stage}_outputs"]
        if not outputs.update_called:
            return {}
        pred_px, target_px = outputs.compute()
        values = {}
        for key, metric in getattr(self, f"{stage}_metrics").items():
            metric.update(pred_px, target_px)
            name = "nme" if key == "nme" else self.pck_names[int(key[3:])]
            values[f"{stage}/{name}"] = metric.compute()
        if stage == "test" and self.mean_shape is not None:
            self.mean_shape_nme.update(self.to_pixels(self.mean_shape).expand_as(target_px), target_px)
            values["test/nme_mean_shape"] = self.mean_shape_nme.compute()
        return values

    def reset_epoch_metrics(self, stage: str) -> None:
        super().reset_epoch_metrics(stage)
        for metric in getattr(self, f"{stage}_metrics").values():
            metric.reset()
        if stage == "test":
            self.mean_shape_nme.reset()

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Points of a batch: ``landmarks`` in pixels of each sample's image, ``normalized`` in (0, 1).

        That image is the one the data's points refer to: the stored image (the model input)
        for the data's own splits and for CSV rows of pixels; for image files (``predict
        --predict_from <folder>``) the file itself, whose ``(W, H)`` the datamodule gives as
        the batch's third element ``(inputs, None, sizes)``.
        """
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        pred = self(x)
        sizes = batch[2] if isinstance(batch, (tuple, list)) and len(batch) > 2 else None
        pixels = self.to_pixels(pred) if sizes is None else pred.float() * sizes.float().unsqueeze(1)
        return {"landmarks": pixels, "normalized": pred}

    def target_columns(self, target: torch.Tensor) -> dict[str, list]:
        """The true points in the scheme of the predicted ones: ``target_landmarks_i`` (pixels), ``target_normalized_i``.

        Both in the frame ``test/nme`` is measured in, so the NME of ``landmarks_*`` against
        ``target_landmarks_*`` is the test metric; ``nan`` marks a point not annotated.
        """
        columns = self.prediction_columns({"landmarks": self.to_pixels(target), "normalized": target})
        return {f"target_{name}": values for name, values in columns.items()}

    def configure_callbacks(self) -> list[Any]:
        if self.plot_samples <= 0:
            return []
        from lightning_hw.callbacks.landmark_plots import LandmarkPlots

        return [LandmarkPlots(num_images=self.plot_samples)]
