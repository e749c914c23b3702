"""Regression of one continuous value (a price) with one linear output and mean squared error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import MulticlassAccuracy

from lightning_hw import NetFactory, Task, build_net


class RoundedAccuracy(MulticlassAccuracy):
    """Share of predictions that round to the right level of an ordinal target (price_range 0-3).

    Makes a regressor comparable with a classifier of the same classes (E7).

    Args:
        levels: number of levels; predictions are rounded and clipped to ``0 .. levels-1``.
    """

    def __init__(self, levels: int) -> None:
        super().__init__(num_classes=levels, average="micro")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        levels = preds.round().clamp(0, self.num_classes - 1).long()
        super().update(levels, target.round().long())


class PriceRegressor(Task):
    """Predict a continuous price: one linear output, MSE; logs MAE, RMSE, R2 (and rounded accuracy).

    Logs ``{train,val,test}/loss`` (the MSE; plus weight penalties in training) and
    ``{stage}/mae``, ``{stage}/rmse``, ``{stage}/r2``; with ``levels``, ``{stage}/acc``
    too. The best checkpoint is the one with the lowest ``val/rmse``.

    Args:
        net: the network, as a factory called with ``(input_shape, 1)`` (from the CLI: a
            ``class_path`` such as ``lightning_hw.nets.mlp.MLP``), or a module with one output.
        input_shape: shape of one input sample; linked from the datamodule by the CLI.
        levels: when the target is an ordinal class index ``0 .. levels-1`` (price_range: 4),
            also log the accuracy of the rounded prediction; linked from the datamodule
            when it has a ``levels`` attribute. ``None``: a plain continuous target.
        lr: see :class:`lightning_hw.Task`.
    """

    monitor = "val/rmse"
    monitor_mode = "min"
    linked_from_data = ("input_shape", "levels")

    def __init__(
        self,
        net: NetFactory,
        input_shape: tuple[int, ...] = (1,),
        levels: int | None = None,
        lr: float | None = None,
    ) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters(ignore=["net"])
        self.net = build_net(net, input_shape, 1)
        metrics = {"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False), "r2": R2Score()}
        if levels:
            metrics["acc"] = RoundedAccuracy(levels)
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train/")
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted values, shape ``(batch,)``: the single linear output, no activation."""
        return self.net(x).squeeze(-1)

    def shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        preds = self(x)
        loss = F.mse_loss(preds, y.to(preds.dtype))
        self.log_loss(stage, loss, batch_size=y.shape[0])
        self.collect(stage, preds.detach(), y)  # <stage>_metrics are updated once, at the epoch's end
        return self.add_penalty(stage, loss, y.shape[0])  # training minimises the nets' l1/l2 terms too

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Predicted prices for a batch (targets, if present, are ignored)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return {"price": self(x)}
