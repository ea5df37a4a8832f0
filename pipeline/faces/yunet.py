"""OpenCV YuNet (cv2.FaceDetectorYN): a small CNN, far more robust than Haar to pose and light.

Needs the ONNX file from the OpenCV model zoo (face_detection_yunet_2023mar.onnx) at
`faces.model_path`; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.faces import FaceConfig, no_boxes

NMS_THRESHOLD = 0.3


class YuNetDetector:
    """Boxes with YuNet's confidence as score; faces below `faces.score_threshold` are dropped."""

    name = "yunet"

    def __init__(self, cfg: FaceConfig) -> None:
        if not cfg.model_path:
            raise ValueError(
                "faces.detector is 'yunet' but faces.model_path is not set: download "
                "face_detection_yunet_2023mar.onnx from the OpenCV model zoo and set faces.model_path to it"
            )
        path = Path(cfg.model_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"faces.model_path {str(path)!r} does not exist (resolved: {path.resolve()}); YuNet needs "
                "the ONNX model file face_detection_yunet_*.onnx from the OpenCV model zoo"
            )
        self.model = cv2.FaceDetectorYN.create(str(path), "", (320, 320), float(cfg.score_threshold), NMS_THRESHOLD)
        self.min_face = float(cfg.min_face)

    def detect(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        self.model.setInputSize((w, h))
        _, faces = self.model.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if faces is None or len(faces) == 0:
            return no_boxes()
        boxes = np.asarray(faces, dtype=np.float32)[:, [0, 1, 2, 3, 14]]
        keep = np.minimum(boxes[:, 2], boxes[:, 3]) >= self.min_face * min(h, w)
        return boxes[keep]
