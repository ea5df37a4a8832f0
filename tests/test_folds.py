"""Stratified, seeded folds over the train rows only; tiny or one-class sets handled clearly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.folds import SplitConfig, make_folds


def _manifest(n_train: int = 40, pos_rate: float = 0.3, n_val: int = 6, n_test: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = (rng.random(n_train) < pos_rate).astype(float)
    t[:2] = [0, 1]
    rows = [{"video_name": f"t{i}.mp4", "subset": "train", "target": t[i]} for i in range(n_train)]
    rows += [{"video_name": f"v{i}.mp4", "subset": "val", "target": float(i % 2)} for i in range(n_val)]
    rows += [{"video_name": f"x{i}.mp4", "subset": "test", "target": np.nan} for i in range(n_test)]
    return pd.DataFrame(rows)


def test_folds_are_stratified_and_cover_every_train_row_once():
    man = _manifest()
    folds = make_folds(man, SplitConfig(n_folds=4, seed=1))
    train = man[man["subset"] == "train"]
    assert list(folds.columns) == ["video_name", "fold"]
    assert sorted(folds["video_name"]) == sorted(train["video_name"])
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3]
    joined = folds.merge(man, on="video_name")
    pos = joined.groupby("fold")["target"].sum()
    sizes = joined.groupby("fold").size()
    assert pos.max() - pos.min() <= 1 and sizes.max() - sizes.min() <= 1


def test_folds_are_seeded():
    man = _manifest()
    a = make_folds(man, SplitConfig(4, seed=7))
    b = make_folds(man, SplitConfig(4, seed=7))
    c = make_folds(man, SplitConfig(4, seed=8))
    pd.testing.assert_frame_equal(a, b)
    assert not a["fold"].equals(c["fold"])


def test_too_few_of_a_class_lowers_the_fold_count_with_a_warning():
    man = pd.DataFrame({"video_name": [f"{i}.mp4" for i in range(10)], "subset": "train",
                        "target": [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]})
    with pytest.warns(UserWarning, match="using 3 folds"):
        folds = make_folds(man, SplitConfig(n_folds=5))
    assert folds["fold"].nunique() == 3
    for _, g in folds.merge(man, on="video_name").groupby("fold"):
        assert set(g["target"]) == {0, 1}


@pytest.mark.parametrize(
    "targets, match",
    [([1, 1, 1, 1], "2 videos of each class"), ([0, 1, 0, 0], "2 videos of each class")],
)
def test_impossible_splits_fail_clearly(targets, match):
    man = pd.DataFrame({"video_name": [f"{i}.mp4" for i in range(len(targets))], "subset": "train", "target": targets})
    with pytest.raises(ValueError, match=match):
        make_folds(man, SplitConfig(n_folds=2))


def test_no_train_rows_or_missing_target_fail_clearly():
    with pytest.raises(ValueError, match="no train rows"):
        make_folds(_manifest().query("subset != 'train'"), SplitConfig())
    man = _manifest()
    man.loc[3, "target"] = np.nan
    with pytest.raises(ValueError, match="t3.mp4 has no target"):
        make_folds(man, SplitConfig())
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        make_folds(_manifest(), SplitConfig(n_folds=1))
