"""How much the in-memory image path and the batched augmentation save (prints ratios).

    python benchmarks/image_pipeline.py [threads]  # MNIST-sized synthetic data in a temp folder

``threads`` (default 1) is torch's intra-op thread count: on a busy shared machine extra threads
make these small tensor ops slower, not faster.

1. One epoch of MNIST-sized data (60,000 28x28 images, batch 64) through
   (a) lightning-hw's MNIST datamodule: uint8 tensors in memory, batches sliced, scaled per batch;
   (b) the usual torchvision route: ``torchvision.datasets.MNIST`` + ``v2.ToImage/ToDtype`` per sample
       + ``DataLoader`` collation.
2. Random rotation/shift/flip of 64-image batches: the batched :class:`Augment` versus its
   per-image ``torchvision.transforms.v2`` equivalent (:meth:`Augment.to_v2`) in a Python loop.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from lightning_hw.data.augment.images import Augment
from lightning_hw.data.fixtures.classification import write_mnist
from lightning_hw.data.datasets.mnist import MNIST


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_mnist(Path(tmp), n_train=60_000, n_test=10_000)
        dm = MNIST(root=str(root), download=False, val_fraction=1 / 60_000)  # 1 image validates: train on ~all
        load = timed(lambda: (dm.data.clear(), dm.setup("fit")), repeat=1)
        dm.setup("fit")

        def in_memory_epoch():
            for batch in dm.train_dataloader():
                dm.on_after_batch_transfer(batch, 0)

        transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
        dataset = torchvision.datasets.MNIST(str(root), train=True, transform=transform)
        loader = DataLoader(dataset, batch_size=64, shuffle=True)

        def torchvision_epoch():
            for _ in loader:
                pass

        fast, slow = timed(in_memory_epoch), timed(torchvision_epoch, repeat=1)
        print(f"load 60k+10k MNIST images into memory: {load:.2f} s")
        print(f"epoch, in-memory path: {fast:.2f} s; torchvision Dataset + DataLoader: {slow:.2f} s; ratio {slow / fast:.1f}x")

    augment = Augment(rotation=15, width_shift=0.1, height_shift=0.1, horizontal_flip=True)
    per_image = augment.to_v2()
    batch = torch.rand(64, 1, 28, 28)
    batched_t = timed(lambda: [augment(batch) for _ in range(20)]) / 20
    loop_t = timed(lambda: [torch.stack([per_image(img) for img in batch]) for _ in range(5)]) / 5
    print(f"augment 64x1x28x28: batched {batched_t * 1e3:.1f} ms, per-image v2 loop {loop_t * 1e3:.1f} ms; "
          f"ratio {loop_t / batched_t:.1f}x")


if __name__ == "__main__":
    main()
