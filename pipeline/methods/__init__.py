"""Optional training objectives from the face anti-spoofing notes, each switched by one line.

`methods:` in params.yaml holds one sub-section per method (`fourier`, `distill`, `triplet`),
each with `enabled: false` by default. `build_objectives(cfg, model, example)` returns the
enabled ones as `nn.Module`s called as `objective(out, batch, epoch) -> scalar Tensor`, where
`out` is `model.forward_features(...)` plus `logits`, and `batch` holds model-input `faces`
[B,K,3,S,S], `mels` [B,1,M,T] and `target` [B] (soft targets allowed). Their own parameters
(aux heads) are trained with the model but are not part of it, so the exported checkpoint and
inference are unchanged. `apply_objectives(base_loss, objectives, out, batch, epoch)` adds them
to the loop's BCE; an objective with `replaces_base_loss = True` (distillation) already contains
the classification term, so the base term is then dropped.

LDC/CDC convolutions and MiniFASNet backbones change the model itself and so live in
`pipeline.models` (`model.ldc`, `model.face_backbone: minifasnet_*`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from pipeline.config import from_dict, section
from pipeline.methods.distill import DistillObjective, distillation_loss
from pipeline.methods.fourier import FourierObjective, fourier_spectrum
from pipeline.methods.triplet import TripletObjective, batch_hard_triplet_loss

__all__ = [
    "FourierConfig",
    "DistillConfig",
    "TripletConfig",
    "MethodsConfig",
    "load_methods_config",
    "OBJECTIVES",
    "build_objectives",
    "apply_objectives",
    "FourierObjective",
    "DistillObjective",
    "TripletObjective",
    "fourier_spectrum",
    "distillation_loss",
    "batch_hard_triplet_loss",
]


@dataclass
class FourierConfig:
    enabled: bool = False
    mode: str = "mse"          # mse: head regresses the spectrum | ce: frequency-branch classifier
    weight: float = 1.0
    low_scale: float = 0.3     # factor on the central low-frequency block
    low_block: int = 20        # block side at ref_size px; scaled to the crop size
    ref_size: int = 224
    map_size: int = 8          # spectrum pooled to map_size x map_size
    hidden: int = 64
    normalize: bool = True     # per-crop max-normalised target (mse)


@dataclass
class DistillConfig:
    enabled: bool = False
    teacher: str | None = None  # checkpoint of this pipeline, e.g. an earlier models/final.pt
    alpha: float = 0.5
    temperature: float = 3.0
    decay: float = 0.95
    decay_every: float = 10.0


@dataclass
class TripletConfig:
    enabled: bool = False
    margin: float = 0.3
    weight: float = 0.1
    mixed: str = "dominant"    # dominant: label = dominant class | skip: no loss on mixed batches
    normalize: bool = True     # L2-normalise embeddings so the margin is scale-free


@dataclass
class MethodsConfig:
    fourier: FourierConfig = field(default_factory=FourierConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    triplet: TripletConfig = field(default_factory=TripletConfig)


def load_methods_config(params: Mapping[str, Any]) -> MethodsConfig:
    """`methods:` section of params.yaml (missing = everything off)."""
    return section(params, "methods", MethodsConfig)


def _face_channels(model: nn.Module, example: Mapping[str, torch.Tensor] | None) -> int:
    """Channels of `face_maps`, from one no-grad probe forward on `example` (mode restored)."""
    if example is None:
        raise ValueError("methods.fourier needs an example batch to size its head")
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            feats = model.forward_features(example["faces"][:1].to(device), example["mels"][:1].to(device))
    finally:
        model.train(was_training)
    maps = feats.get("face_maps") if isinstance(feats, Mapping) else None
    if maps is None or maps.ndim != 4:
        raise ValueError("methods.fourier needs face feature maps: use model.mode av or video")
    return int(maps.shape[1])


def _fourier(cfg: MethodsConfig, model: nn.Module, example: Mapping | None, device: Any) -> nn.Module:
    c = cfg.fourier
    return FourierObjective(_face_channels(model, example), mode=c.mode, weight=c.weight,
                            low_scale=c.low_scale, low_block=c.low_block, ref_size=c.ref_size,
                            map_size=c.map_size, hidden=c.hidden, normalize=c.normalize)


def _distill(cfg: MethodsConfig, model: nn.Module, example: Mapping | None, device: Any) -> nn.Module:
    c = cfg.distill
    return DistillObjective.from_checkpoint(c.teacher, device=device or "cpu", alpha=c.alpha,
                                            temperature=c.temperature, decay=c.decay,
                                            decay_every=c.decay_every)


def _triplet(cfg: MethodsConfig, model: nn.Module, example: Mapping | None, device: Any) -> nn.Module:
    c = cfg.triplet
    return TripletObjective(margin=c.margin, weight=c.weight, mixed=c.mixed, normalize=c.normalize)


# name -> factory(cfg, model, example_batch, device); the `enabled` flag of cfg.<name> selects it.
OBJECTIVES: dict[str, Callable[[MethodsConfig, nn.Module, Mapping | None, Any], nn.Module]] = {
    "fourier": _fourier,
    "distill": _distill,
    "triplet": _triplet,
}


def build_objectives(cfg: MethodsConfig | Mapping[str, Any] | None, model: nn.Module,
                     example: Mapping[str, torch.Tensor] | None = None,
                     device: torch.device | str | None = None) -> list[nn.Module]:
    """The enabled objectives, on `device`, in a fixed order (fourier, distill, triplet).

    `cfg` may be the dataclass, the whole params dict, or None (= all off). `example` is a
    batch of model inputs used only to size aux heads (Fourier).
    """
    if cfg is None:
        cfg = MethodsConfig()
    elif not isinstance(cfg, MethodsConfig):
        # the whole params dict, or just its `methods:` section
        cfg = from_dict(MethodsConfig, cfg.get("methods", cfg), "methods")
    built = []
    for name, factory in OBJECTIVES.items():
        if getattr(cfg, name).enabled:
            obj = factory(cfg, model, example, device)
            built.append(obj.to(device) if device is not None else obj)
    return built


def apply_objectives(base_loss: torch.Tensor, objectives: list[nn.Module], out: Mapping[str, torch.Tensor],
                     batch: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
    """base_loss + every objective's loss; the base term is dropped when an objective replaces it.

    The training loop's single call site: `loss = apply_objectives(loss, objectives, out, batch, epoch)`.
    """
    if not objectives:
        return base_loss
    losses = [obj(out, batch, epoch).float().reshape(()) for obj in objectives]
    if not any(getattr(obj, "replaces_base_loss", False) for obj in objectives):
        losses.insert(0, base_loss.float().reshape(()))
    return torch.stack(losses).sum()
