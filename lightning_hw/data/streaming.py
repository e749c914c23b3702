"""The disk-streaming fallback of datamodules that keep their data in memory when it fits.

Image datamodules decode every file once into uint8 tensors and slice batches from them
(the in-memory fast path). When the decoded data would not fit, they fall back to a
``DataLoader`` that decodes each item when it is read; this mixin is that fallback. Its
training loader (:class:`StreamedBatchLoader`) draws the order the in-memory one would, and
resumes an interrupted epoch as that one does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from lightning_hw._compat.lightning import WorkersEndWithTheLoop
from lightning_hw.data.epoch_order import EpochOrder, OrderedLoader, training_order_seed
from lightning_hw.data.loading import dataloader_settings

#: above this many bytes of decoded uint8 pixels the images are streamed from disk instead
IN_MEMORY_LIMIT_BYTES = 4 * 2**30


class DecodedOnAccess(Dataset):
    """Items decoded one at a time when read.

    Args:
        items: what identifies each sample (e.g. ``(path, label)``).
        decode: turns one item into a sample (e.g. ``(uint8 image, label)``).
    """

    def __init__(self, items: Sequence[Any], decode: Callable[[Any], Any]) -> None:
        self.items, self.decode = items, decode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.decode(self.items[index])


class StreamedBatchLoader(WorkersEndWithTheLoop, OrderedLoader):
    """Training batches decoded from files by ``DataLoader`` workers, in :class:`EpochOrder`'s order.

    The ``DataLoader`` inside does the parallel decoding (worker processes, pinned memory,
    ``collate_fn``); the order of its batches comes from an :class:`EpochOrder`, as in
    :class:`~lightning_hw.data.epoch_order.TensorBatchLoader`. So a streamed folder trains
    on the batches it would train on if held in memory, its ``state_dict`` lets a run that
    was interrupted inside an epoch resume at the next unseen batch (a plain ``DataLoader``
    would start the epoch's order over), and under DDP each process reads its own share.

    Args:
        dataset: the samples, decoded when read.
        order: which samples each batch holds, epoch after epoch.
        seed: seed of the workers' random state (drawn by the ``DataLoader`` from its own
            generator, so the global random state, which dropout uses, is left alone).
        collate_fn: joins the samples of a batch (``None``: stack them).
        **settings: further ``DataLoader`` arguments (``num_workers``, ``pin_memory``,
            ``persistent_workers``; see :func:`~lightning_hw.data.loading.dataloader_settings`).
    """

    def __init__(
        self,
        dataset: Dataset,
        order: EpochOrder,
        seed: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        **settings: Any,
    ) -> None:
        self.order = order
        self.loader = DataLoader(
            dataset, batch_sampler=_RemainingBatches(order), collate_fn=collate_fn,
            generator=torch.Generator().manual_seed(seed), **settings,
        )

    @property
    def dataset(self) -> Dataset:
        return self.loader.dataset

    def __iter__(self) -> Iterator[Any]:
        # The order is drawn before the DataLoader asks its batch sampler for the first indices.
        self.order.start_epoch()
        for batch in self.loader:
            self.order.batch_drawn()
            yield batch


class _RemainingBatches(Sampler[list[int]]):
    """The ``DataLoader``'s batch sampler: the index lists of the current epoch's batches still to draw."""

    def __init__(self, order: EpochOrder) -> None:
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[list[int]]:
        for index in self.order.batches():
            yield list(range(index.start, index.stop)) if isinstance(index, slice) else index.tolist()


class EvaluationShard(DistributedSampler):
    """One process's share of an evaluation split under DDP: samples ``rank, rank + num_replicas, ...``.

    Lightning gives an evaluation ``DataLoader`` a ``DistributedSampler``, which repeats the
    first samples until every process has as many, so they counted twice in the metrics;
    it keeps a ``DistributedSampler`` that is already there. The shares are dealt out as the
    in-memory loaders deal them (:class:`~lightning_hw.data.epoch_order.EpochOrder` with
    ``pad=False``).

    Args:
        dataset: the split.
        num_replicas: number of processes.
        rank: this process's index among them.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


class StreamingFallback:
    """Mixin for an ``InMemoryDataModule``: stream from disk when ``self.in_memory`` is false.

    The host class sets ``in_memory`` and has ``shuffle_seed``, ``num_workers``, ``batch_size``
    and ``eval_batch_size``; it implements :meth:`stream_items` and :meth:`decode_item`.
    Put the mixin first in the bases, so its loaders wrap the in-memory ones.
    """

    def stream_items(self, split: str) -> Sequence[Any]:
        """The items of one split, for :meth:`decode_item`."""
        raise NotImplementedError

    def decode_item(self, item: Any) -> Any:
        """Decode one item of :meth:`stream_items` into a sample."""
        raise NotImplementedError

    def decode_raw_item(self, item: Any) -> Any:
        """One item as a raw sample for :meth:`raw_dataloader` (default: :meth:`decode_item`)."""
        return self.decode_item(item)

    #: the training loaders' ``collate_fn`` (``None``: PyTorch's default, which stacks samples)
    stream_collate: Callable[[list[Any]], Any] | None = None

    #: the training order, drawn once per run and carried from epoch to epoch (and from one
    #: training loader to the next, when the trainer reloads them); the loaders themselves are
    #: not kept, so that one read for something else (FeatureCache) lets its workers go
    _streamed_train_order: EpochOrder | None = None
    _streamed_worker_seed = 0

    def _stream(self, split: str, batch_size: int, raw: bool = False) -> DataLoader:
        # Worker processes decode (num_workers None: one per CPU core); uint8 batches are pinned
        # for an asynchronous copy when training on a GPU, which then normalises them.
        dataset = DecodedOnAccess(self.stream_items(split), self.decode_raw_item if raw else self.decode_item)
        trainer = getattr(self, "trainer", None)
        sampler = None
        if not raw and trainer is not None and trainer.world_size > 1:  # raw loaders are read whole, by one process
            self.check_evaluation_shares(split, len(dataset))
            sampler = EvaluationShard(dataset, trainer.world_size, trainer.global_rank)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=None if raw else self.stream_collate,
            # Without a generator the DataLoader seeds its workers from the global random state,
            # once per start of its workers: at the sanity check in one run, after a resumed run
            # restored that state in another, so their augmentation and dropout would drift apart.
            generator=torch.Generator().manual_seed(0),
            **dataloader_settings(trainer, self.num_workers),
        )

    def train_dataloader(self):
        if self.in_memory:
            return super().train_dataloader()
        trainer = getattr(self, "trainer", None)
        items = self.stream_items("train")
        if self._streamed_train_order is None:
            seed = training_order_seed(self.shuffle_seed, trainer, self._order_random_state)
            world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            self._streamed_train_order = EpochOrder(
                len(items), self.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                num_replicas=world, rank=rank,
            )
            self._streamed_worker_seed = seed
        return StreamedBatchLoader(
            DecodedOnAccess(items, self.decode_item), self._streamed_train_order, seed=self._streamed_worker_seed,
            collate_fn=self.stream_collate, **dataloader_settings(trainer, self.num_workers),
        )

    def val_dataloader(self):
        return super().val_dataloader() if self.in_memory else self._stream("val", self.eval_batch_size)

    def test_dataloader(self):
        return super().test_dataloader() if self.in_memory else self._stream("test", self.eval_batch_size)

    def predict_dataloader(self):
        if self.in_memory or self._predict_raw is not None:  # new files to predict are held in memory
            return super().predict_dataloader()
        return self.test_dataloader()

    def raw_dataloader(self, split: str):
        return super().raw_dataloader(split) if self.in_memory else self._stream(split, self.eval_batch_size, raw=True)
