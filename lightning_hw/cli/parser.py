"""The command line: LightningCLI over the entry-point registry, plus our own subcommands.

    python -m lightning_hw fit --config configs/quickstart.yaml
    python -m lightning_hw list
    python -m lightning_hw study configs/studies/reuters_heads.yaml   (lightning_hw/studies/grid.py)
    python -m lightning_hw report runs/reuters_heads                  (lightning_hw/reports.py)
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_hw import registry
from lightning_hw._compat.lightning import (
    CLIHooks, child_failures_handled_by, end_loader_workers, keyboard_interrupted, logged_position, process_start_method,
)
from lightning_hw.callbacks.artifacts import LogBestCheckpoint
from lightning_hw.callbacks.epoch_metrics import LogEpochMetrics
from lightning_hw.callbacks.progress import default_progress_bar
from lightning_hw.callbacks.pruning import OptunaPruning, from_environment as search_trial_pruning
from lightning_hw.callbacks.guards import LabelRangeCheck, NonFiniteLossGuard, WatchedMetricsCheck
from lightning_hw.callbacks.last_checkpoint import LastCheckpoint
from lightning_hw.callbacks.resume import ResumeState
from lightning_hw.callbacks.summary import NetSummary
from lightning_hw.checkpoints import (
    CheckpointSettingsWarning,
    SafeCheckpointIO,
    check_ckpt_path,
    check_fits,
    checkpoint_file_position,
    checkpoint_position,
    config_advice,
    load_checkpoint,
    mismatch_message,
    other_optimizer_message,
    other_task_message,
    replaced_settings,
    unfit_settings_message,
)
from lightning_hw.cli.errors import check_config_files, explain
from lightning_hw.cli.fit_checkpoint import (
    configures_the_model, last_without_config, no_run_config, outside_any_run, refuse_fit_without_config,
)
from lightning_hw.cli.names import KEYS, config_arguments, named_class_names, option_values, requested_class_names
from lightning_hw.cli.process_settings import ProcessSettings
from lightning_hw.cli.stacking import keep_appended_items
from lightning_hw.cli.commands import SUBCOMMANDS, description, program_name, run_own_subcommand
from lightning_hw.errors import (
    ConfigError, ConstructorError, TrainingError, UserError, disk_full_in, not_writable_in, raised_in_constructor,
    user_error_in,
)
from lightning_hw.runs.config import monitor_mode, task_monitor_mode
from lightning_hw.runs.files import CONFIG_FILE, is_run_record
from lightning_hw.runs import (
    WATCH,
    AfterEvaluationLogged,
    GracefulStop,
    Run,
    RunConfig,
    RunCSVLogger,
    RunInterrupted,
    RunRecord,
    SwallowedStops,
    check_restored_settings_kept,
    checkpoint_callbacks,
    command_name,
    finish_wandb,
    interrupt_signal,
    note_caveats_in_wandb,
    plan_run,
    quiet_swallowed_stops,
    restored_settings,
    saved_elsewhere,
    start_wandb,
    stop_reason,
    wandb_logger,
)
from lightning_hw.cli.verbosity import (
    evaluation_warnings_filtered,
    filter_library_warnings,
    format_own_warnings,
    is_verbose,
    pop_verbose_flag,
    set_verbose,
)

filter_library_warnings()
format_own_warnings()


class SaveRunConfig(SaveConfigCallback):
    """Hands the resolved config to the run (which writes it when the run commits) and puts it into W&B.

    The saved ``config.yaml`` names its group and run (``--config runs/g/n/config.yaml
    --ckpt_path last`` continues that run); a ``fit``'s drops ``ckpt_path``, which only
    said where that session started.

    Args:
        run: the run the config belongs to.
        *args, **kwargs: see ``SaveConfigCallback``.
    """

    def __init__(self, *args: Any, run: Run | None = None, linked: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, save_to_log_dir=False, **kwargs)
        self.run = run
        self.linked = linked or {}

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.config.clone()
        if self.run is not None and config.get("run") is not None:
            config.run.group = self.run.group
            recorded_root = self.run.root_to_record()
            if recorded_root is not None:  # a resume from another folder: the run stays where its record says
                config.run.root = recorded_root
            if self.run.stage == "fit":
                config.run.name = self.run.name
                config.ckpt_path = None
        text = self.parser.dump(config, skip_none=False)
        if self.linked:
            from lightning_hw.data.preprocessing import linked_settings_note

            # At the top, under Lightning's version line: read before the settings it qualifies.
            note = linked_settings_note(self.linked)
            version, _, rest = text.partition("\n")
            text = f"{version}\n{note}{rest}" if version.startswith("#") else note + text
        if self.run is not None:
            self.run.set_config(text)
        resolved = yaml.safe_load(text)
        if self.linked and isinstance(resolved.get("data"), dict) and isinstance(resolved["data"].get("init_args"), dict):
            resolved["data"]["init_args"].update(self.linked)  # W&B's config shows what the run used
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(resolved, allow_val_change=True)


class HWCLI(CLIHooks):
    """LightningCLI with registry-resolved short names, data-to-task links and run directories.

    Args:
        args: the command line (``None``: ``sys.argv[1:]``), e.g. ``["fit", "--config", "c.yaml"]``.
        **kwargs: passed to :class:`~lightning.pytorch.cli.LightningCLI`.
    """

    def __init__(self, args: list[str] | None = None, **kwargs: Any) -> None:
        registry.discover()  # short class names resolve only once the classes are imported
        self.run: Run | None = None
        self._hparams_from: tuple[str, dict] | None = None
        self._replaced_settings: str | None = None  # said once the command is not refused (instantiate_trainer)
        self._asked_restored: dict[str, Any] | None = None  # a fit's restored settings as asked, before a checkpoint's replace them
        self._linked: set[tuple[str, str]] = set()  # (subcommand, task argument) linked from the data
        self._predict_ids: list[str] | None = None  # the rows of --predict_from, read before the directory exists
        self._linked_preprocessing: dict[str, Any] = {}  # datamodule settings taken from the backbone
        self._stopped_by: str | None = None  # what ended a fit before its last epoch (see after_fit)
        self.run_dir: Path | None = None  # where this command writes (the run, or its eval/ directory)
        self.loggers: list = []
        parser_kwargs = {
            "exit_on_error": False, "description": description(), "prog": program_name(), **kwargs.pop("parser_kwargs", {})
        }
        kwargs.setdefault("model_class", LightningModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        # A command gives back the process-wide settings it changed; with run=False the caller
        # runs the trainer next, which needs them (Trainer(deterministic=True) set them for it).
        settings = ProcessSettings.current() if kwargs.get("run", True) else None
        WATCH.install()  # Ctrl-C from here on: one line, and whatever this command created is undone
        try:
            with quiet_swallowed_stops():  # a finalizer's: raised again by WATCH.raise_swallowed
                self._run_command(args, parser_kwargs, **kwargs)
        except RunInterrupted as stop:
            WATCH.claim_ending()  # waits while the observer of the DDP processes ends this one (child_interrupted)
            self._end_started_processes_before_training()
            self._record_interrupt(stop)
            raise
        except BaseException as err:
            WATCH.claim_ending()
            full = disk_full_in(err)
            if full is None:
                if self.run is not None:
                    self.run.abort(getattr(err, "exit_code", 1), "failed", self._trainer(), self.loggers, error=_first_line(err))
                raise
            raise TrainingError(self._stopped_by_a_full_disk(full)) from err  # not a bug: one line, as for bad input
        finally:
            if self.run is not None:
                self.run.close()
            WATCH.restore()
            end_loader_workers(self._trainer())  # after the run's record is closed, whatever a worker's end does
            if settings is not None:
                settings.restore()

    def _run_command(self, args: list[str] | None, parser_kwargs: dict[str, Any], **kwargs: Any) -> None:
        """LightningCLI's work; a ``KeyboardInterrupt`` in it stops the command as Ctrl-C does (SIGINT, at once).

        Our SIGINT handler stops a command without one, but a ``KeyboardInterrupt`` raised by
        code (a callback, a notebook's own code) reached Lightning, which exits with 1: the run
        was recorded ``failed`` with ``SystemExit: 1``, and nothing was said. A stop that a
        finalizer swallowed ends the command, however it ends (see :meth:`SignalWatch.raise_swallowed`).
        """
        try:
            super().__init__(args=args, parser_kwargs=parser_kwargs, **kwargs)
        except RunInterrupted:
            raise
        except BaseException as err:
            # A stop that a finalizer swallowed came first: what followed it (Lightning's SystemExit(None)
            # for the SIGTERM it noted too, which exited 0) is not how the command ended.
            WATCH.raise_swallowed(cause=err)
            if isinstance(err, (KeyboardInterrupt, SystemExit)) and keyboard_interrupted(err):
                raise RunInterrupted(signal.SIGINT, at_once=True) from err
            raise

    def _trainer(self) -> Trainer | None:
        return getattr(self, "trainer", None)

    def _stopped_by_a_full_disk(self, full: OSError) -> str:
        """Record the failure in the run as far as the disk allows; what to do, in one line."""
        if self.run is None:
            return f"{_first_line(full)}; free space on that disk and run the command again"
        return self.run.end_on_a_full_disk(full, self._trainer(), self.loggers)

    def _record_interrupt(self, stop: RunInterrupted) -> None:
        """Record an interrupt in the run (or undo a run that has not trained) and give ``stop`` its message."""
        if self.run is not None:
            self.run.abort(stop.exit_code, "interrupted", self._trainer(), self.loggers, signal=stop.signal_name, checkpoint=stop.saved)
            stop.message = self.run.interrupt_message(stop)

    def _end_started_processes_before_training(self) -> None:
        """A run stopped before training ends the DDP processes this one started (SIGKILL, as Lightning's Ctrl-C does).

        They write nothing, and may be waiting for this one in a call that no signal breaks off: one
        not signalled itself (``kill -INT <pid>`` of this process alone) failed with a traceback
        (``DistNetworkError: Broken pipe``) once this one had gone.
        """
        launcher = getattr(getattr(self._trainer(), "strategy", None), "launcher", None)
        if self.run is not None and not self.run.committed and launcher is not None and hasattr(launcher, "kill"):
            launcher.kill(getattr(signal, "SIGKILL", signal.SIGTERM))  # Windows has no SIGKILL

    def child_interrupted(self, returncode: int) -> Callable[[], None] | None:
        """How this process ends once a DDP process it started has ended with ``returncode`` (``None``: Lightning's way).

        A signal to the whole job (Ctrl-C, ``kill -INT -<pgid>``) before training reaches the
        other processes while they start: each stops at once (exit 130 or 143). This process may
        then be waiting for them in the rendezvous, in C++, where no signal handler runs: Lightning's
        observer of the processes found the other one's exit and SIGKILLed it (exit 137), which
        left the run's directory behind. So an interrupted process before the run's first step
        stops this one as the signal would have: the run undone, its line, exit 128 + the signal,
        from the observer's thread. When the main thread is already ending the command (or the
        processes agreed to stop training at a step, and the other has done so; or the work is done
        and being written out, where a signal is noted, not obeyed), it is left to finish that:
        Lightning's SIGKILL would cut short its ``status.json`` and W&B's files.

        Args:
            returncode: the exit code of the process that ended (a negative one: the signal that killed it).
        """
        if not WATCH.claim_ending(wait=False):
            return lambda: None
        if WATCH.requested() or WATCH.finishing:  # stopping at an agreed step, or the work is done: the main thread ends it
            WATCH.release_ending()
            return lambda: None
        # A signal this process got (its handler not run yet), else the one that stopped the other: a
        # Ctrl-C in the other's first instants, as Python starts, ends it with code 1 (a KeyboardInterrupt in `site`).
        signum = WATCH.stop_signal_received() or interrupt_signal(returncode)
        if signum is None or self.run is None or self.run.committed:
            WATCH.release_ending()
            return None

        def end_interrupted() -> None:
            stop = RunInterrupted(signum, at_once=True)
            try:
                self._record_interrupt(stop)
                print(stop.message, file=sys.stderr)
                self.run.close()
            except Exception as err:  # noqa: BLE001 - said, rather than a thread's traceback and a process waiting for good
                print(f"error: interrupted by {stop.signal_name} before training, {self.run.directory} could not be undone: {err}",
                      file=sys.stderr)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(stop.exit_code)  # the main thread still waits in C++: the process ends here

        return end_interrupted

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        from lightning_hw.callbacks.finetuning import FreezeBackbone

        parser.add_class_arguments(RunConfig, "run")
        # The fine-tuning schedule has its own key, so `--finetune.unfreeze_at_epoch 0` means the
        # same whatever trainer presets (which append callbacks) are stacked after the config.
        parser.add_subclass_arguments(
            FreezeBackbone, "finetune", required=False, fail_untyped=False,
            help="Freeze the backbone, train the head, then unfreeze its last layers (a FreezeBackbone callback).",
        )

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        """Safe checkpoint loading by default, and the ``predict`` options for new inputs."""
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if not add_subcommands:
            return
        for sub_parser in self.subcommand_parsers.values():
            # Trainer.fit/validate/test/predict(weights_only=None) would leave it to torch's default.
            sub_parser.set_defaults(weights_only=True)
        from lightning_hw.deploy.predict import add_predict_arguments

        add_predict_arguments(self.subcommand_parsers["predict"])

    # -- parsing -------------------------------------------------------------------------------

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse twice: first to learn the task and datamodule classes, then with their links.

        Which sizes flow from data to task depends on the classes chosen (a classifier
        wants ``num_classes``, a landmark task ``num_landmarks``), so the links can only be
        added once the first pass has resolved both class paths.
        """
        if not isinstance(args, list) and args is not None:  # a dict or Namespace, as LightningCLI allows
            self.config = parser.parse_object(args)
            return
        args = with_run_config(list(sys.argv[1:] if args is None else args))
        check_config_files(args)
        args = keep_appended_items(args)  # presets stack in any order
        args = ckpt_path_after_configs(args)
        printing = any(a.startswith("--print_config") for a in args)
        try:
            first = self._parse_first(parser, [a for a in args if not a.startswith("--print_config")])
            # The task's lr becomes the optimizer's here, as an argument, so that --print_config
            # (which prints while parsing) shows the lr that trains.
            subcommand = first.get("subcommand")
            lr = _lr_for_optimizer(first[subcommand] if subcommand else first)
            extra = ["--optimizer.init_args.lr", repr(lr)] if lr is not None else []
            if self._add_data_links(first) or extra or printing:
                self.config = parser.parse_args(args + extra)
            else:
                self.config = first
        except ArgumentError as err:
            raise ConfigError(self._explain(err, args)) from None

    def _parse_first(self, parser: LightningArgumentParser, args: list[str]) -> Any:
        """The first pass, which learns the classes; parsed again with the links if it fails without them.

        A task whose ``linked_from_data`` arguments have no default (``num_classes: int``) is
        refused by a pass without the links ("the following arguments are required"), although
        the data provides them: the links are then added from the classes the command line
        names, and the pass is tried once more.
        """
        try:
            return parser.parse_args(args)
        except ArgumentError:
            subcommand = args[0] if args and args[0] in self.subcommand_parsers else None
            names = requested_class_names(args)
            if subcommand is None or not {"model", "data"} <= names.keys():
                raise
            if not self._link_data(subcommand, names["model"], names["data"]):
                raise
            return parser.parse_args(args)

    def _add_data_links(self, config: Any) -> bool:
        """Link every ``linked_from_data`` argument of the task that the datamodule provides."""
        subcommand = config.get("subcommand")
        if not subcommand:
            return False
        chosen = config[subcommand]
        return self._link_data(subcommand, chosen.model.class_path, chosen.data.class_path)

    def _link_data(self, subcommand: str, task: str, data: str) -> bool:
        """Link ``data`` -> ``model.init_args.<name>`` for the task's ``linked_from_data`` the datamodule has.

        Each link is added once (the first pass may have added it already); whether there is any.
        """
        task_cls = registry.import_class(task, "task")
        data_cls = registry.import_class(data, "datamodule")
        _check_linked_names(task_cls)
        names = [n for n in getattr(task_cls, "linked_from_data", ()) if hasattr(data_cls, n)]
        sub_parser = self.subcommand_parsers[subcommand]
        for name in names:
            if (subcommand, name) in self._linked:
                continue
            self._linked.add((subcommand, name))
            # The whole datamodule as the source, so that an attribute it does not implement (the
            # base's NotImplementedError) is said in one line rather than as a traceback.
            read = functools.partial(_linked_value, name=name, task=task_cls.__name__)
            sub_parser.link_arguments("data", f"model.init_args.{name}", compute_fn=read, apply_on="instantiate")
        return bool(names)

    def _explain(self, err: ArgumentError, args: list[str]) -> str:
        for key, name in requested_class_names(args).items():
            kind = KEYS[key]
            if not registry.resolves(kind, name):
                return registry.unknown_name_message(kind, name) + registry.renamed_class_hint(name, _run_words(args))
            other = registry.ambiguous_name_message(kind, name) or registry.entry_point_name_message(kind, name)
            if other:
                return other
        for key, name in named_class_names(args):  # replaced later, but still parsed where it is written
            if not registry.resolves(KEYS[key], name):
                # jsonargparse imports each config's class_path as it reads it: a later --model cannot replace it.
                return (
                    f"{registry.unknown_name_message(KEYS[key], name)}{registry.renamed_class_hint(name, _run_words(args))} "
                    f"(where the config or an earlier option names it)"
                )
            ambiguous = registry.ambiguous_name_message(KEYS[key], name)
            if ambiguous:
                return f"{ambiguous} (where the config or an earlier option names {name})"
        subcommand = next((a for a in args if a in self.subcommand_parsers), None)
        return explain(str(err), subcommand, self.subcommand_parsers.get(subcommand, self.parser), args)

    def load_checkpoint_settings(self) -> None:
        """Read the checkpoint's hyperparameters into the config, safely.

        LightningCLI's own version always loads with ``weights_only=True`` (so ``--weights_only
        false`` could never take effect) and fails with a traceback; this one loads once with
        the user's choice and explains every failure in one line.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        chosen = self.config[subcommand]
        ckpt_path = chosen.get("ckpt_path")
        check_ckpt_path(ckpt_path, subcommand, chosen.get("run"))
        if subcommand == "predict" and not ckpt_path:
            raise ConfigError(
                "predict needs the trained weights: add --ckpt_path runs/<group>/<name>/checkpoints/<file>.ckpt"
            )
        if ckpt_path == "last":
            # The file the run goes on from: a task setting beside "last" must be replaced by the checkpoint's as
            # beside the file's own path, or the same resume gave another model (and loss) by how it was spelt.
            ckpt_path = _planned_run(subcommand, chosen, RunConfig(**chosen.run.as_dict())).ckpt_path
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        if subcommand == "fit":
            # An lr asked beside the checkpoint is refused (instantiate_trainer), not replaced by the checkpoint's.
            self._asked_restored = restored_settings(chosen.as_dict())
        checkpoint = load_checkpoint(ckpt_path, weights_only=chosen.get("weights_only") is not False)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        self._replaced_settings = self._replaced_settings_warning(chosen.get("model"), hparams, ckpt_path)
        if "_class_path" in hparams:
            class_path = hparams.pop("_class_path")
            if not registry.resolves("task", class_path):  # renamed, moved or uninstalled since
                hint = registry.renamed_class_hint(class_path, f"checkpoint {ckpt_path}")
                raise ConfigError(f"{registry.unknown_name_message('task', class_path)}{hint}")
            # As export does: another experiment's checkpoint is said to be one, not a net that does not fit.
            configured = chosen.get("model")
            other_task = other_task_message(
                f"checkpoint {ckpt_path}", class_path, configured.get("class_path") if configured else None, "the config"
            )
            if other_task:
                raise ConfigError(f"{other_task}; {config_advice(ckpt_path)}")
            hparams = {"class_path": class_path, "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except (ArgumentError, SystemExit) as err:
            raise ConfigError(unfit_settings_message(ckpt_path, checkpoint, str(err))) from None
        self._hparams_from = (ckpt_path, checkpoint)  # the task's settings now come from the checkpoint

    @staticmethod
    def _replaced_settings_warning(configured: Any, hparams: dict[str, Any], ckpt_path: str) -> str | None:
        """The warning when the checkpoint's task settings replace other values the config or command line asked for.

        It is given only once every check has passed: a refused command says why in its one
        ``error:`` line, not after a warning about a task it never built.
        """
        saved_class = hparams.get("_class_path") or (configured.get("class_path") if configured is not None else None)
        asked_class = configured.get("class_path") if configured is not None else None
        task_cls = registry.import_class(saved_class, "task") if saved_class else None
        if task_cls is None or (asked_class and registry.import_class(asked_class, "task") is not task_cls):
            return None  # another task class: check_fits and unfit_settings_message say why it does not fit
        replaced = replaced_settings(configured, hparams, task_cls)
        if not replaced:
            return None
        return (
            f"the task is rebuilt with the settings {Path(ckpt_path).name} was trained with, not these: "
            f"{', '.join(replaced)} (other settings need a run trained from scratch, without --ckpt_path)"
        )

    # -- running -------------------------------------------------------------------------------

    def instantiate_classes(self) -> None:
        """As LightningCLI, but a bad-input error raised in a class's ``__init__`` stays one line."""
        try:
            super().instantiate_classes()
        except Exception as err:
            user_error = user_error_in(err)
            building = getattr(self, "config_init", None) is None  # the task or data, not the trainer
            if (
                isinstance(user_error, ConfigError) and building and self._hparams_from is not None
                and _raised_by_a_module(user_error)
            ):
                # The task and its net were built with the checkpoint's settings; the data of this
                # config does not fit them (e.g. another experiment's checkpoint). Missing or bad data
                # (DataError) is not a mismatch and is said as it is, and so is a datamodule's or a
                # callback's refusal of its own settings (built in the same pass): they are this
                # command's. Advice to change a setting is left out: the setting came from the
                # checkpoint, not from this config.
                raise ConfigError(unfit_settings_message(*self._hparams_from, user_error.fact)) from err
            if user_error is None and building:
                raised = raised_in_constructor(err)
                if raised is not None:
                    raise ConstructorError(raised) from err
            if user_error is None or user_error is err:
                raise
            raise user_error from err

    def add_configured_optimizer(self, subcommand: str | None) -> None:
        """As LightningCLI, but settings torch refuses (``lr: -1``, Nesterov without momentum) are one line.

        torch checks an optimizer's or scheduler's arguments only when it builds them, here,
        with a plain ``ValueError``: it came out as a traceback. A scheduler given a
        ``last_epoch`` (a position to resume at) raises a ``KeyError`` instead: the optimizer
        built here is new, and holds no ``initial_lr`` to resume from.

        Raises:
            ConfigError: naming the class that refused and torch's reason.
        """
        try:
            super().add_configured_optimizer(subcommand)
        except ValueError as err:
            if user_error_in(err) is not None:
                raise
            key, name = _refusing_optimizer(err)
            raise ConfigError(
                f"{' '.join(filter(None, (key, name)))} refuses its settings: {err}",
                advice=f"change them under {key}: (--{key}.init_args.<name>)",
            ) from err
        except KeyError as err:
            key, name = _refusing_optimizer(err)
            if key != "lr_scheduler" or "initial_lr" not in str(err):  # not torch's refusal of last_epoch: a bug
                raise
            reason = str(err.args[0]).splitlines()[0].rstrip(".")  # torch's first line; the rest is a guess at why
            raise ConfigError(
                f"lr_scheduler {name} refuses its settings: {reason}",
                advice="leave last_epoch under lr_scheduler: at -1 (--lr_scheduler.init_args.last_epoch -1): the optimizer "
                "is new, with no schedule to resume; --ckpt_path last resumes a run's scheduler where it stopped",
            ) from err

    def before_instantiate_classes(self) -> None:
        """Let the task's lr set the configured optimizer's (again: a checkpoint's settings may have replaced it).

        Parsing has done so already for a command line; this covers a config given as a
        dict and the task settings read from ``--ckpt_path``.
        """
        chosen = self.config[self.subcommand] if self.subcommand else self.config
        _check_net(chosen)
        lr = _lr_for_optimizer(chosen)
        if lr is not None:
            chosen.optimizer.init_args.lr = lr

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, writing into the run directory with our loggers and checkpoints.

        The run is planned, the checkpoint checked against the configured model and the data
        loaded before the directory is created and W&B starts: a refusal or bad data leave
        every run as it was.
        """
        chosen = self.config_init[self.subcommand] if self.subcommand else self.config_init
        settings: RunConfig = chosen.run
        config_files = config_files_of(chosen)
        trainer_cfg = chosen.trainer
        run = _planned_run(self.subcommand or "fit", chosen, settings)
        if run.mode == "create":
            _refuse_a_run_with_nothing_to_train(trainer_cfg)
        model_section = self._config_section("model")
        weights_only = chosen.get("weights_only") is not False
        checkpoint = None  # loaded once here for every check; Lightning loads it again to restore
        if run.ckpt_path and Path(run.ckpt_path).is_file():
            checkpoint = self._checkpoint(run.ckpt_path, weights_only)
            check_fits(
                run.ckpt_path,
                self.model,
                model_section,
                weights_only=weights_only,
                data_section=self._config_section("data"),
                checkpoint=checkpoint,
            )
        # The settings a fit from a checkpoint may not change: checked against the checkpoint's, and stored in
        # every checkpoint this fit writes, so that one copied out of its run still says them.
        restored = restored_settings(self.config[self.subcommand].as_dict()) if self.subcommand == "fit" else None
        if run.mode in ("resume", "create") and restored is not None and checkpoint is not None:
            check_restored_settings_kept(run, self._asked_restored or restored, checkpoint)
        if checkpoint is not None:  # last: a resume refused for its settings would be so with more epochs too
            run.refuse_resuming_with_nothing_to_train(checkpoint, trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps"))
        chosen.ckpt_path = run.ckpt_path  # "last" resolved to the file; what Lightning loads
        if run.mode == "evaluate":
            # The saved config-<stage>.yaml names the file scored, not "last", which moves on as the run resumes.
            self.config[self.subcommand].ckpt_path = run.ckpt_path
            run.scored = checkpoint_position(checkpoint) if checkpoint is not None else None
        # A pretrained backbone's mean/std/interpolation reach the image datamodule before any
        # image is decoded, so ImageNet preprocessing cannot be forgotten (E5's ResNet152 was).
        from lightning_hw.data.preprocessing import link_backbone_preprocessing, linked_settings_summary

        self._linked_preprocessing = link_backbone_preprocessing(self.model, self.datamodule)
        message = linked_settings_summary(self._linked_preprocessing)
        if message:
            _say(message)  # every DDP process links it; the first one says so
        self._check_data()
        if self.subcommand == "fit":
            check_fine_tuning([chosen.get("finetune"), *(trainer_cfg.get("callbacks") or [])], self.model)
        if self.subcommand != "fit" and checkpoint is not None:
            self._take_other_datamodule_preprocessing(checkpoint)
        if self.subcommand == "predict" and chosen.get("predict_from"):
            from lightning_hw.deploy.predict import read_predict_inputs

            self._predict_ids = read_predict_inputs(chosen.predict_from, self.datamodule, chosen.get("on_unreadable", "fail"))
        # What an evaluation scores is the file as read here (its epoch is recorded): Lightning
        # restores these contents rather than the file, which a run still training may have
        # replaced meanwhile. SafeCheckpointIO lets go of them once Lightning has them.
        pinned = (run.ckpt_path, checkpoint) if run.mode == "evaluate" and checkpoint is not None else None
        del checkpoint  # a big model's state (optimizer included) is not kept for the whole run
        if self._replaced_settings:  # every check has passed: the command goes on with the checkpoint's settings
            rank_zero_warn(self._replaced_settings, category=CheckpointSettingsWarning)  # once, not once per DDP process
        self.run = run
        run.open()
        self.run_dir = run.directory
        for note in filter(None, (saved_elsewhere(config, run) for config in config_files)):
            _say(note)
        kwargs.setdefault("default_root_dir", str(run.directory))
        # SwallowedStops first: a stop a finalizer swallowed ends the command before any other hook acts.
        # AfterEvaluationLogged next: its on_test_end (on_validation_end of validate) is the first code after the evaluation's row is written.
        callbacks = [SwallowedStops(), AfterEvaluationLogged(), LogEpochMetrics(), *(trainer_cfg.get("callbacks") or [])]
        if chosen.get("finetune") is not None:
            if any(type(c) is type(chosen.finetune) for c in callbacks):
                raise ConfigError(
                    "the fine-tuning schedule is given twice: in finetune: and as a FreezeBackbone in trainer.callbacks; keep one"
                )
            callbacks.append(chosen.finetune)
        if trainer_cfg.get("logger") in (None, True) and run.mode != "scratch":
            self.loggers = [RunCSVLogger(run.directory)]
            wandb = wandb_logger(settings, run.directory, self._wandb_name(), run.group, self.subcommand, self._wandb_id())
            if wandb is not None:  # started below, once the trainer has accepted its settings
                self.loggers.append(wandb)
                callbacks.append(LogBestCheckpoint())  # uploads the best checkpoint when W&B is online
            kwargs["logger"] = self.loggers
        elif trainer_cfg.get("logger") in (None, True):
            # fast_dev_run logs nothing (Lightning swaps in a dummy logger); without this, Lightning first
            # builds its default logger and warns that tensorboardX is missing.
            kwargs["logger"] = False
        # Exact resume, NaN/Inf stop and label checks in every run (each is a no-op when not needed).
        for extra in (ResumeState(), NonFiniteLossGuard(), LabelRangeCheck(), WatchedMetricsCheck(), RunRecord(run, model_section, restored)):
            if not any(isinstance(c, type(extra)) for c in callbacks):
                callbacks.append(extra)
        pruning = search_trial_pruning() if self.subcommand == "fit" else None  # a trial of a search study
        if pruning is not None:
            callbacks.append(pruning)
        plugins = trainer_cfg.get("plugins")
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else ([plugins] if plugins else [])
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(SafeCheckpointIO(pinned=pinned))  # atomic saves, weights-only loads
        kwargs["plugins"] = plugins
        if self.subcommand == "predict":
            from lightning_hw.deploy.predict import writer_for

            callbacks.append(writer_for(run.directory, chosen))
        wants_checkpoints = trainer_cfg.get("enable_checkpointing") is not False and run.mode != "scratch"
        if self.subcommand == "fit" and wants_checkpoints and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            monitor = settings.monitor or getattr(self.model, "monitor", "val/loss")
            mode = task_monitor_mode(self.model) if settings.monitor is None else monitor_mode(monitor)
            # A monitor the task's class names is fixed there: run.monitor, in a refusal, would name a setting never given.
            task_attr = f"{type(self.model).__name__}.monitor"
            if settings.monitor:
                set_by = ("run.monitor", "run.monitor")
            elif hasattr(self.model, "monitor"):
                set_by = (task_attr, f"{task_attr} (the task class's attribute) or --run.monitor")
            else:
                set_by = ("the default monitor", "a `monitor` attribute of the task class or --run.monitor")
            callbacks.extend(checkpoint_callbacks(
                run.directory, monitor, mode, settings.checkpoint_seconds(), settings.checkpoint_every_n_steps, set_by
            ))
        if self.subcommand == "fit":
            last = next((c for c in callbacks if isinstance(c, LastCheckpoint)), None)
            callbacks.append(GracefulStop(last))
        if trainer_cfg.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(default_progress_bar())
        wants_summary = trainer_cfg.get("enable_model_summary") is not False and not is_verbose()
        if wants_summary and not any(isinstance(c, ModelSummary) for c in callbacks):
            callbacks.append(NetSummary())  # the net's layers; --verbose: Lightning's full table
        kwargs["callbacks"] = callbacks
        self.save_config_kwargs = {"run": run, "linked": self._linked_preprocessing}
        try:
            trainer = super().instantiate_trainer(**kwargs)
            _check_job_size(trainer)
            _warn_if_autocast_is_off(trainer)
            _warn_if_processes_exceed_cores(trainer)
        except (ValueError, TypeError, MisconfigurationException) as err:
            if isinstance(err, UserError):
                raise
            # Trainer.__init__ validates its settings (accelerator, devices, precision...).
            message = str(err).strip().splitlines()[0]
            if ("gpu" in message.lower() or "cuda" in message.lower()) and not torch.cuda.is_available():
                message += f"; {_no_gpu_advice(config_files_of(self.config[self.subcommand]))}"
            elif "devices" in message and "cpu" in message.lower():
                # ddp.yaml's devices: -1 (every GPU) and devices 0 have no meaning on the CPU.
                message = message.rstrip(".") + "; on the CPU, --trainer.devices is the number of processes: give 1, or e.g. 2 for DDP"
            raise ConfigError(f"invalid trainer settings: {message}") from err
        self._start_wandb(trainer, run, settings.wandb)
        return trainer

    def _start_wandb(self, trainer: Trainer, run: Any, setting: str) -> None:
        """Start the run's W&B logger, if any; on failure the run logs to CSV only.

        Only once the trainer accepted its settings: W&B says where it saves the run's data
        and that an upload command follows, untrue of a run refused before it trained (whose
        directory is removed).

        Args:
            trainer: the run's trainer, which holds the logger.
            run: the run, whose directory W&B writes into.
            setting: ``run.wandb``, which says why an offline run is offline.
        """
        wandb = next((logger for logger in self.loggers if isinstance(logger, WandbLogger)), None)
        if wandb is None:
            return
        problem = start_wandb(wandb, run.directory, setting)
        if problem:
            print(problem, file=sys.stderr)
            self.loggers.remove(wandb)
            trainer.loggers = self.loggers

    def _checkpoint(self, ckpt_path: str, weights_only: bool) -> dict[str, Any]:
        """The checkpoint's contents: those read for its task settings, else loaded now."""
        if self._hparams_from is not None and self._hparams_from[0] == ckpt_path:
            return self._hparams_from[1]
        return load_checkpoint(ckpt_path, weights_only=weights_only)

    def _take_other_datamodule_preprocessing(self, checkpoint: dict[str, Any]) -> None:
        """Prepare inputs as in training when the checkpoint was trained with another datamodule class.

        Lightning restores only the state saved under the datamodule's own class name (it does
        so itself then); for another class the preprocessing that class recorded is taken here,
        before the evaluation directory exists, so a datamodule that prepares inputs otherwise
        is refused and leaves nothing behind.
        """
        from lightning_hw.data.base import SplitDataModule, recorded_data_state

        datamodule = self.datamodule
        if not isinstance(datamodule, SplitDataModule):
            return
        if type(datamodule).__qualname__ in checkpoint:
            return
        state = recorded_data_state(checkpoint, datamodule)
        if state is not None:
            datamodule.load_state_dict(state)

    def _config_section(self, name: str) -> dict[str, Any] | None:
        """The ``name:`` section (``model``, ``data``) of the resolved config, as plain values."""
        chosen = self.config[self.subcommand] if self.subcommand else self.config
        try:
            section = yaml.safe_load(self.parser_of(self.subcommand).dump(chosen, skip_none=False)).get(name)
        except Exception:  # noqa: BLE001 - only used to describe the model in messages and checkpoints
            return None
        return section if isinstance(section, dict) else None

    def _wandb_name(self) -> str:
        run = self.run
        if run.mode == "evaluate":
            return "/".join(p for p in (run.group, run.name, run.directory.name) if p)
        return f"{run.group}/{run.name}"

    def _wandb_id(self) -> str | None:
        """The W&B run a resumed run continues (an evaluation or a new run starts its own)."""
        from lightning_hw.runs.files import WANDB_ID_FILE

        id_file = self.run.run_dir / WANDB_ID_FILE
        if self.run.mode == "resume" and id_file.is_file():
            return id_file.read_text().strip() or None
        return None

    def _check_data(self) -> None:
        """Load the data now, before the run directory and W&B exist, so bad data leaves nothing behind.

        Only our datamodules, whose ``setup`` keeps what it loaded (Lightning's own call is
        then free); a plugin's may not be written that way. Not in a job started by
        torchrun/SLURM, whose processes would all download at once.
        """
        from lightning_hw.data.base import SplitDataModule

        datamodule = self.datamodule
        if not isinstance(datamodule, SplitDataModule) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return
        datamodule.prepare_data()
        datamodule.setup(self.subcommand)

    def run_subcommand(self, subcommand: str) -> None:
        run = self.run
        if run.note:
            _say(run.note)
        if run.mode == "evaluate":
            scored = f"; epoch {run.scored[0]}, step {run.scored[1]}" if run.scored is not None else ""
            _say(f"Evaluation directory: {run.directory} (weights: {run.ckpt_path or 'untrained'}{scored})")
        elif run.mode != "scratch":
            _say(f"Run directory: {run.directory}")
        if run.mode == "resume" and run.ckpt_path and not is_verbose():  # Lightning says it with --verbose
            _say(f"Restoring states from the checkpoint path at {run.ckpt_path}")
        if run.mode == "resume" and subcommand == "fit":
            from lightning_hw.runs.files import penalty_in_train_loss_note

            note = penalty_in_train_loss_note(run.directory, self.model)
            if note:
                _say(note)
        if subcommand == "fit" and hasattr(self.datamodule, "note_random_state"):
            self.datamodule.note_random_state()  # before Lightning's DDP re-seeds: the order one process draws
        try:
            with child_failures_handled_by(self.child_interrupted), evaluation_warnings_filtered(subcommand != "fit"):
                super().run_subcommand(subcommand)
        except RuntimeError as err:
            if "Error(s) in loading state_dict" not in str(err):
                raise
            ckpt_path = self.trainer.ckpt_path or self.config_init[subcommand].get("ckpt_path")
            raise ConfigError(mismatch_message(ckpt_path, err)) from err
        except ValueError as err:  # torch's Optimizer.load_state_dict, in the first step of a fit from a checkpoint
            if "loaded state dict" not in str(err) or "parameter group" not in str(err):
                raise
            ckpt_path = self.trainer.ckpt_path or self.config_init[subcommand].get("ckpt_path")
            raise ConfigError(other_optimizer_message(ckpt_path)) from err
        WATCH.raise_swallowed()  # a stop a finalizer swallowed ends the command before its results are kept
        WATCH.finishing = True  # the work is done: a signal now no longer undoes or fails it
        if run.mode == "evaluate":
            caveats = [*getattr(self.datamodule, "split_caveats", []), *getattr(self.model, "evaluation_caveats", [])]
            run.record_caveats(caveats)
            note_caveats_in_wandb(self.loggers, caveats)
        run.commit(self.trainer)  # a fit with no step to train (e.g. resuming a finished run) commits too
        pruned = _pruning_that_stopped(self.trainer)
        if pruned is not None:  # stopped early by its search's pruner: neither failed nor a full run
            run.finish("pruned", self.trainer, pruned_at_epoch=pruned.pruned_at)
        else:
            run.finish("finished", self.trainer, stopped_by=self._stopped_by)
        finish_wandb(self.loggers)
        # Last, after W&B's own summary, so the run's location is the final line a user sees.
        _say(run.saved_line())

    def predict(self, model: LightningModule, datamodule: LightningDataModule | None = None, **kwargs: Any):
        """``trainer.predict``, on ``--predict_from`` files when given, else on the datamodule's predict split."""
        from lightning_hw.deploy.predict import name_prediction_rows, predict_step_on_inputs

        if self._predict_ids is not None:
            name_prediction_rows(self._predict_ids, self.trainer)
        with predict_step_on_inputs(model):
            return self.trainer.predict(model, datamodule=datamodule, **kwargs)

    def after_fit(self) -> None:
        """Say what ended training before its last epoch, then test the best checkpoint
        (unless ``run.test_after_fit`` is false) and print the result."""
        pruned = _pruning_that_stopped(self.trainer) is not None
        if self.run.mode != "scratch" and not self.trainer.interrupted and not pruned:  # "pruned" is its status
            stopped = stop_reason(self.trainer)
            if stopped is not None:
                self._stopped_by, limit = stopped
                train_on = f"; to train on, run: {self.run.resume_command()} {limit}" if limit else ""
                _say(f"Training stopped after step {self.trainer.global_step}: {self._stopped_by}{train_on}")
        if self.config_init.fit.run.test_after_fit and not self.trainer.interrupted and _has_test(self):
            checkpoint = self.trainer.checkpoint_callback
            best = checkpoint.best_model_path if checkpoint is not None else ""
            self.run.testing_after_fit = True
            # The test's rows (metrics.csv, W&B) name the epoch and step of the weights scored, not where training ended.
            position = checkpoint_file_position(best) if best else None
            with logged_position(self.trainer, position):
                # Lightning's table (16 digits) only with --verbose; the line below has 4.
                logged = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=is_verbose())
            if position is not None:
                self.run.tested_again(self.trainer, position)
            summary = _test_summary(logged[0] if logged else {})
            if not best:
                source = "final weights"
            elif checkpoint.monitor is None:  # a ModelCheckpoint of the user's that keeps the newest file
                source = f"newest checkpoint {Path(best).name}, kept by a ModelCheckpoint that monitors no metric"
            else:
                source = f"best checkpoint {Path(best).name}"
            _say(f"Test ({source}): {summary}")


def _no_gpu_advice(config_files: list[str]) -> str:
    """What to do on a machine without a GPU, naming the given config files that ask for one.

    The advice was to drop ``gpu.yaml`` and ``ddp.yaml`` whichever asked for the GPU: it left
    ``multinode.yaml`` or a config of the user's in place, and named presets never given.
    """
    asking = [path for path in config_files if _asks_for_a_gpu(Path(path))]
    if not asking:  # from the command line
        return "this machine has no CUDA GPU (torch.cuda.is_available() is False): give --trainer.accelerator cpu to train on the CPU"
    runs = [path for path in asking if is_run_record(Path(path).parent)]
    if runs:
        return (f"this machine has no CUDA GPU (torch.cuda.is_available() is False), and run {Path(runs[0]).parent} "
                "trained on one (its config.yaml says trainer.accelerator gpu): continue it on a machine with a GPU")
    return (f"this machine has no CUDA GPU (torch.cuda.is_available() is False): drop {', '.join(asking)} "
            f"({'they ask' if len(asking) > 1 else 'it asks'} for one: trainer.accelerator gpu) to train on the CPU")


def _asks_for_a_gpu(config_file: Path) -> bool:
    try:
        content = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError):
        return False
    trainer = content.get("trainer") if isinstance(content, dict) else None
    return isinstance(trainer, dict) and str(trainer.get("accelerator")).lower() in ("gpu", "cuda")


def config_files_of(chosen: Any) -> list[str]:
    """The ``--config`` files of one subcommand's parsed config, in order."""
    return [str(p) for p in (chosen.get("config") or [])]


def _planned_run(subcommand: str, chosen: Any, settings: RunConfig) -> Run:
    """:func:`~lightning_hw.runs.plan_run` of one subcommand's parsed config (``settings``: its ``run:``, instantiated)."""
    trainer = chosen.get("trainer")
    fast_dev_run = bool(trainer.get("fast_dev_run")) if trainer is not None else False
    return plan_run(settings, subcommand, config_files_of(chosen), chosen.get("ckpt_path"), fast_dev_run)


def check_fine_tuning(callbacks: list[Any], model: LightningModule) -> None:
    """Refuse a fine-tuning schedule the task's backbone cannot follow, before the run directory exists.

    Lightning runs the callback's own check in ``fit``'s set-up, after the command had printed
    ``Run directory: ...``, a directory that the refusal then removed. A task without a backbone
    yet (one built later, in ``configure_model``) is left to that set-up.

    Args:
        callbacks: the command's callbacks (``None`` entries are skipped); each FreezeBackbone is checked.
        model: the task, its net built.

    Raises:
        ConfigError: the schedule's own refusal (e.g. a ``from_layer`` past the backbone's end).
    """
    from lightning_hw.callbacks.finetuning import FreezeBackbone, backbone_of

    schedules = [c for c in callbacks if isinstance(c, FreezeBackbone)]
    if not schedules:
        return
    try:
        backbone = backbone_of(model)
    except ConfigError:
        return
    for schedule in schedules:
        schedule.check_schedule(backbone)


def _refuse_a_run_with_nothing_to_train(trainer_cfg: Any) -> None:
    """Refuse a new run of ``max_epochs`` (or ``max_steps``) 0: it would train nothing.

    It was kept as a ``finished`` run of 0 epochs, its test scored the untrained weights, and its
    ``status.json`` named a resume command for a ``last.ckpt`` that never existed.
    """
    for key in ("max_epochs", "max_steps"):
        if trainer_cfg.get(key) == 0:
            raise ConfigError(
                f"trainer.{key} is 0: this fit would train nothing, and a run that never trained is not kept",
                f"give --trainer.{key} 1 or more",
            )


def _check_job_size(trainer: Trainer) -> None:
    """Refuse process settings that fail or hang once training starts, before it does.

    ``devices``/``num_nodes`` that do not match the job torchrun or SLURM started: Lightning
    checks them only inside ``fit`` (its launcher's ``validate_settings``), where a mismatch ends
    every process with a traceback; checked here, it is one ``error:`` line.

    Raises:
        ValueError: Lightning's message, with how to set the two for torchrun.
        ConfigError: ``num_nodes`` > 1 in a process that no launcher started (no node would join), or a
            strategy that pickles the task to start its processes (``ddp_spawn``).
    """
    method = process_start_method(trainer)
    if method in ("spawn", "forkserver"):
        # These pickle the task and data for the new processes; the tasks' loss heads (lambdas)
        # cannot be pickled, and the processes ended with a PicklingError traceback.
        raise ConfigError(
            f"the strategy starts its processes by {method} (as ddp_spawn does), pickling the task and data, which "
            "lightning-hw's tasks do not support: use --trainer.strategy ddp (the same processes, each started as "
            "a new program), or ddp_notebook in a notebook"
        )
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is None:
        return
    if not environment.creates_processes_externally:
        # Lightning starts this machine's processes itself, and the other nodes' processes only
        # if they were started by hand with NODE_RANK and MASTER_ADDR set: without these it waited
        # in the rendezvous for nodes that never come, where neither Ctrl-C nor SIGTERM stop it.
        manual = any(key in os.environ for key in ("NODE_RANK", "GROUP_RANK", "MASTER_ADDR"))
        if trainer.num_nodes > 1 and not manual:
            raise ConfigError(
                f"--trainer.num_nodes {trainer.num_nodes}, but this process was started neither by torchrun nor by "
                "SLURM, so no other node will join and it would wait for them for good: start it on every node with "
                "torchrun or srun (README, \"Many machines\"), or set --trainer.num_nodes 1 to train on this machine"
            )
        return  # Lightning starts the processes itself: their number follows the settings
    try:
        environment.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)
    except ValueError as err:
        if "HINT" in str(err):  # SLURM's message says what to set
            raise
        raise ValueError(
            f"{err} Set --trainer.devices to torchrun's --nproc-per-node and --trainer.num_nodes to its --nnodes"
        ) from err


def _warn_if_autocast_is_off(trainer: Trainer) -> None:
    """Say so when ``gpu.yaml``'s mixed precision is tried on the CPU (``--trainer.accelerator cpu``).

    ``AutoMixedPrecision`` autocasts on the GPU; on the CPU accelerator Lightning turns that off,
    and the run trained in float32 while the model summary spoke of ``bf16-mixed``.
    """
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.utilities import rank_zero_warn

    from lightning_hw.errors import LightningHWWarning
    from lightning_hw.precision import AutoMixedPrecision

    plugin = trainer.precision_plugin
    if isinstance(plugin, AutoMixedPrecision) and plugin.device != "cpu" and isinstance(trainer.accelerator, CPUAccelerator):
        rank_zero_warn(
            "AutoMixedPrecision (gpu.yaml) mixes precision on the GPU: on the CPU this run trains in float32; for "
            "bfloat16 mixed precision on the CPU add --trainer.plugins null --trainer.precision bf16-mixed",
            category=LightningHWWarning,
        )


def _warn_if_processes_exceed_cores(trainer: Trainer) -> None:
    """Say so when DDP on the CPU starts more processes than this machine has cores for.

    ``--trainer.devices 8`` on the CPU is eight training processes; on two cores they take turns,
    so the run is slower than one process, not faster, and Lightning starts them without a word.
    It is allowed (to try DDP on a laptop), so it is a warning, not a refusal.
    """
    from lightning.pytorch.accelerators import CPUAccelerator

    from lightning_hw.errors import LightningHWWarning

    # The cores this process may run on (a job's share under SLURM or taskset), not all the machine's.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    processes = trainer.num_devices
    if isinstance(trainer.accelerator, CPUAccelerator) and processes > cores:
        rank_zero_warn(
            f"--trainer.devices {processes} on the CPU starts {processes} training processes, more than the {cores} CPU "
            f"core(s) this run may use: they share the cores, so training is slower, not faster; give --trainer.devices "
            f"{cores} or fewer",
            category=LightningHWWarning,
        )


def _test_summary(logged: dict[str, Any]) -> str:
    """What a test logged, for the line that ends ``fit``: the ``test/*`` metrics, else all it logged.

    A plain LightningModule may log ``test_accuracy`` rather than the project's ``test/acc``; its
    numbers are shown all the same, and a test that logged nothing says so instead of an empty line.

    Args:
        logged: the metrics ``trainer.test`` returned for its one dataloader.
    """
    results = {k: float(v) for k, v in logged.items() if k.startswith("test/")} or {k: float(v) for k, v in logged.items()}
    if not results:
        return "no metric logged (the task's test_step logs none)"
    return ", ".join(f"{k} = {v:.4f}" for k, v in sorted(results.items()))


def _run_words(args: list[str]) -> str | None:
    """``the run runs/<group>/<name>`` whose recorded ``config.yaml`` the command line reads, if any."""
    runs = [Path(path).parent for _, path in config_arguments(args) if Path(path).name == CONFIG_FILE]
    run = next((run for run in runs if is_run_record(run)), None)  # not a project's own config.yaml
    return f"the run {run}" if run is not None else None


def _check_linked_names(task_cls: type) -> None:
    """Refuse a ``linked_from_data`` name that is no init argument of the task.

    Such a name was skipped without a word (a link needs a datamodule attribute of that name,
    and jsonargparse dropped the value meant for an argument the task does not take): the task
    kept its default for the argument meant, a net of the wrong size that failed with a shape
    traceback in the first step, or class names that were silently not the data's. A task whose
    ``__init__`` takes ``**kwargs`` may pass any name on, so it is not checked. Nor is a name that
    the base class defining the list takes: a subclass that leaves that argument out of its own
    ``__init__`` (a Classifier that needs no ``class_names``) inherited the list, typo-free, and
    the link is dropped as it always was. Unless the subclass takes an argument of its own close
    to it: ``n_classes`` for ``num_classes`` is that argument renamed, and dropping its link
    trained a net of the default size on data of another, without a word.

    Raises:
        ConfigError: the name, the task's arguments, and what to change.
    """
    import difflib

    parameters = _init_parameters(task_cls)
    if parameters is None:
        return
    definer = next((c for c in type.mro(task_cls) if "linked_from_data" in vars(c)), task_cls)
    base_parameters = _init_parameters(definer) if definer is not task_cls else parameters
    # the subclass's own arguments, not its base's: where a renamed one would be
    own = [p for p in parameters if base_parameters is not None and p not in base_parameters]
    for name in getattr(task_cls, "linked_from_data", ()):
        if name in parameters:
            continue
        inherited = base_parameters is None or name in base_parameters
        if inherited and not difflib.get_close_matches(name, own, n=1):
            continue  # left out of the subclass, not renamed there: no value to link
        close = difflib.get_close_matches(name, list(parameters), n=1)
        raise ConfigError(
            f"{task_cls.__name__}.linked_from_data names {name}, which is not an init argument of {task_cls.__name__}"
            + (f" (did you mean {close[0]}?)" if close else ""),
            f"list only arguments of its __init__ ({', '.join(parameters)}) there, each filled from the datamodule "
            "attribute of the same name (plugins/README.md, section 5)",
        )


def _init_parameters(cls: type) -> dict[str, Any] | None:
    """The init arguments of ``cls`` by name; ``None`` when any name may be given (``**kwargs``) or none can be read."""
    import inspect

    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read (a C extension class): nothing to check
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return dict(parameters)


def _linked_value(data: Any, name: str, task: str) -> Any:
    """``data.<name>`` for the task's init argument of that name (``linked_from_data``).

    Raises:
        ConfigError: the datamodule does not implement it.
        ConstructorError: its property raised (a plugin's bug): one line naming where, not
            jsonargparse's traceback of the link that called it.
    """
    try:
        return getattr(data, name)
    except NotImplementedError as err:
        detail = f": {err}" if str(err) else ""
        raise ConfigError(
            f"datamodule {type(data).__name__} does not implement {name} (NotImplementedError{detail}), which "
            f"the task {task} takes from the data (its linked_from_data); define {name} in {type(data).__name__}, "
            "e.g. as a property (plugins/README.md, section 3)"
        ) from None
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - said in one line; --debug shows the traceback
        raise ConstructorError(err) from err


def _check_net(chosen: Any) -> None:
    """Refuse a net the task cannot call with the sizes (:func:`~lightning_hw.nets.unfit_net_message`).

    Raises:
        ConfigError: the net's first two init parameters cannot take ``input_shape`` and ``num_outputs``.
    """
    model = chosen.get("model") if chosen is not None else None
    init_args = model.get("init_args") if model is not None else None
    task = registry.import_class(str(model.get("class_path")), "task") if model is not None else None
    if task is None or init_args is None or init_args.get("net") is None:
        return
    from lightning_hw.nets import unfit_net_message

    message = unfit_net_message(task, init_args.net)
    if message:
        raise ConfigError(message)


def _refusing_optimizer(err: BaseException) -> tuple[str, str]:
    """``("optimizer", "SGD")`` or ``("lr_scheduler", "StepLR")``: the config key and class whose ``__init__`` raised ``err``.

    The outermost ``__init__`` in the traceback is the class being built (its base's may be the one raising);
    the optimizer is built first, so an error from no ``__init__`` at all is put down to it.
    """
    traceback = err.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        built = frame.f_locals.get("self") if frame.f_code.co_name == "__init__" else None
        if built is not None:
            return "optimizer" if isinstance(built, torch.optim.Optimizer) else "lr_scheduler", type(built).__name__
        traceback = traceback.tb_next
    return "optimizer", ""


def _lr_for_optimizer(chosen: Any) -> float | None:
    """The task's ``lr`` when the config also names an ``optimizer:`` (whose lr it then sets), else ``None``.

    Args:
        chosen: the parsed config of one subcommand.
    """
    if chosen is None or chosen.get("optimizer") is None or chosen.get("model") is None:
        return None
    init_args = chosen.model.get("init_args")
    return init_args.get("lr") if init_args is not None else None


def with_run_config(args: list[str]) -> list[str]:
    """``validate``/``test``/``predict`` without ``--config``: the config of the checkpoint's run.

    A checkpoint saved as ``runs/<group>/<name>/checkpoints/x.ckpt`` has its run's
    ``config.yaml`` beside it, which says which data and net it was trained with. ``fit``, which
    writes into a run, is not given one: it is refused with the command that was meant.
    """
    refuse_fit_without_config(args)
    if not args or args[0] not in ("validate", "test", "predict") or config_arguments(args):  # -c is --config too
        return args
    ckpt = next((value for _, value in option_values(args, "--ckpt_path")), None)
    if ckpt == "last" and not configures_the_model(args):
        # Else "the following arguments are required: data, model", which says nothing of the run's config.
        raise ConfigError(last_without_config(args))
    from lightning_hw.runs import run_of_checkpoint
    from lightning_hw.runs.files import CONFIG_FILE

    if ckpt and ckpt != "last":  # ``last`` with --model/--data: needs --run.name, checked once the command line is parsed
        # A mistyped file would otherwise end in "the following arguments are required: data,
        # model": without the run's config nothing says which data and net to build.
        check_ckpt_path(ckpt, args[0])
    run = run_of_checkpoint(ckpt)
    if run is None or not (run / CONFIG_FILE).is_file():
        if ckpt and Path(ckpt).is_file() and not configures_the_model(args):
            raise ConfigError(no_run_config(ckpt) if run is not None else outside_any_run(f"{command_name()} {args[0]}", ckpt))
        return args
    _say(f"Using the config of the checkpoint's run: {run / CONFIG_FILE}")
    return [args[0], "--config", str(run / CONFIG_FILE), *args[1:]]


def ckpt_path_after_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--ckpt_path`` moved behind the ``--config`` files that follow it.

    jsonargparse lets a later ``--config`` replace what an earlier option set, and a run's
    saved ``config.yaml`` holds ``ckpt_path: null``: ``predict --ckpt_path F --config
    runs/g/n/config.yaml`` would drop ``F`` and then ask for a checkpoint. A checkpoint named
    on the command line is meant whatever the order; other options keep jsonargparse's rule.

    Args:
        args: the command line after the program name.

    Returns:
        ``args`` itself when no ``--config`` follows a ``--ckpt_path``, else the reordered list.
    """
    # The positions of the --ckpt_path options (``--ckpt_path F`` takes two, ``--ckpt_path=F`` one).
    taken = []
    for i, _ in option_values(args, "--ckpt_path"):
        if i == len(args):  # a --ckpt_path with no value: left where it is, for the parser to refuse
            continue
        taken += [i] if args[i].startswith("--ckpt_path=") else [i - 1, i]
    last_config = max((index for index, _ in config_arguments(args)), default=-1)
    if not taken or last_config < max(taken):
        return args
    return [a for i, a in enumerate(args) if i not in taken] + [args[i] for i in sorted(taken)]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _pruning_that_stopped(trainer: Trainer) -> OptunaPruning | None:
    """The search's pruning callback when it stopped this trial, else ``None``."""
    return next((c for c in trainer.callbacks if isinstance(c, OptunaPruning) and c.pruned), None)


def _say(message: str) -> None:
    """Print once per job: in DDP only the first process speaks."""
    if rank_zero_only.rank == 0:
        print(message)


def _this_process_says(err: UserError) -> bool:
    """Whether this process prints ``err``'s line (under DDP, every process runs the command).

    A :class:`ConfigError` comes from what every process reads alike (the command line, the
    config files, the checkpoint), so each raises the same one: the first process's line is the
    job's (two processes printed it twice). Any other error (a damaged file in one process's share
    of the data) may be that process's own, so each process says its own.
    """
    return rank_zero_only.rank == 0 or not isinstance(err, ConfigError)


def _has_test(cli: HWCLI) -> bool:
    from lightning.pytorch.utilities.model_helpers import is_overridden

    return is_overridden("test_step", cli.model) and (
        cli.datamodule is None or is_overridden("test_dataloader", cli.datamodule)
    )


def list_components() -> int:
    """Print every registered task and datamodule, its distribution and description (no cache)."""
    from lightning_hw.cli.listing import print_table, table_rows

    print_table(table_rows(registry.discover()))
    return 0


def report_plugin_problems(debug: bool = False) -> None:
    """Import every plugin now; print each broken one as one ``warning:`` line (its traceback with --debug).

    Python's own warning format would prefix a file and line of ours, which says nothing
    about the plugin; other warnings raised while importing plugins are shown as usual.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", registry.PluginLoadWarning)
        components = registry.discover()
    for record in caught:
        if issubclass(record.category, registry.PluginLoadWarning):
            print(f"warning: {record.message}", file=sys.stderr)
        else:
            warnings.showwarning(record.message, record.category, record.filename, record.lineno)
    if debug:
        for comp in components:
            if comp.details:
                print(f"--debug: traceback of plugin {comp.distribution!r}:\n{comp.details}", file=sys.stderr)


def list_main(argv: list[str]) -> int:
    """``list``: the registered tasks and datamodules (it takes no arguments)."""
    return list_components()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m lightning_hw`` and the ``lightning-hw`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    verbose, args = pop_verbose_flag(args)
    set_verbose(verbose)
    command = SUBCOMMANDS.get(args[0]) if args else None
    if command is None or command.loads_plugins:
        report_plugin_problems(debug)
    try:
        if command is not None and command.target is not None:
            sys.exit(run_own_subcommand(args[0], args[1:], debug))
        HWCLI(args=args)
    except UserError as err:
        if debug:
            raise
        if _this_process_says(err):
            print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except RunInterrupted as stop:
        if rank_zero_only.rank == 0:  # every DDP process stops; the first one speaks
            print(getattr(stop, "message", f"interrupted by {stop.signal_name} before the run started; nothing was saved"), file=sys.stderr)
        sys.exit(stop.exit_code)
    except Exception as err:
        own = command is not None and command.target is not None  # fit and the others say so in HWCLI
        full, unwritable = disk_full_in(err), not_writable_in(err) if own else None
        if (full is None and unwritable is None) or debug:
            raise
        # Our own subcommands (export, report, study): each writes its files atomically or
        # removes them on failure, so what was there before is as it was.
        if full is not None:
            print(f"error: {full.strerror or _first_line(full)}: {args[0]} stopped; free space on that disk and run it again", file=sys.stderr)
            sys.exit(1)
        # A study's --root (or another folder a command writes) on a read-only disk: it was a traceback.
        print(f"error: cannot write {unwritable.filename} ({unwritable.strerror}): {args[0]} stopped; "
              "give it a folder you can write to", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:
        # Our own subcommands (export, report, study) run without the run's signal watch; each
        # undoes its unfinished work itself (export: no file, no eval directory) and may say so
        # in the interrupt's message (report: "runs/s/report is as it was").
        if debug:
            raise
        done = f"; {stop}" if str(stop) else ""
        print(f"interrupted by SIGINT (Ctrl-C): {args[0] if args else 'the command'} stopped{done}", file=sys.stderr)
        sys.exit(130)


def _raised_by_a_module(error: BaseException) -> bool:
    """Whether ``error`` was raised in the code of an ``nn.Module``: the task or its net, built with a checkpoint's settings.

    jsonargparse builds the datamodule, the task and the trainer's callbacks in one pass, so
    only where the error was raised tells a checkpoint that does not fit the config's data from
    a datamodule's or callback's refusal of its own settings (``fold 7`` of 3, ``num_samples: -1``).
    """
    frame = error.__traceback__
    while frame is not None:
        if isinstance(frame.tb_frame.f_locals.get("self"), torch.nn.Module):
            return True
        frame = frame.tb_next
    return False
