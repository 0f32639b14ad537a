"""A 512-token input (minilm's limit) in real Chromium: drawn on a canvas, thinned by a threshold,
responsive, and downloadable; and the PNG/SVG download buttons of every view of a small page."""

import json
import re

import numpy as np
import pytest
from page_support import decoding_doc, download, parse_svg, png_size, screenshot, with_explanations

from attnlab.document import build_document
from attnlab.viz.html import write_attention_html

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TOKENS, LAYERS, HEADS = 512, 2, 4
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def long_page(tmp_path_factory):
    """An encoder-only document over 512 wordpieces, as minilm gives, rounded to 6 decimals."""
    rng = np.random.default_rng(0)
    tokens = ["[CLS]", *(f"piece{i}" for i in range(TOKENS - 2)), "[SEP]"]
    attention = []
    for layer in range(LAYERS):
        scores = rng.normal(scale=2.0, size=(HEADS, TOKENS, TOKENS))  # (H, L, L)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        attention.append({"kind": "encoder_self", "layer": layer, "weights": weights / weights.sum(-1, keepdims=True)})
    doc = build_document(tokens, None, attention)
    path = write_attention_html(doc, tmp_path_factory.mktemp("long") / "attention.html", title="512 tokens")
    return path, np.asarray(doc["attention"][0]["weights"])


def layout_of(page):
    return json.loads(page.locator("[data-testid=head-view] .head-canvas-box").get_attribute("data-layout"))


def test_a_512_token_page_renders_on_a_canvas_and_the_threshold_thins_its_links(page, long_page):
    path, weights = long_page
    page.goto(path.as_uri(), timeout=120_000)
    page.wait_for_selector("[data-testid=model-view][data-drawn]", timeout=120_000)
    view = page.get_by_test_id("head-view")
    assert view.get_attribute("data-mode") == "canvas"
    assert page.locator(".head-svg line, .head-svg text").count() == 0  # no 100 000 SVG elements
    assert page.locator(".thumb").count() == LAYERS * HEADS
    # The default threshold for long inputs is 0.05: exactly the links at or above it are drawn.
    assert page.get_by_test_id("threshold-value").text_content() == "0.050"
    assert int(view.get_attribute("data-links")) == int((weights >= 0.05).sum())
    page.get_by_test_id("threshold").fill("0.2")
    assert page.get_by_test_id("threshold-value").text_content() == "0.200"
    assert int(view.get_attribute("data-links")) == int((weights >= 0.2).sum()) < int((weights >= 0.05).sum())
    page.get_by_test_id("threshold").fill("0.05")

    # Hovering query token 300 on the canvas focuses it (the canvas scrolls inside its panel).
    layout = layout_of(page)
    y = (layout["top"] + 300 * layout["row"]) * layout["scale"]
    page.locator(".head-scroll").evaluate("(s, y) => { s.scrollIntoView({block: 'center'}); s.scrollTop = y - 200; }", y)
    box = page.locator(".head-canvas-box").bounding_box()
    page.mouse.move(box["x"] + (layout["queryX"] - 20) * layout["scale"], box["y"] + y)
    focus = page.evaluate("() => document.querySelector('[data-attnlab-root]').attnlab.viewer.state.focus")
    assert focus == {"side": "query", "index": 300}
    # The canvas shows the band around token 300: its pixels there are not blank.
    canvas = page.locator(".head-canvas")
    assert canvas.evaluate("c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                           " let ink = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 200) ink++; return ink; }") > 500
    screenshot(page, "page-512-tokens.png")

    # Every view still downloads: the head view as a full PNG and as an SVG with one line per link.
    name, data = download(page, "[data-testid=head-view] .download[data-format=png]")
    assert name.endswith(".png")
    assert png_size(data) == (int(np.ceil(layout["width"] * 2)), int(np.ceil(layout["height"] * 2)))
    name, data = download(page, "[data-testid=head-view] .download[data-format=svg]")
    svg = parse_svg(data)
    assert len(svg.findall(f".//{SVG_NS}line")) == int(view.get_attribute("data-links"))
    texts = [t.text for t in svg.iter(f"{SVG_NS}text")]
    assert texts.count("piece300") == 2 and "QUERIES" in texts
    # The enlarged 512 x 512 heatmap is a canvas too, with a readout under the mouse.
    page.click(".thumb[data-layer='0'][data-head='1']")
    assert page.locator("[data-testid=enlarged] .heatmap-canvas").is_visible()
    page.locator("[data-testid=enlarged] .heatmap-canvas").scroll_into_view_if_needed()
    heat = page.locator("[data-testid=enlarged] .heatmap-canvas").bounding_box()
    page.mouse.move(heat["x"] + heat["width"] * 0.6, heat["y"] + heat["height"] - 20)  # among the cells
    assert re.fullmatch(r"piece\d+ → (piece\d+|\[SEP\]): [-0-9.e]+", page.get_by_test_id("enlarged-readout").text_content())
    name, data = download(page, "[data-testid=enlarged] .download[data-format=png]")
    assert png_size(data)[0] > 1000


def test_every_view_of_a_small_page_downloads_as_png_and_svg(page, tmp_path):
    doc = with_explanations(decoding_doc("the <b>cat</b> sat on the mat .".split(), ["le", "chat", "assis", "<eos>"]))
    page.goto(write_attention_html(doc, tmp_path / "attention.html").as_uri())
    page.get_by_test_id("step-next").click()  # a step pinned: the downloads show it too
    page.click(".thumb[data-layer='1'][data-head='3']")
    for view in ("head-view", "model-panel", "enlarged"):
        name, data = download(page, f"[data-testid={view}] .download[data-format=png]")
        width, height = png_size(data)
        assert name.endswith(".png") and width > 100 and height > 100
        name, data = download(page, f"[data-testid={view}] .download[data-format=svg]")
        assert name.endswith(".svg")
        svg = parse_svg(data)
        assert svg.get("width") and svg.get("viewBox")
        if view == "head-view":  # the hostile token is text in the file, not markup
            assert "<b>cat</b>" in [t.text for t in svg.iter(f"{SVG_NS}text")]
            assert not svg.findall(f".//{SVG_NS}b") and not svg.findall(".//b")
            lines = svg.findall(f".//{SVG_NS}line")
            assert len(lines) == page.locator(".link").count()
            # The pinned step's row keeps its opacity (its weight); every other link is dimmed to 4 %.
            row = page.locator(".link[data-q='0']").evaluate_all(
                "ls => ls.filter(l => +(+l.dataset.w).toFixed(3) > 0.0405).length")
            assert row > 0 and sum(float(line.get("stroke-opacity")) > 0.0405 for line in lines) == row
        if view == "model-panel":
            images = svg.findall(f".//{SVG_NS}image")
            assert len(images) == 2 * 4 and all(i.get("href").startswith("data:image/png;base64,") for i in images)
        if view == "enlarged":
            assert len(svg.findall(f".//{SVG_NS}image")) == 1 and svg.find(f".//{SVG_NS}rect[@stroke]") is not None
    # The method switch's maps download too, with the diverging scale.
    page.click("[data-testid=method-switch] button[data-method=grad_x_input]")
    name, data = download(page, "[data-testid=model-panel] .download[data-format=svg]")
    assert "grad_x_input" in name and len(parse_svg(data).findall(f".//{SVG_NS}image")) == 2
