"""pipeline.faces detectors and the crop/fallback logic of pipeline.features."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.encode import encode_clip, moving_scene
from pipeline.faces import REGISTRY, FaceConfig, create_detector
from pipeline.faces.haar import cascade_path
from pipeline.features import AudioConfig, crop_faces, detect_face, extract_features, square_crop
from pipeline.video import DecodeConfig, DecodedVideo, decode_video
from yunet_onnx import SCORE, expected_box, write_yunet_model

RED, BLUE = (255, 0, 0), (0, 0, 255)


def frames(n: int, face: bool = True, height: int = 240, width: int = 320) -> np.ndarray:
    return np.stack(list(moving_scene(n, height, width, face=face)))


def squares(height: int, width: int, *cells: tuple[int, int, tuple[int, int, int]], side: int = 32) -> np.ndarray:
    """Black RGB image with a `side`-pixel square of colour at each grid cell (row, col): what the
    stand-in YuNet of tests/yunet_onnx.py detects (red only, at its 32-pixel stride)."""
    img = np.zeros((height, width, 3), np.uint8)
    for row, col, colour in cells:
        img[row * side : (row + 1) * side, col * side : (col + 1) * side] = colour
    return img


@pytest.fixture
def yunet_path(tmp_path: Path) -> str:
    """A generated ONNX file with the 2023mar YuNet interface, run by the real cv2.FaceDetectorYN."""
    return str(write_yunet_model(tmp_path / "face_detection_yunet_2023mar.onnx"))


def test_haar_cascade_ships_with_opencv() -> None:
    path = cascade_path()
    assert path.is_file() and path.stat().st_size > 100_000


def test_haar_finds_the_pasted_face_and_not_the_background() -> None:
    det = create_detector(FaceConfig(detector="haar"))
    with_face = frames(6)
    for img in with_face:
        boxes = det.detect(img)
        assert boxes.shape[1] == 5 and boxes.dtype == np.float32
        assert len(boxes) >= 1
        x, y, w, h, _ = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]
        assert 30 <= w <= 160 and 30 <= h <= 160
    for img in frames(6, face=False):
        assert len(det.detect(img)) == 0


def test_detection_on_downscaled_frame_maps_boxes_back() -> None:
    big = frames(1, height=720, width=960)[0]
    cfg = FaceConfig(detect_side=240)
    box = detect_face(big, create_detector(cfg), cfg)
    assert box is not None
    full = detect_face(big, create_detector(FaceConfig(detect_side=960)), FaceConfig(detect_side=960))
    assert full is not None
    # the same face, in full-frame pixels, whichever size detection ran at
    centre_small = box[:2] + box[2:] / 2
    centre_full = full[:2] + full[2:] / 2
    assert np.abs(centre_small - centre_full).max() < 0.1 * full[2]
    assert box[2] == pytest.approx(full[2], rel=0.3)


def test_yunet_needs_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="faces.model_path is not set"):
        create_detector(FaceConfig(detector="yunet"))
    missing = tmp_path / "face_detection_yunet_2023mar.onnx"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_detector(FaceConfig(detector="yunet", model_path=str(missing)))


def test_yunet_returns_the_face_opencv_decodes_in_image_pixels(yunet_path: str) -> None:
    """x, y, w, h from columns 0-3 and the score from column 14 of FaceDetectorYN's output; the
    image goes in as BGR (the blue square would be red to the model if the channels were not swapped)."""
    det = create_detector(FaceConfig(detector="yunet", model_path=yunet_path))
    assert det.name == "yunet"
    boxes = det.detect(squares(240, 320, (3, 4, RED), (1, 8, BLUE)))
    assert boxes.shape == (1, 5) and boxes.dtype == np.float32
    assert expected_box(3, 4) == (128.0, 92.0, 32.0, 40.0)  # cell centre (144, 112), 32 x 40 box
    np.testing.assert_allclose(boxes[0, :4], expected_box(3, 4), atol=1.0)
    assert boxes[0, 4] == pytest.approx(SCORE, abs=1e-3) and SCORE == pytest.approx(0.9)
    # a 16:9 frame (360 rows: not a multiple of 32, so OpenCV pads) and a new size on the same detector
    boxes = det.detect(squares(360, 640, (10, 2, RED)))
    np.testing.assert_allclose(boxes[:, :4], [expected_box(10, 2)], atol=1.0)
    assert det.detect(squares(240, 320)).shape == (0, 5)


def test_yunet_score_threshold_drops_weaker_faces(yunet_path: str) -> None:
    img = squares(240, 320, (3, 4, RED))
    above = create_detector(FaceConfig(detector="yunet", model_path=yunet_path, score_threshold=0.95))
    assert above.detect(img).shape == (0, 5)
    below = create_detector(FaceConfig(detector="yunet", model_path=yunet_path, score_threshold=0.85))
    assert len(below.detect(img)) == 1
    dim = squares(240, 320, (3, 4, (128, 0, 0)))  # score sqrt(128/255 * 0.81) = 0.64: only the lower bar passes
    assert len(below.detect(dim)) == 0
    default = create_detector(FaceConfig(detector="yunet", model_path=yunet_path))  # 0.6
    assert default.detect(dim)[:, 4] == pytest.approx([0.64], abs=0.01)


def test_yunet_min_face_drops_small_boxes(yunet_path: str) -> None:
    img = squares(240, 320, (3, 4, RED))  # box 32 x 40: shorter side 32 = 0.133 x 240
    keep = create_detector(FaceConfig(detector="yunet", model_path=yunet_path, min_face=0.13))
    assert len(keep.detect(img)) == 1
    drop = create_detector(FaceConfig(detector="yunet", model_path=yunet_path, min_face=0.14))
    assert drop.detect(img).shape == (0, 5)


@pytest.mark.parametrize("height", [480, 360])
def test_yunet_on_downscaled_frame_maps_boxes_back_and_crops_the_face(yunet_path: str, height: int) -> None:
    """detect_face runs YuNet at detect_side (here half size) and returns full-resolution pixels;
    crop_faces then centres the crops on that box."""
    cfg = FaceConfig(detector="yunet", model_path=yunet_path, detect_side=320, size=32, margin=0.25)
    det = create_detector(cfg)
    # 64-pixel squares on the full frame = 32-pixel cells (3, 4) and (1, 6) of the half-size frame
    first = squares(height, 640, (3, 4, RED), side=64)
    second = squares(height, 640, (1, 6, RED), side=64)
    box = detect_face(first, det, cfg)
    assert box is not None
    x, y, w, h = expected_box(3, 4)
    np.testing.assert_allclose(box, [2 * x, 2 * y, 2 * w, 2 * h], atol=2.0)  # (256, 184, 64, 80)

    crops, status, found, reason = crop_faces(np.stack([first, second]), det, cfg, 3)
    assert (status, found, reason) == ("ok", 2, "") and crops.shape == (3, 32, 32, 3)
    for crop in crops:  # crop side 80 * 1.5 = 120 around the square's centre: red middle, black corners
        assert crop[12:20, 12:20, 0].min() == 255 and crop[12:20, 12:20, 1:].max() == 0
        assert crop[:4, :4].max() == 0 and crop[-4:, -4:].max() == 0
    np.testing.assert_array_equal(crops[2], crops[0])  # K=3 > 2 frames: repeated in order


def test_unknown_detector_and_bad_settings_fail_clearly() -> None:
    with pytest.raises(ValueError, match="faces.detector must be one of"):
        FaceConfig(detector="dlib")
    with pytest.raises(ValueError, match="faces.pick"):
        FaceConfig(pick="first")
    assert {"haar", "yunet", "centre"} <= set(REGISTRY)


def test_square_crop_with_margin_and_border_padding() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 90:110] = 255  # a white 20x20 "face"
    crop = square_crop(img, np.array([90, 40, 20, 20]), margin=0.5, size=40)
    assert crop.shape == (40, 40, 3)
    assert crop[10:30, 10:30].min() == 255 and crop[:5].max() == 0  # face centred, margin around it
    corner = square_crop(img, np.array([-10, -10, 30, 30]), margin=0.0, size=30)
    assert corner.shape == (30, 30, 3) and corner[:10, :10].max() == 0  # outside the frame = black
    centre = square_crop(img, None, margin=0.25, size=50)
    assert centre.shape == (50, 50, 3) and centre[21:29, 21:29].min() == 255  # centre square of the frame
    assert centre[:15].max() == 0 and centre[35:].max() == 0


def test_faces_ok_nearest_centre_none() -> None:
    det = create_detector(FaceConfig())
    cfg = FaceConfig(size=48)
    with_face = frames(4)
    crops, status, found, reason = crop_faces(with_face, det, cfg, 4)
    assert (status, found, reason) == ("ok", 4, "") and crops.shape == (4, 48, 48, 3)

    mixed = with_face.copy()
    mixed[1] = frames(2, face=False)[1]  # frame 1 has no face: reuses frame 0's box
    crops_mixed, status, found, reason = crop_faces(mixed, det, cfg, 4)
    assert status == "nearest" and found == 3 and "3/4" in reason
    box0 = detect_face(mixed[0], det, cfg)
    np.testing.assert_array_equal(crops_mixed[1], square_crop(mixed[1], box0, cfg.margin, 48))

    crops_none, status, found, reason = crop_faces(frames(3, face=False), det, cfg, 5)
    assert status == "centre" and found == 0 and "no face" in reason
    np.testing.assert_array_equal(crops_none[3], crops_none[0])  # padded by repeating in order

    empty, status, found, _ = crop_faces(np.zeros((0, 0, 0, 3), np.uint8), det, cfg, 4)
    assert status == "none" and found == 0 and empty.shape == (4, 48, 48, 3) and empty.max() == 0


def test_detector_swap_changes_the_crops() -> None:
    imgs = frames(3)
    haar_crops, haar_status, _, _ = crop_faces(imgs, create_detector(FaceConfig(detector="haar")), FaceConfig(), 3)
    centre_crops, centre_status, _, _ = crop_faces(
        imgs, create_detector(FaceConfig(detector="centre")), FaceConfig(detector="centre"), 3
    )
    assert haar_status == "ok" and centre_status == "centre"
    assert np.abs(haar_crops.astype(int) - centre_crops.astype(int)).mean() > 10


def test_extract_features_from_a_decoded_video(tmp_path: Path) -> None:
    sr = 16000
    tone = 0.3 * np.sin(2 * np.pi * 500 * np.arange(sr) / sr)
    path = encode_clip(tmp_path / "v.mp4", frames(10), 10, audio=tone, sample_rate=sr)
    decoded = decode_video(path, DecodeConfig(frames=4))
    feats = extract_features(decoded, create_detector(FaceConfig()), FaceConfig(size=32), AudioConfig(n_mels=16, frames=40), 6)
    assert feats.faces.shape == (6, 32, 32, 3) and feats.faces.dtype == np.uint8
    assert feats.mel.shape == (16, 40) and feats.mel.dtype == np.float16
    assert (feats.face_status, feats.faces_found, feats.audio_status) == ("ok", 4, "ok")

    mute = DecodedVideo(decoded.frames, decoded.times, np.zeros(0, np.float32), 1.0, has_audio=False)
    feats = extract_features(mute, create_detector(FaceConfig()), FaceConfig(size=32), AudioConfig(n_mels=16, frames=40), 4)
    assert feats.audio_status == "missing" and (feats.mel == -80).all() and "no audio track" in feats.reason
