"""Making attention visible: static figures, a self-contained HTML page, a live explorer.

Everything here works from plain data, the attention.json dict of DESIGN.md, so it never
depends on how a model records its attention. Submodules: ``figures`` (matplotlib PNG/SVG),
``html`` (attention.html), ``explorer`` (FastAPI app); they are imported on demand so that
``import attnlab.viz`` stays light.
"""

from .doc import KINDS, synthetic_attention_doc, to_jsonable, validate_attention_doc
from .html import render_attention_html, write_attention_html

__all__ = ["KINDS", "render_attention_html", "synthetic_attention_doc", "to_jsonable",
           "validate_attention_doc", "write_attention_html"]
