"""pipeline.video: frame policy, exactness of the skip/seek decoder, rotation, bad files."""
from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType
import numpy as np
import pytest

from pipeline.encode import encode_clip, moving_scene
from pipeline.video import DecodeConfig, DecodedVideo, decode_video, planned_times, sample_times, to_rgb, window_span, x264_options

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


@pytest.fixture(scope="module")
def two_gops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s at 10 fps, keyframes at 0 s and 5 s only, 3 B-frames: the benchmark clip, scaled down."""
    path = tmp_path_factory.mktemp("video") / "two_gops.mp4"
    return encode_clip(path, scene(100), FPS, gop=50, bframes=3)


@pytest.fixture(scope="module")
def one_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s at 10 fps whose only keyframe is the first frame."""
    path = tmp_path_factory.mktemp("video") / "one_gop.mp4"
    return encode_clip(path, scene(60), FPS, gop=100, bframes=3)


def brute_force(path: Path, max_side: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every frame, decoded the plain way (reference for exactness)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(float(f.pts * stream.time_base), to_rgb(f, max_side)) for f in container.decode(stream)]
    return np.array([t for t, _ in frames]), [img for _, img in frames]


def anchor_mask(path: Path) -> np.ndarray:
    """Which frames (display order) are I/P-frames, as a plain full decode reports them."""
    with av.open(str(path)) as container:
        return np.array([f.pict_type in (PictureType.I, PictureType.P) for f in container.decode(video=0)])


def expected_picks(path: Path, decoded: DecodedVideo, targets: np.ndarray, all_times: np.ndarray) -> list[int]:
    """Nearest frame to each wanted time; nearest I/P-frame when the decoder skipped B-frames."""
    allowed = anchor_mask(path) if decoded.extra.get("b_frames_skipped") else np.ones(len(all_times), bool)
    pool = np.flatnonzero(allowed)
    return [int(pool[np.argmin(np.abs(all_times[pool] - t))]) for t in targets]


def keyframe_times(path: Path) -> list[float]:
    """Times of the frames the decoder itself flags as keyframes (not the container index)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(f.pts * stream.time_base) for f in container.decode(stream) if f.key_frame]


def assert_exact(decoded: DecodedVideo, path: Path, max_side: int) -> None:
    """Every kept frame equals, pixel for pixel, the frame a plain full decode has at that time."""
    all_times, all_frames = brute_force(path, max_side)
    for got, when in zip(decoded.frames, decoded.times):
        idx = int(np.argmin(np.abs(all_times - when)))
        assert abs(all_times[idx] - when) < 1e-4
        np.testing.assert_array_equal(got, all_frames[idx])


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
    with pytest.raises(ValueError, match="window_align"):
        DecodeConfig(window_align="nearest")


def test_window_align_is_part_of_the_cache_key() -> None:
    from pipeline.decoding import decode_key

    aligned, exact = DecodeConfig(), DecodeConfig(window_align="exact")
    assert aligned.window_align == "keyframe" and aligned.output_params()["window_align"] == "keyframe"
    assert decode_key("abc", aligned) != decode_key("abc", exact)


def test_window_align_rule() -> None:
    """Nearest keyframe where a whole window fits (one frame interval of slack), else the exact start."""
    cfg = DecodeConfig(frames=4, policy="window", window_seconds=2.0, window_start="centre")  # exact start 4 s
    keys = np.array([0.0, 5.0])
    assert window_span(10.0, cfg, keyframes=keys) == (5.0, 2.0)
    np.testing.assert_allclose(sample_times(10.0, cfg, keyframes=keys), [5.25, 5.75, 6.25, 6.75])
    # without keyframes, or with window_align exact, the start is the exact centre as before
    for keyframes in (None, np.zeros(0)):
        assert window_span(10.0, cfg, keyframes=keyframes) == (4.0, 2.0)
    assert window_span(10.0, replace(cfg, window_align="exact"), keyframes=keys) == (4.0, 2.0)
    # the only keyframe at 0 s is the nearest one where a window fits: a centred window moves there
    assert window_span(10.0, cfg, keyframes=np.array([0.0]))[0] == 0.0
    # a keyframe too late for a whole window is not used, unless it is within one frame interval
    assert window_span(10.0, cfg, keyframes=np.array([8.05]))[0] == 4.0
    assert window_span(10.0, cfg, keyframes=np.array([8.05]), frame_interval=0.1)[0] == 8.05
    assert window_span(10.0, cfg, keyframes=np.array([0.0, 8.0]))[0] == 0.0  # a tie goes to the earlier one
    # first stays at 0 s; uniform and videos shorter than the window ignore keyframes
    assert window_span(10.0, replace(cfg, window_start="first"), keyframes=keys)[0] == 0.0
    assert window_span(10.0, DecodeConfig(frames=4), keyframes=keys) == (0.0, 10.0)
    assert window_span(1.5, cfg, keyframes=np.array([0.0, 1.0])) == (0.0, 1.5)
    # random start: fixed per video, always a keyframe, and not the same one for every video
    rnd = replace(cfg, window_start="random", seed=3)
    starts = [window_span(10.0, rnd, f"video-{i}", keys)[0] for i in range(12)]
    assert set(starts) == {0.0, 5.0}
    assert starts == [window_span(10.0, rnd, f"video-{i}", keys)[0] for i in range(12)]


@pytest.mark.parametrize(
    "cfg",
    [
        DecodeConfig(frames=4, policy="uniform", max_side=96),
        DecodeConfig(frames=5, policy="window", window_seconds=2.0, window_start="centre", max_side=96),
        DecodeConfig(frames=6, policy="window", window_seconds=3.0, window_start="random", max_side=96),
        DecodeConfig(frames=5, policy="window", window_start="centre", window_align="exact", max_side=96),
    ],
)
def test_policy_picks_nearest_frames_pixel_exact(long_gop: Path, cfg: DecodeConfig) -> None:
    """The skipping/seeking decoder returns exactly the frames a full decode has at those times.

    The clip is x264 `veryfast` (ref=1): uniform K=4 (3 s apart, mini-GOP 0.4 s) skips every
    B-frame and takes the nearest I/P-frames; the windows (0.4-0.5 s apart) are too dense for that
    and take the nearest frames."""
    decoded = decode_video(long_gop, cfg, seed_key="clip")
    all_times, all_frames = brute_force(long_gop, cfg.max_side)
    targets = planned_times(long_gop, cfg, "clip")
    assert decoded.extra.get("b_frames_skipped", False) == (cfg.policy == "uniform")
    expected = expected_picks(long_gop, decoded, targets, all_times)
    assert decoded.status == "ok" and decoded.n_frames == cfg.frames
    np.testing.assert_allclose(decoded.times, all_times[expected], atol=1e-4)
    for got, idx in zip(decoded.frames, expected):
        np.testing.assert_array_equal(got, all_frames[idx])
    # less work than decoding everything: non-reference frames were skipped, none decoded twice
    assert decoded.extra["decoded"] < len(all_times)
    assert decoded.extra["repeats"] == 0


@pytest.mark.parametrize("preset, refs, skipped", [("veryfast", "1", True), ("medium", "3", False)])
def test_b_frames_are_skipped_only_where_x264_says_it_is_exact(
    tmp_path: Path, preset: str, refs: str, skipped: bool
) -> None:
    """x264 ref=1: P-frames reference only the I/P-frame before them, so every B-frame is skipped
    and the nearest I/P-frames are kept, pixel-exact. ref=3 (`medium`): P-frames may reference the
    pyramid B-frames, so only non-reference frames are skipped and the nearest frames are kept."""
    path = encode_clip(tmp_path / f"{preset}.mp4", scene(80), FPS, gop=40, bframes=3, preset=preset)
    with av.open(str(path)) as container:
        first = next(p for p in container.demux(video=0) if p.size)
        options = x264_options(bytes(first))
    assert options["ref"] == refs and options["bframes"] == "3"
    cfg = DecodeConfig(frames=4, max_side=96)
    decoded = decode_video(path, cfg)
    assert decoded.extra.get("b_frames_skipped", False) is skipped
    all_times, all_frames = brute_force(path, cfg.max_side)
    expected = expected_picks(path, decoded, planned_times(path, cfg), all_times)
    assert decoded.status == "ok" and decoded.n_frames == 4
    np.testing.assert_allclose(decoded.times, all_times[expected], atol=1e-4)
    for got, idx in zip(decoded.frames, expected):
        np.testing.assert_array_equal(got, all_frames[idx])
    n_anchors = int(anchor_mask(path).sum())
    if skipped:  # only I/P-frames were decoded
        assert decoded.extra["decoded"] <= n_anchors
    else:
        assert decoded.extra["decoded"] > n_anchors


def test_x264_options_absent_for_other_encoders(tmp_path: Path) -> None:
    path = encode_clip(tmp_path / "mpeg4.mp4", scene(20), FPS, codec="mpeg4")
    with av.open(str(path)) as container:
        first = next(p for p in container.demux(video=0) if p.size)
    assert x264_options(bytes(first)) == {}
    decoded = decode_video(path, DecodeConfig(frames=4, max_side=96))
    assert decoded.status == "ok" and "b_frames_skipped" not in decoded.extra


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


@pytest.mark.parametrize("k", [8, 10])
def test_keyframe_aligned_window_decodes_only_the_window(two_gops: Path, k: int) -> None:
    """Centred 2 s window of a 10 s clip with keyframes at 0 s and 5 s: aligned to 5-7 s, one jump
    to the 5 s keyframe, fewer frames decoded than the exact 4-6 s window (which decodes from 0 s),
    and the same pixels as a plain full decode. k = 10 puts the first wanted time within one frame
    interval of the keyframe."""
    assert keyframe_times(two_gops) == [0.0, 5.0]
    cfg = DecodeConfig(frames=k, policy="window", window_seconds=2.0, window_start="centre", max_side=96)
    aligned = decode_video(two_gops, cfg)
    exact = decode_video(two_gops, replace(cfg, window_align="exact"))
    assert aligned.status == exact.status == "ok" and aligned.n_frames == exact.n_frames == k

    assert aligned.extra["window_start_s"] == 5.0
    assert 5.0 <= aligned.times.min() and aligned.times.max() < 7.0
    np.testing.assert_allclose(aligned.times, planned_times(two_gops, cfg), atol=0.051)
    assert aligned.extra["seeks"] == 1 and aligned.extra["repeats"] == 0
    # only frames from 5 s on were decoded: at most the 2 s window's 20 frames plus B-frame reordering
    assert aligned.extra["decoded"] <= 2 * FPS + 4
    assert aligned.extra["decoded"] < exact.extra["decoded"]

    # exact: the old times, from the exact centre (keyframes play no part)
    assert exact.extra["window_start_s"] == 4.0
    np.testing.assert_allclose(exact.times, sample_times(10.0, replace(cfg, window_align="exact")), atol=0.051)
    assert exact.extra["repeats"] == 0
    for decoded in (aligned, exact):
        assert_exact(decoded, two_gops, cfg.max_side)


def test_only_keyframe_at_start_moves_centred_window_there(one_gop: Path) -> None:
    """The rule taken literally: 0 s is the nearest keyframe where a window fits, so a centred
    window starts there (a later window would be decoded from 0 s anyway)."""
    assert keyframe_times(one_gop) == [0.0]
    cfg = DecodeConfig(frames=4, policy="window", window_seconds=2.0, window_start="centre", max_side=96)
    aligned = decode_video(one_gop, cfg)
    exact = decode_video(one_gop, replace(cfg, window_align="exact"))
    assert aligned.extra["window_start_s"] == 0.0 and exact.extra["window_start_s"] == 2.0
    assert aligned.times.max() < 2.0 and exact.times.min() >= 2.0
    assert aligned.extra["seeks"] == exact.extra["seeks"] == 0
    assert aligned.extra["decoded"] < exact.extra["decoded"]
    assert_exact(aligned, one_gop, cfg.max_side)


def test_random_aligned_window_is_fixed_per_video(two_gops: Path) -> None:
    from pipeline.atomic import file_digest

    cfg = DecodeConfig(frames=4, policy="window", window_seconds=2.0, window_start="random", seed=3, max_side=96)
    a = decode_video(two_gops, cfg, seed_key="video-a")
    b = decode_video(two_gops, cfg, seed_key="video-a")
    assert a.extra["window_start_s"] in (0.0, 5.0)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.frames, b.frames)
    # no seed_key: the file digest, as the decode stage and pipeline.infer use
    c = decode_video(two_gops, cfg)
    d = decode_video(two_gops, cfg, seed_key=file_digest(two_gops))
    assert c.extra["window_start_s"] == d.extra["window_start_s"] in (0.0, 5.0)
    np.testing.assert_array_equal(c.times, d.times)
    assert_exact(c, two_gops, cfg.max_side)


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

