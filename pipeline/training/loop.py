"""Train one model (a CV fold or the final refit) with resume-after-kill.

AdamW + cosine schedule with warm-up (timm), gradient clipping, EMA of weights (timm
ModelEmaV3), AMP and channels_last on CUDA, early stopping on validation AUC, DDP when
launched by torchrun. After every epoch rank 0 writes `<tag>_last.pt` (model, objectives,
optimizer, scheduler, EMA, scaler, RNG of every rank, history), so a killed run resumes at the
next epoch and reproduces the uninterrupted run; `<tag>_done.json` marks a finished fit.
"""
from __future__ import annotations

import contextlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import log_loss, roc_auc_score
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler, Subset
from tqdm.auto import tqdm

from pipeline import atomic
from pipeline.data import AVDataset, Features, to_model_inputs
from pipeline.models import ModelConfig, build_model
from pipeline.training.augment import AVMix, MelAugment, face_transform
from pipeline.training.config import AugmentConfig, TrainConfig
from pipeline.training.distributed import DistEnv, barrier, broadcast_object, gather_objects
from pipeline.training.objectives import TrainModule, build_objectives


class TrainingInterrupted(RuntimeError):
    """Raised by `fit(stop_after=N)` after N epochs: a kill, simulated, after the checkpoint."""


@dataclass
class FitSpec:
    """What one fit trains on. `epochs` = epochs to run; the LR schedule always spans train.epochs."""

    tag: str
    train_rows: Sequence[int]
    train_targets: Sequence[float]
    val_rows: Sequence[int] | None = None
    val_targets: Sequence[float] | None = None
    epochs: int = 10
    seed: int = 0


@dataclass
class FitResult:
    tag: str
    best_epoch: int  # 1-based; for a refit the number of epochs run
    best_auc: float | None
    best_loss: float | None
    epochs_run: int
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    val_scores: list[float] | None = None  # at the best epoch, in val_rows order


def seed_everything(seed: int) -> None:
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TailMergingBatchSampler(BatchSampler):
    """BatchSampler that folds a trailing batch of one sample into the previous batch.

    BatchNorm cannot train on a batch of one, and dropping it would lose data every epoch.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int) -> None:
        super().__init__(sampler, batch_size, drop_last=False)

    def __iter__(self) -> Iterator[list[int]]:
        batches = list(super().__iter__())
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches[-2].extend(batches.pop())
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest >= 2 or (rest and full == 0) else 0)


def amp_settings(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    """AMP on CUDA only: bf16 where the GPU supports it (no scaler needed), else fp16."""
    if not (cfg.amp and device.type == "cuda"):
        return False, torch.float32
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(enabled: bool, dtype: torch.dtype, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, dtype=dtype) if enabled else contextlib.nullcontext()


def train_step(
    net: nn.Module, batch: Mapping[str, Any], epoch: int, mixer: AVMix, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, grad_clip: float, amp: tuple[bool, torch.dtype], device: torch.device,
) -> torch.Tensor:
    """One optimisation step on a loader batch (normalise, mix, forward under AMP, clip, step).

    `net` is the TrainModule (or its DDP wrapper); returns the detached loss.
    """
    faces, mels = to_model_inputs(batch["faces"], batch["mels"], device)
    target_hard = batch["target"].to(device, non_blocking=True).float()
    faces, mels, target, mix = mixer(faces, mels, target_hard)
    inputs = {"faces": faces, "mels": mels, "target": target, "target_hard": target_hard, "mix": mix, "row": batch["row"]}
    with _autocast(*amp, device):
        loss, _out = net(inputs, epoch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@torch.no_grad()
def predict_dataset(
    model: nn.Module, dataset: AVDataset, batch_size: int, env: DistEnv, amp: tuple[bool, torch.dtype] = (False, torch.float32)
) -> np.ndarray:
    """Sigmoid scores for every item of `dataset` (in order); ranks score shards and gather."""
    was_training = model.training
    model.eval()
    shard = list(range(env.rank, len(dataset), env.world_size))
    loader = DataLoader(Subset(dataset, shard), batch_size=batch_size, shuffle=False, num_workers=0)
    pairs: list[tuple[int, float]] = []
    for batch in loader:
        faces, mels = to_model_inputs(batch["faces"], batch["mels"], env.device)
        with _autocast(*amp, env.device):
            logits = model(faces, mels)
        scores = torch.sigmoid(logits.float()).cpu().numpy()
        pairs.extend(zip(batch["index"].tolist(), scores.tolist()))
    model.train(was_training)
    merged = dict(p for part in gather_objects(pairs, env) for p in part)
    return np.asarray([merged[i] for i in range(len(dataset))], dtype=np.float64)


def _evaluate(scores: np.ndarray, targets: np.ndarray) -> tuple[float | None, float]:
    y = np.asarray(targets, dtype=int)
    loss = float(log_loss(y, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]))
    auc = float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else None
    return auc, loss


def _better(auc: float | None, loss: float, best_auc: float | None, best_loss: float | None, monitor: str) -> bool:
    """Is this epoch the new best fold model?

    `loss`: lower validation log loss wins. It is a proper score, so it ranks a confident correct
    model above a near-constant one that happens to order a 10-video fold perfectly (AUC 1.0 at
    epoch 1-3 is common on small folds and picked such models under `auc`).
    `auc`: higher fold AUC wins; equal AUC falls back to lower loss. A fold with one class has no
    AUC, so both monitors compare loss there.
    """
    if best_loss is None:
        return True
    if monitor == "auc" and auc is not None and best_auc is not None and abs(auc - best_auc) > 1e-12:
        return auc > best_auc
    return loss < best_loss - 1e-12


def fit(
    features: Features,
    spec: FitSpec,
    model_cfg: ModelConfig,
    aug_cfg: AugmentConfig,
    cfg: TrainConfig,
    env: DistEnv,
    state_dir: str | Path,
    stop_after: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train `spec` to the end (or early stop), resuming from `<tag>_last.pt` when present.

    Writes `<tag>_best.pt` (exported weights: EMA when enabled) and `<tag>_done.json`.
    `params` (the whole params dict) supplies the optional `methods:` objectives.
    """
    state_dir = Path(state_dir)
    done_path = state_dir / f"{spec.tag}_done.json"
    last_path = state_dir / f"{spec.tag}_last.pt"
    best_path = state_dir / f"{spec.tag}_best.pt"
    if done_path.is_file():
        return FitResult(**json.loads(done_path.read_text()))

    device = env.device
    seed = int(spec.seed)
    seed_everything(seed)  # identical initial weights on every rank
    model = build_model(model_cfg)
    if device.type == "cuda" and cfg.channels_last and hasattr(model, "set_channels_last"):
        model.set_channels_last(True)
    if device.type == "cuda" and env.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    rows0 = np.sort(np.asarray(spec.train_rows)[:2])
    example = dict(zip(("faces", "mels"), to_model_inputs(features.faces[rows0], features.mels[rows0])))
    objectives = build_objectives(params, model, example, cfg.unimodal_weight)
    module = TrainModule(model, objectives).to(device)
    ema = ModelEmaV3(module.model, decay=cfg.ema_decay, use_warmup=True) if cfg.ema_decay > 0 else None
    net: nn.Module = module
    if env.distributed:
        net = DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(objectives),
        )

    per_rank = max(1, cfg.batch_size // env.world_size)
    if len(spec.train_rows) < 2 * env.world_size:
        raise ValueError(f"{spec.tag}: {len(spec.train_rows)} training videos cannot fill {env.world_size} rank(s)")
    train_ds = AVDataset(
        features.faces, features.mels, spec.train_rows, spec.train_targets,
        face_tf=face_transform(aug_cfg), mel_tf=MelAugment(aug_cfg) or None,
    )
    sampler = DistributedSampler(train_ds, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=seed)
    loader = DataLoader(
        train_ds,
        batch_sampler=TailMergingBatchSampler(sampler, per_rank),
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )
    val_ds = None
    if spec.val_rows is not None:
        val_ds = AVDataset(features.faces, features.mels, spec.val_rows, spec.val_targets)
    mixer = AVMix(aug_cfg)
    amp = amp_settings(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp[0] and amp[1] == torch.float16)
    optimizer = create_optimizer_v2(module, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(loader.batch_sampler)  # type: ignore[arg-type]
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
        warmup_lr=cfg.lr * 0.01, min_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=steps_per_epoch,
    )

    start_epoch, step = 0, 0
    history: list[dict] = []
    best: dict[str, Any] = {"epoch": 0, "auc": None, "loss": None, "scores": None}
    finished = stopped = False
    if last_path.is_file():
        ck = torch.load(last_path, map_location="cpu", weights_only=False)
        module.load_state_dict(ck["module"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        start_epoch, step, history, best = ck["epoch"], ck["step"], ck["history"], ck["best"]
        finished, stopped = ck["finished"], ck["stopped"]
        rng = ck["rng"]
        if len(rng) == env.world_size:
            _set_rng_state(rng[env.rank])
        else:  # resumed on another number of ranks: reseed deterministically instead
            seed_everything(seed + 7919 * start_epoch + env.rank)
    else:
        seed_everything(seed + env.rank)  # augmentation differs per rank

    eval_model = ema.module if ema is not None else module.model
    bar = tqdm(total=spec.epochs, initial=start_epoch, desc=spec.tag, disable=not env.is_main, leave=False, dynamic_ncols=True)
    epochs_this_run = 0
    epoch = start_epoch
    while not finished and epoch < spec.epochs:
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, n_seen = 0.0, 0
        for batch in loader:
            loss = train_step(net, batch, epoch, mixer, optimizer, scaler, cfg.grad_clip, amp, device)
            step += 1
            if ema is not None:
                ema.update(module.model, step=step)
            scheduler.step_update(num_updates=step)
            loss_sum += float(loss) * len(batch["target"])
            n_seen += len(batch["target"])
        scheduler.step(epoch + 1)
        totals = np.sum(gather_objects((loss_sum, n_seen), env), axis=0)
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(totals[0] / max(1, totals[1])),
                                  "lr": float(optimizer.param_groups[0]["lr"])}
        if val_ds is not None:
            scores = predict_dataset(eval_model, val_ds, max(2, per_rank * 2), env, amp)
            auc, vloss = _evaluate(scores, np.asarray(spec.val_targets))
            record.update(val_auc=auc, val_loss=vloss, val_scores=scores.tolist())
            if _better(auc, vloss, best["auc"], best["loss"], cfg.monitor):
                best = {"epoch": epoch + 1, "auc": auc, "loss": vloss, "scores": record["val_scores"]}
                if env.is_main:
                    atomic.save_torch(best_path, {"state_dict": _cpu_state(eval_model), "epoch": epoch + 1})
            stopped = epoch + 1 - best["epoch"] >= cfg.patience
        else:
            best = {"epoch": epoch + 1, "auc": None, "loss": None, "scores": None}
        history.append(record)
        epoch += 1
        finished = stopped or epoch >= spec.epochs
        if val_ds is None and finished and env.is_main:
            atomic.save_torch(best_path, {"state_dict": _cpu_state(eval_model), "epoch": epoch})
        rng_all = gather_objects(_rng_state(), env)
        if env.is_main:
            atomic.save_torch(last_path, {
                "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "epoch": epoch, "step": step, "history": history, "best": best,
                "finished": finished, "stopped": stopped, "rng": rng_all,
            })
        barrier(env)
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.4f}", auc="-" if record.get("val_auc") is None else f"{record['val_auc']:.4f}")
        epochs_this_run += 1
        if stop_after is not None and epochs_this_run >= stop_after and not finished:
            bar.close()
            raise TrainingInterrupted(f"{spec.tag}: stopped after {epochs_this_run} epoch(s) as asked")
    bar.close()
    result = FitResult(
        tag=spec.tag, best_epoch=int(best["epoch"]), best_auc=best["auc"], best_loss=best["loss"],
        epochs_run=epoch, stopped_early=bool(stopped), history=history, val_scores=best["scores"],
    )
    if env.is_main:
        atomic.write_json(done_path, asdict(result))
    barrier(env)
    return broadcast_object(result, env)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
