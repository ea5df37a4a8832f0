"""Stage `sample`: the embedded, seeded FFDV-style sample -> data/sample/ (competition phase-1 layout)."""
from __future__ import annotations

import time
from pathlib import Path

from pipeline.config import load_params, section
from pipeline.sample import SampleConfig, folder_size, write_sample

OUT = Path("data/sample")


def main() -> None:
    cfg = section(load_params(), "sample", SampleConfig)
    start = time.perf_counter()
    table = write_sample(cfg, OUT)
    counts = table.groupby("subset")["target"].agg(["size", "sum"])
    kinds = table["fake"].value_counts()
    print(
        f"sample: {counts.loc['train', 'size']} train ({counts.loc['train', 'sum']} fake) + "
        f"{counts.loc['val', 'size']} val ({counts.loc['val', 'sum']} fake) clips "
        f"[face {kinds.get('face', 0)}, voice {kinds.get('voice', 0)}, both {kinds.get('both', 0)}], "
        f"{folder_size(OUT) / 1e6:.2f} MB in {OUT} ({time.perf_counter() - start:.1f} s, seed {cfg.seed})"
    )


if __name__ == "__main__":
    main()
