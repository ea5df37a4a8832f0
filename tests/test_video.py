"""pipeline.video: frame policy, exactness of the skip/seek decoder, rotation, bad files."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.encode import encode_clip, moving_scene
from pipeline.video import DecodeConfig, decode_video, sample_times, to_rgb

FPS = 10


def scene(n: int, height: int = 120, width: int = 160, face: bool = True) -> np.ndarray:
    return np.stack(list(moving_scene(n, height, width, face=face)))


def tone(seconds: float, sr: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return 0.3 * np.sin(2 * np.pi * freq * t)


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s at 10 fps, keyframe every 2 s, 3 B-frames: like phone/DFDC footage, scaled down."""
    path = tmp_path_factory.mktemp("video") / "long_gop.mp4"
    return encode_clip(path, scene(120), FPS, audio=tone(12.0), gop=20, bframes=3)


def brute_force(path: Path, max_side: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every frame, decoded the plain way (reference for exactness)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(float(f.pts * stream.time_base), to_rgb(f, max_side)) for f in container.decode(stream)]
    return np.array([t for t, _ in frames]), [img for _, img in frames]


def test_sample_times_uniform_and_window() -> None:
    uniform = sample_times(10.0, DecodeConfig(frames=4, policy="uniform"))
    np.testing.assert_allclose(uniform, [1.25, 3.75, 6.25, 8.75])
    first = sample_times(10.0, DecodeConfig(frames=4, policy="window", window_seconds=2.0, window_start="first"))
    np.testing.assert_allclose(first, [0.25, 0.75, 1.25, 1.75])
    centre = sample_times(10.0, DecodeConfig(frames=4, policy="window", window_seconds=2.0, window_start="centre"))
    np.testing.assert_allclose(centre, [4.25, 4.75, 5.25, 5.75])
    cfg = DecodeConfig(frames=4, policy="window", window_seconds=2.0, window_start="random", seed=3)
    a, b = sample_times(10.0, cfg, "video-a"), sample_times(10.0, cfg, "video-b")
    np.testing.assert_allclose(a, sample_times(10.0, cfg, "video-a"))  # reproducible per video
    assert not np.allclose(a, b)  # but not the same window for every video
    for times in (a, b):
        assert times[0] >= 0.25 - 1e-9 and times[-1] <= 9.75 + 1e-9
        np.testing.assert_allclose(np.diff(times), 0.5)
    # a video shorter than the window: the window is the whole video
    np.testing.assert_allclose(sample_times(1.0, DecodeConfig(frames=2, policy="window")), [0.25, 0.75])


def test_config_rejects_unknown_policy() -> None:
    with pytest.raises(ValueError, match="decode.policy"):
        DecodeConfig(policy="everything")
    with pytest.raises(ValueError, match="window_start"):
        DecodeConfig(window_start="middle")


@pytest.mark.parametrize(
    "cfg",
    [
        DecodeConfig(frames=4, policy="uniform", max_side=96),
        DecodeConfig(frames=5, policy="window", window_seconds=2.0, window_start="centre", max_side=96),
        DecodeConfig(frames=6, policy="window", window_seconds=3.0, window_start="random", max_side=96),
    ],
)
def test_policy_picks_nearest_frames_pixel_exact(long_gop: Path, cfg: DecodeConfig) -> None:
    """The skipping/seeking decoder returns exactly the frames a full decode has at those times."""
    decoded = decode_video(long_gop, cfg, seed_key="clip")
    all_times, all_frames = brute_force(long_gop, cfg.max_side)
    targets = sample_times(decoded.duration, cfg, "clip")
    expected = [int(np.argmin(np.abs(all_times - t))) for t in targets]
    assert decoded.status == "ok" and decoded.n_frames == cfg.frames
    np.testing.assert_allclose(decoded.times, all_times[expected], atol=1e-4)
    for got, idx in zip(decoded.frames, expected):
        np.testing.assert_array_equal(got, all_frames[idx])
    # less work than decoding everything: non-reference frames were skipped
    assert decoded.extra["decoded"] < len(all_times)


def test_uniform_jumps_between_keyframes_without_redecoding(long_gop: Path) -> None:
    decoded = decode_video(long_gop, DecodeConfig(frames=3, max_side=64))
    # targets 2 s, 6 s, 10 s with keyframes every 2 s: the decoder jumps ahead instead of reading all
    assert decoded.extra["seeks"] >= 1
    assert decoded.extra["packets"] < 120
    np.testing.assert_allclose(decoded.times, [2.0, 6.0, 10.0], atol=0.051)


def test_window_stops_after_last_needed_frame(long_gop: Path) -> None:
    decoded = decode_video(long_gop, DecodeConfig(frames=4, policy="window", window_seconds=1.0, window_start="first"))
    assert decoded.times.max() < 1.0
    assert decoded.extra["packets"] < 40  # read only the start of a 120-frame video


def test_frames_are_downscaled_and_rgb(long_gop: Path) -> None:
    decoded = decode_video(long_gop, DecodeConfig(frames=2, max_side=80))
    assert decoded.frames.dtype == np.uint8
    assert decoded.frames.shape == (2, 60, 80, 3)
    assert decoded.times.dtype == np.float32
    assert decoded.audio.dtype == np.float32 and decoded.has_audio
    assert decoded.duration == pytest.approx(12.0, abs=0.05)


def test_portrait_phone_video_comes_out_upright(tmp_path: Path) -> None:
    upright = scene(12, height=160, width=96)  # portrait scene
    stored = np.ascontiguousarray(np.rot90(upright, 1, axes=(1, 2)))  # sensor-landscape storage
    path = encode_clip(tmp_path / "portrait.mp4", stored, FPS, rotation=90, crf=12)
    with av.open(str(path)) as container:
        assert container.streams.video[0].width == 160  # stored landscape
    decoded = decode_video(path, DecodeConfig(frames=3))
    assert decoded.frames.shape[1:] == (160, 96, 3)
    for img, t in zip(decoded.frames, decoded.times):
        ref = upright[int(round(t * FPS))].astype(int)
        assert np.abs(img.astype(int) - ref).mean() < 6  # matches the upright source, not a rotated one
    for turns in (1, 2, 3):
        wrong = np.rot90(upright[0], turns).astype(int)
        if wrong.shape == decoded.frames[0].shape:
            assert np.abs(decoded.frames[0].astype(int) - wrong).mean() > 20


def test_upside_down_video(tmp_path: Path) -> None:
    upright = scene(6)
    path = encode_clip(tmp_path / "flip.mp4", np.ascontiguousarray(upright[:, ::-1, ::-1]), FPS, rotation=180, crf=12)
    decoded = decode_video(path, DecodeConfig(frames=2))
    for img, t in zip(decoded.frames, decoded.times):
        assert np.abs(img.astype(int) - upright[int(round(t * FPS))].astype(int)).mean() < 6


def test_video_shorter_than_k_frames(tmp_path: Path) -> None:
    path = encode_clip(tmp_path / "short.mp4", scene(3), FPS, audio=tone(0.3))
    decoded = decode_video(path, DecodeConfig(frames=8))
    assert decoded.status == "short"
    assert decoded.n_frames == 3
    assert "3 distinct frame" in decoded.reason
    np.testing.assert_allclose(decoded.times, [0.0, 0.1, 0.2], atol=1e-4)


def write_raw(path: Path, images: np.ndarray, stamps_ms: list[int], options: dict[str, str] | None = None) -> Path:
    """H.264 mp4 with frames at arbitrary millisecond times (encode_clip only writes constant rate)."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = images.shape[2], images.shape[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for ms, img in zip(stamps_ms, images):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_variable_frame_rate(tmp_path: Path) -> None:
    stamps_ms = [0, 30, 70, 100, 180, 200, 260, 400, 420, 450, 600, 640, 700, 900, 950, 1000, 1200, 1210, 1500]
    path = write_raw(tmp_path / "vfr.mp4", scene(len(stamps_ms)), stamps_ms)
    cfg = DecodeConfig(frames=5)
    decoded = decode_video(path, cfg)
    stamps = np.array(stamps_ms) / 1000.0
    expected = [stamps[np.argmin(np.abs(stamps - t))] for t in sample_times(decoded.duration, cfg)]
    assert decoded.status == "ok"
    np.testing.assert_allclose(decoded.times, expected, atol=1e-3)
    # real frame times, not a grid of nominal times
    assert all(np.abs(stamps - t).min() < 1e-3 for t in decoded.times)
    assert not np.allclose(np.diff(decoded.times), np.diff(decoded.times)[0])


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.mp4", b"", "empty file"),
        ("text.mp4", b"this is not a video, just text with an mp4 name\n" * 20, "not a readable video"),
    ],
)
def test_unreadable_files_give_error_status(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    decoded = decode_video(path, DecodeConfig(frames=4))
    assert decoded.status == "error"
    assert reason in decoded.reason
    assert decoded.n_frames == 0 and decoded.frames.dtype == np.uint8
    assert decoded.audio.size == 0 and not decoded.has_audio


def test_truncated_file(tmp_path: Path, long_gop: Path) -> None:
    data = long_gop.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    decoded = decode_video(path, DecodeConfig(frames=4))
    assert decoded.status in ("error", "partial")
    assert decoded.reason
    assert decoded.frames.ndim == 4


def test_no_audio_track(tmp_path: Path) -> None:
    path = encode_clip(tmp_path / "mute.mp4", scene(10), FPS)
    decoded = decode_video(path, DecodeConfig(frames=4))
    assert decoded.status == "ok" and decoded.n_frames == 4
    assert not decoded.has_audio and decoded.audio.size == 0
    assert "no audio track" in decoded.reason


def test_truncated_streamable_file_keeps_decoded_frames(tmp_path: Path) -> None:
    """moov at the front (faststart): the first part still decodes; status says it is partial."""
    path = write_raw(tmp_path / "fs.mp4", scene(60), [i * 100 for i in range(60)], {"movflags": "faststart"})
    data = path.read_bytes()
    cut = tmp_path / "fs_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    decoded = decode_video(cut, DecodeConfig(frames=6))
    assert decoded.status == "partial"
    assert "truncated" in decoded.reason or "stopped early" in decoded.reason
    assert 1 <= decoded.n_frames < 6
    assert decoded.times.max() < 5.0

