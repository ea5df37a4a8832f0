"""Knowledge distillation from a frozen teacher checkpoint of this pipeline (`seeds/000-*`).

Why: a bigger (or differently-seeded) model trained by this same pipeline carries softer,
better-calibrated targets than the 0/1 labels; the student learns them through the KL term.

loss = alpha * KL(log_softmax(s/T) || softmax(t/T)) * T'^2 + (1 - alpha) * CE(s, y),
T' = max(1, T * decay^(epoch / decay_every))        (notes: T=3, alpha=0.5, 0.95, every 10)

Our models emit one logit z; the 2-class logits [0, z] have softmax == [1-sigmoid(z), sigmoid(z)],
so the notes' formula applies verbatim and CE becomes BCE-with-logits (soft targets allowed).
KL uses `batchmean` like the notes.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["two_class_logits", "current_temperature", "distillation_loss", "DistillObjective"]


def two_class_logits(z: torch.Tensor) -> torch.Tensor:
    """One deepfake logit [B] -> 2-class logits [B, 2] = [0, z] (softmax equals sigmoid)."""
    z = z.float().reshape(-1)
    return torch.stack([torch.zeros_like(z), z], dim=1)


def current_temperature(temperature: float, epoch: int, decay: float = 0.95, decay_every: float = 10.0) -> float:
    """T' = max(1, T * decay^(epoch / decay_every)): the notes' shrinking KL scale."""
    return max(1.0, temperature * decay ** (epoch / decay_every))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, epoch: int,
                      alpha: float = 0.5, temperature: float = 3.0, decay: float = 0.95,
                      decay_every: float = 10.0) -> torch.Tensor:
    """The notes' KD loss for one-logit models; `target` in [0, 1] (soft labels allowed)."""
    s2, t2 = two_class_logits(student), two_class_logits(teacher.detach())
    kl = F.kl_div(F.log_softmax(s2 / temperature, dim=1), F.softmax(t2 / temperature, dim=1),
                  reduction="batchmean")
    t_now = current_temperature(temperature, epoch, decay, decay_every)
    ce = F.binary_cross_entropy_with_logits(student.float().reshape(-1), target.float().reshape(-1))
    return alpha * kl * t_now ** 2 + (1.0 - alpha) * ce


class DistillObjective(nn.Module):
    """Distillation against a frozen teacher; replaces the base classification loss.

    The teacher is kept out of `parameters()`-based optimisers (requires_grad False), always in
    eval mode (BN statistics frozen, no dropout) and is never exported with the student.
    """

    name = "distill"
    replaces_base_loss = True

    def __init__(self, teacher: nn.Module, alpha: float = 0.5, temperature: float = 3.0,
                 decay: float = 0.95, decay_every: float = 10.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"methods.distill.alpha must be in [0, 1], got {alpha}")
        if temperature <= 0 or decay_every <= 0:
            raise ValueError("methods.distill.temperature and decay_every must be > 0")
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.decay, self.decay_every = float(decay), float(decay_every)

    def train(self, mode: bool = True) -> "DistillObjective":
        super().train(mode)
        self.teacher.eval()
        return self

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
                        **kwargs) -> "DistillObjective":
        """Load the teacher with `pipeline.models.load_checkpoint` (a checkpoint of this pipeline)."""
        from pipeline.models import load_checkpoint

        if not path or not os.path.isfile(path):
            raise FileNotFoundError(
                f"methods.distill.teacher must name a checkpoint of this pipeline (e.g. models/final.pt "
                f"of an earlier run); not found: {path!r}"
            )
        teacher, _ = load_checkpoint(path, device=device)
        return cls(teacher, **kwargs)

    def forward(self, out: dict, batch: dict, epoch: int) -> torch.Tensor:
        logits = out["logits"]
        with torch.no_grad():
            t = self.teacher(batch["faces"], batch["mels"])
        return distillation_loss(logits, t, batch["target"].to(logits.device), epoch, self.alpha,
                                 self.temperature, self.decay, self.decay_every)
