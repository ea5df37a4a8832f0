"""The extract stage end to end (`python -m stages.decode` then `stages.extract` in a temp project)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.decoding import run_decode
from pipeline.encode import encode_clip, moving_scene
from pipeline.extraction import INDEX_COLUMNS, REPORT_COLUMNS, run_extract
from tests.stage_runner import run_stage

FPS = 10
SR = 16000
K, S, MELS, T = 4, 32, 16, 40
PARAMS = {
    "data": {"root": "data/sample"},
    "decode": {"frames": K, "max_side": 320, "workers": 2, "sample_rate": SR},
    "faces": {"detector": "haar", "size": S},
    "audio": {"n_mels": MELS, "frames": T},
}
# name -> (folder, kind, target)
VIDEOS = {
    "real0.mp4": ("trainset", "face", 0),
    "real1.mp4": ("trainset", "face_long", 0),
    "fake0.mp4": ("trainset", "face_other", 1),
    "fake1.mp4": ("trainset", "noface", 1),
    "mute.mp4": ("valset", "mute", 0),
    "silent.mp4": ("valset", "silent", 1),
    "short.mp4": ("valset", "short", 0),
    "empty.mp4": ("valset", "empty", 1),
}


def scene(n: int, face: bool = True) -> np.ndarray:
    return np.stack(list(moving_scene(n, 240, 320, face=face)))


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)


def add_video(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
        return
    n = {"face_long": 16, "face_other": 14, "short": 2}.get(kind, 12)
    audio = {"mute": None, "silent": np.zeros(n * SR // FPS)}.get(kind, tone(n / FPS, 300 + 20 * n))
    encode_clip(path, scene(n, face=kind != "noface"), FPS, audio=audio, sample_rate=SR)


def make_project(tmp: Path, videos: dict = VIDEOS) -> Path:
    root = tmp / "data" / "sample"
    for name, (folder, kind, _) in videos.items():
        add_video(root / folder / name, kind)
    for folder, label_file in (("trainset", "train_label.txt"), ("valset", "val_label.txt")):
        rows = [f"{n},{t}\n" for n, (f, _, t) in videos.items() if f == folder]
        (root / label_file).write_text("video_name,target\n" + "".join(rows))
    (root / "prediction.txt.csv").write_text("video_name,score\n" + "".join(f"{n},0\n" for n in videos))
    (tmp / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return tmp


def test_decode_then_extract_end_to_end(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    for stage in ("decode", "extract"):
        done = run_stage(project, stage)
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.strip().splitlines()) == 1 and done.stdout.startswith(f"{stage}:")
    out = project / "data" / "features"
    index = pd.read_csv(out / "index.csv", keep_default_na=False)
    assert list(index.columns) == INDEX_COLUMNS
    assert list(index["video_name"]) == list(VIDEOS)  # manifest order, no row lost
    assert list(index["row"]) == list(range(len(VIDEOS)))

    faces = np.load(out / "faces.npy", mmap_mode="r")
    mels = np.load(out / "mels.npy", mmap_mode="r")
    assert faces.shape == (len(VIDEOS), K, S, S, 3) and faces.dtype == np.uint8
    assert mels.shape == (len(VIDEOS), MELS, T) and mels.dtype == np.float16
    assert float(mels.max()) <= 0.0 and float(mels.min()) >= -80.0

    rows = index.set_index("video_name")
    status = lambda n: (rows.loc[n, "decode_status"], rows.loc[n, "face_status"], rows.loc[n, "audio_status"])  # noqa: E731
    assert status("real0.mp4") == ("ok", "ok", "ok") and rows.loc["real0.mp4", "faces_found"] == K
    assert status("fake1.mp4") == ("ok", "centre", "ok")
    assert status("mute.mp4") == ("ok", "ok", "missing")
    assert status("silent.mp4") == ("ok", "ok", "silent")
    assert status("short.mp4") == ("short", "ok", "ok")
    assert status("empty.mp4") == ("error", "none", "missing")
    empty_row = int(rows.loc["empty.mp4", "row"])
    assert faces[empty_row].max() == 0 and (mels[empty_row] == -80).all()
    assert (mels[int(rows.loc["mute.mp4", "row"])] == -80).all()
    assert (mels[int(rows.loc["real0.mp4", "row"])] == 0).any()
    short = faces[int(rows.loc["short.mp4", "row"])]
    np.testing.assert_array_equal(short[2], short[0])  # 2 frames padded to K by repetition

    report = pd.read_csv(out / "report.csv", keep_default_na=False)
    assert list(report.columns) == REPORT_COLUMNS
    lines = set(zip(report["video_name"], report["stage"]))
    assert lines == {
        ("fake1.mp4", "faces"),
        ("mute.mp4", "audio"),
        ("silent.mp4", "audio"),
        ("short.mp4", "decode"),
        ("empty.mp4", "decode"),
        ("empty.mp4", "faces"),
        ("empty.mp4", "audio"),
    }
    assert all(report["reason"].str.len() > 5)
    png = project / "plots" / "face_crops.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detector_swap_and_incremental_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    videos = {k: v for k, v in VIDEOS.items() if k in ("real0.mp4", "fake0.mp4", "fake1.mp4", "mute.mp4")}
    project = make_project(tmp_path, videos)
    monkeypatch.chdir(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    run_decode(params)
    first = run_extract(params)
    assert first.computed == 4
    haar_faces = np.load("data/features/faces.npy")
    assert run_extract(params).computed == 0  # unchanged settings: all cached

    swapped = {**params, "faces": {**params["faces"], "detector": "centre"}}
    second = run_extract(swapped)
    assert second.computed == 4 and second.pruned == 4  # new crops, old entries cleaned up
    centre_faces = np.load("data/features/faces.npy")
    index = pd.read_csv("data/features/index.csv")
    assert set(index["face_status"]) == {"centre"}
    real = int(index.set_index("video_name").loc["real0.mp4", "row"])
    assert np.abs(haar_faces[real].astype(int) - centre_faces[real].astype(int)).mean() > 10

    # a new video: one decode and one extract entry computed
    root = project / "data" / "sample"
    add_video(root / "trainset" / "real1.mp4", "face_long")
    (root / "train_label.txt").write_text((root / "train_label.txt").read_text() + "real1.mp4,0\n")
    assert run_decode(swapped).computed == 1
    third = run_extract(swapped)
    assert third.computed == 1 and third.videos == 5
    assert np.load("data/features/faces.npy", mmap_mode="r").shape[0] == 5

    # only the audio settings change: the audio part is recomputed for every video
    more_mels = {**swapped, "audio": {**swapped["audio"], "n_mels": 24}}
    assert run_extract(more_mels).computed == 5
    assert np.load("data/features/mels.npy", mmap_mode="r").shape == (5, 24, T)


def test_extract_without_manifest_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    done = run_stage(tmp_path, "extract")
    assert done.returncode != 0 and "run the decode stage first" in done.stderr


def test_yunet_without_model_fails_before_any_work(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"real0.mp4": VIDEOS["real0.mp4"]})
    params = {**PARAMS, "faces": {"detector": "yunet", "model_path": "models/missing_yunet.onnx"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(project, "decode").returncode == 0
    done = run_stage(project, "extract")
    assert done.returncode != 0 and "missing_yunet.onnx" in done.stderr


def test_mel_longer_than_decoded_audio_fails_before_any_work(tmp_path: Path) -> None:
    params = {**PARAMS, "audio": {**PARAMS.get("audio", {}), "frames": 400, "hop_length": 160},
              "decode": {**PARAMS["decode"], "max_audio_seconds": 2.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage(tmp_path, "extract")
    assert done.returncode != 0 and "raise decode.max_audio_seconds to at least 4" in done.stderr
