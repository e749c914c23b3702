"""A callback for study tests: keeps a journal of epochs per process, and can SIGKILL its run once.

Imported by the ``fit`` subprocesses of a study (the test puts this directory on PYTHONPATH).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch import Callback


class KillOnce(Callback):
    """Write ``<pid> <epoch>`` to ``<run>/journal.txt`` at every epoch start; optionally die once.

    Args:
        kill_at_epoch: in this epoch, at its second batch, the process kills itself with
            SIGKILL (no clean-up of any kind runs), unless ``<run>/killed`` says it did so before.
    """

    def __init__(self, kill_at_epoch: int = -1) -> None:
        self.kill_at_epoch = kill_at_epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        with open(Path(trainer.default_root_dir) / "journal.txt", "a") as journal:
            journal.write(f"{os.getpid()} {trainer.current_epoch}\n")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        flag = Path(trainer.default_root_dir) / "killed"
        if trainer.current_epoch == self.kill_at_epoch and batch_idx == 1 and not flag.exists():
            flag.write_text(f"killed in epoch {trainer.current_epoch}, batch {batch_idx}\n")
            os.kill(os.getpid(), signal.SIGKILL)
