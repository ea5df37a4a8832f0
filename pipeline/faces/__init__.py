"""Face detectors behind one small interface, chosen by `faces.detector` in params.yaml.

A detector is built from a `FaceConfig` and has one method::

    detect(image: np.ndarray) -> np.ndarray   # image uint8 RGB [h, w, 3]
                                             # -> float32 [n, 5] boxes (x, y, w, h, score) in image pixels

Boxes smaller than `faces.min_face` x the image's shorter side are not returned. Detection
runs on a frame already downscaled to `faces.detect_side` (see `pipeline.features`), which
maps the boxes back to the frame; the detector does not need to know about that.

Adding a detector = one new file in this package with a class taking `FaceConfig`, plus one
line in `REGISTRY` below ("name": "module:Class"). Modules are imported only when chosen.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

REGISTRY: dict[str, str] = {
    "haar": "pipeline.faces.haar:HaarDetector",  # OpenCV Haar cascade shipped in opencv-python 4.x
    "yunet": "pipeline.faces.yunet:YuNetDetector",  # cv2.FaceDetectorYN, ONNX file in faces.model_path
    "centre": "pipeline.faces.centre:CentreDetector",  # finds nothing: every crop is the centre square
}
PICKS = ("largest", "score")


@dataclass(frozen=True)
class FaceConfig:
    """`faces:` section of params.yaml."""

    detector: str = "haar"
    model_path: str | None = None  # yunet: path to face_detection_yunet_*.onnx
    detect_side: int = 320  # detection runs on a frame downscaled to this longest side
    min_face: float = 0.08  # smallest face, fraction of the frame's shorter side
    margin: float = 0.1  # crop margin around the box, fraction of box size (each side)
    size: int = 64  # output crop size (square)
    score_threshold: float = 0.6  # yunet confidence threshold
    pick: str = "largest"  # largest | score: which face to keep when several are found
    haar_scale_factor: float = 1.1  # haar: image pyramid step
    haar_min_neighbors: int = 4  # haar: overlapping hits needed to accept a face

    def __post_init__(self) -> None:
        if self.detector not in REGISTRY:
            raise ValueError(f"faces.detector must be one of {sorted(REGISTRY)}, got {self.detector!r}")
        if self.pick not in PICKS:
            raise ValueError(f"faces.pick must be one of {PICKS}, got {self.pick!r}")
        if int(self.size) < 8:
            raise ValueError(f"faces.size must be >= 8, got {self.size}")
        if int(self.detect_side) < 32:
            raise ValueError(f"faces.detect_side must be >= 32, got {self.detect_side}")
        if not 0.0 <= float(self.min_face) < 1.0:
            raise ValueError(f"faces.min_face must be in [0, 1), got {self.min_face}")
        if float(self.margin) < 0:
            raise ValueError(f"faces.margin must be >= 0, got {self.margin}")


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [h, w, 3] -> float32 [n, 5] (x, y, w, h, score)."""
        ...


def create_detector(cfg: FaceConfig) -> Detector:
    """The detector named by `cfg.detector`; fails with a clear message if it cannot be built."""
    try:
        target = REGISTRY[cfg.detector]
    except KeyError:
        raise ValueError(f"unknown face detector {cfg.detector!r}; known: {sorted(REGISTRY)}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(cfg)


def no_boxes() -> np.ndarray:
    """The empty detection result."""
    return np.zeros((0, 5), dtype=np.float32)


__all__ = ["REGISTRY", "FaceConfig", "Detector", "create_detector", "no_boxes"]
