"""Two gloo ranks on CPU (torchrun) reach the same CV results as one process; only rank 0 writes."""
from __future__ import annotations

import json
import shutil
import sys

import pandas as pd
import pytest

from test_training import NO_AUG, run_stage, write_tiny_project


def test_two_process_ddp_matches_one_process(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "ddp"
    # Same global batches in both runs: 16 train videos per fold, global batch 8 = 2 ranks x 4
    # (DistributedSampler order), no augmentation/mixing/dropout, and GroupNorm backbones
    # (BatchNorm statistics would legitimately differ per rank). DDP's averaged gradients then
    # equal the single-process gradients up to float summation order.
    extra = {
        "augment": dict(NO_AUG),
        "model": {"face_backbone": "test_efficientnet_gn", "audio_backbone": "test_efficientnet_gn"},
        "train": {"epochs": 4, "batch_size": 8, "lr": 0.02, "patience": 3, "threads": 1},
    }
    write_tiny_project(single, n=28, final="best_fold", extra=extra)
    run_stage(single, "split")
    shutil.copytree(single, multi)
    run_stage(single, "train")
    out = run_stage(multi, "train", sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    assert "2 rank(s) on cpu" in out.stdout and out.stdout.count("train: OOF AUC") == 1  # rank 0 prints
    a = json.loads((single / "metrics" / "cv.json").read_text())
    b = json.loads((multi / "metrics" / "cv.json").read_text())
    assert a["roc_auc"] >= 0.9
    assert b["roc_auc"] == pytest.approx(a["roc_auc"], abs=1e-3)
    assert b["log_loss"] == pytest.approx(a["log_loss"], abs=1e-3)
    for fold, res in a["folds"].items():
        assert b["folds"][fold]["best_epoch"] == res["best_epoch"]
        assert b["folds"][fold]["roc_auc"] == pytest.approx(res["roc_auc"], abs=1e-3)
    oa, ob = pd.read_csv(single / "data" / "oof.csv"), pd.read_csv(multi / "data" / "oof.csv")
    assert list(oa["video_name"]) == list(ob["video_name"])  # every row scored once, gathered in order
    assert (ob["score"] - oa["score"]).abs().max() < 2e-3
    assert (multi / "models" / "final.pt").is_file()
