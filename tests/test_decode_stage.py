"""The decode stage end to end (`python -m stages.decode` in a temp project) and its cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.decoding import DECODE_COLUMNS, load_decoded, run_decode
from pipeline.encode import encode_clip, moving_scene
from pipeline.layout import MANIFEST_COLUMNS, LayoutError
from tests.stage_runner import run_stage

FPS = 10
SR = 16000
PARAMS = {
    "data": {"root": "data/sample", "template": None},
    "decode": {"frames": 4, "policy": "uniform", "max_side": 128, "workers": 2, "sample_rate": SR},
    "faces": {"size": 32},
    "audio": {"n_mels": 16, "frames": 40},
}


def scene(n: int, face: bool = True, height: int = 96, width: int = 128) -> np.ndarray:
    return np.stack(list(moving_scene(n, height, width, face=face)))


def tone(seconds: float) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * SR)) / SR)


def add_video(root: Path, folder: str, name: str, kind: str = "good") -> Path:
    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "good":
        encode_clip(path, scene(12), FPS, audio=tone(1.2), sample_rate=SR)
    elif kind in ("longer", "newer"):  # content differs from "good" (and from each other)
        n = 15 if kind == "longer" else 18
        encode_clip(path, scene(n), FPS, audio=tone(n / FPS), sample_rate=SR)
    elif kind == "mute":
        encode_clip(path, scene(12), FPS)
    elif kind == "short":
        encode_clip(path, scene(2), FPS, audio=tone(0.2), sample_rate=SR)
    elif kind == "portrait":
        stored = np.ascontiguousarray(np.rot90(scene(12, height=128, width=96), 1, axes=(1, 2)))
        encode_clip(path, stored, FPS, audio=tone(1.2), sample_rate=SR, rotation=90)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("name,score\nthis is a csv, not a video\n")
    elif kind == "truncated":
        encode_clip(path, scene(30), FPS, audio=tone(3.0), sample_rate=SR)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        raise ValueError(kind)
    return path


TRAIN = {"real0.mp4": ("good", 0), "fake0.mp4": ("longer", 1), "mute.mp4": ("mute", 1), "short.mp4": ("short", 0)}
VAL = {"rot.mp4": ("portrait", 0), "empty.mp4": ("empty", 1), "text.mp4": ("text", 0), "cut.mp4": ("truncated", 1)}


def make_project(tmp: Path, params: dict | None = None) -> Path:
    root = tmp / "data" / "sample"
    for folder, videos in (("trainset", TRAIN), ("valset", VAL)):
        for name, (kind, _) in videos.items():
            add_video(root, folder, name, kind)
    write_labels(root)
    (root / "prediction.txt.csv").write_text("video_name,y_pred\n" + "".join(f"{n},0\n" for n in VAL))
    (tmp / "params.yaml").write_text(yaml.safe_dump(params or PARAMS))
    return tmp


def write_labels(root: Path) -> None:
    (root / "train_label.txt").write_text("video_name,target\n" + "".join(f"{n},{t}\n" for n, (_, t) in TRAIN.items()))
    (root / "val_label.txt").write_text("video_name,target\n" + "".join(f"{n},{t}\n" for n, (_, t) in VAL.items()))


def test_decode_stage_end_to_end(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    done = run_stage(project, "decode")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("decode: 8 videos (8 decoded, 0 cached)")

    manifest = pd.read_csv(project / "data" / "manifest.csv", keep_default_na=False)
    assert list(manifest.columns) == MANIFEST_COLUMNS + DECODE_COLUMNS
    assert list(manifest["video_name"]) == list(TRAIN) + list(VAL)  # every row kept, in order
    rows = manifest.set_index("video_name")
    assert rows.loc["real0.mp4", "decode_status"] == "ok" and rows.loc["real0.mp4", "n_frames"] == 4
    assert bool(rows.loc["real0.mp4", "has_audio"]) and rows.loc["real0.mp4", "duration"] == pytest.approx(1.2, abs=0.05)
    assert rows.loc["short.mp4", "decode_status"] == "short" and rows.loc["short.mp4", "n_frames"] == 2
    assert not bool(rows.loc["mute.mp4", "has_audio"]) and "no audio track" in rows.loc["mute.mp4", "reason"]
    assert rows.loc["empty.mp4", "decode_status"] == "error" and "empty file" in rows.loc["empty.mp4", "reason"]
    assert rows.loc["text.mp4", "decode_status"] == "error" and "not a readable video" in rows.loc["text.mp4", "reason"]
    assert rows.loc["cut.mp4", "decode_status"] in ("error", "partial") and rows.loc["cut.mp4", "reason"]
    assert rows.loc["rot.mp4", "decode_status"] == "ok"

    # template copied byte for byte
    template = project / "data" / "sample" / "prediction.txt.csv"
    assert (project / "data" / "template.csv").read_bytes() == template.read_bytes()

    # one entry per distinct key, in the documented format
    entries = sorted(p.stem for p in (project / "data" / "decoded").glob("*.npz"))
    assert entries == sorted(set(manifest["key"]))
    rot = load_decoded(project / "data" / "decoded" / f"{rows.loc['rot.mp4', 'key']}.npz")
    assert rot.frames.shape == (4, 128, 96, 3)  # portrait video stored sideways comes out upright
    with np.load(project / "data" / "decoded" / f"{rows.loc['real0.mp4', 'key']}.npz") as npz:
        assert {"frames", "times", "audio", "duration"} <= set(npz.files)
        assert npz["frames"].dtype == np.uint8 and npz["times"].dtype == np.float32
        assert npz["audio"].dtype == np.float32 and npz["audio"].ndim == 1


def test_incremental_resume_and_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path)
    monkeypatch.chdir(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    decoded = project / "data" / "decoded"
    first = run_decode(params)
    assert (first.computed, first.cached, first.videos) == (8, 0, 8)
    assert run_decode(params).computed == 0  # nothing changed: everything cached

    # a new video: exactly one entry is computed
    root = project / "data" / "sample"
    add_video(root, "trainset", "real1.mp4", "newer")
    TRAIN_PLUS = {**TRAIN, "real1.mp4": ("newer", 0)}
    (root / "train_label.txt").write_text(
        "video_name,target\n" + "".join(f"{n},{t}\n" for n, (_, t) in TRAIN_PLUS.items())
    )
    before = {p.name for p in decoded.glob("*.npz")}
    added = run_decode(params)
    assert (added.computed, added.cached) == (1, 8)
    assert len({p.name for p in decoded.glob("*.npz")} - before) == 1

    # a killed run: some entries missing, a temp file left behind -> only those are redone
    manifest = pd.read_csv(project / "data" / "manifest.csv", keep_default_na=False)
    for key in manifest["key"][:2]:
        (decoded / f"{key}.npz").unlink()
    (decoded / ".abc.npz.x1y2.npz").write_bytes(b"partial")
    resumed = run_decode(params)
    assert resumed.computed == 2 and resumed.pruned == 1
    assert not (decoded / ".abc.npz.x1y2.npz").exists()

    # a video dropped from the labels: its entry is removed
    write_labels(root)
    (root / "trainset" / "real1.mp4").unlink()
    dropped = run_decode(params)
    assert dropped.pruned == 1 and dropped.videos == 8
    assert {p.stem for p in decoded.glob("*.npz")} == set(
        pd.read_csv(project / "data" / "manifest.csv", keep_default_na=False)["key"]
    )

    # speed-only settings keep the cache; output settings do not
    assert run_decode({**params, "decode": {**params["decode"], "workers": 1}}).computed == 0
    assert run_decode({**params, "decode": {**params["decode"], "frames": 3}}).computed == 8


def test_same_content_under_two_names_shares_one_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path)
    root = project / "data" / "sample"
    (root / "valset" / "copy.mp4").write_bytes((root / "trainset" / "real0.mp4").read_bytes())
    (root / "prediction.txt.csv").write_text("video_name,y_pred\n" + "".join(f"{n},0\n" for n in [*VAL, "copy.mp4"]))
    monkeypatch.chdir(project)
    summary = run_decode(yaml.safe_load((project / "params.yaml").read_text()))
    manifest = pd.read_csv(project / "data" / "manifest.csv", keep_default_na=False).set_index("video_name")
    assert summary.videos == 9
    assert manifest.loc["copy.mp4", "key"] == manifest.loc["real0.mp4", "key"]
    assert manifest.loc["copy.mp4", "subset"] == "test"


def test_missing_template_fails_clearly(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "data" / "sample" / "prediction.txt.csv").unlink()
    done = run_stage(project, "decode")
    assert done.returncode != 0
    assert "no submission template" in done.stderr


def test_template_row_without_video_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path)
    (project / "data" / "sample" / "prediction.txt.csv").write_text("video_name,y_pred\nghost.mp4,0\n")
    monkeypatch.chdir(project)
    with pytest.raises(LayoutError, match="ghost.mp4"):
        run_decode(yaml.safe_load((project / "params.yaml").read_text()))
