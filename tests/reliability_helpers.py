"""Test-only callbacks and datamodules for the reliability tests, importable from configs.

``tests/`` is on ``sys.path`` under pytest (and is put on ``PYTHONPATH`` for subprocesses), so
configs can name these as ``reliability_helpers.KillAtStep`` and so on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback

from lightning_hw.cli import warm_start
from lightning_hw.data.base import InMemoryDataModule, Split
from lightning_hw.nets import NetFactory
from lightning_hw.tasks.classification import Classifier
from lightning_hw.data.io.files import read_csv_table
from lightning_hw.data.datasets.mobile_price import MobilePrice
from lightning_hw.data.datasets.moons import TwoMoons


class KillAtStep(Callback):
    """SIGKILL this process right after training step ``step`` (a crash with no chance to clean up)."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.step and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonAtStep(Callback):
    """Replace the inputs of the batch of step ``step`` (0-based) by NaN, so that step's loss is NaN."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            batch[0].fill_(float("nan"))  # batches are gathered copies: the dataset stays clean


class MetricsAfterSanityCheck(Classifier):
    """A Classifier that skips its epoch metrics while Lightning sanity checks (as a task with an expensive metric may)."""

    def compute_epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        return {} if self.trainer.sanity_checking else super().compute_epoch_metrics(stage)


class OwnValidationMetric(Classifier):
    """A Classifier that logs one more validation metric under its own name, ``val/own`` (as a plugin task may)."""

    def compute_epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        values = super().compute_epoch_metrics(stage)
        if stage == "val" and values:
            values["val/own"] = values["val/acc"]
        return values


class MonitorChosenAtInit(Classifier):
    """A Classifier whose checkpoint metric is an init argument, set in ``__init__`` as Lightning users do.

    Its class attribute stays the Classifier's (``val/acc``, ``"max"``): a reader of the class
    alone gets another metric than the task object's ``watch``.
    """

    def __init__(
        self,
        net: NetFactory,
        num_classes: int = 2,
        input_shape: tuple[int, ...] = (1,),
        head: str = "softmax_ce",
        class_names: list[str] | None = None,
        lr: float | None = None,
        watch: str = "val/loss",
    ) -> None:
        super().__init__(net, num_classes, input_shape, head, class_names, lr)
        self.monitor = watch


class LogsValidationMetric(Callback):
    """A callback of the user's that logs a validation metric, ``val/from_callback``."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("val/from_callback", 1.0)


class CSVPoints(InMemoryDataModule):
    """2-D points with a label column, read from a CSV file (``x1,x2,label``).

    Args:
        path: the CSV file.
        **kwargs: see :class:`~lightning_hw.data.base.InMemoryDataModule`.
    """

    def __init__(self, path: str = "points.csv", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path

    @property
    def class_names(self) -> list[str]:
        return ["a", "b"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (2,)

    def load_tensors(self) -> Split:
        header, values = read_csv_table(self.path, columns=("x1", "x2", "label"), what="points CSV")
        columns = {name: torch.as_tensor(values[:, i]) for i, name in enumerate(header)}
        x = torch.stack([columns["x1"], columns["x2"]], dim=1).float()
        return x, columns["label"].long()


class OtherPhones(MobilePrice):
    """Kaggle's mobile price table read by another datamodule class (as a plugin's reader, or another data set, would be)."""


class ShiftedMoons(TwoMoons):
    """TwoMoons with labels 1 and 2 instead of 0 and 1 (a dataset whose labels start at 1)."""

    def load_tensors(self) -> Split:
        x, y = super().load_tensors()
        return x, y + 1


def tiny_fit_args(root, *extra: str) -> list[str]:
    """A fast quickstart ``fit`` writing under ``root/runs`` (the conftest ``tiny_args``, for session fixtures)."""
    from conftest import QUICKSTART

    return [
        "fit", "--config", str(QUICKSTART),
        "--trainer.max_epochs", "2",
        "--trainer.limit_train_batches", "5",
        "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(root / "runs"),
        "--run.wandb", "disabled",
        *extra,
    ]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train and predict on one thread, restored afterwards (``pytestmark = pytest.mark.usefixtures(...)``).

    These models are tiny: on 2 cores shared with other jobs, two threads per process
    thrash (the transfer fit took 29 s with two threads next to one busy process, 7 s with one).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A quickstart run trained for two short epochs: ``runs/quickstart/trained`` (checkpoints, config.yaml)."""
    from lightning_hw.cli import HWCLI

    root = tmp_path_factory.mktemp("trained")
    HWCLI(args=tiny_fit_args(root, "--run.name", "trained", "--run.test_after_fit", "false"))
    return root / "runs" / "quickstart" / "trained"


class SignalAtStep(Callback):
    """Send this process signal ``signum`` once, right after training step ``step`` (an interrupt).

    Unlike :class:`KillAtStep` the run gets the chance to handle it: ``SIGTERM`` (15, what a
    scheduler or ``kill`` sends) and ``SIGINT`` (2, Ctrl-C). The handler runs at once, in the
    main thread, before this hook returns. ``times=2`` sends it twice (Ctrl-C pressed again:
    the run stops at once). ``rank`` sends it in that DDP process only (``kill`` of one process).
    """

    def __init__(self, step: int, signum: int = 15, times: int = 1, rank: int | None = None) -> None:
        self.step = step
        self.signum = signum
        self.times = times
        self.rank = rank
        self._sent = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        if not self._sent and trainer.global_step == self.step:
            self._sent = True
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


class SignalJobAtStep(Callback):
    """After training step ``step``, signal every process of a torchrun job, as a scheduler does.

    Each worker sends ``signum`` to itself and the first also to its parent, torchrun, which
    passes it on to every worker: each gets it twice, as when SLURM or ``kill -<pgid>`` signals
    the whole job. The hook then waits ``wait`` seconds, in training, for torchrun's copy.
    """

    def __init__(self, step: int, signum: int = 15, wait: float = 2.0) -> None:
        self.step = step
        self.signum = signum
        self.wait = wait

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        os.kill(os.getpid(), self.signum)
        if trainer.global_rank == 0:
            os.kill(os.getppid(), self.signum)
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            time.sleep(0.05)


class TrainingOrderFiles(Callback):
    """Write the positions of the training samples each process draws in an epoch to ``directory``.

    One file per process and epoch, ``rank<r>-epoch<e>.txt``, written at the epoch's first
    batch: the sample positions of the in-memory loader's order (this process's share).
    """

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            order = trainer.train_dataloader.order._order
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"rank{trainer.global_rank}-epoch{trainer.current_epoch}.txt"
            path.write_text(" ".join(map(str, order.tolist())))


class SignalAfterBatches(Callback):
    """Send this process signal ``signum`` once, right after its ``batches``-th training batch.

    Counts batches, not optimizer steps: with ``accumulate_grad_batches`` the signal can
    arrive while a step's gradients are half accumulated.
    """

    def __init__(self, batches: int, signum: int = 15) -> None:
        self.batches = batches
        self.signum = signum
        self._seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._seen += 1
        if self._seen == self.batches:
            os.kill(os.getpid(), self.signum)


class SignalInValidation(Callback):
    """Send this process signal ``signum`` once, during the first validation batch at training step ``step``."""

    def __init__(self, step: int, signum: int = 15) -> None:
        self.step = step
        self.signum = signum
        self._sent = False

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self._sent and not trainer.sanity_checking and trainer.global_step == self.step:
            self._sent = True
            os.kill(os.getpid(), self.signum)


class RaiseAtStep(Callback):
    """Raise ``RuntimeError`` at the start of training step ``step`` (a model that crashes)."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"test crash at step {self.step}")


class KeyboardInterruptAtStep(Callback):
    """Raise ``KeyboardInterrupt`` at the start of training step ``step``, as Jupyter's interrupt does in a cell."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.step and trainer.global_step == self.step:
            raise KeyboardInterrupt


def error_of(args: list[str], capsys) -> tuple[int, str]:
    """Run the CLI; return its exit code and its one ``error:`` line (asserting there is exactly one, and no traceback)."""
    from lightning_hw.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return exit_info.value.code, lines[0]


def output_of(*args: str) -> str:
    """Run ``python -m lightning_hw <args>`` in this process; what it printed (fails the test on an error exit)."""
    import contextlib
    import io

    from lightning_hw.cli import main

    printed = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(printed):
        try:
            main(list(args))
        except SystemExit as exit_info:
            code = exit_info.code or 0
    text = printed.getvalue()
    assert code == 0, f"`{' '.join(args[:1])}` exited with {code}; it printed:\n{text[-3000:]}"
    return text


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs, from ``/proc`` (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the task ended meanwhile
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def signal_when_training(
    command: list[str], output: Path, training: Callable[[], bool], signum: int, *,
    cwd: Path, env: dict[str, str], group: bool = False, job_step: bool = False, wait: float = 60,
    signalled: list[int] | None = None,
) -> int:
    """Start ``command`` (its output to ``output``), send it ``signum`` once ``training()`` says so, return its exit code.

    Fails the test when the command ends before the signal or is still running 60 s after it;
    the command never outlives the test.

    Args:
        command: the command line.
        output: where its stdout and stderr go (shown when the test fails).
        training: whether the command is far enough to be interrupted (checked every 50 ms).
        signum: the signal.
        cwd: its working directory.
        env: its environment.
        group: start it in a session of its own and signal its process group, as a terminal's
            Ctrl-C or ``kill -TERM -<pgid>`` reach every process of the group (its workers too).
        job_step: signal it and every process it started, wherever their process group, as
            SLURM signals every process of a job step (by its cgroup) at the time limit.
        wait: seconds to wait for ``training()``.
        signalled: filled with the processes that ``job_step`` signalled.
    """
    def send(sig: int) -> None:
        if group:
            os.killpg(process.pid, sig)
            return
        pids = [process.pid, *(descendants(process.pid) if job_step else [])]
        if signalled is not None and sig == signum:
            signalled[:] = pids
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    with output.open("w") as log:
        process = warm_start.popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=group)
        try:
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and process.poll() is None and not training():
                time.sleep(0.05)
            assert process.poll() is None, f"the run ended before it could be interrupted:\n{output.read_text()[-3000:]}"
            send(signum)
            try:
                return process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"no exit within 60 s of {signal.Signals(signum).name}:\n{output.read_text()[-3000:]}")
        finally:
            if process.poll() is None:
                send(signal.SIGKILL)
                process.wait()


@pytest.fixture
def read_only(monkeypatch) -> Callable[[Path], None]:
    """Mark folders read-only as a read-only mount is: creating anything under them fails with EROFS.

    Permission bits would not do: the suite may run as root, who ignores them. Every way the
    data code creates files goes through one of the functions replaced here (``open``,
    ``os.open`` for ``tempfile``, ``os.mkdir`` for ``makedirs`` and ``Path.mkdir``); reading
    stays as it is. Returns the function that marks a folder.
    """
    import builtins
    import errno

    frozen: list[Path] = []

    def check(path: Any) -> None:
        if isinstance(path, int):  # a file descriptor: already open
            return
        where = Path(os.fsdecode(path)).absolute()
        if any(where == folder or folder in where.parents for folder in frozen):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            check(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            check(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        check(path)
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return lambda folder: frozen.append(Path(folder).absolute())


class SlowValidation(Callback):
    """Sleep ``seconds`` at the end of every validation (not the sanity check): time passes after the epoch's batches."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            time.sleep(self.seconds)


class SignalInTest(Callback):
    """Send this process signal ``signum`` once during a test: ``when="batch"`` after its first batch (the
    test is still running), ``when="end"`` at ``on_test_end`` (Lightning has logged the test's metrics),
    ``when="validate_end"`` at the ``on_validation_end`` of ``validate`` (the same for its metrics)."""

    def __init__(self, when: str = "end", signum: int = 15) -> None:
        self.when = when
        self.signum = signum
        self._sent = False

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.when == "batch":
            self._send()

    def on_test_end(self, trainer, pl_module) -> None:
        if self.when == "end":
            self._send()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.when == "validate_end" and trainer.state.fn == "validate":
            self._send()

    def _send(self) -> None:
        if not self._sent:
            self._sent = True
            os.kill(os.getpid(), self.signum)


class _SignalsWhenDropped:
    """An object whose finalizer sends this process ``signum``: the handler runs inside its ``__del__``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)
        time.sleep(0.05)  # the sleep is where Python runs the handler: inside this finalizer


class SignalInFinalizer(Callback):
    """Send this process ``signum`` once, from inside a finalizer (a ``__del__``, as torch, matplotlib and
    Lightning run many), where Python prints an exception that the handler raises and goes on.

    ``stage="test"``, ``"validate"`` or ``"predict"``: after that command's first batch (the evaluation is
    still running). ``stage="fit"``: after training step ``step`` the signal is sent twice, the first
    directly (stop at the next step) and the second from the finalizer (stop at once). ``direct=True``
    sends every signal directly instead: the outcome the finalizer's must match.
    """

    def __init__(self, stage: str = "test", signum: int = 15, step: int = 2, direct: bool = False) -> None:
        self.stage = stage
        self.signum = signum
        self.step = step
        self.direct = direct
        self._sent = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.stage == "fit" and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)  # the first signal: stop after this step
            self._send()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.stage == "test":
            self._send()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.stage == "validate" and trainer.state.fn == "validate":
            self._send()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.stage == "predict":
            self._send()

    def _send(self) -> None:
        if self._sent:
            return
        self._sent = True
        if self.direct:
            os.kill(os.getpid(), self.signum)
        else:
            _SignalsWhenDropped(self.signum)  # dropped at once: its __del__ runs here
