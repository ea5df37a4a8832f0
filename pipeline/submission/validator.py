"""Check any submission CSV against the template before it is sent.

Every defect is listed with its line number (line 1 is the header), so a broken file can be
fixed in one pass: wrong header, empty file, missing / extra / duplicate video names,
non-numeric scores, NaN or infinity, scores outside [0, 1], ragged rows. A different row order
is only a warning: Kaggle matches rows by name, but the write stage keeps the template's order.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.layout import LayoutError, read_template

MAX_LISTED = 20  # defects of one kind listed before "+N more"


@dataclass(frozen=True)
class Defect:
    kind: str  # header | empty | missing | extra | duplicate | non_numeric | non_finite | out_of_range | fields | file | template
    line: int | None  # line in the checked file (1 = header); None when not tied to a line
    detail: str


@dataclass
class ValidationReport:
    path: Path
    n_rows: int = 0
    defects: list[Defect] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.defects

    def kinds(self) -> set[str]:
        return {d.kind for d in self.defects}

    def format(self) -> str:
        """Human report: one line per defect (capped per kind), then warnings and a verdict."""
        lines = []
        by_kind: dict[str, list[Defect]] = {}
        for d in self.defects:
            by_kind.setdefault(d.kind, []).append(d)
        for kind, items in by_kind.items():
            for d in items[:MAX_LISTED]:
                where = f"line {d.line}: " if d.line is not None else ""
                lines.append(f"  [{kind}] {where}{d.detail}")
            if len(items) > MAX_LISTED:
                lines.append(f"  [{kind}] (+{len(items) - MAX_LISTED} more)")
        lines += [f"  [warning] {w}" for w in self.warnings]
        verdict = (
            f"OK: {self.path} ({self.n_rows} rows)"
            if self.ok
            else f"INVALID: {self.path}: {len(self.defects)} defect(s)"
        )
        return "\n".join([verdict] + lines)


def validate_submission(
    path: str | os.PathLike, template: str | os.PathLike | None = None
) -> ValidationReport:
    """Validate `path`; with a template also check header, row set and order against it."""
    path = Path(path)
    report = ValidationReport(path=path)
    if not path.is_file():
        report.defects.append(Defect("file", None, f"file not found: {path}"))
        return report
    expected_header: list[str] | None = None
    expected_names: list[str] | None = None
    if template is not None:
        try:
            tpl = read_template(template)
        except (LayoutError, OSError, ValueError) as exc:
            report.defects.append(Defect("template", None, f"cannot read template {template}: {exc}"))
            return report
        expected_header = [str(c) for c in tpl.columns]
        expected_names = list(tpl.iloc[:, 0])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        report.defects.append(Defect("file", None, f"not UTF-8 text: {exc}"))
        return report
    rows = list(csv.reader(text.splitlines()))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # trailing blank lines
    if not rows:
        report.defects.append(Defect("empty", None, "file is empty (no header, no rows)"))
        return report
    header = [c.strip() for c in rows[0]]
    if expected_header is not None and header != expected_header:
        report.defects.append(
            Defect("header", 1, f"header {','.join(header)!r} differs from the template's {','.join(expected_header)!r}")
        )
    elif expected_header is None and len(header) < 2:
        report.defects.append(Defect("header", 1, f"expected at least 2 columns (video name, score), got {header}"))
    body = rows[1:]
    report.n_rows = len(body)
    if not body:
        report.defects.append(Defect("empty", None, "file has a header but no rows"))
    width = len(expected_header) if expected_header is not None else max(len(header), 2)
    seen: dict[str, int] = {}
    order: list[str] = []
    expected_set = set(expected_names) if expected_names is not None else None
    for i, row in enumerate(body):
        line = i + 2
        if len(row) != width:
            report.defects.append(Defect("fields", line, f"expected {width} fields, got {len(row)}: {row}"))
            if len(row) < 2:
                continue
        name = row[0].strip()
        if not name:
            report.defects.append(Defect("missing", line, "empty video name"))
        elif name in seen:
            report.defects.append(Defect("duplicate", line, f"{name!r} already on line {seen[name]}"))
        else:
            seen[name] = line
            order.append(name)
            if expected_set is not None and name not in expected_set:
                report.defects.append(Defect("extra", line, f"{name!r} is not in the template"))
        _check_score(row[1].strip(), line, report)
    if expected_names is not None:
        for j, name in enumerate(expected_names):
            if name not in seen:
                report.defects.append(Defect("missing", None, f"{name!r} (template line {j + 2}) has no row"))
        common = [n for n in order if n in expected_set]
        reference = [n for n in expected_names if n in seen]
        if common != reference:
            first = next(k for k, (a, b) in enumerate(zip(common, reference)) if a != b)
            report.warnings.append(
                f"row order differs from the template from line {seen[common[first]]} on "
                f"({common[first]!r} where the template has {reference[first]!r})"
            )
    return report


def _check_score(text: str, line: int, report: ValidationReport) -> None:
    try:
        value = float(text)
    except ValueError:
        report.defects.append(Defect("non_numeric", line, f"score {text!r} is not a number"))
        return
    if not math.isfinite(value):
        report.defects.append(Defect("non_finite", line, f"score {text!r} is not finite"))
    elif not 0.0 <= value <= 1.0:
        report.defects.append(Defect("out_of_range", line, f"score {text!r} is outside [0, 1]"))
