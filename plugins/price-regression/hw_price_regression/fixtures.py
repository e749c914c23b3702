"""A small file in the exact format of Kaggle's mobile price ``train.csv``, for tests and demos.

The real file needs a Kaggle login, so tests write this one instead: the same header,
the same column value ranges and types, and a price class that depends mostly on
``ram`` (as in the real data, where ram dominates), so a model can learn something.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from hw_price_regression.data import FEATURES, TARGET

# (low, high, decimals) per column, the ranges of the real train.csv.
_RANGES = {
    "battery_power": (501, 1998, 0), "blue": (0, 1, 0), "clock_speed": (0.5, 3.0, 1), "dual_sim": (0, 1, 0),
    "fc": (0, 19, 0), "four_g": (0, 1, 0), "int_memory": (2, 64, 0), "m_dep": (0.1, 1.0, 1),
    "mobile_wt": (80, 200, 0), "n_cores": (1, 8, 0), "pc": (0, 20, 0), "px_height": (0, 1960, 0),
    "px_width": (500, 1998, 0), "ram": (256, 3998, 0), "sc_h": (5, 19, 0), "sc_w": (0, 18, 0),
    "talk_time": (2, 20, 0), "three_g": (0, 1, 0), "touch_screen": (0, 1, 0), "wifi": (0, 1, 0),
}  # fmt: skip


def write_mobile_price_csv(path: Path, rows: int = 200, seed: int = 0) -> Path:
    """Write a synthetic ``train.csv`` with Kaggle's header and value ranges.

    Args:
        path: the file to write (its directory is created).
        rows: number of phones.
        seed: seed of the values.

    Returns:
        ``path``.
    """
    rng = np.random.default_rng(seed)
    columns = {}
    for name in FEATURES:
        low, high, decimals = _RANGES[name]
        values = rng.uniform(low, high, rows)
        columns[name] = np.round(values, decimals) if decimals else np.rint(values).astype(int)
    score = (
        columns["ram"] / 3998
        + 0.15 * columns["battery_power"] / 1998
        + 0.1 * (columns["px_height"] + columns["px_width"]) / 3958
    )
    # Four price classes of equal size, by quartile of the score.
    price = np.searchsorted(np.quantile(score, [0.25, 0.5, 0.75]), score)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, TARGET])
        for i in range(rows):
            writer.writerow([columns[name][i] for name in FEATURES] + [int(price[i])])
    return path
