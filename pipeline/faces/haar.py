"""OpenCV Haar cascade (frontal faces): no model download, ships inside opencv-python 4.x."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.faces import FaceConfig, no_boxes

CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path() -> Path:
    """Where the cascade file of the installed OpenCV lives (raises if it is not shipped)."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder) / CASCADE if folder else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"OpenCV Haar cascade {CASCADE} not found (looked in {folder!r}). The opencv-python 4.x "
            "wheels ship it under cv2.data.haarcascades; OpenCV 5 wheels do not. Install "
            "'opencv-python-headless>=4.8,<5' or choose another faces.detector."
        )
    return path


class HaarDetector:
    """Viola-Jones cascade on the grey image; score = the cascade's level weight."""

    name = "haar"

    def __init__(self, cfg: FaceConfig) -> None:
        path = cascade_path()
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV could not load the Haar cascade {path}")
        self.min_face = float(cfg.min_face)
        self.scale_factor = float(cfg.haar_scale_factor)
        self.min_neighbors = int(cfg.haar_min_neighbors)

    def detect(self, image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # no global equalisation: it hides small faces
        side = max(16, int(self.min_face * min(grey.shape)))
        rects, _, weights = self.cascade.detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        if len(rects) == 0:
            return no_boxes()
        boxes = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(weights, dtype=np.float32).reshape(-1, 1)
        return np.hstack([boxes, scores])
