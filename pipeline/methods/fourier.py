"""Fourier auxiliary supervision: make the face features predict the crop's frequency content.

Why (`seeds/000-*`, `seeds/001-*`): re-captured or synthesised faces leave periodic and
high-frequency traces (screen moire, resampling, codec grids) that are easy to see in the
spectrum but easy for an RGB network to ignore. Supervising the shared face features with the
spectrum pushes them to encode those traces; the extra head lives in the objective, not the
model, so inference costs nothing and the exported model is unchanged.

Target, as in the notes: log(1 + 10 * |fftshift(fft2(x))| * mask), where `mask` is 1 except
a central low-frequency block scaled by `low_scale` (0.3). The notes' block is 20x20 at their
crop size; here its side is `low_block * S / ref_size`, rounded, at least 2 px.

Two modes:
- `mse` (Silent-Face style, `seeds/001-*`): a small conv head on `face_maps` regresses the
  channel-averaged spectrum, pooled to `map_size` x `map_size`; loss = weight * MSE.
- `ce` (`seeds/000-*`): a frequency branch encodes the spectrum and classifies real/fake
  together with the pooled face features (so the loss reaches the shared backbone);
  loss = weight * min(0.25, 0.15 + 0.001 * epoch) * BCE (the one-logit form of the 2-class CE).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["low_block_size", "fourier_spectrum", "freq_dynamic_weight", "FourierObjective"]


def low_block_size(size: int, low_block: int = 20, ref_size: int = 224) -> int:
    """Side of the attenuated low-frequency block for a crop of `size` px (notes: 20 at ref_size)."""
    return max(2, int(round(low_block * size / ref_size)))


def fourier_spectrum(x: torch.Tensor, low_scale: float = 0.3, low_block: int = 20,
                     ref_size: int = 224) -> torch.Tensor:
    """log(1 + 10*|fftshift(fft2(x))|*mask) over the last two dims, computed in float32.

    `mask` multiplies the central block (side from `low_block_size`) by `low_scale`, keeping
    some low-frequency energy while the log compresses the dominant DC term.
    """
    x = x.float()
    h, w = x.shape[-2:]
    mag = torch.fft.fftshift(torch.fft.fft2(x, dim=(-2, -1)), dim=(-2, -1)).abs()
    bh, bw = low_block_size(h, low_block, ref_size), low_block_size(w, low_block, ref_size)
    ch, cw = h // 2, w // 2
    mask = torch.ones(h, w, dtype=mag.dtype, device=mag.device)
    mask[max(0, ch - bh // 2): ch - bh // 2 + bh, max(0, cw - bw // 2): cw - bw // 2 + bw] = low_scale
    return torch.log1p(10.0 * mag * mask)


def freq_dynamic_weight(epoch: int) -> float:
    """The notes' schedule for the frequency-branch CE: min(0.25, 0.15 + 0.001 * epoch)."""
    return min(0.25, 0.15 + 0.001 * float(epoch))


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FourierObjective(nn.Module):
    """Training-only auxiliary loss on `out["face_maps"]` against the spectrum of `batch["faces"]`."""

    name = "fourier"

    def __init__(self, in_channels: int, mode: str = "mse", weight: float = 1.0,
                 low_scale: float = 0.3, low_block: int = 20, ref_size: int = 224,
                 map_size: int = 8, hidden: int = 64, normalize: bool = True) -> None:
        super().__init__()
        if mode not in ("mse", "ce"):
            raise ValueError(f"methods.fourier.mode must be 'mse' or 'ce', got {mode!r}")
        if hidden < 2 or map_size < 1:
            raise ValueError("methods.fourier.hidden must be >= 2 and map_size >= 1")
        self.mode = mode
        self.weight = float(weight)
        self.low_scale = float(low_scale)
        self.low_block = int(low_block)
        self.ref_size = int(ref_size)
        self.map_size = int(map_size)
        self.normalize = bool(normalize)
        if mode == "mse":
            # Silent-Face's FTGenerator shape: conv-BN-ReLU x2 then a 1-channel map.
            self.head = nn.Sequential(_conv_bn_relu(in_channels, hidden), _conv_bn_relu(hidden, hidden // 2),
                                      nn.Conv2d(hidden // 2, 1, 3, padding=1))
        else:
            self.freq_branch = nn.Sequential(_conv_bn_relu(3, hidden // 2), _conv_bn_relu(hidden // 2, hidden),
                                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.face_proj = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, hidden))
            self.classifier = nn.Linear(2 * hidden, 1)

    def target(self, faces: torch.Tensor) -> torch.Tensor:
        """Spectrum of model-input faces [..., 3, S, S] -> [N, 3, map, map] (no gradient needed)."""
        faces = faces.reshape(-1, *faces.shape[-3:])
        with torch.no_grad():
            spec = fourier_spectrum(faces, self.low_scale, self.low_block, self.ref_size)
            spec = F.adaptive_avg_pool2d(spec, self.map_size)
            if self.normalize:  # per-crop scale to [0, 1], as Silent-Face does for its FT maps
                spec = spec / spec.amax(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-6)
        return spec

    def forward(self, out: dict, batch: dict, epoch: int) -> torch.Tensor:
        maps = out["face_maps"]
        spec = self.target(batch["faces"]).to(maps.device)
        if spec.shape[0] != maps.shape[0]:
            raise ValueError(f"face_maps has {maps.shape[0]} crops but batch faces give {spec.shape[0]}")
        if self.mode == "mse":
            pred = self.head(maps.float())
            pred = F.interpolate(pred, size=(self.map_size, self.map_size), mode="bilinear", align_corners=False)
            return self.weight * F.mse_loss(pred, spec.mean(dim=1, keepdim=True))
        target = batch["target"].float().to(maps.device)
        per_crop = target.repeat_interleave(maps.shape[0] // target.shape[0])
        logit = self.classifier(torch.cat([self.face_proj(maps.float()), self.freq_branch(spec)], dim=1))
        ce = F.binary_cross_entropy_with_logits(logit.squeeze(1), per_crop)
        return self.weight * freq_dynamic_weight(epoch) * ce
