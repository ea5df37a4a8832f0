"""Score videos from the extract stage's arrays: test-time augmentation, per-video
aggregation, batched inference (AMP on CUDA).

A *view* is one augmented copy of a video's inputs: horizontal flip on/off x centre-crop
scale x frame sampling. A sampling keeps every n-th of the K frames (offset i of n) and
repeats them back to K, so any model built for K frames takes it unchanged; with n == K
every view is a single frame, the per-frame setting of the DFDC winner's `confident` rule.
Per video the view logits become one probability by `mean_prob`, `mean_logit` or
`confident` (if at least `confident_fraction` of the views are above `confident_threshold`,
average only those; else if `confident_real_fraction` are below 1 - threshold, average
those; else average all).

A video whose model inputs are all missing (no decoded frames and a silent mel for an
audio-video model) is not scored: it gets `fallback_score` and `fallback=True`, and keeps
its row.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.data import MEL_FLOOR_DB, Features, to_model_inputs

AGGREGATES = ("mean_prob", "mean_logit", "confident")
NO_FRAME_STATUSES = ("error", "no_video", "empty")  # decode statuses that leave zero frames


@dataclass(frozen=True)
class PredictConfig:
    """`predict:` section of params.yaml."""

    tta_hflip: bool = True  # add horizontally flipped views
    tta_samplings: int = 1  # frame subsets per video (1 = all K frames; K = one frame per view)
    tta_crops: list[float] = field(default_factory=lambda: [1.0])  # centre-crop fractions, resized back
    aggregate: str = "mean_prob"  # mean_prob | mean_logit | confident
    confident_threshold: float = 0.8
    confident_fraction: float = 0.4  # share of views that must be confidently fake
    confident_min_views: int = 2  # ... and at least this many
    confident_real_fraction: float = 0.9  # share below 1 - threshold to average only those
    batch_size: int = 32
    fallback_score: float = 0.5  # videos with no usable input at all
    amp: bool = True  # CUDA only (bf16 where supported, else fp16)
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"predict.aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if int(self.tta_samplings) < 1:
            raise ValueError(f"predict.tta_samplings must be >= 1, got {self.tta_samplings}")
        crops = list(self.tta_crops) if isinstance(self.tta_crops, (list, tuple)) else [self.tta_crops]
        if not crops or any(not 0.0 < float(c) <= 1.0 for c in crops):
            raise ValueError(f"predict.tta_crops must be fractions in (0, 1], got {self.tta_crops}")
        if not 0.0 <= float(self.fallback_score) <= 1.0:
            raise ValueError(f"predict.fallback_score must be in [0, 1], got {self.fallback_score}")
        if int(self.batch_size) < 1:
            raise ValueError(f"predict.batch_size must be >= 1, got {self.batch_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"predict.device must be auto, cpu or cuda, got {self.device!r}")


@dataclass(frozen=True)
class View:
    hflip: bool
    crop: float
    sampling: int  # offset i of n_samplings
    n_samplings: int


def tta_views(cfg: PredictConfig, k: int) -> list[View]:
    """Every view for K-frame inputs (samplings capped at K)."""
    n = min(int(cfg.tta_samplings), int(k))
    flips = (False, True) if cfg.tta_hflip else (False,)
    crops = cfg.tta_crops if isinstance(cfg.tta_crops, (list, tuple)) else [cfg.tta_crops]
    return [View(f, float(c), i, n) for f in flips for c in crops for i in range(n)]


def frame_indices(k: int, sampling: int, n_samplings: int) -> np.ndarray:
    """K frame indices of one sampling: frames sampling, sampling + n, ... repeated to K."""
    if n_samplings <= 1:
        return np.arange(k)
    subset = np.arange(sampling, k, n_samplings)
    return subset[(np.arange(k) * len(subset)) // k]


def apply_view(faces: torch.Tensor, view: View) -> torch.Tensor:
    """Flip / centre-crop (resized back to S) float faces [B,K,3,S,S]."""
    if view.crop < 1.0:
        b, k, c, s, _ = faces.shape
        side = max(1, int(round(s * view.crop)))
        top = (s - side) // 2
        crop = faces.reshape(b * k, c, s, s)[:, :, top : top + side, top : top + side]
        faces = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False).reshape(b, k, c, s, s)
    if view.hflip:
        faces = faces.flip(-1)
    return faces


def aggregate(logits: torch.Tensor, cfg: PredictConfig) -> torch.Tensor:
    """View logits [B,V] -> one probability per video [B]."""
    logits = logits.float()
    if cfg.aggregate == "mean_logit":
        return torch.sigmoid(logits.mean(dim=1))
    probs = torch.sigmoid(logits)
    if cfg.aggregate == "mean_prob":
        return probs.mean(dim=1)
    views = probs.shape[1]
    out = probs.mean(dim=1)
    fake = probs > cfg.confident_threshold
    real = probs < 1.0 - cfg.confident_threshold
    n_fake, n_real = fake.sum(dim=1), real.sum(dim=1)
    use_fake = (n_fake >= cfg.confident_fraction * views) & (n_fake >= cfg.confident_min_views)
    use_real = ~use_fake & (n_real >= cfg.confident_real_fraction * views) & (n_real > 0)
    fake_mean = (probs * fake).sum(dim=1) / n_fake.clamp(min=1)
    real_mean = (probs * real).sum(dim=1) / n_real.clamp(min=1)
    return torch.where(use_fake, fake_mean, torch.where(use_real, real_mean, out))


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("predict.device is 'cuda' but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


@torch.inference_mode()
def predict_arrays(
    model: nn.Module,
    faces_u8: np.ndarray,
    mels: np.ndarray,
    cfg: PredictConfig,
    device: torch.device | str = "cpu",
    rows: Sequence[int] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Probabilities for `rows` of faces [N,K,S,S,3] / mels [N,M,T] (all rows by default)."""
    device = torch.device(device)
    rows = np.arange(len(faces_u8)) if rows is None else np.asarray(rows, dtype=np.int64)
    model.eval()
    k = int(faces_u8.shape[1])
    views = tta_views(cfg, k)
    out = np.empty(len(rows), dtype=np.float64)
    batches = range(0, len(rows), int(cfg.batch_size))
    bar = tqdm(batches, desc=f"predict ({len(views)} views)", unit="batch", disable=not progress, leave=False)
    for start in bar:
        sel = rows[start : start + int(cfg.batch_size)]
        order = np.argsort(sel)  # ascending reads from the memmap
        faces_b = np.empty((len(sel),) + faces_u8.shape[1:], dtype=np.uint8)
        mels_b = np.empty((len(sel),) + mels.shape[1:], dtype=mels.dtype)
        faces_b[order] = faces_u8[sel[order]]
        mels_b[order] = mels[sel[order]]
        logits = []
        for view in views:
            idx = frame_indices(k, view.sampling, view.n_samplings)
            faces_t, mels_t = to_model_inputs(faces_b[:, idx], mels_b, device=device)
            with _autocast(device, cfg.amp):
                logits.append(model(apply_view(faces_t, view), mels_t).float().reshape(-1))
        out[start : start + len(sel)] = aggregate(torch.stack(logits, dim=1), cfg).cpu().numpy()
    return out


def fallback_mask(decode_status: Sequence[str], mels: np.ndarray, rows: Sequence[int], mode: str = "av") -> np.ndarray:
    """True where the model's inputs are all missing: no frames (decode status) for the face
    branch and a silent mel (-80 dB everywhere) for the audio branch."""
    status = pd.Series(list(decode_status), dtype=str).str.lower().to_numpy()
    no_frames = np.isin(status, NO_FRAME_STATUSES)
    silent = np.array([bool((np.asarray(mels[int(r)]) <= MEL_FLOOR_DB).all()) for r in rows], dtype=bool)
    if mode == "video":
        return no_frames
    if mode == "audio":
        return silent
    return no_frames & silent


def prediction_rows(index: pd.DataFrame) -> pd.DataFrame:
    """Rows the predict stage scores: in the template, or labelled val (the local hold-out)."""
    in_tpl = index["in_template"].astype(str).str.lower().isin(("true", "1"))
    target = pd.to_numeric(index["target"], errors="coerce")
    val = (index["subset"] == "val") & target.notna()
    return index[in_tpl | val].copy()


def predict_features(
    model: nn.Module, features: Features, cfg: PredictConfig, mode: str = "av", progress: bool = True
) -> pd.DataFrame:
    """`data/predictions.csv` frame: video_name, score, subset, target, in_template, fallback."""
    frame = prediction_rows(features.index)
    rows = frame["row"].to_numpy(dtype=np.int64)
    status = frame["decode_status"] if "decode_status" in frame else pd.Series(["ok"] * len(frame))
    fallback = fallback_mask(status, features.mels, rows, mode)
    scores = np.full(len(frame), float(cfg.fallback_score))
    device = resolve_device(cfg.device)
    if (~fallback).any():
        scores[~fallback] = predict_arrays(model.to(device), features.faces, features.mels, cfg, device, rows[~fallback], progress)
    in_tpl = frame["in_template"].astype(str).str.lower().isin(("true", "1"))
    return pd.DataFrame(
        {
            "video_name": frame["video_name"].to_numpy(),
            "score": scores,
            "subset": frame["subset"].to_numpy(),
            "target": pd.to_numeric(frame["target"], errors="coerce").to_numpy(),
            "in_template": in_tpl.to_numpy(),
            "fallback": fallback,
        }
    )


def holdout_metrics(predictions: pd.DataFrame) -> dict[str, Any]:
    """Metrics on labelled val rows (`{}` when there are none)."""
    from pipeline.metrics import binary_metrics

    val = predictions[(predictions["subset"] == "val") & predictions["target"].notna()]
    if val.empty:
        return {}
    metrics = binary_metrics(val["target"].to_numpy(), val["score"].to_numpy())
    metrics["n_fallback"] = int(val["fallback"].sum())
    return metrics


def checkpoint_mode(ckpt: dict[str, Any]) -> str:
    """Which inputs the model uses (av | video | audio), from the checkpoint."""
    kwargs = (ckpt.get("model") or {}).get("kwargs") or {}
    return str(kwargs.get("mode") or ((ckpt.get("config") or {}).get("model") or {}).get("mode") or "av")
