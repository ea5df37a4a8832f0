"""Stage `train`: features + folds -> per-fold models, OOF predictions/metrics/plots, models/final.pt.

Runs the same on one CPU, one GPU or `torchrun --nproc_per_node N -m stages.train`.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from pipeline.config import load_params
from pipeline.training.cv import TrainPaths, run_training
from pipeline.training.distributed import cleanup, init_distributed


def main(params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """Train every fold and the final model; rank 0 prints one summary line."""
    params = load_params(params_path)
    train = params.get("train") or {}
    env = init_distributed(train.get("device", "auto"), int(train.get("threads", 0) or 0))
    start = time.perf_counter()
    try:
        summary = run_training(params, env, TrainPaths())
    finally:
        cleanup(env)
    if env.is_main:
        fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
        folds = " ".join(fmt(v["roc_auc"]) for v in summary["folds"].values())
        print(
            f"train: OOF AUC {fmt(summary.get('roc_auc'))} (TPR@FPR1e-2 {fmt(summary.get('tpr_at_fpr_1e-2'))}), "
            f"folds [{folds}], "
            f"final={summary['final']} ({summary['final_epochs']} epochs), "
            f"{env.world_size} rank(s) on {env.device.type}, {time.perf_counter() - start:.0f}s -> models/final.pt"
        )
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:2])
