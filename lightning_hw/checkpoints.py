"""Checkpoints written atomically and read safely, and which model a checkpoint belongs to.

Safety: ``torch.load`` unpickles, and a pickle can name any Python callable (a
``__reduce__`` returning ``os.system``). Every checkpoint and weight file is therefore
read with ``weights_only=True`` (tensors, numbers, strings and containers only); a file
that needs more is refused with one line, and is loaded only when the user says
``--weights_only false`` for a file they trust.

Atomicity: Lightning's own save writes a temporary file in the system temp directory and
moves it into place; across file systems that move is a copy, so a crash mid-copy leaves a
truncated ``last.ckpt``. :class:`SafeCheckpointIO` writes the temporary file next to the
target, syncs it, and renames it over the target (atomic on POSIX and Windows).
"""

from __future__ import annotations

import copy
import inspect
import io
import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning_utilities.core.apply_func import apply_to_collection

from lightning_hw.atomic import atomic_open
from lightning_hw.errors import ConfigError, LightningHWWarning
from lightning_hw.runs.files import checkpoint_names

#: the flag that allows an unsafe (code-executing) load, as the user types it
UNSAFE_FLAG = "--weights_only false"
#: the first value of torch.save's legacy (non-zip) format; its file format, stable since torch 0.1
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: pickles in a legacy file before the tensors' storages: magic number, protocol, system info, data
LEGACY_PICKLES = 4


def refusal_message(path: str | os.PathLike, err: Exception) -> str:
    """Why a weights-only load of ``path`` was refused, and what to do."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = f" ({found.group(1)})" if found else ""
    return (
        f"refused to load {path}: it holds Python objects{what} beyond tensors and plain values, and "
        f"unpickling them could run code; if you trust where the file came from, add {UNSAFE_FLAG}"
    )


def load_checkpoint(path: str | os.PathLike, weights_only: bool = True, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint or weight file, safely unless told otherwise.

    Args:
        path: the ``.ckpt``/``.pt``/``.pth`` file.
        weights_only: refuse anything but tensors and plain values (the default). ``False``
            unpickles arbitrary objects: only for files from a trusted source.
        map_location: where tensors go (default: CPU).

    Raises:
        ConfigError: the file is missing, unreadable, or refused as unsafe.
    """
    if not Path(path).is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    if not _looks_like_torch_file(path):
        # torch reports any unreadable file as "weights only load failed"; the advice to turn
        # safe loading off would be wrong for a file that is no checkpoint at all.
        raise ConfigError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint (neither a whole "
            "zip archive from torch.save nor a pickle); is it the right file, and was it copied whole?"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        # torch says "weights only load failed" for a damaged pickle too; only a whole one can
        # have been refused for what it holds, so only then is the unsafe flag the advice.
        if weights_only and _pickle_is_whole(path):
            raise ConfigError(refusal_message(path, err)) from err
        if weights_only:
            raise ConfigError(
                f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
                "(its pickle data is damaged); is it the right file, and was it copied whole?"
            ) from err
        raise ConfigError(f"cannot read checkpoint {path}: {_first_line(err)}") from err
    except Exception as err:  # noqa: BLE001 - torch reports a damaged zip as OSError, KeyError, RuntimeError...
        raise ConfigError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(err).__name__}: {_first_line(err)})"
        ) from err


def _looks_like_torch_file(path: str | os.PathLike) -> bool:
    """``torch.save`` writes a zip archive (or, in its legacy format, pickles starting with its magic number)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as file:
        try:
            # pickletools only decodes the opcodes: nothing in the file is run.
            values = [arg for opcode, arg, _ in pickletools.genops(file) if opcode.name.startswith("LONG")]
        except Exception:  # noqa: BLE001 - any decoding failure: not a pickle
            return False
    return values == [LEGACY_MAGIC]


def _pickle_is_whole(path: str | os.PathLike) -> bool:
    """Whether the checkpoint's pickle data decode to their end (decoded only; nothing is run)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl")
                streams, count = io.BytesIO(archive.read(name)), 1
        else:
            streams, count = io.BytesIO(Path(path).read_bytes()), LEGACY_PICKLES
        for _ in range(count):
            for _ in pickletools.genops(streams):  # stops after the pickle's STOP
                pass
    except Exception:  # noqa: BLE001 - a pickle that cannot be decoded is damaged, whatever the reason
        return False
    return True


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic saves and weights-only loads by default.

    Args:
        pinned: ``(path, contents)`` of a checkpoint this command has read already: Lightning's
            load of that path gets these contents (once) instead of reading the file again.
            Another process may replace the file in between (a run still training rewrites
            its ``last.ckpt``); the weights restored must be the ones the command checked and
            records (their epoch and step), not a later epoch's.
    """

    def __init__(self, pinned: tuple[str | os.PathLike, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self._pinned = pinned

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote: fsspec transactions
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        with atomic_open(path, "wb") as file:
            torch.save(checkpoint, file)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if self._pinned is not None and _same_file(path, self._pinned[0]):
            checkpoint, self._pinned = self._pinned[1], None  # handed over: not held once Lightning has it
            return checkpoint
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only is not False)
        location = map_location if map_location is not None else (lambda storage, loc: storage)
        return load_checkpoint(path, weights_only=weights_only is not False, map_location=location)


def _same_file(path: Any, other: str | os.PathLike) -> bool:
    """Whether two local paths name the same file (``runs/x`` and ``./runs/x`` do)."""
    if "://" in str(path):
        return False
    return Path(path).resolve() == Path(other).resolve()


def snapshot(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``checkpoint`` that later training cannot change: tensors copied to CPU, containers deep-copied.

    A checkpoint dict holds the live parameter and optimizer tensors (and, e.g.,
    ModelCheckpoint's live ``best_k_models`` dict). The tensors go to CPU memory rather
    than being cloned where they are, so a GPU keeps no second copy of its weights.
    """
    copies: dict[int, Any] = {}

    def copy_tensor(tensor: torch.Tensor) -> torch.Tensor:
        copied = tensor.detach().to("cpu", copy=True)
        copies[id(copied)] = copied  # deepcopy below keeps these as they are
        return copied

    return copy.deepcopy(apply_to_collection(checkpoint, torch.Tensor, copy_tensor), memo=copies)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# -- which model a checkpoint belongs to ---------------------------------------------------------


def run_config_of(ckpt_path: str | os.PathLike) -> Path | None:
    """The ``config.yaml`` of the run a checkpoint was saved in (``<run>/checkpoints/x.ckpt``)."""
    candidate = Path(ckpt_path).parent.parent / "config.yaml"
    return candidate if candidate.is_file() else None


def describe_checkpoint(ckpt_path: str | os.PathLike, checkpoint: dict[str, Any] | None = None) -> str:
    """One phrase naming the model a checkpoint holds.

    E.g. ``a Classifier(num_classes=2, ...) with net MLP(hidden=[32])``: the task and its sizes
    from the checkpoint's hyperparameters, the net from the model config stored in the
    checkpoint (older checkpoints: from their run's ``config.yaml``).
    """
    if checkpoint is None:
        try:
            checkpoint = load_checkpoint(ckpt_path)
        except ConfigError:
            checkpoint = {}
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    task = str(hparams.get("_class_path") or "model").rsplit(".", 1)[-1]
    shown = {k: v for k, v in hparams.items() if not k.startswith("_") and k not in ("class_names", "lr")}
    text = f"a {task}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"
    model = (checkpoint.get("lightning_hw") or {}).get("model")
    if not isinstance(model, dict):
        model = _model_of_run_config(ckpt_path)
    net = describe_net(model)
    return f"{text} with net {net}" if net else text


def describe_net(model_section: dict[str, Any] | None) -> str | None:
    """``MLP(hidden=[128], ...)`` from a config's ``model:`` section, or ``None`` when it names no net."""
    net = ((model_section or {}).get("init_args") or {}).get("net") if isinstance(model_section, dict) else None
    if not isinstance(net, dict) or not net.get("class_path"):
        return None
    args = ", ".join(f"{k}={v!r}" for k, v in (net.get("init_args") or {}).items())
    return f"{net['class_path'].rsplit('.', 1)[-1]}({args})"


def _model_of_run_config(ckpt_path: str | os.PathLike) -> dict[str, Any] | None:
    return _run_config_section(ckpt_path, "model")


def _run_config_section(ckpt_path: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The ``name:`` section of the ``config.yaml`` of the checkpoint's run, or ``None``."""
    config = run_config_of(ckpt_path)
    if config is None:
        return None
    try:
        section = (yaml.safe_load(config.read_text()) or {}).get(name)
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return section if isinstance(section, dict) else None


def changed_data_settings(ckpt_path: str | os.PathLike, data_section: dict[str, Any] | None) -> list[str]:
    """The data settings given that differ from those of the checkpoint's run, as ``name 'run's' -> 'given'``.

    A net's input and output sizes come from the data (``num_words``, ``image_size``...), so
    a checkpoint that does not fit a config naming the same net was usually given other data
    settings beside its run's own config; the message names them.

    Args:
        ckpt_path: the checkpoint, inside its run's ``checkpoints/`` folder.
        data_section: the configured ``data:`` section (``class_path`` and ``init_args``).
    """
    saved = _run_config_section(ckpt_path, "data")
    if saved is None or not isinstance(data_section, dict):
        return []
    if saved.get("class_path") != data_section.get("class_path"):
        short = [str(s.get("class_path")).rsplit(".", 1)[-1] for s in (saved, data_section)]
        return [f"data {short[0]!r} -> {short[1]!r}"]
    theirs, mine = saved.get("init_args") or {}, data_section.get("init_args") or {}
    return [f"{key} {theirs[key]!r} -> {value!r}" for key, value in mine.items() if key in theirs and theirs[key] != value]


def check_fits(
    ckpt_path: str | os.PathLike,
    model: torch.nn.Module,
    model_section: dict[str, Any] | None,
    weights_only: bool = True,
    data_section: dict[str, Any] | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> None:
    """Refuse, before anything is written, a checkpoint whose weights do not fit the configured model.

    Args:
        ckpt_path: the checkpoint to load.
        model: the configured task, built (its net sized from the data).
        model_section: the config's ``model:`` section (describes the configured net).
        weights_only: load safely (see :func:`load_checkpoint`).
        data_section: the config's ``data:`` section; data settings that differ from the
            checkpoint's run are named (they size the net).
        checkpoint: its contents, when loaded already (else it is loaded here).

    Raises:
        ConfigError: a weight is missing, extra, or of another shape; the message describes the
            checkpoint's model from the checkpoint and the configured one from the config.
    """
    if checkpoint is None:
        checkpoint = load_checkpoint(ckpt_path, weights_only=weights_only)
    saved = checkpoint.get("state_dict")
    if not isinstance(saved, dict):
        return  # not a Lightning checkpoint of a task; Lightning explains what it misses
    own = model.state_dict()
    problems = []
    for key, tensor in saved.items():
        if key not in own:
            problems.append(f"{key} is in the checkpoint but not in the model")
        elif _shape(own[key]) is not None and _shape(own[key]) != _shape(tensor):
            problems.append(f"{key}: {_shape(tensor)} in the checkpoint, {_shape(own[key])} in the model")
    problems += [f"{key} is in the model but not in the checkpoint" for key in own if key not in saved]
    if not problems:
        return
    configured = describe_net(model_section)
    held = describe_checkpoint(ckpt_path, checkpoint)
    same_net = not configured or held.endswith(f" with net {configured}")
    asks = "" if same_net else f"; the config asks for net {configured}"
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    changed = changed_data_settings(ckpt_path, data_section) if same_net else []
    if changed:  # the run's config with other data settings: say which, not "use the config" again
        advice = f"data settings differ from the run's (the data sizes the net): {', '.join(changed)}; leave them as the run had them"
    elif not same_net and run_config_of(ckpt_path):
        advice = f"{config_advice(ckpt_path)}, leaving its net as it is"
    else:
        advice = config_advice(ckpt_path)
    raise ConfigError(f"checkpoint {ckpt_path} does not fit the configured model: it holds {held}{asks} ({problems[0]}{more}); {advice}")


def checkpoint_position(checkpoint: dict[str, Any]) -> tuple[int, int] | None:
    """The ``(epoch, step)`` a Lightning checkpoint was taken at, as its run's rows count them (``None`` for a bare weight file)."""
    from lightning_hw._compat.lightning import logged_step

    epoch, step = checkpoint.get("epoch"), logged_step(checkpoint)
    if step is None:
        step = checkpoint.get("global_step")
    if isinstance(epoch, int) and isinstance(step, int):
        return epoch, step
    return None


def checkpoint_file_position(path: str | os.PathLike) -> tuple[int, int] | None:
    """:func:`checkpoint_position` of a checkpoint file, read without loading its tensors (memory-mapped).

    ``None`` for a file that cannot be read that way (a bare weight file, another format).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - only a position is asked for; the caller goes on without one
        return None
    return checkpoint_position(checkpoint) if isinstance(checkpoint, dict) else None


def _shape(tensor: Any) -> list[int] | None:
    try:
        return list(tensor.shape)
    except (AttributeError, ValueError, RuntimeError):  # an uninitialised (lazy) parameter has no shape yet
        return None


def mismatch_message(ckpt_path: str | os.PathLike, err: BaseException, checkpoint: dict[str, Any] | None = None) -> str:
    """Explain a ``load_state_dict`` failure: the checkpoint was trained with another model."""
    details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
    first = details[0].rstrip(".") if details else _first_line(err)
    first = re.sub(
        r"copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, "
        r"the shape in current model is torch\.Size\((\[[^\]]*\])\)",
        r"\1 in the checkpoint, \2 in the model",
        first,
    )
    return (
        f"checkpoint {ckpt_path} does not fit the configured model: it holds "
        f"{describe_checkpoint(ckpt_path, checkpoint)} ({first}); {config_advice(ckpt_path)}"
    )


def other_optimizer_message(ckpt_path: str | os.PathLike) -> str:
    """A checkpoint whose optimizer state has other parameter groups than this run's optimizer.

    torch refuses to load it in the first training step ("loaded state dict contains a parameter
    group that doesn't match the size of optimizer's group"): e.g. a run without FreezeBackbone
    (one group for every weight) continued by a config with it (the frozen backbone left out).
    """
    return (
        f"checkpoint {ckpt_path} holds an optimizer state of other parameter groups than this run's optimizer "
        "(a FreezeBackbone in one of the two runs only, or another optimizer set-up), so training cannot go on "
        f"from it; {config_advice(ckpt_path)}, or train without --ckpt_path"
    )


def unfit_settings_message(ckpt_path: str | os.PathLike, checkpoint: dict[str, Any], reason: str) -> str:
    """A checkpoint whose task settings this config cannot build (e.g. another experiment's)."""
    reason = reason.strip().splitlines()[0] if reason.strip() else "it does not fit"
    return (
        f"checkpoint {ckpt_path} holds {describe_checkpoint(ckpt_path, checkpoint)}, which does not fit "
        f"this config ({reason}); {config_advice(ckpt_path)}"
    )


class CheckpointSettingsWarning(LightningHWWarning):
    """Task settings of the command line or config that a checkpoint's own settings replace."""


def replaced_settings(configured: Any, saved: dict[str, Any], task_cls: type | None) -> list[str]:
    """The task settings asked for that the checkpoint's replace, as ``name 'asked' -> 'saved'``.

    A task is rebuilt as it was trained, so ``--model.init_args.head x`` beside a checkpoint
    trained with another head changes nothing; saying so keeps the evaluation's record true.
    Settings linked from the data, left at the class's default, or not plain values (nets,
    lists of objects) are not compared.

    Args:
        configured: the config's ``model`` section (``class_path`` and ``init_args``).
        saved: the checkpoint's ``hyper_parameters``.
        task_cls: the task class the checkpoint names, for its defaults and data-linked arguments.
    """
    init_args = configured.get("init_args") if configured is not None else None
    if not init_args or task_cls is None:
        return []
    plain = (str, int, float, bool, type(None), list, tuple)
    linked = set(getattr(task_cls, "linked_from_data", ()))
    try:
        defaults = {name: p.default for name, p in inspect.signature(task_cls).parameters.items()}
    except (TypeError, ValueError):
        defaults = {}
    same = lambda a, b: _as_lists(a) == _as_lists(b)  # noqa: E731 - YAML gives lists where hparams keep tuples
    replaced = []
    for name, value in saved.items():
        if name.startswith("_") or name in linked or name not in init_args:
            continue
        asked = init_args[name]
        if not isinstance(asked, plain) or not isinstance(value, plain) or same(asked, value):
            continue
        if name in defaults and same(asked, defaults[name]):
            continue
        replaced.append(f"{name} {asked!r} -> {value!r}")
    return replaced


def _as_lists(value: Any) -> Any:
    return [_as_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def other_task_message(ckpt_path: str | os.PathLike, held: str, configured: str | None, config: str) -> str | None:
    """Say that a checkpoint holds another task than the config configures, or ``None`` when it does not.

    Said before any weight is compared: another task's weights differ everywhere, and a message
    about its net (``does not fit ... net SmallCNN``) hid that the whole experiment was another.

    Args:
        ckpt_path: the checkpoint.
        held: the task class path the checkpoint was saved with (its ``_class_path``).
        configured: the task class path the config names (``None``: it names none).
        config: the config in words, for the message (a file, or "the config").
    """
    from lightning_hw import registry

    held_name, configured_name = (str(path).rsplit(".", 1)[-1] for path in (held, configured or held))
    held_cls, configured_cls = (registry.import_class(str(path), "task") for path in (held, configured or held))
    if held_cls is not None and configured_cls is not None:
        same = held_cls is configured_cls  # a class renamed with its old name kept as an alias is the same task
    else:
        same = held_name == configured_name
    if same:
        return None
    return f"{ckpt_path} holds a {held_name} but {config} configures a {configured_name}"


def config_advice(ckpt_path: str | os.PathLike) -> str:
    """What to run a checkpoint with: its run's ``config.yaml`` when it has one."""
    config = run_config_of(ckpt_path)
    return f"run with --config {config}" if config else "use the config the checkpoint was trained with"


def check_ckpt_path(ckpt_path: str | None, subcommand: str, run: Any = None) -> None:
    """Fail early, in one line, on a ``--ckpt_path`` that cannot work.

    Args:
        ckpt_path: the value given (a file, ``last`` or ``best``), or ``None``.
        subcommand: ``fit``, ``validate``, ``test`` or ``predict``.
        run: the ``run:`` settings (a ``RunConfig`` or namespace with ``name``, ``root``, ``group``).
    """
    if not ckpt_path or ckpt_path in ("hpc",) or str(ckpt_path).startswith("registry:"):
        return
    name = getattr(run, "name", None)
    if ckpt_path == "last":
        if name is None:
            raise ConfigError(
                "--ckpt_path last continues a named run in its own directory: add --run.name NAME "
                "(the name of the run to continue, as in runs/<group>/NAME)"
            )
        return
    if ckpt_path == "best":
        raise ConfigError(
            "--ckpt_path best only means something right after fit in the same command; give the file, "
            "e.g. runs/<group>/<name>/checkpoints/best-epoch012.ckpt"
            + (" (to continue a run use --ckpt_path last)" if subcommand == "fit" else "")
        )
    path = Path(ckpt_path)
    if path.is_file():
        return
    folder = path.parent
    present = checkpoint_names(folder)
    there = f" ({folder} has: {', '.join(present)})" if present else ""
    raise ConfigError(f"checkpoint not found: {ckpt_path}{there}")


def build_task(ckpt_path: str | os.PathLike, checkpoint: dict[str, Any], config_path: str | os.PathLike | None = None):
    """Rebuild the task a checkpoint was trained as, with its trained weights, without the dataset.

    The checkpoint's hyperparameters give the task class and its data-dependent sizes; the
    net (a factory, not stored in the hyperparameters) comes from the run's ``config.yaml``
    or ``config_path``.

    Args:
        ckpt_path: the checkpoint file (for messages and to find its run's config).
        checkpoint: its loaded contents (see :func:`load_checkpoint`).
        config_path: the config it was trained with; default: ``<run>/config.yaml``.

    Raises:
        ConfigError: no config found, or the config and checkpoint do not describe one model.
    """
    from jsonargparse import ArgumentError, ArgumentParser
    from lightning.pytorch import LightningModule

    from lightning_hw import registry
    from lightning_hw.errors import user_error_in

    config_file = Path(config_path) if config_path else run_config_of(ckpt_path)
    if config_path and not config_file.is_file():  # it said "no config.yaml next to its run" of a run that had one
        raise ConfigError(f"config {config_file} not found; pass --config with the config {ckpt_path} was trained with "
                          "(default: its run's config.yaml)")
    if config_file is None or not config_file.is_file():
        raise ConfigError(
            f"cannot tell which net {ckpt_path} holds: no config.yaml next to its run; "
            "pass --config with the config it was trained with"
        )
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {config_file}: {_first_line(err)}") from None
    model_config = config.get("model") or {}
    if isinstance(model_config, str):
        model_config = {"class_path": model_config}
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None) or model_config.get("class_path")
    if not class_path:
        raise ConfigError(f"{ckpt_path} does not say which task it holds and {config_file} names no model")
    other_task = other_task_message(ckpt_path, class_path, model_config.get("class_path"), str(config_file))
    if other_task:
        raise ConfigError(f"{other_task}; pass --config with the config it was trained with")
    init_args = dict(model_config.get("init_args") or {})
    init_args.update({k: v for k, v in hparams.items() if not k.startswith("_")})
    registry.discover()  # short class names in configs resolve only once plugins are imported
    if not registry.resolves("task", class_path):  # renamed, moved or uninstalled since: say so, as `test` does
        hint = registry.renamed_class_hint(class_path, f"checkpoint {ckpt_path}")
        raise ConfigError(f"{registry.unknown_name_message('task', class_path)}{hint}")
    init_args.update(_linked_sizes(registry.import_class(class_path, "task"), init_args, config_file))
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningModule, "model", required=True)
    try:
        parsed = parser.parse_object({"model": {"class_path": class_path, "init_args": init_args}})
        task = parser.instantiate_classes(parsed).model
    except (ArgumentError, ValueError, TypeError) as err:
        user_error = user_error_in(err)
        if user_error is not None:
            raise user_error from err
        raise ConfigError(
            f"cannot rebuild {describe_checkpoint(ckpt_path, checkpoint)} from {config_file}: {_first_line(err)}"
        ) from None
    try:
        task.load_state_dict(checkpoint["state_dict"])
    except KeyError:
        raise ConfigError(f"{ckpt_path} has no model weights (no state_dict); is it a Lightning checkpoint?") from None
    except RuntimeError as err:
        raise ConfigError(mismatch_message(ckpt_path, err, checkpoint)) from None
    return task.eval()


def _linked_sizes(task_cls: type, init_args: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """The task's ``linked_from_data`` arguments that neither the checkpoint nor the config holds, from the data.

    A task whose ``__init__`` does not call ``self.save_hyperparameters()`` trains, tests and
    resumes (the CLI links these from the datamodule each time), but its checkpoints record no
    sizes: rebuilt without them the net has the defaults' shapes, and the weights do not fit.
    The run's datamodule gives the values ``fit`` linked (its size properties are cheap).

    Args:
        task_cls: the task class.
        init_args: the task's arguments known so far (config and checkpoint).
        config_file: the config the run was trained with.
    """
    missing = [name for name in getattr(task_cls, "linked_from_data", ()) if name not in init_args]
    if not missing:
        return {}
    return sizes_from_data(build_datamodule(config_file), missing)


def sizes_from_data(datamodule: Any, names: list[str]) -> dict[str, Any]:
    """The values ``fit`` links from ``datamodule`` into the task's arguments ``names`` (its size properties).

    A name the datamodule does not give is left out: the task's default then applies, as in ``fit``.
    """
    linked = {}
    for name in names:
        try:
            linked[name] = getattr(datamodule, name)
        except (AttributeError, NotImplementedError):  # not a size this data gives
            continue
    return linked


def datamodule_of(data_config: dict[str, Any]):
    """The datamodule a config's ``data:`` section (``{class_path, init_args}``) configures, built as ``fit`` builds it (not set up)."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    return parser.instantiate_classes(parser.parse_object({"data": data_config})).data


def build_datamodule(config_path: str | os.PathLike):
    """The datamodule a run's ``config.yaml`` configures (not set up), e.g. for ``export``'s test-split check.

    Raises:
        ConfigError: the config cannot be read or names no usable datamodule.
    """
    from jsonargparse import ArgumentError

    from lightning_hw import registry
    from lightning_hw.errors import user_error_in
    from lightning_hw.runs.files import is_run_record

    config_file = Path(config_path)
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {config_file}: {_first_line(err)}") from None
    data_config = config.get("data")
    if not data_config:
        raise ConfigError(f"{config_file} configures no datamodule (no data: section)")
    if isinstance(data_config, str):
        data_config = {"class_path": data_config}
    registry.discover()
    class_path = str(data_config.get("class_path") or "")
    if class_path and not registry.resolves("datamodule", class_path):  # renamed, moved or uninstalled since
        run = config_file.parent
        hint = registry.renamed_class_hint(class_path, f"the run {run}" if is_run_record(run) else None)
        raise ConfigError(f"{registry.unknown_name_message('datamodule', class_path)}{hint}")
    try:
        return datamodule_of(data_config)
    except (ArgumentError, ValueError, TypeError) as err:
        user_error = user_error_in(err)
        if user_error is not None:
            raise user_error from err
        raise ConfigError(f"cannot build the datamodule of {config_file}: {_first_line(err)}") from None
