"""`augment:` and `train:` sections of params.yaml."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentConfig:
    """Batch mixing (one lambda/permutation for both modalities) and per-sample augmentations."""

    mixup_alpha: float = 0.2  # Beta(alpha, alpha) for MixUp; 0 disables MixUp
    cutmix_alpha: float = 1.0  # Beta(alpha, alpha) for CutMix; 0 disables CutMix
    mix_prob: float = 0.5  # probability that a batch is mixed at all
    switch_prob: float = 0.5  # with both enabled: probability of CutMix instead of MixUp
    label_smoothing: float = 0.0  # soft target t -> t*(1-s) + s/2
    hflip: float = 0.5  # faces: horizontal flip probability (same for all K frames)
    color_jitter: float = 0.2  # faces: brightness/contrast/saturation strength (hue = strength/4); 0 = off
    blur_prob: float = 0.1  # faces: Gaussian blur probability
    jpeg_prob: float = 0.2  # faces: JPEG re-compression probability
    jpeg_quality: tuple = (40, 95)  # faces: JPEG quality range
    affine_prob: float = 0.2  # faces: small rotation/shift/scale probability
    spec_prob: float = 0.5  # mel: probability of SpecAugment masking
    spec_time_mask: int = 24  # mel: widest time mask (hops); 0 = off
    spec_freq_mask: int = 8  # mel: widest frequency mask (mel bins); 0 = off
    gain_db: float = 6.0  # mel: random level shift in [-gain_db, gain_db] dB, re-clipped to [-80, 0]


FINAL_POLICIES = ("refit", "best_fold")
MONITORS = ("loss", "auc")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, checkpointing and the final-model policy."""

    epochs: int = 10
    batch_size: int = 16  # global batch: each of N DDP ranks takes batch_size // N
    lr: float = 0.002
    min_lr: float = 1e-5
    weight_decay: float = 0.2
    opt: str = "adamw"  # any timm create_optimizer_v2 name
    warmup_epochs: int = 1
    grad_clip: float = 1.0  # max grad norm; 0 = off
    unimodal_weight: float = 0.5  # av mode: weight of the face-only and audio-only auxiliary BCE terms
    ema_decay: float = 0.98  # 0 = no EMA (the raw weights are evaluated and exported)
    amp: bool = True  # CUDA only: bf16 where supported, else fp16 with GradScaler
    channels_last: bool = True  # CUDA only
    monitor: str = "loss"  # best epoch and early stopping: loss (val log loss) | auc (fold AUC, ties: loss)
    patience: int = 4  # early stopping: epochs without a better monitored value
    final: str = "refit"  # refit (all train rows, median best epoch) | best_fold
    threshold: float = 0.5  # for accuracy/precision/recall/F1/FPR
    num_workers: int = 0  # DataLoader workers per rank
    threads: int = 0  # torch CPU threads per rank; 0 = cores / ranks
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0

    def __post_init__(self) -> None:
        if self.final not in FINAL_POLICIES:
            raise ValueError(f"train.final must be one of {FINAL_POLICIES}, got {self.final!r}")
        if self.monitor not in MONITORS:
            raise ValueError(f"train.monitor must be one of {MONITORS}, got {self.monitor!r}")
