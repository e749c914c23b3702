"""Exact resumption: a run killed mid-epoch and resumed ends where the uninterrupted run ends.

Lightning restores weights, optimizer, loop counters and (mid-epoch) stateful train
loaders. What it does not restore, which this callback saves in the checkpoint and puts back:

1. The global random state (torch, numpy, Python): dropout and augmentation draw from it.
2. The half-accumulated epoch metrics: ``self.log(..., on_epoch=True)`` sums and torchmetrics
   states of the interrupted epoch. Without them the resumed epoch's ``train/acc`` would
   cover only the batches after the restart. Under DDP every process holds the states of its
   own share: they are merged into one in the checkpoint, which the first process takes back
   (the others start from zero; the metrics sum the processes' states when computed).
3. The end of an epoch cut short by ``limit_train_batches``, ``max_steps``, ``max_time`` or a
   callback's ``should_stop``: the loader never sees its iterator run out, so it is told
   (:meth:`TensorBatchLoader.finish_epoch`) before the epoch's checkpoint is written (Lightning
   resumes such an epoch with the next one, so the loader must not resume inside it).
4. The train loader's state after an end-of-epoch checkpoint, which Lightning skips.
   A checkpoint without one (a streamed folder's, written before 2026-12-02) is resumed
   with a warning that the training order starts over: Lightning's own warning is silenced
   by the loader's ``state_dict`` method, although there was no state to give it.
5. Nothing is restored when the run starts fresh (no checkpoint), so the callback is
   harmless in every run and the CLI adds it to all of them.

``metrics.csv`` is the run's (:class:`lightning_hw.runs.MetricsFile`): it is never deleted,
and a resumed run drops the rows it logs again once its first step has run.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import Metric

from lightning_hw._compat.lightning import (
    epoch_results,
    epochs_trained,
    load_pending_loader_states,
    start_next_epoch_whole,
)
from lightning_hw._compat.torchmetrics import restore_update_count
from lightning_hw.errors import ConfigError, LightningHWWarning


def rng_state() -> dict[str, Any]:
    """The global random state as plain tensors and numbers (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        # One tensor, not 625 ints: each pickled int costs a checkpoint a callback into torch.save.
        "python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss},
        # Without CUDA initialised no CUDA random number was drawn; and is_available() probes
        # the driver on every call (~0.6 ms on a machine without a GPU).
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    py_state = p["state"].tolist() if isinstance(p["state"], torch.Tensor) else p["state"]  # a list before 2026-11-22
    random.setstate((p["version"], tuple(py_state), p["gauss"]))
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _train_loaders(trainer: Trainer) -> list[Any]:
    loaders = trainer.train_dataloader
    if isinstance(loaders, dict):
        return list(loaders.values())
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


def _finish_epoch(trainer: Trainer) -> None:
    """Tell the train loaders their epoch is over although they did not run out (see 3. above)."""
    for loader in _train_loaders(trainer):
        if hasattr(loader, "finish_epoch"):
            loader.finish_epoch()


def _check_epochs_left(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Refuse to resume a run past ``max_epochs``: it would train nothing and record the smaller number.

    Lightning refuses only a checkpoint whose epoch exceeds ``max_epochs``, so a run that
    trained N epochs resumed with ``max_epochs`` N-1 went on to "finish" with nothing
    trained, its config saying N-1. Called before anything of the run is rewritten.
    """
    trained = epochs_trained(checkpoint)
    limit = trainer.max_epochs
    if trainer.state.fn != TrainerFn.FITTING or trained is None or limit is None or limit == -1 or trained <= limit:
        return
    raise ConfigError(
        f"cannot resume from {trainer.ckpt_path}: its run has trained {trained} epochs, more than "
        f"--trainer.max_epochs {limit}; give --trainer.max_epochs {trained} or more (or train a new run)"
    )


def _check_processes(trainer: Trainer, checkpoint: dict[str, Any], saved: dict[str, Any]) -> None:
    """Refuse to continue an epoch on another number of processes than the one that began it.

    The processes deal an epoch's order among themselves (process ``r`` of ``n`` takes every
    ``n``-th sample) and the checkpoint counts the batches each had drawn, so on another
    number the rest of the epoch repeated some samples and left others out (2 processes
    resumed on 1), or ended at once without its validation (1 resumed on 2). An epoch's end
    is a clean cut: resuming from there on any number of processes is exact.

    Args:
        trainer: the trainer resuming.
        checkpoint: the checkpoint it loads.
        saved: this callback's state in it.
    """
    before = saved.get("processes")
    if trainer.state.fn != TrainerFn.FITTING or before is None or before == trainer.world_size:
        return
    epoch = int(checkpoint.get("epoch", 0))
    raise ConfigError(
        f"cannot resume {trainer.ckpt_path} on {trainer.world_size} process(es): it was taken inside epoch {epoch} by "
        f"{before}, which deal that epoch's samples among themselves; resume it on {before} as before with "
        f"--trainer.max_epochs {epoch + 1} to end that epoch, then on {trainer.world_size} with the epochs you want"
    )


def _check_batch_size(trainer: Trainer) -> None:
    """Refuse to continue an epoch with another batch size than the one that began it.

    The loaders count their position in batches, so the rest of the epoch would skip samples
    (5 batches of 64 resumed as 5 of 100: samples 320-499 never seen) or repeat them, while
    ``config.yaml`` said the run trained at the new size. Called before the first batch is drawn.
    """
    for loader in _train_loaders(trainer):
        order = getattr(loader, "order", None)
        began = order.resumed_batch_size() if hasattr(order, "resumed_batch_size") else None
        if began is not None:
            epoch = trainer.current_epoch
            raise ConfigError(
                f"cannot resume {trainer.ckpt_path} with batch size {order.batch_size}: it was taken inside epoch "
                f"{epoch}, whose batches of {began} are counted in it; resume with batch size {began} as before and "
                f"--trainer.max_epochs {epoch + 1} to end that epoch, then with {order.batch_size} and the epochs you want"
            )


class ResumeState(Callback):
    """Save and restore what Lightning leaves out of a checkpoint, so a resumed run is exact."""

    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._loaded: dict[str, Any] = {}
        self._loader_states_saved = True  # False: the resumed checkpoint has none (see 4. above)

    # -- saving --------------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._loaded.get("results"):
            self._merge_results(trainer, self._loaded.pop("results"))
        ends_run = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        if batch_idx + 1 >= trainer.num_training_batches or ends_run:
            # Runs before ModelCheckpoint (Lightning orders checkpoint callbacks last), and before
            # a validation that follows this batch saves one.
            _finish_epoch(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # An epoch ended early (max_steps, max_time, a callback's should_stop) is over for Lightning:
        # a resume goes on with the next epoch, so the loaders' state must not resume inside this one.
        _finish_epoch(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # Everything logged so far reaches the disk before the checkpoint does.
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.save()

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        state: dict[str, Any] = {"rng": rng_state()}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        epochs = trainer.fit_loop.epoch_progress.current
        # The resumed run continues this epoch, unless max_steps/max_time cut it (Lightning counts it as ended).
        if 0 < progress.ready < trainer.num_training_batches and epochs.processed == epochs.completed:
            state["metrics"] = _merged_over_processes(trainer, {
                name: {"update_count": m.update_count, "state": {k: _detach(v) for k, v in m.metric_state.items()}}
                for name, m in trainer.lightning_module.named_modules()
                if isinstance(m, Metric) and m.update_count > 0
            })
            state["metrics_merged"] = True  # the states of every process: the first process alone takes them back
            state["processes"] = trainer.world_size  # the loaders' positions count this many processes' batches
            state["results"] = {
                key: {"value": item.value.detach().cpu(), "count": _detach(getattr(item, "cumulated_batch_size", None))}
                for key, item in epoch_results(trainer).items()
                if item.is_tensor and item.meta.on_epoch and not item.has_reset
            }
        return state

    # -- restoring -----------------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict)

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        _check_epochs_left(trainer, checkpoint)
        _check_processes(trainer, checkpoint, checkpoint.get("callbacks", {}).get(self.state_key, {}))
        start_next_epoch_whole(checkpoint)  # Lightning restores the loops after the callbacks: still in time
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
        self._loader_states_saved = "loops" not in checkpoint or bool(fit_loop.get("combined_loader"))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning loads the train loaders' states only when it resumes inside an epoch
        # (FitLoop.restarting is False after an end-of-epoch checkpoint), so after an
        # end-of-epoch checkpoint the shuffle order would start over. The loaders have not
        # drawn a batch yet, so loading the state here is still in time.
        load_pending_loader_states(trainer)
        _check_batch_size(trainer)
        if not self._loader_states_saved and any(
            hasattr(loader, "load_state_dict") for loader in _train_loaders(trainer)
        ):
            rank_zero_warn(
                f"the checkpoint holds no position in the training order (written by an older lightning-hw): "
                f"the order starts over at step {trainer.global_step}, so this run will not end exactly as an "
                f"uninterrupted one would; its later checkpoints resume exactly",
                category=LightningHWWarning,
            )
            self._loader_states_saved = True
        # Only now: the sanity check and data set-up between the restore and this hook may draw
        # random numbers that the uninterrupted run did not draw at this point.
        if "rng" in self._loaded:
            set_rng_state(self._loaded.pop("rng"))
        saved_metrics = self._loaded.pop("metrics", {})
        if self._loaded.pop("metrics_merged", False) and not trainer.is_global_zero:
            saved_metrics = {}  # rank 0 took every process's share (of any number of processes)
        for name, saved in saved_metrics.items():
            metric = pl_module.get_submodule(name)
            for key, value in saved["state"].items():
                setattr(metric, key, _to(value, pl_module.device))
            restore_update_count(metric, saved["update_count"])

    def _merge_results(self, trainer: Trainer, saved: dict[str, Any]) -> None:
        """Add the interrupted epoch's running sums to those of the first resumed batch.

        The entries exist only once the task has logged in this process, hence after the
        first batch; addition commutes exactly, so the epoch means match to the bit.
        """
        results = epoch_results(trainer)
        for key, old in saved.items():
            item = results.get(key)
            if item is None:
                continue
            value = old["value"].to(item.value.device)
            if item.meta.is_mean_reduction:
                item.value = item.value + value
                item.cumulated_batch_size = item.cumulated_batch_size + old["count"].to(item.value.device)
            elif item.meta.is_sum_reduction:
                item.value = item.value + value
            else:  # max or min
                item.value = item.meta.reduce_fx(item.value, value)


def _merged_over_processes(trainer: Trainer, metrics: dict[str, Any]) -> dict[str, Any]:
    """The saved metric states of every DDP process merged into one per metric (torchmetrics' ``merge_state``).

    Lightning saves the checkpoint of the first process only, so its states alone reached
    the file: a resumed DDP run lost the other processes' share of the interrupted epoch
    (and every process took back the first one's). A metric that cannot merge states
    (``full_state_update``) keeps the first process's.

    Args:
        trainer: the trainer (every process calls this, when the checkpoint is taken).
        metrics: this process's ``{name: {"update_count", "state"}}``.
    """
    if trainer.world_size == 1:
        return metrics
    import torch.distributed as dist

    shares: list[dict[str, Any] | None] = [None] * trainer.world_size
    dist.all_gather_object(shares, metrics)
    merged = {}
    for name in dict.fromkeys(name for share in shares for name in share):
        total = copy.deepcopy(trainer.lightning_module.get_submodule(name)).cpu()
        total.reset()
        try:
            for share in shares:
                if name in share:
                    total.merge_state(share[name]["state"])
        except (RuntimeError, TypeError):
            if name in metrics:
                merged[name] = metrics[name]
            continue
        count = sum(share[name]["update_count"] for share in shares if name in share)
        merged[name] = {"update_count": count, "state": {k: _detach(v) for k, v in total.metric_state.items()}}
    return merged


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list):
        return [_detach(v) for v in value]
    return value


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value
