"""Test API of the competition's final phase: a video file in, its deepfake score out.

`predict_video(path)` runs exactly what the pipeline runs for one video, with the settings
recorded in the checkpoint's `config`: `decode_video` (seeded by the file's content digest,
as the decode stage does), `extract_features` with the configured face detector, then the
predict path (`to_model_inputs`, TTA views, aggregation, fallback rule). So a video scored
here gets the same number as in `data/predictions.csv`.

    python -m pipeline.infer VIDEO [VIDEO ...] [--checkpoint models/final.pt]

prints one `video,score` line per video (score with 6 decimals) and exits 1 if any file is
missing (its line is skipped; the others are still scored).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch.nn as nn

from pipeline.atomic import file_digest
from pipeline.config import from_dict
from pipeline.faces import Detector, FaceConfig, create_detector
from pipeline.features import AudioConfig, extract_features
from pipeline.predict import PredictConfig, checkpoint_mode, fallback_mask, predict_arrays, resolve_device
from pipeline.video import DecodeConfig, decode_video

DEFAULT_CHECKPOINT = "models/final.pt"


@dataclass
class Predictor:
    """Everything needed to score a video, loaded once per checkpoint."""

    model: nn.Module
    decode: DecodeConfig
    faces: FaceConfig
    audio: AudioConfig
    predict: PredictConfig
    detector: Detector
    mode: str
    device: Any


def load_predictor(checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT) -> Predictor:
    """Model + configs from `checkpoint`, cached per (absolute path, modification time):
    scoring many videos loads it once, a retrained checkpoint is picked up."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; train first (dvc repro train) or pass --checkpoint")
    return _load_predictor(str(path.resolve()), path.stat().st_mtime_ns)


def _decode_section(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A checkpoint's decode settings, read as the decoder that trained it understood them: before
    `window_align` existed, windows started exactly where `window_start` put them."""
    if stored is None:
        return None
    return {"window_align": "exact", **stored}


@functools.lru_cache(maxsize=4)
def _load_predictor(checkpoint: str, mtime_ns: int) -> Predictor:
    from pipeline.models import load_checkpoint

    path = Path(checkpoint)
    config = _checkpoint_config(path)
    predict_cfg = from_dict(PredictConfig, config.get("predict"), "checkpoint config.predict")
    device = resolve_device(predict_cfg.device)
    model, ckpt = load_checkpoint(path, device=device)
    faces_cfg = from_dict(FaceConfig, config.get("faces"), "checkpoint config.faces")
    return Predictor(
        model=model,
        decode=from_dict(DecodeConfig, _decode_section(config.get("decode")), "checkpoint config.decode"),
        faces=faces_cfg,
        audio=from_dict(AudioConfig, config.get("audio"), "checkpoint config.audio"),
        predict=predict_cfg,
        detector=create_detector(faces_cfg),
        mode=checkpoint_mode(ckpt),
        device=device,
    )


def _checkpoint_config(path: Path) -> dict[str, Any]:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    config = ckpt.get("config") or {}
    missing = [k for k in ("decode", "faces", "audio") if k not in config]
    if missing:
        raise ValueError(f"{path}: checkpoint config lacks {missing}; it cannot reproduce feature extraction")
    return config


def video_inputs(path: str | os.PathLike, predictor: Predictor) -> tuple[np.ndarray, np.ndarray, str]:
    """(faces uint8 [1,K,S,S,3], mel float16 [1,M,T], decode status) of one video, as the
    decode + extract stages compute them."""
    decoded = decode_video(path, predictor.decode, seed_key=file_digest(path))
    feats = extract_features(decoded, predictor.detector, predictor.faces, predictor.audio, predictor.decode.frames)
    return feats.faces[None], feats.mel[None], decoded.status


def predict_video(path: str | os.PathLike, checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT) -> float:
    """Deepfake probability of the video at `path` (1 = fake). Unreadable media gets the
    configured fallback score, like in the pipeline; a missing file raises FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} not found")
    predictor = load_predictor(checkpoint)
    faces, mels, status = video_inputs(path, predictor)
    if fallback_mask([status], mels, [0], predictor.mode)[0]:
        return float(predictor.predict.fallback_score)
    scores = predict_arrays(predictor.model, faces, mels, predictor.predict, predictor.device, progress=False)
    return float(scores[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.infer", description="Deepfake score of each video.")
    parser.add_argument("videos", nargs="+", help="video files")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    args = parser.parse_args(argv)
    try:
        load_predictor(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for video in args.videos:
        try:
            score = predict_video(video, args.checkpoint)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{video},{score:.6f}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
