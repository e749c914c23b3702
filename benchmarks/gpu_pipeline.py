"""GPU images/s from a folder of JPEG files against synthetic batches already on the GPU (one process).

The data path of the image configs (E5): ``ImageFolder`` decodes the JPEGs (Pillow, reduced-scale
JPEG decoding, resize) into uint8 images, in worker processes when streaming or in threads when
the folder is decoded into memory; uint8 batches go to the GPU (pinned, asynchronous), where the
datamodule's ``preprocess`` scales and normalises them. Three measurements, each against the same
GPU work on a synthetic uint8 batch that is already on the GPU (the data path then costs nothing):

1. decoding the folder into memory (``ImageFolder`` set-up, what E5's in-memory configs do), images/s;
2. frozen ResNet-152 feature extraction at 128 px (what ``FeatureCache`` computes), streamed from
   the files by DataLoader workers, bf16, channels-last;
3. full ResNet-152 training at 224 px (SGD, bf16, channels-last, as gpu.yaml sets up), streamed.

Each file arm runs once per ``--decoders`` entry: ``pillow`` (CPU workers decode) and ``nvjpeg``
(workers only read the files; the batch is decoded on the GPU by nvJPEG, then resized there).

The folder (``--images`` JPEGs of 320x256, two classes) is generated in a temporary directory,
or given with ``--folder``. Results: ``benchmarks/RESULTS.md``.

    python benchmarks/gpu_pipeline.py                       # 12,000 JPEGs, batch 128, workers from the CPUs
    python benchmarks/gpu_pipeline.py --images 4000 --workers 8
    python benchmarks/gpu_pipeline.py --smoke               # the same code on the CPU, tiny: checks the script

Without a CUDA GPU it prints why and exits 0 (except with --smoke).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness import gpu_or_smoke, mixed_precision_step
from lightning_hw.data.datasets.image_folder import ImageFolder
from lightning_hw.data.loading import decode_threads
from lightning_hw.precision import best_mixed_precision


def write_jpegs(root: Path, count: int, size: tuple[int, int] = (256, 320), seed: int = 0) -> Path:
    """``count`` photo-like JPEGs (smooth random colour fields, quality 90) in ``indoor/`` and ``outdoor/``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / ("indoor" if i % 2 else "outdoor")
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size[1], size[0]), Image.BICUBIC).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def backbone(name: str, device: torch.device) -> nn.Module:
    """A timm backbone without classifier (random weights: speed does not depend on them), channels-last."""
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=0)
    return model.to(device).to(memory_format=torch.channels_last)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(batches: Iterable, step: Callable[[torch.Tensor, torch.Tensor], None], device: torch.device,
                      warmup: int = 3) -> float:
    """Run ``step`` on every batch; images/s after ``warmup`` batches (cuDNN autotuning, workers starting)."""
    count, start = 0, None
    for i, (images, labels) in enumerate(batches):
        if i == warmup:
            sync(device)
            start, count = time.perf_counter(), 0
        step(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
        count += images.shape[0]
    sync(device)
    if start is None:
        raise SystemExit("too few batches to time; raise --images")
    return count / (time.perf_counter() - start)


def synthetic(batch_size: int, image_size: int, steps: int, device: torch.device):
    """The same uint8 batch, already on the device, ``steps`` times."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, 2, (batch_size,), generator=g).to(device)
    return [(images, labels)] * steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000, help="JPEGs to generate (default 12,000)")
    parser.add_argument("--folder", type=Path, default=None, help="an existing image folder (class sub-folders)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: from the CPUs)")
    parser.add_argument("--model", default="resnet152")
    parser.add_argument("--decoders", default="pillow,nvjpeg", type=lambda text: text.split(","),
                        help="ImageFolder decoders to measure, comma-separated (default: pillow,nvjpeg)")
    parser.add_argument("--smoke", action="store_true", help="CPU, 96 images, resnet18 at 64/96 px: checks the script")
    args = parser.parse_args()
    extract_size, train_size = 128, 224
    if args.smoke:
        args.images, args.batch_size, args.model, extract_size, train_size = 96, 8, "resnet18", 64, 96
    device = gpu_or_smoke("gpu_pipeline", args.smoke)
    if device is None:
        return
    dtype = torch.bfloat16 if best_mixed_precision(device.type) == "bf16-mixed" else torch.float16
    tmp = tempfile.TemporaryDirectory()
    folder = args.folder or write_jpegs(Path(tmp.name) / "jpegs", args.images)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke test)"
    print(f"gpu_pipeline: {name}; {decode_threads(args.workers)} decoding workers; {args.model}, batch {args.batch_size}")

    def datamodule(size: int, in_memory: bool, decoder: str) -> ImageFolder:
        return ImageFolder(root=str(folder), labels="folder", image_size=size, in_memory=in_memory, decoder=decoder,
                           num_workers=args.workers, batch_size=args.batch_size, eval_batch_size=args.batch_size,
                           mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], splits=(0.9, 0.05, 0.05))

    def streamed_batches(dm: ImageFolder) -> Iterable:
        # What the trainer does before its transfer: decoder nvjpeg decodes the workers' file bytes here.
        return (dm.on_before_batch_transfer(batch, 0) for batch in dm.train_dataloader())

    # 1. decoding the folder into memory (threads; with nvjpeg the threads read, the GPU decodes)
    for decoder in args.decoders:
        dm = datamodule(extract_size, True, decoder)
        start = time.perf_counter()
        images = dm._decode_all([path for path, _ in dm.samples])
        sync(device)
        decoded = images.shape[0] / (time.perf_counter() - start)
        print(f"decode into memory at {extract_size} px, decoder {decoder}: {decoded:,.0f} images/s")
        del images

    preprocess: dict[str, nn.Module] = {}  # the streamed datamodule's, for the steps below

    def files_against_synthetic(what: str, size: int, step: Callable, synthetic_share: float) -> None:
        """images/s of ``step`` on batches streamed from the files (per decoder) and on synthetic on-device ones."""
        fake = None
        for decoder in args.decoders:
            streamed = datamodule(size, False, decoder)
            streamed.setup("fit")
            preprocess["now"] = streamed.preprocess.to(device)
            files = images_per_second(streamed_batches(streamed), step, device)
            if fake is None:
                steps = max(8, int(len(streamed.train_dataloader()) * synthetic_share))
                fake = images_per_second(synthetic(args.batch_size, size, steps, device), step, device)
            print(f"{what} at {size} px, decoder {decoder}: from JPEG files {files:,.0f} images/s, "
                  f"synthetic on-device {fake:,.0f}; RATIO files / synthetic = {files / fake:.2f}")

    def model_input(x: torch.Tensor) -> torch.Tensor:
        return preprocess["now"](x).contiguous(memory_format=torch.channels_last)

    # 2. frozen feature extraction at 128 px
    net = backbone(args.model, device).eval()

    @torch.no_grad()
    def extract(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=dtype):
            net(model_input(x))

    files_against_synthetic(f"frozen {args.model} features", extract_size, extract, 1.0)

    # 3. full training at 224 px
    net = backbone(args.model, device).train()
    head = nn.Linear(net.num_features, 2).to(device)
    params = [*net.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    model = nn.Sequential(net, head)

    def train(x: torch.Tensor, y: torch.Tensor) -> None:
        mixed_precision_step(model, optimizer, scaler, dtype, model_input(x), y)

    files_against_synthetic(f"{args.model} training", train_size, train, 0.5)


if __name__ == "__main__":
    main()
