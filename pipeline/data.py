"""Model inputs from the extract stage's arrays: ONE normalisation, one Dataset.

`to_model_inputs` is the only place where uint8 face crops and dB mels become network
inputs; train, predict and infer all call it, so a change here cannot desynchronise them.
The Dataset reads the memory-mapped `.npy` files written by extract: no image decoding per
epoch, and worker processes share the page cache instead of copying the arrays.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

FACE_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: the only pretraining allowed
FACE_STD = (0.229, 0.224, 0.225)
MEL_FLOOR_DB = -80.0  # extract clips dB to [-80, 0]; -80 everywhere means "no audio"
MEL_CENTRE_DB = -40.0
MEL_SCALE_DB = 40.0

INDEX_FILE = "index.csv"
FACES_FILE = "faces.npy"
MELS_FILE = "mels.npy"


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    x = np.ascontiguousarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy())  # memmaps are read-only


def to_model_inputs(
    faces_u8: Any, mels_f16: Any, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 crops [B,K,S,S,3] + dB mels [B,M,T] -> (faces [B,K,3,S,S], mels [B,1,M,T]) float32.

    Faces: /255 then ImageNet mean/std. Mels: [-80, 0] dB mapped to [-1, 1]. Accepts numpy
    or torch (any float dtype for mels); moving to `device` happens before the arithmetic
    so the uint8 tensor is what crosses the bus.
    """
    faces = _as_tensor(faces_u8)
    mels = _as_tensor(mels_f16)
    if faces.ndim != 5 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be [B,K,S,S,3] uint8, got shape {tuple(faces.shape)}")
    if mels.ndim != 3:
        raise ValueError(f"mels must be [B,n_mels,T], got shape {tuple(mels.shape)}")
    if faces.shape[0] != mels.shape[0]:
        raise ValueError(f"batch sizes differ: faces {faces.shape[0]} vs mels {mels.shape[0]}")
    if device is not None:
        faces = faces.to(device, non_blocking=True)
        mels = mels.to(device, non_blocking=True)
    mean = torch.tensor(FACE_MEAN, device=faces.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(FACE_STD, device=faces.device).view(1, 1, 3, 1, 1)
    faces = (faces.permute(0, 1, 4, 2, 3).float() / 255.0 - mean) / std
    mels = ((mels.float() - MEL_CENTRE_DB) / MEL_SCALE_DB).unsqueeze(1)
    return faces.contiguous(), mels.contiguous()


@dataclass
class Features:
    """The extract stage's output opened for reading (arrays memory-mapped)."""

    index: pd.DataFrame
    faces: np.ndarray  # uint8 [N,K,S,S,3] memmap
    mels: np.ndarray  # float16 [N,n_mels,T] memmap

    def rows_for(self, video_names: Sequence[str]) -> np.ndarray:
        """Array rows of the named videos, in the given order; a missing name fails with its name."""
        lookup = dict(zip(self.index["video_name"], self.index["row"]))
        missing = [n for n in video_names if n not in lookup]
        if missing:
            raise KeyError(
                f"{len(missing)} video(s) have no extracted features (e.g. {missing[0]}); "
                "rerun the extract stage"
            )
        return np.asarray([lookup[n] for n in video_names], dtype=np.int64)


def open_features(folder: str | os.PathLike) -> Features:
    """Open `index.csv`, `faces.npy`, `mels.npy` and check they agree with each other."""
    folder = Path(folder)
    for name in (INDEX_FILE, FACES_FILE, MELS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found; run the extract stage first")
    index = pd.read_csv(folder / INDEX_FILE, dtype={"video_name": str})
    for col in ("video_name", "subset", "target", "row"):
        if col not in index.columns:
            raise ValueError(f"{folder / INDEX_FILE} lacks column {col!r}")
    faces = np.load(folder / FACES_FILE, mmap_mode="r")
    mels = np.load(folder / MELS_FILE, mmap_mode="r")
    if faces.ndim != 5 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"faces.npy must be uint8 [N,K,S,S,3], got {faces.dtype} {faces.shape}")
    if mels.ndim != 3:
        raise ValueError(f"mels.npy must be [N,n_mels,T], got {mels.shape}")
    if len(faces) != len(mels):
        raise ValueError(f"faces.npy has {len(faces)} rows but mels.npy has {len(mels)}")
    rows = index["row"].to_numpy()
    if len(rows) and (rows.min() < 0 or rows.max() >= len(faces)):
        raise ValueError(f"index.csv rows must lie in [0, {len(faces)}), got {rows.min()}..{rows.max()}")
    return Features(index=index, faces=faces, mels=mels)


class AVDataset(Dataset):
    """One item per video: uint8 crops [K,S,S,3], dB mel float32 [M,T], target, array row.

    `face_tf` / `mel_tf` are per-sample augmentations (uint8 [K,3,S,S] -> same, float dB
    [M,T] -> same); all K frames of a video get the same random parameters.
    """

    def __init__(
        self,
        faces: np.ndarray,
        mels: np.ndarray,
        rows: Sequence[int],
        targets: Sequence[float] | None = None,
        face_tf: Callable[[torch.Tensor], torch.Tensor] | None = None,
        mel_tf: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.faces = faces
        self.mels = mels
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = (
            np.full(len(self.rows), np.nan, dtype=np.float32)
            if targets is None
            else np.asarray(targets, dtype=np.float32)
        )
        if len(self.targets) != len(self.rows):
            raise ValueError("rows and targets differ in length")
        self.face_tf = face_tf
        self.mel_tf = mel_tf

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        faces = torch.from_numpy(np.array(self.faces[row], dtype=np.uint8))  # copy out of the memmap
        mel = torch.from_numpy(np.array(self.mels[row], dtype=np.float32))
        if self.face_tf is not None:
            faces = self.face_tf(faces.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
        if self.mel_tf is not None:
            mel = self.mel_tf(mel)
        return {"faces": faces, "mels": mel, "target": torch.tensor(self.targets[i]), "row": row, "index": i}
