"""Training: augmentations, the loss/objectives hook, the fit loop (resume, EMA, AMP, DDP) and K-fold CV."""
from pipeline.training.config import AugmentConfig, TrainConfig
from pipeline.training.objectives import TrainModule, bce_loss, build_objectives

__all__ = ["AugmentConfig", "TrainConfig", "TrainModule", "bce_loss", "build_objectives"]
