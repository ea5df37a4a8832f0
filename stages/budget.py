"""Stage `budget`: thop parameter/MAC count of the predicting model and the ImageNet-1K
pretraining rule; writes metrics/budget.json, then fails (exit 1) on any broken rule."""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.atomic import write_json
from pipeline.budget import BudgetConfig, check_checkpoint, violations
from pipeline.config import load_params, section

CHECKPOINT = Path("models/final.pt")
OUT = Path("metrics/budget.json")


def main() -> None:
    params = load_params()
    cfg = section(params, "budget", BudgetConfig)
    report = check_checkpoint(CHECKPOINT, cfg, params.get("model") or {})
    write_json(OUT, report)
    problems = violations(report)
    if problems:
        sys.exit("budget: FAILED: " + "; ".join(problems) + f" (details in {OUT})")
    print(
        f"budget: {report['params']:,} params (thop; limit {cfg.max_params:,}), "
        f"{report['macs'] / 1e9:.3f} GMACs at {report['input_shapes']}, pretrained ok"
    )


if __name__ == "__main__":
    main()
