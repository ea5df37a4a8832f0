"""`submissions/ledger.csv`: one row per real submission attempt, so every score on the
leaderboard can be traced back to a file hash, a git commit and a `dvc.lock`.

Outcomes: `submitted` (Kaggle accepted the file), `rejected` (a definite 4xx answer, not
retried), `failed` (transient errors until the retry budget ran out, or Kaggle unreachable).
Dry runs and files that fail validation are not recorded: nothing was sent.
Credentials never reach this file: callers pass messages through `redact` first.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from pipeline.atomic import write_csv

LEDGER_COLUMNS = [
    "time_utc",
    "competition",
    "file",
    "file_hash",
    "message",
    "outcome",
    "error",
    "ref",
    "kaggle_status",
    "public_score",
]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_ledger(path: str | os.PathLike) -> pd.DataFrame:
    """The ledger as text columns (empty frame with the columns when it does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=LEDGER_COLUMNS, dtype=str)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in LEDGER_COLUMNS:
        if col not in frame.columns:
            frame[col] = ""
    return frame[LEDGER_COLUMNS]


def append_row(path: str | os.PathLike, row: Mapping[str, Any]) -> None:
    """Append one attempt (unknown keys refused, missing ones blank); atomic rewrite."""
    unknown = set(row) - set(LEDGER_COLUMNS)
    if unknown:
        raise ValueError(f"unknown ledger column(s): {sorted(unknown)}")
    frame = read_ledger(path)
    record = {col: "" if row.get(col) is None else str(row.get(col)) for col in LEDGER_COLUMNS}
    record["time_utc"] = record["time_utc"] or utc_now()
    frame = pd.concat([frame, pd.DataFrame([record], columns=LEDGER_COLUMNS)], ignore_index=True)
    write_csv(path, frame)


def update_scores(path: str | os.PathLike, submissions: Iterable[Mapping[str, Any]]) -> int:
    """Copy Kaggle's status and public score onto ledger rows; returns rows updated.

    A row matches a Kaggle submission by `ref` when it has one, otherwise by its message
    (Kaggle's description), newest unmatched row first.
    """
    frame = read_ledger(path)
    if frame.empty:
        return 0
    updated = 0
    claimed: set[int] = set()
    for sub in submissions:
        ref = str(sub.get("ref") or "")
        idx = frame.index[(frame["ref"] == ref) & (ref != "")].tolist()
        if not idx:
            desc = str(sub.get("description") or "")
            idx = [
                i
                for i in frame.index[(frame["message"] == desc) & (frame["outcome"] == "submitted")].tolist()[::-1]
                if i not in claimed and frame.at[i, "ref"] in ("", ref)
            ][:1]
        for i in idx:
            claimed.add(i)
            new = {
                "ref": ref or frame.at[i, "ref"],
                "kaggle_status": str(sub.get("status") or ""),
                "public_score": "" if sub.get("public_score") is None else str(sub.get("public_score")),
            }
            if any(frame.at[i, k] != v for k, v in new.items()):
                for k, v in new.items():
                    frame.at[i, k] = v
                updated += 1
    if updated:
        write_csv(path, frame)
    return updated
