"""One factory for every model: project models by registered name, anything else via timm.

Stages never import model classes directly; they call `create_model(name, **kwargs)`, so a
checkpoint that records `{"name", "kwargs"}` can always be rebuilt, and a new architecture is
one decorated function away.
"""
from __future__ import annotations

from typing import Any, Callable

import timm
import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn_or_name: Callable[..., nn.Module] | str | None = None) -> Any:
    """Decorator: `@register_model` (uses the function/class name) or `@register_model("name")`."""

    def deco(fn: Callable[..., nn.Module], name: str | None = None) -> Callable[..., nn.Module]:
        key = name or getattr(fn, "__name__", None)
        if not key:
            raise ValueError("register_model needs a name")
        if key in _REGISTRY and _REGISTRY[key] is not fn:
            raise ValueError(f"model name {key!r} is already registered")
        _REGISTRY[key] = fn
        return fn

    if callable(fn_or_name):
        return deco(fn_or_name)
    return lambda fn: deco(fn, fn_or_name)


def is_project_model(name: str) -> bool:
    return name in _REGISTRY


def list_project_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build `name` from the project registry, else `timm.create_model(name, **kwargs)`.

    Unknown names fail with the list of project models (timm's own error covers its names).
    """
    if name in _REGISTRY:
        return _REGISTRY[name](**kwargs)
    if not timm.is_model(name.split(".", 1)[0]) and not timm.is_model(name):
        raise ValueError(
            f"unknown model {name!r}: not a project model ({list_project_models()}) "
            "and not a timm model name (see timm.list_models())"
        )
    return timm.create_model(name, **kwargs)
