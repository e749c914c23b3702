"""The model summary printed at the start of fit: the net's layers and parameter count."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count, summarize


class NetSummary(ModelSummary):
    """A compact model summary: the layers that learn, their parameters, and the totals.

    Lightning's table also lists a task's bookkeeping (metric collections, buffers of
    epoch outputs), which hold no parameters, and columns that say nothing here (``Mode``,
    ``FLOPs`` of 0 without an ``example_input_array``). This one keeps the task's children
    that have parameters (its net), down to ``max_depth``, as plain lines. Being a
    ``ModelSummary``, it replaces Lightning's default one; ``--verbose`` brings that back.

    Args:
        max_depth: nesting depth of the layers listed, counted from the task
            (``net`` is 1, ``net.layers`` 2...); 0 prints nothing.
    """

    def __init__(self, max_depth: int = 3) -> None:
        super().__init__(max_depth=max_depth)
        self.max_depth = max_depth

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.max_depth and trainer.is_global_zero:
            print(describe(pl_module, self.max_depth))


def describe(model: LightningModule, max_depth: int = 3, exact: bool = False) -> str:
    """The summary text: a totals line, then one line per learning layer (name, type, parameters).

    Args:
        model: the task.
        max_depth: nesting depth of the layers listed (see :class:`NetSummary`).
        exact: counts in full (``100,480``, as Keras' ``model.summary()``), not rounded (``100 K``).
    """
    summary = summarize(model, max_depth=max_depth)
    learning = {name for name, child in model.named_children() if any(True for _ in child.parameters())}

    def count(n: int) -> str:
        return f"{n:,}" if exact else get_human_readable_count(n).strip()

    rows = [
        (name, kind, count(number))
        for name, kind, number in zip(summary.layer_names, summary.layer_types, summary.param_nums)
        if name.split(".", 1)[0] in learning
    ]
    total, trainable = summary.total_parameters, summary.trainable_parameters
    lines = [
        f"Model: {type(model).__name__}, {count(total)} parameters "
        f"({count(trainable)} trainable, {summary.model_size:.2f} MB)"
    ]
    if rows:
        name_width = max(len(r[0]) for r in rows)
        type_width = max(len(r[1]) for r in rows)
        count_width = max(7, *(len(r[2]) for r in rows))
        lines += [f"  {n:<{name_width}}  {t:<{type_width}}  {p:>{count_width}}" for n, t, p in rows]
    return "\n".join(lines)
