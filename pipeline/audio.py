"""Audio track -> mono float32 samples at a fixed rate, straight from the container.

PyAV decodes the first audio stream and `AudioResampler` converts it to mono `flt` at the
target rate in the same pass, so no temporary wav file is written (the reference baseline
exports a wav with moviepy and reads it back with librosa, which costs a full extra copy).
Video packets are discarded by the demuxer, so only audio is read and decoded, and only as
much as `max_seconds` asks for (the mel reads the first 1.92 s by default).
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


def decode_audio(
    source: str | os.PathLike | av.container.InputContainer, sample_rate: int, max_seconds: float | None
) -> DecodedAudio:
    """First audio stream of `source` as float32 mono at `sample_rate`, at most `max_seconds` long.

    `source` is a path or a container the caller has open (`decode_video` opens each file once and
    rewinds it afterwards). Never raises for bad media: an unreadable file or a missing track gives
    empty samples and a reason; a decode error mid-stream keeps what was decoded so far and records it.
    """
    if isinstance(source, av.container.InputContainer):
        return _decode_track(source, sample_rate, max_seconds)
    try:
        container = av.open(os.fspath(source))
    except (av.FFmpegError, OSError, ValueError) as exc:
        return DecodedAudio(np.zeros(0, dtype=np.float32), False, f"audio: cannot open ({_short(exc)})")
    with container:
        return _decode_track(container, sample_rate, max_seconds)


def _decode_track(container: av.container.InputContainer, sample_rate: int, max_seconds: float | None) -> DecodedAudio:
    empty = np.zeros(0, dtype=np.float32)
    if not container.streams.audio:
        return DecodedAudio(empty, False, "no audio track")
    stream = container.streams.audio[0]
    others = [other for other in container.streams if other.index != stream.index]
    for other in others:
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
    finally:
        for other in others:
            other.discard = Discard.default
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else empty
    if limit is not None:
        samples = samples[:limit]
    if samples.size == 0 and not reason:
        reason = "audio track has no samples"
    return DecodedAudio(np.ascontiguousarray(samples), True, reason)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
