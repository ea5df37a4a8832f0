"""Small feature arrays with a learnable real/fake signal, in the extract stage's file format.

Used by the training tests and `benchmarks/train_bench.py`, so both exercise the real
memmap -> Dataset -> model path without needing the decode/extract stages first.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import atomic


def make_features(
    folder: str | os.PathLike,
    n: int = 40,
    frames: int = 4,
    size: int = 32,
    n_mels: int = 16,
    mel_frames: int = 48,
    seed: int = 0,
    strength: float = 1.0,
    n_val: int = 0,
) -> pd.DataFrame:
    """Write `index.csv`, `faces.npy`, `mels.npy` under `folder`; return the index.

    Fakes carry a brighter blended patch on every face frame and a tonal band in the mel;
    `strength` scales both (0 = no signal). The first `n - n_val` rows are `train`, the rest
    `val`; classes alternate so every stratified fold holds both.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    target = np.arange(n) % 2
    rng.shuffle(target)
    yy, xx = np.mgrid[0:size, 0:size] / size
    faces = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    mels = np.empty((n, n_mels, mel_frames), dtype=np.float16)
    for i in range(n):
        base = 90 + 60 * rng.random(3)
        tilt = rng.normal(0, 30, size=3)
        img = base + tilt * (xx[..., None] - 0.5) + tilt[::-1] * (yy[..., None] - 0.5)
        for f in range(frames):
            frame = img + rng.normal(0, 12, size=img.shape)
            if target[i]:
                cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
                h = max(2, size // 4)
                frame[cy - h // 2 : cy + h // 2, cx - h // 2 : cx + h // 2] += 45 * strength
            faces[i, f] = np.clip(frame, 0, 255).astype(np.uint8)
        mel = -55 + rng.normal(0, 8, size=(n_mels, mel_frames))
        if target[i]:
            band = rng.integers(n_mels // 2, n_mels - 1)
            mel[band : band + 2] += 30 * strength
        mels[i] = np.clip(mel - mel.max(), -80, 0)
    names = [f"vid_{i:04d}.mp4" for i in range(n)]
    index = pd.DataFrame({
        "video_name": names,
        "subset": ["train"] * (n - n_val) + ["val"] * n_val,
        "target": target.astype(float),
        "in_template": [False] * (n - n_val) + [True] * n_val,
        "row": np.arange(n),
        "decode_status": "ok",
        "face_status": "ok",
        "faces_found": frames,
        "audio_status": "ok",
        "reason": "",
    })
    atomic.save_npy(folder / "faces.npy", faces)
    atomic.save_npy(folder / "mels.npy", mels)
    atomic.write_csv(folder / "index.csv", index)
    return index


def manifest_from_index(index: pd.DataFrame) -> pd.DataFrame:
    """A `data/manifest.csv`-shaped frame for the same videos (what the split stage reads)."""
    return pd.DataFrame({
        "video_name": index["video_name"],
        "subset": index["subset"],
        "target": index["target"],
        "in_template": index["in_template"],
        "path": [f"{'trainset' if s == 'train' else 'valset'}/{n}" for n, s in zip(index["video_name"], index["subset"])],
    })
