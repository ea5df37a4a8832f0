"""Time and peak memory of frame + mel extraction on phone/DFDC-like clips it generates itself.

Variants, each run in its own subprocess (peak memory = the child's own high-water mark: ru_maxrss,
unless the kernel carried the parent's over through fork+exec, then /proc/self/status VmHWM):
  (a) uniform   pipeline.video.decode_video (policy uniform) + pipeline.features.log_mel
  (b) window    the same with policy window, 2 s centred window
  (c) reference the notes' way: moviepy writes the audio to a wav, librosa loads it (resampled)
                and computes the mel; OpenCV VideoCapture reads every frame and keeps K evenly
                spaced ones (resized to the same size) -- same K, same mel shape
  (d) floor     bare threaded PyAV decode of the needed span (whole clip for uniform; for window,
                from the keyframe at/before the first wanted time of the window (b) uses, keyframe
                alignment included, to the last wanted time), no conversion, no audio
Clips: 1080p H.264, 30 fps, keyframe every 5 s, 3 B-frames, film grain, 44.1 kHz AAC audio,
10 s and 60 s with x264 `superfast` (ref=1), and the 10 s clip again with x264 `medium` (ref=3, where
B-frames cannot be skipped exactly) (--quick: 360p, 4 s and 24 s). Generated once into --workdir and reused.

    python benchmarks/extract_bench.py [--quick] [--repeats N] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.video import DecodeConfig

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

K = 8
MAX_SIDE = 480
WINDOW = 2.0
SR = 16000
FPS = 30
GOP = 150
VARIANTS = ("uniform", "window", "reference", "floor", "floor_window")
LABELS = {
    "uniform": "(a) uniform",
    "window": "(b) window 2 s",
    "reference": "(c) reference",
    "floor": "(d) floor, whole clip",
    "floor_window": "(d) floor, window span",
}


# --------------------------------------------------------------------------- clips
def make_clip(path: Path, seconds: float, width: int, height: int, preset: str = "superfast") -> Path:
    """Long-GOP H.264 with B-frames and grain (phone/DFDC-like), with an audio track.

    `superfast` (x264 ref=1): P-frames reference only I/P-frames, so the decoder may skip every
    B-frame. `medium` (x264's default, ref=3): P-frames reference B-frames too, so only the
    non-reference frames can be skipped; the benchmark reports that clip as well."""
    from pipeline.encode import encode_clip, moving_scene

    if path.is_file():
        return path
    n = int(round(seconds * FPS))
    t = np.arange(int(seconds * 44100)) / 44100.0
    audio = 0.25 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.7 * t)) / 2 + 0.02 * np.sin(2 * np.pi * 3100 * t)
    tmp = path.with_suffix(".part.mp4")
    encode_clip(
        tmp, moving_scene(n, height, width, face=True, noise=6), FPS, audio=audio, sample_rate=44100,
        gop=GOP, bframes=3, crf=23, preset=preset,
    )
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- variants (child side)
def audio_cfg():
    from pipeline.features import AudioConfig

    return AudioConfig()


def decode_cfg(policy: str) -> DecodeConfig:
    """The decode settings of (a)/(b); the window floor decodes the span (b) aims at."""
    from pipeline.video import DecodeConfig

    return DecodeConfig(frames=K, policy=policy, window_seconds=WINDOW, window_start="centre", max_side=MAX_SIDE,
                        sample_rate=SR)


def run_ours(clip: str, policy: str) -> dict:
    from pipeline.features import log_mel
    from pipeline.video import decode_video

    decoded = decode_video(clip, decode_cfg(policy))
    mel, status, _ = log_mel(decoded.audio, decoded.sample_rate, audio_cfg())
    return {"frames": list(decoded.frames.shape), "mel": list(mel.shape), "status": decoded.status, **decoded.extra}


def run_reference(clip: str) -> dict:
    import cv2
    import librosa
    from moviepy import VideoFileClip

    from pipeline.features import FLOOR_DB, fix_length

    cfg = audio_cfg()
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "extracted_audio.wav")
        with VideoFileClip(clip) as video:
            video.audio.write_audiofile(wav, logger=None)
        y, sr = librosa.load(wav, sr=SR)
    power = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=cfg.window,
        n_mels=cfg.n_mels, fmax=cfg.fmax,
    )
    mel = fix_length(np.clip(librosa.power_to_db(power, ref=np.max), FLOOR_DB, 0), cfg.frames).astype(np.float16)
    cap = cv2.VideoCapture(clip)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    keep = {int(round((i + 0.5) * total / K - 0.5)) for i in range(K)}
    frames, index = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index in keep:
            h, w = frame.shape[:2]
            scale = min(1.0, MAX_SIDE / max(h, w))
            small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    return {"frames": [len(frames), *frames[0].shape], "mel": list(mel.shape), "read": index}


@functools.lru_cache(maxsize=None)
def window_times(clip: str) -> tuple[float, float]:
    """First and last wanted time of (b) on this clip: sample_times with the stream's keyframes,
    so the floor decodes the keyframe-aligned window (b) decodes. Planned once, not timed."""
    from pipeline.video import planned_times

    times = planned_times(clip, decode_cfg("window"))
    return float(times[0]), float(times[-1])


def run_floor(clip: str, window: bool) -> dict:
    import av

    times = window_times(clip) if window else None
    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        end = float(stream.duration * stream.time_base)
        if times is not None:
            end = times[1]
            container.seek(int(times[0] / stream.time_base), stream=stream, backward=True)
        n, first = 0, None
        for frame in container.decode(stream):
            n += 1
            if first is None:
                first = frame.time
            if frame.time is not None and frame.time >= end:
                break
    return {"decoded": n, "span": [round(first or 0.0, 2), round(end, 2)]}


def run_variant(name: str, clip: str) -> dict:
    if name in ("uniform", "window"):
        return run_ours(clip, name)
    if name == "reference":
        return run_reference(clip)
    return run_floor(clip, window=name == "floor_window")


def child(args: argparse.Namespace) -> None:
    run_variant(args.variant, args.warm)  # lazy imports, JIT, first-call costs: not timed
    if args.variant == "floor_window":
        window_times(args.clip)  # the floor is the bare decode: planning the span is not timed
    rss_ready = _current_rss_mb()
    times, info = [], {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        info = run_variant(args.variant, args.clip)
        times.append(time.perf_counter() - start)
    peak = _peak_rss_mb()
    print(json.dumps({"seconds": statistics.median(times), "all": times, "peak_mb": peak, "ready_mb": rss_ready, **info}))


def _peak_rss_mb() -> float:
    """Peak RSS of this process image. Linux keeps ru_maxrss across exec, so a child of a big
    parent would report the parent's size; VmHWM belongs to the current image only."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux, bytes on macOS


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


# --------------------------------------------------------------------------- parent side
def measure(variant: str, clip: Path, warm: Path, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--variant", variant, "--clip", str(clip), "--warm", str(warm),
           "--repeats", str(repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} on {clip.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="360p clips of 4 s and 24 s")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median reported)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "ffdv_extract_bench"))
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--warm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    width, height, short, long_ = (640, 360, 4.0, 24.0) if args.quick else (1920, 1080, 10.0, 60.0)
    started = time.perf_counter()
    warm = make_clip(work / "warm_320x180_2s.mp4", 2.0, 320, 180)
    clips = [make_clip(work / f"clip_{width}x{height}_{int(s)}s.mp4", s, width, height) for s in (short, long_)]
    clips.append(make_clip(work / f"clip_{width}x{height}_{int(short)}s_medium.mp4", short, width, height, "medium"))
    print(f"clips ready in {time.perf_counter() - started:.0f} s (cached in {work}); cores: {os.cpu_count()}, "
          f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    results: dict[str, dict[str, dict]] = {}
    for clip in clips:
        seconds = float(clip.stem.split("_")[2].rstrip("s"))
        preset = "medium, ref=3" if clip.stem.endswith("_medium") else "superfast, ref=1"
        print(f"\n{clip.name}: {height}p, {seconds:.0f} s, {int(seconds * FPS)} frames, keyframe every "
              f"{GOP / FPS:.0f} s, 3 B-frames, x264 {preset}, {clip.stat().st_size / 1e6:.1f} MB; "
              f"K = {K}, max_side = {MAX_SIDE}")
        print(f"  {'variant':<24}{'seconds':>9}{'peak MB':>10}   detail")
        row = results.setdefault(clip.name, {})
        for variant in VARIANTS:
            r = measure(variant, clip, warm, args.repeats)
            row[variant] = r
            detail = {k: v for k, v in r.items() if k not in ("seconds", "all", "peak_mb", "ready_mb")}
            print(f"  {LABELS[variant]:<24}{r['seconds']:>9.3f}{r['peak_mb']:>10.0f}   {detail}")
        ref = row["reference"]["seconds"]
        print(f"  speed-up vs reference: (c)/(a) = {ref / row['uniform']['seconds']:.1f}x, "
              f"(c)/(b) = {ref / row['window']['seconds']:.1f}x; "
              f"uniform/floor = {row['uniform']['seconds'] / row['floor']['seconds']:.2f}, "
              f"window/floor(window) = {row['window']['seconds'] / row['floor_window']['seconds']:.2f}")
    a, b = (results[c.name] for c in clips[:2])
    print("\npeak memory, long clip / short clip: " + ", ".join(
        f"{v} {b[v]['peak_mb'] / a[v]['peak_mb']:.2f}x" for v in ("uniform", "window", "reference")))
    print("targets: uniform >= 3x reference, <= 1.3x floor; window >= 10x reference; long/short peak memory <= 1.2x")


if __name__ == "__main__":
    main()
