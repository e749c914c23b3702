"""GPU images/s: ResNet-152 training at 224 px, ``lightning_hw fit`` with gpu.yaml against a plain loop.

Both train torchvision's ResNet-152 (1,000 classes, random init) with SGD (lr 0.1,
momentum 0.9) on one fixed batch of random 224x224 images held on the GPU, so that
data loading costs nothing and the step is model plus framework. Both use what
``configs/trainer/gpu.yaml`` sets up: mixed precision in bfloat16 (float16 with a
gradient scaler before Ampere), channels-last weights, cuDNN autotuning, TF32. The
Lightning side is ``lightning_hw fit`` with that preset stacked, as a user runs it,
minus validation and checkpoint files (a 230 MB checkpoint per short synthetic epoch
would measure the disk; on real epochs it is amortised). Repeats are interleaved and
the first epoch of every fit (cuDNN autotuning, allocator warm-up) is not timed.

    python benchmarks/gpu_resnet152.py                 # batch 128, 3 repeats x 3 epochs of 30 steps
    python benchmarks/gpu_resnet152.py --batch-size 256 --steps 50
    python benchmarks/gpu_resnet152.py --smoke         # the same code on the CPU, tiny: checks the script

Without a CUDA GPU it prints why and exits 0 (except with --smoke).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import EpochStarts, Experiment, Times, clock, lightning_fit, machine, mixed_precision_step, since
from lightning_hw.data.base import SplitDataModule
from lightning_hw.precision import best_mixed_precision

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "configs" / "trainer"
SGD = {"lr": 0.1, "momentum": 0.9}
CLASSES = 1000


class ResNet152(nn.Module):
    """torchvision's ResNet-152 as a lightning_hw net factory ``(input_shape, num_outputs)``, random init."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int) -> None:
        super().__init__()
        from torchvision.models import resnet152

        self.model = resnet152(weights=None, num_classes=num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def fixed_batch(batch_size: int, image_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=g)
    y = torch.randint(0, CLASSES, (batch_size,), generator=g)
    return x.to(device), y.to(device)


class RepeatedBatch:
    """One batch served ``steps`` times (a loader whose data costs nothing)."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor], steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield self.batch


class SyntheticImages(SplitDataModule):
    """Random images already on the training device, ``steps`` batches per epoch.

    Args:
        steps: training steps per epoch.
        image_size: height and width.
        **kwargs: see :class:`~lightning_hw.data.base.SplitDataModule`.
    """

    def __init__(self, steps: int = 30, image_size: int = 224, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps, self.image_size = steps, image_size
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def class_names(self) -> list[str]:
        return [str(i) for i in range(CLASSES)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Made when the loaders are asked for: the CLI sets data up before the trainer (and its device) exists.
        if self.batch is None:
            self.batch = fixed_batch(self.batch_size, self.image_size, self.trainer.strategy.root_device)
        return self.batch

    def train_dataloader(self) -> RepeatedBatch:
        return RepeatedBatch(self._batch(), self.steps)

    def val_dataloader(self) -> RepeatedBatch:
        return RepeatedBatch(self._batch(), 1)


class SyncedEpochStarts(EpochStarts):
    """:class:`~harness.EpochStarts` that first waits for the GPU (its work is asynchronous)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _sync()
        super().on_train_epoch_start(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        _sync()
        super().on_fit_end(trainer, pl_module)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def plain_fit(batch_size: int, steps: int, image_size: int, epochs: int, device: torch.device) -> Times:
    """The same training written by hand, with the same speed settings as gpu.yaml."""
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    torch.manual_seed(42)
    model = ResNet152((3, image_size, image_size), CLASSES).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), **SGD)
    precision = best_mixed_precision(device.type)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    x, y = fixed_batch(batch_size, image_size, device)
    model.train()
    times: Times = []
    for _ in range(epochs):
        _sync()
        start = clock()
        for _ in range(steps):
            mixed_precision_step(model, optimizer, scaler, dtype, x, y)
        _sync()
        times.append(since(start))
    return times


def experiment(batch_size: int, steps: int, image_size: int) -> Experiment:
    config = {
        "model": {
            "class_path": "Classifier",
            "init_args": {"head": "softmax_ce", "net": {"class_path": "gpu_resnet152.ResNet152"}},
        },
        "data": {
            "class_path": "gpu_resnet152.SyntheticImages",
            "init_args": {"batch_size": batch_size, "steps": steps, "image_size": image_size},
        },
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": SGD},
        "trainer": {"limit_val_batches": 0, "num_sanity_val_steps": 0, "enable_checkpointing": False},
    }
    return Experiment(
        name="resnet152", config=config, model=lambda: None, optimizer=lambda p: None,
        loss=F.cross_entropy, data={}, batch_size=batch_size,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="training steps per epoch (default 30)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per fit, after one warm-up epoch")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved fits of each kind")
    parser.add_argument("--smoke", action="store_true", help="run on the CPU with 32 px images and 2 steps (checks the script)")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if args.smoke:
        # gpu.yaml's plugin and callbacks, moved to the CPU (bf16 autocast)
        args.batch_size, args.steps, args.epochs, args.repeats, image_size = 4, 2, 1, 1, 32
        smoke = Path(tmp.name) / "smoke.yaml"
        smoke.write_text(
            "trainer:\n  accelerator: cpu\n  plugins:\n"
            "    - class_path: lightning_hw.precision.AutoMixedPrecision\n      init_args: {device: cpu}\n"
        )
        device, presets = torch.device("cpu"), (PRESETS / "gpu.yaml", smoke)
    elif not torch.cuda.is_available():
        print("resnet152: skipped: no CUDA GPU here (torch.cuda.is_available() is False). Run it on a machine with an "
              "NVIDIA GPU, or with --smoke to check the script on the CPU.")
        return
    else:
        image_size, device, presets = 224, torch.device("cuda"), (PRESETS / "gpu.yaml",)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke test)"
    print(f"resnet152: {name}; {machine()}")
    print(
        f"resnet152: batch {args.batch_size} x {image_size}px, {args.steps} steps per epoch, "
        f"{best_mixed_precision(device.type)}, channels-last, SGD momentum 0.9"
    )
    exp = experiment(args.batch_size, args.steps, image_size)
    plain: Times = []
    light: Times = []
    images = args.batch_size * args.steps
    with tmp:
        for r in range(args.repeats):
            p = plain_fit(args.batch_size, args.steps, image_size, args.epochs + 1, device)[1:]
            _free(device)
            lt, _ = lightning_fit(
                exp, args.epochs + 1, 42, "disabled", Path(tmp.name), presets=presets,
                timer="gpu_resnet152.SyncedEpochStarts",
            )
            lt = lt[1:]
            _free(device)
            plain += p
            light += lt
            print(
                f"resnet152: repeat {r + 1}/{args.repeats}: plain {_rate(images, p):.1f} images/s, "
                f"lightning_hw {_rate(images, lt):.1f} images/s",
                flush=True,
            )
    plain_rate, light_rate = _rate(images, plain), _rate(images, light)
    print(f"resnet152: plain loop {plain_rate:.1f} images/s, lightning_hw fit {light_rate:.1f} images/s")
    print(f"resnet152: RATIO lightning_hw / plain loop epoch time = {plain_rate / light_rate:.3f}")


def _rate(images: int, times: Times) -> float:
    return images / statistics.median(t[0] for t in times)


def _free(device: torch.device) -> None:
    """Give the previous fit's GPU memory back before the next one builds its model."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
