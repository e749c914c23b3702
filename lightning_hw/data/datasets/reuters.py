"""Reuters newswire topics (E8): Keras' ``reuters.npz``, multi-hot encoded, 46 topics.

The file holds ``x``, an object array of 11,228 word-rank lists, and ``y``, the topics.
Everything Keras' ``reuters.load_data`` does to it is reproduced here, so the splits and
features are the ones the reports trained on: the seeded shuffle (seed 113), the index
conventions (0 padding, 1 start of sequence, 2 out-of-vocabulary, real words from 3 on),
the ``num_words`` cut and the 80/20 train/test split (8,982 / 2,246).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_hw.data.base import InMemoryDataModule, Split
from lightning_hw.data.io.download import download_file, load_npz, manual_hint
from lightning_hw.errors import ConfigError, DataError

REUTERS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/reuters.npz"
#: the file_hash of keras/src/datasets/reuters.py
REUTERS_SHA256 = "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"
#: topic names, index = label (keras.datasets.reuters.get_label_names())
REUTERS_TOPICS = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply",
    "coffee", "sugar", "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas",
    "cpi", "money-fx", "interest", "gnp", "meal-feed", "alum", "oilseed", "gold", "tin",
    "strategic-metal", "livestock", "retail", "ipi", "iron-steel", "rubber", "heat", "jobs",
    "lei", "bop", "zinc", "orange", "pet-chem", "dlr", "gas", "silver", "wpi", "hog", "lead",
)  # fmt: skip


def keras_sequences(
    xs: np.ndarray,
    labels: np.ndarray,
    num_words: int | None,
    skip_top: int = 0,
    maxlen: int | None = None,
    seed: int = 113,
    start_char: int | None = 1,
    oov_char: int | None = 2,
    index_from: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Keras' ``reuters.load_data`` transformations, vectorised over one flat token array.

    Args:
        xs: object array of word-rank lists, as stored in the file.
        labels: topic per newswire.
        num_words: keep words with index < ``num_words``; ``None``: Keras' default (the
            largest index, which itself falls out, as in Keras).
        skip_top: also replace the ``skip_top`` most frequent indices by ``oov_char``.
        maxlen: drop newswires of ``maxlen`` or more tokens (Keras' ``remove_long_seq``).
        seed: seed of the shuffle (Keras: 113).
        start_char: index put at the start of every sequence (``None``: none).
        oov_char: index replacing cut words (``None``: cut words are dropped).
        index_from: offset added to every word rank.

    Returns:
        ``(rows, tokens, labels, lengths, num_words)``: token ``tokens[i]`` belongs to
        newswire ``rows[i]``, in the shuffled order Keras uses.
    """
    order = np.arange(len(xs))
    np.random.RandomState(seed).shuffle(order)
    xs, labels = xs[order], np.asarray(labels)[order]
    lengths = np.fromiter((len(x) for x in xs), dtype=np.int64, count=len(xs))
    tokens = np.concatenate([np.asarray(x, dtype=np.int64) for x in xs]) + index_from
    rows = np.repeat(np.arange(len(xs)), lengths)
    if start_char is not None:
        rows = np.concatenate([np.arange(len(xs)), rows])
        tokens = np.concatenate([np.full(len(xs), start_char, dtype=np.int64), tokens])
        lengths = lengths + 1
    if maxlen:
        keep = lengths < maxlen
        position = np.cumsum(keep) - 1  # new row index of every kept newswire
        token_kept = keep[rows]
        rows, tokens = position[rows[token_kept]], tokens[token_kept]
        labels, lengths = labels[keep], lengths[keep]
    if not num_words:
        num_words = int(tokens.max())
    outside = (tokens < skip_top) | (tokens >= num_words)
    if oov_char is not None:
        tokens = np.where(outside, oov_char, tokens)
    else:
        rows, tokens = rows[~outside], tokens[~outside]
    return rows, tokens, labels, lengths, num_words


class Reuters(InMemoryDataModule):
    """Reuters newswires as multi-hot bag-of-words vectors over the ``num_words`` most frequent words.

    ``reuters.npz`` is downloaded from Keras' public URL when missing and checked against
    Keras' SHA-256. The test set is Keras' (the last 20% after its seeded shuffle); the
    validation set is ``val_fraction`` of Keras' training part.

    Args:
        root: folder holding ``reuters.npz``.
        download: fetch the file when it is missing.
        num_words: vocabulary size, i.e. input features (E8: 1,000).
        skip_top: see :func:`keras_sequences` (Keras' ``load_data`` arguments).
        maxlen: see :func:`keras_sequences`.
        test_split: Keras' test fraction, in (0, 1).
        seed: Keras' shuffle seed.
        start_char: see :func:`keras_sequences`.
        oov_char: see :func:`keras_sequences`.
        index_from: see :func:`keras_sequences`.
        val_fraction: share of the training newswires held out for validation; with
            ``folds``, the folds cut them instead (the test newswires stay the test set).
        **kwargs: batch size and seeds; see :class:`~lightning_hw.data.base.InMemoryDataModule`.
    """

    own_split = "--data.init_args.test_split cuts Keras' test newswires, and --data.init_args.val_fraction of the rest validate"

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        num_words: int = 10000,
        skip_top: int = 0,
        maxlen: int | None = None,
        test_split: float = 0.2,
        seed: int = 113,
        start_char: int | None = 1,
        oov_char: int | None = 2,
        index_from: int = 3,
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_words < 4:
            raise ConfigError(f"num_words must be > 3 (indices 0-2 are reserved), got {num_words}")
        if not 0 < test_split < 1:
            # Keras does not check it: 1.5 cut at a negative index and tested on the last half, silently.
            raise ConfigError(f"test_split must be between 0 and 1, got {test_split}")
        self.root = Path(root)
        self.download = download
        self.num_words = num_words
        self.keras_args = dict(
            skip_top=skip_top, maxlen=maxlen, seed=seed, start_char=start_char, oov_char=oov_char, index_from=index_from
        )
        self.test_split = test_split
        self.val_fraction = val_fraction
        self._dropped_by_maxlen = (0, 0)  # (newswires maxlen dropped, newswires in the file), set by load_splits

    # Multi-hot rows stay uint8 in memory (4x smaller); the preprocessing casts each batch to float.
    preprocess_per_batch = True
    raw_units = "multi-hot word indicators 0/1, one column per vocabulary index"

    @property
    def class_names(self) -> list[str]:
        return list(REUTERS_TOPICS)

    def decode_description(self) -> dict[str, Any]:
        """How a newswire's word ranks become a row: Keras' index conventions, then multi-hot (ONNX metadata).

        Without these numbers a row built from raw word ranks would put every word three
        columns off and miss the start marker set in every training row.
        """
        args = self.keras_args
        return {
            "reader": "a newswire as its list of word ranks, as in reuters.npz 'x' (Keras' reuters_word_index.json ranks)",
            "columns": (
                "a word of rank r sets column r + index_from to 1; a column below skip_top or from num_words on sets "
                "column oov_char instead (the word is dropped when oov_char is null); column start_char is 1 in "
                "every row (none when null); all other columns are 0"
            ),
            "index_from": args["index_from"],
            "start_char": args["start_char"],
            "oov_char": args["oov_char"],
            "skip_top": args["skip_top"],
            "num_words": self.num_words,
        }

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.num_words,)

    @property
    def plot_feature_names(self) -> list[str]:
        """A name per column for plots (``top_losses.png``'s bars): ``<start>``, ``<oov>``, ``word rank N``.

        Not ``feature_names``: ``predict`` would then take a CSV's columns by those names.
        Column ``start_char`` is 1 in every row and ``oov_char`` stands for the words cut
        from the vocabulary; a word of rank ``r`` is column ``r + index_from``.
        """
        args = self.keras_args
        special = {args["start_char"]: "<start>", args["oov_char"]: "<oov>", 0: "<pad>"}
        return [
            special.get(column) or (f"word rank {column - args['index_from']}" if column >= args["index_from"] else f"index {column}")
            for column in range(self.num_words)
        ]

    @property
    def path(self) -> Path:
        """The ``reuters.npz`` file."""
        return self.root / "reuters.npz"

    def prepare_data(self) -> None:
        if self.path.is_file():
            return
        if self.root.is_file():  # root set to the file itself: the download's folder could not even be made
            raise DataError(
                f"Reuters file reuters.npz not found at {self.path.absolute()}: --data.init_args.root is a file; "
                f"set it to the folder that holds reuters.npz" + (f" ({self.root.parent})" if self.root.name == "reuters.npz" else "")
            )
        if not self.download:
            raise DataError(
                f"Reuters file reuters.npz not found at {self.path.absolute()}: set --data.init_args.download true, "
                f"or {manual_hint(REUTERS_URL, self.path)}"
            )
        download_file(REUTERS_URL, self.path, REUTERS_SHA256, "Reuters")

    def empty_split_message(self, split: str) -> str:
        """As the base's, but naming ``maxlen`` when it dropped newswires (the splits cannot give back what it removed)."""
        dropped, total = self._dropped_by_maxlen
        if not dropped:
            return super().empty_split_message(split)
        maxlen = self.keras_args["maxlen"]
        counted = ", the start mark included" if self.keras_args["start_char"] is not None else ""
        return (
            f"the {split} split of Reuters is empty; --data.init_args.maxlen {maxlen} keeps {total - dropped} of its "
            f"{total} newswires (those shorter than {maxlen} tokens{counted}): raise it, or set it to null"
        )

    def load_splits(self) -> dict[str, Split]:
        self.prepare_data()
        try:
            arrays = load_npz(self.path)
            xs, labels = arrays["x"], arrays["y"]
        except Exception as err:  # noqa: BLE001 - truncated zip, missing key, refused pickle
            raise DataError(
                f"cannot read {self.path.absolute()} ({type(err).__name__}: {err}); delete it to download it again"
            ) from None
        if len(xs) != len(labels) or len(xs) == 0:
            raise DataError(f"{self.path.absolute()} has {len(xs)} newswires but {len(labels)} labels")
        if labels.min() < 0 or labels.max() >= len(REUTERS_TOPICS):
            raise DataError(f"{self.path.absolute()} has topics outside 0-45; delete it to download it again")
        total = len(labels)
        rows, tokens, labels, _, _ = keras_sequences(xs, labels, self.num_words, **self.keras_args)
        self._dropped_by_maxlen = total - len(labels), total
        # Multi-hot: 1 where a word occurs (Keras' vectorize_sequences). uint8 in memory, float per batch.
        features = torch.zeros(len(labels), self.num_words, dtype=torch.uint8)
        features[torch.from_numpy(rows), torch.from_numpy(tokens)] = 1
        targets = torch.from_numpy(labels.astype(np.int64))
        cut = int(len(labels) * (1 - self.test_split))
        train, val = self.hold_out((features[:cut], targets[:cut]), self.val_fraction)
        return {"train": train, "val": val, "test": (features[cut:], targets[cut:])}

