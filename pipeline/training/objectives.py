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


def build_objectives(
    params: Mapping[str, Any] | None, model: nn.Module, example: Mapping[str, torch.Tensor] | None = None
) -> list[nn.Module]:
    """Objectives enabled in `params["methods"]` (none when the section is absent)."""
    methods = (params or {}).get("methods") or {}
    return build_method_objectives(methods, model, example)


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
