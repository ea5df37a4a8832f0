"""The embedded sample (stage `sample`): layout, real streams, detectable faces, no trivial
shortcut between real and fake, learnable manipulations, determinism and the stage itself."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import cv2
import librosa
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

import pipeline.sample as sample_mod
from pipeline.atomic import file_digest
from pipeline.config import section
from pipeline.layout import build_manifest, discover
from pipeline.sample import SampleConfig, folder_size, generate, plan_clips, write_sample

REPO = Path(__file__).resolve().parents[1]
CFG = SampleConfig()  # the defaults are the params.yaml values the pipeline runs on
HAAR = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def _decode(path: Path) -> dict:
    """Frames, audio and stream facts of one clip, straight from PyAV."""
    with av.open(str(path)) as container:
        vs, as_ = container.streams.video[0], container.streams.audio[0]
        info = {
            "vcodec": vs.codec_context.name,
            "acodec": as_.codec_context.name,
            "rate": as_.codec_context.sample_rate,
            "channels": as_.codec_context.channels,
            "vdur": float(vs.duration * vs.time_base),
        }
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return {**info, "frames": frames, "audio": audio, "size": path.stat().st_size}


def _haar_boxes(frame: np.ndarray) -> np.ndarray:
    """Haar boxes at the pipeline's sizes: frames capped at 480 px, detection at 320 px longest side."""
    if max(frame.shape[:2]) > 480:
        s = 480 / max(frame.shape[:2])
        frame = cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    s = 320 / max(frame.shape[:2])
    gray = cv2.cvtColor(cv2.resize(frame, None, fx=s, fy=s), cv2.COLOR_RGB2GRAY)
    boxes = HAAR.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(32, 32))
    return np.asarray(boxes, dtype=float).reshape(-1, 4) / s


def _face_sharpness(frame: np.ndarray, box: np.ndarray) -> float:
    """log ratio of inner-face to hair/edge detail in a 64x64 crop (margin 0.25), as extract makes."""
    x, y, w, h = box
    m = 0.25 * w
    H, W = frame.shape[:2]
    x0, y0, x1, y1 = int(max(0, x - m)), int(max(0, y - m)), int(min(W, x + w + m)), int(min(H, y + h + m))
    crop = cv2.resize(frame[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_AREA)
    lap = np.abs(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F))
    ring = np.concatenate([lap[:12].ravel(), lap[:, :8].ravel(), lap[:, -8:].ravel()]).mean()
    return float(np.log(lap[22:50, 20:44].mean() + 1e-3) - np.log(ring + 1e-3))


def _high_band(audio: np.ndarray) -> float:
    """Energy of the top 12 of 64 log-mel bands (to 8 kHz) relative to the mid bands, loud frames."""
    mel = librosa.power_to_db(
        librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64, fmax=8000),
        ref=np.max,
    )
    loud = mel.mean(0) >= np.median(mel.mean(0))
    profile = mel[:, loud].mean(1)
    return float(profile[52:].mean() - profile[20:40].mean())


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("sample") / "sample"
    write_sample(CFG, dest, progress=False)
    return dest


@pytest.fixture(scope="module")
def clips(sample_dir: Path) -> pd.DataFrame:
    """One row per clip with its plan entry, decoded content and the features the tests need."""
    plan = pd.DataFrame([vars(s) for s in plan_clips(CFG)])
    rows = []
    for spec in plan.itertuples():
        path = sample_dir / ("trainset" if spec.subset == "train" else "valset") / f"{spec.name}.mp4"
        clip = _decode(path)
        hits, sharp = 0, []
        # Haar at 320 px is the costly part: 6 frames of each real clip, 3 of each fake
        checked = clip["frames"][:: 4 if spec.target == 0 else 8]
        for frame in checked:
            boxes = _haar_boxes(frame)
            if len(boxes):
                hits += 1
                sharp.append(_face_sharpness(frame, boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]))
        rows.append(
            {
                "name": spec.name,
                "target": spec.target,
                "fake": spec.fake,
                "n_frames": len(clip["frames"]),
                "shape": clip["frames"].shape[1:],
                "vcodec": clip["vcodec"],
                "acodec": clip["acodec"],
                "rate": clip["rate"],
                "channels": clip["channels"],
                "vdur": clip["vdur"],
                "adur": len(clip["audio"]) / clip["rate"],
                "brightness": float(clip["frames"].mean()),
                "size": clip["size"],
                "rms": float(np.sqrt(np.mean(clip["audio"] ** 2))),
                "haar_rate": hits / len(checked),
                "sharpness": float(np.mean(sharp)) if sharp else np.nan,
                "high_band": _high_band(clip["audio"]),
            }
        )
    return pd.DataFrame(rows)


def test_layout_labels_and_template(sample_dir: Path) -> None:
    assert sorted(p.name for p in sample_dir.iterdir()) == [
        "README.txt", "prediction.txt.csv", "train_label.txt", "trainset", "val_label.txt", "valset",
    ]
    name_re = re.compile(r"^[0-9a-f]{32}\.mp4$")
    for folder, label_file, n in (("trainset", "train_label.txt", CFG.n_train), ("valset", "val_label.txt", CFG.n_val)):
        text = (sample_dir / label_file).read_text()
        assert text.startswith("video_name,target\n") and text.endswith("\n")
        labels = pd.read_csv(sample_dir / label_file)
        assert list(labels.columns) == ["video_name", "target"] and len(labels) == n
        assert all(name_re.match(v) for v in labels["video_name"])
        assert sorted(p.name for p in (sample_dir / folder).iterdir()) == sorted(labels["video_name"])
        assert labels["target"].isin([0, 1]).all() and labels["target"].sum() == n // 2
    val = pd.read_csv(sample_dir / "val_label.txt")
    template_text = (sample_dir / "prediction.txt.csv").read_text()
    assert template_text.splitlines()[0] == "video_name,y_pred"
    template = pd.read_csv(sample_dir / "prediction.txt.csv")
    assert list(template["video_name"]) == list(val["video_name"]) and (template["y_pred"] == 0).all()
    train = pd.read_csv(sample_dir / "train_label.txt")
    assert not set(train["video_name"]) & set(val["video_name"])
    readme = (sample_dir / "README.txt").read_text()
    assert "skimage.data.astronaut()" in readme and "public-domain NASA" in readme
    # the layout module reads it as a competition folder
    manifest = build_manifest(discover(sample_dir))
    assert manifest.groupby("subset").size().to_dict() == {"train": CFG.n_train, "val": CFG.n_val}
    assert manifest["in_template"].sum() == CFG.n_val
    assert folder_size(sample_dir) < 5_000_000


def test_plan_mixes_fake_kinds_and_balances_nuisance() -> None:
    plan = pd.DataFrame([vars(s) for s in plan_clips(CFG)])
    assert plan["name"].is_unique
    kinds = plan.loc[plan["target"] == 1, "fake"].value_counts()
    assert set(kinds.index) == {"face", "voice", "both"} and kinds.min() >= CFG.n_train // 8
    assert (plan.loc[plan["target"] == 0, "fake"] == "real").all()
    for subset in ("train", "val"):
        part = plan[plan["subset"] == subset]
        for column in ("brightness", "texture", "noise", "loudness"):
            # stratified: each class covers [0, 1) evenly, so the class means nearly agree
            means = part.groupby("target")[column].mean()
            assert abs(means[0] - means[1]) < 0.1, (subset, column, means.to_dict())


def test_clips_have_video_and_audio_of_the_expected_duration(clips: pd.DataFrame) -> None:
    n = round(CFG.seconds * CFG.fps)
    assert (clips["n_frames"] == n).all()
    assert all(shape == (CFG.height, CFG.width, 3) for shape in clips["shape"])
    assert (clips["vcodec"] == "h264").all() and (clips["acodec"] == "aac").all()
    assert (clips["rate"] == CFG.sample_rate).all() and (clips["channels"] == 1).all()
    assert np.allclose(clips["vdur"], CFG.seconds, atol=0.1)
    assert np.allclose(clips["adur"], CFG.seconds, atol=0.1)
    assert (clips["rms"] > 0.005).all()  # a real, audible track


def test_haar_finds_faces(clips: pd.DataFrame) -> None:
    real = clips[clips["target"] == 0]
    assert real["haar_rate"].mean() >= 0.9 and real["haar_rate"].min() >= 0.5
    fake = clips[clips["target"] == 1]  # swapped faces must still be found, or fakes lose their crops
    assert fake["haar_rate"].mean() >= 0.8


@pytest.mark.parametrize("feature", ["brightness", "size", "rms"])
def test_trivial_features_do_not_separate(clips: pd.DataFrame, feature: str) -> None:
    auc = roc_auc_score(clips["target"], clips[feature])
    assert 0.3 <= auc <= 0.7, f"{feature} separates real from fake: AUC {auc:.3f}"


def test_manipulations_survive_compression(clips: pd.DataFrame) -> None:
    """Each manipulation leaves a trace in the decoded clip that one simple feature picks up."""
    face_fake = clips["fake"].isin(["face", "both"])
    voice_fake = clips["fake"].isin(["voice", "both"])
    assert roc_auc_score(face_fake, -clips["sharpness"]) >= 0.9
    assert roc_auc_score(voice_fake, -clips["high_band"]) >= 0.85
    # and neither trace leaks into the other modality
    assert 0.25 <= roc_auc_score(face_fake, -clips["high_band"]) <= 0.75
    assert 0.25 <= roc_auc_score(voice_fake, -clips["sharpness"]) <= 0.75


def _decoded_digest(root: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.mp4")):
        clip = _decode(path)
        h.update(path.name.encode())
        h.update(clip["frames"].tobytes())
        h.update(clip["audio"].tobytes())
    return h.hexdigest()


def test_same_seed_same_sample(tmp_path: Path) -> None:
    small = SampleConfig(n_train=4, n_val=2, seed=11)
    a, b = tmp_path / "a", tmp_path / "b"
    generate(small, a, progress=False)
    generate(small, b, progress=False)
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for name in ("train_label.txt", "val_label.txt", "prediction.txt.csv", "README.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert _decoded_digest(a) == _decoded_digest(b)
    for rel in files_a:  # single-threaded x264 + fixed AAC budget: even the mp4 bytes agree
        assert file_digest(a / rel) == file_digest(b / rel), rel
    other = tmp_path / "other"
    generate(SampleConfig(n_train=4, n_val=2, seed=12), other, progress=False)
    assert not set(p.name for p in other.rglob("*.mp4")) & set(p.name for p in a.rglob("*.mp4"))


def test_write_sample_swaps_the_folder_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = SampleConfig(n_train=2, n_val=2, seed=5)
    dest = tmp_path / "sample"
    dest.mkdir()
    (dest / "stale.mp4").write_bytes(b"old")
    with pytest.raises(ValueError, match="not empty"):
        generate(small, dest, progress=False)
    write_sample(small, dest, progress=False)
    assert not (dest / "stale.mp4").exists() and len(list(dest.rglob("*.mp4"))) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample"]  # no temp folders left
    before = {p: file_digest(p) for p in dest.rglob("*") if p.is_file()}

    calls = {"n": 0}
    real_encode = sample_mod.encode_clip

    def encode_then_die(*args, **kwargs):  # a crash (disk full, kill) mid-run
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(sample_mod, "encode_clip", encode_then_die)
    with pytest.raises(OSError, match="disk full"):
        write_sample(SampleConfig(n_train=2, n_val=2, seed=6), dest, progress=False)
    assert {p: file_digest(p) for p in dest.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample"]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        section({"sample": {"n_trian": 3}}, "sample", SampleConfig)
    with pytest.raises(ValueError, match="even"):
        SampleConfig(width=191)
    with pytest.raises(ValueError, match="at least 2"):
        SampleConfig(n_val=1)
    with pytest.raises(ValueError, match="16000"):
        SampleConfig(sample_rate=8000)
    repo_params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert section(repo_params, "sample", SampleConfig) == CFG  # tests exercise the shipped settings


def test_stage_writes_the_folder_and_one_line(tmp_path: Path) -> None:
    params = {"sample": {"n_train": 2, "n_val": 2, "seconds": 1.0, "fps": 8, "width": 128, "height": 96, "seed": 3}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "stages.sample"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sample: 2 train (1 fake) + 2 val (1 fake) clips")
    out = tmp_path / "data" / "sample"
    assert len(pd.read_csv(out / "train_label.txt")) == 2 and len(list(out.rglob("*.mp4"))) == 4
    clip = _decode(next((out / "valset").glob("*.mp4")))
    assert clip["frames"].shape == (8, 96, 128, 3) and abs(len(clip["audio"]) / 16000 - 1.0) < 0.1
