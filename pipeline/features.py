"""Decoded video -> model inputs: K square face crops and a fixed-size log-mel spectrogram.

Used by the extract stage and by `pipeline.infer`, so training and serving crop and
transform identically. Every fallback is explicit and recorded:

* faces: `ok` (a face in every frame), `nearest` (frames without a face reuse the box of the
  nearest frame with one), `centre` (no face anywhere: centre square), `none` (no frames:
  all-zero crops). Fewer than K frames are padded by repeating the crops in order.
* audio: `ok`, `silent` (peak below -80 dBFS), `missing` (no track / no samples); the last two
  give a mel of -80 everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

# Named imports force librosa's lazy submodules (scipy.signal, numba kernels) to load now, so
# forked worker processes inherit them instead of each paying seconds on its first video.
from librosa import power_to_db
from librosa.feature import melspectrogram

from pipeline.faces import Detector, FaceConfig
from pipeline.video import DecodedVideo

FLOOR_DB = -80.0
SILENCE_PEAK = 1e-4  # -80 dBFS
FACE_STATUSES = ("ok", "nearest", "centre", "none")
AUDIO_STATUSES = ("ok", "silent", "missing")


@dataclass(frozen=True)
class AudioConfig:
    """`audio:` section of params.yaml (log-mel settings)."""

    n_mels: int = 64
    fmax: float = 8000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    frames: int = 192  # fixed mel length in hops: longer clips are cropped, shorter padded with -80 dB
    window: str = "hann"

    def __post_init__(self) -> None:
        for name in ("n_mels", "n_fft", "win_length", "hop_length", "frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"audio.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.win_length) > int(self.n_fft):
            raise ValueError(f"audio.win_length ({self.win_length}) must not exceed audio.n_fft ({self.n_fft})")

    def output_params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def seconds_needed(self, sample_rate: int) -> float:
        """Audio the mel reads: the first `frames` hops (the rest of the clip is never analysed)."""
        return int(self.frames) * int(self.hop_length) / float(sample_rate)

    def check_decoded_length(self, max_audio_seconds: float | None, sample_rate: int) -> None:
        """Refuse settings whose decoded audio is shorter than the mel reads (it would pad real audio)."""
        need = self.seconds_needed(sample_rate)
        if max_audio_seconds is not None and float(max_audio_seconds) + 1e-9 < need:
            raise ValueError(
                f"decode.max_audio_seconds is {max_audio_seconds} s but the mel reads {need:g} s "
                f"(audio.frames {self.frames} x audio.hop_length {self.hop_length} / {sample_rate} Hz): "
                f"raise decode.max_audio_seconds to at least {math.ceil(need * 10) / 10:g}"
            )


@dataclass
class Features:
    """One video's model inputs plus how they were obtained."""

    faces: np.ndarray  # uint8 [K, S, S, 3] RGB
    mel: np.ndarray  # float16 [n_mels, T] dB re clip max, in [-80, 0]
    face_status: str
    faces_found: int  # frames in which the detector found a face
    audio_status: str
    reason: str = ""  # face and audio reasons joined; empty when both are ok
    face_reason: str = ""
    audio_reason: str = ""


# --------------------------------------------------------------------------- audio
def log_mel(samples: np.ndarray, sample_rate: int, cfg: AudioConfig) -> tuple[np.ndarray, str, str]:
    """Mono samples -> (float16 [n_mels, frames] dB re excerpt max clipped to [-80, 0], status, reason)."""
    blank = np.full((int(cfg.n_mels), int(cfg.frames)), FLOOR_DB, dtype=np.float16)
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if samples.size == 0:
        return blank, "missing", "no audio samples"
    # Only the first `frames` hops are kept, so only they are analysed; the dB reference is the
    # max of that excerpt, so every non-silent mel the model sees peaks at exactly 0 dB.
    samples = samples[: int(cfg.frames) * int(cfg.hop_length)]
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    if float(np.abs(samples).max()) < SILENCE_PEAK:
        return blank, "silent", "audio is silent (peak below -80 dBFS)"
    power = melspectrogram(
        y=samples,
        sr=int(sample_rate),
        n_fft=int(cfg.n_fft),
        hop_length=int(cfg.hop_length),
        win_length=int(cfg.win_length),
        window=cfg.window,
        n_mels=int(cfg.n_mels),
        fmax=min(float(cfg.fmax), sample_rate / 2.0),
    )
    mel = np.clip(power_to_db(power, ref=np.max, top_db=None), FLOOR_DB, 0.0)
    return fix_length(mel, int(cfg.frames)).astype(np.float16), "ok", ""


def fix_length(mel: np.ndarray, frames: int) -> np.ndarray:
    """Crop to the first `frames` columns or pad on the right with the -80 dB floor."""
    if mel.shape[1] >= frames:
        return mel[:, :frames]
    pad = np.full((mel.shape[0], frames - mel.shape[1]), FLOOR_DB, dtype=mel.dtype)
    return np.concatenate([mel, pad], axis=1)


# --------------------------------------------------------------------------- faces
def detect_face(image: np.ndarray, detector: Detector, cfg: FaceConfig) -> np.ndarray | None:
    """Best box (x, y, w, h) in `image` pixels, detecting on a copy scaled to `detect_side`."""
    h, w = image.shape[:2]
    scale = min(1.0, float(cfg.detect_side) / max(h, w))
    small = image if scale >= 1.0 else cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    boxes = np.asarray(detector.detect(small), dtype=np.float32).reshape(-1, 5)
    if boxes.shape[0] == 0:
        return None
    if cfg.pick == "score":
        best = boxes[int(np.argmax(boxes[:, 4]))]
    else:
        best = boxes[int(np.argmax(boxes[:, 2] * boxes[:, 3]))]
    return best[:4] / scale


def square_crop(image: np.ndarray, box: np.ndarray | None, margin: float, size: int) -> np.ndarray:
    """Square crop around `box` grown by `margin` per side (zero-padded at the borders), resized.

    box None = the centre square of the frame (side = its shorter side).
    """
    h, w = image.shape[:2]
    if box is None:
        side = float(min(h, w))
        cx, cy = w / 2.0, h / 2.0
    else:
        x, y, bw, bh = (float(v) for v in box)
        side = max(bw, bh) * (1.0 + 2.0 * margin)
        cx, cy = x + bw / 2.0, y + bh / 2.0
    side_px = max(1, int(round(side)))
    x0 = int(round(cx - side_px / 2.0))
    y0 = int(round(cy - side_px / 2.0))
    x1, y1 = x0 + side_px, y0 + side_px
    crop = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if crop.shape[0] != side_px or crop.shape[1] != side_px:
        crop = cv2.copyMakeBorder(
            np.ascontiguousarray(crop),
            max(0, -y0),
            max(0, y1 - h),
            max(0, -x0),
            max(0, x1 - w),
            cv2.BORDER_CONSTANT,
            value=(0, 0, 0),
        )
    interp = cv2.INTER_AREA if side_px > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)


def crop_faces(
    frames: np.ndarray, detector: Detector, cfg: FaceConfig, k: int
) -> tuple[np.ndarray, str, int, str]:
    """K face crops for up to K frames -> (uint8 [k, S, S, 3], face_status, faces_found, reason)."""
    size = int(cfg.size)
    out = np.zeros((k, size, size, 3), dtype=np.uint8)
    n = 0 if frames.ndim != 4 else int(frames.shape[0])
    if n == 0:
        return out, "none", 0, "no frames: face crops are zeros"
    boxes = [detect_face(frames[i], detector, cfg) for i in range(n)]
    found = [i for i, b in enumerate(boxes) if b is not None]
    if len(found) == n:
        status, reason = "ok", ""
    elif found:
        status = "nearest"
        reason = f"face found in {len(found)}/{n} frames; the others reuse the nearest frame's box"
        for i in range(n):
            if boxes[i] is None:
                boxes[i] = boxes[min(found, key=lambda j: (abs(j - i), j))]
    else:
        status, reason = "centre", f"no face found in {n} frames ({detector.name}); centre crops used"
    crops = [square_crop(frames[i], boxes[i], float(cfg.margin), size) for i in range(n)]
    for i in range(k):  # fewer than K frames: repeat the crops in order
        out[i] = crops[i % n]
    return out, status, len(found), reason


# --------------------------------------------------------------------------- both
def extract_features(
    decoded: DecodedVideo, detector: Detector, faces_cfg: FaceConfig, audio_cfg: AudioConfig, frames: int
) -> Features:
    """Face crops ([frames, S, S, 3]) and the log-mel of one decoded video, with fallbacks."""
    faces, face_status, found, face_reason = crop_faces(decoded.frames, detector, faces_cfg, int(frames))
    if not decoded.has_audio and decoded.audio.size == 0:
        mel = np.full((int(audio_cfg.n_mels), int(audio_cfg.frames)), FLOOR_DB, dtype=np.float16)
        audio_status, audio_reason = "missing", "no audio track"
    else:
        mel, audio_status, audio_reason = log_mel(decoded.audio, decoded.sample_rate, audio_cfg)
    reason = "; ".join(r for r in (face_reason, audio_reason) if r)
    return Features(faces, mel, face_status, found, audio_status, reason, face_reason, audio_reason)
