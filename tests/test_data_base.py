"""The datamodule base: seeded splits and the in-memory fast path."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_hw.data.base import split_indices
from lightning_hw.data.epoch_order import EpochOrder, TensorBatchLoader
from lightning_hw.data.streaming import StreamedBatchLoader
from lightning_hw.data.datasets.digits import Digits
from lightning_hw.data.datasets.moons import TwoMoons
from lightning_hw.errors import ConfigError, DataError


def test_split_fractions_are_seeded_and_disjoint():
    a = split_indices(1000, (0.7, 0.2, 0.1), seed=3)
    b = split_indices(1000, (0.7, 0.2, 0.1), seed=3)
    assert [len(p) for p in a] == [700, 200, 100]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.cat(a).sort().values.tolist() == list(range(1000))
    assert not torch.equal(a[0], split_indices(1000, (0.7, 0.2, 0.1), seed=4)[0])
    with pytest.raises(ConfigError, match="sum to 1"):
        split_indices(10, (0.5, 0.2, 0.2), seed=0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"splits": (0.9, 0.2, 0.1)}, "sum to 1"),
    ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
    ({"batch_size": -5}, "batch_size must be at least 1, got -5"),
    ({"eval_batch_size": 0}, "eval_batch_size must be at least 1"),
])
def test_settings_that_cannot_work_are_refused_when_the_datamodule_is_built(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TwoMoons(**kwargs)


@pytest.mark.parametrize(("batch_size", "drop_last"), [(32, False), (30, True), (7, False)])
def test_fast_path_yields_the_dataloader_batches(batch_size, drop_last):
    x = torch.randn(100, 3)
    y = torch.arange(100)
    fast = TensorBatchLoader((x, y), batch_size, shuffle=True, drop_last=drop_last,
                             generator=torch.Generator().manual_seed(7))
    plain = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=drop_last,
                       generator=torch.Generator().manual_seed(7))
    assert len(fast) == len(plain)
    for epoch in range(3):  # the generators must stay in step across epochs too
        ours, theirs = list(fast), list(plain)
        assert len(ours) == len(theirs), epoch
        for (xa, ya), (xb, yb) in zip(ours, theirs):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_fast_path_without_shuffle_is_in_order():
    y = torch.arange(10)
    assert [b[0].tolist() for b in TensorBatchLoader((y,), 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_fast_path_resumes_mid_epoch_in_the_same_order():
    y = torch.arange(50)
    loader = TensorBatchLoader((y,), 8, shuffle=True, generator=torch.Generator().manual_seed(1))
    iterator = iter(loader)
    seen = [next(iterator)[0] for _ in range(3)]
    state = loader.state_dict()
    rest = [b[0] for b in iterator]
    resumed = TensorBatchLoader((y,), 8, shuffle=True, generator=torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    assert [b[0].tolist() for b in resumed] == [b.tolist() for b in rest]
    assert len(seen) + len(rest) == len(loader)


def test_fast_path_shards_for_distributed_ranks():
    y = torch.arange(10)
    shards = [
        torch.cat([b[0] for b in TensorBatchLoader((y,), 4, num_replicas=2, rank=r)]) for r in range(2)
    ]
    assert shards[0].tolist() == [0, 2, 4, 6, 8] and shards[1].tolist() == [1, 3, 5, 7, 9]


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_loader_draws_the_in_memory_batches_and_resumes_mid_epoch(workers):
    """Worker processes decoding per sample give the batches of the in-memory loader, epoch after
    epoch, and a state saved after 3 batches resumes (in a new loader) with the batches not yet seen."""
    x = torch.arange(50)

    def streamed(seed: int) -> StreamedBatchLoader:
        order = EpochOrder(50, 8, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return StreamedBatchLoader(TensorDataset(x), order, num_workers=workers, persistent_workers=workers > 0)

    held, stream = TensorBatchLoader((x,), 8, shuffle=True, generator=torch.Generator().manual_seed(7)), streamed(7)
    assert len(stream) == len(held) == 7
    for epoch in range(3):
        assert [b[0].tolist() for b in stream] == [b[0].tolist() for b in held], epoch

    iterator = iter(stream)
    seen = [next(iterator)[0] for _ in range(3)]
    state = stream.state_dict()
    rest = [b[0].tolist() for b in iterator]
    assert state["skip"] == 3 and len(seen) + len(rest) == 7
    resumed = streamed(99)
    resumed.load_state_dict(state)
    assert [b[0].tolist() for b in resumed] == rest
    assert resumed.state_dict()["skip"] == 0  # the epoch ended: the next one starts afresh
    assert [b[0].tolist() for b in resumed] == [b[0].tolist() for b in stream]


def test_streamed_loader_shards_as_the_in_memory_one():
    x = torch.arange(11)
    for rank in range(2):
        order = EpochOrder(11, 4, shuffle=True, generator=torch.Generator().manual_seed(3), num_replicas=2, rank=rank)
        held = TensorBatchLoader((x,), 4, shuffle=True, generator=torch.Generator().manual_seed(3), num_replicas=2, rank=rank)
        assert [b[0].tolist() for b in StreamedBatchLoader(TensorDataset(x), order)] == [b[0].tolist() for b in held]


def test_digits_are_real_scaled_and_split():
    dm = Digits(batch_size=64)
    dm.setup("fit")
    sizes = {k: v[0].shape[0] for k, v in dm.data.items()}
    assert sizes == {"train": 1259, "val": 359, "test": 179}
    x, y = dm.data["train"]
    assert x.shape[1:] == (1, 8, 8) and 0.0 <= x.min() and x.max() <= 1.0
    assert set(y.unique().tolist()) == set(range(10))
    assert dm.num_classes == 10 and dm.input_shape == (1, 8, 8)


def test_standardize_uses_training_statistics_only():
    dm = TwoMoons(n_samples=200, standardize=True)
    dm.setup()
    train_x = dm.data["train"][0]
    assert train_x.mean(0).abs().max() < 1e-5 and (train_x.std(0) - 1).abs().max() < 1e-5
    assert dm.data["val"][0].mean(0).abs().max() > 1e-3  # val is scaled, not re-centred


def test_empty_split_is_a_clear_error():
    dm = TwoMoons(n_samples=5, splits=(0.9, 0.1, 0.0))
    with pytest.raises(DataError, match=r"the val split of TwoMoons is empty; raise its fraction"):
        dm.setup()
