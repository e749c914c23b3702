"""``predict``: a trained checkpoint's predictions, written as CSV into ``<run>/eval/predict-<time>/``.

    python -m lightning_hw predict --config C --ckpt_path runs/g/n/checkpoints/best.ckpt
    python -m lightning_hw predict --config C --ckpt_path P --predict_from new_images/
    python -m lightning_hw predict --config C --ckpt_path P --predict_from photo.jpg
    python -m lightning_hw predict --config C --ckpt_path P --predict_from table.csv

Without ``--predict_from`` the datamodule's predict split is used (the test split for the
in-memory datamodules), its rows named after their files where the data has them, and the
true label (a landmark task: the true points) is written next to the prediction. With it, a
folder of images or a CSV (with or without a header) is read by the datamodule, in the
units its files store (pixel values, the digits' 0-16, a table's columns), and prepared by
the same :class:`~lightning_hw.data.preprocess.Preprocess` as the training data.

The writer is generic: a task's ``predict_step`` returns a dict of tensors, and its
``prediction_columns(outputs)`` (see :meth:`lightning_hw.tasks.base.Task.prediction_columns`)
turns them into named CSV columns: class names and probabilities for a classifier, landmark
coordinates in pixels and normalised for a landmark task; its ``target_columns(target)`` names
true values larger than one label per sample. A plain ``LightningModule``
without either predicts its ``forward`` on the batch's inputs (see
:func:`predict_step_on_inputs`), written as ``output_<i>`` columns.
"""

from __future__ import annotations

import contextlib
import csv
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities.model_helpers import is_overridden

from lightning_hw.callbacks.progress import say_beside_progress_bar
from lightning_hw.errors import ConfigError, MissingMethodError

# Lightning asks every prediction writer's loader for sample indices; ours writes ids itself.
warnings.filterwarnings("ignore", message=r"Couldn't infer the batch indices fetched from your dataloader")


def add_predict_arguments(parser) -> None:
    """The ``predict`` subcommand's own options."""
    parser.add_argument(
        "--predict_from",
        type=str | None,
        default=None,
        help="A folder of images, one image file, or a .csv file with one sample per row in the data's own units (pixel values, "
        "feature columns; a header row is optional), to predict instead of the datamodule's predict split.",
    )
    parser.add_argument(
        "--on_unreadable",
        type=Literal["fail", "skip"],
        default="fail",
        help="With --predict_from images: stop at a file that is not a readable image (fail) or leave it out "
        "with a counted warning (skip).",
    )


def output_path(run_dir: Path, predict_from: str | None) -> Path:
    """``predictions.csv``, or ``predictions-<input name>.csv`` for ``--predict_from``, in the evaluation's directory."""
    if not predict_from:
        return Path(run_dir) / "predictions.csv"
    # Resolved: "." or ".." name no file or folder by themselves (they gave "predictions-.csv").
    return Path(run_dir) / f"predictions-{Path(predict_from).resolve().stem}.csv"


def writer_for(run_dir: Path, chosen: Mapping[str, Any]) -> PredictionWriter:
    """The writer for a ``predict`` run configured by ``chosen`` (the subcommand's config)."""
    return PredictionWriter(output_path(run_dir, chosen.get("predict_from")))


def require_forward(module: LightningModule) -> None:
    """Refuse, in one line, a task without ``forward``: ``predict`` and ``export`` run the model through it.

    A task needs only ``shared_step`` to train and test, so one written from the README may
    have none; torch's own error then came as a traceback from deep inside the predict loop
    or ``torch.export``.

    Raises:
        MissingMethodError: the module's class does not define ``forward``.
    """
    if type(module).forward in (LightningModule.forward, torch.nn.Module.forward):
        raise MissingMethodError(
            "task",
            type(module),
            "does not implement forward(x)",
            "predict and export run the model on its inputs through it: define forward(x), returning the "
            "outputs, e.g. `return self.net(x)` (see \"4. A task\" in plugins/README.md)",
        )


@contextlib.contextmanager
def predict_step_on_inputs(module: LightningModule) -> Iterator[None]:
    """Give a module without its own ``predict_step`` one that runs ``forward`` on the batch's inputs.

    Lightning's default ``predict_step`` calls ``forward(batch)``, but our loaders yield
    ``(inputs, targets)`` (or ``(inputs,)``) tuples, which no ``forward`` of a plain
    module takes. A module that defines ``predict_step`` is left as it is.
    """
    if is_overridden("predict_step", module, LightningModule):
        yield
        return
    require_forward(module)

    def predict_step(*args: Any, **kwargs: Any) -> Any:
        batch = kwargs["batch"] if "batch" in kwargs else args[0]
        return module(batch[0] if isinstance(batch, (tuple, list)) else batch)

    module.predict_step = predict_step
    try:
        yield
    finally:
        del module.predict_step


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

    Under DDP each process predicts its share (samples ``rank, rank + world_size, ...``, as
    the loaders deal them out); the rows are gathered and written by the first process, in
    the data's order, each sample once.

    Args:
        path: the CSV file to write.
        ids: one name per sample (e.g. file names), in loader order; ``None``: the datamodule's
            ``predict_ids()`` (file names of its test split) where it has them, else row numbers.
    """

    def __init__(self, path: str | Path, ids: Sequence[str] | None = None) -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self.ids = list(ids) if ids is not None else None
        self._row_ids: list[str] | None = None
        self._file = None
        self._writer: csv.DictWriter | None = None
        self._shared: list[dict[str, Any]] | None = None  # this process's rows under DDP, written at the end
        self.rows = 0

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rows = 0
        self._writer = None
        self._row_ids = self.ids
        if self._row_ids is None:  # the datamodule's own split, set up by now: named after its files if it can
            names = getattr(trainer.datamodule, "predict_ids", None)
            self._row_ids = names() if callable(names) else None
        if trainer.world_size > 1:
            self._shared = []
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if not isinstance(prediction, Mapping):
            prediction = {"output": prediction}
        format_columns = getattr(pl_module, "prediction_columns", None) or generic_columns
        columns = format_columns(prediction)
        n = len(next(iter(columns.values()))) if columns else 0
        table = {**columns, **target_columns(pl_module, batch, n)}
        rows = [{k: _cell(v[i]) for k, v in table.items()} for i in range(n)]
        if self._shared is not None:  # DDP: the ids follow from the positions once all rows are in
            self._shared += rows
            return
        self._write(self._file, rows)

    def _write(self, file: Any, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` (one per sample, without ``id``) after the :attr:`rows` written so far, each under its id."""
        for row in rows:
            table = {"id": self._row_ids[self.rows] if self._row_ids is not None else self.rows, **row}
            if self._writer is None:
                self._writer = csv.DictWriter(file, fieldnames=list(table))
                self._writer.writeheader()
            self._writer.writerow(table)
            self.rows += 1

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._shared is not None:
            self._write_shared(trainer)
        if self._file is not None:
            self._file.close()
            self._file = None
        if trainer.is_global_zero:
            say_beside_progress_bar(trainer, f"Predictions: {self.rows} rows written to {self.path}")

    def _write_shared(self, trainer: Trainer) -> None:
        """DDP: gather every process's rows; the first process writes them in the data's order."""
        import torch.distributed as dist

        shares: list[list[dict[str, Any]] | None] = [None] * trainer.world_size
        dist.all_gather_object(shares, self._shared)
        self._shared = None
        if not trainer.is_global_zero:
            return
        # Process r's j-th row is sample j * world_size + r (EpochOrder without padding, and
        # Lightning's UnrepeatedDistributedSampler for predict loaders of other datamodules).
        ordered = [share[j] for j in range(max(map(len, shares))) for share in shares if j < len(share)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            self._write(f, ordered)


def target_columns(pl_module: LightningModule, batch: Any, n: int) -> dict[str, list]:
    """The true values of a batch of ``n`` samples as CSV columns; none when the batch has none.

    One label per sample is written as ``target`` (and its class name as ``target_class``);
    larger targets (a face's points) as the task's ``target_columns`` names them, so that the
    test metric can be recomputed from the CSV alone.
    """
    target = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
    if not isinstance(target, torch.Tensor) or target.ndim == 0 or target.shape[0] != n:
        return {}
    if target.ndim > 1:
        format_targets = getattr(pl_module, "target_columns", None)
        return format_targets(target) if format_targets is not None else {}
    columns: dict[str, list] = {"target": target.tolist()}
    names = getattr(pl_module, "class_names", None)
    if names and not target.dtype.is_floating_point:
        columns["target_class"] = [names[i] if 0 <= i < len(names) else "" for i in target.tolist()]
    return columns


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.6g}"
    return value


# -- new inputs ---------------------------------------------------------------------------------


def read_predict_inputs(source: str, datamodule: LightningDataModule | None, on_unreadable: str) -> list[str]:
    """Point the datamodule's predict loader at the files of ``--predict_from``; their ids, for the CSV's rows.

    The datamodule reads the files with its training reader and prepares them with its
    :attr:`~lightning_hw.data.base.SplitDataModule.preprocess`, so a prediction from files
    sees exactly what the test split's samples saw. Called before the evaluation directory
    is created: a missing or unreadable input leaves no directory, and no line naming one.

    Raises:
        ConfigError: the datamodule cannot read new files (it lacks ``predict_from``).
    """
    hook = getattr(datamodule, "predict_from", None)
    if not callable(hook):
        raise ConfigError(
            f"{type(datamodule).__name__} cannot read new files to predict; base it on "
            "lightning_hw.data.base.InMemoryDataModule or give it predict_from(path, on_unreadable) -> ids"
        )
    return list(hook(Path(source), on_unreadable=on_unreadable))


def name_prediction_rows(ids: list[str], trainer: Trainer) -> None:
    """Give the CSV writer the ids of :func:`read_predict_inputs` for its ``id`` column."""
    for callback in trainer.callbacks:
        if isinstance(callback, PredictionWriter):
            callback.ids = list(ids)
