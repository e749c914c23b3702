"""The disk-streaming fallback of datamodules that keep their data in memory when it fits.

Image datamodules decode every file once into uint8 tensors and slice batches from them
(the in-memory fast path). When the decoded data would not fit, they fall back to a
``DataLoader`` that decodes each item when it is read; this mixin is that fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

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

    def _stream(self, split: str, shuffle: bool, batch_size: int, raw: bool = False) -> DataLoader:
        generator = None
        if shuffle:
            seed = self.shuffle_seed if self.shuffle_seed is not None else int(torch.randint(0, 2**62, ()).item())
            generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            DecodedOnAccess(self.stream_items(split), self.decode_raw_item if raw else self.decode_item),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=None if raw else self.stream_collate,
            # Worker processes decode (num_workers None: one per CPU core); uint8 batches are
            # pinned for an asynchronous copy when training on a GPU, which then normalises them.
            **dataloader_settings(getattr(self, "trainer", None), self.num_workers),
        )

    def train_dataloader(self):
        return super().train_dataloader() if self.in_memory else self._stream("train", True, self.batch_size)

    def val_dataloader(self):
        return super().val_dataloader() if self.in_memory else self._stream("val", False, self.eval_batch_size)

    def test_dataloader(self):
        return super().test_dataloader() if self.in_memory else self._stream("test", False, self.eval_batch_size)

    def predict_dataloader(self):
        if self.in_memory or self._predict_raw is not None:  # new files to predict are held in memory
            return super().predict_dataloader()
        return self.test_dataloader()

    def raw_dataloader(self, split: str):
        return super().raw_dataloader(split) if self.in_memory else self._stream(split, False, self.eval_batch_size, raw=True)
