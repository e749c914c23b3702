"""``lr-find``: Lightning's learning-rate range test on a config's own optimizer and data.

    python -m lightning_hw lr-find --config configs/quickstart.yaml [--write quickstart_lr.yaml]

The config is parsed by the same :class:`~lightning_hw.cli.parser.HWCLI` parser as ``fit``
(every fit option works), the task, data and optimizer are built exactly as for ``fit``
(LightningCLI's optimizer from ``optimizer:``, else the task's ``configure_optimizers``),
and Lightning's finder (``Tuner.lr_find``) then sets the lr of every parameter group of
*that* optimizer, one training step per lr, from ``min_lr`` to ``max_lr``. So the sweep
covers the lr training uses, whichever key holds it; the finder's own ``update_attr`` (a
``lr`` attribute of the model, which a CLI-built optimizer never reads again:
Lightning-AI/pytorch-lightning#16787) is not used. The suggestion is written back where the
config keeps its lr (:func:`lr_keys`).

The finder replaces the config's lr scheduler for the sweep and restores the weights
afterwards. A scheduler that sets the lr itself (``OneCycleLR``, ``CyclicLR``) is refused:
an optimizer lr found here would not be the one that trains.

Files, in a directory of its own (never a training run's):

    runs/<group>/lr-find-<time>/
      lr_find.png           loss against lr, the suggestion marked
      lr_find.csv           the sweep's points: lr, loss (Lightning's smoothed training loss)
      lr_find.json          the suggestion, the sweep's settings, where the lr lives in the config
      config-lr-find.yaml   the resolved config the sweep ran with
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import io
import json
import logging
import math
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_hw._compat.lightning import lr_finder_progress_bar
from lightning_hw.atomic import atomic_open
from lightning_hw.checkpoints import SafeCheckpointIO
from lightning_hw.cli.commands import program_name
from lightning_hw.cli.parser import HWCLI, check_fine_tuning, config_files_of
from lightning_hw.errors import ConfigError, TrainingError, UserError
from lightning_hw.runs import WATCH, RunInterrupted
from lightning_hw.runs import naming
from lightning_hw.runs.files import check_outside_records, holds_record, is_sweep_record, make_unique_dir, record_kind
from lightning_hw.runs.files import write_atomically
from lightning_hw.runs.files import SWEEP_SUMMARY_FILE
from lightning_hw.tuning.leftovers import SweepLock, clear_abandoned_sweeps
from lightning_hw.tuning.lr_find_command import OWN_OPTIONS

DIR_PREFIX = "lr-find"
PLOT_FILE = "lr_find.png"
POINTS_FILE = "lr_find.csv"
SUMMARY_FILE = SWEEP_SUMMARY_FILE
CONFIG_FILE = "config-lr-find.yaml"
#: Lightning's ``_LRFinder.suggestion()`` defaults: points skipped at the start and at the end
SKIP_BEGIN, SKIP_END = 10, 1
#: where Lightning's finder logs its info lines
FINDER_LOGGERS = ("lightning.pytorch.trainer.connectors.checkpoint_connector", "lightning.pytorch.tuner.lr_finder")


# -- where the lr lives --------------------------------------------------------------------------


def lr_keys(chosen: Any) -> list[str]:
    """The config keys that hold the lr training starts with (the first is the one that counts).

    With an ``optimizer:`` section its ``init_args.lr`` (and the task's ``lr`` too when set:
    the CLI gives it to the optimizer); without one, the task's ``lr`` (or ``learning_rate``),
    which its ``configure_optimizers`` uses.

    Args:
        chosen: the parsed ``fit`` config.

    Raises:
        ConfigError: nothing in the config sets the lr.
    """
    model_init = chosen.model.get("init_args") if chosen.get("model") is not None else None
    task = str(chosen.model.class_path).rsplit(".", 1)[-1] if chosen.get("model") is not None else "the task"
    optimizer = chosen.get("optimizer")
    if optimizer is not None:
        init_args = optimizer.get("init_args")
        if init_args is None or "lr" not in init_args:
            name = str(optimizer.class_path).rsplit(".", 1)[-1]
            raise ConfigError(f"lr-find: the optimizer {name} takes no lr, so there is no lr to sweep")
        keys = ["optimizer.init_args.lr"]
        if model_init is not None and model_init.get("lr") is not None:
            keys.append("model.init_args.lr")  # the task's lr replaces the optimizer's (HWCLI): keep them equal
        return keys
    for name in ("lr", "learning_rate"):
        if model_init is not None and name in model_init:
            return [f"model.init_args.{name}"]
    raise ConfigError(
        f"lr-find: there is no lr to sweep: {task} takes no lr (nor learning_rate) and the config has no optimizer: "
        "section; add one (e.g. --optimizer Adam) so that the lr found is the one that trains"
    )


def configured_lr(chosen: Any, keys: list[str]) -> float | None:
    """The lr the config trains with now (``None``: unset, the task's default)."""
    value = chosen.get(keys[0])
    return float(value) if isinstance(value, (int, float)) else None


def scheduler_note(chosen: Any) -> str | None:
    """A note on the config's ``lr_scheduler:`` (Lightning's finder replaces it for the sweep).

    Raises:
        ConfigError: a scheduler that sets the lr itself, so that an optimizer lr found here
            would not be the one that trains.
    """
    from torch.optim.lr_scheduler import CyclicLR, OneCycleLR

    from lightning_hw.registry import import_class

    scheduler = chosen.get("lr_scheduler")
    if scheduler is None:
        return None
    path = str(scheduler.get("class_path"))
    name = path.rsplit(".", 1)[-1]
    try:
        cls = import_class(path)
    except Exception:  # noqa: BLE001 - the parser resolved it already; only the note depends on it
        cls = None
    if isinstance(cls, type) and issubclass(cls, (OneCycleLR, CyclicLR)):
        own = "max_lr" if issubclass(cls, OneCycleLR) else "base_lr and max_lr"
        raise ConfigError(
            f"lr-find: the lr_scheduler {name} sets the lr itself (its {own}), so an optimizer lr found here would not "
            f"be the lr that trains; run lr-find without it (add --lr_scheduler null) and use the suggestion for "
            f"{name}'s max_lr"
        )
    return (
        f"note: the sweep runs without the lr_scheduler {name} (Lightning's finder replaces it while sweeping); "
        "the suggestion is the lr it starts from"
    )


# -- the command ---------------------------------------------------------------------------------


def frozen_for_the_sweep(callback: Any) -> Any:
    """A fine-tuning schedule as the sweep follows it: frozen throughout; any other callback as it is.

    Lightning's finder sweeps without the trainer's callbacks, so the schedule's set-up freezes
    the backbone and nothing unfreezes it, however many steps the sweep takes. Said so, the
    feature cache serves the sweep cached features; it went by the schedule's unfreezing epoch
    and said "off, the backbone unfreezes at epoch 8 (max_epochs -1)" (-1 is the sweep's own
    setting) while the frozen backbone ran on every step. The config keeps its schedule. Its
    ``train_bn`` is kept: batch norm layers trained while frozen are trained in the sweep too.
    """
    from lightning_hw.callbacks.finetuning import FreezeBackbone

    return FreezeBackbone(train_bn=callback.train_bn) if isinstance(callback, FreezeBackbone) else callback


class LRFindCLI(HWCLI):
    """``fit``'s parser, task, data and optimizer; Lightning's lr finder instead of training.

    Args:
        options: lr-find's own options (:func:`lightning_hw.tuning.lr_find_command.build_parser`).
        fit_args: every other argument: a ``fit`` command line without the word ``fit``.
    """

    def __init__(self, options: argparse.Namespace, fit_args: list[str]) -> None:
        self.options = options
        self.lr_find_dir: Path | None = None
        self.group = ""
        self.keys: list[str] = []
        self.note: str | None = None
        self._created: list[Path] = []
        self._lock: SweepLock | None = None
        self.show_progress = True  # the finder's own bar; off with --trainer.enable_progress_bar false
        self.summary: dict[str, Any] | None = None
        super().__init__(args=["fit", *fit_args], save_config_callback=None)

    def _explain(self, err: Exception, args: list[str]) -> str:
        """As ``fit``'s, pointing at lr-find's options too (a misspelled one of its own included)."""
        message = super()._explain(err, args)
        found = re.fullmatch(r"unknown option (--[^\s;]+)(?:; did you mean [^?]*\?)? (\(options: .*\))", message)
        if found:
            option, options_hint = found.groups()
            close = difflib.get_close_matches(option, OWN_OPTIONS, n=1, cutoff=0.75)
            if close:  # one of lr-find's own, misspelled (fit's parser knows nothing of them)
                message = f"unknown option {option}; did you mean {close[0]}? {options_hint}"
        prog = program_name()
        return message.replace(f"(options: {prog} fit --help)", f"(options: {prog} lr-find --help, and {prog} fit --help)")

    def load_checkpoint_settings(self) -> None:
        """No checkpoint: the sweep starts from the config's fresh weights (refused before any file is read)."""
        if self.config.fit.get("ckpt_path"):
            raise ConfigError("lr-find: the sweep starts from the config's fresh weights; drop --ckpt_path")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """A trainer as ``fit``'s, writing nothing but into the lr-find directory (no loggers, no checkpoints).

        The config is checked (its lr, its scheduler) and the data loaded before the
        directory is created, so a refusal leaves nothing behind.
        """
        chosen = self.config_init.fit
        settings = chosen.run
        settings.check()
        trainer_cfg = chosen.trainer
        if trainer_cfg.get("fast_dev_run"):
            raise ConfigError(
                "lr-find: --trainer.fast_dev_run would skip the sweep (Lightning's finder does nothing then); drop it"
            )
        parsed = self.config.fit
        self.keys = lr_keys(parsed)
        self.note = scheduler_note(parsed)
        from lightning_hw.data.preprocessing import link_model_preprocessing

        message = link_model_preprocessing(self.model, self.datamodule)
        if message:
            _say(message)
        self._check_data()
        config_files = config_files_of(chosen)
        self.group = naming.group_of(settings.group, config_files)
        inherited = naming.inherited_directory()  # a DDP process started by the first one
        parent = Path(settings.root) / self.group
        if inherited is None:  # beside the runs, never among a run's (or sweep's) files
            check_outside_records(parent, "lr-find: the sweep")
        self.lr_find_dir = inherited or parent / naming.unused_name(parent, f"{DIR_PREFIX}-{naming.timestamp()}")
        self.show_progress = trainer_cfg.get("enable_progress_bar") is not False  # Lightning's default: on
        callbacks = [c for c in (trainer_cfg.get("callbacks") or []) if not isinstance(c, ModelCheckpoint)]
        if chosen.get("finetune") is not None:  # its set-up freezes the backbone: the sweep trains what fit's first epochs train
            callbacks.append(chosen.finetune)
        check_fine_tuning(callbacks, self.model)  # a schedule that fit would refuse (the sweep's copy cannot tell)
        callbacks = [frozen_for_the_sweep(c) for c in callbacks]
        plugins = trainer_cfg.get("plugins")
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else ([plugins] if plugins else [])
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(SafeCheckpointIO())  # the finder saves the fresh weights and loads them back
        kwargs.update(
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,  # the finder shows its own (unless --trainer.enable_progress_bar false)
            callbacks=callbacks,
            plugins=plugins,
            # num_training steps, however few batches an epoch has (the finder sets max_steps).
            max_epochs=-1,
            max_steps=-1,
            max_time=None,
        )
        self._claim_directory()
        kwargs["default_root_dir"] = str(self.lr_find_dir)  # where the finder keeps the fresh weights meanwhile
        try:
            return LightningCLI.instantiate_trainer(self, **kwargs)
        except BaseException as err:
            self._remove_directory()
            if isinstance(err, (ValueError, TypeError, MisconfigurationException)) and not isinstance(err, UserError):
                raise ConfigError(f"invalid trainer settings: {str(err).strip().splitlines()[0]}") from err
            raise

    def run_subcommand(self, subcommand: str) -> None:
        """Sweep, then write the plot, the points, the suggestion (and ``--write``'s config)."""
        if self.note:
            _say(self.note)
        try:
            with quiet_finder_logs(), lr_finder_progress_bar(self.show_progress):
                finder = self.sweep()
        except RunInterrupted as stop:
            self._remove_directory()
            stop.message = f"interrupted by {stop.signal_name} during lr-find; nothing was saved"
            raise
        except MisconfigurationException as err:  # e.g. two optimizers: the finder sweeps one
            self._remove_directory()
            raise ConfigError(f"lr-find: {_first_line(err)}") from err
        except BaseException:
            self._remove_directory()
            raise
        WATCH.finishing = True  # the sweep is done: a signal now no longer undoes it
        try:
            self.record(finder)
        finally:
            self._release_directory()

    def sweep(self) -> Any:
        """Lightning's ``Tuner.lr_find`` on the config's task, data and optimizer; its ``_LRFinder``."""
        from lightning.pytorch.tuner import Tuner

        options = self.options
        return Tuner(self.trainer).lr_find(
            self.model,
            datamodule=self.datamodule,
            min_lr=options.min_lr,
            max_lr=options.max_lr,
            num_training=options.num_training,
            mode=options.mode,
            early_stop_threshold=options.early_stop_threshold,
            update_attr=False,  # the suggestion goes into the config (lr_keys), not into the model
        )

    # -- the directory -----------------------------------------------------------------------

    def _claim_directory(self) -> None:
        """Create ``runs/<group>/lr-find-<time>/`` (``-1``, ``-2``... when taken); never an existing directory."""
        directory = self.lr_find_dir
        if rank_zero_only.rank != 0 or naming.inherited_directory() is not None:
            return
        parent = directory.parent
        self._created = [p for p in [parent, *parent.parents] if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        for line in clear_abandoned_sweeps(parent, DIR_PREFIX):
            _say(f"note: {line}")
        candidate = make_unique_dir(parent, directory.name)
        self._lock = SweepLock(candidate)  # held until the sweep's files are written: see leftovers
        self.lr_find_dir = candidate
        self._created.insert(0, candidate)
        naming.share_directory(candidate)

    def _remove_directory(self) -> None:
        """Undo :meth:`_claim_directory` (the sweep did not finish)."""
        self._release_directory()
        for path in self._created:  # the lr-find directory first, then the parents it needed
            if path == self.lr_find_dir:
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    path.rmdir()
                except OSError:
                    pass
        self._created = []

    def _release_directory(self) -> None:
        """Drop the lock that marks the directory as a running sweep's."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- the results -------------------------------------------------------------------------

    def record(self, finder: Any) -> None:
        """Write the files, print the suggestion, and fail in one line when there is none."""
        options = self.options
        results = finder.results if finder is not None else {}
        lrs = [float(v) for v in results.get("lr", [])]
        losses = [float(v) for v in results.get("loss", [])]
        lightnings = lightning_suggestion(finder, lrs, losses)
        if options.suggestion == "lightning":
            index = lightnings
        else:
            index = steepest_fall(lrs, losses, log_lr=options.mode == "exponential")
        suggestion = lrs[index] if index is not None else None
        chosen = self.config.fit
        current = configured_lr(chosen, self.keys)
        directory = self.lr_find_dir
        optimizer = next(iter(getattr(self.trainer, "optimizers", None) or []), None)
        summary = {
            "suggested_lr": suggestion,
            "suggested_step": index + 1 if index is not None else None,  # as lr_find.csv counts
            "suggestion": options.suggestion,
            "lightning_suggestion": lrs[lightnings] if lightnings is not None else None,
            "config_lr": current,
            "lr_keys": self.keys,
            "optimizer": type(optimizer).__name__ if optimizer is not None else None,
            "min_lr": options.min_lr,
            "max_lr": options.max_lr,
            "num_training": options.num_training,
            "mode": options.mode,
            "early_stop_threshold": options.early_stop_threshold,
            "steps": len(losses),
            "stopped_early": len(losses) < options.num_training,
            "config": config_files_of(chosen),
            "group": self.group,
            "written": None,
        }
        self.summary = summary
        if rank_zero_only.rank != 0:
            return
        write_points(directory / POINTS_FILE, lrs, losses)
        title = f"lr-find: {', '.join(Path(c).name for c in summary['config']) or self.group}"
        save_plot(directory / PLOT_FILE, lrs, losses, index, options.mode, title, other=lightnings)
        write_atomically(directory / CONFIG_FILE, self.subcommand_parsers["fit"].dump(chosen, skip_none=False))
        try:
            if suggestion is None:
                reason = no_suggestion_reason(lrs, losses, options)
                raise TrainingError(f"lr-find: {reason}; the sweep's points are in {directory / POINTS_FILE}")
            if options.write:
                path = Path(options.write)
                write_config(path, self.written_config(suggestion), options.overwrite, header=self._header(suggestion, current))
                summary["written"] = str(path)
        finally:
            write_atomically(directory / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        now = f"the config trains with {current:.4g}" if current is not None else "the config leaves it to the task's default"
        span = f"{len(losses)} lrs from {lrs[0]:.3g} to {lrs[-1]:.3g}"
        if summary["stopped_early"]:
            span += " (stopped early: the loss diverged)"
        print(f"Suggested lr: {suggestion:.4g} (where the loss fell fastest, of {span}; {now})")
        files = ", ".join(sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")))
        print(f"lr-find saved in {directory} ({files})")
        if summary["written"]:
            written = summary["written"]
            print(f"Config with lr {suggestion:.4g} written to {written}; train with: {program_name()} fit --config {shlex.quote(written)}")

    def written_config(self, lr: float) -> str:
        """The resolved ``fit`` config with ``lr`` at :func:`lr_keys` and the group named (nothing else changed).

        The group is written out because it defaults to the experiment config's name (see
        :func:`~lightning_hw.runs.naming.group_of`), which the new file would change. A run
        name that is taken (the config is a run's recorded ``config.yaml``) is dropped with
        the run's notes: ``fit --config FILE`` would refuse to start a run over that record.
        """
        config = self.config.fit.clone()
        for key in self.keys:
            config[key] = lr
        if config.get("run") is not None:
            config.run.group = self.group
            if self.taken_run() is not None:
                config.run.name = config.run.notes = None
        config.ckpt_path = None
        return self.subcommand_parsers["fit"].dump(config, skip_none=False)

    def taken_run(self) -> Path | None:
        """The existing run (or lr-find sweep, which fit refuses too) the config's ``run.name`` names, if any."""
        run = self.config.fit.get("run")
        if run is None or not run.get("name"):
            return None
        directory = Path(run.root) / self.group / run.name
        return directory if holds_record(directory) or is_sweep_record(directory) else None

    def _header(self, lr: float, current: float | None) -> str:
        configs = ", ".join(self.summary["config"]) or "the command line"
        was = f"{current:g}" if current is not None else "the task's default"
        taken = self.taken_run()
        return (
            f"# {configs} with the lr found by `{program_name()} lr-find` ({lr:.4g}; was {was}): {', '.join(self.keys)}.\n"
            f"# The sweep: {self.lr_find_dir}\n"
            + (f"# Without run.name and run.notes: they named {taken}, {record_kind(taken)} of its own.\n" if taken else "")
        )


@contextlib.contextmanager
def quiet_finder_logs() -> Iterator[None]:
    """Without ``--verbose``, drop the finder's info lines: its own checkpoint restore (which
    says ``weights_only`` defaults to False, while ours loads weights only) and its early stop
    (the suggestion line says it)."""
    from lightning_hw.cli.verbosity import LightningInfoFilter, is_verbose

    if is_verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in FINDER_LOGGERS]
    quiet = LightningInfoFilter()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def steepest_fall(lrs: list[float], losses: list[float], log_lr: bool) -> int | None:
    """The step where the loss falls fastest, or ``None`` with fewer than 2 finite points to compare.

    Lightning's rule (``_LRFinder.suggestion``: skip the first 10 points and the last, drop
    non-finite losses, take the most negative ``torch.gradient``), with the slope taken against
    ``log10(lr)`` when ``log_lr``: the coordinates an exponential sweep is evenly spaced in (what
    Lightning-AI/pytorch-lightning#21171 proposes). Lightning 2.6 takes it against ``lr``, which
    divides each step's fall by an lr that grows a millionfold over the sweep, so that noise
    among the smallest lrs wins (the quickstart: 2.5e-4, where the loss has not begun to fall).

    Args:
        lrs, losses: the sweep's points, in order.
        log_lr: slope against ``log10(lr)`` (an exponential sweep), else against ``lr``.
    """
    import torch

    kept = [i for i in range(SKIP_BEGIN, len(losses) - SKIP_END) if math.isfinite(losses[i])]
    if len(kept) < 2:
        return None
    y = torch.tensor([losses[i] for i in kept], dtype=torch.float64)
    x = torch.tensor([lrs[i] for i in kept], dtype=torch.float64)
    slopes = torch.gradient(y, spacing=[torch.log10(x) if log_lr else x])[0]
    return kept[int(torch.argmin(slopes))]


def lightning_suggestion(finder: Any, lrs: list[float], losses: list[float]) -> int | None:
    """The step of Lightning's own ``suggestion()``, or ``None`` (asked only with enough finite points:
    Lightning logs an error otherwise)."""
    kept = losses[SKIP_BEGIN:-SKIP_END] if len(losses) > SKIP_BEGIN + SKIP_END else []
    if finder is None or sum(math.isfinite(v) for v in kept) < 2:
        return None
    lr = finder.suggestion(skip_begin=SKIP_BEGIN, skip_end=SKIP_END)
    return lrs.index(float(lr)) if lr is not None and float(lr) in lrs else None


def no_suggestion_reason(lrs: list[float], losses: list[float], options: argparse.Namespace) -> str:
    """Why there is no suggestion, and what to change."""
    needed = SKIP_BEGIN + SKIP_END + 2
    if not losses:
        return "the sweep trained no step (no training batches: check the data and --trainer.limit_train_batches)"
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None and sum(math.isfinite(v) for v in losses[SKIP_BEGIN:-SKIP_END]) < 2:
        return (
            f"no suggestion: the loss was not finite (nan/inf) from step {bad + 1} on (lr {lrs[bad]:.3g}); "
            "lower --max_lr, or check the data and the model with fit"
        )
    if len(losses) < options.num_training:
        return (
            f"no suggestion: the loss diverged after {len(losses)} steps (lr {lrs[-1]:.3g}), before the {needed} "
            "a suggestion needs; lower --max_lr, or raise --early_stop_threshold (none: never stop)"
        )
    return f"no suggestion from {len(losses)} steps; sweep more (--num_training) or another lr range (--min_lr, --max_lr)"


def write_points(path: Path, lrs: list[float], losses: list[float]) -> None:
    """``lr,loss`` per step of the sweep (the loss as Lightning's finder smooths it)."""
    with atomic_open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["step", "lr", "loss"])
        for step, (lr, loss) in enumerate(zip(lrs, losses), start=1):
            writer.writerow([step, repr(lr), repr(loss)])


def save_plot(
    path: Path, lrs: list[float], losses: list[float], index: int | None, mode: str, title: str, other: int | None = None
) -> None:
    """Loss against lr (log scale for an exponential sweep), the suggestion as a red dot (as Lightning's ``plot(suggest=True)``).

    Args:
        other: the step of Lightning's own suggestion, marked too when it differs.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, nothing global

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(lrs, losses, label="training loss (smoothed)")
    if mode == "exponential":
        ax.set_xscale("log")
    if index is not None:
        ax.plot(lrs[index], losses[index], marker="o", markersize=10, color="red", linestyle="none",
                label=f"suggested lr {lrs[index]:.3g}")
        ax.axvline(lrs[index], color="red", linestyle=":", linewidth=1)
    if other is not None and other != index:
        ax.plot(lrs[other], losses[other], marker="x", markersize=8, color="grey", linestyle="none",
                label=f"Lightning's suggestion() {lrs[other]:.3g}")
    # The y range of the points the suggestion looks at (the first ones are biased low by the smoothing),
    # and at most 1.5 times where they start: a diverging tail would flatten everything else.
    finite = [v for v in losses[SKIP_BEGIN:] if math.isfinite(v)]
    if finite:
        low, top = min(finite), max(finite)
        if finite[0] > 0:
            top = min(top, finite[0] * 1.5)
        if top > low:
            margin = (top - low) * 0.05
            ax.set_ylim(low - margin, top + margin)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    with atomic_open(path, "wb") as file:
        file.write(buffer.getvalue())


def write_config(path: Path, text: str, overwrite: bool, header: str = "") -> None:
    """Write ``--write``'s config: a new file, or (``--overwrite``) replace one, atomically either way.

    Raises:
        ConfigError: the file appeared since the command started and ``--overwrite`` is not given.
    """
    content = header + text
    if overwrite:
        write_atomically(path, content)
        return
    try:
        with open(path, "x") as file:
            file.write(content)
    except FileExistsError:
        raise ConfigError(f"lr-find: {path} exists and is left unchanged; give another --write, or add --overwrite to replace it") from None


def _say(message: str) -> None:
    """Print once per job: in DDP only the first process speaks."""
    if rank_zero_only.rank == 0:
        print(message)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def find_lr(options: argparse.Namespace, fit_args: list[str]) -> int:
    """Run lr-find (see the module doc); returns the exit code (a failure raises a one-line error)."""
    LRFindCLI(options, fit_args)
    return 0
