"""Making attention visible: static figures, a self-contained HTML page, a live explorer.

Everything here works from plain data, the attention document of :mod:`attnlab.document`
(docs/design.md), so it never depends on how a model records its attention. Submodules:
``figures`` (matplotlib PNG/SVG), ``html`` (attention.html), ``outputs`` (attention.json,
the PNG grids and the page written together), ``explorer`` (FastAPI app); the heavy ones are
imported on demand so that ``import attnlab.viz`` stays light.
"""

from .html import render_attention_html, write_attention_html

__all__ = ["render_attention_html", "write_attention_html"]
