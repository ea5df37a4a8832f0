"""Stage `write`: predictions -> submissions/<write.filename> (template header and order,
fixed precision), validated before it replaces the old file. Refuses when the budget stage
recorded a rule violation."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.budget import assert_budget_ok
from pipeline.config import load_params, section
from pipeline.submission.writer import WriteConfig, write_submission

PREDICTIONS = Path("data/predictions.csv")
TEMPLATE = Path("data/template.csv")
BUDGET = Path("metrics/budget.json")


def main() -> None:
    cfg = section(load_params(), "write", WriteConfig)
    assert_budget_ok(BUDGET)
    dest = Path("submissions") / cfg.filename
    predictions = pd.read_csv(PREDICTIONS, dtype={"video_name": str}, keep_default_na=False, na_values=[""])
    write_submission(TEMPLATE, predictions, dest, cfg.precision)
    n_rows = sum(1 for _ in open(dest, encoding="utf-8")) - 1
    n_fallback = int(predictions["fallback"].astype(str).str.lower().eq("true").sum()) if "fallback" in predictions else 0
    print(f"write: {dest} {n_rows} rows, precision {cfg.precision}, {n_fallback} fallback score(s) in predictions; valid")


if __name__ == "__main__":
    main()
