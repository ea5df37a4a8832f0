"""Central-difference (CDC) and learnable descriptive (LDC) convolutions as drop-in 3x3 convs.

Why: the notes (`seeds/002-*`, LDCNet, BMVC 2022) find fine local texture differences, not
content, separate real from fake faces; a central-difference term makes a 3x3 kernel respond
to gradients around each pixel. CDC subtracts `theta * sum(w) * x(centre)` with a fixed theta;
LDC learns per-(out, in) descriptor weights `m` and theta. Both subclass `nn.Conv2d` and fold
the difference term into the kernel's centre tap, so the result is one ordinary convolution
(same stride/padding/dilation), the state-dict keys `weight`/`bias` stay those of the plain
conv, and any timm backbone can be converted in place by `convert_to_ldc`.

Effective kernel: w_eff = w - theta * m[o, i] * centre * sum_{k} w[o, i, k]
(CDC: m = 1, theta fixed; LDC: m and theta learned). With m = 0 LDC equals the plain conv;
with m = 1 it equals CDC at the same theta. Deviation: the released LDCNet code multiplies
the kernel by (1 - theta*m*centre*sum(w)), i.e. scales the difference term by the centre weight;
we use the additive form, which is the one that reduces to CDC as the paper describes.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["CDCConv2d", "LDCConv2d", "convert_to_ldc", "LDC_KINDS"]

LDC_KINDS = ("none", "cdc", "ldc")


def _centre_mask(kernel_size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    kh, kw = kernel_size
    mask = torch.zeros(kh, kw, dtype=like.dtype, device=like.device)
    mask[kh // 2, kw // 2] = 1.0
    return mask


class CDCConv2d(nn.Conv2d):
    """Central-difference convolution: plain conv minus theta * (sum of taps) * centre pixel."""

    def __init__(self, *args, theta: float = 0.7, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.theta = float(theta)

    def descriptor(self) -> torch.Tensor:
        """Per-(out, in) weight of the difference term, [O, I/groups]."""
        return self.weight.new_ones(self.weight.shape[:2])

    def theta_value(self) -> torch.Tensor | float:
        return self.theta

    def effective_weight(self) -> torch.Tensor:
        """Kernel with the difference term folded into the centre tap."""
        tap_sum = self.weight.sum(dim=(2, 3))  # [O, I]
        diff = self.theta_value() * self.descriptor() * tap_sum
        return self.weight - diff[:, :, None, None] * _centre_mask(self.kernel_size, self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}"


class LDCConv2d(CDCConv2d):
    """Learnable descriptive convolution: CDC whose descriptor mask and theta are trained."""

    def __init__(self, *args, theta: float = 0.7, **kwargs) -> None:
        super().__init__(*args, theta=theta, **kwargs)
        del self.theta  # the float from CDC becomes a trained parameter
        self.theta = nn.Parameter(self.weight.new_tensor(float(theta)))
        self.learnable_mask = nn.Parameter(self.weight.new_ones(self.weight.shape[:2]))

    def descriptor(self) -> torch.Tensor:
        return self.learnable_mask

    def theta_value(self) -> torch.Tensor:
        return self.theta

    def extra_repr(self) -> str:
        return nn.Conv2d.extra_repr(self) + ", learnable descriptor"


def _convertible(conv: nn.Module) -> bool:
    """Exactly nn.Conv2d (not a subclass with its own forward), 3x3, groups=1, zero padding."""
    return (
        type(conv) is nn.Conv2d
        and tuple(conv.kernel_size) == (3, 3)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def convert_to_ldc(model: nn.Module, kind: Literal["none", "cdc", "ldc"] = "ldc",
                   theta: float = 0.7) -> int:
    """Swap every plain 3x3 nn.Conv2d (any stride, groups=1) of `model` for CDC/LDC in place.

    Weights and biases are copied, so a pretrained backbone keeps its kernels; LDC starts as
    CDC (mask = 1, theta = `theta`). Depthwise/grouped convs and timm's padding-'same' or
    weight-standardised subclasses are left alone. Returns the number of convs swapped.
    """
    if kind not in LDC_KINDS:
        raise ValueError(f"model.ldc must be one of {LDC_KINDS}, got {kind!r}")
    if kind == "none":
        return 0
    cls = LDCConv2d if kind == "ldc" else CDCConv2d
    # name "" would be `model` itself, which cannot be swapped in place.
    targets = [(name, mod) for name, mod in model.named_modules() if name and _convertible(mod)]
    for name, conv in targets:
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, theta=theta,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(conv.weight)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        new.train(conv.training)
        model.set_submodule(name, new)
    return len(targets)
