"""Optional objectives (Fourier, distillation, triplet): formulas, switches, gradients, export."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import load_params
from pipeline.data import open_features, to_model_inputs
from pipeline.methods import MethodsConfig, build_objectives, load_methods_config
from pipeline.methods.distill import current_temperature, distillation_loss
from pipeline.methods.fourier import fourier_spectrum, freq_dynamic_weight, low_block_size
from pipeline.methods.triplet import batch_hard_triplet_loss, hard_labels
from pipeline.models import ModelConfig, build_model, model_spec, save_checkpoint
from pipeline.training import AugmentConfig, TrainConfig, TrainModule
from pipeline.training import build_objectives as build_training_objectives
from pipeline.training.distributed import DistEnv
from pipeline.training.loop import FitSpec, fit
from pipeline.training.synthetic import make_features

B, K, S, M, T = 6, 2, 32, 32, 48


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Real uint8 crops/dB mels through the pipeline's one input function; fakes carry stripes."""
    rng = np.random.default_rng(seed)
    target = np.array([0, 1] * (B // 2), dtype=np.float32)
    yy, xx = np.mgrid[0:S, 0:S]
    base = (96 + 64 * np.sin(xx / 5.0) * np.cos(yy / 7.0))[None, None, :, :, None]
    faces = np.repeat(np.repeat(base, B, 0), K, 1).repeat(3, -1) + rng.normal(0, 8, (B, K, S, S, 3))
    faces[target == 1] += 40 * ((xx + yy) % 4 < 2)[None, :, :, None]  # moire-like grid on fakes
    faces = np.clip(faces, 0, 255).astype(np.uint8)
    mels = np.clip(rng.normal(-40, 15, (B, M, T)), -80, 0).astype(np.float16)
    f, m = to_model_inputs(faces, mels)
    return {"faces": f, "mels": m, "target": torch.from_numpy(target)}


def _model(seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"face_backbone": "resnet10t", "audio_backbone": "resnet10t", "embed_dim": 32,
                         "drop_rate": 0.0, **overrides})
    return build_model(cfg).train()


def _loss_and_grad(model, objectives, batch, epoch=3):
    """One step through the training loop's hook (`TrainModule`): loss and the gradient of a
    layer shared by every objective (the face stem conv)."""
    module = TrainModule(model, objectives).train()
    module.zero_grad(set_to_none=True)
    loss, _out = module(batch, epoch)
    loss.backward()
    return loss.detach(), model.face.backbone.conv1[0].weight.grad.detach().clone()


# --- configuration ------------------------------------------------------------------------

def test_params_yaml_methods_section_is_all_off_by_default():
    cfg = load_methods_config(load_params(Path(__file__).resolve().parents[1] / "params.yaml"))
    assert not (cfg.fourier.enabled or cfg.distill.enabled or cfg.triplet.enabled)
    assert build_objectives(cfg, _model(), _batch()) == []
    assert build_objectives({"fourier": {"enabled": True}}, _model(), _batch())[0].name == "fourier"
    with pytest.raises(ValueError, match="unknown key"):
        build_objectives({"triplet": {"enable": True}}, _model())


# --- Fourier ------------------------------------------------------------------------------

def test_fourier_spectrum_matches_the_notes_formula():
    x = torch.randn(2, 3, 224, 224)
    spec = fourier_spectrum(x, low_scale=0.3, low_block=20, ref_size=224)
    mag = torch.abs(torch.fft.fftshift(torch.fft.fft2(x, dim=(-2, -1)), dim=(-2, -1)))
    mask = torch.ones_like(mag)
    mask[..., 112 - 10:112 + 10, 112 - 10:112 + 10] = 0.3  # the notes' code, verbatim
    torch.testing.assert_close(spec, torch.log(1 + 10 * mag * mask))
    assert low_block_size(64) == 6 and low_block_size(224) == 20 and low_block_size(8) == 2
    assert freq_dynamic_weight(0) == pytest.approx(0.15) and freq_dynamic_weight(500) == 0.25


@pytest.mark.parametrize("mode", ["mse", "ce"])
def test_fourier_switch_changes_loss_and_shared_gradients(mode):
    batch = _batch()
    model = _model()
    base_loss, base_grad = _loss_and_grad(model, [], batch)
    objs = build_objectives({"fourier": {"enabled": True, "mode": mode}}, model, batch)
    loss, grad = _loss_and_grad(model, objs, batch)
    assert loss.item() != pytest.approx(base_loss.item(), rel=1e-4)
    assert not torch.allclose(grad, base_grad, atol=1e-7)
    # the aux head learns too
    assert all(p.grad is not None for p in objs[0].parameters())


def _fit_exported_state(tmp_path, params, mode="video"):
    """Train 1 epoch with the real loop; return the exported (EMA) weights it saved."""
    make_features(tmp_path / "feat", n=8, frames=2, size=32, n_mels=16, mel_frames=48)
    features = open_features(tmp_path / "feat")
    cfg = ModelConfig(mode=mode, face_backbone="resnet10t", audio_backbone="resnet10t", embed_dim=32)
    spec = FitSpec(tag="t", train_rows=list(range(8)), train_targets=features.index["target"].tolist(), epochs=1)
    fit(features, spec, cfg, AugmentConfig(), TrainConfig(epochs=1, batch_size=4, warmup_epochs=0), DistEnv(),
        tmp_path / "state", params=params)
    return torch.load(tmp_path / "state" / "t_best.pt", weights_only=True)["state_dict"], cfg


def test_fourier_keeps_the_exported_model_unchanged(tmp_path):
    """Fit with Fourier on: the exported weights are exactly those of the model built without it."""
    exported_state, cfg = _fit_exported_state(tmp_path, {"methods": {"fourier": {"enabled": True}}})
    plain = build_model(cfg)  # what training without Fourier exports
    assert exported_state.keys() == plain.state_dict().keys()
    plain.load_state_dict(exported_state, strict=True)  # nothing of the aux head inside
    numel = lambda state: sum(v.numel() for v in state.values())  # noqa: E731
    assert numel(exported_state) == numel(plain.state_dict())
    # ...while the objective really carried a trainable head through the same fit
    head = build_objectives({"fourier": {"enabled": True}}, plain, _batch())[0]
    assert sum(p.numel() for p in head.parameters()) > 0


# --- distillation ---------------------------------------------------------------------------

def _kd_by_hand(zs, zt, y, epoch, alpha=0.5, T=3.0):
    """The notes' loss written out with math only (2-class logits [0, z])."""
    kl = 0.0
    for s, t in zip(zs, zt):
        ps = [1 / (1 + math.exp(s / T)), math.exp(s / T) / (1 + math.exp(s / T))]
        pt = [1 / (1 + math.exp(t / T)), math.exp(t / T) / (1 + math.exp(t / T))]
        kl += sum(q * (math.log(q) - math.log(p)) for p, q in zip(ps, pt))
    kl /= len(zs)
    t_now = max(1.0, T * 0.95 ** (epoch / 10))
    ce = sum(-(yy * math.log(1 / (1 + math.exp(-s))) + (1 - yy) * math.log(1 - 1 / (1 + math.exp(-s))))
             for s, yy in zip(zs, y)) / len(zs)
    return alpha * kl * t_now ** 2 + (1 - alpha) * ce


def test_distillation_loss_equals_the_formula_on_a_fixed_example():
    s, t, y = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([1.0])
    # by hand: p_s=[0.417430, 0.582570], p_t=[0.339244, 0.660756], KL=0.0128543, T'=3 -> x9 = 0.115688;
    # CE=ln(1+e^-1)=0.313262; 0.5*0.115688 + 0.5*0.313262 = 0.214475
    assert distillation_loss(s, t, y, epoch=0).item() == pytest.approx(0.214475, abs=1e-5)
    zs, zt, yy = [1.0, -0.5, 2.5], [2.0, 0.0, -1.0], [1.0, 0.0, 0.3]
    for epoch in (0, 30, 400):
        got = distillation_loss(torch.tensor(zs), torch.tensor(zt), torch.tensor(yy), epoch=epoch)
        assert got.item() == pytest.approx(_kd_by_hand(zs, zt, yy, epoch), rel=1e-5)
    assert current_temperature(3.0, 30) == pytest.approx(3 * 0.95 ** 3)
    assert current_temperature(3.0, 400) == 1.0


def test_distillation_switch_uses_a_frozen_teacher_checkpoint(tmp_path):
    cfg = ModelConfig(face_backbone="resnet10t", audio_backbone="resnet10t", embed_dim=32)
    teacher_file = tmp_path / "teacher.pt"
    save_checkpoint(teacher_file, _model(seed=7), model_spec(cfg, for_checkpoint=True))
    batch = _batch()
    model = _model()
    base_loss, base_grad = _loss_and_grad(model, [], batch)
    objs = build_objectives({"distill": {"enabled": True, "teacher": str(teacher_file)}}, model, batch)
    loss, grad = _loss_and_grad(model, objs, batch)
    assert loss.item() != pytest.approx(base_loss.item(), rel=1e-4)
    assert not torch.allclose(grad, base_grad, atol=1e-7)
    teacher = objs[0].teacher
    assert not teacher.training and all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    objs[0].train()
    assert not teacher.training  # the training loop's .train() never unfreezes BN statistics
    # alpha=0 is plain BCE: the objective then reproduces the baseline exactly
    plain = build_objectives({"distill": {"enabled": True, "teacher": str(teacher_file), "alpha": 0.0}},
                             model, batch)
    loss0, grad0 = _loss_and_grad(model, plain, batch)
    assert loss0.item() == pytest.approx(base_loss.item(), rel=1e-6)
    torch.testing.assert_close(grad0, base_grad)


def test_distillation_without_teacher_fails_clearly():
    with pytest.raises(FileNotFoundError, match="methods.distill.teacher"):
        build_objectives({"distill": {"enabled": True}}, _model())


# --- triplet ------------------------------------------------------------------------------

def test_triplet_is_zero_when_classes_are_separated_by_more_than_the_margin():
    torch.manual_seed(0)
    real = torch.randn(4, 8) * 0.05
    fake = torch.randn(4, 8) * 0.05 + 3.0
    emb, labels = torch.cat([real, fake]), torch.tensor([0] * 4 + [1] * 4)
    assert batch_hard_triplet_loss(emb, labels, margin=1.0).item() == 0.0
    # overlapping classes: positive loss equal to the batch-hard definition
    emb2 = torch.tensor([[0.0], [1.0], [0.5], [2.0]])
    lab2 = torch.tensor([0, 0, 1, 1])
    # anchors: 0 -> pos 1.0, neg 0.5; 1 -> pos 1.0, neg 0.5; 2 -> pos 1.5, neg 0.5; 3 -> pos 1.5, neg 1.0
    expected = np.mean([1.0 - 0.5 + 0.2, 1.0 - 0.5 + 0.2, 1.5 - 0.5 + 0.2, 1.5 - 1.0 + 0.2])
    assert batch_hard_triplet_loss(emb2, lab2, margin=0.2).item() == pytest.approx(expected)
    # one class only: no valid anchor, zero but differentiable
    e = torch.randn(3, 4, requires_grad=True)
    out = batch_hard_triplet_loss(e, torch.zeros(3, dtype=torch.long))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(e.grad).all()


def test_triplet_mixed_targets_policy():
    t = torch.tensor([0.0, 1.0, 0.7, 0.2])
    assert hard_labels(t, "dominant").tolist() == [0, 1, 1, 0]
    assert hard_labels(t, "skip") is None
    assert hard_labels(torch.tensor([0.0, 1.0]), "skip").tolist() == [0, 1]


def test_triplet_switch_changes_loss_and_shared_gradients():
    batch = _batch()
    model = _model()
    base_loss, base_grad = _loss_and_grad(model, [], batch)
    objs = build_objectives({"triplet": {"enabled": True, "weight": 1.0, "margin": 0.5}}, model, batch)
    loss, grad = _loss_and_grad(model, objs, batch)
    assert loss.item() > base_loss.item()
    assert not torch.allclose(grad, base_grad, atol=1e-7)
    # with skip and a mixed batch the objective contributes nothing
    mixed = dict(batch, target=batch["target"] * 0.8 + 0.1)
    skip = build_objectives({"triplet": {"enabled": True, "mixed": "skip"}}, model, mixed)
    out = model(mixed["faces"], mixed["mels"], return_features=True)
    assert skip[0](out, mixed, 0).item() == 0.0


def test_all_switches_together_build_in_fixed_order(tmp_path):
    cfg = ModelConfig(face_backbone="resnet10t", audio_backbone="resnet10t", embed_dim=32)
    save_checkpoint(tmp_path / "t.pt", _model(seed=3), model_spec(cfg, for_checkpoint=True))
    all_on = MethodsConfig()
    all_on.fourier.enabled = all_on.triplet.enabled = all_on.distill.enabled = True
    all_on.distill.teacher = str(tmp_path / "t.pt")
    objs = build_objectives(all_on, _model(), _batch())
    assert [o.name for o in objs] == ["fourier", "distill", "triplet"]
    loss, _ = _loss_and_grad(_model(), objs, _batch())
    assert torch.isfinite(loss)


# --- LDC / CDC switch (model.ldc) -----------------------------------------------------------

@pytest.mark.parametrize("kind", ["cdc", "ldc"])
def test_ldc_switch_changes_loss_and_shared_gradients(kind):
    batch = _batch()
    base_loss, base_grad = _loss_and_grad(_model(), [], batch)
    model = _model(ldc=kind, ldc_theta=0.7)
    assert type(model.face.backbone.conv1[0]).__name__ == ("LDCConv2d" if kind == "ldc" else "CDCConv2d")
    loss, grad = _loss_and_grad(model, [], batch)
    assert loss.item() != pytest.approx(base_loss.item(), rel=1e-4)
    assert not torch.allclose(grad, base_grad, atol=1e-7)


# --- unimodal terms (train.unimodal_weight, on by default) ----------------------------------

def test_unimodal_terms_add_per_modality_bce_and_reach_the_face_backbone():
    batch = _batch()
    model = _model()
    base_loss, base_grad = _loss_and_grad(model, [], batch)
    objs = build_training_objectives(None, model, unimodal_weight=0.5)
    assert [o.name for o in objs] == ["unimodal"]
    loss, grad = _loss_and_grad(model, objs, batch)
    assert not torch.allclose(grad, base_grad, atol=1e-7)
    assert all(p.grad is not None for p in objs[0].parameters())
    # the added term is 0.5 x (BCE of the face-only logit + BCE of the audio-only logit)
    with torch.no_grad():
        out = model(batch["faces"], batch["mels"], return_features=True)
        by_hand = sum(
            torch.nn.functional.binary_cross_entropy_with_logits(objs[0].heads[m](out[f"{m}_embedding"]).squeeze(-1),
                                                               batch["target"])
            for m in ("face", "audio"))
    assert loss.item() - base_loss.item() == pytest.approx(0.5 * by_hand.item(), rel=1e-4)


def test_unimodal_terms_only_for_two_modalities_and_a_positive_weight():
    assert build_training_objectives(None, _model(), unimodal_weight=0.0) == []
    assert build_training_objectives(None, _model(mode="video"), unimodal_weight=0.5) == []
    assert build_training_objectives(None, _model(mode="audio"), unimodal_weight=0.5) == []
    assert TrainConfig().unimodal_weight == load_params(Path(__file__).resolve().parents[1] / "params.yaml")["train"][
        "unimodal_weight"] > 0  # on by default, and the dataclass agrees with params.yaml


def test_unimodal_heads_are_not_exported(tmp_path):
    exported_state, cfg = _fit_exported_state(tmp_path, None, mode="av")  # TrainConfig's default weight 0.5
    plain = build_model(cfg)
    assert exported_state.keys() == plain.state_dict().keys()
    plain.load_state_dict(exported_state, strict=True)
    # the heads were trained in that fit: the resume checkpoint carries them
    resume = torch.load(tmp_path / "state" / "t_last.pt", weights_only=False)["module"]
    assert {"objectives.0.heads.face.1.weight", "objectives.0.heads.audio.1.weight"} <= resume.keys()
