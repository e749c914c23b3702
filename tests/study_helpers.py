"""A callback for study tests: keeps a journal of epochs per process, and can SIGKILL its run once.

Imported by the ``fit`` subprocesses of a study (the test puts this directory on PYTHONPATH).
"""

from __future__ import annotations

import os
import time
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


class SlowStep(Callback):
    """From training step ``step`` on, make every step last ``seconds`` more (a large model's step, or a stuck one).

    Writes ``<run>/slow-step`` as the first slow step starts sleeping, so a test knows that a
    signal now comes in the middle of a step.
    """

    def __init__(self, step: int = 2, seconds: float = 60.0) -> None:
        self.step = step
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            (Path(trainer.default_root_dir) / "slow-step").touch()
            time.sleep(self.seconds)  # a signal handler that returns lets the sleep go on (PEP 475)


class DiskFullAfterTestOnce(Callback):
    """At the end of the test after fit (its row logged), raise what a full disk raises, once per run.

    ``<run>/disk-was-full`` says it did so before (as ``KillOnce``'s flag): the rerun's test ends well.
    """

    def on_test_end(self, trainer, pl_module) -> None:
        import errno

        flag = Path(trainer.default_root_dir) / "disk-was-full"
        if not flag.exists():
            flag.write_text("the test after fit stopped by a full disk\n")
            raise OSError(errno.ENOSPC, "No space left on device")
