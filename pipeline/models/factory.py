"""`model:` params -> model, and the checkpoint format every later stage reads.

The checkpoint stores how to rebuild the model (`name` + `kwargs` for `create_model`), the
weights, and the extraction/predict config, so `load_checkpoint` alone can score a new video.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn as nn

from pipeline import atomic
from pipeline.models.registry import create_model

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class ModelConfig:
    """`model:` section of params.yaml."""

    name: str = "av_classifier"  # registered project model (or any timm name taking these kwargs)
    mode: str = "av"  # av | video | audio
    face_backbone: str = "resnet10t"
    audio_backbone: str = "resnet10t"
    fusion: str = "concat"  # concat | gate
    embed_dim: int = 128
    drop_rate: float = 0.1
    pretrained: bool = False  # ImageNet-1K weights only, loaded offline (see pretrained.py)
    pretrained_file: str | None = None  # face backbone weights file
    audio_pretrained_file: str | None = None  # audio backbone weights file (first conv adapted to 1 channel)
    ldc: str = "none"  # none | cdc | ldc: 3x3 convs of the face backbone become central-difference convs
    ldc_theta: float = 0.7
    audio_profile: bool = True  # add per-band mel statistics to the audio embedding (see av.py)
    extra: dict = field(default_factory=dict)  # further kwargs for a project model


def model_spec(cfg: ModelConfig, for_checkpoint: bool = False) -> dict[str, Any]:
    """`{"name", "kwargs"}` for `create_model`; the checkpoint copy never loads pretrained files."""
    kwargs: dict[str, Any] = {
        "mode": cfg.mode,
        "face_backbone": cfg.face_backbone,
        "audio_backbone": cfg.audio_backbone,
        "fusion": cfg.fusion,
        "embed_dim": int(cfg.embed_dim),
        "drop_rate": float(cfg.drop_rate),
        "pretrained": bool(cfg.pretrained),
        "pretrained_file": cfg.pretrained_file,
        "audio_pretrained_file": cfg.audio_pretrained_file,
        "ldc": cfg.ldc,
        "ldc_theta": float(cfg.ldc_theta),
        "audio_profile": bool(cfg.audio_profile),
        **dict(cfg.extra or {}),
    }
    if for_checkpoint:
        kwargs.update(pretrained=False, pretrained_file=None, audio_pretrained_file=None)
    return {"name": cfg.name, "kwargs": kwargs}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The configured model (pretrained ImageNet-1K weights loaded offline when asked)."""
    spec = model_spec(cfg)
    return create_model(spec["name"], **spec["kwargs"])


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile / EMA wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _plain(obj: Any) -> Any:
    """JSON round trip: checkpoints hold only plain types, so `weights_only=True` can load them."""
    return json.loads(json.dumps(obj, default=atomic._json_default))


def save_checkpoint(
    dest: str | os.PathLike,
    model: nn.Module,
    spec: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write the checkpoint dict of docs/ARCHITECTURE.md atomically (weights moved to CPU)."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": _plain(dict(spec)),
        "state_dict": state,
        "config": _plain(dict(config or {})),
        "meta": _plain(dict(meta or {})),
    }
    atomic.save_torch(dest, ckpt)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model from a checkpoint: `(model.eval() on device, checkpoint dict)`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} not found; run the train stage first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"{path} is not a pipeline checkpoint (missing {key!r})")
    spec = ckpt["model"]
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.to(device).eval(), ckpt
