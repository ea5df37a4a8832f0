"""MixUp/CutMix across both modalities, batching, resume-after-kill, and the split+train stages end to end."""
from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import atomic
from pipeline.data import open_features
from pipeline.models import ModelConfig, load_checkpoint
from pipeline.training.augment import AVMix
from pipeline.training.config import AugmentConfig, TrainConfig
from pipeline.training.cv import TrainPaths, refit_epochs, run_training
from pipeline.training.distributed import DistEnv
from pipeline.training.loop import FitResult, FitSpec, TailMergingBatchSampler, TrainingInterrupted, _better, fit
from pipeline.training.synthetic import make_features, manifest_from_index
from tests import stage_runner

TINY_MODEL = {"face_backbone": "test_resnet", "audio_backbone": "test_resnet", "embed_dim": 16, "drop_rate": 0.0}
NO_AUG = {"mix_prob": 0.0, "hflip": 0.0, "color_jitter": 0.0, "blur_prob": 0.0, "jpeg_prob": 0.0,
          "affine_prob": 0.0, "spec_prob": 0.0, "gain_db": 0.0}


def _labelled_batch(b: int = 6, k: int = 3, s: int = 8, m: int = 4, t: int = 20):
    """Sample i is constant i everywhere, so a mixed value tells which partner was used."""
    ids = torch.arange(b, dtype=torch.float32)
    faces = ids.view(b, 1, 1, 1, 1).expand(b, k, 3, s, s).clone()
    mels = ids.view(b, 1, 1, 1).expand(b, 1, m, t).clone()
    target = torch.tensor([0, 1, 1, 0, 1, 0], dtype=torch.float32)[:b]
    return faces, mels, target


def test_mixup_soft_targets_and_one_permutation_for_both_modalities():
    np.random.seed(0)
    torch.manual_seed(0)
    mix = AVMix(AugmentConfig(mixup_alpha=0.4, cutmix_alpha=0.0, mix_prob=1.0))
    faces, mels, target = _labelled_batch()
    f, m, y, info = mix(faces, mels, target)
    lam, perm = info["lam"], info["perm"]
    assert info["kind"] == "mixup" and 0 <= lam <= 1 and sorted(perm.tolist()) == list(range(6))
    expected = lam * torch.arange(6.0) + (1 - lam) * perm.float()
    torch.testing.assert_close(f.mean(dim=(1, 2, 3, 4)), expected)
    torch.testing.assert_close(m.mean(dim=(1, 2, 3)), expected)
    torch.testing.assert_close(y, lam * target + (1 - lam) * target[perm])
    assert torch.equal(faces, _labelled_batch()[0])  # inputs untouched


def test_cutmix_same_box_on_every_frame_and_same_area_ratio_on_the_mel():
    np.random.seed(3)
    torch.manual_seed(3)
    mix = AVMix(AugmentConfig(mixup_alpha=0.0, cutmix_alpha=1.0, mix_prob=1.0, switch_prob=1.0))
    for _ in range(5):
        faces, mels, target = _labelled_batch(s=16, t=40)
        f, m, y, info = mix(faces, mels, target)
        assert info["kind"] == "cutmix"
        lam, perm = info["lam"], info["perm"]
        y0, y1, x0, x1 = info["box"]
        box_frac = (y1 - y0) * (x1 - x0) / 16**2
        assert lam == pytest.approx(1 - box_frac)  # lambda corrected to the real box area
        for i in range(6):
            j = int(perm[i])
            inside = torch.zeros(16, 16, dtype=torch.bool)
            inside[y0:y1, x0:x1] = True
            assert (f[i][..., inside] == j).all() and (f[i][..., ~inside] == i).all()  # all K frames
            partner_cols = (m[i, 0, 0] == j) & (torch.tensor(j) != i)
            if j != i:
                assert int(partner_cols.sum()) == info["span"]
            assert (m[i, 0] == m[i, 0, 0]).all()  # a time span: whole columns
        assert abs(info["span"] / 40 - (1 - lam)) <= 0.5 / 40 + 1e-9
        torch.testing.assert_close(y, lam * target + (1 - lam) * target[perm])


def test_no_mixing_and_label_smoothing():
    mix = AVMix(AugmentConfig(mix_prob=0.0, label_smoothing=0.1))
    faces, mels, target = _labelled_batch()
    f, m, y, info = mix(faces, mels, target)
    assert info["kind"] is None and f is faces and m is mels
    torch.testing.assert_close(y, target * 0.9 + 0.05)


def test_tail_merging_batch_sampler_never_yields_a_batch_of_one():
    batches = list(TailMergingBatchSampler(range(9), 4))
    assert [len(b) for b in batches] == [4, 5] and sorted(sum(batches, [])) == list(range(9))
    assert len(TailMergingBatchSampler(range(9), 4)) == 2
    assert [len(b) for b in TailMergingBatchSampler(range(10), 4)] == [4, 4, 2]
    assert len(TailMergingBatchSampler(range(10), 4)) == 3


def test_refit_epochs_is_the_median_best_epoch():
    mk = lambda e: FitResult("f", e, 1.0, 0.1, e, False)  # noqa: E731
    assert refit_epochs([mk(2), mk(7), mk(3)]) == 3
    assert refit_epochs([mk(1), mk(1)]) == 1


def _fit_setup(tmp_path: Path):
    make_features(tmp_path / "feat", n=16, frames=2, size=16, n_mels=8, mel_frames=16, seed=1)
    feats = open_features(tmp_path / "feat")
    t = feats.index["target"].to_numpy()
    spec = FitSpec(tag="fold0", train_rows=list(range(4, 16)), train_targets=t[4:].tolist(),
                   val_rows=[0, 1, 2, 3], val_targets=t[:4].tolist(), epochs=4, seed=11)
    aug = AugmentConfig(mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.5, gain_db=3, spec_prob=0.5, jpeg_prob=0.3)
    cfg = TrainConfig(epochs=4, batch_size=6, lr=3e-3, patience=10, ema_decay=0.9)
    return feats, spec, ModelConfig(**TINY_MODEL), aug, cfg


def test_resume_after_a_kill_continues_from_the_saved_epoch_and_matches(tmp_path):
    feats, spec, model_cfg, aug, cfg = _fit_setup(tmp_path)
    env = DistEnv()
    straight = fit(feats, spec, model_cfg, aug, cfg, env, tmp_path / "a")
    with pytest.raises(TrainingInterrupted):
        fit(feats, spec, model_cfg, aug, cfg, env, tmp_path / "b", stop_after=2)
    last = torch.load(tmp_path / "b" / "fold0_last.pt", weights_only=False)
    assert last["epoch"] == 2 and not last["finished"] and len(last["history"]) == 2
    assert not (tmp_path / "b" / "fold0_done.json").exists()
    resumed = fit(feats, spec, model_cfg, aug, cfg, env, tmp_path / "b")
    assert resumed.epochs_run == 4 and len(resumed.history) == 4
    for a, b in zip(straight.history, resumed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5, abs=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(straight.val_scores, resumed.val_scores, rtol=1e-5, atol=1e-6)
    wa = torch.load(tmp_path / "a" / "fold0_best.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "b" / "fold0_best.pt", weights_only=True)["state_dict"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)
    # a finished fit is not trained again
    again = fit(feats, spec, model_cfg, aug, cfg, env, tmp_path / "b", stop_after=1)
    assert again.history == resumed.history


def test_monitor_rules_on_a_small_fold():
    # epoch 1: a near-constant model orders the fold perfectly; epoch 5: confident, one pair swapped
    early, late = (1.0, 0.69), (0.96, 0.20)
    assert _better(*late, *early, "loss") and not _better(*early, *late, "loss")
    assert _better(*early, *late, "auc") and not _better(*late, *early, "auc")
    assert _better(1.0, 0.3, 1.0, 0.5, "auc")  # equal AUC: lower loss
    assert _better(None, 0.3, None, 0.5, "auc") and not _better(None, 0.5, None, 0.3, "auc")  # one-class fold


def test_best_epoch_follows_the_monitor_on_a_real_fit(tmp_path):
    feats, spec, model_cfg, aug, cfg = _fit_setup(tmp_path)
    spec = replace(spec, epochs=6)
    cfg = replace(cfg, epochs=6, lr=1e-2)
    by_loss = fit(feats, spec, model_cfg, aug, replace(cfg, monitor="loss"), DistEnv(), tmp_path / "l")
    by_auc = fit(feats, spec, model_cfg, aug, replace(cfg, monitor="auc"), DistEnv(), tmp_path / "a")
    losses = [h["val_loss"] for h in by_loss.history]
    assert [h["val_loss"] for h in by_auc.history] == pytest.approx(losses, rel=1e-5)  # selection never changes training
    assert by_loss.best_epoch == int(np.argmin(losses)) + 1
    assert by_loss.best_loss == pytest.approx(min(losses))
    aucs = [h["val_auc"] for h in by_auc.history]
    tied = [i for i, a in enumerate(aucs) if a == pytest.approx(max(aucs), abs=1e-12)]
    assert by_auc.best_epoch == min(tied, key=lambda i: losses[i]) + 1
    np.testing.assert_allclose(by_loss.val_scores, by_loss.history[by_loss.best_epoch - 1]["val_scores"])


def test_shipped_monitor_is_loss_in_params_yaml_and_the_dataclass():
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["train"]["monitor"]
    assert shipped == TrainConfig().monitor == "loss"


def test_unknown_monitor_is_refused(tmp_path):
    with pytest.raises(ValueError, match="train.monitor"):
        run_training({"train": {"monitor": "accuracy"}}, DistEnv(), TrainPaths(features=tmp_path / "none"))


def write_tiny_project(root: Path, n: int = 24, epochs: int = 3, final: str = "refit", extra: dict | None = None) -> None:
    """Generated features + manifest + a tiny params.yaml in `root` (cwd layout of the stages)."""
    index = make_features(root / "data" / "features", n=n, frames=2, size=16, n_mels=8, mel_frames=16,
                          seed=2, n_val=4)
    atomic.write_csv(root / "data" / "manifest.csv", manifest_from_index(index))
    params = {
        "decode": {"frames": 2}, "faces": {"size": 16}, "audio": {"n_mels": 8, "frames": 16},
        "split": {"n_folds": 3, "seed": 0},
        "model": dict(TINY_MODEL),
        "augment": {"mix_prob": 0.3, "jpeg_prob": 0.0},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 0.003, "patience": 2, "final": final, "threads": 1},
        "predict": {"tta_hflip": False},
    }
    for key, value in (extra or {}).items():
        params.setdefault(key, {}).update(value)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run_stage(root: Path, stage: str, *launcher: str) -> subprocess.CompletedProcess:
    proc = stage_runner.run_stage(root, stage, *launcher, extra_env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_split_and_train_stages_write_every_declared_output(tmp_path):
    write_tiny_project(tmp_path, extra={"methods": {"fourier": {"enabled": True, "map_size": 4}}})
    out = run_stage(tmp_path, "split")
    assert out.stdout.count("\n") == 1 and "split: 20 train videos in 3 folds" in out.stdout
    folds = pd.read_csv(tmp_path / "data" / "folds.csv")
    assert len(folds) == 20 and set(folds["fold"]) == {0, 1, 2}
    out = run_stage(tmp_path, "train")
    assert out.stdout.startswith("train: OOF AUC") and out.stdout.count("\n") == 1
    for rel in ["models/final.pt", "models/fold0.pt", "models/fold1.pt", "models/fold2.pt", "data/oof.csv",
                "metrics/cv.json", "plots/oof_roc.csv", "plots/oof_pr.csv", "plots/oof_roc.png", "plots/score_hist.png"]:
        assert (tmp_path / rel).is_file() and (tmp_path / rel).stat().st_size > 0, rel
    oof = pd.read_csv(tmp_path / "data" / "oof.csv")
    assert list(oof.columns) == ["video_name", "fold", "target", "score"]
    assert sorted(oof["video_name"]) == sorted(folds["video_name"]) and oof["score"].between(0, 1).all()
    cv = json.loads((tmp_path / "metrics" / "cv.json").read_text())
    for key in ("roc_auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-2", "eer", "ap", "log_loss", "accuracy", "folds"):
        assert key in cv
    assert cv["final"] == "refit" and set(cv["folds"]) == {"fold0", "fold1", "fold2"}
    roc = pd.read_csv(tmp_path / "plots" / "oof_roc.csv")
    assert {"fpr", "tpr"} <= set(roc.columns)
    model, ckpt = load_checkpoint(tmp_path / "models" / "final.pt")
    assert set(ckpt["config"]) == {"decode", "faces", "audio", "model", "predict"}
    assert ckpt["config"]["faces"] == {"size": 16} and ckpt["config"]["model"]["embed_dim"] == 16
    assert ckpt["meta"]["source"] == "refit" and ckpt["meta"]["input"] == {"frames": 2, "size": 16, "n_mels": 8, "mel_frames": 16}
    # the Fourier aux head is trained and checkpointed for resume, but not exported
    (digest,) = [p.name for p in (tmp_path / "data" / "train_state").iterdir()]
    last = torch.load(tmp_path / "data" / "train_state" / digest / "fold0_last.pt", weights_only=False)
    assert any(k.startswith("objectives.") for k in last["module"])
    assert not any("objectives" in k for k in ckpt["state_dict"])
    feats = open_features(tmp_path / "data" / "features")
    from pipeline.data import to_model_inputs

    with torch.no_grad():
        scores = torch.sigmoid(model(*to_model_inputs(feats.faces[:4], feats.mels[:4])))
    assert scores.shape == (4,) and torch.isfinite(scores).all()

    # rerun with final=best_fold: every fold is found done (no training), the best one is copied,
    # and state left by other params is removed
    state = tmp_path / "data" / "train_state"
    (digest,) = [p.name for p in state.iterdir()]
    done = {p.name: p.stat().st_mtime_ns for p in (state / digest).iterdir()}
    (state / "0123456789abcdef").mkdir()
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["final"] = "best_fold"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(tmp_path, "train")
    assert [p.name for p in state.iterdir()] == [digest]
    assert {p.name: p.stat().st_mtime_ns for p in (state / digest).iterdir()} == done
    _, ckpt = load_checkpoint(tmp_path / "models" / "final.pt")
    best = max(cv["folds"], key=lambda f: cv["folds"][f]["roc_auc"])
    assert ckpt["meta"]["source"] == best
    assert json.loads((tmp_path / "metrics" / "cv.json").read_text())["final"] == "best_fold"


def test_train_stage_fails_clearly_without_its_inputs(tmp_path, monkeypatch):
    from stages import train as train_stage

    write_tiny_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="run the split stage first"):
        train_stage.main()
    (tmp_path / "data" / "features" / "mels.npy").unlink()
    with pytest.raises(FileNotFoundError, match="run the extract stage first"):
        train_stage.main()
