"""Pretrained weights under the competition rule: ImageNet-1K only, loaded offline.

`check_pretrained` is the single place the rule lives (the budget stage reuses it). Weights
come from `model.pretrained_file` or the local Hugging Face cache; nothing is ever downloaded.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import timm
from timm.models import get_pretrained_cfg, split_model_name_tag

from pipeline.models.registry import is_project_model

# Tag tokens that name data other than ImageNet-1K (or self/weakly supervised pretraining).
# Trainer prefixes (timm's `sw_`, `ra_`, `a1_`, `fb_`, `tv_`...) name a recipe, not data: a
# `sw_in1k` tag is ImageNet-1K, while `sw_in12k` is refused by its `in12k` token.
FORBIDDEN_EXACT = {
    "ig", "ns", "ssl", "swsl", "wsl", "semi", "weakly", "mim", "mae", "dino", "dinov2",
    "clip", "openai", "jft", "bamboo", "seer", "swag", "webli", "siglip", "eva",
    "21k", "22k", "12k", "cc12m", "o365", "coco", "sa1b", "lvd142m", "in21k", "in22k", "in12k",
}
FORBIDDEN_PREFIX = (
    "in21k", "in22k", "in12k", "laion", "openai", "clip", "ig1b", "ig3b", "jft", "dino", "mim",
    "yfcc", "dfn", "datacomp", "metaclip", "merged", "lvd", "webli", "siglip", "swag", "seer",
    "semi", "weakly", "swsl", "cc12m", "o365", "sa1b",
)
RULE = (
    "the competition allows ImageNet-1K pretraining only: a pretrained tag is allowed only if "
    "the tag or the model's pretrained_cfg says in1k (e.g. resnet18.a1_in1k, resnet50.tv_in1k) "
    "or it is a plain torchvision/timm tag whose dataset is ImageNet-1K"
)


class PretrainedRefused(ValueError):
    """A pretrained tag trained on data other than ImageNet-1K (competition rule)."""


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def _forbidden_token(text: str) -> str | None:
    for tok in _tokens(text):
        if tok in FORBIDDEN_EXACT or tok.startswith(FORBIDDEN_PREFIX):
            return tok
    return None


def check_pretrained(name_or_tag: str) -> None:
    """Raise `PretrainedRefused` unless `name_or_tag` resolves to ImageNet-1K weights.

    Accepts `arch.tag`, a bare timm architecture (its default tag is checked) or a bare tag.
    Project-registered models have no pretrained tags and pass (they train from scratch or from
    a local file the team vouches for).
    """
    if not isinstance(name_or_tag, str) or not name_or_tag.strip():
        raise PretrainedRefused(f"empty pretrained name; {RULE}")
    text = name_or_tag.strip()
    arch, tag = split_model_name_tag(text)
    if is_project_model(text) or is_project_model(arch):
        return
    cfg = None
    if timm.is_model(arch):
        try:
            cfg = get_pretrained_cfg(text if tag else arch, allow_unregistered=False)
        except RuntimeError:
            cfg = None
        if cfg is None and tag:
            raise PretrainedRefused(f"{text!r}: timm has no pretrained tag {tag!r} for {arch}; {RULE}")
        if cfg is not None and not tag:
            tag = cfg.tag or ""
    elif "." not in text:
        tag = text  # a bare tag such as "in22k_ft_in1k"
    else:
        raise PretrainedRefused(f"{text!r}: unknown architecture {arch!r}; {RULE}")
    hub_tag = (cfg.hf_hub_id or "").partition(".")[2] if cfg is not None else ""
    where = " ".join(x for x in (tag, hub_tag) if x)
    bad = _forbidden_token(where)
    if bad:
        raise PretrainedRefused(f"{text!r} (tag {tag!r}) is refused: {bad!r} marks non-ImageNet-1K data; {RULE}")
    if "in1k" in _tokens(where):
        return
    if cfg is not None and cfg.num_classes == 1000 and not _forbidden_token(str(cfg.url or "")):
        return  # plain timm/torchvision tag: a 1000-class ImageNet classifier with no other data named
    raise PretrainedRefused(f"{text!r} (tag {tag!r}) does not say it is ImageNet-1K; {RULE}")


def local_weights(name: str, file: str | os.PathLike | None) -> str:
    """Path of local weights for timm model `name`: `file` if given, else the HF cache. Never downloads."""
    if file:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"model.pretrained_file {path} does not exist")
        return str(path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    cfg = get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for fname in names:
            found = try_to_load_from_cache(hub_id, fname)
            if isinstance(found, str) and Path(found).is_file():
                return found
    raise FileNotFoundError(
        f"no local pretrained weights for {name!r} (looked in the Hugging Face cache for {hub_id}); "
        "set model.pretrained_file to a local .pth/.safetensors file; weights are never downloaded"
    )


def pretrained_kwargs(name: str, pretrained: bool, file: str | os.PathLike | None) -> dict[str, Any]:
    """kwargs for `create_model` that load checked ImageNet-1K weights offline (or none)."""
    if not pretrained:
        return {"pretrained": False}
    check_pretrained(name)
    if is_project_model(name) or is_project_model(split_model_name_tag(name)[0]):
        if not file:
            raise FileNotFoundError(f"project model {name!r} needs model.pretrained_file to be pretrained")
        return {"pretrained": True, "pretrained_file": str(file)}
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": local_weights(name, file)}}
