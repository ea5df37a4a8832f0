"""Stage `split`: data/manifest.csv -> data/folds.csv (stratified K folds of the train rows)."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from pipeline import atomic
from pipeline.config import load_params, section
from pipeline.folds import SplitConfig, make_folds

MANIFEST = Path("data/manifest.csv")
FOLDS = Path("data/folds.csv")


def main(params_path: str | Path = "params.yaml") -> pd.DataFrame:
    """Read params + manifest, write folds atomically, print one summary line."""
    cfg = section(load_params(params_path), "split", SplitConfig)
    if not MANIFEST.is_file():
        raise SystemExit(f"split: {MANIFEST} not found; run the decode stage first")
    manifest = pd.read_csv(MANIFEST, dtype={"video_name": str})
    folds = make_folds(manifest, cfg)
    atomic.write_csv(FOLDS, folds)
    sizes = folds["fold"].value_counts().sort_index().tolist()
    print(f"split: {len(folds)} train videos in {len(sizes)} folds of sizes {sizes} -> {FOLDS}")
    return folds


if __name__ == "__main__":
    main(*sys.argv[1:2])
