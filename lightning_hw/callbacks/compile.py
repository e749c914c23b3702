"""``torch.compile`` of a task's network that leaves checkpoints loadable without it."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lightning_hw._compat.torch import allow_recompiles, missing_cpu_compiler
from lightning_hw.errors import ConfigError


class CompileNet(Callback):
    """Compile the task's network in place with ``nn.Module.compile``.

    ``torch.compile(net)`` returns a wrapper module whose ``state_dict`` keys all start
    with ``_orig_mod.``, so its checkpoints only load into a compiled model.
    ``net.compile()`` compiles the module's call in place instead: parameters, names and
    checkpoints stay exactly as without compilation. Compilation itself happens at the
    first forward pass (the first steps are slow); it is done once per module, however
    many stages (fit, test) run.

    Args:
        attribute: the task's submodule to compile (``net`` for the built-in tasks).
        mode: ``torch.compile`` mode (``default``, ``reduce-overhead``, ``max-autotune``, ...).
        dynamic: compile for dynamic shapes (``None``: only after a shape changes).
        fullgraph: fail instead of splitting the graph where it cannot be compiled.
        backend: ``torch.compile`` backend (``inductor``; ``aot_eager`` needs no compiler).
        options: backend options, e.g. ``{"triton.cudagraphs": true}``.
        recompile_limit: how many graphs dynamo may compile for the net before it runs the
            rest eagerly. Every combination of training or evaluation, batch size (a last
            short batch is another shape) and frozen or unfrozen layers is a graph: fine-tuning
            a timm backbone with validation and a test takes 9, one over torch's default of 8,
            so the test would run eagerly with a warning. Only ever raised, never lowered.
    """

    def __init__(
        self,
        attribute: str = "net",
        mode: str | None = None,
        dynamic: bool | None = None,
        fullgraph: bool = False,
        backend: str = "inductor",
        options: dict[str, Any] | None = None,
        recompile_limit: int = 32,
    ) -> None:
        if recompile_limit < 1:
            raise ConfigError(f"CompileNet: recompile_limit must be at least 1, got {recompile_limit}")
        self.attribute = attribute
        self.recompile_limit = recompile_limit
        self.kwargs: dict[str, Any] = {"mode": mode, "dynamic": dynamic, "fullgraph": fullgraph, "backend": backend}
        if options:
            self.kwargs["options"] = options
        self._compiled: set[int] = set()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        net = getattr(pl_module, self.attribute, None)
        if not isinstance(net, nn.Module):
            children = ", ".join(name for name, _ in pl_module.named_children()) or "none"
            raise ConfigError(
                f"CompileNet: {type(pl_module).__name__} has no submodule {self.attribute!r} "
                f"(its submodules: {children}); set the callback's init_args.attribute"
            )
        if id(net) in self._compiled:
            return
        if self.kwargs["backend"] == "inductor" and isinstance(getattr(trainer, "accelerator", None), CPUAccelerator):
            missing = missing_cpu_compiler()
            if missing is not None:
                raise ConfigError(
                    f"CompileNet: torch.compile's inductor backend needs a C++ compiler on the CPU ({missing}); "
                    f"install one (g++), or compile without it: add `--trainer.callbacks.init_args.backend aot_eager` "
                    f"right after `--config configs/trainer/compile.yaml` (such an option goes to the last callback "
                    f"given before it), or leave out configs/trainer/compile.yaml"
                )
        allow_recompiles(self.recompile_limit)
        net.compile(**self.kwargs)
        self._compiled.add(id(net))
        rank_zero_info(f"CompileNet: {type(pl_module).__name__}.{self.attribute} compiled with {self.kwargs}")
