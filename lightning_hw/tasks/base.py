"""What every task shares: metric naming, weight penalties, the default optimizer."""

from __future__ import annotations

from typing import ClassVar

import torch
from lightning.pytorch import LightningModule


class Task(LightningModule):
    """Base class of lightning-hw tasks (and of plugin tasks).

    A task logs ``train/loss``, ``val/loss`` and ``test/loss`` plus its metrics under the
    same prefixes, once per epoch; reports and checkpoint monitors rely on these names.
    :attr:`monitor` names the validation metric that picks the best checkpoint.
    :attr:`linked_from_data` lists the init arguments that come from the datamodule
    (the CLI links ``data.<name>`` to ``model.init_args.<name>`` when the data has it),
    so sizes such as ``num_classes`` are never typed twice.

    Args:
        lr: learning rate. Without an ``optimizer:`` section in the config the task
            trains with Adam at this rate (1e-3 if unset); with one, a value given here
            replaces that optimizer's ``lr``.
    """

    #: validation metric that selects the best checkpoint, and whether higher is better
    monitor: ClassVar[str] = "val/loss"
    monitor_mode: ClassVar[str] = "min"
    #: init arguments the CLI fills from the datamodule attribute of the same name
    linked_from_data: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lr: float | None = None) -> None:
        super().__init__()
        self.lr = lr

    def regularization_loss(self) -> torch.Tensor | None:
        """Sum of the weight penalties declared by submodules (``regularization_loss()``), if any."""
        terms = [
            m.regularization_loss()
            for m in self.modules()
            if m is not self and callable(getattr(m, "regularization_loss", None))
        ]
        return sum(terms[1:], terms[0]) if terms else None

    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Log ``<stage>/loss`` as an epoch mean (shown in the progress bar outside training)."""
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "train",
            batch_size=batch_size,
            sync_dist=stage != "train",
        )

    def prediction_columns(self, outputs: dict[str, torch.Tensor]) -> dict[str, list]:
        """CSV columns for one batch of ``predict_step`` outputs (``python -m lightning_hw predict``).

        The default names each output ``name`` (one value per sample) or ``name_i`` (several);
        tasks override it to write class names, coordinates in pixels, etc.
        """
        from lightning_hw.predict import generic_columns

        return generic_columns(outputs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam, used only when the config has no ``optimizer:`` section."""
        return torch.optim.Adam(self.parameters(), lr=self.lr if self.lr is not None else 1e-3)
