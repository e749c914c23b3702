"""JPEG decoding on the CPU, images/s per thread: Pillow alone against the reader as it is (prints ratios).

    python benchmarks/decode_cpu.py                 # 600 JPEGs of 320x256 (E5's folder), 5 rounds
    python benchmarks/decode_cpu.py --images 300 --rounds 3

What ``ImageFolder`` does per file (read, decode, EXIF turn, resize to the training size) at
128 px (E5's frozen extraction: Pillow's reduced-scale JPEG decoding applies) and 224 px
(training: full-scale decoding), with one thread and with every CPU core (threads, as a
folder decoded into memory; DataLoader workers scale alike). Two arms, interleaved in rounds
so that load from other processes hits both alike, medians compared:

- ``pillow``: Pillow decodes every file (the reader before issue 17's change);
- ``reader``: ``read_image`` as shipped, which hands full-scale JPEGs to libjpeg-turbo through
  TorchCodec (the same pixels, checked here) and keeps Pillow for reduced-scale decoding.

The folder is generated in a temporary directory (``benchmarks/gpu_pipeline.py``'s photos).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch

from gpu_pipeline import write_jpegs
from lightning_hw.data.datasets.image_folder import ImageFolder
from lightning_hw.data.io import jpeg_batch
from lightning_hw.data.loading import decode_threads


@contextmanager
def pillow_only():
    """``read_image`` without its libjpeg-turbo path."""
    fast = jpeg_batch.decode_jpeg_on_cpu
    jpeg_batch.decode_jpeg_on_cpu = lambda path, channels: None
    try:
        yield
    finally:
        jpeg_batch.decode_jpeg_on_cpu = fast


def images_per_second(dm: ImageFolder, paths: list[Path], threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(dm.decode, paths):
            pass
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the resize's own threads would compete with the decoding threads
    print(f"decode_cpu: TorchCodec {'found' if jpeg_batch.jpeg_decoder()[0] == 'torchcodec' else 'missing'}; "
          f"{args.images} JPEGs of 320x256; median of {args.rounds} interleaved rounds")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_jpegs(Path(tmp) / "jpegs", args.images)
        for size in (128, 224):
            dm = ImageFolder(root=str(folder), labels="folder", image_size=size)
            paths = [path for path, _ in dm.samples]
            with pillow_only():
                expected = torch.stack([dm.decode(p) for p in paths[:50]])
            assert torch.equal(torch.stack([dm.decode(p) for p in paths[:50]]), expected), "pixels differ from Pillow's"
            for threads in sorted({1, decode_threads(None)}):
                speeds: dict[str, list[float]] = {"pillow": [], "reader": []}
                for _ in range(args.rounds):
                    with pillow_only():
                        speeds["pillow"].append(images_per_second(dm, paths, threads))
                    speeds["reader"].append(images_per_second(dm, paths, threads))
                pillow, reader = (statistics.median(speeds[k]) for k in ("pillow", "reader"))
                print(f"{size} px, {threads} thread(s): Pillow {pillow:,.0f} images/s, reader {reader:,.0f}; "
                      f"RATIO reader / Pillow = {reader / pillow:.2f}")


if __name__ == "__main__":
    main()
