"""Budget: thop counts exactly the predicting model; the stage fails above the limit or on
non-ImageNet-1K pretraining, and always leaves its counts in metrics/budget.json."""
from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import thop
import timm
import torch

from pipeline.budget import BudgetConfig, BudgetError, assert_budget_ok, count_complexity, example_inputs
from pipeline.models import build_model, model_spec, save_checkpoint
from tiny_models import SMALL

CONFIG = {"decode": {"frames": 4}, "faces": {"size": 32}, "audio": {"n_mels": 16, "frames": 24}}

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_params: int, model_params: dict | None = None) -> Path:
    model = build_model(SMALL)
    config = {**CONFIG, "model": asdict(SMALL)}
    save_checkpoint(tmp_path / "models" / "final.pt", model, model_spec(SMALL, for_checkpoint=True), config)
    params = {"budget": {"max_params": max_params}, "model": model_params or asdict(SMALL)}
    (tmp_path / "params.yaml").write_text(json.dumps(params))  # JSON is valid YAML
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_thop_count_equals_numel_for_project_model() -> None:
    model = build_model(SMALL)
    counts = count_complexity(model, example_inputs(CONFIG))
    assert counts["params"] == sum(p.numel() for p in model.parameters()) == counts["params_numel"]
    assert counts["macs"] > 0 and counts["params_unprofiled"] == 0
    assert not any("total_ops" in k for k in model.state_dict())  # the model itself is untouched


def test_thop_counts_subclassed_layers() -> None:
    """timm's BatchNormAct2d subclasses BatchNorm2d; plain thop would count it as 0 params."""
    model = timm.create_model("test_efficientnet", num_classes=1)
    x = torch.randn(1, 3, 32, 32)
    _, plain = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False)
    counts = count_complexity(model, (x,))
    numel = sum(p.numel() for p in model.parameters())
    assert plain < numel  # what we fix
    assert counts["params"] == numel


def test_stage_passes_and_writes_counts(tmp_path: Path, monkeypatch, capsys) -> None:
    from stages.budget import main

    root = _project(tmp_path, monkeypatch, max_params=200_000_000)
    main()
    report = json.loads((root / "metrics" / "budget.json").read_text())
    model = build_model(SMALL)
    assert report["params"] == report["params_numel"] == sum(p.numel() for p in model.parameters())
    assert report["params_ok"] and report["pretrained_ok"] and report["max_params"] == 200_000_000
    assert report["input_shapes"] == [[1, 4, 3, 32, 32], [1, 1, 16, 24]]
    assert "params (thop" in capsys.readouterr().out
    assert_budget_ok(root / "metrics" / "budget.json")


def test_stage_fails_above_limit(tmp_path: Path, monkeypatch) -> None:
    from stages.budget import main

    root = _project(tmp_path, monkeypatch, max_params=1000)
    with pytest.raises(SystemExit) as exc:
        main()
    assert "above budget.max_params 1,000" in str(exc.value) and "FAILED" in str(exc.value)
    report = json.loads((root / "metrics" / "budget.json").read_text())
    assert report["params_ok"] is False and report["params"] > 1000
    with pytest.raises(BudgetError, match="broken competition rules"):
        assert_budget_ok(root / "metrics" / "budget.json")


def test_stage_refuses_non_imagenet1k_pretraining(tmp_path: Path, monkeypatch) -> None:
    from stages.budget import main

    bad = {**asdict(SMALL), "pretrained": True, "face_backbone": "resnet50.fb_swsl_ig1b_ft_in1k"}
    root = _project(tmp_path, monkeypatch, max_params=200_000_000, model_params=bad)
    with pytest.raises(SystemExit) as exc:
        main()
    assert "pretrained weights refused" in str(exc.value) and "ImageNet-1K" in str(exc.value)
    assert json.loads((root / "metrics" / "budget.json").read_text())["pretrained_ok"] is False


def test_write_refuses_without_budget(tmp_path: Path) -> None:
    with pytest.raises(BudgetError, match="run the budget stage"):
        assert_budget_ok(tmp_path / "missing.json")


def test_budget_config_default_is_competition_rule() -> None:
    assert BudgetConfig().max_params == 200_000_000
