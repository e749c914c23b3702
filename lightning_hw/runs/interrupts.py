"""SIGTERM and Ctrl-C: stop at the next step, save ``last.ckpt`` there, say how to resume, exit non-zero.

Schedulers send SIGTERM on preemption or at the time limit (SLURM, Kubernetes, most
clouds); people press Ctrl-C. Both should cost at most one training step:

- The first signal during training asks the loop to stop. At the next optimizer step
  (with ``accumulate_grad_batches``, once the batches of that step are all in)
  :class:`GracefulStop` writes ``last.ckpt`` at that step (atomically) and raises
  :class:`RunInterrupted`; at the end of an epoch the epoch's own ``last.ckpt`` write is
  forced instead, since that is where an end-of-epoch resume continues exactly. A
  validation pass that is running finishes first (its metrics belong to the epoch).
- Outside the training loop (set-up, sanity check, testing) and at a second signal, the
  command stops at once; once the work is done (a test's metrics logged, the command's
  files being written out) a signal is noted and the command ends as it would have.
- A handler that Python runs inside a finalizer (a ``__del__``, a weakref callback) cannot
  stop anything there: its stop is raised again at the next batch or stage boundary
  (:class:`SwallowedStops`), or when the command's work returns (:meth:`SignalWatch.raise_swallowed`).
- The CLI catches :class:`RunInterrupted`, prints what was saved and the exact command
  that resumes, and exits with ``128 + signal`` (SIGTERM 143, SIGINT 130): a scheduler or
  study runner never mistakes an interrupted run for a finished one.

Lightning's own SIGTERM handling (stop at the end of the *current* step or in the middle
of validation, exit code 0) is replaced while training; its SLURM auto-requeue (SIGUSR1)
is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from lightning_hw._compat.lightning import gradients_accumulating

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):
    """The command was stopped by a signal. A ``BaseException``: no ``except Exception`` may swallow it.

    Args:
        signum: the signal.
        saved: the checkpoint written for the resume, or ``None``.
        step: the training step it holds.
        at_once: the command stopped without waiting for a step boundary.
    """

    def __init__(self, signum: int, saved: str | None = None, step: int | None = None, at_once: bool = False) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.saved = saved
        self.step = step
        self.at_once = at_once

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def stopped_at_once(signum: int, said: str) -> RunInterrupted:
    """The :class:`RunInterrupted` of a command that a signal stops at once (export, report), with its line.

    Args:
        signum: the signal.
        said: what stopped and what is left, e.g. ``"export stopped; nothing was written"``.
    """
    stop = RunInterrupted(signum, at_once=True)
    how = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else signal.Signals(signum).name
    stop.message = f"interrupted by {how}: {said}"
    return stop


class StopsAtOnce:
    """The stop signals that a command's own handler gets (export, report): each stops it at once, saying ``said``.

    The handler's stop may be raised inside a finalizer, which swallows it (see
    :func:`quiet_swallowed_stops`): :meth:`raise_received` raises it again where the command
    checks, before its result takes its place.

    Args:
        said: what stopped and what is left (see :func:`stopped_at_once`).
    """

    def __init__(self, said: str) -> None:
        self.said = said
        self.received: list[int] = []

    def stop(self, signum: int) -> RunInterrupted:
        """Note ``signum``; the stop to raise for it."""
        self.received.append(signum)
        return stopped_at_once(signum, self.said)

    def raise_received(self) -> None:
        """Raise the stop of the first signal received, if any (one whose stop a finalizer swallowed)."""
        if self.received:
            raise stopped_at_once(self.received[0], self.said)


@contextlib.contextmanager
def quiet_swallowed_stops() -> Iterator[None]:
    """Keep Python from printing a :class:`RunInterrupted` that a finalizer swallowed.

    Python runs a signal handler between two bytecodes, also inside a ``__del__`` or weakref
    callback (matplotlib and torch run many). A stop raised there stops nothing: Python prints
    it as "Exception ignored in ..." with a traceback and goes on. A command whose handler
    records each signal raises the stop again itself before its result takes its place
    (the CLI's commands: :meth:`SignalWatch.raise_swallowed`).
    """

    def unraisable(info: Any) -> None:
        if not isinstance(info.exc_value, RunInterrupted):
            python_hook(info)

    python_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        sys.unraisablehook = python_hook


class SignalWatch:
    """The process's SIGINT/SIGTERM handlers while a command runs (one instance: :data:`WATCH`)."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the signal that asked training to stop
        self.training = False  # inside the training loop: stop at the next step, not at once
        self.finishing = False  # the work is done and being written out: a signal is noted, not obeyed
        self.trainer: Trainer | None = None
        self._copies_due = 0  # copies of the stop signal that torchrun is still to pass on (see _torchrun_copies)
        self._stopped_at_once: int | None = None  # the signal that stopped the command at once
        self._raised: int | None = None  # the signal whose stop the handler raised (see raise_swallowed)
        self._sigterms = 0  # SIGTERMs this process got, and the stop requests they made (see study_copy)
        self._study_requests = 0
        self._saved: dict[int, Any] = {}
        self._ending = threading.RLock()  # see claim_ending
        self._wakeup: tuple[int, int] | None = None  # the pipe the C-level handler writes each signal to (see stop_signal_received)
        self._wakeup_before = -1
        self._received = b""

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (again: Lightning installs its own SIGTERM handler in ``fit``)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; a command run from a thread keeps the defaults
        # Imported now, not in the handler: a second SIGTERM (the study's copy) arriving while the first
        # handler imported them met a half-imported module, and the fit ended in an ImportError (exit 1).
        import lightning_hw.cli.warm_start  # noqa: F401
        import lightning_hw.studies.grid  # noqa: F401
        for signum in SIGNALS:
            current = signal.getsignal(signum)
            if current != self._handle:
                self._saved.setdefault(signum, current)
                signal.signal(signum, self._handle)
        if self._wakeup is None:
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self._wakeup_before = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
            self._wakeup = (read, write)

    def restore(self) -> None:
        """Give the handlers back and forget this command's state."""
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._saved.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            if self._wakeup is not None:
                signal.set_wakeup_fd(self._wakeup_before)
                for fd in self._wakeup:
                    os.close(fd)
                self._wakeup, self._wakeup_before = None, -1
        self._saved.clear()
        self._received = b""
        self.signum, self.training, self.finishing, self.trainer = None, False, False, None
        self._copies_due, self._stopped_at_once, self._raised = 0, None, None
        self._sigterms = self._study_requests = 0
        self._ending = threading.RLock()

    def claim_ending(self, wait: bool = True) -> bool:
        """Take the ending of the command for this thread: ``False`` when another thread has it (``wait=False``).

        Under DDP the first process may be ended by another thread than its main one: the
        thread that watches the processes Lightning started, when one of them was interrupted
        while the main thread waits for it in a call that no signal breaks off (see
        :meth:`~lightning_hw.cli.parser.HWCLI.child_interrupted`). Whichever thread claims
        it first undoes the run and ends the command; the other leaves it alone (the main
        thread waits: that thread ends the process). Claimed again by the same thread, it stays its own.

        Args:
            wait: wait for another thread that has it (which ends the process meanwhile).
        """
        return self._ending.acquire(blocking=wait)

    def stop_signal_received(self) -> int | None:
        """The first SIGINT or SIGTERM this process got since :meth:`install` (``None``: none); any thread may ask.

        Python runs a signal's handler in the main thread, between two of its bytecodes: a main
        thread waiting in C++ (DDP's rendezvous, for a process that will never come) has not run
        it, and may never. The C-level handler writes each signal's number to the wakeup
        descriptor (``signal.set_wakeup_fd``) at once, which is read here.
        """
        if self._wakeup is not None:
            try:
                self._received += os.read(self._wakeup[0], 4096)
            except OSError:  # BlockingIOError: nothing new; or the pipe was closed meanwhile (restore)
                pass
        return next((int(signum) for signum in self._received if signum in SIGNALS), None)

    def raise_swallowed(self, cause: BaseException | None = None) -> None:
        """Raise the stop the handler raised, if the command is still running: a finalizer swallowed it.

        Python runs a signal handler between two bytecodes, also inside a ``__del__`` or weakref
        callback (torch, matplotlib and Lightning run many). The :class:`RunInterrupted` raised
        there stops nothing: Python prints it ("Exception ignored in ...", kept quiet by
        :func:`quiet_swallowed_stops`) and the command goes on. A SIGTERM's stop swallowed in a test
        then let Lightning's own SIGTERM flag end it at the next batch with ``SystemExit(None)``:
        exit 0, the evaluation undone and nothing said; in its last batch, or for Ctrl-C, the
        evaluation was saved. So the CLI calls this at each batch (:class:`SwallowedStops`), when
        the command's work returns, and when it ends by another exception (``cause``): the stop
        then ends the command as it would have where it was raised (one line, 130 or 143).
        A stop that did unwind never gets here: the command ended with it.
        """
        if self._raised is not None:
            raise RunInterrupted(self._raised, at_once=True) from cause

    def release_ending(self) -> None:
        """Give back a claim of :meth:`claim_ending` that this thread took but does not act on."""
        self._ending.release()

    def requested(self) -> bool:
        """Whether a signal asked training to stop (in this process)."""
        return self.signum is not None

    def agreed(self, trainer: Trainer) -> bool:
        """Whether training stops now: when any process was asked to (they must stop at the same step).

        Any process, not only the first: ``kill -TERM <pid>`` of another process (or a scheduler
        that signals one) would otherwise be ignored, and the run trained on to its end. A
        process that was not signalled itself takes the signal of one that was (the highest
        number, so that every process names the same one), for the exit code and the messages.
        Call it on every process at the same point (it is a collective call under DDP).
        """
        if trainer.world_size > 1:
            import torch

            mine = torch.tensor(self.signum or 0, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(mine, reduce_op="max").item())
            if signum and self.signum is None:
                self.signum = signum
                if trainer.global_rank == 0:  # the line the signalled process does not print
                    print(f"\n{signal.Signals(signum).name} (to another process): stopping after this step and saving last.ckpt",
                          file=sys.stderr, flush=True)
            return bool(signum)
        return self.requested()

    def _parent_forwards_signals(self) -> bool:
        """Whether this is a DDP process Lightning started, whose rank 0 forwards each signal it gets.

        A signal to the whole process group (Ctrl-C, ``kill -TERM -<pgid>``, SLURM) then reaches
        such a process twice: directly, and forwarded by rank 0 (``launcher.kill``). The second
        must not stop it at once: the ranks would no longer meet at the next step, and rank 0
        would fail in a collective call. Rank 0 decides to stop at once, and then Lightning
        ends the other processes.
        """
        trainer = self.trainer
        if trainer is None or trainer.local_rank == 0:
            return False
        from lightning.fabric.plugins.environments import LightningEnvironment

        return type(getattr(trainer.strategy, "cluster_environment", None)) is LightningEnvironment

    def _torchrun_copies(self, signum: int) -> int:
        """How many copies of a stop signal torchrun passes on after it: 1 or 0 (a study's copies: :meth:`study_copy`).

        torchrun sends each signal it gets on to every worker. A signal to the whole job (the
        process group, SLURM's job step, ``scancel``) so reaches a worker twice: directly, and
        milliseconds later from torchrun. That copy is not a second request: taken as one, every
        worker stopped at once, without the ``last.ckpt`` of its step. (When torchrun alone was
        signalled, the worker gets only the copy, and the next signal is taken as the copy it
        waits for: it then takes one more to stop at once.)
        """
        from lightning.fabric.plugins.environments import TorchElasticEnvironment

        environment = getattr(getattr(self.trainer, "strategy", None), "cluster_environment", None)
        return 1 if type(environment) is TorchElasticEnvironment else 0

    def study_copy(self, signum: int) -> bool:
        """Whether this SIGTERM repeats a stop request this study's fit already took (the study's copy of it).

        The study passes each SIGTERM it gets on to its fits (not Ctrl-C, which a terminal sends
        to the whole process group). A SIGTERM to the process group reaches the fit twice,
        directly and passed on: one request. One to the study's process alone (``kill PID``,
        ``docker stop``) reaches it once: taken for half of a pair, the user's second
        ``kill PID`` was swallowed and only a third stopped the fit at once. The study counts
        the SIGTERMs it passed on (:data:`~lightning_hw.studies.grid.STUDY_STOPS_ENV`): of the
        SIGTERMs this process got, that many came from the study and the rest directly, so the
        requests made so far are the larger of the two numbers, whichever copy comes first.
        """
        from lightning_hw.cli.warm_start import caller_pid
        from lightning_hw.studies.grid import STUDY_PARENT_ENV, STUDY_STOPS_ENV

        count_file = os.environ.get(STUDY_STOPS_ENV)
        if signum != signal.SIGTERM or not count_file or os.environ.get(STUDY_PARENT_ENV) != str(caller_pid()):
            return False
        self._sigterms += 1
        try:
            passed_on = int(_read_at_start(count_file).strip() or 0)
        except (OSError, ValueError):  # the study has ended: nothing more comes from it
            passed_on = 0
        requests = max(passed_on, self._sigterms - passed_on)
        if requests <= self._study_requests:
            return True
        self._study_requests = requests
        return False

    def _handle(self, signum: int, frame: Any) -> None:
        copy = self.study_copy(signum)  # counted whatever the run is doing
        if self.finishing:
            print(f"\n{signal.Signals(signum).name}: the run is complete; closing its logs", file=sys.stderr, flush=True)
            return
        if copy:
            return  # the same stop again, passed on by the study: see study_copy
        if self.signum is None and self.training:
            self.signum = signum
            self._copies_due = self._torchrun_copies(signum)
            launcher = getattr(getattr(self.trainer, "strategy", None), "launcher", None)
            if launcher is not None and hasattr(launcher, "kill"):
                launcher.kill(signum)  # the DDP processes Lightning started stop at the same step
            if getattr(self.trainer, "global_rank", 0) == 0:  # one line per run, not one per DDP process
                print(
                    f"\n{signal.Signals(signum).name}: stopping after this step and saving last.ckpt "
                    "(send it again to stop at once)",
                    file=sys.stderr,
                    flush=True,
                )
            return
        if self.signum is not None and self.training and self._parent_forwards_signals():
            return  # the same stop again, forwarded by rank 0
        if signum in (self.signum, self._stopped_at_once) and self._copies_due > 0:
            # The same stop again, passed on by torchrun, not a second request: while training,
            # once the run stopped at its step and unwinds (the copy may come after a short step), or while a
            # command stopped at once unwinds (raised again, it would break off its status and rollback).
            self._copies_due -= 1
            return
        self._stopped_at_once, self._copies_due = signum, self._torchrun_copies(signum)
        self.claim_ending(wait=False)  # the main thread stops the command: no other thread ends it meanwhile
        if self._raised is None:
            self._raised = signum  # raised again by raise_swallowed where a finalizer swallowed it
        raise RunInterrupted(signum, at_once=True)


WATCH = SignalWatch()


def interrupt_signal(returncode: int) -> int | None:
    """The stop signal (SIGINT, SIGTERM) a process that exited with ``returncode`` was stopped by, or ``None``.

    130 or 143: it stopped itself (128 + the signal, as every command here does); -2 or -15:
    the signal killed it (``subprocess``'s code), before it had taken over the signals.
    """
    for signum in SIGNALS:
        if returncode in (128 + signum, -signum):
            return int(signum)
    return None


class WorkerInit:
    """``worker_init_fn`` of ``DataLoader`` workers: stop signals are the main process's to handle.

    Ctrl-C in a terminal, and a signal to the process group (``kill -TERM -<pgid>``, GNU
    ``timeout``), reach every process of the group; a scheduler that ends a job (SLURM at its
    time limit, ``scancel``) signals every process of the job step. A worker would stop on its
    own (with a copy of the main process's handlers, or killed by SIGTERM's default action),
    and the main process, finding its workers dead, would fail the run instead of stopping it
    at the next step. So a worker leaves the process group and ignores SIGINT and SIGTERM.
    It also ignores SIGTTOU and SIGTTIN: outside the terminal's foreground group, a write to a
    terminal set to ``stty tostop`` would otherwise stop it for good.

    ``multiprocessing`` ends the workers still running when the main process exits with
    SIGTERM, and then waits for them: :func:`end_workers_at_exit` ends them with SIGKILL first.
    A worker whose main process died (SIGKILL, out of memory) ends itself: torch's workers
    check every few seconds that their parent lives.

    Lightning seeds each worker only when a loader has no ``worker_init_fn`` of its own, so
    this one does it too (after ``seed_everything(workers=True)``), then calls ``then``.

    Args:
        then: a ``worker_init_fn`` of the datamodule's own, called last.
    """

    def __init__(self, then: Callable[[int], None] | None = None) -> None:
        self.then = then

    def __call__(self, worker_id: int) -> None:
        for name in ("SIGINT", "SIGTERM", "SIGTTOU", "SIGTTIN"):
            signum = getattr(signal, name, None)
            if signum is not None:  # SIGTTOU/SIGTTIN: POSIX only
                signal.signal(signum, signal.SIG_IGN)
        if hasattr(os, "setpgrp"):  # POSIX
            os.setpgrp()
        if int(os.environ.get("PL_SEED_WORKERS", 0)):
            from lightning.fabric.utilities.seed import pl_worker_init_function

            pl_worker_init_function(worker_id)  # the rank: Lightning's, as inherited by the worker
        if self.then is not None:
            self.then(worker_id)


_ENDING_WORKERS_AT_EXIT = False
EXIT_GRACE_SECONDS = 1.0  # for daemonic children to end on SIGTERM before SIGKILL


def end_workers_at_exit() -> None:
    """At exit, end the daemonic child processes still running, with SIGKILL for those that ignore SIGTERM.

    ``multiprocessing``'s own exit handler sends SIGTERM to its daemonic children (the
    ``DataLoader`` workers among them) and then waits for each, forever for a worker that
    ignores SIGTERM (see :class:`WorkerInit`). This handler does the same first, but sends
    SIGKILL to those still running after :data:`EXIT_GRACE_SECONDS`. Registered (once) with
    ``atexit`` when a loader with workers is set up: ``atexit`` runs the newest handler first,
    so this runs before ``multiprocessing``'s.
    """
    global _ENDING_WORKERS_AT_EXIT
    if _ENDING_WORKERS_AT_EXIT:
        return
    import atexit
    import importlib

    importlib.import_module("multiprocessing.util")  # registers its exit handler now, so that ours runs before it
    atexit.register(_end_daemonic_children)
    _ENDING_WORKERS_AT_EXIT = True


def _end_daemonic_children() -> None:
    import multiprocessing
    import time

    children = [child for child in multiprocessing.active_children() if child.daemon]
    for child in children:
        child.terminate()
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            child.kill()
            child.join(timeout=5)


class GracefulStop(Callback):
    """Stops training at a step boundary after a signal, with ``last.ckpt`` written there.

    Args:
        last_checkpoint: the run's ``LastCheckpoint`` (``None``: checkpointing is off, and
            the run stops without saving).
        watch: the signal handlers (default: the process's).
    """

    def __init__(self, last_checkpoint: Any = None, watch: SignalWatch = WATCH) -> None:
        self.last_checkpoint = last_checkpoint
        self.watch = watch

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.watch.trainer = trainer
        self.watch.training = True
        self.watch.install()  # after Lightning's own SIGTERM handler, which would exit 0 mid-validation

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.watch.raise_swallowed()  # a second signal, swallowed by a finalizer in this step: at once, not at the step
        if gradients_accumulating(trainer):
            return  # the step ends a few batches later: a checkpoint now would lose its gradients
        if not self.watch.agreed(trainer):
            return
        if self.last_checkpoint is None:
            raise RunInterrupted(self.watch.signum or signal.SIGTERM, step=trainer.global_step)
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the end of the epoch: LastCheckpoint's epoch-end write is forced (write_due)
        path = str(Path(self.last_checkpoint.dirpath) / "last.ckpt")
        trainer.save_checkpoint(path, weights_only=False)  # where a checkpoint every N steps would be taken: resumes exactly
        raise RunInterrupted(self.watch.signum or signal.SIGTERM, saved=path, step=trainer.global_step)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._stop_if_saved(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_saved(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_saved(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_saved(trainer)
        self.watch.training = False

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.watch.training = False

    def _stop_if_saved(self, trainer: Trainer) -> None:
        # Set in every process alike (the first process decided that the write was for a signal).
        saved = getattr(self.last_checkpoint, "saved_for_interrupt", None)
        if saved:
            raise RunInterrupted(self.watch.signum or signal.SIGTERM, saved=saved, step=trainer.global_step)


class AfterEvaluationLogged(Callback):
    """Once a test's (or ``validate``'s) metrics are logged, a signal is noted, not obeyed: the work is done and on record.

    Lightning logs the evaluation's epoch metrics (``metrics.csv`` is written at once) just
    before the ``on_test_end`` (``on_validation_end``) hooks. A signal after that but before the
    command's end stopped it at once: the test after fit was recorded as "interrupted during the
    test", with the advice to test again, beside its complete row, and ``test`` or ``validate``
    of a run removed its complete evaluation. The CLI puts this callback first (after
    :class:`SwallowedStops`), so that it runs before any other such hook. The validation of
    each epoch of ``fit`` is not the end of the work.

    Args:
        watch: the signal handlers (default: the process's).
    """

    def __init__(self, watch: SignalWatch = WATCH) -> None:
        self.watch = watch

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.watch.finishing = True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self.watch.finishing = True


class SwallowedStops(Callback):
    """Raise, at the next batch or stage boundary, a stop that a finalizer swallowed (see :meth:`SignalWatch.raise_swallowed`).

    The CLI puts it first, so that the stop is raised before any other callback's hook acts on
    the batch (GracefulStop's checkpoint at the step) or on the end of an evaluation
    (AfterEvaluationLogged, after which a signal is noted, not obeyed); at an evaluation's epoch
    end it comes before the evaluation's metrics are logged.

    Args:
        watch: the signal handlers (default: the process's).
    """

    def __init__(self, watch: SignalWatch = WATCH) -> None:
        self.watch = watch

    def _raise(self, *args: Any, **kwargs: Any) -> None:
        self.watch.raise_swallowed()

    on_fit_start = on_sanity_check_end = on_train_start = on_train_end = _raise
    on_train_batch_start = on_train_batch_end = on_train_epoch_end = _raise
    on_validation_batch_end = on_validation_epoch_end = on_validation_end = _raise
    on_test_start = on_test_batch_end = on_test_epoch_end = on_test_end = _raise
    on_predict_start = on_predict_batch_end = on_predict_epoch_end = on_predict_end = _raise


def _read_at_start(path: str) -> bytes:
    """The first bytes of ``path``, read at offset 0 whatever the file's position.

    The study's count is ``/dev/fd/<fd>``, a descriptor the fit shares with its study: where
    opening it duplicates the descriptor (macOS), a plain read would move their shared position
    on, and the next read would find nothing.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, 64, 0)
    finally:
        os.close(fd)
