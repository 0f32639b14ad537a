"""One rule for reading a config dataclass back from JSON: unknown keys are an error.

Shared by :class:`attnlab.core.model.TransformerConfig` and the training configs, so it sits
below both layers (the lecture core imports nothing from training).

    >>> strict_from_dict(TrainConfig, {"steps": 10}, "training").steps
    10
"""

from __future__ import annotations

from dataclasses import fields

__all__ = ["strict_from_dict"]


def strict_from_dict(cls, data: dict, what: str):
    """``cls(**data)``, but a key ``cls`` does not have is named in a ``ValueError``
    (a typo in a hand-edited config must not be silently dropped)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} config keys {unknown}; allowed: {sorted(known)}")
    return cls(**data)
