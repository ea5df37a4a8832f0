"""Audio track -> mono float32 samples at a fixed rate, straight from the container.

PyAV decodes the first audio stream and `AudioResampler` converts it to mono `flt` at the
target rate in the same pass, so no temporary wav file is written (the reference baseline
exports a wav with moviepy and reads it back with librosa, which costs a full extra copy).
Video packets are discarded by the demuxer, so only audio is read and decoded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np
from av.stream import Discard


@dataclass
class DecodedAudio:
    """Samples (float32 mono, may be empty), whether a track exists, and why it is short/empty."""

    samples: np.ndarray
    has_audio: bool
    reason: str = ""


def decode_audio(path: str | os.PathLike, sample_rate: int, max_seconds: float | None) -> DecodedAudio:
    """First audio stream of `path` as float32 mono at `sample_rate`, at most `max_seconds` long.

    Never raises for bad media: an unreadable file or a missing track gives empty samples and a
    reason; a decode error mid-stream keeps what was decoded so far and records the error.
    """
    empty = np.zeros(0, dtype=np.float32)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        return DecodedAudio(empty, False, f"audio: cannot open ({_short(exc)})")
    with container:
        if not container.streams.audio:
            return DecodedAudio(empty, False, "no audio track")
        stream = container.streams.audio[0]
        for other in container.streams:
            if other.index != stream.index:
                other.discard = Discard.all  # the demuxer skips these packets without reading them
        limit = None if max_seconds is None else int(round(max_seconds * sample_rate))
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        total = 0
        reason = ""
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                if limit is not None and total >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
        except (av.FFmpegError, ValueError) as exc:
            reason = f"audio decode stopped early ({_short(exc)})"
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else empty
    if limit is not None:
        samples = samples[:limit]
    if samples.size == 0 and not reason:
        reason = "audio track has no samples"
    return DecodedAudio(np.ascontiguousarray(samples), True, reason)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
