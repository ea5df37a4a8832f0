"""Batch-hard triplet loss on the fused video embedding (LDCNet's triplet mining, `seeds/002-*`).

Why: LDCNet constrains the feature extractor so same-class videos cluster and real/fake
separate by a margin, which the notes credit with features that transfer across domains
(here: across generators and recording conditions) better than the classifier loss alone.

For each anchor: hardest positive = farthest same-class sample, hardest negative = closest
other-class sample; loss = mean over valid anchors of relu(d_ap - d_an + margin). Anchors with
no positive or no negative in the batch are left out; a batch with no valid anchor gives 0.

Mixed (MixUp/CutMix) targets: `mixed="dominant"` labels each sample by its dominant class
(target >= 0.5 -> fake); `mixed="skip"` returns 0 for any batch that holds a soft target.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pairwise_distances", "batch_hard_triplet_loss", "hard_labels", "TripletObjective"]


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distance matrix [B, B] with a finite gradient at zero distance (the diagonal)."""
    x = x.float()
    sq = (x * x).sum(dim=1)
    d2 = (sq[:, None] - 2.0 * x @ x.t() + sq[None, :]).clamp_min(0.0)
    zero = d2 <= eps
    return torch.sqrt(torch.where(zero, torch.ones_like(d2), d2)) * (~zero)


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Mean batch-hard triplet loss; 0 (still attached to the graph) when no anchor is valid."""
    dist = pairwise_distances(embeddings)
    labels = labels.reshape(-1)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    if not bool(valid.any()):
        return embeddings.sum() * 0.0
    hardest_pos = torch.where(pos_mask, dist, torch.zeros_like(dist)).amax(dim=1)
    hardest_neg = torch.where(neg_mask, dist, torch.full_like(dist, float("inf"))).amin(dim=1)
    losses = F.relu(hardest_pos - hardest_neg + margin)
    return losses[valid].mean()


def hard_labels(target: torch.Tensor, mixed: str = "dominant") -> torch.Tensor | None:
    """0/1 labels for triplet mining, or None when `mixed="skip"` and the batch has soft targets."""
    target = target.float().reshape(-1)
    soft = (target > 0) & (target < 1)
    if mixed == "skip" and bool(soft.any()):
        return None
    return (target >= 0.5).long()


class TripletObjective(nn.Module):
    """weight * batch-hard triplet loss on `out["embedding"]` [B, D]."""

    name = "triplet"

    def __init__(self, margin: float = 0.3, weight: float = 0.1, mixed: str = "dominant",
                 normalize: bool = True) -> None:
        super().__init__()
        if mixed not in ("dominant", "skip"):
            raise ValueError(f"methods.triplet.mixed must be 'dominant' or 'skip', got {mixed!r}")
        if margin < 0:
            raise ValueError(f"methods.triplet.margin must be >= 0, got {margin}")
        self.margin, self.weight, self.mixed, self.normalize = float(margin), float(weight), mixed, bool(normalize)

    def forward(self, out: dict, batch: dict, epoch: int) -> torch.Tensor:
        emb = out["embedding"]
        labels = hard_labels(batch["target"].to(emb.device), self.mixed)
        if labels is None:
            return emb.sum() * 0.0
        if self.normalize:  # margin then means the same thing whatever the embedding's scale
            emb = F.normalize(emb.float(), dim=1)
        return self.weight * batch_hard_triplet_loss(emb, labels, self.margin)
