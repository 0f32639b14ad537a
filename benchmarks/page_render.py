"""Page render time: from page load to the first drawn view of attention.html, in headless Chromium.

    python benchmarks/page_render.py                        # the page as it is now: 32, 128, 512 tokens
    python benchmarks/page_render.py --before 99e3b91       # and, interleaved, the page at that commit
    python benchmarks/page_render.py --quick                # 32 tokens, one repeat (a smoke test)

The document is what ``attnlab attend`` writes for minilm (``all-MiniLM-L6-v2``: 6 layers x 12
heads of ``encoder_self``) over N wordpieces: random softmax rows (scores ~ N(0, 2²)) rounded to
the document's 6 decimals, so a 512-token page embeds 160 MB of JSON, as the real one does.
Each page is written once to a temporary file and opened ``--repeats`` times in a fresh tab.

Measured, per token count:

* ``drawn_ms`` — ``performance.now()`` (milliseconds since navigation start) at the first
  animation frame at which the head view and the model view are both drawn;
* ``first_view_ms`` — the same clock two frames later, when that frame has been rasterised and
  shown (a canvas or a large SVG can take seconds to rasterise after the script is done). Both
  include reading and parsing the HTML and its JSON, which no page change avoids, so
  ``parse_ms`` (the ``DOMContentLoaded`` event, before the page script draws) is given too;
* ``layer_switch_ms`` — choosing layer 1 in the layer menu until two frames later (a redraw);
* ``hover_ms`` — moving the mouse onto query token N/2 in the head view until two frames later.

With ``--before COMMIT`` the page as it was at that commit is measured too, its loads
interleaved with the current page's (before, after, before, …) so that load from other processes
falls on both alike; each row gives medians over ``--repeats`` loads.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "page_render.json"
CHROMIUM = "/usr/bin/chromium"
STATIC = "src/attnlab/viz/static"
MINILM_LAYERS, MINILM_HEADS = 6, 12
DESCRIPTION = {
    "first_view_ms": "ms from navigation start until the first frame with both views drawn is on screen "
                     "(two animation frames after drawn_ms, so its rasterisation is included)",
    "drawn_ms": "ms from navigation start to the first animation frame at which the head view and model view are drawn",
    "parse_ms": "ms from navigation start to DOMContentLoaded (HTML and embedded JSON read, nothing drawn)",
    "layer_switch_ms": "ms from choosing layer 1 to two frames later",
    "hover_ms": "ms from moving the mouse onto query token N/2 to two frames later",
    "html_mb": "size of the page, MB (the document's JSON is almost all of it)",
}

# Run in the page from its first frame: the first frame at which the head view and the model view
# are both drawn (the pre-canvas page drew SVG tokens and canvas thumbnails; the canvas page marks
# each drawn view with data-drawn) sets __drawn; two frames later, when that frame has been
# rasterised and shown, __shown.
WATCH = """(() => {
  window.__drawn = null; window.__shown = null;
  const drawn = () => document.querySelector('[data-testid=head-view] .token, [data-testid=head-view][data-drawn]')
                      && document.querySelector('.thumb');
  const watch = () => {
    if (window.__drawn === null && drawn()) {
      window.__drawn = performance.now();
      requestAnimationFrame(() => requestAnimationFrame(() => { window.__shown = performance.now(); }));
      return;
    }
    requestAnimationFrame(watch);
  };
  requestAnimationFrame(watch);
  document.addEventListener('DOMContentLoaded', () => { window.__parsed = performance.now(); }, {capture: true, once: true});
})();"""
TWO_FRAMES = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
# Where query token i is on screen: an SVG/DOM token, or the canvas head view's published layout
# (the canvas view scrolls inside its panel: scroll there first).
TOKEN_POINT = """(index) => {
  const token = document.querySelector(`[data-testid=head-view] .token[data-side=query][data-index="${index}"]`);
  if (token) { token.scrollIntoView({block: 'center'}); const b = token.getBoundingClientRect();
               return [b.left + b.width / 2, b.top + b.height / 2]; }
  const view = document.querySelector('[data-testid=head-view] [data-layout]:not([hidden])');
  const layout = JSON.parse(view.dataset.layout), scale = layout.scale || 1;
  const y = (layout.top + index * layout.row) * scale, scroller = view.closest('.head-scroll');
  scroller.scrollIntoView({block: 'center'});
  scroller.scrollTop = y - scroller.clientHeight / 2;
  const box = view.getBoundingClientRect();
  return [box.left + layout.queryX * scale - 10, box.top + y];
}"""


def minilm_like_doc(num_tokens: int, *, layers: int = MINILM_LAYERS, heads: int = MINILM_HEADS, seed: int = 0) -> dict:
    """A minilm-shaped ``encoder_self`` document over ``num_tokens`` wordpieces ([CLS] … [SEP])."""
    from attnlab.document import build_document

    rng = np.random.default_rng(seed)
    tokens = ["[CLS]", *(f"piece{i}" for i in range(num_tokens - 2)), "[SEP]"]
    attention = []
    for layer in range(layers):
        scores = rng.normal(scale=2.0, size=(heads, num_tokens, num_tokens))  # (H, L, L)
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention.append({"kind": "encoder_self", "layer": layer, "weights": weights / weights.sum(-1, keepdims=True)})
    return build_document(tokens, None, attention)


def page_from_commit(doc: dict, commit: str) -> str:
    """attention.html built the way viz/html.py built it at ``commit``, from that commit's static files."""
    from attnlab.viz.html import embed_json

    def static(name: str) -> str:
        return subprocess.run(["git", "show", f"{commit}:{STATIC}/{name}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout

    page = static("page.html")
    start, end = page.index("<!--explorer-->"), page.index("<!--/explorer-->") + len("<!--/explorer-->")
    page = page[:start] + page[end:]
    page = page.replace("{{style}}", static("attention.css"), 1).replace("{{title}}", "benchmark")
    page = page.replace("{{data}}", embed_json({"doc": doc, "explorer": None}), 1)
    return page.replace("{{script}}", static("attention.js").replace("</", "<\\/"), 1)


def tree_state() -> str:
    """The commit the working tree is at, and whether the page's static files differ from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--", STATIC], cwd=REPO, capture_output=True, text=True).stdout
    return f"HEAD {head or '?'}, static files {'modified' if changed.strip() else 'as committed'}"


def page_now(doc: dict) -> str:
    from attnlab.viz.html import render_page

    return render_page(doc, title="benchmark")


def load_once(browser, path: Path, num_tokens: int) -> dict:
    """Open ``path`` in a fresh tab and time the first view, a layer switch and a hover (ms)."""
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(WATCH)
    page.goto(path.as_uri(), timeout=600_000)
    page.wait_for_function("() => window.__shown !== null", polling=50, timeout=600_000)
    parsed, drawn, first = page.evaluate("() => [window.__parsed, window.__drawn, window.__shown]")
    start = time.perf_counter()
    page.select_option("[data-testid=layer-select]", "1")
    page.evaluate(TWO_FRAMES)
    switch = 1000 * (time.perf_counter() - start)
    x, y = page.evaluate(TOKEN_POINT, num_tokens // 2)
    page.evaluate(TWO_FRAMES)
    start = time.perf_counter()
    page.mouse.move(x, y)
    page.evaluate(TWO_FRAMES)
    hover = 1000 * (time.perf_counter() - start)
    page.close()
    return {"first_view_ms": first, "drawn_ms": drawn, "parse_ms": parsed, "layer_switch_ms": switch,
            "hover_ms": hover, "errors": errors}


def summarise(loads: list[dict]) -> dict:
    """Medians over the loads of one page, with every first-view time kept."""
    summary = {name: statistics.median(load[name] for load in loads)
               for name in ("parse_ms", "drawn_ms", "first_view_ms", "layer_switch_ms", "hover_ms")}
    summary["first_view_ms_all"] = [round(load["first_view_ms"], 1) for load in loads]
    summary["script_errors"] = [error for load in loads for error in load["errors"]]
    return summary


def main(argv: list[str] | None = None) -> int:
    from attnlab.benchmarking import log_to_stderr, script_parser

    parser = script_parser(__doc__.splitlines()[0])  # --quick, --json PATH, --threads (unused: no torch here)
    parser.add_argument("--before", metavar="COMMIT",
                        help="also measure the page's static files at COMMIT, interleaved with the working tree's")
    parser.add_argument("--tokens", default="32,128,512", help="comma-separated token counts (default 32,128,512)")
    parser.add_argument("--repeats", type=int, default=3, help="page loads per page and token count (default 3)")
    parser.set_defaults(json=str(RESULTS))
    args = parser.parse_args(argv)
    try:
        counts = [32] if args.quick else [int(n) for n in args.tokens.split(",")]
    except ValueError:
        parser.error(f"--tokens must be comma-separated integers, got {args.tokens!r}")
    repeats = 1 if args.quick else args.repeats
    if repeats < 1 or min(counts) < 3:
        parser.error("--repeats must be >= 1 and every token count >= 3")
    if args.before and subprocess.run(["git", "cat-file", "-e", f"{args.before}:{STATIC}/attention.js"], cwd=REPO,
                                      capture_output=True).returncode != 0:
        parser.error(f"--before {args.before}: no {STATIC}/attention.js at that commit")

    from playwright.sync_api import sync_playwright

    from attnlab.benchmarking import environment, format_table, write_json

    pages = {"after": f"working tree ({tree_state()})"}
    if args.before:
        pages = {"before": f"static files at {args.before}", **pages}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for num_tokens in counts:
            log_to_stderr(f"building the {num_tokens}-token pages…")
            doc = minilm_like_doc(num_tokens)
            paths = {}
            for label in pages:
                paths[label] = Path(tmp) / f"{label}-{num_tokens}.html"
                paths[label].write_text(page_from_commit(doc, args.before) if label == "before" else page_now(doc),
                                        encoding="utf-8")
            del doc
            loads = {label: [] for label in pages}
            for _ in range(repeats):  # interleaved: before, after, before, after, ...
                for label in pages:
                    loads[label].append(load_once(browser, paths[label], num_tokens))
            for label in pages:
                row = {"page": label, "tokens": num_tokens, "layers": MINILM_LAYERS, "heads": MINILM_HEADS,
                       "html_mb": round(paths[label].stat().st_size / 1e6, 1), **summarise(loads[label])}
                rows.append(row)
                log_to_stderr(f"  {label}, {num_tokens} tokens: first view {row['first_view_ms']:.0f} ms "
                              f"(parse {row['parse_ms']:.0f} ms)")
        version = browser.version
        browser.close()
    print(format_table(rows, ["page", "tokens", "html_mb", "parse_ms", "drawn_ms", "first_view_ms",
                              "layer_switch_ms", "hover_ms"], float_format=".0f"))
    result = {"pages": pages, "chromium": version, "viewport": "1400x900", "repeats": repeats,
              "environment": environment(), "description": DESCRIPTION, "rows": rows}
    print(f"wrote {write_json(args.json, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
