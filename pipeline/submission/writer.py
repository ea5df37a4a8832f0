"""Turn `data/predictions.csv` into the submission file: the template's header and row order,
one finite score in [0, 1] per template row, written with fixed precision.

The writer refuses (clear error, no file) rather than guessing when a template video has no
prediction or a score is not a number: a silently filled row would score as noise on Kaggle.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.layout import read_template


@dataclass(frozen=True)
class WriteConfig:
    """`write:` section of params.yaml."""

    filename: str = "submission.csv"  # written under submissions/
    precision: int = 6  # decimals of every score


class SubmissionError(ValueError):
    """The predictions cannot become a valid submission; the message says why."""


def format_score(score: float, precision: int) -> str:
    """Fixed-precision text of one probability (e.g. 0.123400 for precision 6)."""
    return f"{float(score):.{int(precision)}f}"


def build_submission(template: pd.DataFrame, predictions: pd.DataFrame, precision: int) -> pd.DataFrame:
    """Template rows (header and order kept) with the score column filled from `predictions`.

    `template` is `read_template`'s frame (first column video names, second the score column);
    `predictions` needs `video_name` and `score`. Extra template columns are kept verbatim.
    """
    if precision < 1:
        raise SubmissionError(f"write.precision must be >= 1, got {precision}")
    if "video_name" not in predictions.columns or "score" not in predictions.columns:
        raise SubmissionError(f"predictions need columns video_name, score; got {list(predictions.columns)}")
    dup = predictions["video_name"][predictions["video_name"].duplicated()]
    if len(dup):
        raise SubmissionError(f"predictions list {dup.iloc[0]!r} twice")
    scores = dict(zip(predictions["video_name"].astype(str), pd.to_numeric(predictions["score"], errors="coerce")))
    name_col, score_col = template.columns[0], template.columns[1]
    missing = [name for name in template[name_col] if name not in scores]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise SubmissionError(f"{len(missing)} template video(s) have no prediction: {shown}")
    out = template.copy()
    texts = []
    for name in template[name_col]:
        value = float(scores[name])
        if not math.isfinite(value):
            raise SubmissionError(f"prediction for {name!r} is not a finite number: {value}")
        if value < -1e-6 or value > 1 + 1e-6:
            raise SubmissionError(f"prediction for {name!r} is outside [0, 1]: {value}")
        texts.append(format_score(min(max(value, 0.0), 1.0), precision))
    out[score_col] = texts
    return out


def write_submission(
    template_path: str | os.PathLike,
    predictions: pd.DataFrame | str | os.PathLike,
    dest: str | os.PathLike,
    precision: int = 6,
) -> Path:
    """Build the submission and write it atomically; validates the written bytes before
    they replace `dest`, so an invalid file never lands at the destination."""
    from pipeline.submission.validator import validate_submission

    template = read_template(template_path)
    if not isinstance(predictions, pd.DataFrame):
        predictions = pd.read_csv(predictions, dtype={"video_name": str}, keep_default_na=False, na_values=[""])
    frame = build_submission(template, predictions, precision)
    dest = Path(dest)
    with atomic_path(dest, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")
        report = validate_submission(tmp, template_path)
        if not report.ok:
            raise SubmissionError("refusing to write an invalid submission:\n" + report.format())
    return dest
