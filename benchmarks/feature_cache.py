"""Time a head trained on frozen ResNet152 features, with and without FeatureCache.

Both runs train the same head (E5's chosen ResNet152 head, Flatten -> Dense(1024) ->
Dense(64) -> Dense(2)) for the same epochs on the same images with the same frozen
backbone; the first runs the backbone on every image of every epoch, the second
computes its features once (cold cache), the third reads them back (warm cache).

    python benchmarks/feature_cache.py                         # a generated image folder
    python benchmarks/feature_cache.py --root DIR --image-size 128 --epochs 20

Prints the three times and the ratios. Without a GPU keep it small (the defaults: 24
images at 64x64, which take a few minutes on 2 CPU cores without the cache).

What the cache cannot remove is the head's own training: E5's head has 8.4M weights at
64x64 (33.6M at 128x128), and one Adam step over them costs about as much as a few
backbone passes on a CPU. So the ratio grows with the backbone's share of an epoch: with the
cold cache it is bounded by about ``epochs`` (one backbone pass instead of ``epochs``);
the warm cache, what every later head of a search gets, removes the backbone entirely.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from lightning_hw.callbacks.feature_cache import FeatureCache
from lightning_hw.callbacks.finetuning import FreezeBackbone
from lightning_hw.data.fixtures.classification import write_image_folder
from lightning_hw.data.datasets.image_folder import ImageFolder
from lightning_hw.data.preprocessing import link_model_preprocessing
from lightning_hw.nets.backbones import TimmNet
from lightning_hw.tasks.classification import Classifier


def run(args: argparse.Namespace, root: Path, cache_dir: Path, enabled: bool) -> tuple[float, float]:
    """One fit; returns (seconds, final val/acc)."""
    torch.manual_seed(0)  # the same backbone and head initialisation in every run
    net = partial(TimmNet, model_name=args.model, weights_file=args.weights_file,
                  head=["flatten", 1024, "relu", 64, "relu"])
    dm = ImageFolder(root=str(root), image_size=args.image_size, batch_size=args.batch_size, num_workers=0)
    task = Classifier(net, num_classes=dm.num_classes, input_shape=dm.input_shape, head="softmax_ce")
    link_model_preprocessing(task, dm)
    trainer = Trainer(
        max_epochs=args.epochs,
        callbacks=[FreezeBackbone(), FeatureCache(cache_dir=str(cache_dir), enabled=enabled, shuffle_seed=0)],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(task, dm)
    return time.perf_counter() - start, float(trainer.callback_metrics["val/acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="image folder (default: a generated one)")
    parser.add_argument("--images", type=int, default=24, help="images in the generated folder (half per class)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="as in the E5 configs")
    parser.add_argument("--model", default="resnet152")
    parser.add_argument("--weights-file", default=None, help="pretrained weights (default: random, same cost)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or write_image_folder(Path(tmp) / "images", classes=("indoor", "outdoor"),
                                               per_class=args.images // 2, size=(96, 128), layout="folder")
        cache_dir = Path(tmp) / "cache"
        print(f"{args.model}, {args.epochs} epochs, {args.image_size}x{args.image_size} images from {root}, "
              f"{torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}", flush=True)
        plain, acc_plain = run(args, root, cache_dir, enabled=False)
        print(f"without cache:       {plain:8.1f} s   (val/acc {acc_plain:.3f})", flush=True)
        cold, acc_cold = run(args, root, cache_dir, enabled=True)
        print(f"with cache, cold:    {cold:8.1f} s   (val/acc {acc_cold:.3f}; features computed once)", flush=True)
        warm, acc_warm = run(args, root, cache_dir, enabled=True)
        print(f"with cache, warm:    {warm:8.1f} s   (val/acc {acc_warm:.3f}; features read back)", flush=True)
        print(f"speed-up: {plain / cold:.1f}x (cold cache), {plain / warm:.1f}x (warm cache)")
    sys.exit(0)


if __name__ == "__main__":
    main()
