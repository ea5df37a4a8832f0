"""Loader vs model-step throughput of the training loop, to see whether the GPU (or CPU) starves.

    python benchmarks/train_bench.py                       # CPU here; CUDA + AMP when present
    python benchmarks/train_bench.py --n 512 --batch 64 --workers 8 --face-backbone efficientnet_b0

The loader line measures reading the memmapped arrays + per-sample augmentation + collation
(what `DataLoader` workers do); the step line measures normalisation, MixUp/CutMix, forward,
backward and optimiser step on batches already in memory. If the loader is slower than the
step, add `train.num_workers` (or lighten augmentation).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from timm.optim import create_optimizer_v2
from torch.utils.data import DataLoader

from pipeline.data import AVDataset, open_features
from pipeline.models import ModelConfig, build_model
from pipeline.training.augment import AVMix, MelAugment, face_transform
from pipeline.training.config import AugmentConfig, TrainConfig
from pipeline.training.distributed import resolve_device
from pipeline.training.loop import amp_settings, train_step
from pipeline.training.objectives import TrainModule
from pipeline.training.synthetic import make_features


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="videos in the generated feature arrays")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n-mels", type=int, default=64)
    ap.add_argument("--mel-frames", type=int, default=192)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed model steps (after 2 warm-up steps)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--loader-epochs", type=int, default=2, help="timed passes over the data (after one warm-up pass)")
    ap.add_argument("--face-backbone", default="resnet10t")
    ap.add_argument("--audio-backbone", default="resnet10t")
    ap.add_argument("--mode", default="av")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = TrainConfig(batch_size=args.batch, amp=not args.no_amp)
    aug = AugmentConfig()
    with tempfile.TemporaryDirectory() as tmp:
        make_features(Path(tmp), n=args.n, frames=args.frames, size=args.size, n_mels=args.n_mels,
                      mel_frames=args.mel_frames)
        feats = open_features(tmp)
        ds = AVDataset(feats.faces, feats.mels, range(args.n), feats.index["target"].to_numpy(),
                       face_tf=face_transform(aug), mel_tf=MelAugment(aug))
        loader = DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                            pin_memory=device.type == "cuda", drop_last=True,
                            persistent_workers=args.workers > 0)
        batches = [b for _, b in zip(range(4), loader)]  # warm-up epoch: starts the workers
        for _ in loader:
            pass
        start, seen = time.perf_counter(), 0
        for _ in range(args.loader_epochs):
            for batch in loader:
                seen += len(batch["target"])
        loader_rate = seen / (time.perf_counter() - start)

    model = build_model(ModelConfig(mode=args.mode, face_backbone=args.face_backbone, audio_backbone=args.audio_backbone))
    if device.type == "cuda" and cfg.channels_last:
        model.set_channels_last(True)
    module = TrainModule(model).to(device).train()
    optimizer = create_optimizer_v2(module, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = amp_settings(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp[0] and amp[1] == torch.float16)
    mixer = AVMix(aug)
    for i in range(2):  # warm-up (cuDNN autotune, allocator)
        train_step(module, batches[i % len(batches)], 0, mixer, optimizer, scaler, cfg.grad_clip, amp, device)
    _sync(device)
    start = time.perf_counter()
    for i in range(args.steps):
        train_step(module, batches[i % len(batches)], 0, mixer, optimizer, scaler, cfg.grad_clip, amp, device)
    _sync(device)
    step_rate = args.steps * args.batch / (time.perf_counter() - start)
    n_params = sum(p.numel() for p in model.parameters())
    amp_name = str(amp[1]).replace("torch.", "") if amp[0] else "off"
    print(f"loader:     {loader_rate:8.1f} samples/s  (workers={args.workers}, K={args.frames}, S={args.size}, "
          f"mel {args.n_mels}x{args.mel_frames}, augmentations on)")
    print(f"model step: {step_rate:8.1f} samples/s  ({device}, amp={amp_name}, batch={args.batch}, "
          f"{args.face_backbone}/{args.audio_backbone}, {n_params / 1e6:.2f}M params, threads={torch.get_num_threads()})")
    verdict = "loader-bound: raise train.num_workers" if loader_rate < step_rate else "compute-bound"
    print(f"train_bench: {verdict} (loader/step = {loader_rate / step_rate:.2f})")
    return {"loader_samples_per_s": loader_rate, "step_samples_per_s": step_rate}


if __name__ == "__main__":
    main()
