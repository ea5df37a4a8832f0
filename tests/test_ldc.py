"""CDC/LDC convolutions: exact reductions to plain conv and CDC, and in-place timm conversion."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.ldc import CDCConv2d, LDCConv2d, convert_to_ldc


def _plain(cin=4, cout=6, stride=1, padding=1, dilation=1, bias=True) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding, dilation=dilation, bias=bias)


def _as(cls, conv: nn.Conv2d, theta: float) -> nn.Conv2d:
    new = cls(conv.in_channels, conv.out_channels, 3, stride=conv.stride, padding=conv.padding,
              dilation=conv.dilation, bias=conv.bias is not None, theta=theta)
    new.load_state_dict(conv.state_dict(), strict=False)
    return new


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (2, 0, 1)])
def test_ldc_with_zero_mask_equals_plain_conv(stride, padding, dilation):
    conv = _plain(stride=stride, padding=padding, dilation=dilation)
    ldc = _as(LDCConv2d, conv, theta=0.7)
    with torch.no_grad():
        ldc.learnable_mask.zero_()
    x = torch.randn(2, 4, 11, 13)
    torch.testing.assert_close(ldc(x), conv(x), rtol=0, atol=1e-6)


def test_ldc_with_unit_mask_equals_cdc_and_cdc_matches_its_definition():
    conv = _plain(bias=False)
    x = torch.randn(2, 4, 9, 9)
    cdc = _as(CDCConv2d, conv, theta=0.7)
    ldc = _as(LDCConv2d, conv, theta=0.7)  # mask starts at 1
    torch.testing.assert_close(ldc(x), cdc(x), rtol=1e-5, atol=1e-5)
    # CDC definition (Yu et al.): conv(x) - theta * conv1x1(x, sum of each kernel's taps)
    kernel_sum = conv.weight.sum(dim=(2, 3))[:, :, None, None]
    expected = conv(x) - 0.7 * F.conv2d(x, kernel_sum)
    torch.testing.assert_close(cdc(x), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cdc(x), conv(x), atol=1e-3)


def test_ldc_mask_and_theta_receive_gradients():
    ldc = _as(LDCConv2d, _plain(), theta=0.5)
    ldc(torch.randn(2, 4, 8, 8)).square().mean().backward()
    assert ldc.theta.grad is not None and ldc.theta.grad.abs() > 0
    assert ldc.learnable_mask.grad.shape == (6, 4) and ldc.learnable_mask.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["cdc", "ldc"])
def test_convert_timm_backbone_swaps_every_plain_3x3_and_copies_weights(kind):
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=0)
    plain = {n: m.weight.detach().clone() for n, m in model.named_modules()
             if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.groups == 1}
    n = convert_to_ldc(model, kind=kind, theta=0.7)
    assert n == len(plain) > 0
    cls = LDCConv2d if kind == "ldc" else CDCConv2d
    for name, weight in plain.items():
        mod = model.get_submodule(name)
        assert isinstance(mod, cls)
        torch.testing.assert_close(mod.weight, weight)
    leftover = [n for n, m in model.named_modules() if type(m) is nn.Conv2d and m.kernel_size == (3, 3)]
    assert leftover == []
    # still a working timm backbone: forward + backward on a face-sized batch
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, model.num_features)
    out.mean().backward()


def test_convert_leaves_depthwise_and_1x1_alone_and_none_is_a_noop():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Conv2d(8, 4, 1))
    assert convert_to_ldc(model, kind="none") == 0
    assert type(model[0]) is nn.Conv2d
    assert convert_to_ldc(model, kind="cdc", theta=0.5) == 1
    assert isinstance(model[0], CDCConv2d) and type(model[1]) is nn.Conv2d and type(model[2]) is nn.Conv2d
    with pytest.raises(ValueError, match="model.ldc"):
        convert_to_ldc(model, kind="bogus")


def test_ldc_state_dict_keeps_plain_keys():
    conv = _plain()
    ldc = _as(LDCConv2d, conv, theta=0.7)
    keys = set(ldc.state_dict())
    assert {"weight", "bias"} <= keys and {"theta", "learnable_mask"} <= keys
