"""A detector that never finds a face, so every crop is the centre square of the frame.

Useful for audio-led experiments, for footage where the face fills the frame, and as the
cheapest baseline to compare real detectors against.
"""
from __future__ import annotations

import numpy as np

from pipeline.faces import FaceConfig, no_boxes


class CentreDetector:
    name = "centre"

    def __init__(self, cfg: FaceConfig) -> None:
        self.cfg = cfg

    def detect(self, image: np.ndarray) -> np.ndarray:
        return no_boxes()
