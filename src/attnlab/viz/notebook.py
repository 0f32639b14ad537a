"""Attention in a notebook: ``attnlab.show(...)`` draws the head view and model view in a cell.

    >>> import attnlab
    >>> attnlab.show("runs/toy", "the black dog slept .")            # a run and a sentence
    >>> attnlab.show(doc)                                           # an attention.json document
    >>> attnlab.show(("runs/pe-sinusoidal", "runs/pe-learned"), "the cat eats .")   # two runs side by side

How it is displayed, and why
----------------------------
The cell shows **the page itself**: exactly what :func:`attnlab.viz.html.render_page` writes to
attention.html (the same HTML, CSS and script, not a copy), inside an ``<iframe srcdoc="…">``.

* No network, no require.js: the page inlines its script and style and its Content-Security-Policy
  forbids every fetch, so it renders offline and behind a firewall.
* Jupyter Notebook 7, JupyterLab and VS Code: JupyterLab does not run ``<script>`` elements of an
  HTML output the way the classic notebook did, and other viewers differ again; an iframe's
  ``srcdoc`` document runs its own script in every one of them, because the browser, not the
  notebook front end, loads it. nbconvert's HTML export keeps it as it is.
* Any number of views per notebook: each iframe is a document of its own, so two views share no
  element ids, no globals and no event handlers.
* The iframe grows to fit its page (an ``onload`` handler that watches the page's height).

As for any rich output, a notebook opened from elsewhere is *untrusted* until it is trusted or its
cells are run again; an untrusted front end strips iframes, and the line under the view says what
to do.
"""

from __future__ import annotations

import html
import os
import uuid
from pathlib import Path
from typing import Any

from ..document import read_document, to_jsonable, validate_attention_doc
from ..files import atomic_write_text
from .html import render_page

__all__ = ["AttentionView", "show"]

# Fit the iframe to its page, now and whenever the page changes height (a thumbnail enlarged).
_FIT_ON_LOAD = ("var f=this,d=f.contentDocument;if(!d||!d.body)return;"
                "var fit=function(){f.style.height=(d.body.scrollHeight+4)+'px'};fit();"
                "if(window.ResizeObserver)new ResizeObserver(fit).observe(d.body)")


class AttentionView:
    """One rendered page, shown by a notebook through ``_repr_html_`` / ``_repr_mimebundle_``.

    ``page`` is the full self-contained HTML (save it with :meth:`save`); ``data`` the document or
    compare payload it shows.

    >>> view = show(doc); view.save("attention.html")
    """

    def __init__(self, page: str, data: dict, *, title: str, height: int = 760):
        self.page, self.data, self.title, self.height = page, data, title, int(height)
        self.view_id = f"attnlab-view-{uuid.uuid4().hex[:12]}"

    def __repr__(self) -> str:
        if "docs" in self.data:
            return f"AttentionView(compare {' vs '.join(self.data['labels'])}: {self.title!r})"
        tokens = len(self.data.get("source_tokens", [])), len(self.data.get("target_tokens") or [])
        return f"AttentionView({tokens[0]} source, {tokens[1]} target tokens: {self.title!r})"

    def _repr_html_(self) -> str:
        frame = (f'<iframe id="{self.view_id}" class="attnlab-view" title="{html.escape(self.title)}" '
                 f'srcdoc="{html.escape(self.page, quote=True)}" onload="{html.escape(_FIT_ON_LOAD, quote=True)}" '
                 f'style="width:100%;height:{self.height}px;border:0;display:block" loading="eager"></iframe>')
        note = ('<div style="font:11px sans-serif;color:#888;margin:2px 0 0 4px">attnlab · '
                f'{html.escape(self.title)} (blank above? this notebook is untrusted: trust it, or run the '
                'cell again)</div>')
        return f'<div class="attnlab-output">{frame}{note}</div>'

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/html": self._repr_html_(), "text/plain": repr(self)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page (the same file ``attnlab attend`` writes as attention.html)."""
        path = Path(path)
        atomic_write_text(path, self.page)
        return path


def _is_compare(value: Any) -> bool:
    return isinstance(value, dict) and "docs" in value and "differences" in value


def _analyzer(source: Any):
    """``analyze(text, target, beam) -> document`` for a run directory, 'minilm' or a loaded model."""
    from ..inspection.inference import Analyzer, Translator, load_analyzer
    from ..training.runs import LoadedRun

    if isinstance(source, Analyzer):
        return source
    if isinstance(source, Translator):
        return Analyzer(str(source.run.path), source.attention, {})
    if isinstance(source, LoadedRun):
        return _analyzer(Translator(source))
    if hasattr(source, "attention_document") and callable(source.attention_document):  # a PretrainedEncoder
        return Analyzer(type(source).__name__, lambda text, target=None, beam=1:
                        {**source.attention_document(text), "translation": "", "source_text": text}, {})
    if isinstance(source, (str, os.PathLike)):
        return load_analyzer(str(source))
    raise ValueError(f"show() cannot read a {type(source).__name__}: give a run directory, 'minilm', a LoadedRun, "
                     "a Translator, an attention document (dict or attention.json) or a pair of runs "
                     "(a bare model has no tokenizer to turn text into ids)")


def show(source: Any, text: str | None = None, target: str | None = None, *, beam: int = 1,
         title: str | None = None, height: int = 760) -> AttentionView:
    """The head view and model view of one sentence, for a notebook cell (see the module docstring).

    ``source`` is a run directory or ``"minilm"``, a loaded run (``LoadedRun``, ``Translator``,
    an ``Analyzer``, a pretrained encoder) with ``text`` and an optional ``target`` (teacher-forced;
    default: the model's own output with ``beam``), or an attention document (a dict or a path
    to attention.json), or a compare payload or a pair ``(run_a, run_b)`` with ``text`` for the
    two-runs page (:mod:`attnlab.viz.compare`).

    >>> attnlab.show("runs/toy", "the black dog slept .", beam=4)
    >>> attnlab.show(("runs/pe-sinusoidal", "runs/pe-learned"), "the black dog slept .")
    """
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise ValueError(f"show() compares two runs; got {len(source)}")
        from .compare import compare_runs

        analyzers = [_analyzer(item) for item in source]
        labels = [Path(a.name).name or a.name for a in analyzers]  # a run directory's own name
        if labels[0] == labels[1]:
            labels = [a.name for a in analyzers]
        payload = compare_runs(*analyzers, _required_text(text), target, beam=beam, labels=labels)
        return _compare_view(payload, title, height)
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".json") and Path(source).is_file():
        if text is not None:
            raise ValueError("an attention.json document already holds its sentence: call show(path) without text")
        source = _read_json(Path(source))
    if _is_compare(source):
        return _compare_view(source, title, height)
    if isinstance(source, dict):
        doc = to_jsonable(source)
        validate_attention_doc(doc, allow_zero_rows=True)
    else:
        doc = to_jsonable(_analyzer(source)(_required_text(text), target, beam))
    title = title or f"attnlab · {(doc.get('source_text') or ' '.join(doc['source_tokens']))[:60]}"
    return AttentionView(render_page(doc, title=title), doc, title=title, height=height)


def _required_text(text: str | None) -> str:
    if text is None:
        raise ValueError("show() needs the sentence to look at: show(run, 'the cat sat .')")
    return text


def _read_json(path: Path) -> dict:
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    return data if _is_compare(data) else read_document(path)


def _compare_view(payload: dict, title: str | None, height: int) -> AttentionView:
    from .compare import validate_compare

    payload = to_jsonable(payload)
    validate_compare(payload)
    title = title or f"attnlab compare · {' vs '.join(payload['labels'])}"
    return AttentionView(render_page(None, title=title, compare=payload), payload, title=title, height=height)
