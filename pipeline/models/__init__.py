"""Models: registry + factory, the audio-visual classifier, checkpoints, pretrained-weight rule."""
from pipeline.models.registry import create_model, is_project_model, list_project_models, register_model
from pipeline.models.pretrained import PretrainedRefused, check_pretrained, local_weights
from pipeline.models import av  # noqa: F401  (registers av_classifier)
from pipeline.models import minifasnet  # noqa: F401  (registers minifasnet_v1/v2/v1se/v2se)
from pipeline.models.av import AVClassifier
from pipeline.models.factory import (
    ModelConfig,
    build_model,
    load_checkpoint,
    model_spec,
    save_checkpoint,
    unwrap,
)

__all__ = [
    "AVClassifier",
    "ModelConfig",
    "PretrainedRefused",
    "build_model",
    "check_pretrained",
    "create_model",
    "is_project_model",
    "list_project_models",
    "load_checkpoint",
    "local_weights",
    "model_spec",
    "register_model",
    "save_checkpoint",
    "unwrap",
]
