"""Compare the anti-spoofing switches (issue 5) against the baseline with `dvc exp run -S ...`.

Run from the project root of a committed checkout (DVC experiments need a git commit), after
`dvc repro` has produced the features, so each experiment only reruns train and later stages:

    python benchmarks/compare_methods.py            # baseline + every switch
    python benchmarks/compare_methods.py --quick    # baseline + Fourier (2 variants)
    python benchmarks/compare_methods.py --set train.epochs=3 --variants triplet,ldc
    python benchmarks/compare_methods.py --seeds 0,1     # every variant with two training seeds

Every variant sets ALL switches explicitly (so none leaks into the next one) and params.yaml
is restored to its original text after each run and on exit. The distillation variant uses
the baseline's `models/final.pt` (copied to reports/compare_methods/teacher.pt) as teacher.
Out-of-fold ROC AUC, TPR@FPR=1e-2 and EER come from `metrics/cv.json`; train time is parsed
from the train stage's summary line, wall time is the whole `dvc exp run`. A failing variant
is reported in the table and the others still run. The table is printed and written to
`benchmarks/compare_methods.md`; the workspace keeps the outputs of the last variant.

On a 40-video sample the OOF AUC moves by up to ~0.1 between training seeds, so a single run
per variant cannot separate most switches from the baseline: `--seeds` runs each variant once
per `train.seed` and the table gives the mean and every seed's value.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline import atomic  # noqa: E402

PARAMS = Path("params.yaml")
CV_JSON = Path("metrics/cv.json")
FINAL = Path("models/final.pt")
TEACHER = Path("reports/compare_methods/teacher.pt")  # git-ignored, not a DVC output
REPORT = Path("benchmarks/compare_methods.md")

# Every switch at its "off" value; each variant overrides some of these.
OFF: dict[str, str] = {
    "methods.fourier.enabled": "false",
    "methods.fourier.mode": "mse",
    "methods.distill.enabled": "false",
    "methods.distill.teacher": "null",
    "methods.triplet.enabled": "false",
    "model.ldc": "none",
}


@dataclass
class Variant:
    name: str
    overrides: dict[str, str] = field(default_factory=dict)
    note: str = ""


VARIANTS: list[Variant] = [
    Variant("baseline"),
    Variant("fourier_mse", {"methods.fourier.enabled": "true"}, "spectrum regression aux head"),
    Variant("fourier_ce", {"methods.fourier.enabled": "true", "methods.fourier.mode": "ce"},
            "frequency-branch classifier"),
    Variant("distill", {"methods.distill.enabled": "true", "methods.distill.teacher": str(TEACHER)},
            "teacher = baseline final.pt"),
    Variant("triplet", {"methods.triplet.enabled": "true"}, "batch-hard triplet on embedding"),
    Variant("cdc", {"model.ldc": "cdc"}, "central-difference convs in face backbone"),
    Variant("ldc", {"model.ldc": "ldc"}, "learnable descriptive convs in face backbone"),
    Variant("minifasnet_v2", {"model.face_backbone": "minifasnet_v2"}, "MiniFASNetV2 face branch"),
]
QUICK = ("baseline", "fourier_mse")


@dataclass
class Result:
    variant: Variant
    seed: int | None = None
    status: str = "not run"
    roc_auc: float | None = None
    tpr_1e2: float | None = None
    eer: float | None = None
    train_s: float | None = None
    wall_s: float | None = None


def overrides_for(variant: Variant, extra: dict[str, str]) -> list[str]:
    """Hydra `++key=value` overrides (add-or-replace) for `dvc exp run -S`."""
    values = {**OFF, **extra, **variant.overrides}
    return [f"++{k}={v}" for k, v in values.items()]


def exp_command(variant: Variant, extra: dict[str, str], stamp: str) -> list[str]:
    seed = extra.get("train.seed")
    suffix = f"-s{seed}" if seed is not None else ""
    cmd = ["dvc", "exp", "run", "-n", f"cmp-{variant.name}{suffix}-{stamp}"]
    for ov in overrides_for(variant, extra):
        cmd += ["-S", ov]
    return cmd


TRAIN_LINE = re.compile(r"^train: .*?(\d+(?:\.\d+)?)s -> models/final\.pt", re.MULTILINE)


def parse_train_seconds(log: str) -> float | None:
    """Seconds from the train stage's summary line; None when train did not run."""
    found = TRAIN_LINE.findall(log)
    return float(found[-1]) if found else None


def read_cv(path: Path = CV_JSON) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def run_variant(variant: Variant, extra: dict[str, str], stamp: str, original_params: str,
                timeout: float | None) -> Result:
    """One `dvc exp run`; params.yaml is restored afterwards whatever happens."""
    seed = extra.get("train.seed")
    res = Result(variant, seed=None if seed is None else int(seed))
    cmd = exp_command(variant, extra, stamp)
    print(f"\n=== {variant.name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        res.status, res.wall_s = f"timeout after {timeout:.0f}s", time.perf_counter() - start
        return res
    finally:
        atomic.write_text(PARAMS, original_params)
    res.wall_s = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    sys.stdout.write(log[-3000:])
    if proc.returncode != 0:
        last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["no output"]
        res.status = f"failed (rc {proc.returncode}): {last[0][:120]}"
        return res
    res.train_s = parse_train_seconds(log)
    if res.train_s is None and variant.name != "baseline":
        res.status = "ok, but train stage was not rerun (is this switch a train dependency in dvc.yaml?)"
    else:
        res.status = "ok"
    cv = read_cv()
    res.roc_auc, res.tpr_1e2, res.eer = cv.get("roc_auc"), cv.get("tpr_at_fpr_1e-2"), cv.get("eer")
    return res


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def markdown_table(results: list[Result], extra: dict[str, str]) -> str:
    """The comparison as a Markdown table (plus the shared overrides); one row per variant,
    metrics averaged over its seeds, with each seed's OOF AUC listed."""
    seeds = sorted({r.seed for r in results if r.seed is not None})
    lines = [
        "# Anti-spoofing switches vs baseline (out-of-fold, `metrics/cv.json`)",
        "",
        f"Shared overrides: {', '.join(f'`{k}={v}`' for k, v in extra.items()) or 'none'}."
        + (f" Training seeds: {', '.join(map(str, seeds))} (metrics are means over them)." if seeds else ""),
        "",
        "| variant | switch | OOF ROC AUC | AUC per seed | TPR@FPR=1e-2 | EER | train s | wall s | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.variant.name, []).append(r)
    for name, rs in groups.items():
        variant = rs[0].variant
        switch = ", ".join(f"`{k}={v}`" for k, v in variant.overrides.items()) or "(all off)"
        per_seed = " / ".join(_fmt(r.roc_auc) for r in rs)
        statuses = sorted({r.status for r in rs})
        lines.append(
            f"| {name} | {switch} | {_fmt(_mean([r.roc_auc for r in rs]))} | {per_seed} | "
            f"{_fmt(_mean([r.tpr_1e2 for r in rs]))} | {_fmt(_mean([r.eer for r in rs]))} | "
            f"{_fmt(_mean([r.train_s for r in rs]), 0)} | {_fmt(_mean([r.wall_s for r in rs]), 0)} | "
            f"{'; '.join(statuses)} |"
        )
    return "\n".join(lines) + "\n"


def select(names: str | None, quick: bool) -> list[Variant]:
    """Variants to run, in table order; distill needs the baseline, so it brings it along."""
    by_name = {v.name: v for v in VARIANTS}
    wanted = list(QUICK) if quick else (names.split(",") if names else list(by_name))
    wanted = [w.strip() for w in wanted if w.strip()]
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {list(by_name)}")
    if "distill" in wanted and "baseline" not in wanted:
        wanted.insert(0, "baseline")
    return [v for v in VARIANTS if v.name in wanted]


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.lstrip("+")] = value
    return out


def check_repo() -> None:
    """Fail early with a clear message instead of deep inside dvc."""
    if not Path("dvc.yaml").is_file() or not PARAMS.is_file():
        raise SystemExit("run from the project root (dvc.yaml and params.yaml not found here)")
    if shutil.which("dvc") is None:
        raise SystemExit("dvc is not on PATH; activate the project's environment")
    head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        raise SystemExit("dvc exp run needs a git commit: commit the project first")
    if not Path("data/features").is_dir():
        print("note: data/features missing; the first experiment will also run sample/decode/extract",
              flush=True)


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--variants", help="comma-separated subset of: " + ",".join(v.name for v in VARIANTS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra param override for every variant, e.g. train.epochs=3 (repeatable)")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated train.seed values; each variant runs once per seed (default: params.yaml's)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per variant (default: none)")
    ap.add_argument("--dry-run", action="store_true", help="print the dvc commands and exit")
    ap.add_argument("--out", type=Path, default=REPORT)
    args = ap.parse_args(argv)

    variants = select(args.variants, args.quick)
    extra = parse_sets(args.set)
    seeds = [s.strip() for s in args.seeds.split(",") if s.strip()] if args.seeds else []
    if any(not s.lstrip("-").isdigit() for s in seeds):
        raise SystemExit(f"--seeds expects integers, got {args.seeds!r}")
    runs = [(v, {**extra, "train.seed": s} if seeds else extra) for s in (seeds or [None]) for v in variants]
    stamp = time.strftime("%Y%m%d%H%M%S")
    if args.dry_run:
        for v, sets in runs:
            print(" ".join(exp_command(v, sets, stamp)))
        return []
    check_repo()
    original = PARAMS.read_text(encoding="utf-8")
    results: list[Result] = []
    try:
        for v, sets in runs:
            if v.name == "distill" and not TEACHER.is_file():
                results.append(Result(v, status="skipped: no baseline models/final.pt to use as teacher"))
                continue
            res = run_variant(v, sets, stamp, original, args.timeout)
            results.append(res)
            if v.name == "baseline" and res.status == "ok" and FINAL.is_file():
                TEACHER.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(FINAL, TEACHER)
    finally:
        atomic.write_text(PARAMS, original)
    table = markdown_table(results, extra)
    atomic.write_text(args.out, table)
    print("\n" + table)
    ok = sum(r.status.startswith("ok") for r in results)
    print(f"compare_methods: {ok}/{len(results)} variants ok -> {args.out} "
          "(workspace holds the last variant's outputs; `dvc exp show` lists them all)")
    return results


if __name__ == "__main__":
    main()
