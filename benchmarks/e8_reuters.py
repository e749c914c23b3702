"""E8 epoch time: ``lightning_hw fit`` against a plain PyTorch loop (Reuters-sized MLP, batch 512).

The E8 model (Dense(64)-Dense(64)-Dense(46), relu, softmax + cross-entropy; Adam lr 1e-3;
batch 512) on synthetic multi-hot vectors of the Reuters shape (8,982 training
newswires x 1,000 words, float32 0/1 with 5% ones, 46 topics; the 2,246 test wires
serve as validation, as in the Keras reports).

    python benchmarks/e8_reuters.py                   # W&B offline, as a user without a login gets it
    python benchmarks/e8_reuters.py --wandb disabled --threads 1 --floor
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Experiment, main, make_tabular
from lightning_hw.nets.mlp import MLP

SIZES = (8982, 2246, 2246)
WORDS, TOPICS = 1000, 46
HIDDEN = [64, 64]
BATCH = 512
ADAM = {"lr": 1e-3}


def keras_model():
    """The same network in Keras (softmax folded into the loss, as our head does)."""
    from tensorflow import keras

    model = keras.Sequential(
        [
            keras.Input((WORDS,)),
            *(keras.layers.Dense(width, activation="relu") for width in HIDDEN),
            keras.layers.Dense(TOPICS),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=ADAM["lr"]),
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
                "net": {"class_path": "lightning_hw.nets.mlp.MLP", "init_args": {"hidden": HIDDEN}},
            },
        },
        "data": {
            "class_path": "harness.SyntheticTabular",
            "init_args": {
                "sizes": list(SIZES), "num_features": WORDS, "num_classes": TOPICS,
                "multi_hot": True, "density": 0.05, "batch_size": BATCH,
            },
        },
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": ADAM},
    }
    return Experiment(
        name="E8",
        config=config,
        model=lambda: MLP((WORDS,), TOPICS, hidden=HIDDEN),
        optimizer=lambda params: torch.optim.Adam(params, **ADAM),
        loss=F.cross_entropy,
        data=make_tabular(SIZES, WORDS, TOPICS, multi_hot=True, density=0.05, seed=0),
        batch_size=BATCH,
        keras_model=keras_model,
        notes=[
            f"MLP {HIDDEN}, {SIZES[0]}x{WORDS} multi-hot float32 (val {SIZES[1]}), {TOPICS} classes, "
            f"batch {BATCH}, Adam lr 1e-3; epoch = train + validation"
        ],
    )


if __name__ == "__main__":
    main(experiment, __doc__.splitlines()[0])
