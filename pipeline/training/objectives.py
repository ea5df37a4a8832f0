"""The training loss: BCE on soft targets plus the optional objectives of `pipeline.methods`.

An objective is an `nn.Module` called as `objective(out, batch, epoch) -> scalar Tensor`
(already weighted), built from the `methods:` params section by `pipeline.methods.build_objectives`.
It may own trainable modules (aux heads) or frozen ones (a teacher): `TrainModule` holds the
model and the objectives together, so the optimiser, DDP gradient sync and the resume
checkpoint cover the aux heads, while only `TrainModule.model` is exported.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.methods import apply_objectives
from pipeline.methods import build_objectives as build_method_objectives


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Main loss: BCE-with-logits against the (possibly mixed / smoothed) soft target, in fp32."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


class UnimodalObjective(nn.Module):
    """Each modality's embedding must also predict the label on its own (training-only heads).

    In a fused network the modality that is learnt first (here the audio: vocoded voices) soon
    explains most fakes, so the other gets little gradient and under-trains; per-modality losses
    keep both learning (Wang et al., "What makes training multi-modal classification networks
    hard?", CVPR 2020). A video-level label also marks a fake whose other track is untouched; the
    heads absorb that noise and are not exported.
    """

    name = "unimodal"

    def __init__(self, embed_dim: int, weight: float) -> None:
        super().__init__()
        self.weight = float(weight)
        self.heads = nn.ModuleDict({m: nn.Sequential(nn.GELU(), nn.Linear(embed_dim, 1)) for m in ("face", "audio")})

    def forward(self, out: Mapping[str, Any], batch: Mapping[str, Any], epoch: int) -> torch.Tensor:
        terms = [bce_loss(head(out[f"{m}_embedding"]).squeeze(-1), batch["target"]) for m, head in self.heads.items()]
        return self.weight * torch.stack(terms).sum()


def build_objectives(
    params: Mapping[str, Any] | None,
    model: nn.Module,
    example: Mapping[str, torch.Tensor] | None = None,
    unimodal_weight: float = 0.0,
) -> list[nn.Module]:
    """Objectives enabled in `params["methods"]`, plus the unimodal terms (`train.unimodal_weight`)."""
    methods = (params or {}).get("methods") or {}
    objectives = build_method_objectives(methods, model, example)
    if unimodal_weight > 0 and getattr(model, "mode", None) == "av":
        objectives.append(UnimodalObjective(model.embed_dim, unimodal_weight))
    return objectives


class TrainModule(nn.Module):
    """Model + objectives in one module, so DDP synchronises aux-head gradients too.

    forward(batch, epoch) -> (total loss, model outputs incl. `logits`). `batch` holds
    `faces` [B,K,3,S,S], `mels` [B,1,M,T] (normalised, augmented, mixed), `target` (soft),
    `target_hard` (before mixing), `mix` ({kind, lam, perm}) and `row`.
    """

    def __init__(self, model: nn.Module, objectives: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.model = model
        self.objectives = nn.ModuleList(objectives or [])

    def forward(self, batch: Mapping[str, Any], epoch: int) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self.model(batch["faces"], batch["mels"], return_features=True)
        loss = bce_loss(out["logits"], batch["target"])
        loss = apply_objectives(loss, list(self.objectives), out, batch, epoch)
        return loss, out
