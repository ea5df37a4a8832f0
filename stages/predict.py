"""Stage `predict`: models/final.pt + data/features -> data/predictions.csv (every template
or labelled-val row, fallbacks included) and metrics/holdout.json."""
from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_csv, write_json
from pipeline.config import load_params, section
from pipeline.data import open_features
from pipeline.models import load_checkpoint
from pipeline.predict import PredictConfig, checkpoint_mode, holdout_metrics, predict_features, resolve_device, tta_views

CHECKPOINT = Path("models/final.pt")
FEATURES = Path("data/features")
PREDICTIONS = Path("data/predictions.csv")
HOLDOUT = Path("metrics/holdout.json")


def main() -> None:
    cfg = section(load_params(), "predict", PredictConfig)
    model, ckpt = load_checkpoint(CHECKPOINT, device=resolve_device(cfg.device))
    features = open_features(FEATURES)
    predictions = predict_features(model, features, cfg, mode=checkpoint_mode(ckpt))
    write_csv(PREDICTIONS, predictions)
    metrics = holdout_metrics(predictions)
    write_json(HOLDOUT, metrics)
    auc = metrics.get("roc_auc")
    print(
        f"predict: {len(predictions)} videos ({int(predictions['in_template'].sum())} in template, "
        f"{int(predictions['fallback'].sum())} fallback), {len(tta_views(cfg, features.faces.shape[1]))} views, "
        f"aggregate {cfg.aggregate}; holdout AUC {'n/a' if auc is None else f'{auc:.4f}'}"
    )


if __name__ == "__main__":
    main()
