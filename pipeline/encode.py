"""Write small real video files with PyAV: the embedded sample, test fixtures and benchmarks.

Kept in the library (not in tests) because the sample stage, the tests and the benchmarks
all need the same encoder settings.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def encode_clip(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    codec: str = "libx264",
    gop: int | None = None,
    bframes: int | None = None,
    crf: int = 23,
    preset: str = "veryfast",
    rotation: int = 0,
    threads: int | None = None,
    audio_bitrate: int | None = None,
) -> Path:
    """Encode RGB frames [T, H, W, 3] uint8 (+ optional mono float audio in [-1, 1]) to `path`.

    `frames` may also be any iterable of [H, W, 3] uint8 frames (e.g. a generator), so long
    1080p benchmark clips are encoded without holding them all in memory.
    gop/bframes shape the stream like phone or DFDC footage (long GOP, B-frames).
    rotation (0/90/180/270) is the clockwise turn a player applies to the stored picture, the
    meaning of the legacy `rotate` tag phones write. FFmpeg >= 7 muxers ignore that tag, so it
    is written as a display matrix (coded side data), which is what phones really store;
    readers see it as `VideoFrame.rotation == -rotation` (counter-clockwise degrees).
    threads=1 (which also turns x264's rc-lookahead off) makes the bytes the same on every run
    and machine: x264 output otherwise depends on the thread count, and with its lookahead on,
    repeated runs of the same frames differed. audio_bitrate (bits/s) fixes the AAC budget so
    audio bytes do not track content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame_iter = iter(frames)
    try:
        first = np.ascontiguousarray(next(frame_iter), dtype=np.uint8)
    except StopIteration:
        raise ValueError("encode_clip needs at least one frame") from None
    height, width, _ = first.shape
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
            if threads == 1:  # reproducible mode: x264's lookahead/mb-tree made repeated runs differ
                x264.append("rc-lookahead=0")
            if x264:
                options["x264-params"] = ":".join(x264)
        elif gop is not None:
            vstream.codec_context.gop_size = gop
        if threads is not None:  # 1 = byte-reproducible x264 output on any machine
            options["threads"] = str(threads)
        vstream.options = options
        if rotation % 360:
            if rotation % 90:
                raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
            vstream.set_display_rotation(-float(rotation % 360))
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
            if audio_bitrate is not None:  # a fixed budget keeps file size independent of content
                astream.bit_rate = audio_bitrate
        audio_out = _AudioFeeder(container, astream, audio, sample_rate)
        for i, image in enumerate(_chain_first(first, frame_iter)):
            # Interleave audio up to this frame's end, as cameras do (audio sits next to video).
            audio_out.feed_until((i + 1) / fps)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        audio_out.feed_until(float("inf"))
    return path


def _chain_first(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """The first frame (already read to size the stream), then the others, all as uint8."""
    yield first
    for image in rest:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.shape != first.shape:
            raise ValueError(f"frame shape {image.shape} differs from the first frame {first.shape}")
        yield image


class _AudioFeeder:
    """Encodes mono float audio in 1024-sample AAC frames, on demand up to a time."""

    CHUNK = 1024

    def __init__(self, container: av.container.OutputContainer, stream, audio, sample_rate: int) -> None:
        self.container = container
        self.stream = stream
        self.sample_rate = sample_rate
        self.samples = (
            np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0) if stream is not None else None
        )
        self.pos = 0
        self.flushed = False

    def feed_until(self, seconds: float) -> None:
        if self.stream is None or self.flushed:
            return
        limit = len(self.samples) if seconds == float("inf") else min(len(self.samples), int(seconds * self.sample_rate))
        while self.pos < limit:
            block = np.ascontiguousarray(self.samples[self.pos : self.pos + self.CHUNK][None, :])
            aframe = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
            aframe.sample_rate = self.sample_rate
            aframe.pts = self.pos
            aframe.time_base = Fraction(1, self.sample_rate)
            self.pos += block.shape[1]
            for packet in self.stream.encode(aframe):
                self.container.mux(packet)
        if seconds == float("inf"):
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.flushed = True


def moving_scene(
    n: int,
    height: int,
    width: int,
    face: bool = True,
    noise: int = 0,
    seed: int = 0,
) -> Iterable[np.ndarray]:
    """Yield `n` RGB frames of a slowly panning textured scene, optionally with a moving face.

    Real camera-like content (global motion + a moving object) makes x264 produce realistic
    P/B-frame structure; the face is the astronaut photo from scikit-image, which OpenCV's Haar
    cascade detects. `noise` > 0 adds sensor-like grain (raises the bitrate towards phone
    footage). Frames are generated one at a time, so 1080p minutes never sit in memory.
    """
    import cv2
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    pad_x, pad_y = max(8, width // 5), max(8, height // 5)
    yy, xx = np.mgrid[0 : height + 2 * pad_y, 0 : width + 2 * pad_x].astype(np.float32)
    period = max(8.0, min(height, width) / 6.0)
    texture = 0.5 + 0.25 * np.sin(xx / period) * np.cos(yy / (1.3 * period))
    background = np.stack(
        [texture * 200 + 30, (1 - texture) * 160 + 50, (xx / xx.max()) * 120 + 60], axis=-1
    ).astype(np.uint8)
    side = max(16, int(min(height, width) * 0.45))
    portrait = cv2.resize(skdata.astronaut()[10:230, 130:350], (side, side), interpolation=cv2.INTER_AREA)
    grains = [rng.integers(0, noise + 1, (height, width, 3), dtype=np.uint8) for _ in range(4)] if noise > 0 else []
    for i in range(n):
        ox = int(pad_x * (1 + np.sin(i / 40.0)))
        oy = int(pad_y * (1 + np.cos(i / 55.0)))
        frame = background[oy : oy + height, ox : ox + width].copy()
        if face:
            fx = int((width - side) * (0.5 + 0.4 * np.sin(i / 30.0)))
            fy = int((height - side) * (0.5 + 0.4 * np.sin(i / 45.0)))
            frame[fy : fy + side, fx : fx + side] = portrait
        if grains:
            cv2.add(frame, grains[i % len(grains)], dst=frame)
        yield frame
