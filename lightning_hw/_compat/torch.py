"""PyTorch internals lightning-hw relies on (checked by tests/test_compat.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # errors.py uses this module too, and must not import torch
    from torch import nn


def child_modules(module: nn.Module) -> Iterable[nn.Module | None]:
    """The direct children of ``module`` (``None`` for a slot set to ``None``).

    ``named_children()`` puts every child into a set to skip duplicates, which hashes it,
    and a torchmetrics ``Metric`` hashes all its states: walking a task's tree that way on
    every training step cost ~4x more (see ``Task.regularization_loss``).
    """
    return module._modules.values()  # noqa: SLF001


def worker_error_original(message: str, error_type: type[BaseException]) -> str | None:
    """The original message of an error a ``DataLoader`` worker raised, or ``None`` if ``message`` is not one.

    A worker's exception reaches the main process as a new exception of the same type whose
    message is ``"Caught <Type> in DataLoader worker process <n>.\nOriginal Traceback ..."``,
    the worker's whole formatted traceback (``torch._utils.ExceptionWrapper.reraise``). Its
    last part, after ``"<module>.<Type>: "``, is the message the worker raised.
    """
    head = f"Caught {error_type.__name__} in DataLoader worker process "
    if not message.startswith(head):
        return None
    marker = f"{error_type.__module__}.{error_type.__qualname__}: "
    _, found, original = message.rpartition(marker)
    return original.strip() if found and original.strip() else None


def allow_recompiles(at_least: int) -> int:
    """Let dynamo compile at least ``at_least`` graphs of one function before it falls back to eager.

    ``torch._dynamo.config.recompile_limit`` (``cache_size_limit`` before torch 2.6) is global;
    it is only ever raised here, never lowered. Returns the limit now in force.
    """
    from torch._dynamo import config

    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), at_least))
    return getattr(config, name)


def missing_cpu_compiler() -> str | None:
    """Why inductor (``torch.compile``'s default backend) cannot build CPU kernels here, or ``None`` if it can.

    Without a C++ compiler the first compiled forward pass fails deep inside the training
    step with a long traceback; inductor's own search (``CXX``, then ``g++``...) asked before
    training says the same in one line.
    """
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler as err:
        return str(err)
    return None
