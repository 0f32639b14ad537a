"""Every view of one attention document, written together: attention.json, the PNG grids, attention.html.
Two runs side by side (:mod:`attnlab.viz.compare`): compare.json and compare.html.

``attnlab attend`` and ``attnlab demo`` write these files; so can a notebook. The document is
checked first, so an invalid one leaves nothing behind; each file is written atomically
(:mod:`attnlab.files`), so a reader never sees half of one.

    >>> written = write_attention_outputs(doc, Path("attn"), title="le chat")
    >>> written.json, written.html, [p.name for p in written.figures]
    (PosixPath('attn/attention.json'), PosixPath('attn/attention.html'), ['encoder_self.png', ...])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..document import to_json, to_jsonable, upgrade, validate_attention_doc
from ..files import atomic_write_text

__all__ = ["AttentionOutputs", "write_attention_outputs", "CompareOutputs", "write_compare_outputs"]


@dataclass(frozen=True)
class AttentionOutputs:
    """The paths :func:`write_attention_outputs` wrote, and the document as written."""

    doc: dict
    json: Path
    html: Path
    figures: list[Path]


def write_attention_outputs(doc: dict, out_dir: str | os.PathLike, *,
                            title: str = "attnlab attention") -> AttentionOutputs:
    """Validate ``doc`` and write ``attention.json``, one PNG grid per kind and ``attention.html`` in ``out_dir``.

    The JSON carries the document's version (:func:`attnlab.document.upgrade`); numpy arrays
    in ``doc`` are accepted.
    """
    from .figures import plot_attention_doc  # matplotlib: only when figures are drawn
    from .html import write_attention_html

    doc = upgrade(to_jsonable(doc)) if isinstance(doc, dict) else doc
    validate_attention_doc(doc, allow_zero_rows=True)  # before anything exists on disk
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "attention.json"
    atomic_write_text(json_path, to_json(doc))
    figures = plot_attention_doc(doc, out_dir)
    html_path = write_attention_html(doc, out_dir / "attention.html", title=title)
    return AttentionOutputs(doc=doc, json=json_path, html=html_path, figures=figures)


@dataclass(frozen=True)
class CompareOutputs:
    """The paths :func:`write_compare_outputs` wrote, and the payload as written."""

    payload: dict
    json: Path
    html: Path


def write_compare_outputs(payload: dict, out_dir: str | os.PathLike, *,
                          title: str = "attnlab compare") -> CompareOutputs:
    """Validate a compare payload and write ``compare.json`` and ``compare.html`` in ``out_dir``.

    >>> written = write_compare_outputs(compare_runs(analyze_a, analyze_b, "the cat"), Path("cmp"))
    """
    from .compare import validate_compare
    from .html import render_compare_html

    payload = to_jsonable(payload)
    validate_compare(payload)  # before anything exists on disk
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "compare.json", out_dir / "compare.html"
    atomic_write_text(json_path, to_json(payload))
    atomic_write_text(html_path, render_compare_html(payload, title=title))
    return CompareOutputs(payload=payload, json=json_path, html=html_path)
