"""Each output head's loss against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_hw.errors import ConfigError
from lightning_hw.nets.losses import HEADS, get_head

# Two classes, one sample: logits (0, ln 3) -> softmax (1/4, 3/4); sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4.
LOGITS = torch.tensor([[0.0, math.log(3.0)]])
TARGET = torch.tensor([1])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # -log softmax_1 = -log(3/4)
        ("softmax_ce", -math.log(0.75)),
        # mean over classes of BCE(p, onehot): (-log(1 - 1/2) - log(3/4)) / 2
        ("sigmoid_bce", (math.log(2.0) - math.log(0.75)) / 2),
        # mean((1/2 - 0)^2, (3/4 - 1)^2) = (0.25 + 0.0625) / 2
        ("sigmoid_mse", (0.25 + 0.0625) / 2),
        # mean((1/4 - 0)^2, (3/4 - 1)^2) = (0.0625 + 0.0625) / 2
        ("softmax_mse", 0.0625),
        # mean((0 - 0)^2, (ln 3 - 1)^2)
        ("linear_mse", (math.log(3.0) - 1.0) ** 2 / 2),
    ],
)
def test_multiclass_head_losses(name, expected):
    assert get_head(name).loss(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_binary_head_uses_one_logit():
    head = get_head("binary_bce")
    assert head.num_outputs(2) == 1
    logit = torch.tensor([[math.log(3.0)], [0.0]])  # sigmoid: 3/4 and 1/2
    target = torch.tensor([1, 0])
    assert head.loss(logit, target).item() == pytest.approx((-math.log(0.75) + math.log(2.0)) / 2)
    assert head.predict(logit).tolist() == [1, 0]
    assert head.scores(logit)[0].tolist() == pytest.approx([0.25, 0.75])
    with pytest.raises(ConfigError, match="for 2 classes"):
        head.num_outputs(3)


def test_predictions_and_scores_agree_for_every_head():
    logits = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    for name, head in HEADS.items():
        if head.single_logit:
            continue
        assert torch.equal(head.predict(logits), head.scores(logits).argmax(-1)), name


def test_unknown_head_suggests():
    with pytest.raises(ConfigError, match=r"unknown head 'softmax_c'; did you mean softmax_ce"):
        get_head("softmax_c")


def test_sample_loss_is_each_samples_own_loss_and_the_loss_is_their_mean():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 3, 1, 1, 2, 0])
    for name, head in HEADS.items():
        out, y = (logits[:, :1], target % 2) if head.single_logit else (logits, target)
        per_sample = head.sample_loss(out, y)
        assert per_sample.shape == (6,), name
        # Each sample's value is the loss of a batch of that sample alone.
        alone = torch.stack([head.loss(out[i : i + 1], y[i : i + 1]) for i in range(6)])
        assert torch.allclose(per_sample, alone, atol=1e-6), name
        assert head.loss(out, y).item() == pytest.approx(per_sample.mean().item(), rel=1e-6), name
