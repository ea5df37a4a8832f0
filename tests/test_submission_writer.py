"""Writer + write stage: template header and order kept, fixed precision, no row lost, an
invalid result never replaces the destination."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.budget import BudgetError
from pipeline.layout import read_template
from pipeline.submission.validator import validate_submission
from pipeline.submission.writer import SubmissionError, build_submission, write_submission

TEMPLATE = "video_name,y_pred\nc.mp4,0\na.mp4,0\nb.mp4,0\n"


def _predictions(scores: dict[str, float]) -> pd.DataFrame:
    names = list(scores)
    return pd.DataFrame({
        "video_name": names, "score": [scores[n] for n in names], "subset": "test",
        "target": np.nan, "in_template": True, "fallback": False,
    })


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.csv"
    path.write_text(TEMPLATE)
    return path


def test_header_order_and_precision(tmp_path: Path, template: Path) -> None:
    pred = _predictions({"a.mp4": 0.25, "b.mp4": 1 / 3, "c.mp4": 0.9999999, "extra.mp4": 0.1})
    dest = write_submission(template, pred, tmp_path / "out" / "sub.csv", precision=4)
    lines = dest.read_text().splitlines()
    assert lines == ["video_name,y_pred", "c.mp4,1.0000", "a.mp4,0.2500", "b.mp4,0.3333"]
    assert validate_submission(dest, template).ok


def test_missing_prediction_refused_and_old_file_kept(tmp_path: Path, template: Path) -> None:
    dest = tmp_path / "sub.csv"
    dest.write_text("old\n")
    with pytest.raises(SubmissionError, match="1 template video.*b.mp4"):
        write_submission(template, _predictions({"a.mp4": 0.2, "c.mp4": 0.3}), dest)
    assert dest.read_text() == "old\n"
    assert not list(tmp_path.glob(".sub.csv.*"))  # no temp file left behind


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, -0.2])
def test_bad_scores_refused(template: Path, bad: float) -> None:
    with pytest.raises(SubmissionError, match="b.mp4"):
        build_submission(read_template(template), _predictions({"a.mp4": 0.2, "b.mp4": bad, "c.mp4": 0.3}), 6)


def test_duplicate_predictions_refused(template: Path) -> None:
    pred = pd.concat([_predictions({"a.mp4": 0.2, "b.mp4": 0.1, "c.mp4": 0.3}), _predictions({"a.mp4": 0.5})])
    with pytest.raises(SubmissionError, match="twice"):
        build_submission(read_template(template), pred, 6)


def _stage_project(root: Path, monkeypatch, budget: dict | None) -> None:
    (root / "data").mkdir(parents=True)
    names = [f"vid_{i:03d}.mp4" for i in range(50)]
    rng = np.random.default_rng(1)
    order = rng.permutation(names)
    (root / "data" / "template.csv").write_text("video_name,score\n" + "".join(f"{n},0\n" for n in order))
    pred = _predictions(dict(zip(names, rng.uniform(0, 1, len(names)))))
    pred.loc[3, "fallback"] = True
    pred.loc[3, "score"] = 0.5
    extra = _predictions({"val_only.mp4": 0.7}).assign(subset="val", target=1.0, in_template=False)
    pd.concat([pred, extra]).to_csv(root / "data" / "predictions.csv", index=False)
    if budget is not None:
        (root / "metrics").mkdir()
        (root / "metrics" / "budget.json").write_text(json.dumps(budget))
    (root / "params.yaml").write_text("write:\n  filename: my_sub.csv\n  precision: 5\n")
    monkeypatch.chdir(root)


OK_BUDGET = {"params": 10, "params_numel": 10, "macs": 5, "max_params": 100, "params_ok": True, "pretrained_ok": True,
             "pretrained_problems": []}


def test_write_stage_keeps_every_row(tmp_path: Path, monkeypatch, capsys) -> None:
    from stages.write import main

    _stage_project(tmp_path, monkeypatch, OK_BUDGET)
    main()
    out = pd.read_csv(tmp_path / "submissions" / "my_sub.csv", dtype=str)
    tpl = pd.read_csv(tmp_path / "data" / "template.csv", dtype=str)
    assert list(out.columns) == ["video_name", "score"]
    assert out["video_name"].tolist() == tpl["video_name"].tolist()  # every row, template order
    assert out["score"].str.fullmatch(r"[01]\.\d{5}").all()
    pred = pd.read_csv(tmp_path / "data" / "predictions.csv").set_index("video_name")["score"]
    np.testing.assert_allclose(out["score"].astype(float), pred[out["video_name"]].to_numpy(), atol=5e-6)
    text = capsys.readouterr().out
    assert "50 rows" in text and "1 fallback" in text


def test_write_stage_refuses_broken_budget(tmp_path: Path, monkeypatch) -> None:
    from stages.write import main

    _stage_project(tmp_path, monkeypatch, {**OK_BUDGET, "params": 1000, "params_ok": False})
    with pytest.raises(BudgetError, match="above budget.max_params"):
        main()
    assert not (tmp_path / "submissions" / "my_sub.csv").exists()
