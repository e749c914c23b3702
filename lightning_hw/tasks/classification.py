"""Classification of inputs into ``num_classes`` classes with a selectable output head."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from lightning_hw.callbacks.guards import labels_outside
from lightning_hw.errors import ConfigError, DataError
from lightning_hw.nets import NetFactory, build_net
from lightning_hw.nets.losses import get_head
from lightning_hw.tasks.base import Task


class Classifier(Task):
    """Classify inputs into classes; logs accuracy and macro F1 (``train/acc``, ``val/acc``, ``val/f1``...).

    Args:
        net: the network, as a factory called with ``(input_shape, num_outputs)``
            (from the CLI: a ``class_path`` such as ``lightning_hw.nets.mlp.MLP``), or a module.
        num_classes: number of classes; linked from the datamodule by the CLI.
        input_shape: shape of one input sample; linked from the datamodule by the CLI.
        head: output activation x loss: ``softmax_ce``, ``sigmoid_bce``, ``sigmoid_mse``,
            ``softmax_mse``, ``linear_mse`` (the five of E8) or ``binary_bce`` (one logit, 2 classes).
        class_names: names of the classes, for predictions and plots; linked from the datamodule.
        lr: see :class:`~lightning_hw.tasks.base.Task`.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    linked_from_data = ("num_classes", "input_shape", "class_names")

    def __init__(
        self,
        net: NetFactory,
        num_classes: int = 2,
        input_shape: tuple[int, ...] = (1,),
        head: str = "softmax_ce",
        class_names: list[str] | None = None,
        lr: float | None = None,
    ) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters(ignore=["net"])
        self.head = get_head(head)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if self.head.single_logit and num_classes != 2:
            # Name the classes: a third one is often a stray file name (Cat.1.jpg, IMG_001.jpg
            # in E3's cat.<n>.jpg folder), where switching to softmax_ce would be the wrong fix.
            names = ", ".join(map(repr, self.class_names[:6])) + (", ..." if num_classes > 6 else "")
            raise ConfigError(
                f"head {head!r} is for 2 classes, the data has {num_classes} ({names})",
                advice="fix the data's labels, or use softmax_ce for more than 2 classes",
            )
        self.net = build_net(net, input_shape, self.head.num_outputs(num_classes))
        # validate_args=False: torchmetrics' checks (torch.unique over the epoch's targets...)
        # cost more than the update itself; update_stage_metrics checks the label range instead.
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
                "f1": MulticlassF1Score(num_classes, average="macro", validate_args=False),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        #: (true, predicted) counts over the last test run; the ConfusionMatrix callback reports it.
        #: It is updated with the epoch's predictions already gathered from every DDP process
        #: (EpochOutputs), so it must not sum them across processes again: that counted every
        #: test sample once per process (the ratios of accuracy and F1 are immune, counts are not).
        self.test_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False, sync_on_compute=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw network outputs (logits)."""
        return self.net(x)

    def describe_outputs(self) -> str:
        n = self.head.num_outputs(self.num_classes)
        if self.head.name == "binary_bce":
            return f"one logit per sample (N x 1): sigmoid gives the probability of {self.class_names[-1]!r}, > 0 predicts it"
        if self.head.name.startswith("softmax"):
            return f"logits (N x {n}): softmax gives the class probabilities, argmax the class (class_names order)"
        if self.head.name.startswith("sigmoid"):
            return f"logits (N x {n}): sigmoid gives each class's score, argmax the class (class_names order)"
        return f"scores (N x {n}): argmax gives the class (class_names order)"

    def validation_metric_names(self) -> set[str]:
        """``val/loss`` and the validation collection's names (``val/acc``, ``val/f1``)."""
        return {"val/loss", *self.val_metrics.keys()}

    def shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        return self._step(batch, stage)[0]

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor] | torch.Tensor:
        """The batch's loss and its raw outputs (``outputs``), which callbacks read per sample.

        :class:`~lightning_hw.callbacks.interpretation.ClassificationInterpretation` takes the
        outputs from here (``on_test_batch_end``) so that finding the top losses costs no
        second forward pass. A subclass with its own ``shared_step`` keeps it (and returns its loss only).
        """
        if type(self).shared_step is not Classifier.shared_step:
            return super().test_step(batch, batch_idx)
        loss, outputs = self._step(batch, "test")
        return {"loss": loss, "outputs": outputs.detach()}

    def sample_losses(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The head's loss of every sample ``(N,)``; the logged loss is their mean.

        Args:
            outputs: raw outputs of the net (``forward``).
            target: class indices.
        """
        return self.head.sample_loss(outputs, target)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and raw outputs of one batch; accumulates the epoch's loss and predictions."""
        x, y = batch
        outputs = self(x)
        loss = self.head.loss(outputs, y)
        self.log_loss(stage, loss, batch_size=y.shape[0])
        self.collect(stage, self.head.predict(outputs.detach()), y)
        return self.add_penalty(stage, loss, y.shape[0]), outputs

    def update_stage_metrics(self, stage: str, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Accuracy and macro F1 from the epoch's predictions (and the test confusion matrix).

        Raises:
            DataError: a target is not a class index ``0..num_classes-1``.
        """
        outside = labels_outside(target, self.num_classes)
        if outside is not None:
            raise DataError(
                f"{stage} targets run from {outside[0]} to {outside[1]}, but the task has {self.num_classes} classes "
                f"(0..{self.num_classes - 1}); check the datamodule's labels or num_classes"
            )
        super().update_stage_metrics(stage, preds, target)
        if stage == "test":
            self.test_confusion.update(preds, target)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Class scores and predicted indices for a batch (targets, if present, are ignored)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        outputs = self(x)
        return {"scores": self.head.scores(outputs), "preds": self.head.predict(outputs)}

    def prediction_columns(self, outputs: dict[str, torch.Tensor]) -> dict[str, list]:
        """``predicted`` (class name), ``predicted_index`` and one ``prob_<class>`` column per class.

        With a head whose scores are not probabilities (``linear_mse``: its ``score_name``) the
        columns are called ``score_<class>``.
        """
        preds = outputs["preds"].detach().cpu().tolist()
        scores = outputs["scores"].detach().float().cpu()
        prefix = "prob_" if self.head.score_name == "probability" else "score_"
        columns: dict[str, list] = {"predicted": [self.class_names[i] for i in preds], "predicted_index": preds}
        for k, name in enumerate(self.class_names):
            columns[f"{prefix}{name}"] = scores[:, k].tolist()
        return columns
