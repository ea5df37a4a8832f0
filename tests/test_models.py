"""Registry/factory, every modality mode learns, checkpoints round-trip, ImageNet-1K-only rule."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

from pipeline.data import to_model_inputs
from pipeline.models import (
    AVClassifier,
    ModelConfig,
    PretrainedRefused,
    build_model,
    check_pretrained,
    create_model,
    list_project_models,
    load_checkpoint,
    model_spec,
    register_model,
    save_checkpoint,
)

B, K, S, M, T = 6, 2, 32, 16, 32


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (B, K, S, S, 3), dtype=np.uint8)
    mels = rng.uniform(-80, 0, (B, M, T)).astype(np.float16)
    target = torch.tensor([0, 1] * (B // 2), dtype=torch.float32)
    f, m = to_model_inputs(faces, mels)
    return f, m, target


def _cfg(**kw) -> ModelConfig:
    base = dict(face_backbone="resnet10t", audio_backbone="resnet10t", embed_dim=32, drop_rate=0.0)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("mode, fusion", [("av", "concat"), ("av", "gate"), ("video", "concat"), ("audio", "concat")])
def test_each_mode_trains_a_step_and_lowers_the_loss(mode, fusion):
    torch.manual_seed(0)
    model = build_model(_cfg(mode=mode, fusion=fusion))
    faces, mels, target = _batch()
    out = model(faces, mels, return_features=True)
    assert out["logits"].shape == (B,) and out["embedding"].shape == (B, 32)
    if mode == "audio":
        assert out["face_maps"] is None and model.face is None
    else:
        assert out["face_maps"].shape[0] == B * K and out["face_maps"].ndim == 4
    if mode == "video":
        assert model.audio is None
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()  # train-mode BN on the fixed batch: the loss the optimiser sees
    losses = []
    for _ in range(6):
        loss = loss_fn(model(faces, mels), target)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        final = float(loss_fn(model(faces, mels), target))
    assert final < losses[0] * 0.8, losses + [final]


def test_any_timm_backbone_and_project_registry():
    model = build_model(_cfg(face_backbone="mobilenetv3_small_050", audio_backbone="efficientnet_b0"))
    faces, mels, _ = _batch()
    assert model(faces, mels).shape == (B,)
    assert "av_classifier" in list_project_models()
    assert isinstance(create_model("av_classifier", embed_dim=16), AVClassifier)
    assert isinstance(create_model("resnet10t", num_classes=0), timm.models.ResNet)

    @register_model("tiny_test_backbone")
    def tiny_test_backbone(num_classes=0, in_chans=3, pretrained=False, **_):
        net = timm.create_model("resnet10t", num_classes=num_classes, in_chans=in_chans)
        return net

    model = build_model(_cfg(mode="video", face_backbone="tiny_test_backbone"))
    assert model(faces, mels).shape == (B,)
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        create_model("no_such_net")
    with pytest.raises(ValueError, match="model.mode"):
        build_model(_cfg(mode="both"))


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path):
    cfg = _cfg(fusion="gate", ldc="cdc")
    model = build_model(cfg).eval()
    faces, mels, _ = _batch(1)
    config = {"decode": {"frames": K}, "faces": {"size": S}, "audio": {"n_mels": M, "frames": T}, "model": {}, "predict": {}}
    save_checkpoint(tmp_path / "m.pt", model, model_spec(cfg, for_checkpoint=True), config, {"epoch": np.int64(3)})
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert not loaded.training
    assert ckpt["model"]["name"] == "av_classifier" and ckpt["model"]["kwargs"]["pretrained"] is False
    assert ckpt["config"]["audio"]["frames"] == T and ckpt["meta"]["epoch"] == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(faces, mels), model(faces, mels))
    with pytest.raises(FileNotFoundError, match="train stage"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "name",
    ["resnet50.fb_ssl_yfcc100m_ft_in1k", "resnet50.fb_swsl_ig1b_ft_in1k", "vit_base_patch16_224.augreg_in21k_ft_in1k",
     "convnext_tiny.in12k_ft_in1k", "convnext_tiny.fb_in22k", "vit_base_patch16_clip_224.openai",
     "convnext_base.clip_laion2b_augreg_ft_in1k", "tf_efficientnet_b0.ns_jft_in1k", "vit_small_patch16_224.dino",
     "regnety_160.swag_ft_in1k", "coatnet_2_rw_224.sw_in12k_ft_in1k", "in22k", "vit_base_patch16_224", "resnet18.not_a_tag", "semi_weakly"],
)
def test_non_imagenet1k_pretrained_tags_are_refused(name):
    with pytest.raises(PretrainedRefused, match="ImageNet-1K"):
        check_pretrained(name)


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet18.a1_in1k", "resnet50.tv_in1k", "resnet10t", "efficientnet_b0.ra_in1k",
             "mobilenetv3_small_050", "convnext_tiny.fb_in1k", "a1_in1k", "minifasnet_v2",
             "maxvit_tiny_rw_224.sw_in1k", "swinv2_cr_tiny_ns_224.sw_in1k"],
)
def test_imagenet1k_tags_pass(name):
    check_pretrained(name)


def test_refused_tag_stops_model_building():
    with pytest.raises(PretrainedRefused):
        build_model(_cfg(pretrained=True, face_backbone="convnext_tiny.in12k_ft_in1k"))


def test_pretrained_weights_load_offline_from_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    torch.manual_seed(5)
    donor = timm.create_model("resnet10t", num_classes=1000)
    torch.save(donor.state_dict(), tmp_path / "resnet10t_in1k.pth")
    model = build_model(_cfg(pretrained=True, pretrained_file=str(tmp_path / "resnet10t_in1k.pth"),
                             audio_pretrained_file=str(tmp_path / "resnet10t_in1k.pth")))
    torch.testing.assert_close(model.face.backbone.conv1[0].weight, donor.conv1[0].weight)
    torch.testing.assert_close(model.face.backbone.layer4[0].conv1.weight, donor.layer4[0].conv1.weight)
    # audio branch: timm folds the RGB first conv into one channel
    torch.testing.assert_close(model.audio.backbone.conv1[0].weight, donor.conv1[0].weight.sum(1, keepdim=True))
    spec = model_spec(_cfg(pretrained=True, pretrained_file="x.pth"), for_checkpoint=True)
    assert spec["kwargs"]["pretrained"] is False and spec["kwargs"]["pretrained_file"] is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model(_cfg(pretrained=True, pretrained_file=str(tmp_path / "nope.pth")))
    # no file and nothing in the (empty) local cache: a clear error, never a download
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_model(_cfg(pretrained=True, mode="video"))


def test_channels_last_and_deepcopy_keep_outputs():
    model = build_model(_cfg()).eval()
    faces, mels, _ = _batch(2)
    ref = model(faces, mels)
    other = copy.deepcopy(model).set_channels_last(True)
    torch.testing.assert_close(other(faces, mels), ref, rtol=1e-4, atol=1e-4)
