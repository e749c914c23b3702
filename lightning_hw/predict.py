"""``predict``: a trained checkpoint's predictions, written as CSV into ``<run>/eval/predict-<time>/``.

    python -m lightning_hw predict --config C --ckpt_path runs/g/n/checkpoints/best.ckpt
    python -m lightning_hw predict --config C --ckpt_path P --predict_from new_images/
    python -m lightning_hw predict --config C --ckpt_path P --predict_from table.csv

Without ``--predict_from`` the datamodule's predict split is used (the test split for the
in-memory datamodules) and the true label is written next to the prediction. With it, a
folder of images or a CSV of numbers is read, prepared as the training data was (same size,
channels, and standardisation with the training split's statistics) and predicted.

The writer is generic: a task's ``predict_step`` returns a dict of tensors, and its
``prediction_columns(outputs)`` (see :meth:`lightning_hw.tasks.base.Task.prediction_columns`)
turns them into named CSV columns: class names and probabilities for a classifier, and,
later, landmark coordinates in pixels for a landmark task.
"""

from __future__ import annotations

import csv
import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_hw.errors import ConfigError, DataError

# Lightning asks every prediction writer's loader for sample indices; ours writes ids itself.
warnings.filterwarnings("ignore", message=r"Couldn't infer the batch indices fetched from your dataloader")


def add_predict_arguments(parser) -> None:
    """The ``predict`` subcommand's own options."""
    parser.add_argument(
        "--predict_from",
        type=str | None,
        default=None,
        help="A folder of images or a .csv file of numbers (one sample per row, one column per input value) "
        "to predict, instead of the datamodule's predict split.",
    )
    parser.add_argument(
        "--on_unreadable",
        type=Literal["fail", "skip"],
        default="fail",
        help="With --predict_from <folder>: stop at a file that is not a readable image (fail) or leave it out "
        "with a counted warning (skip).",
    )


def output_path(run_dir: Path, predict_from: str | None) -> Path:
    """``predictions.csv``, or ``predictions-<input name>.csv`` for ``--predict_from``, in the evaluation's directory."""
    if not predict_from:
        return Path(run_dir) / "predictions.csv"
    return Path(run_dir) / f"predictions-{Path(predict_from.rstrip('/')).stem}.csv"


def writer_for(run_dir: Path, chosen: Mapping[str, Any]) -> PredictionWriter:
    """The writer for a ``predict`` run configured by ``chosen`` (the subcommand's config)."""
    return PredictionWriter(output_path(run_dir, chosen.get("predict_from")))


def generic_columns(outputs: Mapping[str, Any]) -> dict[str, list]:
    """Columns for any ``predict_step`` dict: ``name`` for one value per sample, ``name_i`` for several."""
    columns: dict[str, list] = {}
    for name, value in outputs.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.ndim <= 1:
                columns[name] = value.reshape(-1).tolist()
            else:
                flat = value.reshape(value.shape[0], -1)
                for i in range(flat.shape[1]):
                    columns[f"{name}_{i}"] = flat[:, i].tolist()
        elif isinstance(value, Sequence) and not isinstance(value, str):
            columns[name] = list(value)
    return columns


class PredictionWriter(BasePredictionWriter):
    """Streams predictions into one CSV: ``id``, the task's prediction columns, and ``target`` if known.

    Args:
        path: the CSV file to write.
        ids: one name per sample (e.g. file names), in loader order; ``None``: row numbers.
    """

    def __init__(self, path: str | Path, ids: Sequence[str] | None = None) -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self.ids = list(ids) if ids is not None else None
        self._file = None
        self._writer: csv.DictWriter | None = None
        self.rows = 0

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rows = 0
        self._writer = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if not isinstance(prediction, Mapping):
            prediction = {"output": prediction}
        format_columns = getattr(pl_module, "prediction_columns", None) or generic_columns
        columns = format_columns(prediction)
        n = len(next(iter(columns.values()))) if columns else 0
        ids = self.ids[self.rows : self.rows + n] if self.ids is not None else range(self.rows, self.rows + n)
        table = {"id": list(ids), **columns}
        target = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        if isinstance(target, torch.Tensor) and target.ndim == 1 and target.shape[0] == n:
            table["target"] = target.tolist()
            names = getattr(pl_module, "class_names", None)
            if names and not target.dtype.is_floating_point:
                table["target_class"] = [names[i] if 0 <= i < len(names) else "" for i in target.tolist()]
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(table))
            self._writer.writeheader()
        for i in range(n):
            self._writer.writerow({k: _cell(v[i]) for k, v in table.items()})
        self.rows += n

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        print(f"Predictions: {self.rows} rows written to {self.path}")


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.6g}"
    return value


# -- reading new inputs -----------------------------------------------------------------------


def _input_shape(model: LightningModule, datamodule: LightningDataModule | None) -> tuple[int, ...]:
    shape = getattr(model, "hparams", {}).get("input_shape") or getattr(datamodule, "input_shape", None)
    if shape is None:
        raise ConfigError("cannot tell the model's input shape; the task needs an input_shape argument")
    return tuple(int(s) for s in shape)


def read_images_as_inputs(folder: Path, shape: tuple[int, ...], on_unreadable: str) -> tuple[list[str], torch.Tensor]:
    """Every image in ``folder`` at the model's ``(channels, height, width)``, values in ``[0, 1]``."""
    from lightning_hw.data.image_files import list_images, read_all, read_image

    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ConfigError(
            f"the model takes inputs of shape {shape}, not images; give a CSV with {math.prod(shape)} numeric columns"
        )
    paths = list_images(folder)
    if not paths:
        raise DataError(f"no image files in {folder}")
    decode = functools.partial(read_image, channels=shape[0], size=(shape[1], shape[2]))
    images, kept = read_all(paths, decode, on_unreadable)
    if not images:
        raise DataError(f"none of the {len(paths)} files in {folder} is a readable image")
    return [paths[i].name for i in kept], torch.stack(images)


def read_csv_as_inputs(path: Path, shape: tuple[int, ...]) -> tuple[list[str], torch.Tensor]:
    """Every row of a numeric CSV as one sample of the model's input shape."""
    from lightning_hw.data.files import read_csv_table

    header, values = read_csv_table(path, what="predict input")
    width = math.prod(shape)
    if len(header) != width:
        raise DataError(
            f"predict input {path} has {len(header)} columns, the model takes {width} values per sample "
            f"(input shape {shape}); keep only the input columns (drop ids and labels)"
        )
    return [str(i) for i in range(values.shape[0])], torch.as_tensor(values, dtype=torch.float32).reshape(-1, *shape)


def prepare_like_training(x: torch.Tensor, datamodule: LightningDataModule | None) -> torch.Tensor:
    """Apply to raw inputs what the datamodule applied to its splits."""
    from lightning_hw.data.base import InMemoryDataModule, standardize_splits

    if not isinstance(datamodule, InMemoryDataModule):
        raise ConfigError(
            f"{type(datamodule).__name__} does not say how to prepare new files for the model; "
            "it needs a predict_dataloader_from(path, on_unreadable) method"
        )
    if not datamodule.standardize:
        return x
    train = datamodule.load_splits()["train"]
    return standardize_splits({"train": train, "new": (x,)})["new"][0]


def loader_from(
    source: str,
    datamodule: LightningDataModule | None,
    model: LightningModule,
    on_unreadable: str,
    trainer: Trainer,
):
    """A loader over the files of ``--predict_from``, and their names handed to the CSV writer.

    A datamodule that knows its own preprocessing (e.g. an image folder with a timm data
    config) provides ``predict_dataloader_from(path, on_unreadable) -> (ids, loader)``; for
    in-memory datamodules the generic readers above are used.
    """
    from lightning_hw.data.base import TensorBatchLoader

    path = Path(source)
    hook = getattr(datamodule, "predict_dataloader_from", None)
    if callable(hook):
        ids, loader = hook(path, on_unreadable=on_unreadable)
    else:
        shape = _input_shape(model, datamodule)
        if path.is_dir():
            ids, x = read_images_as_inputs(path, shape, on_unreadable)
        elif path.suffix.lower() == ".csv":
            ids, x = read_csv_as_inputs(path, shape)
        elif not path.exists():
            raise DataError(f"predict input not found: {path}")
        else:
            raise ConfigError(f"--predict_from takes a folder of images or a .csv file, not {path}")
        x = prepare_like_training(x, datamodule)
        batch_size = getattr(datamodule, "eval_batch_size", None) or 256
        loader = TensorBatchLoader((x,), batch_size=batch_size)
    for callback in trainer.callbacks:
        if isinstance(callback, PredictionWriter):
            callback.ids = list(ids)
    return loader
