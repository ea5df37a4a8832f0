"""Predict: TTA variants change scores but never the row set; fallback rows kept; the stage
writes predictions + hold-out metrics."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.data import open_features
from pipeline.models import model_spec, save_checkpoint
from tiny_models import SMALL, calibrated_model
from pipeline.predict import (
    PredictConfig,
    aggregate,
    frame_indices,
    predict_arrays,
    predict_features,
    tta_views,
)

K, S, M, T = 4, 32, 16, 24
BASE = PredictConfig(tta_hflip=False, tta_samplings=1, tta_crops=[1.0], batch_size=4, fallback_score=0.5)

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _features(folder: Path, n: int = 9, seed: int = 0) -> Path:
    """Real arrays + index: 4 train, 3 labelled val, 2 test rows; row 7 failed decode and is
    silent (fallback), row 8 has no frames but has audio (still scored)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    faces = rng.integers(0, 256, size=(n, K, S, S, 3), dtype=np.uint8)
    mels = rng.uniform(-80, 0, size=(n, M, T)).astype(np.float16)
    faces[7:] = 0
    mels[7] = -80
    subset = ["train"] * 4 + ["val"] * 3 + ["test"] * 2
    target = [0, 1, 0, 1, 0, 1, 1, np.nan, np.nan]
    in_template = [False] * 4 + [True, True, False, True, True]
    status = ["ok"] * 7 + ["error", "no_video"]
    index = pd.DataFrame(
        {
            "video_name": [f"v{i}.mp4" for i in range(n)],
            "subset": subset,
            "target": target,
            "in_template": in_template,
            "row": np.arange(n)[::-1],  # rows need not follow index order
            "decode_status": status,
            "face_status": ["ok"] * n,
            "faces_found": [K] * n,
            "audio_status": ["ok"] * n,
            "reason": [""] * n,
        }
    )
    # arrays are stored in reversed order to exercise the `row` indirection
    np.save(folder / "faces.npy", faces[::-1].copy())
    np.save(folder / "mels.npy", mels[::-1].copy())
    index.to_csv(folder / "index.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> torch.nn.Module:
    return calibrated_model(_features(tmp_path_factory.mktemp("calib") / "features"))


@pytest.fixture
def features(tmp_path: Path):
    return open_features(_features(tmp_path / "features"))


def test_tta_variants_change_scores_keep_rows(model, features) -> None:
    base = predict_features(model, features, BASE, progress=False)
    assert list(base["video_name"]) == ["v4.mp4", "v5.mp4", "v6.mp4", "v7.mp4", "v8.mp4"]
    assert base["fallback"].tolist() == [False, False, False, True, False]
    assert base.loc[base["fallback"], "score"].tolist() == [0.5]
    scored = ~base["fallback"].to_numpy()
    framed = np.array([True, True, True, False, False])  # v8 has audio but no frames: face TTA cannot move it
    variants = {
        "hflip": replace(BASE, tta_hflip=True),
        "samplings": replace(BASE, tta_samplings=2),
        "per_frame": replace(BASE, tta_samplings=K),
        "crops": replace(BASE, tta_crops=[1.0, 0.75]),
        "mean_logit": replace(BASE, tta_hflip=True, tta_samplings=2, aggregate="mean_logit"),
        "confident": replace(BASE, tta_samplings=K, aggregate="confident", confident_threshold=0.5,
                             confident_fraction=0.25, confident_min_views=1),
    }
    seen = [base["score"].to_numpy()]
    for name, cfg in variants.items():
        out = predict_features(model, features, cfg, progress=False)
        assert out[["video_name", "subset", "in_template", "fallback"]].equals(
            base[["video_name", "subset", "in_template", "fallback"]]
        ), name
        s = out["score"].to_numpy()
        assert np.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()
        assert s[~scored].tolist() == [0.5]
        assert all(np.abs(s[framed] - prev[framed]).max() > 1e-4 for prev in seen), name
        seen.append(s)


def test_batch_size_does_not_change_scores(model, features) -> None:
    rows = np.arange(len(features.faces))
    cfg = replace(BASE, tta_hflip=True, tta_samplings=2)
    one = predict_arrays(model, features.faces, features.mels, replace(cfg, batch_size=1), rows=rows, progress=False)
    many = predict_arrays(model, features.faces, features.mels, replace(cfg, batch_size=7), rows=rows, progress=False)
    np.testing.assert_allclose(one, many, atol=1e-6)


def test_views_and_frame_samplings() -> None:
    assert len(tta_views(PredictConfig(tta_hflip=True, tta_samplings=2, tta_crops=[1.0, 0.9]), 8)) == 8
    assert len(tta_views(PredictConfig(tta_hflip=False, tta_samplings=20), 8)) == 8  # capped at K
    assert frame_indices(8, 0, 1).tolist() == list(range(8))
    assert frame_indices(8, 0, 2).tolist() == [0, 0, 2, 2, 4, 4, 6, 6]
    assert frame_indices(8, 1, 2).tolist() == [1, 1, 3, 3, 5, 5, 7, 7]
    assert frame_indices(8, 3, 8).tolist() == [3] * 8


def test_aggregation_rules() -> None:
    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    probs = [[0.95, 0.9, 0.2, 0.3], [0.1, 0.05, 0.1, 0.6], [0.5, 0.6, 0.4, 0.55]]
    logits = torch.tensor([[logit(p) for p in row] for row in probs])
    cfg = PredictConfig(aggregate="confident", confident_threshold=0.8, confident_fraction=0.4,
                        confident_min_views=2, confident_real_fraction=0.7)
    out = aggregate(logits, cfg).numpy()
    np.testing.assert_allclose(out, [0.925, (0.1 + 0.05 + 0.1) / 3, np.mean(probs[2])], atol=1e-6)
    mp = aggregate(logits, replace(cfg, aggregate="mean_prob")).numpy()
    np.testing.assert_allclose(mp, np.mean(probs, axis=1), atol=1e-6)
    ml = aggregate(logits, replace(cfg, aggregate="mean_logit")).numpy()
    np.testing.assert_allclose(ml, 1 / (1 + np.exp(-logits.numpy().mean(axis=1))), atol=1e-6)


def test_bad_config_fails_clearly() -> None:
    with pytest.raises(ValueError, match="predict.aggregate"):
        PredictConfig(aggregate="median")
    with pytest.raises(ValueError, match="tta_crops"):
        PredictConfig(tta_crops=[1.5])


def _stage_project(root: Path, monkeypatch, model, with_val: bool = True) -> None:
    _features(root / "data" / "features")
    if not with_val:
        idx = pd.read_csv(root / "data" / "features" / "index.csv")
        idx.loc[idx["subset"] == "val", "target"] = np.nan
        idx.to_csv(root / "data" / "features" / "index.csv", index=False)
    config = {"decode": {"frames": K}, "faces": {"size": S}, "audio": {"n_mels": M, "frames": T},
              "model": asdict(SMALL), "predict": asdict(BASE)}
    save_checkpoint(root / "models" / "final.pt", model, model_spec(SMALL, for_checkpoint=True), config)
    params = {"predict": {**asdict(BASE), "tta_hflip": True, "device": "cpu"}}
    (root / "params.yaml").write_text(json.dumps(params))
    monkeypatch.chdir(root)


def test_stage_writes_predictions_and_holdout(tmp_path: Path, monkeypatch, model, capsys) -> None:
    from stages.predict import main

    _stage_project(tmp_path, monkeypatch, model)
    main()
    pred = pd.read_csv(tmp_path / "data" / "predictions.csv")
    assert list(pred.columns) == ["video_name", "score", "subset", "target", "in_template", "fallback"]
    assert sorted(pred["video_name"]) == ["v4.mp4", "v5.mp4", "v6.mp4", "v7.mp4", "v8.mp4"]
    assert pred["score"].between(0, 1).all()
    holdout = json.loads((tmp_path / "metrics" / "holdout.json").read_text())
    assert holdout["n"] == 3 and 0 <= holdout["roc_auc"] <= 1 and holdout["n_fallback"] == 0
    assert "predict: 5 videos" in capsys.readouterr().out


def test_stage_holdout_empty_without_labels(tmp_path: Path, monkeypatch, model) -> None:
    from stages.predict import main

    _stage_project(tmp_path, monkeypatch, model, with_val=False)
    main()
    assert json.loads((tmp_path / "metrics" / "holdout.json").read_text()) == {}
    pred = pd.read_csv(tmp_path / "data" / "predictions.csv")
    assert sorted(pred["video_name"]) == ["v4.mp4", "v5.mp4", "v7.mp4", "v8.mp4"]  # v6: val, unlabelled, not in template
