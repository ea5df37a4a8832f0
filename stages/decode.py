"""Stage `decode`: videos under data.root -> data/decoded/<key>.npz, data/manifest.csv, data/template.csv."""
from __future__ import annotations

from pipeline.config import load_params
from pipeline.decoding import run_decode


def main() -> None:
    print(run_decode(load_params()).line())


if __name__ == "__main__":
    main()
