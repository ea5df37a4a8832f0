"""End to end: the real `dvc repro` on a tiny generated dataset in a temporary project.

Checks the submission (every template row, same order, header kept, scores in [0, 1]),
the out-of-fold AUC, and DVC's caching contract (no-op rerun; a write param reruns only
write; a train param never reruns decode/extract).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow

# Small enough for CI, big enough that a working pipeline beats chance clearly.
TINY = {
    "sample": {"n_train": 32, "n_val": 12},
}


def _dvc(project: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{out[-6000:]}"
    return out


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _set_params(project: Path, updates: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in updates.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    proj = tmp_path_factory.mktemp("proj")
    for name in ("pipeline", "stages"):
        shutil.copytree(PROJECT / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(PROJECT / name, proj / name)
    _set_params(proj, TINY)
    _dvc(proj, "init", "--no-scm", "-q")
    _dvc(proj, "config", "core.analytics", "false")
    first = _dvc(proj, "repro")
    (proj / "first_repro.log").write_text(first)
    return proj


def test_submission_keeps_template_rows_order_and_header(project):
    template = pd.read_csv(project / "data/sample/prediction.txt.csv", dtype=str)
    sub = pd.read_csv(project / "submissions/submission.csv")
    assert list(sub.columns) == list(template.columns)
    assert list(sub.iloc[:, 0]) == list(template.iloc[:, 0])
    scores = sub.iloc[:, 1].to_numpy(dtype=float)
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores.std() > 0, "all scores identical: the model did not look at the input"


def test_out_of_fold_auc_is_clearly_above_chance(project):
    """Every fold's model separates its own 8 validation videos well, and the pooled out-of-fold AUC
    beats chance. The pooled figure is only asserted above chance: with 8-video folds it mixes four
    models' score scales, and on this sample it moved between 0.69 and 0.84 with nothing but the CPU
    thread count changed, while the fold AUCs stayed at 0.94-1.0 (README, Known gaps)."""
    metrics = json.loads((project / "metrics/cv.json").read_text())
    flat = json.dumps(metrics)
    auc = metrics.get("oof", metrics).get("roc_auc")
    assert auc is not None, flat
    assert auc > 0.6, f"out-of-fold AUC {auc:.3f} on the tiny sample: {flat}"
    fold_aucs = [fold["roc_auc"] for fold in metrics["folds"].values()]
    assert min(fold_aucs) >= 0.75 and np.mean(fold_aucs) >= 0.85, f"fold AUCs {fold_aucs}: {flat}"
    shown = _dvc(project, "metrics", "show")
    assert "roc_auc" in shown


def test_second_repro_is_a_noop(project):
    out = _dvc(project, "repro")
    assert _ran(out) == set(), out


def test_write_param_reruns_only_write(project):
    _set_params(project, {"write": {"precision": 4}})
    out = _dvc(project, "repro")
    assert _ran(out) == {"write"}, out
    sub = pd.read_csv(project / "submissions/submission.csv", dtype=str)
    decimals = sub.iloc[:, 1].str.split(".").str[1].str.len()
    assert (decimals <= 4).all()


def test_train_param_never_reruns_decode_or_extract(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    _set_params(project, {"train": {"seed": int(params["train"].get("seed", 0)) + 1}})
    out = _dvc(project, "repro")
    ran = _ran(out)
    assert "train" in ran, out
    assert not ran & {"sample", "decode", "extract", "split"}, out
