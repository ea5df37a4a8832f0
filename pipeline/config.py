"""params.yaml is the single source of knobs; each module owns a dataclass for its section.

`section(params, "train", TrainConfig)` builds the dataclass and rejects unknown keys, so a
typo in params.yaml fails loudly instead of silently using a default.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read params.yaml (or another file with the same layout) into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path.resolve()}")
    with open(path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections at top level")
    return params


def from_dict(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from a mapping; nested dataclass fields are built recursively."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in params section '{where or cls.__name__}'; "
            f"known keys: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        ftype = fields[name].type
        target = _dataclass_type(cls, name, ftype)
        if target is not None and isinstance(value, Mapping):
            value = from_dict(target, value, f"{where}.{name}" if where else name)
        kwargs[name] = value
    return cls(**kwargs)


def _dataclass_type(cls: type, name: str, ftype: Any) -> type | None:
    import typing

    hints = typing.get_type_hints(cls)
    hinted = hints.get(name, ftype)
    if dataclasses.is_dataclass(hinted):
        return hinted  # type: ignore[return-value]
    return None


def section(params: Mapping[str, Any], name: str, cls: type[T]) -> T:
    """The dataclass for one params.yaml section (missing section = all defaults)."""
    return from_dict(cls, params.get(name), name)


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (for checkpoints and JSON)."""
    return dataclasses.asdict(obj)
