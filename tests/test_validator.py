"""The validator catches each defect, with line numbers, and the CLI exits non-zero."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.submission.cli import main
from pipeline.submission.validator import validate_submission

TEMPLATE = "video_name,score\na.mp4,0\nb.mp4,0\nc.mp4,0\n"
GOOD = "video_name,score\na.mp4,0.1\nb.mp4,0.2\nc.mp4,0.3\n"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.csv"
    path.write_text(TEMPLATE)
    return path


def _check(tmp_path: Path, template: Path, text: str):
    path = tmp_path / "sub.csv"
    path.write_text(text)
    return validate_submission(path, template)


def test_valid_file(tmp_path: Path, template: Path) -> None:
    report = _check(tmp_path, template, GOOD)
    assert report.ok and report.n_rows == 3 and report.format().startswith("OK")


@pytest.mark.parametrize(
    "text, kind, line, words",
    [
        ("video_name,score\na.mp4,0.1\nb.mp4,0.2\n", "missing", None, "'c.mp4' (template line 4)"),
        (GOOD + "d.mp4,0.4\n", "extra", 5, "'d.mp4' is not in the template"),
        ("video_name,score\na.mp4,0.1\nb.mp4,0.2\nb.mp4,0.2\nc.mp4,0.3\n", "duplicate", 4, "already on line 3"),
        ("video_name,score\na.mp4,0.1\nb.mp4,abc\nc.mp4,0.3\n", "non_numeric", 3, "'abc' is not a number"),
        ("video_name,score\na.mp4,nan\nb.mp4,0.2\nc.mp4,0.3\n", "non_finite", 2, "not finite"),
        ("video_name,score\na.mp4,0.1\nb.mp4,0.2\nc.mp4,inf\n", "non_finite", 4, "not finite"),
        ("video_name,score\na.mp4,0.1\nb.mp4,-0.2\nc.mp4,0.3\n", "out_of_range", 3, "outside [0, 1]"),
        ("video_name,score\na.mp4,0.1\nb.mp4,1.0001\nc.mp4,0.3\n", "out_of_range", 3, "outside [0, 1]"),
        ("video_name,y_pred\na.mp4,0.1\nb.mp4,0.2\nc.mp4,0.3\n", "header", 1, "differs from the template"),
        ("", "empty", None, "file is empty"),
        ("video_name,score\n", "empty", None, "no rows"),
        ("video_name,score\na.mp4,0.1,7\nb.mp4,0.2\nc.mp4,0.3\n", "fields", 2, "expected 2 fields"),
    ],
)
def test_each_defect_is_reported(tmp_path: Path, template: Path, text: str, kind: str, line, words: str) -> None:
    report = _check(tmp_path, template, text)
    assert not report.ok
    hits = [d for d in report.defects if d.kind == kind]
    assert hits, report.format()
    assert any(d.line == line and words in d.detail for d in hits), report.format()
    shown = report.format()
    assert shown.startswith("INVALID") and f"[{kind}]" in shown
    if line is not None:
        assert f"line {line}:" in shown


def test_several_defects_listed_together(tmp_path: Path, template: Path) -> None:
    report = _check(tmp_path, template, "video_name,score\na.mp4,x\na.mp4,2\nz.mp4,0.5\n")
    assert {"non_numeric", "duplicate", "out_of_range", "extra", "missing"} <= report.kinds()
    assert len([d for d in report.defects if d.kind == "missing"]) == 2  # b and c


def test_order_change_is_only_a_warning(tmp_path: Path, template: Path) -> None:
    report = _check(tmp_path, template, "video_name,score\nb.mp4,0.2\na.mp4,0.1\nc.mp4,0.3\n")
    assert report.ok and report.warnings and "order" in report.warnings[0]


def test_missing_file(tmp_path: Path, template: Path) -> None:
    report = validate_submission(tmp_path / "nope.csv", template)
    assert report.kinds() == {"file"}


def test_without_template_checks_values(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("video_name,score\na.mp4,0.5\nb.mp4,9\n")
    report = validate_submission(path)
    assert report.kinds() == {"out_of_range"}


def test_cli_exit_codes_and_report(tmp_path: Path, template: Path, capsys) -> None:
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(GOOD)
    bad.write_text("video_name,score\na.mp4,0.1\nb.mp4,NaN\n")
    assert main(["validate", str(good), "--template", str(template)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["validate", str(bad), "--template", str(template)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "[non_finite] line 3:" in out and "[missing]" in out and "'c.mp4'" in out
