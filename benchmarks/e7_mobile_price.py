"""E7 epoch time: ``lightning_hw fit`` against a plain PyTorch loop (tiny MLP, batch 32).

The E7 model (Dense(300)-Dropout(0.2)-Dense(200)-Dropout(0.2)-Dense(150)-Dropout(0.2)-
Dense(50)-Dense(4), 104,404 parameters; SGD lr 1e-3, momentum 0.9, Nesterov; batch 32)
on synthetic standardised features of the Mobile Price shape (2,000 x 20 float32,
4 classes, split 1400/400/200). Steps take about a millisecond, so this is where
per-step framework overhead shows.

    python benchmarks/e7_mobile_price.py                   # W&B offline, as a user without a login gets it
    python benchmarks/e7_mobile_price.py --wandb disabled --threads 1 --floor
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Experiment, main, make_tabular
from lightning_hw.nets.mlp import MLP

SIZES = (1400, 400, 200)
FEATURES, CLASSES = 20, 4
HIDDEN = [300, 200, 150, 50]
DROPOUT = [0.2, 0.2, 0.2, 0.0]
BATCH = 32
SGD = {"lr": 1e-3, "momentum": 0.9, "nesterov": True}


def keras_model():
    """The same network in Keras (softmax folded into the loss, as our head does)."""
    from tensorflow import keras

    layers = [keras.Input((FEATURES,))]
    for width, rate in zip(HIDDEN, DROPOUT):
        layers.append(keras.layers.Dense(width, activation="relu"))
        if rate:
            layers.append(keras.layers.Dropout(rate))
    layers.append(keras.layers.Dense(CLASSES))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=SGD["lr"], momentum=SGD["momentum"], nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def experiment() -> Experiment:
    config = {
        "model": {
            "class_path": "Classifier",
            "init_args": {
                "head": "softmax_ce",
                "net": {"class_path": "lightning_hw.nets.mlp.MLP", "init_args": {"hidden": HIDDEN, "dropout": DROPOUT}},
            },
        },
        "data": {
            "class_path": "harness.SyntheticTabular",
            "init_args": {
                "sizes": list(SIZES), "num_features": FEATURES, "num_classes": CLASSES,
                "batch_size": BATCH, "standardize": True,
            },
        },
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": SGD},
    }
    return Experiment(
        name="E7",
        config=config,
        model=lambda: MLP((FEATURES,), CLASSES, hidden=HIDDEN, dropout=DROPOUT),
        optimizer=lambda params: torch.optim.SGD(params, **SGD),
        loss=F.cross_entropy,
        data=make_tabular(SIZES, FEATURES, CLASSES, multi_hot=False, density=0.0, seed=0),
        batch_size=BATCH,
        standardize=True,
        keras_model=keras_model,
        notes=[
            f"MLP {HIDDEN} dropout {DROPOUT}, 2000x{FEATURES} float32 standardised "
            f"(train {SIZES[0]}, val {SIZES[1]}), batch {BATCH}, SGD lr 1e-3 nesterov; epoch = train + validation"
        ],
    )


if __name__ == "__main__":
    main(experiment, __doc__.splitlines()[0])
