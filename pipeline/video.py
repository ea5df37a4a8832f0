"""Decode K frames (and the audio) of one video at the codec's floor.

Measured on phone/DFDC-like H.264 (long GOP, B-frames): seeking to every wanted timestamp
re-decodes from the previous keyframe each time and costs several times one sequential pass,
while one threaded sequential pass that skips non-reference frames in the decoder
(`skip_frame = NONREF`) does roughly half the work of a full pass. So the video is read once,
in order, with these rules:

* only packets whose timestamp lies within one frame interval of a wanted time are fully
  decoded; every other non-reference frame is skipped inside the decoder (nothing else
  depends on it, so skipping it never corrupts later frames);
* skipping every B-frame (`BIDIR`) roughly halves the work again, but is exact only when no
  I/P-frame references a B-frame. In general it is not (x264 `medium`, ref=3: P-frames reference
  the pyramid B-frames, and 22 of 24 frames drifted by up to 185 levels), so it is used only when
  the stream says it is safe: x264 writes its settings into the first packet, and with `ref=1`
  (presets `superfast`/`veryfast`) and progressive coding a P-frame references only the I/P-frame
  before it. Then only I/P-frames are decoded, each wanted time takes the nearest of them (at
  most half a mini-GOP away), and this is done only when wanted times lie at least 1.5 mini-GOPs
  apart, so K distinct frames are still found;
* the container index (MP4/MOV keyframe table) is used to jump forward to the last keyframe
  before the next wanted time, but only when that keyframe lies well ahead of the current
  position, so no frame is ever decoded twice;
* reading stops once the last wanted frame is known;
* for the window policy, the window start is moved (by default) to the nearest keyframe at which a
  full window still fits, so decoding starts right at the window: a window placed between
  keyframes would otherwise cost decoding everything from the keyframe before it (on a 10 s clip
  with keyframes at 0 s and 5 s, a centred 4-6 s window meant decoding 0-6 s);
* only the kept frames are converted, and scaling + YUV->RGB happen in one libswscale pass.

Frames come out upright (the display matrix that phones write is honoured), with the
longest side at most `max_side` and non-square pixels corrected.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any, Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.audio import DecodedAudio, decode_audio

POLICIES = ("uniform", "window")
WINDOW_STARTS = ("first", "centre", "random")
WINDOW_ALIGNS = ("keyframe", "exact")
DECODE_STATUSES = ("ok", "short", "partial", "no_video", "error")
# Settings that change speed only; they are left out of the cache key.
RUNTIME_ONLY = ("workers", "threads")
SEEK_GAP_FRAMES = 8  # jump to a keyframe only if it saves at least this many frames
ANCHOR_SPACING = 1.5  # B-frames are skipped only when wanted times are this many mini-GOPs apart
_X264_OPTIONS = re.compile(rb"x264 - core [^\x00]*? options: ([^\x00]*)")


@dataclass(frozen=True)
class DecodeConfig:
    """`decode:` section of params.yaml."""

    frames: int = 8
    policy: str = "uniform"
    window_seconds: float = 2.0
    window_start: str = "centre"
    window_align: str = "keyframe"  # keyframe: start the window at the nearest fitting keyframe
    max_side: int = 480
    sample_rate: int = 16000
    max_audio_seconds: float | None = 2.0  # >= what the mel reads (audio.frames x hop); extract checks
    workers: int = 0
    threads: int = 0  # decoder threads per video; 0 = cores / workers
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.frames) < 1:
            raise ValueError(f"decode.frames must be >= 1, got {self.frames}")
        if self.policy not in POLICIES:
            raise ValueError(f"decode.policy must be one of {POLICIES}, got {self.policy!r}")
        if self.window_start not in WINDOW_STARTS:
            raise ValueError(f"decode.window_start must be one of {WINDOW_STARTS}, got {self.window_start!r}")
        if self.window_align not in WINDOW_ALIGNS:
            raise ValueError(f"decode.window_align must be one of {WINDOW_ALIGNS}, got {self.window_align!r}")
        if float(self.window_seconds) <= 0:
            raise ValueError(f"decode.window_seconds must be > 0, got {self.window_seconds}")
        if int(self.max_side) < 16:
            raise ValueError(f"decode.max_side must be >= 16, got {self.max_side}")
        if int(self.sample_rate) < 1000:
            raise ValueError(f"decode.sample_rate must be >= 1000, got {self.sample_rate}")

    def output_params(self) -> dict[str, Any]:
        """The settings that change the decoded arrays (the cache key uses exactly these)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in RUNTIME_ONLY}


@dataclass
class DecodedVideo:
    """What one video decodes to; `status`/`reason` say why there may be fewer than K frames."""

    frames: np.ndarray  # uint8 [k, H, W, 3] RGB upright, 0 <= k <= K
    times: np.ndarray  # float32 [k] seconds from the stream start
    audio: np.ndarray  # float32 [n] mono at decode.sample_rate
    duration: float  # seconds (video stream; audio length when there is no video)
    status: str = "ok"  # one of DECODE_STATUSES
    reason: str = ""
    has_audio: bool = False
    sample_rate: int = 16000
    extra: dict[str, Any] = field(default_factory=dict)  # diagnostics: decoded/skipped counts, seeks

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


# --------------------------------------------------------------------------- frame policy
def sample_times(
    duration: float,
    cfg: DecodeConfig,
    seed_key: str = "",
    keyframes: np.ndarray | None = None,
    frame_interval: float = 0.0,
) -> np.ndarray:
    """Wanted frame times in seconds from the stream start, ascending, K of them.

    uniform: centres of K equal slices of the whole video. window: centres of K equal slices of
    a `window_seconds` span that starts at the beginning, the middle, or a position drawn from
    (decode.seed, seed_key) so a video always gets the same window. With `window_align: keyframe`
    and the stream's `keyframes` (seconds from the start) given, that start then moves to the
    nearest keyframe where the window still fits (see `window_span`); without keyframes the
    start stays exact, so this stays a pure function of its arguments.
    """
    return _slice_centres(*window_span(duration, cfg, seed_key, keyframes, frame_interval), int(cfg.frames))


def _slice_centres(start: float, span: float, k: int) -> np.ndarray:
    return start + (np.arange(k, dtype=np.float64) + 0.5) * (span / k)


def window_span(
    duration: float,
    cfg: DecodeConfig,
    seed_key: str = "",
    keyframes: np.ndarray | None = None,
    frame_interval: float = 0.0,
) -> tuple[float, float]:
    """(start, span) in seconds of the stretch the K frames are spread over.

    Keyframe alignment (policy window, `window_align: keyframe`, video longer than the window):
    the exact start moves to the nearest keyframe k with k + window <= duration + one frame
    interval (ties go to the earlier one), so decoding starts at the window instead of at the
    keyframe before it. That keyframe may be far away: a clip whose only keyframe is at 0 s gets
    the window at 0 s even for a centred start (any later window would mean decoding from 0 s
    anyway). With no keyframes, or none where a window fits, the exact start is kept.
    """
    duration = max(float(duration), 0.0)
    if cfg.policy == "uniform" or duration <= cfg.window_seconds:
        return 0.0, duration
    span = float(cfg.window_seconds)
    room = duration - span
    if cfg.window_start == "first":
        start = 0.0
    elif cfg.window_start == "centre":
        start = room / 2.0
    else:
        start = room * _unit_random(cfg.seed, seed_key)
    if cfg.window_align == "keyframe" and keyframes is not None:
        keys = np.asarray(keyframes, dtype=np.float64)
        fits = keys[(keys >= 0.0) & (keys + span <= duration + max(float(frame_interval), 0.0) + 1e-6)]
        if fits.size:
            start = float(fits[int(np.argmin(np.abs(fits - start)))])
    return start, span


def _unit_random(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): the same video always gets the same window."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


# --------------------------------------------------------------------------- entry point
def decode_video(path: str | os.PathLike, cfg: DecodeConfig, seed_key: str = "") -> DecodedVideo:
    """Decode K frames + the audio of `path`. Never raises for bad media.

    `seed_key` fixes the random window (policy window, window_start random); when empty, the
    file's content digest is used, so the stage and `pipeline.infer` pick the same window.
    """
    path = os.fspath(path)
    sr = int(cfg.sample_rate)
    container, unreadable = _open(path)
    if container is None:  # the video reason says why, for the audio too
        video, audio = unreadable, DecodedAudio(np.zeros(0, np.float32), False)
    else:
        with container:  # one open for both tracks: audio first, then rewind for the frames
            audio = decode_audio(container, sr, cfg.max_audio_seconds)
            try:
                video = _decode_frames(_rewound(container, path), path, cfg, seed_key)
            except Exception as exc:  # bad media of any kind: record it, never stop the whole run
                video = _FrameResult.failed("error", f"cannot decode video ({_short(exc)})")
    duration = video.duration
    if duration is None or not math.isfinite(duration):
        duration = audio.samples.size / sr
    reasons = [r for r in (video.reason, audio.reason) if r]
    return DecodedVideo(
        frames=video.frames,
        times=video.times,
        audio=audio.samples,
        duration=float(duration),
        status=video.status,
        reason="; ".join(reasons),
        has_audio=audio.has_audio and audio.samples.size > 0,
        sample_rate=sr,
        extra=video.extra,
    )


@dataclass
class _FrameResult:
    frames: np.ndarray
    times: np.ndarray
    duration: float | None
    status: str
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, status: str, reason: str, duration: float | None = None) -> "_FrameResult":
        return cls(_no_frames(), np.zeros(0, np.float32), duration, status, reason)


def _no_frames() -> np.ndarray:
    return np.zeros((0, 0, 0, 3), dtype=np.uint8)


def _open(path: str) -> tuple[av.container.InputContainer | None, _FrameResult | None]:
    """(container, None), or (None, the failure) for an empty or unreadable file."""
    try:
        if os.path.getsize(path) == 0:
            return None, _FrameResult.failed("error", "empty file (0 bytes)")
        return av.open(path), None
    except (av.FFmpegError, OSError, ValueError) as exc:
        return None, _FrameResult.failed("error", f"not a readable video ({_short(exc)})")


def _rewound(container: av.container.InputContainer, path: str) -> av.container.InputContainer:
    """The container back at its first packet (the audio pass read on); reopened if it cannot seek."""
    try:
        container.seek(0)
        return container
    except (av.FFmpegError, ValueError):
        return av.open(path)


def _decode_frames(container: av.container.InputContainer, path: str, cfg: DecodeConfig, seed_key: str) -> _FrameResult:
    with container:
        if not container.streams.video:
            return _FrameResult.failed("no_video", "no video track", _container_duration(container))
        stream = container.streams.video[0]
        info = _StreamInfo.read(container, stream)
        if info.duration is None:
            info.duration = _scan_duration(path)
        if info.duration is None:
            return _FrameResult.failed("error", "no decodable video packets")
        start, targets = _plan(path, info, info.duration, cfg, seed_key)
        picker = _Picker(targets, info.frame_interval, info, int(cfg.max_side))
        if cfg.policy == "window":
            picker.stats["window_start_s"] = start
        reason = ""
        try:
            last_packet = _run_decoder(container, stream, info, picker, int(cfg.threads))
            if not picker.done and last_packet < info.duration - 3 * info.frame_interval:
                reason = f"stream ends at {max(last_packet, 0.0):.2f} s of {info.duration:.2f} s (truncated or damaged)"
        except (av.FFmpegError, ValueError, RuntimeError) as exc:
            reason = f"decode stopped early ({_short(exc)})"
        frames, times = picker.finish()
    k = frames.shape[0]
    if k == 0:
        return _FrameResult.failed("error", reason or "no frame could be decoded", info.duration)
    if reason:
        status = "partial"
    elif k < cfg.frames:
        status = "short"
        reason = f"{k} distinct frame(s) available, {cfg.frames} wanted"
    else:
        status = "ok"
    return _FrameResult(frames, times, info.duration, status, reason, picker.stats)


def _plan(
    path: str, info: "_StreamInfo", duration: float, cfg: DecodeConfig, seed_key: str
) -> tuple[float, np.ndarray]:
    """(window start, wanted times) for this stream; the random window is seeded by the file
    digest when no seed_key is given, so the stage and `pipeline.infer` agree."""
    if cfg.policy == "window" and cfg.window_start == "random" and not seed_key:
        from pipeline.atomic import file_digest

        seed_key = file_digest(path)
    start, span = window_span(duration, cfg, seed_key, info.keyframes, info.frame_interval)
    return start, _slice_centres(start, span, int(cfg.frames))


def planned_times(path: str | os.PathLike, cfg: DecodeConfig, seed_key: str = "") -> np.ndarray:
    """The times `decode_video(path, cfg, seed_key)` aims at (with this stream's keyframes);
    for benchmarks and tests that must decode the same span. Empty for a file without video."""
    path = os.fspath(path)
    with av.open(path) as container:
        if not container.streams.video:
            return np.zeros(0)
        info = _StreamInfo.read(container, container.streams.video[0])
    duration = info.duration if info.duration is not None else _scan_duration(path)
    if duration is None:
        return np.zeros(0)
    return _plan(path, info, duration, cfg, seed_key)[1]


@dataclass
class _StreamInfo:
    time_base: Fraction
    start_pts: int
    duration: float | None
    fps: float
    keyframes: np.ndarray  # keyframe times (s from start) from the container index, maybe empty
    sar: Fraction | None

    @property
    def frame_interval(self) -> float:
        return 1.0 / self.fps

    def seconds(self, pts: int | None) -> float | None:
        if pts is None:
            return None
        return float((pts - self.start_pts) * self.time_base)

    def pts(self, seconds: float) -> int:
        return int(self.start_pts + math.floor(seconds / self.time_base))

    @classmethod
    def read(cls, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> "_StreamInfo":
        tb = stream.time_base or Fraction(1, 90000)
        start = stream.start_time if stream.start_time is not None else 0
        duration = None
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if (not fps or fps > 1000) and duration and stream.frames:
            fps = stream.frames / duration
        if not fps or not math.isfinite(fps) or fps > 1000:
            fps = 30.0
        entries = stream.index_entries
        keyframes = np.zeros(0)
        if entries is not None and len(entries) > 1:
            stamps = [(e.timestamp, e.is_keyframe) for e in entries]
            first = stamps[0][0]  # index holds decode times; the first entry plays at the start
            keyframes = np.array([float((t - first) * tb) for t, key in stamps if key], dtype=np.float64)
        sar = stream.sample_aspect_ratio
        return cls(tb, int(start), duration, fps, keyframes, sar)


def _container_duration(container: av.container.InputContainer) -> float | None:
    return container.duration / av.time_base if container.duration else None


def _scan_duration(path: str) -> float | None:
    """Duration from packet timestamps, for containers whose header does not say (rare)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        lo, hi = None, None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            end = packet.pts + (packet.duration or 0)
            lo = packet.pts if lo is None else min(lo, packet.pts)
            hi = end if hi is None else max(hi, end)
        if lo is None:
            return None
        return float((hi - lo) * tb) or None


def _run_decoder(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    info: _StreamInfo,
    picker: "_Picker",
    threads: int,
) -> float:
    """One forward pass: skip non-reference frames, jump over long gaps, stop when done.

    Returns the time of the last packet read (to tell a truncated stream from a finished one).
    """
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = max(0, threads)
    ctx = stream.codec_context
    packets: Iterator[av.Packet] = container.demux(stream)
    first = next(packets, None)
    if first is not None:
        if _anchor_frames_suffice(bytes(first), picker.targets, info.frame_interval):
            picker.anchors_only()
        packets = itertools.chain([first], packets)
    last_fed = 0.0  # latest packet time given to the decoder (decoding starts at the beginning)
    last_seek = -math.inf
    gap = SEEK_GAP_FRAMES * info.frame_interval
    while not picker.done:
        target = picker.next_open()
        wanted_from = target - picker.reach
        # No frame before the keyframe at/before the target is nearer to it than that keyframe,
        # so decoding may start there even when the target lies within `reach` after it (a
        # keyframe-aligned window's first target does when K frames are dense).
        key = _keyframe_before(info.keyframes, target)
        if key is not None and key > last_fed + gap and key > last_seek:
            for frame in stream.decode(None):  # drain frames still inside the decoder
                picker.add(frame)
            if picker.done:
                break
            # Any time in [key, target] lands on `key`; half a frame past it keeps rounding away.
            seek_to = max(wanted_from, min(key + 0.5 * info.frame_interval, target), 0.0)
            container.seek(info.pts(seek_to), stream=stream, backward=True)
            picker.stats["seeks"] += 1
            last_seek = key
            last_fed = key
            packets = container.demux(stream)
            continue
        packet = next(packets, None)
        if packet is None:
            break
        if packet.size == 0:  # end of stream marker: flush the decoder
            for frame in stream.decode(packet):
                picker.add(frame)
            break
        when = info.seconds(packet.pts)
        if picker.skip_b_frames:
            ctx.skip_frame = "BIDIR"
        else:
            ctx.skip_frame = "DEFAULT" if when is None or picker.wants(when) else "NONREF"
        for frame in stream.decode(packet):
            picker.add(frame)
        if when is not None:
            last_fed = max(last_fed, when)
        picker.stats["packets"] += 1
    return last_fed


def x264_options(data: bytes) -> dict[str, str]:
    """The encoder settings x264 writes (as SEI text) into a stream's first packet; {} if none."""
    found = _X264_OPTIONS.search(data)
    if found is None:
        return {}
    items = found.group(1).decode("ascii", "replace").split()
    return dict(item.split("=", 1) for item in items if "=" in item)


def _anchor_frames_suffice(first_packet: bytes, targets: np.ndarray, interval: float) -> bool:
    """Skip all B-frames: exact for this stream (x264, ref=1, progressive) and K frames stay distinct."""
    options = x264_options(first_packet)
    try:
        refs, bframes = int(options.get("ref", "0")), int(options.get("bframes", "0"))
    except ValueError:
        return False
    if refs != 1 or bframes < 1 or options.get("interlaced", "0") != "0":
        return False
    spacing = float(np.diff(np.sort(targets)).min()) if len(targets) > 1 else math.inf
    return spacing >= ANCHOR_SPACING * (bframes + 1) * interval


def _keyframe_before(keyframes: np.ndarray, seconds: float) -> float | None:
    if keyframes.size == 0:
        return None
    i = int(np.searchsorted(keyframes, seconds + 1e-6, side="right")) - 1
    return float(keyframes[i]) if i >= 0 else None


class _Picker:
    """Keeps, for each wanted time, the nearest decoded frame; converts it once it is final."""

    def __init__(self, targets: np.ndarray, interval: float, info: _StreamInfo, max_side: int) -> None:
        self.targets = np.asarray(targets, dtype=np.float64)
        self.interval = float(interval)
        self.reach = self.interval * 1.01  # packets this close to an open wanted time are fully decoded
        self.info = info
        self.max_side = max_side
        k = len(self.targets)
        self.best_dist = np.full(k, np.inf)
        self.best_frame: list[av.VideoFrame | None] = [None] * k
        self.best_time = np.full(k, np.nan)
        self.final = np.zeros(k, dtype=bool)
        self.converted: dict[float, np.ndarray] = {}
        self.reformatter = VideoReformatter()
        self.last_time = -math.inf
        self.count = 0
        # repeats: frames not later than the one before (decoded twice after a seek, or bad stamps)
        self.stats: dict[str, Any] = {"packets": 0, "decoded": 0, "seeks": 0, "repeats": 0}
        self.skip_b_frames = False

    def anchors_only(self) -> None:
        """Only I/P-frames will arrive: pick among them, never fully decode a B-frame."""
        self.skip_b_frames = True
        self.stats["b_frames_skipped"] = True

    @property
    def done(self) -> bool:
        return bool(self.final.all())

    def next_open(self) -> float:
        return float(self.targets[int(np.argmin(self.final))])

    def wants(self, seconds: float) -> bool:
        """Decode this packet fully: it lies within one frame interval of an open wanted time."""
        near = np.abs(self.targets - seconds) < self.reach
        return bool((near & ~self.final).any())

    def add(self, frame: av.VideoFrame) -> None:
        self.stats["decoded"] += 1
        when = self.info.seconds(frame.pts)
        if when is None:
            when = self.count * self.interval
        self.count += 1
        if when <= self.last_time:  # a repeat or out-of-order frame can never improve a pick
            self.stats["repeats"] += 1
            return
        self.last_time = when
        open_ = ~self.final
        dist = np.abs(self.targets - when)
        better = open_ & (dist < self.best_dist)
        for j in np.flatnonzero(better):
            self.best_dist[j] = dist[j]
            self.best_frame[j] = frame
            self.best_time[j] = when
        # Frames arrive in display order: later frames can only be farther from these targets.
        settled = open_ & (when - self.targets >= self.best_dist)
        for j in np.flatnonzero(settled):
            self._finalise(j)

    def _finalise(self, j: int) -> None:
        self.final[j] = True
        frame = self.best_frame[j]
        self.best_frame[j] = None
        if frame is None:
            return
        key = float(self.best_time[j])
        if key not in self.converted:
            self.converted[key] = to_rgb(frame, self.max_side, self.info.sar, self.reformatter)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        for j in np.flatnonzero(~self.final):
            self._finalise(j)
        if not self.converted:
            return _no_frames(), np.zeros(0, np.float32)
        times = sorted(self.converted)
        images = [self.converted[t] for t in times]
        shape = images[0].shape
        if any(img.shape != shape for img in images):  # resolution changed mid-stream
            import cv2

            images = [img if img.shape == shape else cv2.resize(img, (shape[1], shape[0])) for img in images]
        return np.stack(images), np.asarray(times, dtype=np.float32)


def to_rgb(
    frame: av.VideoFrame, max_side: int, sar: Fraction | None = None, reformatter: VideoReformatter | None = None
) -> np.ndarray:
    """Upright RGB uint8 [H, W, 3], longest side <= max_side, square pixels, one swscale pass.

    Pass one `reformatter` for all frames of a video: it keeps the scaler set up (half the cost).
    """
    width, height = frame.width, frame.height
    display_w = width * float(sar) if sar and float(sar) > 0 else float(width)
    scale = min(1.0, max_side / max(display_w, height))
    out_w = max(1, int(round(display_w * scale)))
    out_h = max(1, int(round(height * scale)))
    scaler = reformatter or VideoReformatter()
    rgb = scaler.reformat(frame, width=out_w, height=out_h, format="rgb24", interpolation="AREA").to_ndarray()
    turns = _quarter_turns(frame)
    if turns:
        rgb = np.rot90(rgb, turns)
    return np.ascontiguousarray(rgb)


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that make the picture upright (display matrix)."""
    try:
        rotation = frame.rotation
    except (AttributeError, ValueError):
        return 0
    if not rotation or not math.isfinite(rotation):
        return 0
    return int(round(rotation / 90.0)) % 4


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
