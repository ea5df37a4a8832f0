"""Metrics against hand-computed values; one-class input; curve tables and plots."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics import binary_metrics, plot_roc, plot_score_hist, pr_curve_table, roc_curve_table

Y = [0, 0, 0, 1, 1, 1]
S = [0.1, 0.2, 0.7, 0.3, 0.8, 0.9]


def test_metrics_match_hand_computed_values():
    m = binary_metrics(Y, S, threshold=0.5)
    # ranking: positives 0.3, 0.8, 0.9 vs negatives 0.1, 0.2, 0.7 -> 8 of 9 pairs ordered
    assert m["roc_auc"] == pytest.approx(8 / 9)
    # ROC passes (0, 2/3) before the first false positive, and (1/3, 2/3) where FPR = FNR
    assert m["tpr_at_fpr_1e-3"] == pytest.approx(2 / 3)
    assert m["tpr_at_fpr_1e-2"] == pytest.approx(2 / 3)
    assert m["eer"] == pytest.approx(1 / 3)
    # precision at each positive in score order: 1/1, 2/2, 3/4
    assert m["ap"] == pytest.approx((1 + 1 + 0.75) / 3)
    # threshold 0.5: TP 2, FP 1, FN 1, TN 2
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 3)
    expected_ll = -np.mean(np.log([0.9, 0.8, 0.3, 0.3, 0.8, 0.9]))
    assert m["log_loss"] == pytest.approx(expected_ll)
    assert (m["n"], m["n_pos"], m["n_neg"]) == (6, 3, 3)
    assert 0 < m["pr_auc"] <= 1 and "note" not in m


def test_threshold_changes_only_threshold_metrics():
    lo, hi = binary_metrics(Y, S, 0.25), binary_metrics(Y, S, 0.75)
    assert lo["roc_auc"] == hi["roc_auc"]
    assert lo["recall"] == 1.0 and hi["recall"] == pytest.approx(2 / 3)
    assert lo["fpr"] == pytest.approx(1 / 3) and hi["fpr"] == 0.0


def test_single_class_gives_none_with_note_not_a_crash():
    m = binary_metrics([1, 1, 1], [0.2, 0.6, 0.9])
    for key in ("roc_auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-2", "eer", "ap", "pr_auc"):
        assert m[key] is None
    assert "one class" in m["note"]
    assert m["accuracy"] == pytest.approx(2 / 3) and m["fpr"] is None
    assert math.isfinite(m["log_loss"])
    assert roc_curve_table([0, 0], [0.1, 0.2]).empty


@pytest.mark.parametrize(
    "y, s, match",
    [([0, 1], [0.1], "scores has"), ([0, 2], [0.1, 0.2], "only 0 and 1"), ([0, 1], [0.1, 1.2], "probabilities"),
     ([0, 1], [0.1, float("nan")], "NaN"), ([], [], "no rows")],
)
def test_bad_input_is_a_clear_error(y, s, match):
    with pytest.raises(ValueError, match=match):
        binary_metrics(y, s)


def test_curve_tables_for_dvc_plots():
    roc = roc_curve_table(Y, S)
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].is_monotonic_increasing
    assert (roc.iloc[0]["fpr"], roc.iloc[-1]["tpr"]) == (0.0, 1.0)
    assert np.isfinite(roc["threshold"]).all() and roc["threshold"].max() <= 1.0
    auc_trapz = float(np.trapezoid(roc["tpr"], roc["fpr"]))
    assert auc_trapz == pytest.approx(8 / 9)
    pr = pr_curve_table(Y, S)
    assert list(pr.columns) == ["recall", "precision", "threshold"]
    assert pr["recall"].iloc[0] == 1.0 and pr["precision"].iloc[-1] == 1.0


def test_plots_are_png_files(tmp_path):
    plot_roc({"fold 0": (Y, S), "fold 1": ([0, 1, 1], [0.2, 0.7, 0.1]), "one class": ([1, 1], [0.3, 0.4])},
             tmp_path / "roc.png")
    plot_score_hist(Y, S, tmp_path / "hist.png")
    for name in ("roc.png", "hist.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
