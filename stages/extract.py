"""Stage `extract`: decoded entries -> data/features/{index.csv,faces.npy,mels.npy,report.csv} + plots/face_crops.png."""
from __future__ import annotations

from pipeline.config import load_params
from pipeline.extraction import run_extract


def main() -> None:
    print(run_extract(load_params()).line())


if __name__ == "__main__":
    main()
