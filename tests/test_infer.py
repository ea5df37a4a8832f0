"""Inference API: on real encoded videos, `predict_video` equals the pipeline's score
(decode -> extract -> predict stages) within 1e-6, fallbacks included."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.encode import encode_clip
from pipeline.models import model_spec, save_checkpoint
from tiny_models import SMALL, calibrated_model

FPS, W, H, SR = 10, 96, 80, 16000
PARAMS = {
    "data": {"root": "data/sample", "template": None},
    "decode": {"frames": 4, "policy": "uniform", "max_side": 96, "sample_rate": SR, "workers": 1},
    "faces": {"detector": "haar", "size": 32, "detect_side": 96},
    "audio": {"n_mels": 16, "fmax": 8000, "n_fft": 512, "win_length": 400, "hop_length": 160, "frames": 48},
    "predict": {"tta_hflip": True, "tta_samplings": 2, "tta_crops": [1.0, 0.8], "aggregate": "mean_logit",
                "batch_size": 1, "fallback_score": 0.25, "device": "cpu"},
}
# batch_size 1: infer scores one video at a time; CPU conv kernels round differently for other
# batch sizes (~1e-7 on a probability, more with this test's amplified head), which is float32
# noise, not a code-path difference. Equality within 1e-6 is asserted on the same batch shape.

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _clip(path: Path, seed: int, audio: bool = True) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(1, H // 8, W // 8, 3)).repeat(8, axis=1).repeat(8, axis=2)
    frames = np.stack([np.roll(base[0], shift=3 * t, axis=1) for t in range(FPS)]).astype(np.uint8)
    wave = None
    if audio:
        t = np.arange(SR) / SR
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * seed) * t) + 0.05 * rng.standard_normal(SR)
    encode_clip(path, frames, FPS, audio=wave, sample_rate=SR)


def _dataset(root: Path) -> list[str]:
    sample = root / "data" / "sample"
    names = {"trainset": [f"t{i}.mp4" for i in range(4)], "valset": [f"v{i}.mp4" for i in range(3)]}
    for folder, files in names.items():
        for i, name in enumerate(files):
            _clip(sample / folder / name, seed=10 * (folder == "valset") + i, audio=name != "v2.mp4")
    (sample / "valset" / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (sample / "train_label.txt").write_text("video_name,target\n" + "".join(f"t{i}.mp4,{i % 2}\n" for i in range(4)))
    (sample / "val_label.txt").write_text("video_name,target\nv0.mp4,0\nv1.mp4,1\n")
    template = ["v2.mp4", "broken.mp4", "v0.mp4", "v1.mp4"]
    (sample / "prediction.txt.csv").write_text("video_name,y_pred\n" + "".join(f"{n},0\n" for n in template))
    return template


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """Run the real decode, extract and predict stages on the encoded videos."""
    import os

    from stages import decode, extract, predict

    root = tmp_path_factory.mktemp("infer")
    template = _dataset(root)
    (root / "params.yaml").write_text(json.dumps(PARAMS))
    old = os.getcwd()
    os.chdir(root)
    try:
        decode.main()
        extract.main()
        model = calibrated_model(root / "data" / "features")
        config = {k: PARAMS[k] for k in ("decode", "faces", "audio", "predict")} | {"model": asdict(SMALL)}
        save_checkpoint(root / "models" / "final.pt", model, model_spec(SMALL, for_checkpoint=True), config)
        predict.main()
    finally:
        os.chdir(old)
    return root, template


def test_predict_video_matches_pipeline(pipeline_run) -> None:
    from pipeline.infer import predict_video

    root, template = pipeline_run
    pred = pd.read_csv(root / "data" / "predictions.csv").set_index("video_name")
    ckpt = root / "models" / "final.pt"
    for name in template:
        folder = "valset"
        score = predict_video(root / "data" / "sample" / folder / name, checkpoint=ckpt)
        assert abs(score - pred.loc[name, "score"]) <= 1e-6, name
    assert bool(pred.loc["broken.mp4", "fallback"]) and pred.loc["broken.mp4", "score"] == 0.25
    assert not pred.loc["v2.mp4", "fallback"]  # silent video is still scored from its frames
    scored = pred.loc[["v0.mp4", "v1.mp4", "v2.mp4"], "score"]
    assert scored.max() - scored.min() > 1e-3  # the model really tells these videos apart


def test_cli_prints_video_score_lines(pipeline_run, capsys) -> None:
    from pipeline.infer import main

    root, _ = pipeline_run
    videos = [str(root / "data" / "sample" / "valset" / n) for n in ("v0.mp4", "broken.mp4")]
    missing = str(root / "nope.mp4")
    assert main([*videos, missing, "--checkpoint", str(root / "models" / "final.pt")]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == videos
    assert lines[1].endswith(",0.250000")
    assert "nope.mp4 not found" in captured.err


def test_missing_checkpoint_is_clear(tmp_path: Path) -> None:
    from pipeline.infer import predict_video

    video = tmp_path / "a.mp4"
    _clip(video, 1)
    with pytest.raises(FileNotFoundError, match="checkpoint .* not found"):
        predict_video(video, checkpoint=tmp_path / "missing.pt")


def test_checkpoint_from_before_window_align_keeps_its_exact_windows() -> None:
    """Checkpoints written before `decode.window_align` existed decoded windows at the exact start;
    inference must pick the same frames, not the keyframe-aligned ones today's default picks."""
    from pipeline.infer import _decode_section
    from pipeline.video import DecodeConfig

    old = {"frames": 8, "policy": "window", "window_start": "centre"}
    assert DecodeConfig(**_decode_section(old)).window_align == "exact"
    assert DecodeConfig(**_decode_section({**old, "window_align": "keyframe"})).window_align == "keyframe"
    assert _decode_section(None) is None
