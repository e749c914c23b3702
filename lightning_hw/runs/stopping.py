"""Why a ``fit`` that ended well stopped where it did, when that was not its last epoch.

Lightning ends training quietly when ``max_time`` runs out, early stopping fires or
``max_steps`` is reached (its own lines are info logs, which the quiet CLI hides), so a run
cut short by its time limit read exactly like one that trained all its epochs. The reason
goes into ``status.json`` (``stopped_by``) and onto the screen.
"""

from __future__ import annotations

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping, Timer


def stop_reason(trainer: Trainer) -> tuple[str, str | None] | None:
    """What ended training before ``max_epochs``, or ``None`` when it trained them all.

    Early stopping is always named; a time limit and ``max_steps`` only when they came
    before the last epoch's last batch (with ``max_epochs: -1``, ``max_steps`` is the run's
    planned length).

    Args:
        trainer: the trainer after ``fit`` returned.

    Returns:
        The reason, and the ``--trainer`` options a resume raises to train on (``None`` when
        raising a limit would not train on: early stopping). Lightning counts an epoch cut short
        as ended, so a run cut in its last epoch must also raise ``max_epochs``.
    """
    from lightning_hw._compat.lightning import epoch_batches_done

    max_steps, max_epochs = trainer.max_steps, trainer.max_epochs
    bounded = max_epochs is not None and max_epochs > 0
    epochs_left = bounded and trainer.current_epoch < max_epochs
    batches = trainer.num_training_batches
    last_cut = bounded and not epochs_left and batches != float("inf") and epoch_batches_done(trainer) < batches
    before_end = not bounded or epochs_left or last_cut  # something other than max_epochs ended the run
    more_epochs = " --trainer.max_epochs <more>" if last_cut else ""
    for callback in trainer.callbacks:
        expired = isinstance(callback, Timer) and callback.time_remaining() is not None and callback.time_remaining() <= 0
        if expired and before_end:
            return f"its time limit (--trainer.max_time {_duration(callback)}) was reached", f"--trainer.max_time <more>{more_epochs}"
    for callback in trainer.callbacks:
        # stopped_epoch is the epoch it stopped in; one restored from an earlier attempt's checkpoint is older.
        stopped_now = isinstance(callback, EarlyStopping) and callback.stopped_epoch == trainer.current_epoch - 1
        if stopped_now and callback.stopping_reason_message:
            # Lightning's own words, without its "Signaling Trainer to stop." (it has stopped).
            reason = callback.stopping_reason_message.replace(" Signaling Trainer to stop.", "").rstrip(".")
            return f"early stopping: {reason[0].lower()}{reason[1:]}", None
    if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps and bounded and before_end:
        return f"--trainer.max_steps {max_steps} was reached before max_epochs {max_epochs}", f"--trainer.max_steps <more>{more_epochs}"
    if (epochs_left or last_cut) and trainer.should_stop:
        return "a callback asked it to stop (trainer.should_stop)", None
    return None


def _duration(timer: Timer) -> str:
    """The limit as ``days:hours:minutes:seconds``, as ``--trainer.max_time`` takes it."""
    seconds = int(round(timer.time_elapsed() + (timer.time_remaining() or 0.0)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{seconds:02d}"
