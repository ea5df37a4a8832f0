"""One normalisation for every caller; memmapped features -> Dataset items; per-sample augmentations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data import FACE_MEAN, FACE_STD, AVDataset, open_features, to_model_inputs
from pipeline.training.augment import MelAugment, face_transform
from pipeline.training.config import AugmentConfig
from pipeline.training.synthetic import make_features


def test_to_model_inputs_normalises_exactly_and_accepts_numpy_or_torch():
    faces = np.zeros((2, 3, 4, 4, 3), dtype=np.uint8)
    faces[0, :, :, :, 0] = 255
    mels = np.full((2, 5, 7), -80, dtype=np.float16)
    mels[1] = 0
    mels[0, 0, 0] = -40
    f, m = to_model_inputs(faces, mels)
    assert f.shape == (2, 3, 3, 4, 4) and m.shape == (2, 1, 5, 7)
    assert f.dtype == torch.float32 and m.dtype == torch.float32
    assert f[0, 0, 0, 0, 0].item() == pytest.approx((1 - FACE_MEAN[0]) / FACE_STD[0])
    assert f[1, 2, 1, 2, 3].item() == pytest.approx(-FACE_MEAN[1] / FACE_STD[1])
    assert m[0, 0, 0, 1].item() == -1.0 and m[1].eq(1.0).all() and m[0, 0, 0, 0].item() == 0.0
    f2, m2 = to_model_inputs(torch.from_numpy(faces), torch.from_numpy(mels.astype(np.float32)))
    assert torch.equal(f, f2) and torch.equal(m, m2)


@pytest.mark.parametrize(
    "faces, mels, match",
    [((2, 3, 4, 4), (2, 5, 7), "faces must be"), ((2, 3, 4, 4, 3), (2, 5), "mels must be"),
     ((2, 3, 4, 4, 3), (3, 5, 7), "batch sizes differ")],
)
def test_to_model_inputs_rejects_wrong_shapes(faces, mels, match):
    with pytest.raises(ValueError, match=match):
        to_model_inputs(np.zeros(faces, np.uint8), np.zeros(mels, np.float16))


def test_open_features_and_dataset_read_the_memmaps(tmp_path):
    index = make_features(tmp_path, n=6, frames=3, size=16, n_mels=8, mel_frames=20)
    feats = open_features(tmp_path)
    assert isinstance(feats.faces, np.memmap) and isinstance(feats.mels, np.memmap)
    rows = feats.rows_for(["vid_0004.mp4", "vid_0001.mp4"])
    assert rows.tolist() == [4, 1]
    ds = AVDataset(feats.faces, feats.mels, rows, index["target"].to_numpy()[rows])
    item = ds[0]
    assert item["faces"].dtype == torch.uint8 and item["faces"].shape == (3, 16, 16, 3)
    assert item["mels"].dtype == torch.float32 and item["mels"].shape == (8, 20)
    assert np.array_equal(item["faces"].numpy(), feats.faces[4])
    assert item["row"] == 4 and item["target"].item() == index["target"][4]
    with pytest.raises(KeyError, match="no extracted features"):
        feats.rows_for(["missing.mp4"])


def test_open_features_checks_files_and_shapes(tmp_path):
    with pytest.raises(FileNotFoundError, match="extract stage"):
        open_features(tmp_path)
    make_features(tmp_path, n=4, frames=2, size=8, n_mels=4, mel_frames=6)
    np.save(tmp_path / "mels.npy", np.zeros((3, 4, 6), np.float16))
    with pytest.raises(ValueError, match="4 rows but mels.npy has 3"):
        open_features(tmp_path)


def test_face_augment_uses_one_draw_for_all_frames():
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    flip_only = face_transform(AugmentConfig(hflip=1.0, color_jitter=0, blur_prob=0, jpeg_prob=0, affine_prob=0))
    assert torch.equal(flip_only(frames), frames.flip(-1))
    full = face_transform(AugmentConfig(hflip=0.5, color_jitter=0.3, blur_prob=1.0, jpeg_prob=1.0, affine_prob=1.0))
    same = frames[:1].repeat(4, 1, 1, 1)
    out = full(same)
    assert out.dtype == torch.uint8 and out.shape == same.shape
    assert all(torch.equal(out[0], out[i]) for i in range(1, 4))  # identical frames stay identical
    assert not torch.equal(out, same)
    assert face_transform(AugmentConfig(hflip=0, color_jitter=0, blur_prob=0, jpeg_prob=0, affine_prob=0)) is None


def test_mel_augment_masks_to_the_floor_and_keeps_silence_silent():
    torch.manual_seed(1)
    cfg = AugmentConfig(spec_prob=1.0, spec_time_mask=10, spec_freq_mask=4, gain_db=6.0)
    aug = MelAugment(cfg)
    mel = torch.full((16, 40), -30.0)
    out = [aug(mel) for _ in range(20)]
    assert all(o.min() >= -80 and o.max() <= 0 for o in out)
    assert any((o == -80).any() for o in out)  # masks applied
    levels = {float(o[o > -80].mean()) for o in out if (o > -80).any()}
    assert len(levels) > 1 and all(-36.0 <= v <= -24.0 for v in levels)  # gain within +-6 dB
    silent = torch.full((16, 40), -80.0)
    assert torch.equal(aug(silent), silent)
    assert not MelAugment(AugmentConfig(gain_db=0, spec_prob=0))
