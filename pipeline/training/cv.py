"""The train stage: K-fold CV -> out-of-fold predictions, metrics and plots -> ONE final model.

Run state lives in `data/train_state/<digest>/` where the digest covers the params and the
input files, so a rerun after a kill skips finished folds and resumes the running one, while
any change of params or data starts clean (older state folders are removed).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import timm
import torch

from pipeline import atomic
from pipeline.config import section, to_dict
from pipeline.data import Features, open_features
from pipeline.metrics import binary_metrics, plot_roc, plot_score_hist, pr_curve_table, roc_curve_table
from pipeline.models import ModelConfig, model_spec, save_checkpoint
from pipeline.models.registry import create_model
from pipeline.training.config import AugmentConfig, TrainConfig
from pipeline.training.distributed import DistEnv, barrier
from pipeline.training.loop import FitResult, FitSpec, fit

CHECKPOINT_SECTIONS = ("decode", "faces", "audio")  # extraction config inference must reproduce


@dataclass(frozen=True)
class TrainPaths:
    features: Path = Path("data/features")
    folds: Path = Path("data/folds.csv")
    models: Path = Path("models")
    oof: Path = Path("data/oof.csv")
    metrics: Path = Path("metrics/cv.json")
    plots: Path = Path("plots")
    state: Path = Path("data/train_state")


def load_train_rows(features: Features, folds_csv: Path) -> pd.DataFrame:
    """folds.csv joined to the feature index: `video_name, fold, target, row` (order of folds.csv)."""
    if not folds_csv.is_file():
        raise FileNotFoundError(f"{folds_csv} not found; run the split stage first")
    folds = pd.read_csv(folds_csv, dtype={"video_name": str})
    if folds.empty:
        raise ValueError(f"{folds_csv} lists no videos")
    rows = features.rows_for(folds["video_name"].tolist())
    targets = features.index.set_index("video_name").loc[folds["video_name"], "target"].to_numpy(dtype=float)
    if np.isnan(targets).any():
        bad = folds["video_name"][np.isnan(targets)].iloc[0]
        raise ValueError(f"train video {bad} has no target in the feature index")
    return pd.DataFrame({"video_name": folds["video_name"], "fold": folds["fold"].astype(int), "target": targets, "row": rows})


# train keys that change no fit: switching them reuses the finished folds
NOT_IN_DIGEST = ("final", "threshold", "num_workers", "threads")


def state_digest(params: Mapping[str, Any], paths: TrainPaths) -> str:
    """Hash of everything a finished fold depends on: train params and input file contents."""
    files = [paths.folds, paths.features / "index.csv", paths.features / "faces.npy", paths.features / "mels.npy"]
    teacher = ((params.get("methods") or {}).get("distill") or {}).get("teacher")
    if teacher and Path(teacher).is_file():
        files.append(Path(teacher))  # a retrained teacher must retrain the student
    return atomic.params_digest({
        "params": {
            "model": params.get("model"), "augment": params.get("augment"), "methods": params.get("methods"),
            "train": {k: v for k, v in (params.get("train") or {}).items() if k not in NOT_IN_DIGEST},
        },
        "files": {str(p): atomic.file_digest(p) for p in files},
    })


def refit_epochs(results: list[FitResult]) -> int:
    """Median of the folds' best epochs (at least 1): how long the all-data refit trains."""
    return max(1, int(round(float(np.median([r.best_epoch for r in results])))))


def run_training(
    params: Mapping[str, Any], env: DistEnv, paths: TrainPaths = TrainPaths(), stop_after: int | None = None
) -> dict[str, Any]:
    """Every fold, OOF metrics/plots and `models/final.pt`; returns the cv.json dict."""
    model_cfg = section(params, "model", ModelConfig)
    aug_cfg = section(params, "augment", AugmentConfig)
    cfg = section(params, "train", TrainConfig)
    features = open_features(paths.features)
    table = load_train_rows(features, paths.folds)
    digest = state_digest(params, paths)
    state_dir = paths.state / digest
    if env.is_main:
        if paths.state.is_dir():
            for old in paths.state.iterdir():
                if old.is_dir() and old.name != digest:
                    shutil.rmtree(old)
        state_dir.mkdir(parents=True, exist_ok=True)
    barrier(env)

    results: list[FitResult] = []
    fold_ids = sorted(table["fold"].unique())
    for k in fold_ids:
        tr, va = table[table["fold"] != k], table[table["fold"] == k]
        spec = FitSpec(
            tag=f"fold{k}", train_rows=tr["row"].tolist(), train_targets=tr["target"].tolist(),
            val_rows=va["row"].tolist(), val_targets=va["target"].tolist(), epochs=cfg.epochs,
            seed=cfg.seed + 1000 * (int(k) + 1),
        )
        results.append(fit(features, spec, model_cfg, aug_cfg, cfg, env, state_dir, stop_after, params))

    oof = pd.concat(
        [
            pd.DataFrame({"video_name": va["video_name"].to_numpy(), "fold": int(k), "target": va["target"].astype(int).to_numpy(),
                          "score": np.asarray(r.val_scores, dtype=float)})
            for k, r in zip(fold_ids, results)
            for va in [table[table["fold"] == k]]
        ],
        ignore_index=True,
    )
    summary = binary_metrics(oof["target"], oof["score"], cfg.threshold)
    summary["folds"] = {
        f"fold{k}": {"roc_auc": r.best_auc, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run, "n_val": int((table["fold"] == k).sum())}
        for k, r in zip(fold_ids, results)
    }
    aucs = [r.best_auc for r in results if r.best_auc is not None]
    summary["fold_auc_mean"] = float(np.mean(aucs)) if aucs else None
    summary["fold_auc_std"] = float(np.std(aucs)) if aucs else None
    summary["final"] = cfg.final

    if cfg.final == "refit":
        n_epochs = refit_epochs(results)
        spec = FitSpec(tag="refit", train_rows=table["row"].tolist(), train_targets=table["target"].tolist(),
                       epochs=n_epochs, seed=cfg.seed)
        fit(features, spec, model_cfg, aug_cfg, cfg, env, state_dir, stop_after, params)
        final_src, final_meta = state_dir / "refit_best.pt", {"source": "refit", "epochs": n_epochs}
    else:
        best_i = int(np.argmax([-1.0 if r.best_auc is None else r.best_auc for r in results]))
        final_src = state_dir / f"fold{fold_ids[best_i]}_best.pt"
        final_meta = {"source": f"fold{fold_ids[best_i]}", "epochs": results[best_i].best_epoch}
    summary["final_epochs"] = final_meta["epochs"]

    if env.is_main:
        _write_outputs(params, model_cfg, cfg, features, paths, state_dir, fold_ids, results, oof, summary,
                       final_src, final_meta, digest)
    barrier(env)
    return summary


def _checkpoint_config(params: Mapping[str, Any], model_cfg: ModelConfig) -> dict[str, Any]:
    config = {name: params.get(name) or {} for name in CHECKPOINT_SECTIONS}
    config["model"] = to_dict(model_cfg)
    config["predict"] = params.get("predict") or {}
    return config


def _export(src: Path, dest: Path, spec: dict, config: dict, meta: dict) -> None:
    """Weights saved by `fit` -> a checkpoint in the format of docs/ARCHITECTURE.md."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    model = create_model(spec["name"], **spec["kwargs"])
    model.load_state_dict(state["state_dict"], strict=True)
    meta = {**meta, "epoch": state["epoch"], "n_params": int(sum(p.numel() for p in model.parameters()))}
    save_checkpoint(dest, model, spec, config, meta)


def _write_outputs(
    params: Mapping[str, Any], model_cfg: ModelConfig, cfg: TrainConfig, features: Features, paths: TrainPaths,
    state_dir: Path, fold_ids: list, results: list[FitResult], oof: pd.DataFrame, summary: dict,
    final_src: Path, final_meta: dict, digest: str,
) -> None:
    spec = model_spec(model_cfg, for_checkpoint=True)
    config = _checkpoint_config(params, model_cfg)
    _, k, s, _, _ = features.faces.shape
    base_meta = {
        "input": {"frames": int(k), "size": int(s), "n_mels": int(features.mels.shape[1]), "mel_frames": int(features.mels.shape[2])},
        "threshold": cfg.threshold, "cv_roc_auc": summary.get("roc_auc"), "state_digest": digest,
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
    }
    for k_, r in zip(fold_ids, results):
        _export(state_dir / f"fold{k_}_best.pt", paths.models / f"fold{k_}.pt", spec, config,
                {**base_meta, "source": f"fold{k_}", "fold_roc_auc": r.best_auc})
    _export(final_src, paths.models / "final.pt", spec, config, {**base_meta, **final_meta})
    atomic.write_csv(paths.oof, oof)
    atomic.write_json(paths.metrics, summary)
    atomic.write_csv(paths.plots / "oof_roc.csv", roc_curve_table(oof["target"], oof["score"]))
    atomic.write_csv(paths.plots / "oof_pr.csv", pr_curve_table(oof["target"], oof["score"]))
    curves = {f"fold {k_}": (g["target"], g["score"]) for k_, g in oof.groupby("fold")}
    curves["all (OOF)"] = (oof["target"], oof["score"])
    plot_roc(curves, paths.plots / "oof_roc.png")
    plot_score_hist(oof["target"], oof["score"], paths.plots / "score_hist.png")
