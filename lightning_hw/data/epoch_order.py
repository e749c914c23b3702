"""The order in which a training loader visits its samples, epoch after epoch, and how far it got.

Both training loaders of the project draw their order here: :class:`TensorBatchLoader`
(data held in memory) and :class:`~lightning_hw.data.streaming.StreamedBatchLoader`
(files decoded by worker processes). So a folder streamed from disk trains on exactly the
batches it would if it were held in memory, and both resume an interrupted epoch where it
stopped: Lightning saves a loader's ``state_dict`` in every checkpoint and gives it back
when a run resumes, and the state here (the generator as the epoch began, and the batches
already drawn) replays the same order and skips what was seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch


def training_order_seed(shuffle_seed: int | None, trainer: Any = None, random_state: torch.Tensor | None = None) -> int:
    """The seed of a training order: ``shuffle_seed``, else one drawn from the global random state.

    In one process it is drawn from the global state as it stands (the numbers measured for the
    configs depend on it). Under DDP it is drawn, without advancing it, from ``random_state``,
    the state that the CLI recorded before ``fit`` (where a single process stands then): by the
    time the loader is asked for, Lightning's DDP has re-seeded each process (``reset_seed``),
    and the same config trained on another order on 2 processes than on 1.

    Every DDP process must also draw the same permutation, since each takes every
    ``world_size``-th position of it: the drawn seed is the first process's, sent to the others.
    With ``seed_everything`` set they draw the same number anyway, but with ``--seed_everything
    false`` (or processes seeded apart) each drew its own, so in every epoch some samples were
    trained on twice and others not at all.

    Args:
        shuffle_seed: the datamodule's ``shuffle_seed`` (used as it is when not ``None``).
        trainer: the datamodule's trainer, if attached (its strategy broadcasts the seed).
        random_state: a ``torch.get_rng_state()`` taken before ``fit``, or ``None``.
    """
    if shuffle_seed is not None:
        return shuffle_seed
    distributed = trainer is not None and trainer.world_size > 1
    generator = None
    if distributed and random_state is not None:
        generator = torch.Generator()
        generator.set_state(random_state)
    seed = int(torch.randint(0, 2**62, (), generator=generator).item())
    if distributed:
        seed = int(trainer.strategy.broadcast(seed, src=0))
    return seed


class EpochOrder:
    """Which samples each batch of an epoch holds; its state is saved in Lightning checkpoints.

    With ``shuffle=True`` and a seeded ``generator`` the batches are those that
    ``DataLoader(dataset, batch_size, shuffle=True, generator=g)`` draws for an equally
    seeded ``g``, epoch after epoch.

    Args:
        num_items: samples in the data set.
        batch_size: samples per batch.
        shuffle: draw a new permutation every epoch.
        drop_last: drop the last incomplete batch.
        generator: random source of the permutations (a fresh random one if ``None``).
        num_replicas: number of distributed processes sharing the data.
        rank: this process's index among them; it gets every ``num_replicas``-th sample.
        pad: give every process equally many samples by repeating the first ones, as
            ``DistributedSampler`` does: training needs it (DDP's processes must take the same
            steps); evaluation must not, or the repeated samples count twice in its metrics.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        pad: bool = True,
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        if generator is None:
            # Only a shuffled order draws its seed from the global random state: a loader in
            # order (validation, test) must not, since Lightning may build one more often in a
            # resumed run than in an uninterrupted one, and dropout draws from that state.
            generator = torch.Generator()
            if shuffle:
                generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        self.generator = generator
        self.num_replicas, self.rank, self.pad = num_replicas, rank, pad
        self._epoch_start_state: torch.Tensor | None = None
        self._order: torch.Tensor | None = None
        self._first = 0  # the first batch of this epoch still to draw (> 0 when resuming)
        self._drawn = 0  # batches of this epoch drawn so far, counting those skipped on resuming
        self._skip = 0  # batches to skip at the next epoch's start (set by load_state_dict)
        self._skip_batch_size: int | None = None  # the batch size those skipped batches were drawn with

    @property
    def num_samples(self) -> int:
        """Samples this process sees per epoch."""
        if not self.pad:
            return len(range(self.rank, self.num_items, self.num_replicas))
        return math.ceil(self.num_items / self.num_replicas)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def start_epoch(self) -> None:
        """Draw the next epoch's order (the saved one, when resuming) and start counting its batches."""
        self._epoch_start_state = self.generator.get_state()
        self._order = self._draw_order()
        self._first, self._skip = self._skip, 0
        self._drawn = self._first

    def batches(self) -> Iterator[slice | torch.Tensor]:
        """The indices of this epoch's batches still to draw: ranges in order, else index tensors.

        Call :meth:`start_epoch` first and :meth:`batch_drawn` as each batch is handed on.
        """
        order = self._order
        total = self.num_samples if order is None else order.shape[0]
        stop = (total // self.batch_size) * self.batch_size if self.drop_last else total
        for start in range(self._first * self.batch_size, stop, self.batch_size):
            end = min(start + self.batch_size, stop)
            yield slice(start, end) if order is None else order[start:end]

    def batch_drawn(self) -> None:
        """Count one batch of this epoch as handed to the training loop."""
        self._drawn += 1

    def _draw_order(self) -> torch.Tensor | None:
        n = self.num_items
        if not self.shuffle:
            order = None
        else:
            # Consume the generator exactly as DataLoader + RandomSampler do: one int64 for
            # the iterator's base seed, the permutation, then a second permutation that the
            # sampler draws (and discards) when it is exhausted at the end of the epoch.
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
            order = torch.randperm(n, generator=self.generator)
            torch.randperm(n, generator=self.generator)
        if self.num_replicas > 1:
            order = torch.arange(n) if order is None else order
            if self.pad:
                padded = self.num_samples * self.num_replicas
                order = torch.cat([order, order[: padded - n]])
            order = order[self.rank :: self.num_replicas]
        return order

    def state_dict(self) -> dict[str, Any]:
        """Generator state and position: inside an epoch, its start and the batches drawn (of which size); else the next epoch's start."""
        if self._epoch_start_state is not None and 0 < self._drawn < len(self):
            return {"generator": self._epoch_start_state, "skip": self._drawn, "batch_size": self.batch_size}
        return {"generator": self.generator.get_state(), "skip": 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next epoch replays the saved order from the saved position."""
        self.generator.set_state(state["generator"])
        self._skip = int(state["skip"])
        self._skip_batch_size = state.get("batch_size")  # absent from checkpoints written before 2026-12-06

    def resumed_batch_size(self) -> int | None:
        """The batch size the epoch being resumed began with, when it differs from this order's (else ``None``).

        The position is counted in batches: on another batch size the rest of the epoch would
        skip samples (a larger one) or repeat them (a smaller one).
        """
        if self._skip and self._skip_batch_size is not None and self._skip_batch_size != self.batch_size:
            return int(self._skip_batch_size)
        return None

    def finish_epoch(self) -> None:
        """Declare the epoch over although not every batch was drawn (``limit_train_batches``).

        Lightning stops drawing at its limit, so the loader cannot see that epoch end by itself;
        a checkpoint saved afterwards must resume with the next epoch's order, not inside this one.
        """
        self._epoch_start_state = None


class OrderedLoader:
    """Base of the training loaders that draw their batches from an :class:`EpochOrder` (``self.order``).

    Lightning saves ``state_dict`` in checkpoints and gives it back with ``load_state_dict``
    when a run resumes; :class:`~lightning_hw.callbacks.resume.ResumeState` calls
    ``finish_epoch`` when ``limit_train_batches`` cuts an epoch short.
    """

    order: EpochOrder

    def __len__(self) -> int:
        return len(self.order)

    def state_dict(self) -> dict[str, Any]:
        """Generator state and position (see :meth:`EpochOrder.state_dict`), saved by Lightning in checkpoints."""
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next epoch replays the saved order from the saved position."""
        self.order.load_state_dict(state)

    def finish_epoch(self) -> None:
        """See :meth:`EpochOrder.finish_epoch`."""
        self.order.finish_epoch()


class TensorBatchLoader(OrderedLoader):
    """Batches sliced from in-memory tensors; a drop-in for ``DataLoader(TensorDataset(...))``.

    With ``shuffle=True`` and a seeded ``generator`` it yields exactly the batches that
    ``DataLoader(TensorDataset(*tensors), batch_size, shuffle=True, generator=g)`` yields
    for an equally seeded ``g``, epoch after epoch, but without per-sample indexing and
    collation. Its state (generator and position, see :class:`EpochOrder`) is saved in
    Lightning checkpoints, so a resumed run sees the same order.

    Args:
        tensors: tensors with the same first dimension (e.g. features and targets).
        batch_size, shuffle, drop_last, generator, num_replicas, rank, pad: the order's (see :class:`EpochOrder`).
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        pad: bool = True,
    ) -> None:
        if len({t.shape[0] for t in tensors}) != 1:
            raise ValueError("all tensors must have the same number of samples")
        self.tensors = tensors
        self.order = EpochOrder(tensors[0].shape[0], batch_size, shuffle, drop_last, generator, num_replicas, rank, pad)

    @property
    def batch_size(self) -> int:
        return self.order.batch_size

    @property
    def generator(self) -> torch.Generator:
        return self.order.generator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        self.order.start_epoch()
        for index in self.order.batches():
            # Contiguous slices are views (no copy); shuffled batches need one gather each.
            batch = tuple(t[index] for t in self.tensors)
            self.order.batch_drawn()
            yield batch
