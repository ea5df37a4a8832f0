"""Competition rules the final model must meet, checked on exactly the model that predicts.

- Size: at most `budget.max_params` parameters counted with thop (`thop.profile`), run on the
  model rebuilt from the checkpoint with the real input shapes from the checkpoint's config.
- Pretraining: ImageNet-1K only (`pipeline.models.check_pretrained`, the one place the rule lives).

thop only counts module types it has a rule for, so subclasses such as timm's `BatchNormAct2d`
would silently count as zero parameters; `thop_custom_ops` maps each such type to its base
class's thop rule (or a zero-MAC rule) so thop's count equals `sum(p.numel())`. Any
parameters thop still cannot see (modules that never run in forward, parameters held
directly by composite modules) are reported as `params_unprofiled` and the limit is applied to
the larger of the two counts.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn as nn


@dataclass(frozen=True)
class BudgetConfig:
    """`budget:` section of params.yaml."""

    max_params: int = 200_000_000  # competition rule: at most 200M parameters (thop count)


class BudgetError(RuntimeError):
    """The model breaks a competition rule; the message says which and by how much."""


def thop_custom_ops(model: nn.Module) -> dict[type, Callable]:
    """thop rules for parameter-holding module types thop does not know by exact type."""
    from thop.profile import register_hooks
    from thop.vision.basic_hooks import zero_ops

    ops: dict[type, Callable] = {}
    for module in model.modules():
        kind = type(module)
        if kind in register_hooks or kind in ops:
            continue
        if not any(True for _ in module.parameters(recurse=False)):
            continue  # thop recurses into its children
        if any(any(True for _ in child.parameters()) for child in module.children()):
            continue  # composite: hooking it would hide its children's MACs
        base = next((b for b in kind.__mro__[1:] if b in register_hooks), None)
        ops[kind] = register_hooks[base] if base is not None else zero_ops
    return ops


def count_complexity(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """thop params and MACs of `model` on `inputs` (profiled on a copy: thop leaves buffers behind)."""
    import thop

    probe = copy.deepcopy(model).eval()
    macs, params = thop.profile(probe, inputs=inputs, custom_ops=thop_custom_ops(probe), verbose=False)
    numel = sum(p.numel() for p in model.parameters())
    return {
        "params": int(round(float(params))),
        "macs": int(round(float(macs))),
        "params_numel": int(numel),
        "params_unprofiled": int(numel - round(float(params))),
    }


def example_inputs(config: Mapping[str, Any], batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs with the real shapes from a checkpoint's config (decode.frames, faces.size,
    audio.n_mels, audio.frames), through the same `to_model_inputs` as predict."""
    from pipeline.data import to_model_inputs

    k = int(config["decode"]["frames"])
    s = int(config["faces"]["size"])
    m = int(config["audio"]["n_mels"])
    t = int(config["audio"]["frames"])
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(batch, k, s, s, 3), dtype=np.uint8)
    mels = rng.uniform(-80, 0, size=(batch, m, t)).astype(np.float16)
    return to_model_inputs(faces, mels)


def pretrained_problems(model_cfg: Mapping[str, Any]) -> list[str]:
    """Why the configured pretrained weights break the ImageNet-1K rule ([] when they do not)."""
    if not model_cfg.get("pretrained"):
        return []
    from pipeline.models import check_pretrained

    problems = []
    mode = model_cfg.get("mode", "av")
    keys = [k for k in ("face_backbone", "audio_backbone", "backbone", "name") if model_cfg.get(k)]
    keys = [k for k in keys if not (k == "face_backbone" and mode == "audio") and not (k == "audio_backbone" and mode == "video")]
    names = [model_cfg[k] for k in keys]
    for name in dict.fromkeys(names):
        try:
            check_pretrained(str(name))
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def budget_report(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], model_cfg: Mapping[str, Any], cfg: BudgetConfig
) -> dict[str, Any]:
    """Counts and rule verdicts for `metrics/budget.json`."""
    counts = count_complexity(model, inputs)
    problems = pretrained_problems(model_cfg)
    counted = max(counts["params"], counts["params_numel"])
    return {
        **counts,
        "max_params": int(cfg.max_params),
        "params_ok": counted <= cfg.max_params,
        "pretrained": bool(model_cfg.get("pretrained", False)),
        "pretrained_ok": not problems,
        "pretrained_problems": problems,
        "input_shapes": [list(x.shape) for x in inputs],
    }


def violations(report: Mapping[str, Any]) -> list[str]:
    """Human sentences for each broken rule in a budget report."""
    out = []
    if not report.get("params_ok", False):
        counted = max(report.get("params", 0), report.get("params_numel", 0))
        out.append(
            f"model has {counted:,} parameters (thop {report.get('params', 0):,}, "
            f"sum of numel {report.get('params_numel', 0):,}), above budget.max_params "
            f"{report.get('max_params', 0):,}; the competition allows at most 200M"
        )
    if not report.get("pretrained_ok", False):
        out += [f"pretrained weights refused: {p}" for p in report.get("pretrained_problems", [])] or [
            "pretrained weights not verified as ImageNet-1K"
        ]
    return out


def check_checkpoint(
    checkpoint: str | os.PathLike, cfg: BudgetConfig, model_params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Rebuild the predicting model from `checkpoint` and report its budget (raises nothing).

    The pretrained rule is checked on the checkpoint's recorded model config and, when given,
    on params.yaml's `model:` section too (what the next training run would use).
    """
    from pipeline.models import load_checkpoint

    model, ckpt = load_checkpoint(str(checkpoint), device="cpu")
    config = ckpt.get("config", {}) or {}
    report = budget_report(model, example_inputs(config), config.get("model", {}) or {}, cfg)
    if model_params:
        extra = [p for p in pretrained_problems(model_params) if p not in report["pretrained_problems"]]
        report["pretrained_problems"] += extra
        report["pretrained_ok"] = not report["pretrained_problems"]
        report["pretrained"] = report["pretrained"] or bool(model_params.get("pretrained", False))
    return report


def assert_budget_ok(path: str | os.PathLike) -> None:
    """Refuse to go on when `metrics/budget.json` is missing or records a broken rule."""
    path = Path(path)
    if not path.is_file():
        raise BudgetError(f"{path} not found: run the budget stage before writing a submission")
    problems = violations(json.loads(path.read_text(encoding="utf-8")))
    if problems:
        raise BudgetError(f"{path} records broken competition rules: " + "; ".join(problems))
