"""Stratified K-fold assignment of the labelled train videos (the `split` stage).

Folds are written once as `data/folds.csv` so every later stage (and every rerun) sees the
same partition; changing `split.seed` or `split.n_folds` is the only way to reshuffle.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold


@dataclass(frozen=True)
class SplitConfig:
    """`split:` section of params.yaml."""

    n_folds: int = 4
    seed: int = 42


def effective_folds(targets: np.ndarray, n_folds: int) -> int:
    """Fold count that keeps both classes in every validation fold.

    A tiny or very unbalanced train set cannot support `n_folds` stratified folds; rather than
    failing (or sklearn's silent degenerate folds) we lower the count and say so.
    """
    counts = np.bincount(targets.astype(int), minlength=2)
    smallest = int(counts.min())
    if smallest < 2:
        raise ValueError(
            f"cross-validation needs at least 2 videos of each class in the train set; "
            f"got {int(counts[0])} real and {int(counts[1])} fake"
        )
    if n_folds < 2:
        raise ValueError(f"split.n_folds must be >= 2, got {n_folds}")
    if smallest < n_folds:
        warnings.warn(
            f"split.n_folds={n_folds} but the smaller class has only {smallest} videos; "
            f"using {smallest} folds",
            stacklevel=2,
        )
        return smallest
    return n_folds


def make_folds(manifest: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """`video_name, fold` for every `subset == train` row, stratified on `target`, seeded."""
    missing = {"video_name", "subset", "target"} - set(manifest.columns)
    if missing:
        raise ValueError(f"manifest lacks column(s) {sorted(missing)}")
    train = manifest[manifest["subset"] == "train"].reset_index(drop=True)
    if train.empty:
        raise ValueError("the manifest has no train rows to split")
    if train["target"].isna().any():
        bad = train.loc[train["target"].isna(), "video_name"].iloc[0]
        raise ValueError(f"train video {bad} has no target")
    targets = train["target"].to_numpy().astype(int)
    n_folds = effective_folds(targets, cfg.n_folds)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=cfg.seed)
    fold = np.full(len(train), -1, dtype=int)
    for i, (_, val_idx) in enumerate(splitter.split(np.zeros(len(train)), targets)):
        fold[val_idx] = i
    return pd.DataFrame({"video_name": train["video_name"].astype(str), "fold": fold})
