"""Atomic file writes: write to a temp file in the same folder, then rename over the target.

A killed stage therefore never leaves a half-written artifact behind that a rerun would trust.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `dest`; on clean exit it replaces `dest` atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_json(dest: str | os.PathLike, obj: Any) -> None:
    write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(dest: str | os.PathLike, frame: "Any", **kwargs: Any) -> None:
    """pandas DataFrame -> CSV, atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(dest, suffix=".csv") as tmp:
        frame.to_csv(tmp, **kwargs)


def save_npz(dest: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(dest, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def save_npy(dest: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(dest, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_torch(dest: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(dest, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """blake2b-128 of a file's bytes: content identity for caches and the submission ledger."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def params_digest(obj: Any) -> str:
    """Stable short hash of a params section (dataclass or dict)."""
    import dataclasses

    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
