"""`python -m pipeline.submission validate|submit|status`: check, send and track submissions.

validate FILE [--template T]         exit 0 when valid, 1 with a defect list otherwise
submit [FILE] [--message M] [--dry-run]
                                     validates, sends through the kaggle API, appends to the
                                     ledger; --dry-run prints what would be sent and records
                                     nothing (the ledger lists only what reached Kaggle)
status                               pulls public scores of past submissions into the ledger
Exit codes: 0 ok, 1 invalid file or Kaggle said no / unreachable, 2 usage or missing credentials.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.atomic import file_digest
from pipeline.config import load_params, section
from pipeline.submission import ledger
from pipeline.submission.kaggle_client import (
    KaggleCallError,
    KaggleConfig,
    connect,
    endpoint,
    list_submissions,
    redact,
    submit_file,
)
from pipeline.submission.validator import validate_submission
from pipeline.submission.writer import WriteConfig

DEFAULT_TEMPLATE = Path("data/template.csv")


def git_state(root: Path) -> str:
    """Short commit sha plus '+dirty' when tracked files changed; 'nogit' outside a repo."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=20
        )
        if sha.returncode != 0:
            return "nogit"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=20,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "nogit"


def build_message(root: str | Path = ".") -> str:
    """Submission description: git commit, dvc.lock hash and out-of-fold AUC, e.g.
    `git 1a2b3c4+dirty | dvc.lock 9f8e7d6c | oof_auc 0.9312`."""
    root = Path(root)
    lock = root / "dvc.lock"
    lock_hash = file_digest(lock)[:8] if lock.is_file() else "none"
    auc = "n/a"
    cv = root / "metrics" / "cv.json"
    if cv.is_file():
        try:
            value = json.loads(cv.read_text(encoding="utf-8")).get("roc_auc")
            if isinstance(value, (int, float)):
                auc = f"{value:.4f}"
        except (ValueError, AttributeError):
            pass
    return f"git {git_state(root)} | dvc.lock {lock_hash} | oof_auc {auc}"


def _params(path: str) -> dict[str, Any]:
    return load_params(path) if Path(path).is_file() else {}


def cmd_validate(args: argparse.Namespace) -> int:
    template = args.template or (DEFAULT_TEMPLATE if DEFAULT_TEMPLATE.is_file() else None)
    report = validate_submission(args.file, template)
    print(report.format())
    if template is None:
        print("  [warning] no template given (and no data/template.csv): row set not checked")
    return 0 if report.ok else 1


def cmd_submit(args: argparse.Namespace, sleep: Callable[[float], None] | None = None) -> int:
    params = _params(args.params)
    kcfg = section(params, "kaggle", KaggleConfig)
    if args.competition:
        kcfg = KaggleConfig(**{**kcfg.__dict__, "competition": args.competition})
    wcfg = section(params, "write", WriteConfig)
    path = Path(args.file or Path("submissions") / wcfg.filename)
    template = args.template or (DEFAULT_TEMPLATE if DEFAULT_TEMPLATE.is_file() else None)
    report = validate_submission(path, template)
    if not report.ok:
        print(report.format())
        print("not submitted: fix the file first")
        return 1
    message = args.message or build_message(".")
    digest = file_digest(path)
    summary = (
        f"competition={kcfg.competition} file={path} rows={report.n_rows} hash={digest} "
        f"endpoint={endpoint()} message={message!r}"
    )
    if args.dry_run:
        print(f"dry run, nothing sent or recorded: {summary}")
        return 0
    ledger_path = Path(args.ledger or kcfg.ledger)
    row = {"competition": kcfg.competition, "file": str(path), "file_hash": digest, "message": redact(message)}
    try:
        api = connect()
    except KaggleCallError as exc:
        print(f"not submitted: {exc}", file=sys.stderr)
        if exc.outcome == "auth":
            return 2
        ledger.append_row(ledger_path, {**row, "outcome": exc.outcome, "error": str(exc)})
        return 1
    retry = {"sleep": sleep} if sleep is not None else {}
    try:
        ref, attempts = submit_file(api, path, message, kcfg, **retry)
    except KaggleCallError as exc:
        ledger.append_row(ledger_path, {**row, "outcome": exc.outcome, "error": str(exc)})
        print(f"submission {exc.outcome}: {exc} (recorded in {ledger_path})", file=sys.stderr)
        return 1
    ledger.append_row(ledger_path, {**row, "outcome": "submitted", "ref": ref or ""})
    print(f"submitted {path} to {kcfg.competition}: ref {ref}, {attempts} attempt(s), recorded in {ledger_path}")
    return 0


def cmd_status(args: argparse.Namespace, sleep: Callable[[float], None] | None = None) -> int:
    params = _params(args.params)
    kcfg = section(params, "kaggle", KaggleConfig)
    if args.competition:
        kcfg = KaggleConfig(**{**kcfg.__dict__, "competition": args.competition})
    ledger_path = Path(args.ledger or kcfg.ledger)
    retry = {"sleep": sleep} if sleep is not None else {}
    try:
        api = connect()
        subs = list_submissions(api, kcfg, **retry)
    except KaggleCallError as exc:
        print(f"status not updated: {exc}", file=sys.stderr)
        return 2 if exc.outcome == "auth" else 1
    updated = ledger.update_scores(ledger_path, subs)
    frame = ledger.read_ledger(ledger_path)
    for sub in subs[:10]:
        print(f"  ref {sub['ref']}  {sub['status']}  public={sub['public_score'] or '-'}  {sub['description'] or ''}")
    print(f"{len(subs)} submission(s) on Kaggle for {kcfg.competition}; {updated} ledger row(s) updated "
          f"({len(frame)} in {ledger_path})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.submission", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (write:, kaggle: sections)")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a CSV against the template")
    v.add_argument("file")
    v.add_argument("--template", help="template CSV (default data/template.csv when present)")
    s = sub.add_parser("submit", help="validate, then submit through the kaggle API")
    s.add_argument("file", nargs="?", help="default submissions/<write.filename>")
    s.add_argument("--message", "-m", help="default: git sha, dvc.lock hash, OOF AUC")
    s.add_argument("--dry-run", action="store_true", help="print what would be sent; record nothing")
    s.add_argument("--template")
    s.add_argument("--competition", help="override kaggle.competition")
    s.add_argument("--ledger", help="override kaggle.ledger")
    st = sub.add_parser("status", help="pull public scores into the ledger")
    st.add_argument("--competition")
    st.add_argument("--ledger")
    return parser


def main(argv: Sequence[str] | None = None, sleep: Callable[[float], None] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "submit":
        return cmd_submit(args, sleep)
    return cmd_status(args, sleep)
