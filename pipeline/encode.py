"""Write small real video files with PyAV: the embedded sample, test fixtures and benchmarks.

Kept in the library (not in tests) because the sample stage, the tests and the benchmarks
all need the same encoder settings.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def encode_clip(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    codec: str = "libx264",
    gop: int | None = None,
    bframes: int | None = None,
    crf: int = 23,
    preset: str = "veryfast",
    rotation: int = 0,
) -> Path:
    """Encode RGB frames [T, H, W, 3] uint8 (+ optional mono float audio in [-1, 1]) to `path`.

    gop/bframes shape the stream like phone or DFDC footage (long GOP, B-frames);
    rotation (0/90/180/270) is written as display-matrix metadata, as phones do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    n, height, width, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream(codec, rate=fps)
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = "yuv420p"
        options: dict[str, str] = {}
        if codec in ("libx264", "h264"):
            options.update({"crf": str(crf), "preset": preset})
            x264 = []
            if bframes is not None:
                x264.append(f"bframes={bframes}")
            if gop is not None:
                x264.append(f"keyint={gop}:min-keyint={gop}:scenecut=0")
            if x264:
                options["x264-params"] = ":".join(x264)
        elif gop is not None:
            vstream.codec_context.gop_size = gop
        vstream.options = options
        if rotation:
            vstream.metadata["rotate"] = str(rotation % 360)
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
            chunk = 1024
            pts = 0
            for start in range(0, len(samples), chunk):
                block = samples[start : start + chunk][None, :]
                aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="mono")
                aframe.sample_rate = sample_rate
                aframe.pts = pts
                aframe.time_base = Fraction(1, sample_rate)
                pts += block.shape[1]
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path
