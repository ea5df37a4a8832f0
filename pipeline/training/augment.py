"""Augmentations: per-sample face/mel transforms and batch MixUp/CutMix over BOTH modalities.

A mixed video must stay one video: MixUp/CutMix draw one lambda and one permutation per
batch and apply them to faces and mels alike (CutMix: the same box on every frame, and a time
span of the same area ratio on the mel), so the soft target is right for both branches.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from timm.data.mixup import cutmix_bbox_and_lam
from torchvision.transforms import v2

from pipeline.data import MEL_FLOOR_DB
from pipeline.training.config import AugmentConfig


def face_transform(cfg: AugmentConfig) -> v2.Compose | None:
    """torchvision v2 pipeline for uint8 crops [K,3,S,S]; one random draw covers all K frames."""
    steps: list[Any] = []
    if cfg.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.affine_prob > 0:
        steps.append(v2.RandomApply([v2.RandomAffine(degrees=8, translate=(0.05, 0.05), scale=(0.92, 1.08))], p=cfg.affine_prob))
    if cfg.color_jitter > 0:
        c = cfg.color_jitter
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(0.5, c / 4)))
    if cfg.blur_prob > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel_size=3, sigma=(0.1, 1.2))], p=cfg.blur_prob))
    if cfg.jpeg_prob > 0:
        lo, hi = (int(q) for q in cfg.jpeg_quality)
        steps.append(v2.RandomApply([JpegRecompress((lo, hi))], p=cfg.jpeg_prob))
    return v2.Compose(steps) if steps else None


class JpegRecompress(torch.nn.Module):
    """JPEG round trip with OpenCV at one random quality for all K frames of a video.

    (torchvision's JPEG transform rides on its deprecated image codecs; OpenCV's are stable.)
    """

    def __init__(self, quality: tuple[int, int]) -> None:
        super().__init__()
        lo, hi = quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"augment.jpeg_quality must be 1 <= lo <= hi <= 100, got {quality}")
        self.quality = (int(lo), int(hi))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        q = int(torch.randint(self.quality[0], self.quality[1] + 1, ()))
        out = []
        for frame in frames.permute(0, 2, 3, 1).contiguous().numpy():  # [K,H,W,3] RGB uint8
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
            if not ok:  # cannot happen for uint8 RGB; keep the frame rather than fail a run
                out.append(frame)
                continue
            out.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


class MelAugment:
    """SpecAugment time/frequency masks and a dB level shift on one mel [M,T] (torch ops only).

    Masked cells are set to the -80 dB floor (silence); the level shift leaves floor cells at
    the floor, so a video without audio still looks like one.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    def __bool__(self) -> bool:
        c = self.cfg
        return bool(c.gain_db > 0 or (c.spec_prob > 0 and (c.spec_time_mask > 0 or c.spec_freq_mask > 0)))

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        mel = mel.clone()
        if c.gain_db > 0:
            gain = (torch.rand(()) * 2 - 1) * c.gain_db
            live = mel > MEL_FLOOR_DB
            mel = torch.where(live, (mel + gain).clamp(MEL_FLOOR_DB, 0.0), mel)
        if c.spec_prob > 0 and torch.rand(()) < c.spec_prob:
            n_mels, n_frames = mel.shape
            mel = _mask(mel, dim=1, width=min(c.spec_time_mask, n_frames))
            mel = _mask(mel, dim=0, width=min(c.spec_freq_mask, n_mels))
        return mel


def _mask(mel: torch.Tensor, dim: int, width: int) -> torch.Tensor:
    if width <= 0:
        return mel
    w = int(torch.randint(0, width + 1, ()))
    if w == 0:
        return mel
    start = int(torch.randint(0, mel.shape[dim] - w + 1, ()))
    idx = torch.arange(start, start + w)
    return mel.index_fill(dim, idx, MEL_FLOOR_DB)


class AVMix:
    """MixUp / CutMix with soft binary targets, shared by faces [B,K,3,S,S] and mels [B,1,M,T].

    Lambda is drawn like timm's `Mixup` (Beta(alpha, alpha); CutMix box via timm's
    `cutmix_bbox_and_lam`, lambda corrected to the box area). The mel gets a time span whose
    length is the same fraction (1 - lambda) of T, from the same partner sample.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    @property
    def enabled(self) -> bool:
        c = self.cfg
        return c.mix_prob > 0 and (c.mixup_alpha > 0 or c.cutmix_alpha > 0)

    def smooth(self, target: torch.Tensor) -> torch.Tensor:
        s = self.cfg.label_smoothing
        return target * (1 - s) + 0.5 * s if s > 0 else target

    def __call__(
        self, faces: torch.Tensor, mels: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Returns mixed faces, mixed mels, soft targets and `{"kind", "lam", "perm"}`."""
        c = self.cfg
        info: dict[str, Any] = {"kind": None, "lam": 1.0, "perm": None}
        b = faces.shape[0]
        if not self.enabled or b < 2 or np.random.rand() >= c.mix_prob:
            return faces, mels, self.smooth(target), info
        use_cutmix = c.cutmix_alpha > 0 and (c.mixup_alpha <= 0 or np.random.rand() < c.switch_prob)
        lam = float(np.random.beta(c.cutmix_alpha, c.cutmix_alpha) if use_cutmix else np.random.beta(c.mixup_alpha, c.mixup_alpha))
        perm = torch.randperm(b, device=faces.device)
        if use_cutmix:
            (y0, y1, x0, x1), lam = cutmix_bbox_and_lam(faces.shape, lam, correct_lam=True)
            faces = faces.clone()
            faces[..., y0:y1, x0:x1] = faces[perm][..., y0:y1, x0:x1]
            n_frames = mels.shape[-1]
            span = int(round((1.0 - lam) * n_frames))
            if span > 0:
                start = int(np.random.randint(0, n_frames - span + 1))
                mels = mels.clone()
                mels[..., start : start + span] = mels[perm][..., start : start + span]
            info.update(kind="cutmix", box=(y0, y1, x0, x1), span=span)
        else:
            faces = faces * lam + faces[perm] * (1 - lam)
            mels = mels * lam + mels[perm] * (1 - lam)
            info["kind"] = "mixup"
        info.update(lam=float(lam), perm=perm)
        mixed = target * lam + target[perm] * (1 - lam)
        return faces, mels, self.smooth(mixed), info
