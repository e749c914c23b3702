"""Datamodule bases: seeded splits, sizes for the task, and the in-memory fast path.

A small model on a small dataset spends most of a step in the data pipeline when
every sample goes through ``__getitem__`` and ``collate``. Data that fits in memory is
therefore kept as whole tensors and :class:`TensorBatchLoader` slices batches out of
them: one indexing operation per batch, no per-sample Python.
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningDataModule

from lightning_hw.data.epoch_order import TensorBatchLoader, training_order_seed
from lightning_hw.data.folds import check_folds, fold_indices
from lightning_hw.data.preprocess import Preprocess, feature_stats
from lightning_hw.errors import ConfigError, DataError, LightningHWWarning, MissingMethodError

Split = tuple[torch.Tensor, ...]
SPLIT_NAMES = ("train", "val", "test")
#: the train/val/test fractions a datamodule gets when none are given
DEFAULT_SPLITS = (0.7, 0.2, 0.1)


def check_split_fractions(fractions: Sequence[float]) -> None:
    """Refuse fractions that cannot split a data set (a config mistake, found before any data is read).

    Raises:
        ConfigError: a negative fraction, or fractions that do not sum to 1.
    """
    if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split fractions must be >= 0 and sum to 1, got {list(fractions)}; e.g. --data.init_args.splits '[0.7, 0.2, 0.1]'")


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Shuffle ``range(n)`` with ``seed`` and cut it by ``fractions``.

    Args:
        n: number of samples.
        fractions: one fraction per split, summing to 1 (e.g. ``(0.7, 0.2, 0.1)``).
        seed: seed of the permutation, so a split is the same in every run.

    Returns:
        One index tensor per fraction; rounding leftovers go to the first split.
    """
    check_split_fractions(fractions)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [int(n * f) for f in fractions[1:]]
    sizes.insert(0, n - sum(sizes))
    return list(torch.split(perm, sizes))


def recorded_data_state(checkpoint: dict[str, Any], datamodule: Any) -> dict[str, Any] | None:
    """The datamodule state ``checkpoint`` holds for ``datamodule`` (what its ``load_state_dict`` takes), or ``None``.

    Lightning hands a datamodule only the state saved under its own class name. A model
    evaluated with another datamodule class (another data set with the same sizes, a
    plugin's reader of the same file) would then get inputs prepared with that data's own
    statistics, not the ones it was trained with, without a word. So when the checkpoint
    has no state of this class, the preprocessing another datamodule recorded is returned
    (without its split, which describes other data), with ``trained_on`` naming that class.

    Args:
        checkpoint: a loaded checkpoint.
        datamodule: the datamodule that will prepare the inputs.
    """
    own = checkpoint.get(type(datamodule).__qualname__)
    if isinstance(own, dict):
        return own
    for key, value in checkpoint.items():
        saved = value.get("preprocess") if isinstance(value, dict) else None
        if isinstance(saved, dict) and "settings" in saved:
            return {"preprocess": saved, "trained_on": key}
    return None


def standardize_splits(data: dict[str, Split]) -> dict[str, Split]:
    """Scale inputs (the first tensor of each split) by the training split's mean and std (see :func:`feature_stats`)."""
    mean, std = feature_stats(data["train"][0])
    return {name: ((tensors[0] - mean) / std, *tensors[1:]) for name, tensors in data.items()}


class SplitDataModule(LightningDataModule):
    """Base of lightning-hw datamodules: batch size, seeded split fractions, sizes for the task.

    Subclasses tell the task what it must know before any data is loaded, through the
    properties :attr:`num_classes`, :attr:`input_shape` and :attr:`class_names`; the CLI
    links them into the task's init arguments.

    Args:
        batch_size: training batch size.
        splits: train/val/test fractions of the data that is split here.
        split_seed: seed of the split permutation (fixed, so every run sees the same split)
            and of the folds.
        eval_batch_size: batch size for val/test/predict (default: ``batch_size``).
        folds: k-fold cross-validation: the test split stays as it is without folds, the
            other samples are cut into ``folds`` folds (stratified by class for class
            labels, see :mod:`lightning_hw.data.folds`); the train/val fractions of
            ``splits`` (or ``val_fraction``) are then unused.
        fold: with ``folds``: the fold (0 to ``folds - 1``) that validates; the others train.
    """

    #: why ``splits`` does not cut this data set, for one that comes with its own split
    #: (MNIST's test images, FER2013's Usage column); ``None`` when ``splits`` cuts it
    own_split: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make every ``on_after_batch_transfer`` a subclass defines return its batch in the trainer's precision.

        Lightning's precision plugin converts a batch's floating-point tensors to the
        precision's dtype (``convert_input``: bfloat16 under ``bf16-true``, float64 under
        ``64-true``) *before* the batch hooks. Inputs kept raw and prepared per batch in
        ``on_after_batch_transfer`` (uint8 images, multi-hot words) become float32 only
        there, after that conversion, and would meet bfloat16 weights in the first layer. So
        the hook's result goes through the same ``convert_input`` (see
        :meth:`in_trainer_precision`); a subclass's own override, its ``super()`` call
        included, is covered without doing anything.
        """
        super().__init_subclass__(**kwargs)
        hook = cls.__dict__.get("on_after_batch_transfer")
        if hook is None or getattr(hook, "converts_to_trainer_precision", False):
            return

        @functools.wraps(hook)
        def on_after_batch_transfer(self: SplitDataModule, batch: Any, dataloader_idx: int) -> Any:
            return self.in_trainer_precision(hook(self, batch, dataloader_idx))

        on_after_batch_transfer.converts_to_trainer_precision = True  # type: ignore[attr-defined]
        cls.on_after_batch_transfer = on_after_batch_transfer  # type: ignore[method-assign]

    def in_trainer_precision(self, batch: Any) -> Any:
        """``batch`` with its floating-point tensors in the dtype of the trainer's precision plugin.

        Lightning's own ``precision_plugin.convert_input``: float32 under ``32-true`` and the
        ``*-mixed`` precisions (autocast casts per operation), bfloat16 under ``bf16-true``,
        float16 under ``16-true``, float64 under ``64-true``. Outside a trainer (``export``,
        :meth:`model_batch` in checks) the batch is returned as it is: float32.
        """
        plugin = getattr(getattr(self, "trainer", None), "precision_plugin", None)  # none outside a trainer
        return batch if plugin is None else plugin.convert_input(batch)

    def __init__(
        self,
        batch_size: int = 64,
        splits: tuple[float, float, float] = DEFAULT_SPLITS,
        split_seed: int = 42,
        eval_batch_size: int | None = None,
        folds: int | None = None,
        fold: int | None = None,
    ) -> None:
        super().__init__()
        check_split_fractions(splits)
        if self.own_split is not None and tuple(splits) != DEFAULT_SPLITS:
            # Ignoring them would train and score on another split than the one asked for.
            raise ConfigError(
                f"{type(self).__name__} comes with its own split and does not use --data.init_args.splits: {self.own_split}"
            )
        check_folds(folds, fold)
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        self.batch_size = batch_size
        self.splits = tuple(splits)
        self.split_seed = split_seed
        self.eval_batch_size = eval_batch_size or batch_size
        self.folds, self.fold = folds, fold
        self._folded = False
        self._preprocess: Preprocess | None = None
        # What an evaluation's scores must be read with (its split may differ from training's);
        # the CLI files these in the evaluation's record.
        self.split_caveats: list[str] = []

    @property
    def num_classes(self) -> int:
        """Number of target classes."""
        return len(self.class_names)

    @property
    def class_names(self) -> list[str]:
        """Human-readable class names, index = label."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, without the batch dimension."""
        raise NotImplementedError

    # -- the split, and the folds of cross-validation ------------------------------------------

    def split_positions(self, n: int, targets: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Train, val and test indices of ``n`` samples split here by :attr:`splits`, or by :attr:`fold`.

        Without folds: :func:`split_indices`. With folds the test indices are exactly those,
        and the train/val indices are the fold's (see :meth:`fold_of`) of the other samples.

        Args:
            n: number of samples.
            targets: the samples' targets, to stratify the folds by when they are class labels.
        """
        parts = split_indices(n, self.splits, self.split_seed)
        if self.folds is None:
            return parts
        rest = torch.cat(parts[:2]).sort().values
        train, val = self.fold_of(targets[rest] if targets is not None else int(rest.shape[0]))
        return [rest[train], rest[val], parts[2]]

    def fold_of(self, labels_or_n: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of the training and validation samples of :attr:`fold`, among the non-test samples given.

        Every datamodule that cross-validates goes through here (it marks the folds as
        applied; see :meth:`check_folds_applied`).

        Args:
            labels_or_n: the non-test samples' targets (stratified when class labels), or their number.
        """
        if self.folds is None or self.fold is None:
            raise ValueError("fold_of needs folds and fold")
        self._folded = True
        return fold_indices(labels_or_n, self.folds, self.fold, self.split_seed)

    def hold_out(self, train: Split, fraction: float) -> tuple[Split, Split]:
        """``(train, val)`` of a data set whose test set is fixed: a held-out ``fraction``, or the fold's.

        Args:
            train: the data outside the test set ``(x, y, ...)``; ``y`` stratifies the folds.
            fraction: share held out for validation without folds (see :func:`~lightning_hw.data.holdout.hold_out`).
        """
        from lightning_hw.data.holdout import hold_out

        if self.folds is None:
            return hold_out(train, fraction, self.split_seed)
        train_idx, val_idx = self.fold_of(train[1] if len(train) > 1 else int(train[0].shape[0]))
        return tuple(t[train_idx] for t in train), tuple(t[val_idx] for t in train)

    def empty_split_message(self, split: str) -> str:
        """What to do about an empty ``split``: the fraction in ``splits`` that cuts it, or what else does.

        A data set with its own split refuses ``--data.init_args.splits``, so the advice names
        :attr:`own_split` for it instead.
        """
        cut = (
            f"{type(self).__name__} comes with its own split ({self.own_split}): change that"
            if self.own_split is not None
            else f"raise its fraction in --data.init_args.splits (now {list(self.splits)})"
        )
        return f"the {split} split of {type(self).__name__} is empty; {cut} or add data"

    def check_folds_applied(self) -> None:
        """Refuse folds that the data's split did not use (a data set with a fixed validation split).

        Raises:
            ConfigError: ``folds`` is set but no split went through :meth:`fold_of`.
        """
        if self.folds is not None and not self._folded:
            raise ConfigError(
                f"{type(self).__name__} has a fixed validation split, so it cannot be cross-validated; "
                "drop --data.init_args.folds and --data.init_args.fold"
            )

    def split_record(self) -> dict[str, Any]:
        """What decides the split: saved in checkpoints, so a resume cannot train on another fold.

        For data read from a folder whose files can change, also the list of samples the
        split was drawn from (their count and a hash of :meth:`sample_names`): the same
        fractions and seed split another list of files otherwise.
        """
        record = {"splits": list(self.splits), "split_seed": self.split_seed, "folds": self.folds, "fold": self.fold}
        if getattr(self, "_samples_record", None) is None:
            names = self.sample_names()
            if names is not None:
                digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
                self._samples_record = {"count": len(names), "sha256": digest}
        if getattr(self, "_samples_record", None) is not None:
            record["samples"] = self._samples_record
        return record

    def sample_names(self) -> Sequence[str] | None:
        """The samples the split is drawn from, in order, each as a string (e.g. a file's path and label).

        ``None`` (the default) for data sets that cannot change under a run (a download
        with a checksum). Datamodules that list a folder return its listing, so that a
        resume or a test on a folder whose files have changed since training is noticed.
        """
        return None

    def check_evaluation_shares(self, split: str, num_samples: int) -> None:
        """Refuse an evaluation split that leaves a DDP process without a share.

        Evaluation shares are not padded (see :class:`~lightning_hw.data.epoch_order.EpochOrder`),
        so a split of fewer samples than processes leaves some with none: Lightning then
        stops with a traceback (validation, test), or that process skips the loop and the
        others wait for it in a collective call (predict).

        Args:
            split: ``val``, ``test`` or ``predict`` (the samples given to predict).
            num_samples: the samples of the split.

        Raises:
            ConfigError: the split holds fewer samples than there are processes.
        """
        world = self.trainer.world_size if self.trainer is not None else 1
        if 0 < num_samples < world:
            what = "predict input" if split == "predict" else f"{split} split"
            raise ConfigError(
                f"the {what} holds {num_samples} sample(s), fewer than the {world} DDP processes, and each "
                f"process evaluates its own share: run it on {num_samples} process(es) (--trainer.devices {num_samples})"
                + ("" if split == "predict" else f" or give the {split} split more samples")
            )

    def split_ids(self, split: str) -> list[str] | None:
        """One name per sample of ``split``, in its loader's order, for prediction CSVs; ``None``: row numbers.

        Data sets read from files name each sample after its file (its path under the data
        root), so a prediction can be traced to its image. Data sets held as arrays (a
        download, generated data) have no such names.
        """
        return None

    # -- raw samples and their preprocessing (shared by training, predict and export) ------------

    #: what a raw sample's values are, as stored in the data files (said in messages and ONNX metadata)
    raw_units: ClassVar[str] = "numbers as stored in the data files"

    @property
    def raw_input_shape(self) -> tuple[int, ...]:
        """Shape of one raw sample as read from a file, before :attr:`preprocess` (default: :attr:`input_shape`)."""
        return tuple(self.input_shape)

    def decode_description(self) -> dict[str, Any]:
        """How a file becomes a raw sample (image datamodules: reader, colour, size, resampling); for metadata."""
        return {}

    @property
    def preprocess(self) -> Preprocess:
        """Raw samples -> model inputs (see :mod:`lightning_hw.data.preprocess`); complete after :meth:`setup`.

        The base has nothing to do (the identity on :attr:`raw_input_shape`); subclasses
        build theirs at set-up from the training split.
        """
        if getattr(self, "_preprocess", None) is None:
            self._preprocess = Preprocess(self.raw_input_shape, units=self.raw_units)
        return self._preprocess

    @preprocess.setter
    def preprocess(self, module: Preprocess) -> None:
        self._preprocess = module

    def read_inputs(self, path: Path, on_unreadable: str = "fail") -> tuple[list[str], torch.Tensor]:
        """New raw samples from files, for ``predict --predict_from``: a CSV, a folder of images or one image.

        Args:
            path: a ``.csv`` file, one sample per row (with or without a header row), a
                folder of images or one image file (datamodules with a ``read_image_file(path)``
                method, the reader their training data went through).
            on_unreadable: ``fail`` at an unreadable image file, or ``skip`` it with a counted warning.

        Returns:
            One id per sample (file names; the CSV's ``id`` column, else row numbers) and
            the raw samples ``(N, *raw_input_shape)``.
        """
        from lightning_hw.data.io.files import read_input_csv
        from lightning_hw.data.io.image_files import IMAGE_SUFFIXES, is_image_input, read_all

        path = Path(path)
        if not path.exists():
            raise DataError(f"predict input not found: {path}")
        if path.is_dir() or is_image_input(path):
            reader = getattr(self, "read_image_file", None)
            if reader is None:
                raise ConfigError(
                    f"{type(self).__name__} reads no image files; give --predict_from a .csv with "
                    f"{math.prod(self.raw_input_shape)} columns per row ({self.raw_units})"
                )
            paths = self._predict_image_paths(path)
            images, kept = read_all(paths, reader, on_unreadable, how_to_skip="add --on_unreadable skip")
            if not images:
                raise DataError(
                    f"none of the {len(paths)} files in {path} is a readable image" if path.is_dir() else f"{path} is not a readable image"
                )
            return [paths[i].name for i in kept], torch.stack(images)
        if path.suffix.lower() != ".csv":
            raise ConfigError(
                f"--predict_from takes a folder of images, an image file ({', '.join(IMAGE_SUFFIXES)}) "
                f"or a .csv file, not {path}"
            )
        ids, values = read_input_csv(path, self.raw_input_shape, getattr(self, "feature_names", None))
        return ids, torch.from_numpy(values).reshape(-1, *self.raw_input_shape)

    @staticmethod
    def _predict_image_paths(path: Path) -> list[Path]:
        """The image files ``predict --predict_from path`` reads: ``path`` itself, or a folder's top-level images.

        Warns about what a folder holds besides them (files that are not images, images in
        sub-folders), so that fewer rows than files never go unexplained.

        Raises:
            DataError: the folder holds no image file at its top level.
        """
        from lightning_hw.data.io.image_files import list_images, no_images_message, warn_non_image_files, warn_unread_subfolders

        if not path.is_dir():
            return [path]
        paths = list_images(path)
        if not paths:
            raise DataError(no_images_message(path))
        warn_non_image_files(path, len(paths))
        warn_unread_subfolders(path, len(paths))
        return paths

    def model_batch(self, raw_batch: Split) -> Split:
        """What training does to a raw batch before the model sees it (for checks outside a Trainer)."""
        return self.on_after_batch_transfer(raw_batch, 0)

    def state_dict(self) -> dict[str, Any]:
        """Saved by Lightning in every checkpoint: the preprocessing the model was trained with.

        Its settings (scaling, normalisation, flattening) and its statistics, so that
        ``predict``, ``test`` and ``export`` either prepare inputs exactly as in training
        or refuse (see :meth:`load_state_dict`).
        """
        if getattr(self, "_preprocess", None) is None:
            return {}
        tensors = {name: tensor.detach().cpu() for name, tensor in self._preprocess.state_dict().items()}
        return {"preprocess": {"settings": self._preprocess.settings(), "statistics": tensors}, "split": self.split_record()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take the checkpoint's preprocessing statistics (Lightning calls this after :meth:`setup`).

        ``state`` may also be another datamodule class's preprocessing (see :func:`recorded_data_state`).

        Raises:
            ConfigError: the configured datamodule prepares inputs otherwise than the one the
                model was trained with (e.g. ``standardize`` switched), which would score or
                export the model on inputs it never saw; or a resumed ``fit`` splits (or
                folds) the data otherwise than the checkpoint's run did.
        """
        split_change = self._check_split(state.get("split"))
        saved = state.get("preprocess")
        if not isinstance(saved, dict) or "settings" not in saved or getattr(self, "_preprocess", None) is None:
            return
        current = self._preprocess.settings()
        if saved["settings"] != current:
            changed = ", ".join(
                f"{key} {saved['settings'].get(key)!r} in training, {current.get(key)!r} here"
                for key in current
                if saved["settings"].get(key) != current.get(key)
            )
            raise ConfigError(
                f"the checkpoint's model was trained on inputs prepared otherwise than this {type(self).__name__} "
                f"prepares them ({changed}); use the config it was trained with (its run's config.yaml)"
            )
        statistics = saved.get("statistics") or {}
        mine = self._preprocess.state_dict()
        if any(not torch.allclose(statistics[k].float(), mine[k].float().cpu(), rtol=1e-5, atol=1e-6) for k in statistics):
            cause = f"its split is another: {split_change}" if split_change else "has the data changed?"
            if state.get("trained_on"):  # from recorded_data_state: another datamodule class recorded them
                cause = f"the model was trained on {state['trained_on']}'s data"
            warnings.warn(
                f"the mean/std of {type(self).__name__}'s training split differ from the checkpoint's ({cause}); "
                "using the checkpoint's, which the model was trained with",
                LightningHWWarning,
                stacklevel=2,
            )
        self._preprocess.load_state_dict({k: v.to(mine[k].device) for k, v in statistics.items()})
        self.preprocess_changed()

    def _check_split(self, saved: dict[str, Any] | None) -> str | None:
        """A resumed fit on another split would train on the checkpoint's validation (or test) samples.

        Returns:
            How this split differs from the checkpoint's (``None``: the same, or not recorded).
        """
        current = self.split_record()
        if not isinstance(saved, dict):
            return None
        trainer = getattr(self, "trainer", None)
        stage = trainer.state.fn if trainer is not None else None  # a TrainerFn: equal to its str value
        fitting = stage == "fit"
        # Predicting on new files (predict --predict_from) uses no split of this data.
        if getattr(self, "_predict_raw", None) is not None:
            return None
        if "samples" in current and "samples" not in saved:
            self._caveat(
                f"the checkpoint does not record which samples {type(self).__name__} split (it was saved before "
                "lightning-hw recorded them, 2026-12-06): if files were added, removed or relabelled since, or the "
                "folder holds GIF files or hidden folders (read otherwise since then), the splits differ from training's",
                fitting,
            )
        # A checkpoint from before a key was recorded says nothing about it.
        keys = [key for key in current if key in saved and saved[key] != current[key]]
        if not keys:
            return None
        changed = ", ".join(
            self._samples_change(saved["samples"], current["samples"]) if key == "samples"
            else f"{key} {saved.get(key)!r} in training, {current[key]!r} here"
            for key in keys
        )
        if fitting:
            advice = (
                "restore the files and classes it was trained on, or train a new run" if "samples" in keys
                else "resume with the run's config.yaml"
            )
            raise ConfigError(
                f"the checkpoint was trained on another split of the data than this {type(self).__name__} makes "
                f"({changed}); {advice}"
            )
        # predict without --predict_from predicts the test split
        split = {"validate": "validation", "test": "test", "predict": "test"}.get(stage, "evaluation")
        # Testing on other folds is fine (the test split does not depend on them); validating is not:
        # the validation split is a fold, and the other folds trained.
        deciding = ("splits", "split_seed", "samples") + (("folds", "fold") if split == "validation" else ())
        if any(key in deciding for key in keys):
            self._caveat(
                f"the checkpoint was trained on another split of the data ({changed}): this {split} split may hold "
                "samples it was trained on; use the config it was trained with (its run's config.yaml) "
                "and the files it was trained on",
                fitting,
            )
        return changed

    def _caveat(self, message: str, fitting: bool) -> None:
        """Warn, and keep the message for an evaluation's record (:attr:`split_caveats`)."""
        warnings.warn(message, LightningHWWarning, stacklevel=3)
        if not fitting and message not in self.split_caveats:
            self.split_caveats.append(message)

    @staticmethod
    def _samples_change(saved: dict[str, Any], current: dict[str, Any]) -> str:
        if saved.get("count") != current["count"]:
            return f"the data held {saved.get('count')} samples in training, {current['count']} here"
        # Each sample is named with its label: same count, other files, or the classes in another order.
        return f"the data held other samples or labels in training ({current['count']} then and now, not the same)"

    def preprocess_changed(self) -> None:
        """Hook: :attr:`preprocess` got other statistics; data prepared with the old ones must be redone."""


class InMemoryDataModule(SplitDataModule):
    """A dataset held in memory as tensors; batches are sliced (see :class:`TensorBatchLoader`).

    Subclasses implement :meth:`load_tensors` (the whole dataset, split here by
    ``splits``) or, for datasets that come with their own splits, :meth:`load_splits`;
    either returns raw samples (in :attr:`raw_units`). :meth:`setup` builds
    :attr:`preprocess` from the training split and, unless :attr:`preprocess_per_batch`,
    applies it once to every split (the fastest for small models); the raw splits stay in
    :attr:`raw_data`.

    Args:
        standardize: scale every input feature to zero mean and unit variance, with the
            statistics of the training split only (so nothing leaks from val/test).
        shuffle_seed: seed of the training order; ``None`` draws it from the global seed
            (``seed_everything``), so runs with the same seed still match, on one process or several.
        **kwargs: see :class:`SplitDataModule`.
    """

    #: raw values are divided by this before standardisation (the digits' 0-16 -> 0-1)
    raw_divisor: ClassVar[float] = 1.0
    #: keep the splits raw and run :attr:`preprocess` on every batch on the device (compact
    #: raw data: uint8 images, multi-hot words) instead of once at set-up
    preprocess_per_batch: ClassVar[bool] = False

    def __init__(self, standardize: bool = False, shuffle_seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.standardize = standardize
        self.shuffle_seed = shuffle_seed
        self._order_random_state: torch.Tensor | None = None  # see note_random_state
        self.data: dict[str, Split] = {}
        self.raw_data: dict[str, Split] = {}
        self._train_loader: TensorBatchLoader | None = None
        self._predict_raw: torch.Tensor | None = None

    def note_random_state(self) -> None:
        """Record the global random state before ``fit``: a DDP run draws its training order from it.

        Lightning's DDP re-seeds every process before the loader is asked for; drawn from the
        state recorded here, the order is the one a single process draws (see
        :func:`~lightning_hw.data.epoch_order.training_order_seed`).
        """
        self._order_random_state = torch.get_rng_state()

    def load_tensors(self) -> Split:
        """The whole dataset as raw ``(features, targets)``, split by :attr:`splits`."""
        raise MissingMethodError(
            "datamodule",
            type(self),
            "implements neither load_tensors() nor load_splits()",
            "implement load_tensors(), the whole data set as raw (features, targets) tensors, or load_splits(), "
            "{'train': (x, y), 'val': (x, y), 'test': (x, y)} (see \"3. A datamodule\" in plugins/README.md)",
        )

    def load_splits(self) -> dict[str, Split]:
        """``{"train": (x, y), "val": ..., "test": ...}``; default: split :meth:`load_tensors`."""
        tensors = self.load_tensors()
        self.check_loaded(tensors, "load_tensors()")
        parts = self.split_positions(tensors[0].shape[0], tensors[1] if len(tensors) > 1 else None)
        return {name: tuple(t[idx] for t in tensors) for name, idx in zip(SPLIT_NAMES, parts)}

    def check_loaded(self, tensors: Split, source: str, split: str | None = None) -> None:
        """Refuse loaded tensors that disagree with each other or with the declared sample shape.

        The task's net is built for :attr:`raw_input_shape` (``input_shape`` unless overridden)
        before any data is loaded, so samples of another shape failed only in the first step, as
        a shape error from inside the net (or as a ``mean and std`` error about settings never
        given, from the standardisation); tensors of unequal length as an index error while
        splitting. Either is a plugin's loader and its properties disagreeing: said in one line.

        Args:
            tensors: ``(x, y, ...)`` as a loader returned them.
            source: the method that returned them, e.g. ``"load_tensors()"``.
            split: the split they are, when the method returned several.

        Raises:
            DataError: what disagrees, and what to change.
        """
        where = f"{type(self).__name__}.{source}" + (f" ({split} split)" if split else "")
        rows = [int(t.shape[0]) if t.dim() else 0 for t in tensors]
        if len(set(rows)) > 1:
            counts = f"{rows[0]} samples but {rows[1]} targets" if len(rows) == 2 else f"tensors of {rows} rows"
            raise DataError(f"{where} returned {counts}; return one target (row) per sample")
        try:
            expected = tuple(self.raw_input_shape)
        except NotImplementedError:
            return  # the task's link to it says, in one line, which attribute to define
        shape = tuple(tensors[0].shape[1:])
        if shape != expected:
            own = type(self).raw_input_shape is not SplitDataModule.raw_input_shape
            attr = "raw_input_shape" if own else "input_shape"
            raise DataError(
                f"{where} returned samples of shape {shape}, but its {attr} is {expected} (the shape the task's "
                f"net is built for); return samples of that shape, or make {attr} say what the data holds "
                "(plugins/README.md, section 3)"
            )

    def build_preprocess(self, train_x: torch.Tensor) -> Preprocess:
        """The preprocessing of this data: divide by :attr:`raw_divisor`, standardise per feature if asked.

        Args:
            train_x: the training split's raw samples (the only data statistics come from).
        """
        mean = std = None
        if self.standardize:
            mean, std = feature_stats(train_x.float() / self.raw_divisor)
        return Preprocess(
            self.raw_input_shape,
            units=self.raw_units,
            divide_by=self.raw_divisor,
            mean=mean,
            std=std,
            decode=self.decode_description(),
        )

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        raw = self.load_splits()
        # A missing split would otherwise be a KeyError when its loader is first asked for:
        # for the test split, after the whole training.
        missing = [name for name in SPLIT_NAMES if name not in raw]
        if missing:
            returned = ", ".join(map(repr, raw)) or "nothing"
            raise DataError(
                f"{type(self).__name__}.load_splits() returned no {' or '.join(map(repr, missing))} split "
                f"(it returned {returned}); return all three, {{'train': (x, y), 'val': (x, y), 'test': (x, y)}} "
                "(cut a missing one from another split), or implement load_tensors() and let "
                "--data.init_args.splits cut the data"
            )
        self.check_folds_applied()
        own_splits = type(self).load_splits is not InMemoryDataModule.load_splits
        for name, tensors in raw.items():
            if own_splits:  # load_tensors' were checked before they were split
                self.check_loaded(tensors, "load_splits()", name)
            if tensors[0].shape[0] == 0:
                raise DataError(self.empty_split_message(name))
        self.raw_data = raw
        self.preprocess = self.build_preprocess(raw["train"][0])
        self.data = raw if self.preprocess_per_batch else {name: self.prepared(t) for name, t in raw.items()}

    def preprocess_changed(self) -> None:
        if self.data and not self.preprocess_per_batch:
            self.data = {name: self.prepared(tensors) for name, tensors in self.raw_data.items()}

    def prepared(self, raw_batch: Split) -> Split:
        """The set-up-time part of the preprocessing: everything, unless it runs per batch."""
        if self.preprocess_per_batch:
            return raw_batch
        with torch.no_grad():
            return (self.preprocess(raw_batch[0]), *raw_batch[1:])

    def on_after_batch_transfer(self, batch: Split, dataloader_idx: int) -> Split:
        if not self.preprocess_per_batch:
            return batch
        inputs, *rest = batch
        return (self.preprocess(inputs), *rest)

    def model_batch(self, raw_batch: Split) -> Split:
        """A raw batch as the model sees it in training: the set-up-time part, then the per-batch hook."""
        return self.on_after_batch_transfer(self.prepared(raw_batch), 0)

    def raw_dataloader(self, split: str) -> TensorBatchLoader:
        """The raw samples of a split in evaluation batches (what files would give; for export checks)."""
        return TensorBatchLoader(self.raw_data[split], batch_size=self.eval_batch_size)

    def _loader(self, split: str, **kwargs: Any) -> TensorBatchLoader:
        return self._shard(self.data[split], split, **kwargs)

    def _shard(self, tensors: tuple[torch.Tensor, ...], split: str, **kwargs: Any) -> TensorBatchLoader:
        """A loader of this process's share of ``tensors``, the samples of ``split`` (all of them outside DDP)."""
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        if split != "train":
            self.check_evaluation_shares(split, tensors[0].shape[0])
        # Only training pads the processes' shares to equal size: an evaluation counts each sample once.
        return TensorBatchLoader(tensors, num_replicas=world, rank=rank, pad=split == "train", **kwargs)

    def train_dataloader(self) -> TensorBatchLoader:
        # One loader for the whole run: its generator carries the shuffle order across epochs.
        if self._train_loader is None:
            seed = training_order_seed(self.shuffle_seed, self.trainer, self._order_random_state)
            self._train_loader = self._loader(
                "train", batch_size=self.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
            )
        return self._train_loader

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", batch_size=self.eval_batch_size)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", batch_size=self.eval_batch_size)

    def predict_from(self, path: str | Path, on_unreadable: str = "fail") -> list[str]:
        """Predict on the samples of ``path`` (see :meth:`read_inputs`) instead of the test split; returns their ids.

        :meth:`predict_dataloader` then serves them, prepared by :attr:`preprocess`.
        """
        ids, raw = self.read_inputs(Path(path), on_unreadable)
        self._predict_raw = raw
        return ids

    def predict_ids(self) -> list[str] | None:
        """The names of the samples :meth:`predict_dataloader` serves, in order: the test split's :meth:`split_ids`.

        ``None`` after :meth:`predict_from`, which returns the names of its samples itself.
        """
        return None if self._predict_raw is not None else self.split_ids("test")

    def predict_dataloader(self) -> TensorBatchLoader:
        """The test split, or the samples of :meth:`predict_from` (prepared as the training data was)."""
        if self._predict_raw is not None:
            self._warn_if_other_units(self._predict_raw)
            return self._shard(self.prepared((self._predict_raw,)), "predict", batch_size=self.eval_batch_size)
        return self._loader("test", batch_size=self.eval_batch_size)

    def _warn_if_columns_off(self, train: torch.Tensor, raw: torch.Tensor) -> None:
        """Warn about named table columns whose values lie far outside that feature's training range.

        The range of all values together missed columns given in another order (a CSV without a
        header, taken by position): the phones' ``ram`` (hundreds to thousands) read as ``blue``
        (0/1) kept every value within the table's overall range, and the model predicted from
        swapped features without a word. Only tables whose columns are named: an image's pixels
        or Reuters' word columns each span little of their data's range.

        Args:
            train: the training split's raw samples.
            raw: the raw samples to predict.
        """
        names = getattr(self, "feature_names", None)
        if not names or train.dim() != 2 or raw.dim() != 2 or raw.shape[1] != len(names):
            return
        low, high = train.min(0).values.double(), train.max(0).values.double()
        new_low, new_high = raw.min(0).values.double(), raw.max(0).values.double()
        span = high - low
        off = ((span > 0) & ((new_high > high + span) | (new_low < low - span))).nonzero().flatten().tolist()
        if not off:
            return
        shown = ", ".join(
            f"{names[j]} {new_low[j].item():g} to {new_high[j].item():g} (training: {low[j].item():g} to {high[j].item():g})"
            for j in off[:3]
        )
        more = f" and {len(off) - 3} more" if len(off) > 3 else ""
        order = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        warnings.warn(
            f"the values to predict lie far outside the training data's in {len(off)} column(s): {shown}{more}; "
            f"are the columns in the order {order} and in the same units? "
            "A header row naming them makes their order not matter",
            LightningHWWarning,
            stacklevel=3,
        )

    def _warn_if_other_units(self, raw: torch.Tensor) -> None:
        """Values far outside the training data's range are most likely in other units (0-1 for 0-255...)."""
        if "train" not in self.raw_data or raw.numel() == 0:  # streamed data: no training split in memory
            return
        train = self.raw_data["train"][0]
        self._warn_if_columns_off(train, raw)
        low, high = float(train.min()), float(train.max())
        new_low, new_high = float(raw.min()), float(raw.max())
        span = high - low
        if span > 0 and (new_high > high + span or new_low < low - span or (new_high - new_low) < span / 10):
            warnings.warn(
                f"the values to predict run from {new_low:g} to {new_high:g}, the training data's from {low:g} to "
                f"{high:g}; {type(self).__name__} takes {self.raw_units}. Are they in the same units?",
                LightningHWWarning,
                stacklevel=2,
            )
