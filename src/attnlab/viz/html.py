"""One self-contained HTML page for an attention.json document.

The page (``viz/static/page.html`` with ``attention.css`` and ``attention.js`` inlined) shows:

* a **head view** — query tokens and key tokens in two columns joined by lines whose opacity and
  width are the attention weight, one colour per head; head chips toggle heads and hovering a
  token isolates its links;
* a **model view** — every layer × head of the selected kind as a small heatmap; clicking one
  enlarges it with token labels and per-cell values;
* a switch between ``encoder_self``, ``decoder_self`` and ``cross`` (those present) and a layer
  selector.

It loads nothing: no CDN, no URL of any kind (a Content-Security-Policy says so too), so it works
offline from ``file://``. The explorer (:mod:`attnlab.viz.explorer`) serves the same page and the
same script with a form added.

    >>> write_attention_html(doc, "runs/toy/attention.html", title="le chat")
    PosixPath('runs/toy/attention.html')
"""

from __future__ import annotations

import html
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from ..document import to_jsonable, validate_attention_doc

__all__ = ["render_attention_html", "render_compare_html", "render_page", "write_attention_html", "embed_json"]

_EXPLORER_START, _EXPLORER_END = "<!--explorer-->", "<!--/explorer-->"


@lru_cache(maxsize=None)
def _static(name: str) -> str:
    return resources.files("attnlab.viz").joinpath("static", name).read_text(encoding="utf-8")


# The page script's parts, in order; they share one function scope (see attention-base.js).
SCRIPT_PARTS = ("attention-base.js", "attention-views.js", "attention-panels.js", "attention.js")


def page_script() -> str:
    """The page's JavaScript: every part joined inside one function (nothing global), ``</`` escaped."""
    body = "\n".join(_static(name) for name in SCRIPT_PARTS)
    return ("(function () {\n\"use strict\";\n" + body + "\n})();\n").replace("</", "<\\/")


def page_style() -> str:
    """The page's CSS, every rule scoped under ``.attnlab``."""
    return _static("attention.css")


def embed_json(value: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become ``\\u003c``-style escapes (still the same JSON), so a token such
    as ``</script>`` or ``<!--`` can never end the script element early; U+2028/U+2029 are
    escaped for old JavaScript parsers.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def render_page(doc: dict | None, *, title: str, explorer: dict | None = None, compare: dict | None = None) -> str:
    """The viewer page with ``doc`` embedded (or empty); ``explorer`` adds the input form.

    ``explorer`` is the form's configuration: ``{"api": "/api/attention", "max_beam": 8,
    "max_chars": 1000, "examples": [...]}`` (``"compare": true`` and ``"api": "/api/compare"``
    for two runs). ``compare`` is a two-run payload (:mod:`attnlab.viz.compare`) shown instead
    of ``doc``; the page then reads ``{"compare": ..., "explorer": ...}``.
    """
    page = _static("page.html")
    if explorer is None:  # the static page has no form
        start, end = page.index(_EXPLORER_START), page.index(_EXPLORER_END) + len(_EXPLORER_END)
        page = page[:start] + page[end:]
    if compare is not None or (explorer or {}).get("compare"):
        data = embed_json({"compare": compare, "explorer": explorer})
    else:
        data = embed_json({"doc": doc, "explorer": explorer})
    # Each placeholder is filled once, in an order where no inserted text is searched again.
    page = page.replace("{{style}}", page_style(), 1)
    page = page.replace("{{title}}", html.escape(title))
    page = page.replace("{{data}}", data, 1)
    return page.replace("{{script}}", page_script(), 1)


def render_attention_html(doc: dict, *, title: str = "attnlab attention") -> str:
    """Validate ``doc`` (numpy arrays allowed) and return the self-contained HTML page.

    >>> page = render_attention_html(doc)
    >>> "http" in page
    False
    """
    doc = to_jsonable(doc)
    validate_attention_doc(doc, allow_zero_rows=True)
    return render_page(doc, title=title)


def render_compare_html(payload: dict, *, title: str = "attnlab compare") -> str:
    """Validate a compare payload (:func:`attnlab.viz.compare.compare_documents`) and return its page.

    >>> page = render_compare_html(compare_documents(doc_a, doc_b, labels=["fixed", "learned"]))
    """
    from .compare import validate_compare

    payload = to_jsonable(payload)
    validate_compare(payload)
    return render_page(None, title=title, compare=payload)


def write_attention_html(doc: dict, path: str | os.PathLike, *, title: str = "attnlab attention") -> Path:
    """Write :func:`render_attention_html` to ``path`` atomically (temporary file + rename)."""
    text = render_attention_html(doc, title=title)
    path = Path(path)
    atomic_write_text(path, text)
    return path
