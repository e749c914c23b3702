"""Mixed precision that picks bfloat16 or float16 from the GPU it runs on.

A YAML preset cannot branch on the hardware, so ``configs/trainer/gpu.yaml`` names this
plugin instead of a ``precision:`` string::

    trainer:
      plugins+:
        - class_path: lightning_hw.precision.AutoMixedPrecision
"""

from __future__ import annotations

import torch
from lightning.pytorch.plugins import MixedPrecision
from lightning.pytorch.utilities import rank_zero_info


def best_mixed_precision(device: str = "cuda") -> str:
    """``bf16-mixed`` where the device computes in bfloat16 natively, else ``16-mixed``.

    bfloat16 has float32's range, so it needs no loss scaling; GPUs before Ampere
    (compute capability < 8) only emulate it, slowly, and get float16 with a
    gradient scaler instead. On the CPU autocast is bfloat16 only.

    Args:
        device: ``cuda`` or ``cpu``.
    """
    if device == "cpu":
        return "bf16-mixed"
    # including_emulation=False: a T4/V100 "supports" bf16 only by emulation.
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16-mixed"
    return "16-mixed"


class AutoMixedPrecision(MixedPrecision):
    """Lightning's automatic mixed precision in the best 16-bit type of the device (see :func:`best_mixed_precision`).

    Use it instead of ``trainer.precision`` (Lightning refuses both at once). It asks the
    GPU for its compute capability when it is built, which initialises CUDA in that
    process: fine with ``strategy: ddp`` (new processes), not with the fork-based
    ``ddp_fork``/``ddp_notebook`` strategies (use ``precision: 16-mixed`` there).

    Args:
        device: ``cuda`` (default) or ``cpu``.
    """

    def __init__(self, device: str = "cuda") -> None:
        if device == "cuda" and not torch.cuda.is_available():
            # The trainer refuses a GPU preset on this machine, naming it: say nothing
            # untrue before that, and build no gradient scaler, which would warn about CUDA.
            super().__init__(precision="bf16-mixed", device=device)
            return
        precision = best_mixed_precision(device)
        super().__init__(precision=precision, device=device)
        rank_zero_info(f"AutoMixedPrecision: training in {precision} on {device}")
