"""Each use of another library's private API (lightning_hw/_compat/) still works with the installed version.

A failure here names the attribute and the library version that changed it.
"""

from __future__ import annotations

import argparse
import inspect
import io
import subprocess
import sys
import traceback

import jsonargparse
import lightning
import pytest
import torch
import torchmetrics
import wandb
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import WandbLogger
from torch import nn

from lightning_hw._compat import argparse as compat_argparse
from lightning_hw._compat import lightning as compat
from lightning_hw._compat import torch as compat_torch
from lightning_hw._compat import torchmetrics as compat_torchmetrics

LIGHTNING = f"lightning {lightning.__version__}"


def tiny_trainer(tmp_path, **kwargs) -> Trainer:
    settings = dict(
        max_steps=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    return Trainer(**{**settings, **kwargs})


# -- lightning: loggers ------------------------------------------------------------------------


def test_wandb_logger_keeps_its_init_arguments_in_wandb_init(tmp_path):
    logger = WandbLogger(project="p", save_dir=str(tmp_path), mode="offline", anonymous=None)
    assert hasattr(logger, "_wandb_init"), f"{LIGHTNING}: WandbLogger._wandb_init is gone"
    compat.drop_wandb_anonymous(logger)
    assert "anonymous" not in logger._wandb_init


def test_started_wandb_run_is_none_until_started_and_then_the_run(tmp_path):
    logger = WandbLogger(project="p", save_dir=str(tmp_path), mode="offline")
    assert compat.started_wandb_run(logger) is None, f"{LIGHTNING}: WandbLogger._experiment changed"
    try:
        run = logger.experiment
        assert compat.started_wandb_run(logger) is run, f"wandb {wandb.__version__}"
    finally:
        wandb.finish()


# -- wandb -------------------------------------------------------------------------------------


def test_wandb_logs_its_run_to_a_file_handler_that_quiet_log_files_finds(tmp_path):
    import logging

    from lightning_hw._compat import wandb as wandb_compat

    logger = WandbLogger(project="p", save_dir=str(tmp_path), mode="offline")
    try:
        logger.experiment
        handlers = [
            h for h in logging.getLogger(wandb_compat.WANDB_LOGGER).handlers
            if isinstance(h, logging.FileHandler) and h.baseFilename.startswith(str(tmp_path))
        ]
        assert handlers, f"wandb {wandb.__version__}: no FileHandler of the run on the {wandb_compat.WANDB_LOGGER!r} logger"
        wandb_compat.quiet_log_files(tmp_path)
        assert all(h.handleError is wandb_compat._drop_record for h in handlers)

        class FullDisk(io.StringIO):
            def flush(self):
                raise OSError(28, "No space left on device")

        handlers[0].stream = FullDisk()
        handlers[0].close()  # raised, and cut W&B's finish short
    finally:
        wandb.finish()


# -- lightning: loops --------------------------------------------------------------------------


def test_a_keyboard_interrupt_in_fit_is_told_from_lightnings_exit(tmp_path):
    """Lightning turns a KeyboardInterrupt in fit into ``sys.exit(1)``; the CLI must still see it was one."""
    import signal

    class Interrupting(BoringModel):
        def training_step(self, batch, batch_idx):
            raise KeyboardInterrupt

    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(BaseException) as raised:
            tiny_trainer(tmp_path).fit(Interrupting())
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT from then on
    assert compat.keyboard_interrupted(raised.value), f"{LIGHTNING}: _call_and_handle_interrupt raised {raised.value!r}"
    assert not compat.keyboard_interrupted(SystemExit(1)) and not compat.keyboard_interrupted(RuntimeError())


@pytest.mark.parametrize("steps", [0, 3])
def test_batches_that_stepped_counts_optimizer_steps(tmp_path, steps):
    trainer = tiny_trainer(tmp_path, max_steps=steps or 1, limit_val_batches=0, enable_checkpointing=False)
    if steps:
        trainer.fit(BoringModel())
    assert compat.batches_that_stepped(trainer) == steps, f"{LIGHTNING}: epoch_loop._batches_that_stepped"


@pytest.mark.parametrize("max_steps, done", [(4, 1), (6, 3)])
def test_epoch_batches_done_counts_the_last_epochs_batches(tmp_path, max_steps, done):
    """2 epochs of 3 batches: max_steps 4 cuts the last epoch after 1 batch; 6 ends it whole."""
    trainer = tiny_trainer(tmp_path, max_epochs=2, max_steps=max_steps, limit_train_batches=3, limit_val_batches=0,
                           enable_checkpointing=False)
    trainer.fit(BoringModel())
    assert compat.epoch_batches_done(trainer) == done, f"{LIGHTNING}: epoch_loop.batch_progress.current.completed"


@pytest.mark.parametrize("resumed", [False, True])
def test_epoch_start_skipped_inside_a_resumed_epoch_only(tmp_path, resumed):
    """Epochs of 3 batches: a checkpoint after step 2 resumes inside epoch 0, where Lightning calls no on_train_epoch_start."""
    class SaveAtStep2(lightning.pytorch.Callback):  # as a signal's last.ckpt: inside training, not after fit
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                trainer.save_checkpoint(tmp_path / "at.ckpt")

    seen = []

    class Probe(lightning.pytorch.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append(compat.epoch_start_skipped(trainer))

        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(trainer.current_epoch)

    settings = dict(max_steps=4, limit_train_batches=3, limit_val_batches=0, enable_checkpointing=False)
    if resumed:
        tiny_trainer(tmp_path, **settings, callbacks=[SaveAtStep2()]).fit(BoringModel())
    tiny_trainer(tmp_path, **settings, callbacks=[Probe()]).fit(BoringModel(), ckpt_path=tmp_path / "at.ckpt" if resumed else None)
    # resumed: no hook for epoch 0 (the rest of its batches), then epoch 1's
    assert seen == ([True, 1] if resumed else [False, 0, 1]), f"{LIGHTNING}: fit_loop.restarted_mid_epoch"


def test_finetuning_groups_are_saved_and_given_back_by_name(tmp_path):
    """BaseFinetuning's groups by parameter name: in its checkpoint state, and in the callback a fit from it restores."""
    from lightning.pytorch.callbacks import BaseFinetuning

    class Unfreeze(BaseFinetuning):  # the last layer frozen, then unfrozen as a group of its own at the first epoch
        def freeze_before_training(self, pl_module):
            self.freeze(pl_module.layer)

        def finetune_function(self, pl_module, epoch, optimizer):
            self.unfreeze_and_add_param_group(pl_module.layer, optimizer)

    class Drop(BoringModel):  # a head on `layer`; an optimizer over the trainable parameters only, as FreezeBackbone leaves it
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 2)

        def forward(self, x):
            return self.head(self.layer(x))

        def configure_optimizers(self):
            return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1)

    seen = []

    class Probe(Unfreeze):
        def on_fit_start(self, trainer, pl_module):
            seen.append((compat.finetuning_restarting(self), compat.finetuning_groups(self.state_dict())))
            super().on_fit_start(trainer, pl_module)

    probe = Probe()
    first = tiny_trainer(tmp_path, max_steps=1, callbacks=[probe])
    first.fit(Drop())
    assert seen == [(False, {})], f"{LIGHTNING}: BaseFinetuning._restarting"
    first.save_checkpoint(tmp_path / "unfrozen.ckpt")
    state = torch.load(tmp_path / "unfrozen.ckpt", weights_only=True)["callbacks"][probe.state_key]
    groups = compat.finetuning_groups(state)
    assert [group["params"] for group in groups[0]] == [["head.weight", "head.bias"], ["layer.weight", "layer.bias"]], (
        f"{LIGHTNING}: BaseFinetuning.state_dict()['internal_optimizer_metadata']"
    )
    tiny_trainer(tmp_path, max_steps=2, callbacks=[Probe()]).fit(Drop(), ckpt_path=tmp_path / "unfrozen.ckpt")
    assert seen[1] == (True, groups), f"{LIGHTNING}: BaseFinetuning.load_state_dict"


def test_logged_position_is_where_rows_are_logged_and_is_put_back(tmp_path):
    logged = []

    class Rows(lightning.pytorch.loggers.CSVLogger):
        def log_metrics(self, metrics, step=None):
            logged.append((metrics.get("epoch"), step))

    class LogsTestLoss(BoringModel):
        def test_step(self, batch, batch_idx):
            self.log("test/loss", self.step(batch))

    trainer = tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0, enable_checkpointing=False, logger=Rows(tmp_path))
    model = LogsTestLoss()
    trainer.fit(model)
    ended = trainer.current_epoch, compat.batches_that_stepped(trainer)
    logged.clear()
    with compat.logged_position(trainer, (0, 1)):
        trainer.test(model, verbose=False)
    assert logged and set(logged) == {(0, 1)}, f"{LIGHTNING}: test rows no longer logged at current_epoch/_batches_that_stepped"
    assert (trainer.current_epoch, compat.batches_that_stepped(trainer)) == ended


class LogsEpochMean(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("seen", float(batch_idx + 1), on_step=False, on_epoch=True, batch_size=2)
        return out


def test_epoch_results_hold_the_running_sums_of_epoch_logs(tmp_path):
    seen = {}

    class Probe(lightning.pytorch.Callback):
        def on_train_batch_end(self, trainer, *args):
            item = compat.epoch_results(trainer).get("training_step.seen")
            assert item is not None, f"{LIGHTNING}: epoch_loop._results has no entry for a self.log(on_epoch=True)"
            seen["value"], seen["count"] = float(item.value), float(item.cumulated_batch_size)
            assert item.meta.is_mean_reduction and item.meta.on_epoch, f"{LIGHTNING}: _ResultMetric.meta changed"

    tiny_trainer(tmp_path, limit_val_batches=0, enable_checkpointing=False, callbacks=[Probe()]).fit(LogsEpochMean())
    # Sums weighted by batch size: (1*2 + 2*2) over 4 samples.
    assert seen == {"value": 6.0, "count": 4.0}, f"{LIGHTNING}: the running sums changed meaning"


def test_pending_loader_states_are_loaded_into_the_combined_loader(tmp_path):
    loaded = []

    class StatefulLoader(torch.utils.data.DataLoader):
        def state_dict(self):
            return {"position": 7}

        def load_state_dict(self, state):
            loaded.append(state)

    class Model(BoringModel):
        def train_dataloader(self):
            return StatefulLoader(torch.utils.data.TensorDataset(torch.randn(8, 32)), batch_size=2)

        def training_step(self, batch, batch_idx):
            return super().training_step(batch[0], batch_idx)

    class LoadAtStart(lightning.pytorch.Callback):
        def on_train_start(self, trainer, pl_module):
            compat.load_pending_loader_states(trainer)

    first = tiny_trainer(tmp_path, max_steps=4, limit_val_batches=0)
    first.fit(Model())
    ckpt = tmp_path / "end_of_epoch.ckpt"
    first.save_checkpoint(ckpt)
    tiny_trainer(tmp_path, max_steps=6, limit_val_batches=0, callbacks=[LoadAtStart()]).fit(Model(), ckpt_path=ckpt)
    assert {"position": 7} in loaded, f"{LIGHTNING}: fit_loop._combined_loader_states_to_load / _load_state_dicts changed"


def test_lightning_still_ends_a_loaders_workers_through_its_iterator_attribute():
    """``WorkersEndWithTheLoop``: the workers of a loader wrapping a ``DataLoader`` end when Lightning resets its loaders."""
    import multiprocessing

    from lightning.pytorch.utilities import CombinedLoader

    class Wrapper(compat.WorkersEndWithTheLoop):
        def __init__(self):
            self.loader = torch.utils.data.DataLoader(range(4), num_workers=1, persistent_workers=True)

        def __iter__(self):
            return iter(self.loader)

    wrapper = Wrapper()
    assert [int(x) for x in wrapper] == [0, 1, 2, 3]
    assert len(multiprocessing.active_children()) == 1
    CombinedLoader(wrapper).reset()
    assert wrapper.loader._iterator is None, f"{LIGHTNING}: CombinedLoader.reset no longer resets `_iterator`"
    assert multiprocessing.active_children() == [], f"{LIGHTNING}: CombinedLoader.reset no longer ends `_iterator`'s workers"


# -- lightning: checkpoints ----------------------------------------------------------------------


def test_checkpoint_hooks_are_called_where_model_checkpoint_saves_and_removes(tmp_path):
    for name in ("_save_checkpoint", "_remove_checkpoint", "_save_topk_checkpoint", "_should_save_on_train_epoch_end"):
        assert callable(getattr(ModelCheckpoint, name, None)), f"{LIGHTNING}: ModelCheckpoint.{name} is gone"
    calls = []

    class Recording(compat.CheckpointHooks):
        def write_checkpoint(self, trainer, filepath):
            calls.append(("write", filepath.rsplit("/", 1)[-1]))
            super().write_checkpoint(trainer, filepath)

        def delete_checkpoint(self, trainer, filepath):
            calls.append(("delete", filepath.rsplit("/", 1)[-1]))
            super().delete_checkpoint(trainer, filepath)

        def save_top_k_checkpoint(self, trainer, candidates):
            calls.append(("top_k", trainer.global_step))
            super().save_top_k_checkpoint(trainer, candidates)

    callback = Recording(dirpath=tmp_path, filename="{step}", monitor="step", mode="max", save_top_k=1, every_n_train_steps=1)
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0, callbacks=[callback]).fit(BoringModel())
    assert ("write", "step=1.ckpt") in calls and ("write", "step=2.ckpt") in calls, f"{LIGHTNING}: {calls}"
    assert ("delete", "step=1.ckpt") in calls, f"{LIGHTNING}: ModelCheckpoint no longer removes through _remove_checkpoint"
    assert ("top_k", 1) in calls, f"{LIGHTNING}: _save_topk_checkpoint is no longer called"
    trainer = Trainer(logger=False)
    for setting in (True, False):
        hooks = compat.CheckpointHooks(dirpath=tmp_path, save_on_train_epoch_end=setting)
        assert hooks.saves_on_train_epoch_end(trainer) is setting, f"{LIGHTNING}: _should_save_on_train_epoch_end"


def test_mark_saved_keeps_the_same_step_from_being_saved_twice(tmp_path):
    trainer = tiny_trainer(tmp_path)
    callback = compat.CheckpointHooks(dirpath=tmp_path)
    callback.mark_saved(trainer, "x.ckpt")
    assert callback._last_global_step_saved == trainer.global_step, f"{LIGHTNING}: ModelCheckpoint._last_global_step_saved"
    assert callback._last_checkpoint_saved == "x.ckpt", f"{LIGHTNING}: ModelCheckpoint._last_checkpoint_saved"


def test_dump_checkpoint_is_what_save_checkpoint_writes(tmp_path):
    trainer = tiny_trainer(tmp_path, enable_checkpointing=False)
    trainer.fit(BoringModel())
    dumped = compat.dump_checkpoint(trainer)
    trainer.save_checkpoint(tmp_path / "saved.ckpt")
    saved = torch.load(tmp_path / "saved.ckpt", weights_only=False)
    assert set(dumped) == set(saved), f"{LIGHTNING}: trainer._checkpoint_connector.dump_checkpoint changed"
    assert dumped["global_step"] == saved["global_step"] == 2


# -- lightning: hook name, CLI -------------------------------------------------------------------


def test_lightning_still_sets_the_hook_name_attribute_around_hooks(tmp_path):
    names = []

    class Watching(BoringModel):
        def __setattr__(self, name, value):
            if name == compat.HOOK_NAME_ATTRIBUTE:
                names.append(value)
            super().__setattr__(name, value)

    tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0, enable_checkpointing=False).fit(Watching())
    assert "training_step" in names, f"{LIGHTNING}: LightningModule.{compat.HOOK_NAME_ATTRIBUTE} is no longer set per hook"


def test_lightning_cli_still_calls_the_steps_cli_hooks_rename():
    for name in ("_parse_ckpt_path", "_run_subcommand", "_parser", "_add_configure_optimizers_method_to_model"):
        assert callable(getattr(LightningCLI, name, None)), f"{LIGHTNING}: LightningCLI.{name} is gone"
    source = inspect.getsource(LightningCLI.__init__)
    for call in ("self._parse_ckpt_path()", "self._run_subcommand("):
        assert call in source, f"{LIGHTNING}: LightningCLI.__init__ no longer calls {call}"
    call = "self._add_configure_optimizers_method_to_model(self.subcommand)"
    assert call in inspect.getsource(LightningCLI.instantiate_classes), f"{LIGHTNING}: instantiate_classes no longer calls {call}"
    assert inspect.signature(LightningCLI._run_subcommand).parameters.keys() == {"self", "subcommand"}, LIGHTNING


def test_cli_hooks_run_the_renamed_steps_and_expose_the_subcommand_parsers():
    calls = []

    class Recording(compat.CLIHooks):
        def load_checkpoint_settings(self):
            calls.append("checkpoint settings")
            super().load_checkpoint_settings()

        def run_subcommand(self, subcommand):
            calls.append(subcommand)

    cli = Recording(BoringModel, args=["fit", "--trainer.logger", "false"], save_config_callback=None)
    assert calls == ["checkpoint settings", "fit"], f"{LIGHTNING}: {calls}"
    assert set(cli.subcommand_parsers) >= {"fit", "validate", "test", "predict"}, f"{LIGHTNING}: _subcommand_parsers"
    assert cli.parser_of("fit") is cli.subcommand_parsers["fit"], f"{LIGHTNING}: LightningCLI._parser"


# -- torch, torchmetrics, argparse ---------------------------------------------------------------


def test_child_modules_are_the_direct_children():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    net.extra = None
    assert list(compat_torch.child_modules(net))[:2] == list(net.children()), f"torch {torch.__version__}: nn.Module._modules"


def test_restored_update_count_makes_a_metric_compute_its_restored_states():
    source = torchmetrics.SumMetric()
    source.update(torch.tensor(5.0))
    target = torchmetrics.SumMetric()
    for key, value in source.metric_state.items():
        setattr(target, key, value.clone())
    compat_torchmetrics.restore_update_count(target, source.update_count)
    version = f"torchmetrics {torchmetrics.__version__}"
    assert target.update_count == 1 and target.update_called, f"{version}: Metric._update_count"
    assert float(target.compute()) == 5.0, f"{version}: Metric._computed"


@pytest.mark.parametrize("parser_class", [argparse.ArgumentParser, jsonargparse.ArgumentParser])
def test_parser_actions_list_every_option(parser_class):
    parser = parser_class()
    parser.add_argument("--epochs", type=int)
    options = {o for action in compat_argparse.parser_actions(parser) for o in action.option_strings}
    assert "--epochs" in options, f"jsonargparse {jsonargparse.__version__}: ArgumentParser._actions"


class _FailingDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        from lightning_hw.errors import DataError

        raise DataError(f"cannot read image photos/cat.{index}.jpg: Truncated File Read; delete or replace the file")


def test_an_error_from_a_dataloader_worker_keeps_its_one_line_message():
    """``worker_error_original`` reads the message torch wraps around an error raised in a worker."""
    from lightning_hw.errors import DataError

    loader = torch.utils.data.DataLoader(_FailingDataset(), num_workers=1)
    with pytest.raises(DataError) as caught:
        next(iter(loader))
    message = str(caught.value)
    # The error's traceback holds the loader's iterator in reference cycles: left to the garbage collector,
    # which closes the iterator's queues before its __del__ tells the worker to stop, the worker's join
    # waited out torch's 5 s. Clearing the traceback's frames frees the iterator now, queues intact.
    traceback.clear_frames(caught.tb)
    assert message == "cannot read image photos/cat.0.jpg: Truncated File Read; delete or replace the file", (
        f"torch {torch.__version__} wraps a worker's error differently: {message[:300]}"
    )
    assert compat_torch.worker_error_original("Caught DataError elsewhere", DataError) is None


def test_the_recompile_limit_is_raised_never_lowered():
    """``allow_recompiles`` sets dynamo's per-function recompile limit, under its name in this torch."""
    from torch._dynamo import config

    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    # torch's own patch, which restores the setting (pytest's monkeypatch deletes it on undo,
    # which hides the setting from dynamo for the rest of the process)
    with config.patch({name: 8}):
        assert compat_torch.allow_recompiles(20) == 20 == getattr(config, name)
        assert compat_torch.allow_recompiles(4) == 20 == getattr(config, name)
    assert hasattr(config, name)


def test_inductor_says_whether_it_finds_a_cpu_compiler():
    """``missing_cpu_compiler`` asks inductor's own compiler search (``config.cpp.cxx``)."""
    import shutil

    from torch._inductor import config

    if shutil.which("g++") or shutil.which("clang++"):
        assert compat_torch.missing_cpu_compiler() is None
    with config.patch({"cpp.cxx": (None, "/nonexistent/g++")}):
        assert "C++ compiler" in compat_torch.missing_cpu_compiler()


def test_process_start_method_names_how_ddp_strategies_start_their_processes():
    from lightning.pytorch import Trainer

    methods = {
        name: compat.process_start_method(Trainer(accelerator="cpu", devices=2, strategy=name, logger=False))
        for name in ("ddp", "ddp_spawn", "ddp_fork")
    }
    assert methods == {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork"}
    assert compat.process_start_method(Trainer(accelerator="cpu", devices=1, logger=False)) is None


def test_the_lr_finders_bar_is_the_tqdm_of_its_module_and_is_put_back():
    from lightning.pytorch.tuner import lr_finder

    from lightning_hw._compat.lightning import lr_finder_progress_bar

    shown = lr_finder.tqdm
    with lr_finder_progress_bar(False):
        assert lr_finder.tqdm(total=1).disable
    assert lr_finder.tqdm is shown


def test_the_exit_functions_run_last_registered_first(tmp_path):
    """``atexit._run_exitfuncs``, run by a warm fork before ``os._exit``: in a fresh interpreter, as its exit would."""
    script = (
        "import atexit, sys\n"
        "from lightning_hw._compat.python import run_exit_functions\n"
        "atexit.register(print, 'first registered')\n"
        "atexit.register(print, 'last registered')\n"
        "run_exit_functions()\n"
        "sys.stdout.flush()\n"
        "import os; os._exit(0)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert ran.stdout.splitlines() == ["last registered", "first registered"]


def test_waiting_for_the_threads_ends_an_open_executor_and_joins_the_others(tmp_path):
    """``threading._shutdown``, run by a warm fork before its exit functions: an executor left open ends, a thread is joined."""
    script = (
        "import concurrent.futures, os, sys, threading, time\n"
        "from lightning_hw._compat.python import wait_for_threads\n"
        "pool = concurrent.futures.ThreadPoolExecutor(1)\n"
        "pool.submit(time.sleep, 0.2)\n"
        "pool.submit(print, 'queued task ran')\n"
        "threading.Thread(target=lambda: (time.sleep(0.5), print('thread joined'))).start()\n"
        "wait_for_threads()\n"
        "print('after')\n"
        "sys.stdout.flush()\n"
        "os._exit(0)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True, timeout=60)
    assert ran.stdout.splitlines() == ["queued task ran", "thread joined", "after"]


def test_a_failed_ddp_process_goes_to_the_handler_which_ends_the_others():
    """``child_failures_handled_by``: Lightning's launcher still starts its observer through the name replaced.

    The observer hands the failed process's exit code to the handler, ends the other processes
    still running and calls the ending the handler returned (Lightning's own would SIGKILL this process).
    """
    import threading

    from lightning.pytorch.strategies.launchers import subprocess_script
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    assert "_launch_process_observer(self.procs)" in inspect.getsource(_SubprocessScriptLauncher.launch), (
        f"{LIGHTNING}: the launcher no longer starts its observer with `_launch_process_observer(self.procs)`"
    )
    lightnings = subprocess_script._launch_process_observer
    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(130)"])
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    codes, ended = [], threading.Event()

    def handler(returncode):
        codes.append(returncode)
        return ended.set

    try:
        with compat.child_failures_handled_by(handler, period=0.1):
            subprocess_script._launch_process_observer([failed, waiting])
            assert ended.wait(30), "the handler's ending was not called"
        assert subprocess_script._launch_process_observer is lightnings
        assert codes == [130]
        assert waiting.wait(10) == -9  # ended as Lightning ends them: they wait in C++ calls that no signal breaks off
    finally:
        waiting.kill()
        failed.wait()
        waiting.wait()


# -- optuna ------------------------------------------------------------------------------------


def test_close_storage_closes_an_rdb_storages_connections_and_leaves_it_usable(tmp_path):
    import optuna

    from lightning_hw._compat.optuna import close_storage

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    optuna.create_study(storage=storage, study_name="s")
    assert storage.engine.pool.checkedin() > 0, f"optuna {optuna.__version__}: RDBStorage.engine holds no connection"
    close_storage(storage)
    assert storage.engine.pool.checkedin() == 0
    assert [s.study_name for s in storage.get_all_studies()] == ["s"]
