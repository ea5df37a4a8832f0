"""The audio-visual deepfake classifier: a face backbone over K crops + an audio backbone
over the log-mel, fused into ONE logit.

Both branches are built through `create_model`, so any timm name (or a project-registered
backbone that follows timm's `num_features` / `forward_features` / `forward_head` convention)
plugs in. `mode` picks av, video-only or audio-only; an unused branch is not built at all.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.models.ldc import convert_to_ldc
from pipeline.models.pretrained import pretrained_kwargs
from pipeline.models.registry import create_model, register_model

MODES = ("av", "video", "audio")
PROFILE_BANDS = 32


def spectral_profile(mels: torch.Tensor) -> torch.Tensor:
    """mels [B,1,M,T] -> [B, 2*PROFILE_BANDS]: mean and std over time per band (any M)."""
    x = mels.float().flatten(1, 2)  # [B, M, T]
    stats = torch.stack([x.mean(-1), x.std(-1, unbiased=False)], 1)  # [B, 2, M]
    return F.adaptive_avg_pool1d(stats, PROFILE_BANDS).flatten(1)
FUSIONS = ("concat", "gate")


class Branch(nn.Module):
    """A backbone + linear projection to the shared embedding size."""

    def __init__(self, name: str, in_chans: int, embed_dim: int, pretrained: bool, pretrained_file: str | None) -> None:
        super().__init__()
        self.backbone = create_model(
            name, num_classes=0, in_chans=in_chans, **pretrained_kwargs(name, pretrained, pretrained_file)
        )
        # timm: pre-logits width is head_hidden_size when the head has its own layers (MobileNetV3)
        features = getattr(self.backbone, "head_hidden_size", None) or getattr(self.backbone, "num_features", None)
        if not isinstance(features, int) or features <= 0:
            raise ValueError(f"backbone {name!r} must expose an integer `num_features` (timm convention)")
        self.proj = nn.Linear(features, embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N,C,H,W] -> (last feature map, pooled features [N,F], embedding [N,E])."""
        maps = self.backbone.forward_features(x)
        pooled = self.backbone.forward_head(maps, pre_logits=True)
        return maps, pooled, self.proj(pooled)


@register_model("av_classifier")
class AVClassifier(nn.Module):
    """faces [B,K,3,S,S] + mels [B,1,M,T] -> deepfake logit [B].

    Per-frame face embeddings are averaged over the K frames; fusion is `concat` (MLP over both
    embeddings) or `gate` (a learned per-dimension sigmoid mix of the two). `ldc` turns the face
    backbone's plain 3x3 convs into CDC/LDC convs (pipeline/models/ldc.py).
    """

    def __init__(
        self,
        mode: str = "av",
        face_backbone: str = "resnet10t",
        audio_backbone: str = "resnet10t",
        fusion: str = "concat",
        embed_dim: int = 128,
        drop_rate: float = 0.1,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        audio_pretrained_file: str | None = None,
        ldc: str = "none",
        ldc_theta: float = 0.7,
        audio_profile: bool = True,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"model.mode must be one of {MODES}, got {mode!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"model.fusion must be one of {FUSIONS}, got {fusion!r}")
        self.mode = mode
        self.fusion = fusion
        self.embed_dim = embed_dim
        self.channels_last = False
        self.face = Branch(face_backbone, 3, embed_dim, pretrained, pretrained_file) if mode != "audio" else None
        if self.face is not None:
            convert_to_ldc(self.face.backbone, ldc, ldc_theta)  # after loading: keeps pretrained kernels
        self.audio = (
            Branch(audio_backbone, 1, embed_dim, pretrained, audio_pretrained_file) if mode != "video" else None
        )
        # Spectral profile: per-band mean/std over time, pooled to PROFILE_BANDS bands. A CNN with
        # global pooling is blind to *which* frequency holds energy; band-limited (vocoded) voices
        # differ exactly there, so this small MLP gives the audio branch that position.
        self.profile = (
            nn.Sequential(nn.Linear(2 * PROFILE_BANDS, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
            if audio_profile and self.audio is not None
            else None
        )
        if mode == "av":
            self.fuse = nn.Linear(2 * embed_dim, embed_dim)
        self.act = nn.GELU()
        self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(embed_dim, 1))

    def set_channels_last(self, enabled: bool = True) -> "AVClassifier":
        """Use NHWC inputs/weights (faster convolutions with CUDA AMP)."""
        self.channels_last = enabled
        if enabled:
            self.to(memory_format=torch.channels_last)
        return self

    def _nhwc(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward_features(self, faces: torch.Tensor, mels: torch.Tensor) -> dict[str, Any]:
        """Everything auxiliary objectives may need: embedding [B,D], face_maps [B*K,C,h,w], ..."""
        out: dict[str, Any] = {"faces": faces, "mels": mels, "face_maps": None, "audio_maps": None}
        parts = []
        if self.face is not None:
            b, k = faces.shape[:2]
            maps, pooled, emb = self.face(self._nhwc(faces.flatten(0, 1)))
            out["face_maps"] = maps
            out["face_frame_features"] = pooled.view(b, k, -1)
            out["face_embedding"] = emb.view(b, k, -1).mean(1)
            parts.append(out["face_embedding"])
        if self.audio is not None:
            maps, _pooled, emb = self.audio(self._nhwc(mels))
            if self.profile is not None:
                emb = emb + self.profile(spectral_profile(mels))
            out["audio_maps"] = maps
            out["audio_embedding"] = emb
            parts.append(emb)
        if self.mode != "av":
            out["embedding"] = self.act(parts[0])
        elif self.fusion == "concat":
            out["embedding"] = self.act(self.fuse(torch.cat(parts, dim=1)))
        else:
            gate = torch.sigmoid(self.fuse(torch.cat(parts, dim=1)))
            out["gate"] = gate
            out["embedding"] = self.act(gate * parts[0] + (1 - gate) * parts[1])
        return out

    def forward_head(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding).squeeze(-1)

    def forward(self, faces: torch.Tensor, mels: torch.Tensor, return_features: bool = False) -> Any:
        """logits [B]; with `return_features` the forward_features dict plus `logits`
        (one call, so DistributedDataParallel sees every parameter that gets a gradient)."""
        out = self.forward_features(faces, mels)
        logits = self.forward_head(out["embedding"])
        if return_features:
            out["logits"] = logits
            return out
        return logits
