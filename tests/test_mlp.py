"""The MLP of the reports: parameter counts and Keras-style L1/L2 weight penalties."""

from __future__ import annotations

import pytest
import torch

from lightning_hw.errors import ConfigError
from lightning_hw.nets.mlp import MLP
from lightning_hw.tasks.classification import Classifier


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_e1_model_factory_parameter_count():
    # SEEDS.md E1: Input(50x50) -> Flatten -> Dense(128) -> ReLU -> Dense(5): 320,773 parameters.
    assert n_params(MLP((50, 50), 5, hidden=[128])) == 320_773


def test_e7_parameter_count():
    # E7: 20 -> 300 -> 200 -> 150 -> 50 -> 4 with dropout: 104,404 parameters.
    net = MLP((20,), 4, hidden=[300, 200, 150, 50], dropout=0.2)
    assert n_params(net) == 104_404
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 4


def test_dropout_per_layer_and_batch_norm():
    net = MLP((2,), 1, hidden=[32, 16], dropout=[0.5, 0.0], batch_norm=True)
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    with pytest.raises(ConfigError, match="2 hidden layers"):
        MLP((2,), 1, hidden=[32, 16], dropout=[0.5])


def test_l1_l2_penalty_matches_keras_definition():
    net = MLP((3,), 2, hidden=[4], l1=0.0005, l2=0.005)
    weights = [net.layers[1].weight, net.layers[3].weight]
    expected = sum(0.0005 * w.abs().sum() + 0.005 * w.square().sum() for w in weights)
    assert net.regularization_loss().item() == pytest.approx(expected.item())
    assert MLP((3,), 2, hidden=[4]).regularization_loss() is None


def test_task_adds_the_penalty_to_the_training_objective_only():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    plain = Classifier(MLP((3,), 2, hidden=[4]), num_classes=2)
    penalised = Classifier(MLP((3,), 2, hidden=[4], l2=0.1), num_classes=2)
    penalised.net.load_state_dict(plain.net.state_dict())
    for task in (plain, penalised):
        task.log = task.log_dict = lambda *a, **k: None  # no trainer attached
    train_gap = penalised.training_step((x, y), 0) - plain.training_step((x, y), 0)
    assert train_gap.item() == pytest.approx(penalised.net.regularization_loss().item())
    assert penalised.validation_step((x, y), 0).item() == pytest.approx(plain.validation_step((x, y), 0).item())
