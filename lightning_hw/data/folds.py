"""k-fold cross-validation: which of the non-test samples validate in fold ``i`` of ``k``.

A single validation split of a small data set (E3's 100 photos, E4's 200 points) can
mislead by chance; training ``k`` times, each time validating on another fifth, and
reporting the mean and spread over the folds does not. The test split stays fixed and
outside the folds, so every fold is scored on the same held-out samples.

Every datamodule goes through :func:`fold_indices` (via
:meth:`lightning_hw.data.base.SplitDataModule.fold_of`), so the folds of a data set are
the same whichever datamodule reads it.
"""

from __future__ import annotations

import itertools

import torch

from lightning_hw.errors import ConfigError


def check_folds(folds: int | None, fold: int | None) -> None:
    """Refuse fold settings that cannot work, before any data is read.

    Args:
        folds: the number of folds ``k`` (``None``: no cross-validation).
        fold: the fold that validates, ``0 <= fold < folds``.

    Raises:
        ConfigError: ``fold`` without ``folds``, ``folds`` without ``fold``, ``folds < 2``, or
            ``fold`` outside ``[0, folds)``.
    """
    if folds is None:
        if fold is not None:
            raise ConfigError(
                f"--data.init_args.fold {fold} needs --data.init_args.folds (how many folds), "
                f"e.g. --data.init_args.folds 5 --data.init_args.fold {fold}"
            )
        return
    if folds < 2:
        raise ConfigError(f"folds must be at least 2 (k-fold cross-validation), got {folds}; e.g. --data.init_args.folds 5")
    if fold is None:
        raise ConfigError(f"folds {folds} needs --data.init_args.fold: which fold validates, 0 to {folds - 1}")
    if not 0 <= fold < folds:
        raise ConfigError(f"fold must be 0 to {folds - 1} with folds {folds}, got {fold}")


def class_labels(targets: torch.Tensor | None) -> torch.Tensor | None:
    """The targets as class labels to stratify by, or ``None`` when they are not (regression, landmarks, multi-label)."""
    if targets is None or targets.ndim != 1 or targets.is_floating_point() or targets.is_complex():
        return None
    return targets


def fold_indices(labels_or_n: torch.Tensor | int, folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the training and the validation samples of one fold (scikit-learn's k-fold).

    Class labels (a 1-D integer tensor) are split with ``StratifiedKFold``: in every fold
    each class has ``floor`` or ``ceil`` of its count / ``k`` samples, so the class ratios
    are those of the whole within one sample per class. Anything else (a count, float
    targets) is split with a shuffled ``KFold``. Both are seeded: the same folds in every run.

    Args:
        labels_or_n: the targets of the samples to fold (stratified if they are class
            labels), or their number.
        folds: ``k``, at least 2.
        fold: ``i``, ``0 <= i < k``: the fold that validates.
        seed: seed of the shuffle (the datamodule's ``split_seed``).

    Returns:
        ``(train, val)``: sorted positions in ``range(n)``; the ``k`` validation parts of
        ``fold = 0..k-1`` partition ``range(n)``.

    Raises:
        ConfigError: bad ``folds``/``fold``, or fewer samples than folds.
    """
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    check_folds(folds, fold)
    labels = None if isinstance(labels_or_n, int) else class_labels(labels_or_n)
    n = labels_or_n if isinstance(labels_or_n, int) else int(labels_or_n.shape[0])
    if n < folds:
        raise ConfigError(f"{folds} folds need at least {folds} samples outside the test split, there are {n}; use fewer folds")
    random_state = seed % 2**32  # numpy seeds are 32-bit
    if labels is not None:
        labels = labels.cpu().numpy()
        # Stratifying needs a class with at least k members; with none, every fold is a plain
        # shuffled one anyway (each class already lies within one sample of its share).
        if np.bincount(labels - labels.min()).max() < folds:
            labels = None
    if labels is None:
        parts = KFold(folds, shuffle=True, random_state=random_state).split(np.zeros(n))
    else:
        parts = StratifiedKFold(folds, shuffle=True, random_state=random_state).split(np.zeros(n), labels)
    train, val = next(itertools.islice(parts, fold, None))
    return torch.from_numpy(np.sort(train)).long(), torch.from_numpy(np.sort(val)).long()
