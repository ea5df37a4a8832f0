"""Binary-classification metrics, curves and plots, all computed with scikit-learn.

The competition ranks by ROC AUC and breaks ties by TPR at low FPR, so both come first;
the rest are the figures the face anti-spoofing notes report (EER, AP, log loss, ...).
A fold or hold-out with only one class has no ROC: those entries become None and a `note`
says why, instead of crashing a long run at its very end.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    auc,
    average_precision_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from pipeline import atomic

LOW_FPRS = (1e-3, 1e-2)
EPS = 1e-7


def _as_arrays(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    if y.size == 0:
        raise ValueError("no rows to score")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    if (s < 0).any() or (s > 1).any():
        raise ValueError("scores must be probabilities in [0, 1]")
    return y.astype(int), s


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """Highest TPR reachable while the FPR stays at or below `max_fpr` (the tie-breaker)."""
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """EER: the ROC point where false accepts equal false rejects (mean of the two there)."""
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2.0)


def binary_metrics(y_true: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Every reported metric for scores in [0, 1] (label 1 = deepfake).

    Ranking metrics (roc_auc, tpr_at_fpr_*, eer, ap, pr_auc) need both classes; with one
    class they are None and `note` explains. Threshold metrics use `score >= threshold`.
    """
    y, s = _as_arrays(y_true, scores)
    pred = (s >= threshold).astype(int)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    out: dict[str, Any] = {"n": int(y.size), "n_pos": n_pos, "n_neg": n_neg, "threshold": float(threshold)}
    if n_pos and n_neg:
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        out["roc_auc"] = float(roc_auc_score(y, s))
        for level in LOW_FPRS:
            out[f"tpr_at_fpr_{level:.0e}".replace("e-0", "e-")] = tpr_at_fpr(fpr, tpr, level)
        out["eer"] = equal_error_rate(fpr, tpr)
        out["ap"] = float(average_precision_score(y, s))
        out["pr_auc"] = float(auc(recall, precision))
    else:
        for key in ("roc_auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-2", "eer", "ap", "pr_auc"):
            out[key] = None
        out["note"] = (
            f"only one class present ({n_pos} fake, {n_neg} real): ranking metrics are undefined"
        )
    out["log_loss"] = float(log_loss(y, np.clip(s, EPS, 1 - EPS), labels=[0, 1]))
    out["accuracy"] = float(accuracy_score(y, pred))
    out["precision"] = float(precision_score(y, pred, zero_division=0))
    out["recall"] = float(recall_score(y, pred, zero_division=0))
    out["f1"] = float(f1_score(y, pred, zero_division=0))
    tn, fp, _fn, _tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    out["fpr"] = float(fp / (fp + tn)) if (fp + tn) else None
    return out


def roc_curve_table(y_true: Any, scores: Any) -> pd.DataFrame:
    """ROC points `fpr, tpr, threshold` for a DVC CSV plot (empty with one class)."""
    y, s = _as_arrays(y_true, scores)
    if y.min() == y.max():
        return pd.DataFrame({"fpr": [], "tpr": [], "threshold": []})
    fpr, tpr, thr = roc_curve(y, s)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)})


def pr_curve_table(y_true: Any, scores: Any) -> pd.DataFrame:
    """Precision-recall points `recall, precision, threshold` for a DVC CSV plot."""
    y, s = _as_arrays(y_true, scores)
    if y.min() == y.max():
        return pd.DataFrame({"recall": [], "precision": [], "threshold": []})
    precision, recall, thr = precision_recall_curve(y, s)
    thr = np.append(thr, 1.0)  # sklearn gives one threshold fewer than points
    return pd.DataFrame({"recall": recall, "precision": precision, "threshold": thr})


def plot_roc(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], dest: str | os.PathLike) -> None:
    """One ROC line per entry (`label -> (y_true, scores)`), AUC in the legend, PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, (y_true, scores) in curves.items():
        y, s = _as_arrays(y_true, scores)
        if y.min() == y.max():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.5, label=f"{label} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("out-of-fold ROC")
    ax.legend(loc="lower right", fontsize=8)
    _save_fig(fig, dest)


def plot_score_hist(y_true: Any, scores: Any, dest: str | os.PathLike, bins: int = 20) -> None:
    """Score histograms of real vs fake videos: shows separation and calibration at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, s = _as_arrays(y_true, scores)
    fig, ax = plt.subplots(figsize=(6, 4))
    edges = np.linspace(0, 1, bins + 1)
    ax.hist(s[y == 0], bins=edges, alpha=0.6, label=f"real (n={int((y == 0).sum())})", color="tab:blue")
    ax.hist(s[y == 1], bins=edges, alpha=0.6, label=f"fake (n={int((y == 1).sum())})", color="tab:red")
    ax.set(xlabel="predicted deepfake probability", ylabel="videos")
    ax.set_title("out-of-fold scores")
    ax.legend()
    _save_fig(fig, dest)


def _save_fig(fig: Any, dest: str | os.PathLike) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic.atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
