"""``export``: a trained checkpoint to an ONNX file that takes raw samples, checked on the test split.

    python -m lightning_hw export --ckpt_path runs/quickstart/r1/checkpoints/best-epoch012.ckpt
    python -m lightning_hw export --ckpt_path P --output model.onnx
    python -m lightning_hw export --ckpt_path P --bare true   # the net alone: inputs already preprocessed

The task is rebuilt from the checkpoint and its run's ``config.yaml``; the datamodule of that
config is set up, and the exported graph is its
:class:`~lightning_hw.data.preprocess.Preprocess` followed by the task's ``forward``: it takes
a raw sample in the units the data files store (images: pixel values 0-255, ``N x C x H x W``
at the training size, decoded and resized as the metadata says; tables: the feature columns)
with a dynamic batch dimension. The metadata states the input units and size, the decoding,
the mean/std, the class names, the task and what the outputs are, and no absolute path.

The file is then run with onnxruntime on the test split's raw samples and the test metric
(accuracy, or NME for landmarks) is computed from its outputs by the task's own ``test_step``
in Lightning's test loop (any ``LightningModule``, a ``Task`` or a plain one), next to
PyTorch's on the same split through the training data path; the export fails
when the two differ by more than 0.1 point or any output differs beyond a float tolerance.
By default the file goes to ``<run>/eval/export-<time>/`` (a new directory each time, with
``export.json`` recording the check), so an export never replaces an earlier one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_hw.checkpoints import build_datamodule, build_task, load_checkpoint, run_config_of
from lightning_hw.errors import ConfigError, ExportError, not_writable_in
from lightning_hw.deploy.predict import require_forward
from lightning_hw.runs.files import EVAL_DIR, recorded_directory, write_atomically

#: the exported file's test metric may differ from PyTorch's by at most this (0.1 point)
METRIC_TOLERANCE = 1e-3
#: every output must match PyTorch's within ``ATOL + RTOL * max|output|``
ATOL, RTOL = 1e-4, 1e-4
INSTALL_HINT = "export needs the onnx extra: pip install -e '.[onnx]' (onnx, onnxruntime, onnxscript)"


class RawInputModel(nn.Module):
    """What ships: raw sample -> the datamodule's preprocessing -> the task's ``forward``.

    Args:
        preprocess: the datamodule's :class:`~lightning_hw.data.preprocess.Preprocess`.
        task: the trained task.
    """

    def __init__(self, preprocess: nn.Module, task: nn.Module) -> None:
        super().__init__()
        self.preprocess, self.task = preprocess, task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task(self.preprocess(x))


def run_dir_of(ckpt_path: Path) -> Path:
    """``runs/g/n/checkpoints/x.ckpt`` -> ``runs/g/n``; elsewhere the checkpoint's folder."""
    return ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent


def new_export_dir(ckpt_path: Path) -> Path:
    """Claim ``<run>/eval/export-<time>/`` (``-1``, ``-2``... when taken); never an existing directory."""
    from lightning_hw.runs.naming import timestamp, unused_name

    base = run_dir_of(ckpt_path) / EVAL_DIR
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a read-only disk, another user's run: as fit, validate and test say it
        if not_writable_in(err) is None:
            raise
        raise ConfigError(
            f"cannot write folder {base} ({err.strerror})", "give --output FILE in a folder you can write to"
        ) from None
    while True:
        directory = base / unused_name(base, f"export-{timestamp()}")
        try:
            directory.mkdir()
            return directory
        except FileExistsError:  # another export claimed it between the check and the mkdir
            continue


def chosen_output(output: str | None, ckpt_path: Path) -> Path | None:
    """``--output``: a file, or a folder to write ``<checkpoint name>.onnx`` into; never an existing file.

    Raises:
        ConfigError: the file exists (an export does not replace files), or its folder does not
            (also a folder given with a trailing ``/``), or it lies in another run's directory
            (whose files are that run's record: the export would be taken for that run's model).
    """
    if not output:
        return None
    path = Path(output)
    # Path() drops a trailing separator: "exports/" must stay a folder, not become a file named "exports".
    if output.endswith(("/", os.sep)) and not path.is_dir():
        raise ConfigError(f"the folder --output {output} does not exist; create it first")
    if path.is_dir():
        path = path / f"{ckpt_path.stem}.onnx"
    record = recorded_directory(path)
    if record is not None and record.resolve() != run_dir_of(ckpt_path).resolve():
        raise ConfigError(
            f"--output {output} is inside {record}, another run's record, where this export of {ckpt_path} would be "
            "taken for that run's model; write it outside that run (or leave out --output: it goes into the "
            "checkpoint's own run)"
        )
    if path.exists():
        raise ConfigError(f"{path} exists and an export never replaces a file; give another --output or delete it")
    if not path.parent.is_dir():
        raise ConfigError(f"the folder of --output {path} does not exist; create it first")
    return path


def checkpoint_file(ckpt_path: str, config: str | None) -> Path:
    """``--ckpt_path`` as a file: the keywords ``last`` and ``best`` are refused, naming the file to give instead.

    ``predict``/``test`` take ``--config <run>/config.yaml --ckpt_path last``; export reads one
    file, so it names that file (in the run of ``config``, when it has one) rather than
    saying that no file ``last`` exists.

    Raises:
        ConfigError: ``ckpt_path`` is ``last`` or ``best`` and no such file exists here.
    """
    if ckpt_path not in ("last", "best") or Path(ckpt_path).exists():
        return Path(ckpt_path)
    pattern = "last.ckpt" if ckpt_path == "last" else "best-*.ckpt"
    folder = Path(config).parent / "checkpoints" if config else None
    found = sorted(folder.glob(pattern), key=lambda f: f.stat().st_mtime) if folder is not None and folder.is_dir() else []
    wanted = found[-1] if found else f"runs/<group>/<name>/checkpoints/{'last.ckpt' if ckpt_path == 'last' else 'best-epochNNN.ckpt'}"
    raise ConfigError(f"export takes a checkpoint file, not '{ckpt_path}': give --ckpt_path {wanted}")


def place_without_replacing(source: Path, target: Path) -> bool:
    """Rename ``source`` to ``target`` unless ``target`` exists (``False`` then, ``source`` untouched).

    ``Path.replace`` would overwrite a file that appeared since :func:`chosen_output` checked
    the name; a hard link fails instead, in one step. Where the file system has no hard
    links, the name is checked just before the rename.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some network or FUSE file systems)
        if target.exists():
            return False
        source.replace(target)
        return True
    source.unlink()
    return True


def keep_failed(partial: Path, output: Path) -> Path | None:
    """Keep a failed export's file as ``<stem>.failed.onnx`` (``.failed-1.onnx``... when taken), never replacing one."""
    if not partial.exists():
        return None
    suffix = 0
    while True:
        failed = output.with_name(f"{output.stem}.failed{'' if suffix == 0 else f'-{suffix}'}.onnx")
        if place_without_replacing(partial, failed):
            return failed
        suffix += 1


def portable_name(ckpt_path: Path) -> str:
    """The checkpoint as ``<group>/<run>/checkpoints/<file>`` (no absolute, machine-specific path)."""
    parts = ckpt_path.resolve().parts
    return "/".join(parts[-4:]) if ckpt_path.parent.name == "checkpoints" else ckpt_path.name


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int | None = None) -> None:
    """Write ``model.forward`` as ONNX with a dynamic batch dimension (the torch.export-based exporter)."""
    try:
        import onnxscript  # noqa: F401 - the exporter needs it; fail here with the install hint
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["input"],
        output_names=["output"],
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        verbose=False,
    )
    program.save(str(path))


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Store ``metadata`` in the ONNX file's ``metadata_props``."""
    import onnx

    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def onnx_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exported file as a function of a batch (onnxruntime, CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        try:
            (out,) = session.run(None, {name: x.detach().float().cpu().numpy()})
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ExportError(f"the exported {path} fails to run on a batch of {x.shape[0]}: {err}") from None
        return torch.from_numpy(out)

    return run


@contextlib.contextmanager
def forward_replaced(task: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Let ``task``'s own step and metric code score another implementation of its ``forward``."""
    task.forward = forward
    try:
        yield
    finally:
        del task.forward


def test_metrics(module: nn.Module, batches: list[tuple[torch.Tensor, ...]]) -> dict[str, float]:
    """What ``module`` logs as ``test/*`` on ``batches``, through Lightning's own test loop.

    Any ``LightningModule`` works: a :class:`~lightning_hw.tasks.base.Task` (which logs its
    epoch metrics in its own test-epoch hook) as well as a plain one logging with
    ``self.log`` in ``test_step``. The batches are already on the CPU, as the exported file
    runs there.
    """
    from lightning.pytorch import Trainer

    with _quiet_lightning():
        trainer = Trainer(
            accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )
        results = trainer.test(module, dataloaders=_Batches(batches), verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items() if k.startswith("test/")}


class _Batches:
    """Ready batches as one loader (Lightning would take a bare list for one loader per item)."""

    def __init__(self, batches: list[tuple[torch.Tensor, ...]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Keep the trainer's start-up lines (accelerator, devices) and its own deprecation notes out of export's output."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Lightning 2.6's test loop trips torch's pytree deprecation; nothing a user can change.
            warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec")
            yield
    finally:
        logger.setLevel(level)


def score_test_split(task, datamodule, onnx_forward, bare: bool) -> dict[str, Any]:
    """The task's test metrics from PyTorch (training data path) and from the exported file (raw inputs).

    Every test batch is read raw; PyTorch sees it as training would
    (``datamodule.model_batch``), the exported file sees the raw samples (or, ``bare``, the
    prepared ones). Both sets of outputs go through the task's own ``test_step`` in
    Lightning's test loop (:func:`test_metrics`), so the metric is computed exactly as
    ``test`` computes it, for a ``Task`` or any other ``LightningModule``.

    Returns:
        ``{"pytorch": {...}, "onnxruntime": {...}, "samples": n, "max_abs_difference": d}``.
    """
    pytorch_outputs: list[torch.Tensor] = []
    max_diff = 0.0

    def pytorch_forward(x: torch.Tensor) -> torch.Tensor:
        out = type(task).forward(task, x)
        pytorch_outputs.append(out.detach().float())
        return out

    def exported_forward(x: torch.Tensor) -> torch.Tensor:
        nonlocal max_diff
        out = onnx_forward(x)
        expected = pytorch_outputs.pop(0)
        if out.shape != expected.shape:
            raise ExportError(f"the exported file gives shape {tuple(out.shape)} for a batch, PyTorch {tuple(expected.shape)}")
        diff = float((out - expected).abs().max()) if out.numel() else 0.0
        if not math.isfinite(diff) or diff > ATOL + RTOL * float(expected.abs().max()):
            raise ExportError(
                f"the exported file differs from PyTorch by up to {diff:.3g} on a test batch of {x.shape[0]}; "
                "the export is not faithful"
            )
        max_diff = max(max_diff, diff)
        return out

    raw_batches = list(datamodule.raw_dataloader("test"))
    # A batch of one first: an exported graph with the batch size baked in fails here.
    raw_batches = [tuple(t[:1] for t in raw_batches[0]), tuple(t[1:] for t in raw_batches[0]), *raw_batches[1:]]
    with torch.no_grad():
        # Each raw batch as training prepares it, once; the exported file gets the raw inputs
        # (bare: the prepared ones) with the same targets.
        pairs = [(raw, datamodule.model_batch(raw)) for raw in raw_batches if raw[0].shape[0] > 0]
    samples = sum(raw[0].shape[0] for raw, _ in pairs)
    scores: dict[str, dict[str, float]] = {}
    for name, forward in (("pytorch", pytorch_forward), ("onnxruntime", exported_forward)):
        batches = [batch if name == "pytorch" or bare else (raw[0], *batch[1:]) for raw, batch in pairs]
        with forward_replaced(task, forward):
            scores[name] = test_metrics(task, batches)
    if not scores["pytorch"]:
        raise ConfigError(
            f"{type(task).__name__} logs no test/* metric in test_step, so the export cannot be checked; "
            "log e.g. test/acc or test/loss (see plugins/README.md)"
        )
    return {**scores, "samples": samples, "max_abs_difference": max_diff}


def key_metric(task, scores: dict[str, float]) -> str:
    """The test counterpart of the task's checkpoint metric (``val/acc`` -> ``test/acc``), if it was computed."""
    wanted = "test/" + str(getattr(task, "monitor", "val/loss")).split("/", 1)[-1]
    return wanted if wanted in scores else next(iter(scores))


def describe_outputs(task: nn.Module) -> str:
    """What the task's ``forward`` returns: its ``describe_outputs()`` (see ``Task``), else a generic line."""
    describe_fn = getattr(task, "describe_outputs", None)
    return describe_fn() if callable(describe_fn) else f"the outputs of {type(task).__name__}.forward"


def describe(task, datamodule, ckpt_path: Path, bare: bool, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The metadata that travels in the file (JSON values)."""
    hparams = dict(getattr(task, "hparams", {}) or {})
    preprocessing = datamodule.preprocess.describe()
    return {
        "task": type(task).__name__,
        "input": "model input (preprocess it first as 'preprocessing' says)" if bare else "raw sample",
        "input_shape": list(input_shape),
        "input_units": preprocessing["input_units"] if not bare else "preprocessed values (see preprocessing)",
        "preprocessing": {**preprocessing, "in_graph": not bare},
        "outputs": describe_outputs(task),
        **{key: hparams[key] for key in ("class_names", "head", "num_classes", "num_landmarks") if hparams.get(key) is not None},
        **({"feature_names": list(datamodule.feature_names)} if getattr(datamodule, "feature_names", None) else {}),
        "datamodule": type(datamodule).__name__,
        "source_checkpoint": portable_name(ckpt_path),
    }


def export_checkpoint(args: Any, written: Callable[[], None] = lambda: None, still_wanted: Callable[[], None] = lambda: None) -> int:
    """Export ``args.ckpt_path`` as :mod:`lightning_hw.deploy.export_command` parsed it; returns the exit code.

    Args:
        args: the parsed ``export`` options.
        written: called once every file is in place (a signal after that must not say "nothing was written").
        still_wanted: called before the file is named; raises the stop of a signal it was asked for meanwhile.
    """
    from lightning_hw.data.base import recorded_data_state
    from lightning_hw.data.preprocessing import link_model_preprocessing

    ckpt_path = checkpoint_file(args.ckpt_path, args.config)
    checkpoint = load_checkpoint(ckpt_path, weights_only=args.weights_only)
    task = build_task(ckpt_path, checkpoint, args.config)
    require_forward(task)  # what is exported
    config_file = Path(args.config) if args.config else run_config_of(ckpt_path)
    datamodule = build_datamodule(config_file)
    link_model_preprocessing(task, datamodule)
    datamodule.setup("test")
    saved = recorded_data_state(checkpoint, datamodule)
    if saved is not None:  # the preprocessing statistics the model was trained with
        datamodule.load_state_dict(saved)
    if not hasattr(datamodule, "raw_dataloader"):
        raise ConfigError(
            f"{type(datamodule).__name__} does not give raw test samples (raw_dataloader), so the export cannot be "
            "checked; base it on lightning_hw.data.base.InMemoryDataModule"
        )
    preprocess = datamodule.preprocess
    model = task if args.bare else RawInputModel(preprocess, task).eval()
    input_shape = tuple(preprocess.output_shape if args.bare else preprocess.raw_shape)
    output = chosen_output(args.output, ckpt_path)  # refused before any work if it would replace a file
    created_eval_dir = output is None and not (run_dir_of(ckpt_path) / EVAL_DIR).exists()
    directory = None if output is not None else new_export_dir(ckpt_path)
    output = output or directory / f"{ckpt_path.stem}.onnx"
    # Written under a temporary name and renamed once the check passed: a failed export never
    # leaves a file that looks like a good one (nor replaces anything). The name holds the
    # process id: two exports to one --output at once each write their own file.
    partial = output.with_name(f"{output.name}.{os.getpid()}.partial")
    try:
        export_onnx(model, input_shape, partial, args.opset)
        scores = score_test_split(task, datamodule, onnx_runner(partial), args.bare)
        metric = key_metric(task, scores["pytorch"])
        ours, theirs = scores["pytorch"][metric], scores["onnxruntime"].get(metric, math.nan)
        if not abs(ours - theirs) <= METRIC_TOLERANCE:
            raise ExportError(
                f"the exported file's {metric} ({theirs:.4f}) differs from PyTorch's ({ours:.4f}) by more than "
                f"{METRIC_TOLERANCE * 100:g} point; the export is not faithful"
            )
        metadata = describe(task, datamodule, ckpt_path, args.bare, input_shape)
        metadata["test_check"] = {"metric": metric, "pytorch": ours, "onnxruntime": theirs, "samples": scores["samples"]}
        add_metadata(partial, {key: json.dumps(value) for key, value in metadata.items()})  # seconds for a big net
        if directory is not None:
            write_atomically(directory / "export.json", json.dumps({"file": output.name, **metadata, "scores": scores}, indent=2))
        still_wanted()
    except ExportError as err:
        raise ExportError(f"{err} (file kept for inspection: {keep_failed(partial, output)})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
            if created_eval_dir:  # the run's first evaluation: leave no empty eval/ behind (rmdir keeps one filled meanwhile)
                with contextlib.suppress(OSError):
                    directory.parent.rmdir()
        raise
    if not place_without_replacing(partial, output):  # the last step: from here the export is complete
        raise ExportError(
            f"{output} was created by another process while this export ran (another export to the same "
            f"--output?) and is left as it is; this export is kept as {keep_failed(partial, output)}"
        )
    written()
    what = "the bare net, preprocessed input" if args.bare else "raw samples, preprocessing in the graph"
    source = "on the preprocessed samples" if args.bare else "on the raw samples"
    print(f"Exported {output} (ONNX; input 'input' [batch, {', '.join(map(str, input_shape))}]: {what})")
    print(
        f"{metric} on the {type(datamodule).__name__} test split ({scores['samples']} samples): PyTorch {ours:.4f}, "
        f"onnxruntime {source} {theirs:.4f} (max output difference {scores['max_abs_difference']:.2g})"
    )
    return 0
