"""One rule for reading a config dataclass back from JSON: unknown keys are an error."""

from __future__ import annotations

from dataclasses import fields


def strict_from_dict(cls, data: dict, what: str):
    """``cls(**data)``, but a key ``cls`` does not have is named in a ``ValueError``
    (a typo in a hand-edited config must not be silently dropped)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} config keys {unknown}; allowed: {sorted(known)}")
    return cls(**data)
