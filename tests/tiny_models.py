"""A tiny project model made input-sensitive without training, shared by predict/infer/budget tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data import open_features, to_model_inputs
from pipeline.models import ModelConfig, build_model

SMALL = ModelConfig(embed_dim=16, drop_rate=0.0)


def calibrated_model(features_dir: Path) -> torch.nn.Module:
    """The project model, random init, with BatchNorm statistics taken from the test arrays (a
    fresh net's defaults squash every input to about the same logit) and a larger head, so
    score differences show well above float noise."""
    torch.manual_seed(0)
    model = build_model(SMALL)
    feats = open_features(features_dir)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(*to_model_inputs(np.array(feats.faces), np.array(feats.mels)))
        model.head[-1].weight.mul_(20.0)
    return model.eval()
