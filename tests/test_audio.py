"""pipeline.audio (PyAV decode + resample) and the log-mel features of pipeline.features."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import decode_audio
from pipeline.encode import encode_clip, moving_scene
from pipeline.features import FLOOR_DB, AudioConfig, fix_length, log_mel

FPS = 10


def clip(path: Path, seconds: float, audio: np.ndarray | None, sr: int) -> Path:
    frames = np.stack(list(moving_scene(int(seconds * FPS), 64, 96, face=False)))
    return encode_clip(path, frames, FPS, audio=audio, sample_rate=sr)


def dominant_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize("source_sr", [44100, 16000, 8000])
def test_decoded_audio_is_mono_float_at_target_rate(tmp_path: Path, source_sr: int) -> None:
    t = np.arange(int(2.0 * source_sr)) / source_sr
    path = clip(tmp_path / f"tone{source_sr}.mp4", 2.0, 0.4 * np.sin(2 * np.pi * 1000 * t), source_sr)
    out = decode_audio(path, 16000, max_seconds=None)
    assert out.has_audio and out.reason == ""
    assert out.samples.dtype == np.float32 and out.samples.ndim == 1
    assert abs(out.samples.size - 32000) <= 2048  # AAC frames pad the end a little
    assert dominant_hz(out.samples[4000:28000], 16000) == pytest.approx(1000, abs=5)
    assert 0.25 < np.abs(out.samples[4000:28000]).max() < 0.55


def test_max_seconds_limits_decoding(tmp_path: Path) -> None:
    sr = 16000
    path = clip(tmp_path / "long.mp4", 3.0, 0.2 * np.sin(np.arange(3 * sr) / 5.0), sr)
    assert decode_audio(path, sr, max_seconds=1.0).samples.size == sr


def test_no_audio_track(tmp_path: Path) -> None:
    out = decode_audio(clip(tmp_path / "mute.mp4", 1.0, None, 16000), 16000, 20.0)
    assert not out.has_audio and out.samples.size == 0 and out.reason == "no audio track"


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    out = decode_audio(bad, 16000, 20.0)
    assert not out.has_audio and out.samples.size == 0 and "cannot open" in out.reason


def test_log_mel_shape_range_and_reference() -> None:
    cfg = AudioConfig(n_mels=32, frames=50, n_fft=512, win_length=400, hop_length=160)
    sr = 16000
    t = np.arange(sr) / sr
    mel, status, reason = log_mel(0.5 * np.sin(2 * np.pi * 1000 * t), sr, cfg)
    assert status == "ok" and reason == ""
    assert mel.shape == (32, 50) and mel.dtype == np.float16
    assert float(mel.max()) == 0.0  # dB relative to the clip max
    assert float(mel.min()) >= FLOOR_DB
    peak_band = int(np.argmax(mel.astype(np.float32).mean(axis=1)))
    quiet_band = int(np.argmin(mel.astype(np.float32).mean(axis=1)))
    assert peak_band != quiet_band


def test_log_mel_is_scale_invariant_and_pads() -> None:
    cfg = AudioConfig(n_mels=16, frames=120, n_fft=256, win_length=256, hop_length=128)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=4000).astype(np.float32) * 0.1
    loud, _, _ = log_mel(noise, 16000, cfg)
    soft, _, _ = log_mel(noise * 0.01, 16000, cfg)
    np.testing.assert_allclose(loud.astype(np.float32), soft.astype(np.float32), atol=0.1)
    used = 4000 // 128 + 1
    assert (loud[:, used:] == FLOOR_DB).all()  # padded on the right with the floor
    assert (loud[:, :used] > FLOOR_DB).any()


def test_silent_and_missing_audio_are_floor() -> None:
    cfg = AudioConfig(n_mels=8, frames=10)
    silent, status, reason = log_mel(np.zeros(16000, np.float32), 16000, cfg)
    assert status == "silent" and "silent" in reason
    assert silent.shape == (8, 10) and (silent == FLOOR_DB).all()
    missing, status, _ = log_mel(np.zeros(0, np.float32), 16000, cfg)
    assert status == "missing" and (missing == FLOOR_DB).all()


def test_fix_length_crops_and_pads() -> None:
    mel = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(fix_length(mel, 4), mel[:, :4])
    padded = fix_length(mel, 8)
    assert padded.shape == (2, 8) and (padded[:, 6:] == FLOOR_DB).all()


def test_audio_config_checks() -> None:
    with pytest.raises(ValueError, match="win_length"):
        AudioConfig(n_fft=256, win_length=400)


def test_default_decode_length_covers_the_mel_and_shorter_audio_gives_the_same_mel(tmp_path: Path) -> None:
    """decode.max_audio_seconds only has to cover what the mel reads: 2 s or 12 s of decoded audio
    give the same mel; settings whose mel would read past the decoded audio are refused."""
    from pipeline.video import DecodeConfig

    cfg, decode = AudioConfig(), DecodeConfig()
    cfg.check_decoded_length(decode.max_audio_seconds, decode.sample_rate)  # the defaults fit
    t = np.arange(12 * 16000) / 16000
    path = encode_clip(tmp_path / "a.mp4", np.stack(list(moving_scene(24, 64, 64))), 2,
                       audio=0.3 * np.sin(2 * np.pi * 300 * t) * (1 + t / 12), sample_rate=16000)
    short, long = decode_audio(path, 16000, decode.max_audio_seconds), decode_audio(path, 16000, 12.0)
    assert short.samples.size == 32000 and long.samples.size > 5 * short.samples.size
    np.testing.assert_array_equal(log_mel(short.samples, 16000, cfg)[0], log_mel(long.samples, 16000, cfg)[0])
    with pytest.raises(ValueError, match=r"raise decode.max_audio_seconds to at least 3.9"):
        AudioConfig(frames=384).check_decoded_length(2.0, 16000)
    AudioConfig(frames=384).check_decoded_length(None, 16000)  # no limit: everything is decoded
