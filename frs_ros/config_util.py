"""Building frozen config dataclasses from plain mappings (YAML files, ROS parameters)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, Optional, TypeVar

T = TypeVar("T")


def dataclass_from_mapping(cls: type[T], d: Optional[Mapping[str, Any]], error: type[Exception], what: str) -> T:
    """``cls(**d)`` where every key must be a field of ``cls`` and lists become tuples.

    An unknown key (usually a typo in a YAML file) raises ``error`` naming the key and listing the
    valid ones, instead of being silently ignored. ``what`` names the config in that message.
    """
    d = dict(d or {})
    reject_unknown_keys(cls, d, error, f"{what} config")
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def reject_unknown_keys(cls: type, d: Mapping[str, Any], error: type[Exception], what: str) -> None:
    """Raise ``error`` naming every key of ``d`` that is not a field of ``cls``, and the valid ones."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise error(f"unknown {what} key(s) {unknown}; valid keys are {sorted(names)}")
