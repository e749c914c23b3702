"""The process-wide settings a command changes, given back when it ends (a notebook's next command starts clean).

A command sets process-wide state as it runs: Lightning's ``Trainer(deterministic=True)`` turns
on ``torch.use_deterministic_algorithms`` and sets ``CUBLAS_WORKSPACE_CONFIG``,
``benchmark`` sets cuDNN's autotuner, ``seed_everything`` exports ``PL_GLOBAL_SEED`` and
``PL_SEED_WORKERS``, our ``Float32MatmulPrecision`` callback lowers the float32 matmul
precision, and the run exports its directory for DDP processes. In a shell each command is a
new process; in a notebook or a script calling :func:`lightning_hw.cli.main` several times,
all of it stayed set for the next command: a fit after one with ``configs/trainer/gpu.yaml``
multiplied in TF32 (other numbers than the same fit from the shell), one after a
``deterministic: true`` fit ran deterministic kernels (or failed on an op without one), and
the changed environment kept a warm start process from serving later commands.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from lightning_hw.runs.naming import RUN_DIR_ENV

#: environment variables a command sets for itself and the processes it starts
COMMAND_ENVIRONMENT = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG", RUN_DIR_ENV)


@dataclass(frozen=True)
class ProcessSettings:
    """The process-wide settings a command may change, as they were."""

    deterministic: bool
    deterministic_warn_only: bool
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    matmul_precision: str
    environment: dict[str, str | None]

    @classmethod
    def current(cls) -> ProcessSettings:
        """The settings as they are now."""
        return cls(
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            cudnn_deterministic=torch.backends.cudnn.deterministic,
            matmul_precision=torch.get_float32_matmul_precision(),
            environment={name: os.environ.get(name) for name in COMMAND_ENVIRONMENT},
        )

    def restore(self) -> None:
        """Set every setting back to this value (only those that changed)."""
        if self == ProcessSettings.current():
            return
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.deterministic_warn_only)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        if torch.get_float32_matmul_precision() != self.matmul_precision:
            torch.set_float32_matmul_precision(self.matmul_precision)
        for name, value in self.environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

