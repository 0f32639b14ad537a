"""Helpers of the page tests (tests/test_page_*.py): a watched Chromium tab, hand-built v2 documents.

The documents follow /docs' attention.json version 2 (``decoding``, ``explanations``) and the
compare payload; they are built by hand here, not by the Python code that writes them, so the
page is tested against the contract rather than against one producer.
"""

from __future__ import annotations

import struct
import threading
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from conftest import ARTIFACTS

from attnlab.document import synthetic_attention_doc, validate_attention_doc

# The page's colour stops (attention-base.js), to check painted pixels independently.
VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float)
NEGATIVE, POSITIVE, WHITE = np.array([33, 102, 172.0]), np.array([178, 24, 43.0]), np.array([255.0] * 3)
LOCAL = ("file://", "http://127.0.0.1:", "data:", "blob:")


def viridis(value: float) -> np.ndarray:
    t = min(1.0, max(0.0, value)) * (len(VIRIDIS) - 1)
    i = min(len(VIRIDIS) - 2, int(np.floor(t)))
    return np.round(VIRIDIS[i] + (t - i) * (VIRIDIS[i + 1] - VIRIDIS[i]))


def diverging(value: float) -> np.ndarray:
    v = min(1.0, max(-1.0, value))
    return np.round(WHITE + abs(v) * ((NEGATIVE if v < 0 else POSITIVE) - WHITE))


def faded(color: np.ndarray) -> np.ndarray:
    """A colour outside the highlighted row: 60 % toward white."""
    return np.round(color + 0.6 * (WHITE - color))


def watched_page(browser, width: int = 1400, height: int = 900):
    """A tab that records script errors and dialogs and refuses (and records) every request
    that would leave the machine."""
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.errors, page.dialogs, page.requested, page.refused = [], [], [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: page.requested.append(request.url))

    def route(route):
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            page.refused.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    return page


def check_clean(page) -> None:
    """What every page test asserts at the end: no script error, no dialog, nothing left the machine."""
    outside = [url for url in page.requested if not url.startswith(LOCAL)]
    assert page.refused == [] and outside == [], f"requests left the machine: {page.refused + outside}"
    assert page.dialogs == [], f"a token ran as script: {page.dialogs}"
    assert page.errors == [], f"script errors: {page.errors}"


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def thumb_pixels(page, selector: str) -> np.ndarray:
    """The pixels of a thumbnail canvas as (rows, cols, 3)."""
    width, height, data = page.eval_on_selector(selector, """canvas => {
        const image = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        return [canvas.width, canvas.height, Array.from(image.data)]; }""")
    return np.array(data, dtype=float).reshape(height, width, 4)[:, :, :3]


# --------------------------------------------------------------------------- documents


def decoding_doc(source: list[str], emitted: list[str], *, layers: int = 2, heads: int = 4, beam: int = 0,
                 seed: int = 0) -> dict:
    """A v2 document whose target is decoder input "<bos>" + emitted[:-1] and whose ``decoding``
    has one step per row (step t emits emitted[t]); with beam > 0, beam hypotheses per step."""
    target = ["<bos>", *emitted[:-1]]
    doc = synthetic_attention_doc(source, target, num_layers=layers, num_heads=heads, seed=seed)
    rng = np.random.default_rng(seed + 1)
    steps = []
    for t, token in enumerate(emitted):
        others = [f"alt{t}_{i}" for i in range(4)]
        probs = np.sort(rng.dirichlet(np.ones(5)))[::-1] * 0.95
        step = {"t": t, "token": token, "top_k": [{"token": word, "prob": round(float(p), 6)}
                                                  for word, p in zip([token, *others], probs)]}
        if beam:
            prefix = [word for word in emitted[:t + 1] if word != "<eos>"]  # hypotheses exclude <bos>/<eos>
            step["hypotheses"] = [{"tokens": prefix if i == 0 else [*emitted[:t], f"alt{t}_{i}"],
                                   "score": round(-0.3 * (t + 1) - i, 6), "finished": False,
                                   "winner_prefix": i == 0} for i in range(beam)]
        steps.append(step)
    doc["decoding"] = {"strategy": "beam" if beam else "greedy", "beam_size": max(beam, 1), "steps": steps}
    if beam:
        final = steps[-1]["hypotheses"]
        final.append({"tokens": ["short"], "score": -2.5, "finished": True, "winner_prefix": False,
                      "final_score": -2.1})
        doc["decoding"]["winner"] = 0
    doc["translation"] = " ".join(emitted[:-1])
    validate_attention_doc(doc)
    return doc


def with_explanations(doc: dict, seed: int = 0) -> dict:
    """doc plus a non-negative ``rollout`` (one map for the whole model, per kind) and a signed
    ``grad_x_input`` of cross-attention (one per layer, with an exact zero at [0][0])."""
    rng = np.random.default_rng(seed)
    src, tgt = len(doc["source_tokens"]), len(doc.get("target_tokens") or [])
    explanations = [{"method": "rollout", "kind": "encoder_self", "layer": None,
                     "matrix": np.round(rng.dirichlet(np.ones(src), size=src), 6).tolist(),
                     "note": "head-mean attention + identity, renormalised, multiplied through layers"}]
    if tgt:
        explanations.append({"method": "rollout", "kind": "cross", "layer": None,
                             "matrix": np.round(rng.dirichlet(np.ones(src), size=tgt), 6).tolist()})
        for layer in range(2):
            matrix = np.round(rng.normal(size=(tgt, src)), 6)
            matrix[0, 0] = 0.0
            explanations.append({"method": "grad_x_input", "kind": "cross", "layer": layer, "matrix": matrix.tolist()})
        explanations.append({"method": "integrated_gradients", "kind": "cross", "layer": None,
                             "matrix": np.round(rng.normal(size=(tgt, src)), 6).tolist(), "completeness_error": 0.0031})
    doc = {**doc, "explanations": explanations}
    validate_attention_doc(doc)
    return doc


def head_means(doc: dict) -> dict[tuple[str, int], np.ndarray]:
    return {(entry["kind"], entry["layer"]): np.mean(np.asarray(entry["weights"]), axis=0) for entry in doc["attention"]}


def compare_payload(doc_a: dict, doc_b: dict, labels=("runs/a", "runs/b")) -> dict:
    """The compare payload of two documents of the same tokens (token level), by hand."""
    means_a, means_b = head_means(doc_a), head_means(doc_b)
    differences = [{"kind": kind, "layer": layer, "matrix": np.round(means_b[kind, layer] - means_a[kind, layer], 6).tolist()}
                   for kind, layer in means_a if (kind, layer) in means_b]
    return {"labels": list(labels), "docs": [doc_a, doc_b], "level": "token",
            "merge": "both runs split the text into the same tokens", "differences": differences,
            "tokens": {"source": doc_a["source_tokens"], "target": doc_a.get("target_tokens") or []},
            "note": "target: run A's translation, teacher-forced in both runs",
            "translations": [doc_a.get("translation", ""), doc_b.get("translation", "")]}


# --------------------------------------------------------------------------- downloads


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, checking its signature and IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def parse_svg(data: bytes) -> ElementTree.Element:
    root = ElementTree.fromstring(data)
    assert root.tag.endswith("}svg") or root.tag == "svg", root.tag
    return root


def download(page, selector: str) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.click(selector)
    item = info.value
    return item.suggested_filename, open(item.path(), "rb").read()


# --------------------------------------------------------------------------- a local server


@contextmanager
def local_server(routes: dict):
    """An HTTP server on 127.0.0.1: routes maps "GET /" or "POST /api/x" to handler(body) -> (status, type, bytes)."""
    class Handler(BaseHTTPRequestHandler):
        def handle_one(self, method):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            handler = routes.get(f"{method} {self.path}")
            status, kind, payload = handler(body) if handler else (404, "text/plain", b"not found")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            self.handle_one("GET")

        def do_POST(self):
            self.handle_one("POST")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
