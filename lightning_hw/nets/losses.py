"""Output heads: how a network's raw outputs become a loss and class scores.

E8 compares five activation x loss pairs on the same network; each pair is one
:class:`OutputHead` here, chosen by name. The net always emits raw outputs (logits);
the head owns the activation so that softmax+CE and sigmoid+BCE use PyTorch's
fused, numerically stable losses.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightning_hw.errors import ConfigError


def _one_hot(target: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(target.long(), num_classes).to(like.dtype)


def _per_class_mean(loss: Callable[..., torch.Tensor], inputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``loss(inputs, one-hot y)`` of every sample, averaged over its classes (Keras' per-sample value)."""
    return loss(inputs, _one_hot(y, inputs.shape[-1], inputs), reduction="none").mean(dim=-1)


@dataclass(frozen=True)
class OutputHead:
    """An output activation paired with a loss.

    Args:
        name: the name used in configs.
        summary: one line for help texts.
        sample_loss: ``(outputs, integer targets) -> (batch,)``, the loss of every sample; the
            training loss is its mean (:meth:`loss`), so a per-sample view (top losses) and
            the logged loss cannot disagree.
        scores: ``outputs -> (batch, num_classes)`` class scores (probabilities where defined).
        single_logit: the net has one output (binary classification) instead of one per class.
        score_name: what :attr:`scores` are, for titles and column names: ``probability`` where
            they are one (a softmax or sigmoid, also under MSE to one-hot targets, the Brier
            score, whose minimum is the class probability), else what they are.
    """

    name: str
    summary: str
    sample_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    scores: Callable[[torch.Tensor], torch.Tensor]
    single_logit: bool = False
    score_name: str = "probability"

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The batch's loss: the mean of :attr:`sample_loss` over its samples."""
        return self.sample_loss(outputs, target).mean()

    def num_outputs(self, num_classes: int) -> int:
        """Width of the net's last layer for ``num_classes`` classes."""
        if self.single_logit and num_classes != 2:
            raise ConfigError(f"head {self.name!r} is for 2 classes, the data has {num_classes}", advice="use softmax_ce")
        return 1 if self.single_logit else num_classes

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predicted class indices."""
        if self.single_logit:
            return (outputs.reshape(-1) > 0).long()
        return outputs.argmax(dim=-1)


def _binary_scores(outputs: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(outputs.reshape(-1, 1))
    return torch.cat([1 - p, p], dim=-1)


HEADS: dict[str, OutputHead] = {
    head.name: head
    for head in (
        OutputHead(
            "softmax_ce",
            "softmax + categorical cross-entropy (the standard multi-class head)",
            lambda out, y: F.cross_entropy(out, y.long(), reduction="none"),
            lambda out: out.softmax(-1),
        ),
        OutputHead(
            "sigmoid_bce",
            "sigmoid per class + binary cross-entropy on one-hot targets, averaged over classes as Keras does",
            lambda out, y: _per_class_mean(F.binary_cross_entropy_with_logits, out, y),
            lambda out: out.sigmoid(),
        ),
        OutputHead(
            "sigmoid_mse",
            "sigmoid per class + mean squared error to one-hot targets",
            lambda out, y: _per_class_mean(F.mse_loss, out.sigmoid(), y),
            lambda out: out.sigmoid(),
        ),
        OutputHead(
            "softmax_mse",
            "softmax + mean squared error to one-hot targets",
            lambda out, y: _per_class_mean(F.mse_loss, out.softmax(-1), y),
            lambda out: out.softmax(-1),
        ),
        OutputHead(
            "linear_mse",
            "no activation + mean squared error to one-hot targets",
            lambda out, y: _per_class_mean(F.mse_loss, out, y),
            lambda out: out,
            score_name="raw output",  # no activation: it can fall below 0 or rise above 1
        ),
        OutputHead(
            "binary_bce",
            "one logit + sigmoid binary cross-entropy (Keras Dense(1, sigmoid) with binary_crossentropy)",
            lambda out, y: F.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype).reshape(-1), reduction="none"),
            _binary_scores,
            single_logit=True,
        ),
    )
}


def get_head(name: str) -> OutputHead:
    """Look up an output head by name; unknown names fail with the closest ones."""
    try:
        return HEADS[name]
    except KeyError:
        close = difflib.get_close_matches(name, HEADS, n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(f"unknown head {name!r}; {hint}available: {', '.join(HEADS)}") from None
