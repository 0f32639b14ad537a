"""Making attention visible: static figures, a self-contained HTML page, a live explorer.

Everything here works from plain data, the attention.json dict of DESIGN.md, so it never
depends on how a model records its attention.
"""

from .doc import KINDS, synthetic_attention_doc, to_jsonable, validate_attention_doc

__all__ = ["KINDS", "synthetic_attention_doc", "to_jsonable", "validate_attention_doc"]
