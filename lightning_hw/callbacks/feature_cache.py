"""Train a head on cached backbone features when the backbone is frozen for the whole run.

A frozen backbone in eval mode is a fixed function of its input, so with deterministic
training inputs (no random augmentation) every epoch recomputes the same features: for
ResNet152 that is >95% of the time of a 100-epoch head search. :class:`FeatureCache`
computes them once per image, stores them on disk, and trains the head on them with the
in-memory :class:`~lightning_hw.data.base.TensorBatchLoader`.

Why a callback: it is the one place that sees everything the decision needs (the
trainer's callbacks say whether the backbone ever unfreezes, the datamodule whether its
training inputs are random, the net where the backbone is) and it leaves the config
surface alone: the datamodule and the net stay exactly what the config names, so
``--data.init_args.root`` still works and a checkpoint written from cached features is a
complete model (backbone included) that classifies images. While a run uses the cache,
the callback overrides the datamodule's loader methods on that instance and sets the
net's ``input_is_features``; ``teardown`` undoes both.

The cache is keyed by *content*, not file names: each stored row is the features of one model
input, named by a digest of that input (after the datamodule's own decoding, resizing and
normalisation, with its label), and each file is bound to a backbone fingerprint (model name,
architecture, every weight, and the trainer's precision). A run reads its split once (decoding,
no backbone), takes every row already stored under its backbone from whichever files hold it, and
runs the backbone only on the rest, which it stores in a file of its own. So any change of data
files, transform (size, interpolation, mean/std, crop) or weights computes the changed inputs
again, a rerun reads everything back, and the folds of a k-fold study (or a changed
``val_fraction``) share one computation per image: fold 1's training images are fold 0's
validation images and most of its training images. A run gets the rows back in its datamodule's
order and trains on the batches the datamodule's own training order draws, so its metrics are
those of the same run without the cache.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import time
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from lightning_hw.atomic import atomic_open
from lightning_hw.callbacks.finetuning import FreezeBackbone
from lightning_hw.data.base import TensorBatchLoader
from lightning_hw.data.epoch_order import OrderedLoader
from lightning_hw.errors import ConfigError, LightningHWWarning

#: datamodule hooks replaced while the run trains on cached features. Not predict's: its CSV
#: names each row after the loader's sample in order (the cache is in digest order), and
#: ``--predict_from`` files have no labels to key a cache by; predicting is one pass anyway.
LOADERS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
BATCH_HOOKS = ("on_before_batch_transfer", "on_after_batch_transfer")


def default_cache_dir() -> Path:
    """``$LIGHTNING_HW_CACHE/features``, else ``~/.cache/lightning-hw/features``."""
    root = os.environ.get("LIGHTNING_HW_CACHE") or Path.home() / ".cache" / "lightning-hw"
    return Path(root).expanduser() / "features"


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
    return digest.hexdigest()


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def _batch_digests(x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """One digest per sample of its model input and label (one device-to-host copy per batch)."""
    x, y = x.detach().cpu(), y.detach().cpu()
    return [_digest(_tensor_bytes(xi), _tensor_bytes(yi)) for xi, yi in zip(x, y)]


class FeatureCache(Callback):
    """Compute frozen-backbone features once per image and train the head on them.

    Used only when it cannot change the result: the net has a ``backbone`` and an
    ``input_is_features`` switch (:class:`~lightning_hw.nets.backbones.TimmNet`), a
    :class:`~lightning_hw.callbacks.finetuning.FreezeBackbone` callback keeps the backbone
    frozen for all ``max_epochs`` (for every stage: features of a backbone that the config
    fine-tunes would never be read again), the datamodule has no random augmentation (its
    ``augment``, or a landmark set's ``landmark_augment``, is ``None``) and the run is a single process. Otherwise it says why in one
    line and the run trains on images as usual.

    Args:
        cache_dir: where the features are stored (default: ``$LIGHTNING_HW_CACHE/features``
            or ``~/.cache/lightning-hw/features``); delete it to free the space.
        enabled: set ``false`` to train on images even when the cache could be used
            (e.g. for the benchmark).
        shuffle_seed: seed of the training order over the cached features (default: the
            datamodule's own training order, so the run trains on the batches it would
            without the cache; a datamodule whose loader has no such order draws the seed
            from the global seed, so ``seed_everything`` runs repeat).
    """

    def __init__(self, cache_dir: str | None = None, enabled: bool = True, shuffle_seed: int | None = None) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.enabled = enabled
        self.shuffle_seed = shuffle_seed
        self.active = False
        self._said_off: str | None = None  # the reason last said: the test after a fit says it once
        #: per split: "hit" (every row read from disk), "computed" (every row through the backbone) or
        #: "completed" (some of each); for tests and the benchmark
        self.events: dict[str, str] = {}
        self._features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._originals: dict[str, Any] = {}
        self._train_loader: TensorBatchLoader | None = None
        self._fingerprint: str | None = None
        self._stored: _StoredRows | None = None

    # -- when ----------------------------------------------------------------------------------

    def why_not(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> str | None:
        """Why the cache cannot be used in this run, or ``None`` when it can."""
        net = getattr(pl_module, "net", None)
        datamodule = trainer.datamodule
        if not self.enabled:
            return "disabled (enabled: false)"
        if stage not in LOADERS:
            return f"nothing to do for {stage}"
        if not hasattr(net, "backbone") or not hasattr(net, "input_is_features"):
            return f"the net ({type(net).__name__}) has no backbone to cache (use lightning_hw.nets.backbones.TimmNet)"
        if datamodule is None:
            return "the data does not come from a datamodule"
        if _random_augmentation(datamodule) is not None:
            return "the training images are augmented at random, so their features change every epoch"
        if trainer.fast_dev_run:
            return "fast_dev_run runs the backbone on its few batches instead of the whole data set"
        if trainer.world_size > 1:
            return "it supports single-process runs only"
        # Also for validate/test: a backbone that this config fine-tunes has new weights
        # in every run, so its features would be written once and never read again.
        freezer = next((c for c in trainer.callbacks if isinstance(c, FreezeBackbone)), None)
        if freezer is None:
            return "no FreezeBackbone callback, so the backbone trains"
        if not freezer.frozen_throughout(trainer.max_epochs):
            return f"the backbone unfreezes at epoch {freezer.unfreeze_at_epoch} (max_epochs {trainer.max_epochs})"
        return None

    # -- Lightning hooks -----------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        reason = self.why_not(trainer, pl_module, stage)
        if reason is not None:
            if stage in LOADERS and reason != self._said_off:
                rank_zero_info(f"FeatureCache: off, {reason}.")
                self._said_off = reason
            return
        self._check_cache_dir()
        datamodule = trainer.datamodule
        self._features = {}
        self._train_loader = None
        self._originals = {}
        self._fingerprint = None
        for split in LOADERS[stage]:
            self._override(datamodule, f"{split}_dataloader", self._cached_loader_fn(trainer, pl_module, split))
        for hook in BATCH_HOOKS:  # cached batches are model-ready features: no image preprocessing
            self._override(datamodule, hook, _pass_through)
        pl_module.net.input_is_features = True
        self.active = True

    def _check_cache_dir(self) -> None:
        """Refuse, before any feature is computed, a cache folder that cannot be written."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.cache_dir, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "not writable")
        except OSError as error:
            raise ConfigError(
                f"FeatureCache cannot store features in {self.cache_dir} ({error.strerror or error})",
                "set LIGHTNING_HW_CACHE (or the callback's cache_dir) to a folder you can write, "
                "or turn the cache off with its enabled: false",
            ) from None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Lightning skips teardown when a stage fails: in a notebook the datamodule kept the cached
        # loaders and the net took images for features in the next run, and the files stayed mapped.
        self.teardown(trainer, pl_module, stage="")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self.active:
            return
        datamodule = trainer.datamodule
        for name in self._originals:
            datamodule.__dict__.pop(name, None)
        self._originals = {}
        pl_module.net.input_is_features = False
        self.active = False
        self._stored = None  # lets the memory-mapped files go

    def _override(self, datamodule: LightningDataModule, name: str, fn: Any) -> None:
        self._originals[name] = getattr(datamodule, name)
        setattr(datamodule, name, fn)

    # -- loaders -------------------------------------------------------------------------------

    def _cached_loader_fn(self, trainer: Trainer, pl_module: LightningModule, split: str):
        def loader() -> TensorBatchLoader:
            features, labels = self._split_features(trainer, pl_module, split)
            source = trainer.datamodule
            if split != "train":
                batch_size = getattr(source, "eval_batch_size", None) or getattr(source, "batch_size", 64)
                return TensorBatchLoader((features, labels), batch_size=batch_size)
            if self._train_loader is None:  # one loader per run: its generator carries the order
                own = self._originals["train_dataloader"]() if self.shuffle_seed is None else None
                generator = torch.Generator()
                if isinstance(own, OrderedLoader):
                    # The datamodule's order (its generator as it stands, before its first epoch):
                    # the same batches, so the same metrics, as the run without the cache.
                    order = own.order
                    generator.set_state(order.generator.get_state())
                    batch_size, shuffle, drop_last = order.batch_size, order.shuffle, order.drop_last
                else:
                    seed = self.shuffle_seed
                    if seed is None:
                        seed = int(torch.randint(0, 2**62, ()).item())
                    generator.manual_seed(seed)
                    batch_size, shuffle, drop_last = getattr(source, "batch_size", 64), True, False
                self._train_loader = TensorBatchLoader(
                    (features, labels), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator
                )
            return self._train_loader

        return loader

    def _source_batches(self, trainer: Trainer, pl_module: LightningModule, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split's model inputs and labels, exactly as the datamodule would feed them, in its order."""
        datamodule = trainer.datamodule
        loader = self._originals[f"{split}_dataloader"]()
        before, after = (self._originals[h] for h in BATCH_HOOKS)
        with _in_stored_order(loader):
            for batch in loader:
                batch = before(batch, 0)
                batch = datamodule.transfer_batch_to_device(batch, pl_module.device, 0)
                x, y = after(batch, 0)[:2]
                yield x, y

    def _split_features(self, trainer: Trainer, pl_module: LightningModule, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split in self._features:
            return self._features[split]
        net = pl_module.net
        if self._fingerprint is None:  # the frozen backbone does not change within a stage
            self._fingerprint = _digest(
                net.backbone_fingerprint() if hasattr(net, "backbone_fingerprint") else repr(net.backbone),
                str(trainer.precision),
            )
            self._stored = None
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", getattr(net, "model_name", type(net.backbone).__name__))
        if self._stored is None:  # read once per stage: the rows this backbone has in the cache folder
            self._stored = _StoredRows.of(self.cache_dir.glob(f"{glob.escape(name)}-*.pt"), self._fingerprint)
        start = time.perf_counter()
        features, labels, computed = self._compute(trainer, pl_module, split, self._stored)
        took = time.perf_counter() - start
        shape = tuple(features.shape)
        if not computed:
            self.events[split] = "hit"
            rank_zero_info(f"FeatureCache: {split} features {shape} read from {self._stored.describe()}")
        else:
            read = len(features) - len(computed.rows)
            read_from = self._stored.describe() if read else ""  # before the new file joins them
            path = self._save(name, split, features[computed.rows], labels[computed.rows], computed.digests)
            # Memory-mapped from the file just written: a copy of the new rows kept in memory for the
            # other splits would double what a big backbone's feature maps take.
            self._stored.add_file(path)
            self.events[split] = "computed" if not read else "completed"
            rank_zero_info(
                f"FeatureCache: {split} features {shape} computed in {took:.1f} s, saved to {path}"
                if not read else
                f"FeatureCache: {split} features {shape}: {len(computed.rows)} computed in {took:.1f} s, "
                f"saved to {path}; {read} read from {read_from}"
            )
        self._features[split] = (features, labels)
        return features, labels

    def _save(self, name: str, split: str, features: torch.Tensor, labels: torch.Tensor, digests: list[str]) -> Path:
        """Store newly computed rows; the file's name is a digest of its backbone and of its rows' inputs."""
        path = self.cache_dir / f"{name}-{split}-{_digest(self._fingerprint, *sorted(digests))}.pt"
        by_digest = torch.tensor(sorted(range(len(digests)), key=digests.__getitem__), dtype=torch.long)
        # Stored in digest order, so the same rows computed by another run make the same file. A
        # temporary file of its own, renamed when whole: another run writing the same features at
        # once, or an interrupted write, never leaves a mixed or truncated cache file.
        with atomic_open(path, "wb") as file:
            torch.save({
                "features": features[by_digest], "labels": labels[by_digest], "split": split,
                "digests": [digests[i] for i in by_digest.tolist()], "fingerprint": self._fingerprint,
            }, file)
        return path

    @torch.no_grad()  # not inference_mode: the stored features must be usable as autograd inputs
    def _compute(self, trainer: Trainer, pl_module: LightningModule, split: str, stored: _StoredRows
                 ) -> tuple[torch.Tensor, torch.Tensor, _Computed]:
        """The split's features and labels in the datamodule's order: stored rows read, the others computed."""
        backbone = pl_module.net.backbone
        was_training = [m.training for m in backbone.modules()]
        backbone.eval()  # as FreezeBackbone runs it: pretrained BN statistics, no dropout
        computed_features, labels, digests, computed = [], [], [], _Computed()
        try:
            for x, y in self._source_batches(trainer, pl_module, split):
                batch_digests = _batch_digests(x, y)
                new = [i for i, d in enumerate(batch_digests) if d not in stored]
                if new:
                    inputs = x if len(new) == len(x) else x[torch.tensor(new, device=x.device)]
                    with trainer.precision_plugin.forward_context():
                        out = backbone(inputs)
                    computed_features.append(out.float().cpu())
                    computed.rows.extend(len(digests) + i for i in new)
                    computed.digests.extend(batch_digests[i] for i in new)
                labels.append(y.cpu())
                digests.extend(batch_digests)
        finally:
            for module, mode in zip(backbone.modules(), was_training):
                module.training = mode
        labels = torch.cat(labels)
        if computed_features:
            new_rows = torch.cat(computed_features)
            features = new_rows.new_empty((len(digests), *new_rows.shape[1:]))
            features[computed.rows] = new_rows
        else:
            features = stored.empty_rows(len(digests), like=digests[0])
        stored.fill(features, digests, skip=set(computed.rows))
        return features, labels, computed


class _Computed:
    """The rows of a split that went through the backbone: positions in the split and input digests."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.digests: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.rows)


class _StoredRows:
    """The rows stored under one backbone fingerprint, by input digest, across the cache folder's files.

    Files are memory-mapped: only the rows a run takes are read from disk.
    """

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self._where: dict[str, tuple[int, int]] = {}  # digest -> (file number, row)
        self._features: list[torch.Tensor] = []
        self._paths: list[Path] = []
        self._used: set[int] = set()

    @classmethod
    def of(cls, paths: Iterable[Path], fingerprint: str) -> _StoredRows:
        stored = cls(fingerprint)
        for path in sorted(paths):
            stored.add_file(path)
        return stored

    def add_file(self, path: Path) -> None:
        """Add the rows of the cache file ``path``, if it holds this backbone's (damaged files are said and passed over)."""
        contents = _read_cache_file(path)
        if contents is not None and contents.get("fingerprint") == self.fingerprint:
            self.add(path, contents["digests"], contents["features"])

    def add(self, path: Path, digests: list[str], features: torch.Tensor) -> None:
        number = len(self._features)
        self._features.append(features)
        self._paths.append(path)
        for row, digest in enumerate(digests):
            self._where.setdefault(digest, (number, row))

    def __contains__(self, digest: str) -> bool:
        return digest in self._where

    def empty_rows(self, count: int, like: str) -> torch.Tensor:
        """An uninitialised tensor for ``count`` rows shaped as the stored row of digest ``like``.

        Not as any stored file: one of another image size holds feature maps of another shape.
        """
        number, _ = self._where[like]
        stored = self._features[number]
        return stored.new_empty((count, *stored.shape[1:]))

    def fill(self, features: torch.Tensor, digests: list[str], skip: set[int]) -> None:
        """Set ``features[i]`` to the stored row of ``digests[i]`` for every ``i`` not in ``skip``, one gather per file.

        :meth:`describe` then names the files of this call only (a split's), not those of the splits before it.
        """
        self._used = set()
        wanted: dict[int, tuple[list[int], list[int]]] = {}
        for i, digest in enumerate(digests):
            if i not in skip:
                number, row = self._where[digest]
                positions, rows = wanted.setdefault(number, ([], []))
                positions.append(i)
                rows.append(row)
        for number, (positions, rows) in wanted.items():
            features[positions] = self._features[number][rows]
            self._used.add(number)

    def describe(self) -> str:
        """The files the last :meth:`fill` read: its one path, or how many files and their names."""
        used = [str(self._paths[n]) for n in sorted(self._used)]
        return used[0] if len(used) == 1 else f"{len(used)} files ({', '.join(p.rsplit('/', 1)[-1] for p in used)})"


class _WrongContents(ValueError):
    """A cache file that loads but does not hold this split's features (the message says what it holds)."""


def _read_cache_file(path: Path) -> dict[str, Any] | None:
    """A cache file's contents (features memory-mapped), or ``None`` when it is damaged (said in a warning) or of an older format.

    Files of the format before rows carried their digests cannot be matched to a run's inputs:
    they are passed over in silence, and their rows computed again once.
    """
    try:
        # Memory-mapped where it can be (torch.save's zip format): torch's refusal to map anything
        # else would hide why a damaged file cannot be read.
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        if not isinstance(stored, dict):
            raise _WrongContents("it holds no feature and label tensors")
        if "features" in stored and "digests" not in stored:
            return None  # the older format
        features, labels, digests = stored["features"], stored["labels"], stored["digests"]
        if not (isinstance(features, torch.Tensor) and isinstance(labels, torch.Tensor)):
            raise _WrongContents("it holds no feature and label tensors")
        if not len(features) == len(labels) == len(digests):
            raise _WrongContents(f"it holds {len(features)} features and {len(labels)} labels for {len(digests)} samples")
    except FileNotFoundError:  # deleted since the folder was listed (the cache cleaned by hand): nothing to read
        return None
    except Exception as error:  # truncated, damaged, another format: any unreadable file is computed again
        reason = str(error).split(". ")[0].splitlines()[0] if str(error) else ""  # torch adds advice after its first sentence
        if not isinstance(error, _WrongContents):  # the reader's own text can be a bare "174812789" (a KeyError)
            reason = f"torch.load failed: {type(error).__name__}{': ' + reason if reason else ''}"
        rank_zero_warn(f"FeatureCache: {path} is damaged ({reason}); its features are computed again where needed "
                       "(delete it to stop this warning)",
                       category=LightningHWWarning)
        return None
    return stored


@contextmanager
def _in_stored_order(loader: Any) -> Iterator[None]:
    """Let ``loader`` be read once in its data set's order, its training order left as it was.

    The datamodule's training loader (:class:`OrderedLoader`) is shuffled; reading it for
    the cache must neither reorder the samples nor advance the order that the cached
    loader then takes over. Other loaders are read as they are.
    """
    if not isinstance(loader, OrderedLoader):
        yield
        return
    order = loader.order
    state, shuffle = order.state_dict(), order.shuffle
    order.shuffle = False
    try:
        yield
    finally:
        order.shuffle = shuffle
        order.load_state_dict(state)


def _random_augmentation(datamodule: LightningDataModule) -> Any:
    """The random augmentation a datamodule applies to its training images, or ``None``.

    Image datamodules hold it as ``augment``; the landmark ones hand their ``augment`` (which
    moves the points with the pixels) to ``landmark_augment`` and leave the image-only
    ``augment`` of their base ``None``, so that one alone would call their images fixed.
    """
    augment = getattr(datamodule, "augment", None)
    return augment if augment is not None else getattr(datamodule, "landmark_augment", None)


def _pass_through(batch: Any, dataloader_idx: int) -> Any:
    return batch
