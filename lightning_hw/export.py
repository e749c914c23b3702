"""``export``: a trained checkpoint to ONNX, checked against PyTorch before it is called done.

    python -m lightning_hw export --ckpt_path runs/quickstart/r1/checkpoints/best-epoch012.ckpt
    python -m lightning_hw export --ckpt_path P --format onnx --output model.onnx

The task is rebuilt from the checkpoint (sizes) and its run's ``config.yaml`` (the net), its
``forward`` (the net's raw outputs: logits for a classifier) is exported with a dynamic batch
dimension, and the file is run with onnxruntime on random inputs of several batch sizes. The
export succeeds only when every output matches PyTorch's; the largest absolute difference is
printed. Class names, head and input shape travel in the file's metadata.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch

from lightning_hw.checkpoints import build_task, load_checkpoint
from lightning_hw.errors import ConfigError, ExportError

#: batch sizes the exported file is checked with (1 and odd sizes catch a batch size baked in)
CHECK_BATCH_SIZES = (1, 3, 8)
#: the exported outputs must match PyTorch's within ``ATOL + RTOL * max|output|``
ATOL, RTOL = 1e-4, 1e-4
INSTALL_HINT = "export needs the onnx extra: pip install -e '.[onnx]' (onnx, onnxruntime, onnxscript)"


def _parser():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="python -m lightning_hw export",
        description="Export a checkpoint's model to ONNX (dynamic batch) and check it against PyTorch.",
        exit_on_error=False,
    )
    parser.add_argument("--ckpt_path", type=str, required=True, help="The checkpoint to export.")
    parser.add_argument("--format", type=Literal["onnx"], default="onnx", help="Export format.")
    parser.add_argument(
        "--output", type=str | None, default=None, help="Where to write (default: <run>/<checkpoint name>.onnx)."
    )
    parser.add_argument(
        "--config", type=str | None, default=None,
        help="The config the checkpoint was trained with (default: the run's config.yaml).",
    )
    parser.add_argument("--opset", type=int | None, default=None, help="ONNX opset (default: the exporter's).")
    parser.add_argument(
        "--weights_only", type=bool, default=True,
        help="Refuse checkpoints holding arbitrary Python objects; false only for files you trust.",
    )
    return parser


def default_output(ckpt_path: Path) -> Path:
    """``runs/g/n/checkpoints/x.ckpt`` -> ``runs/g/n/x.onnx``; elsewhere next to the checkpoint."""
    folder = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    return folder / f"{ckpt_path.stem}.onnx"


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path, opset: int | None = None) -> None:
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


def check_parity(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path) -> float:
    """Run the file with onnxruntime on random inputs; return the largest absolute difference to PyTorch.

    Raises:
        ExportError: a batch size fails to run or an output differs beyond tolerance.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in CHECK_BATCH_SIZES:
        x = torch.randn(batch, *input_shape, generator=generator)
        with torch.no_grad():
            expected = model(x).float().numpy()
        try:
            (got,) = session.run(None, {name: x.numpy()})
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ExportError(f"the exported {path} fails to run on a batch of {batch}: {err}") from None
        if got.shape != expected.shape:
            raise ExportError(
                f"the exported {path} gives shape {got.shape} for a batch of {batch}, PyTorch {expected.shape}"
            )
        diff = float(abs(got - expected).max()) if got.size else 0.0
        if not math.isfinite(diff) or diff > ATOL + RTOL * float(abs(expected).max()):
            raise ExportError(
                f"the exported {path} differs from PyTorch by up to {diff:.3g} on a batch of {batch}; "
                "the export is not faithful (file kept for inspection)"
            )
        worst = max(worst, diff)
    return worst


def main(argv: list[str]) -> int:
    """``python -m lightning_hw export ...``; returns the exit code."""
    from jsonargparse import ArgumentError

    from lightning_hw.cli_errors import explain

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentError as err:
        raise ConfigError(explain(str(err), "export", parser)) from None
    ckpt_path = Path(args.ckpt_path)
    checkpoint = load_checkpoint(ckpt_path, weights_only=args.weights_only)
    task = build_task(ckpt_path, checkpoint, args.config)
    hparams = checkpoint.get("hyper_parameters") or {}
    input_shape = tuple(int(s) for s in (hparams.get("input_shape") or getattr(task, "input_shape", ()) or ()))
    if not input_shape:
        raise ConfigError(f"{ckpt_path} does not record the model's input_shape, so no example input can be made")
    output = Path(args.output) if args.output else default_output(ckpt_path)
    export_onnx(task, input_shape, output, args.opset)
    metadata = {"source_checkpoint": str(ckpt_path), "input_shape": json.dumps(list(input_shape))}
    for key in ("class_names", "head", "num_classes"):
        if hparams.get(key) is not None:
            metadata[key] = json.dumps(hparams[key])
    add_metadata(output, metadata)
    worst = check_parity(task, input_shape, output)
    print(
        f"Exported {output} (ONNX, input 'input' [batch, {', '.join(map(str, input_shape))}], output 'output'); "
        f"onnxruntime matches PyTorch on batches of {', '.join(map(str, CHECK_BATCH_SIZES))}: "
        f"max abs difference {worst:.3g}"
    )
    return 0
