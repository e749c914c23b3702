"""Does ``configs/trainer/compile.yaml`` pay on a big conv net? Warm-up and steady images/s, eager vs compiled.

A plain training loop (SGD, bf16 autocast, channels-last, cuDNN autotuning, as gpu.yaml sets up)
on one synthetic batch held on the GPU, for each model: eager, then the same net compiled in
place as ``CompileNet`` does (``nn.Module.compile``, default mode, ``dynamic=False``: the shapes
of a training run do not change). Printed per model: the compiled run's warm-up (seconds until
its first steps are done, compilation included), the steady images/s of both, their ratio, and
the number of steady steps after which compiling has paid for its warm-up.

    python benchmarks/gpu_compile.py                               # resnet152 and densenet201, batch 128, 224 px
    python benchmarks/gpu_compile.py --models resnet152 --mode max-autotune
    python benchmarks/gpu_compile.py --smoke                       # CPU, resnet18 at 32 px, aot_eager: checks the script

Without a CUDA GPU it prints why and exits 0 (except with --smoke).
"""

from __future__ import annotations

import argparse
import time

import torch

from harness import gpu_or_smoke, mixed_precision_step
from lightning_hw.precision import best_mixed_precision


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(model_name: str, compiled: bool, args, device: torch.device) -> tuple[float, float]:
    """``(seconds for the first warm-up steps, steady images/s)`` of one training loop."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model(model_name, pretrained=False, num_classes=10).to(device).to(memory_format=torch.channels_last)
    if compiled:
        net.compile(mode=args.mode, dynamic=False, backend=args.backend)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    dtype = torch.bfloat16 if best_mixed_precision(device.type) == "bf16-mixed" else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), device=device)

    def step() -> None:
        mixed_precision_step(net, optimizer, scaler, dtype, x, y)

    sync(device)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return warmup, args.steps * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet152", "densenet201"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps (compilation happens here)")
    parser.add_argument("--steps", type=int, default=30, help="timed steady steps")
    parser.add_argument("--mode", default="default", help="torch.compile mode (default, reduce-overhead, max-autotune)")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--smoke", action="store_true", help="CPU, resnet18, 32 px, aot_eager backend: checks the script")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.batch_size, args.size, args.warmup, args.steps, args.backend = ["resnet18"], 4, 32, 1, 2, "aot_eager"
    device = gpu_or_smoke("gpu_compile", args.smoke)
    if device is None:
        return
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke test)"
    print(f"gpu_compile: {name}; batch {args.batch_size} x {args.size} px, mode {args.mode}, backend {args.backend}")
    for model_name in args.models:
        eager_warmup, eager = run(model_name, False, args, device)
        compiled_warmup, compiled = run(model_name, True, args, device)
        ratio = compiled / eager
        step_eager, step_compiled = args.batch_size / eager, args.batch_size / compiled
        extra = compiled_warmup - eager_warmup
        payback = f"{extra / (step_eager - step_compiled):,.0f} steps" if step_compiled < step_eager else "never"
        print(f"{model_name}: warm-up ({args.warmup} steps) eager {eager_warmup:.1f} s, compiled {compiled_warmup:.1f} s; "
              f"steady eager {eager:,.0f} images/s, compiled {compiled:,.0f}; RATIO compiled / eager = {ratio:.2f}; "
              f"compiling pays back after {payback}")


if __name__ == "__main__":
    main()
