"""MiniFASNet V1/V2/V1SE/V2SE: the Silent-Face-Anti-Spoofing backbones as timm-style face backbones.

Why here: the reference notes (`seeds/001-*`) report these ~0.41-0.43M-parameter nets at
80x80 for silent liveness; they are a cheap alternative face branch. The layer widths (the
upstream `keep` lists) are reproduced exactly, so sizes and FLOPs match the published ones.
Registered as `minifasnet_v1`, `minifasnet_v2`, `minifasnet_v1se`, `minifasnet_v2se`
(`model.face_backbone: minifasnet_v2`). No ImageNet-1K weights exist for them (the only
pretraining the competition allows), so `pretrained=True` needs a local `pretrained_file`
holding a state dict of this module.

timm compatibility (what the face branch relies on): `num_features` (channels of
`forward_features`), `head_hidden_size` (size of the pooled pre-logits vector),
`forward_features(x) -> [B, 512, h, w]`, `forward_head(x, pre_logits=...)`,
`reset_classifier(n)`, `get_classifier()`; with `num_classes=0` `model(x)` returns the pooled
embedding [B, embedding_size]. `drop_rate` defaults to 0 like timm backbones (upstream used
0.2 for V1/V2 and 0.75 for the SE variants in front of its own classifier). The global depthwise "pooling" (conv_6_dw) has a kernel fixed by
`img_size` (upstream `get_kernel`: ceil(side/16)); a map of another size is first resized to
that kernel with adaptive average pooling, so any input size works (documented fallback).
"""
from __future__ import annotations

from typing import Sequence

import os

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.registry import register_model

__all__ = [
    "KEEP_V1",
    "KEEP_V2",
    "MiniFASNet",
    "minifasnet_v1",
    "minifasnet_v2",
    "minifasnet_v1se",
    "minifasnet_v2se",
    "MINIFASNET_VARIANTS",
]

# Upstream channel plans ('1.8M' -> V1/V1SE, '1.8M_' -> V2/V2SE); 49 widths each.
KEEP_V1: tuple[int, ...] = (
    32, 32, 103, 103, 64, 13, 13, 64, 26, 26, 64, 13, 13, 64, 52, 52, 64, 231, 231, 128,
    154, 154, 128, 52, 52, 128, 26, 26, 128, 52, 52, 128, 26, 26, 128, 26, 26, 128, 308, 308,
    128, 26, 26, 128, 26, 26, 128, 512, 512,
)
KEEP_V2: tuple[int, ...] = (
    32, 32, 103, 103, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 231, 231, 128,
    231, 231, 128, 52, 52, 128, 26, 26, 128, 77, 77, 128, 26, 26, 128, 26, 26, 128, 308, 308,
    128, 26, 26, 128, 26, 26, 128, 512, 512,
)


class ConvBNPReLU(nn.Sequential):
    """conv -> BN -> PReLU (upstream `Conv_block`)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )


class ConvBN(nn.Sequential):
    """conv -> BN, no activation (upstream `Linear_block`)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        )


class SqueezeExcite(nn.Module):
    """Channel attention with BN in the bottleneck (upstream `SEModule`)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = channels // reduction
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class DepthWiseBlock(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 project, optional residual and SE (upstream `Depth_Wise[_SE]`)."""

    def __init__(self, c_expand: tuple[int, int], c_dw: tuple[int, int], c_proj: tuple[int, int],
                 stride: int = 1, residual: bool = False, se_reduction: int | None = None) -> None:
        super().__init__()
        self.conv = ConvBNPReLU(c_expand[0], c_expand[1], 1)
        self.conv_dw = ConvBNPReLU(c_dw[0], c_dw[1], 3, stride, 1, groups=c_dw[0])
        self.project = ConvBN(c_proj[0], c_proj[1], 1)
        self.residual = residual
        self.se = SqueezeExcite(c_proj[1], se_reduction) if (residual and se_reduction) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        if not self.residual:
            return out
        if self.se is not None:
            out = self.se(out)
        return x + out


def _stage(keep: Sequence[int], start: int, n_blocks: int, se: bool) -> nn.Sequential:
    """Residual stage; with `se` the last block carries the SE module (as upstream `ResidualSE`)."""
    blocks = []
    for i in range(n_blocks):
        k = start + 3 * i
        blocks.append(DepthWiseBlock(
            (keep[k], keep[k + 1]), (keep[k + 1], keep[k + 2]), (keep[k + 2], keep[k + 3]),
            stride=1, residual=True, se_reduction=4 if (se and i == n_blocks - 1) else None,
        ))
    return nn.Sequential(*blocks)


def _down(keep: Sequence[int], k: int) -> DepthWiseBlock:
    return DepthWiseBlock((keep[k], keep[k + 1]), (keep[k + 1], keep[k + 2]),
                          (keep[k + 2], keep[k + 3]), stride=2)


class MiniFASNet(nn.Module):
    """MiniFASNet backbone + GDConv embedding head + optional classifier, with timm's interface."""

    def __init__(self, keep: Sequence[int] = KEEP_V2, se: bool = False, num_classes: int = 0,
                 in_chans: int = 3, img_size: int | tuple[int, int] = 80,
                 embedding_size: int = 128, drop_rate: float = 0.0) -> None:
        super().__init__()
        if len(keep) != 49:
            raise ValueError(f"MiniFASNet keep list needs 49 widths, got {len(keep)}")
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.gd_kernel = ((h + 15) // 16, (w + 15) // 16)  # upstream get_kernel
        self.in_chans = in_chans
        self.embedding_size = embedding_size
        self.drop_rate = drop_rate
        self.num_features = keep[47]
        self.head_hidden_size = embedding_size
        self.num_classes = num_classes

        self.conv1 = ConvBNPReLU(in_chans, keep[0], 3, 2, 1)
        self.conv2_dw = ConvBNPReLU(keep[0], keep[1], 3, 1, 1, groups=keep[1])
        self.conv_23 = _down(keep, 1)
        self.conv_3 = _stage(keep, 4, 4, se)
        self.conv_34 = _down(keep, 16)
        self.conv_4 = _stage(keep, 19, 6, se)
        self.conv_45 = _down(keep, 37)
        self.conv_5 = _stage(keep, 40, 2, se)
        self.conv_6_sep = ConvBNPReLU(keep[46], keep[47], 1)
        # Global depthwise conv: a learned, position-aware pooling of the last map.
        self.conv_6_dw = ConvBN(keep[47], keep[48], self.gd_kernel, groups=keep[48])
        # Upstream skips the projection when the embedding already has keep[48] dims.
        self.linear = (nn.Identity() if embedding_size == keep[48]
                       else nn.Linear(keep[48], embedding_size, bias=False))
        self.bn = nn.BatchNorm1d(embedding_size)
        self.drop = nn.Dropout(drop_rate)
        self.prob = nn.Linear(embedding_size, num_classes, bias=False) if num_classes > 0 else nn.Identity()

    # timm-style API -----------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.prob

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier; 0 removes it so `forward` returns the pooled embedding."""
        self.num_classes = num_classes
        self.prob = nn.Linear(self.embedding_size, num_classes, bias=False) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, C, H, W] -> last feature map [B, num_features, H/16, W/16]."""
        for layer in (self.conv1, self.conv2_dw, self.conv_23, self.conv_3, self.conv_34,
                      self.conv_4, self.conv_45, self.conv_5, self.conv_6_sep):
            x = layer(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> embedding [B, head_hidden_size] (pre_logits) or logits."""
        if tuple(x.shape[-2:]) != self.gd_kernel:
            x = F.adaptive_avg_pool2d(x, self.gd_kernel)
        x = self.linear(self.conv_6_dw(x).flatten(1))
        x = self.drop(self.bn(x))
        return x if pre_logits else self.prob(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _load_weights(model: MiniFASNet, file: str | os.PathLike) -> None:
    """Load a local state dict of this module; a classifier of another size is left as built."""
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    state = {k: v for k, v in state.items()
             if not (k.startswith("prob.") and (k not in own or own[k].shape != v.shape))}
    shapes = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.startswith("prob.")]
    unexpected = [k for k in state if k not in own]
    if shapes or missing or unexpected:
        raise ValueError(f"{file}: not a MiniFASNet state dict of this variant (shape mismatch "
                         f"{shapes[:2]}, missing {missing[:2]}, unexpected {unexpected[:2]})")
    model.load_state_dict(state, strict=False)


def _build(keep: Sequence[int], se: bool, pretrained: bool = False,
           pretrained_file: str | os.PathLike | None = None, **kwargs) -> MiniFASNet:
    if pretrained and not pretrained_file:
        raise ValueError(
            "MiniFASNet has no ImageNet-1K weights (the only pretraining the competition allows); "
            "set model.pretrained: false, or model.pretrained_file to a local state dict of this model"
        )
    model = MiniFASNet(keep, se=se, **kwargs)
    if pretrained:
        _load_weights(model, pretrained_file)
    return model


@register_model
def minifasnet_v1(**kwargs) -> MiniFASNet:
    """MiniFASNetV1 (upstream '1.8M' widths; notes: 0.41M params, 0.044 GFLOPs at 80x80)."""
    return _build(KEEP_V1, False, **kwargs)


@register_model
def minifasnet_v2(**kwargs) -> MiniFASNet:
    """MiniFASNetV2 (upstream '1.8M_' widths; notes: 0.43M params, 0.044 GFLOPs at 80x80)."""
    return _build(KEEP_V2, False, **kwargs)


@register_model
def minifasnet_v1se(**kwargs) -> MiniFASNet:
    """MiniFASNetV1SE: V1 with an SE module in the last block of each residual stage."""
    return _build(KEEP_V1, True, **kwargs)


@register_model
def minifasnet_v2se(**kwargs) -> MiniFASNet:
    """MiniFASNetV2SE: V2 with an SE module in the last block of each residual stage."""
    return _build(KEEP_V2, True, **kwargs)


MINIFASNET_VARIANTS = {
    "minifasnet_v1": minifasnet_v1,
    "minifasnet_v2": minifasnet_v2,
    "minifasnet_v1se": minifasnet_v1se,
    "minifasnet_v2se": minifasnet_v2se,
}
