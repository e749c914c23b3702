"""The command line: LightningCLI over the entry-point registry, plus our own subcommands.

    python -m lightning_hw fit --config configs/quickstart.yaml
    python -m lightning_hw list
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_only

from lightning_hw import registry
from lightning_hw.callbacks.progress import default_progress_bar
from lightning_hw.cli_names import KEYS, requested_class_names
from lightning_hw.distributed import shared_run_directory
from lightning_hw.errors import ConfigError, UserError
from lightning_hw.runs import RunConfig, checkpoint_callback, finish_loggers, make_loggers

# The task's own configure_optimizers is only the fallback when a config has no `optimizer:`.
warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden by")

DESCRIPTION = (
    "lightning-hw: train and compare the course experiments. Subcommands: fit, validate, test, "
    "predict (LightningCLI) and list (registered tasks and datamodules). Add --debug for tracebacks."
)


def _import_class(class_path: str) -> type | None:
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return None


class SaveRunConfig(SaveConfigCallback):
    """Writes ``config.yaml`` into the run directory and puts the full config into the W&B run."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.experiment.config.update(resolved, allow_val_change=True)


class HWCLI(LightningCLI):
    """LightningCLI with registry-resolved short names, data-to-task links and run directories.

    Args:
        args: the command line (``None``: ``sys.argv[1:]``), e.g. ``["fit", "--config", "c.yaml"]``.
        **kwargs: passed to :class:`~lightning.pytorch.cli.LightningCLI`.
    """

    def __init__(self, args: list[str] | None = None, **kwargs: Any) -> None:
        registry.discover()  # short class names resolve only once the classes are imported
        self.run_dir: Path | None = None
        self.loggers: list = []
        parser_kwargs = {"exit_on_error": False, "description": DESCRIPTION, **kwargs.pop("parser_kwargs", {})}
        kwargs.setdefault("model_class", LightningModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(args=args, parser_kwargs=parser_kwargs, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunConfig, "run")

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
        args = list(sys.argv[1:] if args is None else args)
        try:
            first = parser.parse_args([a for a in args if not a.startswith("--print_config")])
            if self._add_data_links(first):
                self.config = parser.parse_args(args)
            else:
                self.config = parser.parse_args(args) if any(a.startswith("--print_config") for a in args) else first
        except ArgumentError as err:
            raise ConfigError(self._explain(err, args)) from None

    def _add_data_links(self, config: Any) -> bool:
        """Link every ``linked_from_data`` argument of the task that the datamodule provides."""
        subcommand = config.get("subcommand")
        if not subcommand:
            return False
        chosen = config[subcommand]
        task_cls = _import_class(chosen.model.class_path)
        data_cls = _import_class(chosen.data.class_path)
        names = [n for n in getattr(task_cls, "linked_from_data", ()) if hasattr(data_cls, n)]
        sub_parser = self._subcommand_parsers[subcommand]
        for name in names:
            sub_parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        return bool(names)

    @staticmethod
    def _explain(err: ArgumentError, args: list[str]) -> str:
        for key, name in requested_class_names(args).items():
            kind = KEYS[key]
            if not registry.resolves(kind, name):
                return registry.unknown_name_message(kind, name)
        return f"{err}\n(run with --help for the accepted options)"

    # -- running -------------------------------------------------------------------------------

    def before_instantiate_classes(self) -> None:
        """Let ``--model.init_args.lr`` set the learning rate of the configured optimizer too."""
        chosen = self.config[self.subcommand] if self.subcommand else self.config
        init_args = chosen.model.get("init_args")
        lr = init_args.get("lr") if init_args is not None else None
        if lr is not None and chosen.get("optimizer") is not None:
            chosen.optimizer.init_args.lr = lr

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, writing into the run directory with our loggers and checkpoint."""
        chosen = self.config_init[self.subcommand] if self.subcommand else self.config_init
        run: RunConfig = chosen.run
        config_files = [str(p) for p in (chosen.get("config") or [])]
        self.run_dir = shared_run_directory(run, config_files, chosen.get("ckpt_path"))
        trainer_cfg = chosen.trainer
        kwargs.setdefault("default_root_dir", str(self.run_dir))
        if trainer_cfg.get("logger") in (None, True):
            self.loggers = make_loggers(run, self.run_dir)
            kwargs["logger"] = self.loggers
        callbacks = list(trainer_cfg.get("callbacks") or [])
        wants_checkpoints = trainer_cfg.get("enable_checkpointing") is not False
        if wants_checkpoints and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            monitor = run.monitor or getattr(self.model, "monitor", "val/loss")
            mode = getattr(self.model, "monitor_mode", "min") if run.monitor is None else _mode_for(monitor)
            callbacks.append(checkpoint_callback(self.run_dir, monitor, mode))
        if trainer_cfg.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(default_progress_bar())
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        _say(f"Run directory: {self.run_dir}")
        try:
            super()._run_subcommand(subcommand)
        finally:
            finish_loggers(self.loggers)

    def after_fit(self) -> None:
        """Test the best checkpoint (unless ``run.test_after_fit`` is false), then say where the run is."""
        if self.config_init.fit.run.test_after_fit and not self.trainer.interrupted and _has_test(self):
            checkpoint = self.trainer.checkpoint_callback
            best = checkpoint.best_model_path if checkpoint is not None else ""
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
            results = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("test/")}
            summary = ", ".join(f"{k} = {v:.4f}" for k, v in sorted(results.items()))
            source = f"best checkpoint {Path(best).name}" if best else "final weights"
            _say(f"Test ({source}): {summary}")
        _say(f"Run saved in {self.run_dir} (config.yaml, metrics.csv, checkpoints/)")


def _say(message: str) -> None:
    """Print once per job: in DDP only the first process speaks."""
    if rank_zero_only.rank == 0:
        print(message)


def _mode_for(monitor: str) -> str:
    """Whether higher is better for a metric named by the user (losses and errors go down)."""
    name = monitor.rsplit("/", 1)[-1].lower()
    return "min" if any(word in name for word in ("loss", "err", "nme", "mae", "mse", "rmse")) else "max"


def _has_test(cli: HWCLI) -> bool:
    from lightning.pytorch.utilities.model_helpers import is_overridden

    return is_overridden("test_step", cli.model) and (
        cli.datamodule is None or is_overridden("test_dataloader", cli.datamodule)
    )


def list_components() -> int:
    """Print every registered task and datamodule, its distribution and description."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lightning-hw tasks and datamodules")
    for column in ("kind", "name", "distribution", "description"):
        table.add_column(column)
    for comp in registry.discover():
        description = comp.description if comp.error is None else f"[red]failed to load: {comp.error}[/red]"
        table.add_row(comp.kind, comp.name, comp.distribution, description)
    Console(width=140).print(table)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m lightning_hw`` and the ``lightning-hw`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if args[:1] == ["list"]:
        sys.exit(list_components())
    try:
        HWCLI(args=args)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
