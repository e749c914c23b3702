"""Lightning internals lightning-hw relies on (each checked by tests/test_compat.py).

Private methods that lightning-hw overrides are given public names here: a subclass of
:class:`CheckpointHooks` or :class:`CLIHooks` overrides ``write_checkpoint`` or
``run_subcommand``, and only this module knows which private method Lightning calls.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

#: the attribute Lightning sets on a LightningModule before and after every hook it calls
#: (about 40 times per training step); see ``Task.__setattr__``
HOOK_NAME_ATTRIBUTE = "_current_fx_name"


# -- checkpoints ---------------------------------------------------------------------------------


class CheckpointHooks(ModelCheckpoint):
    """``ModelCheckpoint`` with its save, removal and top-k steps as overridable public methods.

    The deferred best checkpoint and the throttled ``last.ckpt`` change *when* a file is
    written, which ModelCheckpoint only exposes through private methods.
    """

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        self.write_checkpoint(trainer, filepath)

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        self.delete_checkpoint(trainer, filepath)

    def _save_topk_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Any]) -> None:
        self.save_top_k_checkpoint(trainer, monitor_candidates)

    def write_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        """Write the trainer's checkpoint to ``filepath`` now (ModelCheckpoint's save)."""
        super()._save_checkpoint(trainer, filepath)

    def delete_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        """Remove a checkpoint file that a better one replaced."""
        super()._remove_checkpoint(trainer, filepath)

    def save_top_k_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Any]) -> None:
        """Decide whether this step's checkpoint is among the top k, and save it if so."""
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def saves_on_train_epoch_end(self, trainer: Trainer) -> bool:
        """Whether this callback saves at the end of the training epoch (rather than after validation)."""
        return self._should_save_on_train_epoch_end(trainer)

    @property
    def last_saved_step(self) -> int:
        """The global step of this callback's last save (written or marked); ``0`` before any."""
        return self._last_global_step_saved

    def mark_saved(self, trainer: Trainer, filepath: str) -> None:
        """Record a save taken without writing (so the same step is not saved twice), as a write would."""
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath


def dump_checkpoint(trainer: Trainer, weights_only: bool = False) -> dict[str, Any]:
    """The dict ``trainer.save_checkpoint`` would write, without writing it (every process must call it)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only)  # noqa: SLF001


# -- loops ---------------------------------------------------------------------------------------


def epochs_trained(checkpoint: dict[str, Any]) -> int | None:
    """How many epochs a checkpoint's run had trained through (``None`` for a file without loop state).

    The checkpoint's ``epoch`` does not say it: a ``last.ckpt`` written at the end of epoch N-1
    holds ``epoch`` N-1 and also one written inside that epoch; the fit loop's processed epochs do.
    """
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    processed = progress.get("processed")
    return int(processed) if processed is not None else None


def epoch_cut_short(checkpoint: dict[str, Any]) -> bool:
    """Whether a checkpoint was written after ``max_steps``/``max_time`` cut its epoch short.

    Lightning then counts that epoch as processed (the resume begins the next one) while its
    epoch loop keeps the batches done (``is_last_batch`` false): a checkpoint taken inside an
    epoch has processed no more epochs than it completed, one taken at an epoch's end has
    ``is_last_batch`` true.
    """
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs = fit_loop.get("epoch_progress", {}).get("current", {})
    batches = fit_loop.get("epoch_loop.batch_progress", {})
    return epochs.get("processed", 0) > epochs.get("completed", 0) and batches.get("is_last_batch") is False


def start_next_epoch_whole(checkpoint: dict[str, Any]) -> None:
    """Make a resume from an epoch cut short (:func:`epoch_cut_short`) train the next epoch whole.

    Such a checkpoint holds the cut epoch as processed but not completed, and its batch count.
    Resumed with ``max_steps`` given (the command the stop line prints), Lightning restarts
    "on the epoch's end" from these counters: the next epoch ran only the batches the cut one
    had left, was logged under the cut epoch's number, and the counters went wrong (a run of
    3 epochs cut at step 5, 20 batches an epoch, ended at step 40, or at 45 without the final
    ``last.ckpt``). The counters are set to those of a finished epoch: the cut epoch completed,
    no batch of the next one begun (the totals of batches stay).
    """
    if not epoch_cut_short(checkpoint):
        return
    fit_loop = checkpoint["loops"]["fit_loop"]
    for counts in fit_loop["epoch_progress"].values():
        if isinstance(counts, dict) and "processed" in counts:
            counts["completed"] = counts["processed"]
    current = fit_loop["epoch_loop.batch_progress"].get("current")
    if isinstance(current, dict):
        for key in current:
            current[key] = 0


def logged_step(checkpoint: dict[str, Any]) -> int | None:
    """The step a checkpoint's run logged its rows at (``None`` for a file without loop state).

    Not ``global_step``, which counts the steps of every optimizer (manual optimization with
    several optimizers) where the rows count batches that stepped.
    """
    state = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    step = state.get("_batches_that_stepped")
    return int(step) if step is not None else None


def batches_that_stepped(trainer: Trainer) -> int:
    """The step Lightning writes into logged rows (optimizer steps so far; restored on resume)."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)  # noqa: SLF001


def set_logged_position(trainer: Trainer, epoch: int, step: int) -> None:
    """Set the epoch and step Lightning writes into logged rows (``epoch``, ``step``, W&B's ``trainer/global_step``).

    For an evaluation of a checkpoint: ``validate``/``test`` restore only the weights, so the
    counters would stay 0.
    """
    trainer.fit_loop.epoch_progress.current.completed = epoch
    trainer.fit_loop.epoch_loop._batches_that_stepped = step  # noqa: SLF001


@contextlib.contextmanager
def logged_position(trainer: Trainer, position: tuple[int, int] | None) -> Iterator[None]:
    """Log rows at ``position`` (``(epoch, step)``) within the block, then put the fit's counters back.

    For the test after ``fit``: it scores the best checkpoint, whose epoch is not the last
    one; the counters are restored because ``status.json`` records where the training ended.
    """
    if position is None:
        yield
        return
    progress = trainer.fit_loop.epoch_progress.current
    before = progress.completed, trainer.fit_loop.epoch_loop._batches_that_stepped  # noqa: SLF001
    set_logged_position(trainer, *position)
    try:
        yield
    finally:
        set_logged_position(trainer, *before)


def epoch_results(trainer: Trainer) -> Any:
    """The running sums of ``self.log(..., on_epoch=True)`` in the training epoch (not checkpointed by Lightning)."""
    return trainer.fit_loop.epoch_loop._results  # noqa: SLF001


def validation_follows(trainer: Trainer) -> bool:
    """Whether the training loop validates right after the current batch (called from ``on_train_batch_end``)."""
    epoch_loop = trainer.fit_loop.epoch_loop
    return bool(epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher))  # noqa: SLF001


def gradients_accumulating(trainer: Trainer) -> bool:
    """Whether the batches drawn so far end inside an optimizer step (``accumulate_grad_batches``).

    A checkpoint holds no accumulated gradients, so one taken now would resume that step
    without the batches already in it.
    """
    ready = trainer.fit_loop.epoch_loop.batch_progress.current.ready
    return ready % trainer.accumulate_grad_batches != 0 and ready < trainer.num_training_batches


def epoch_batches_done(trainer: Trainer) -> int:
    """Training batches completed in the current (after ``fit``: the last) epoch, restored ones included."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)


def epoch_start_skipped(trainer: Trainer) -> bool:
    """Whether a resumed fit goes on inside its current epoch, so Lightning skips its ``on_train_epoch_start``.

    Lightning calls that hook only when an epoch starts; a fit resumed from a checkpoint taken
    inside an epoch (or at its end, before validation) continues it without the hook. Valid
    from ``on_train_start`` on (the loop sets its restart stage just before).
    """
    fit_loop = trainer.fit_loop
    return bool(fit_loop.restarted_mid_epoch or fit_loop.restarted_on_epoch_end)


def load_pending_loader_states(trainer: Trainer) -> None:
    """Give the train loaders the states a checkpoint holds, which Lightning loads only mid-epoch.

    After an end-of-epoch checkpoint Lightning does not restore the loaders (the shuffle
    order would start over); called before the first batch, this restores them.
    """
    fit_loop = trainer.fit_loop
    pending = getattr(fit_loop, "_combined_loader_states_to_load", None)
    combined = getattr(fit_loop, "_combined_loader", None)
    if pending and combined is not None:
        combined._load_state_dicts(pending)  # noqa: SLF001
        fit_loop._combined_loader_states_to_load = []  # noqa: SLF001


class WorkersEndWithTheLoop:
    """Mixin for a loader that wraps a ``DataLoader`` (``self.loader``): Lightning ends its workers as a plain one's.

    When a fit (or an evaluation) ends, and when it reloads its loaders, Lightning's
    ``CombinedLoader.reset`` shuts down the worker processes of each loader it holds, by
    reaching for the loader's ``_iterator`` (``_shutdown_workers_and_reset_iterator``). A
    wrapper has none, so its persistent workers outlived the fit: in a notebook or a test
    until the wrapper was garbage collected, where each worker's join then waited out
    PyTorch's 5 s timeout. This gives the wrapper the inner loader's ``_iterator``.
    """

    loader: Any

    @property
    def _iterator(self) -> Any:
        return self.loader._iterator  # noqa: SLF001

    @_iterator.setter
    def _iterator(self, iterator: Any) -> None:
        self.loader._iterator = iterator  # noqa: SLF001


def end_loader_workers(trainer: Trainer | None) -> None:
    """Shut down the DataLoader workers of every loop of ``trainer``, persistent ones included.

    When a fit fails, Lightning tears down only the loop that was running (``Trainer._teardown``
    takes ``_active_loop``): an error in validation left the training loader's persistent
    workers running. After an in-process command (a notebook, a test) they lived on until the
    trainer was garbage collected, where each worker's join waited out PyTorch's 5 s.
    """
    if trainer is None:
        return
    for loop in (trainer.fit_loop, trainer.validate_loop, trainer.test_loop, trainer.predict_loop):
        loop.teardown()  # each tears down its data fetcher only if it still has one: safe after a finished loop


def process_start_method(trainer: Trainer) -> str | None:
    """How the strategy starts its processes: ``popen`` (a new program each), ``spawn``, ``fork``, ``forkserver``.

    ``None`` for strategies that start none (one device). ``spawn`` and ``forkserver`` pickle
    the trainer, task and datamodule to hand them to the new processes.
    """
    return getattr(trainer.strategy, "_start_method", None)  # noqa: SLF001


@contextlib.contextmanager
def child_failures_handled_by(handler: Callable[[int], Callable[[], None] | None], period: float = 5.0) -> Iterator[None]:
    """Within the block, ``handler`` decides first how the process ends when a DDP process Lightning started fails.

    Lightning's launcher (``popen``: each other process a new program) starts a thread in the
    first process, ``_ChildProcessObserver``, that looks at the others every 5 s and, once one
    has exited with a non-zero code, SIGKILLs the first process and every other: the first one
    may wait for it for good (in the rendezvous, or a collective call). Killed so, it can undo
    nothing: a run stopped by Ctrl-C before training left its directory behind, exit 137.

    Here the thread asks ``handler(returncode)`` first (the code of the first failed process):
    it returns ``None`` for Lightning's way, or a function that ends this process. The thread
    then ends the other processes still running (as Lightning would; they write nothing) and
    calls that function, which ends this process itself, from the thread, or returns to let
    the main thread end it.

    Args:
        handler: ``returncode -> None | function``; called from the observer thread.
        period: seconds between two looks at the processes. Lightning's 5 s by default: they are
            also the time the first process has to end by itself after another failed (the same
            error in every process), before Lightning's way kills it.
    """
    from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
    from lightning.pytorch.strategies.launchers import subprocess_script

    class Observer(_ChildProcessObserver):
        def _run(self) -> bool:  # one look at the processes; True: the observer's work is over
            children = self._child_processes
            failed = next((p.returncode for p in children if p.poll()), None)
            ending = None if failed is None else handler(failed)
            if ending is None:  # none failed, or Lightning's way (its line "Forcefully terminating ...", SIGKILL)
                return super()._run()
            for child in children:
                if child.poll() is None:
                    child.send_signal(self._termination_signal)
            ending()
            return True

    def launch_observer(child_processes: list[Any]) -> None:
        Observer(main_pid=os.getpid(), child_processes=child_processes, sleep_period=period).start()

    lightning_launch = subprocess_script._launch_process_observer  # noqa: SLF001
    subprocess_script._launch_process_observer = launch_observer  # noqa: SLF001
    try:
        yield
    finally:
        subprocess_script._launch_process_observer = lightning_launch  # noqa: SLF001


@contextlib.contextmanager
def lr_finder_progress_bar(enabled: bool) -> Iterator[None]:
    """Show the lr finder's own progress bar only when ``enabled``.

    ``Tuner.lr_find`` replaces the trainer's callbacks with its ``_LRCallback``, whose tqdm bar
    is always on (``progress_bar_refresh_rate=1``), whatever ``enable_progress_bar`` says.
    """
    from lightning.pytorch.tuner import lr_finder

    if enabled:
        yield
        return
    shown = lr_finder.tqdm
    lr_finder.tqdm = functools.partial(shown, disable=True)
    try:
        yield
    finally:
        lr_finder.tqdm = shown


# -- fine-tuning ---------------------------------------------------------------------------------


def finetuning_restarting(callback: Any) -> bool:
    """Whether a ``BaseFinetuning`` callback was given a checkpoint's state, not yet restored.

    Lightning sets ``_restarting`` as it loads the state, and puts the optimizers' parameter
    groups back at the callback's ``on_fit_start`` (then clears it).
    """
    return bool(callback._restarting)


def finetuning_groups(state: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """The optimizers' parameter groups, by parameter name, in a ``BaseFinetuning`` state.

    Args:
        state: the callback's ``state_dict()``, or its entry in a checkpoint's ``callbacks``.

    Returns:
        ``{optimizer index: [{"params": [names], "lr": ..., ...}, ...]}``; empty for no state.
    """
    return (state or {}).get("internal_optimizer_metadata") or {}


# -- the CLI -------------------------------------------------------------------------------------


class CLIHooks(LightningCLI):
    """``LightningCLI`` with its checkpoint-settings and run steps as overridable public methods."""

    def _parse_ckpt_path(self) -> None:
        self.load_checkpoint_settings()

    def _run_subcommand(self, subcommand: str) -> None:
        self.run_subcommand(subcommand)

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        self.add_configured_optimizer(subcommand)

    def load_checkpoint_settings(self) -> None:
        """Read the task's settings from ``--ckpt_path`` into the config (LightningCLI's default)."""
        super()._parse_ckpt_path()

    def run_subcommand(self, subcommand: str) -> None:
        """Run ``before_<subcommand>``, the trainer's method and ``after_<subcommand>`` (LightningCLI's default)."""
        super()._run_subcommand(subcommand)

    def add_configured_optimizer(self, subcommand: str | None) -> None:
        """Build the config's ``optimizer`` and ``lr_scheduler`` and make them the task's (LightningCLI's default)."""
        super()._add_configure_optimizers_method_to_model(subcommand)

    @property
    def subcommand_parsers(self) -> dict[str, LightningArgumentParser]:
        """The parser of each subcommand (``fit``, ``validate``, ``test``, ``predict``)."""
        return self._subcommand_parsers  # noqa: SLF001

    def parser_of(self, subcommand: str | None) -> LightningArgumentParser:
        """The parser of ``subcommand``, or the main parser without one."""
        return self._parser(subcommand)  # noqa: SLF001


def keyboard_interrupted(error: BaseException) -> bool:
    """Whether ``error`` is a ``KeyboardInterrupt``, or the ``sys.exit(1)`` Lightning turns one into.

    A ``KeyboardInterrupt`` inside ``Trainer.fit``/``validate``/``test``/``predict`` (raised by a
    callback or other code: a SIGINT goes to our handler while a command runs) is caught by
    Lightning's ``_call_and_handle_interrupt``, which tears down and calls ``sys.exit(1)``
    within its ``except KeyboardInterrupt``: the ``SystemExit`` keeps the interrupt as its context.
    """
    if isinstance(error, KeyboardInterrupt):
        return True
    return isinstance(error, SystemExit) and error.code == 1 and isinstance(error.__context__, KeyboardInterrupt)


# -- loggers -------------------------------------------------------------------------------------


def drop_wandb_anonymous(logger: Any) -> None:
    """Lightning's ``WandbLogger`` always passes ``anonymous`` to ``wandb.init``, which wandb >= 0.19 warns about."""
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)


def started_wandb_run(logger: Any) -> Any | None:
    """The W&B run a ``WandbLogger`` has started, or ``None`` (reading ``logger.experiment`` would start one)."""
    experiment = getattr(logger, "_experiment", None)
    return experiment if experiment is not None and hasattr(experiment, "finish") else None
