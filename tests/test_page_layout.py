"""Headings and long tokens stay readable at every tested width (issue 15, item 7).

Seen before the fix at 1400 px: in the head view of cross-attention "TARGET (QUERIES)" showed as
"ˉ (QUERIES)" and "SOURCE (KEYS)" as "SOURCE (KE" — the headings ran out of the drawing when the
tokens were short. Each width is screenshotted to test-artifacts/.
"""

import pytest
from page_support import decoding_doc, screenshot

from attnlab.viz.html import write_attention_html

pytestmark = [pytest.mark.slow, pytest.mark.browser]

LONG = "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichenherstellungsbetriebsleiter"
CASES = {
    "short": (["a", "b", "."], ["x", "y", "<eos>"]),  # the case that clipped: headings wider than tokens
    "long": (["the", LONG, "sat", LONG[::-1]], ["le", LONG[:40], "assis", "<eos>"]),  # a long last key too
}

# Each box of a heading / token / label, against the box of its SVG and the viewport.
BOXES = """(selector) => [...document.querySelectorAll(selector)].filter(e => e.getClientRects().length).map(e => {
  const b = e.getBoundingClientRect(), s = e.ownerSVGElement.getBoundingClientRect();
  return {text: e.textContent, left: b.left, right: b.right, top: b.top, bottom: b.bottom,
          svgLeft: s.left, svgRight: s.right, svgTop: s.top, svgBottom: s.bottom}; })"""
# HTML headings and buttons whose text would be cut (scrollWidth beyond the box).
CUT = """() => [...document.querySelectorAll('.attnlab h1, .attnlab h2, .attnlab h3, .attnlab button, .attnlab .axis, .attnlab label')]
  .filter(e => e.getClientRects().length && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"""


def inside(box, slack=1.0):
    return (box["left"] >= box["svgLeft"] - slack and box["right"] <= box["svgRight"] + slack and
            box["top"] >= box["svgTop"] - slack and box["bottom"] <= box["svgBottom"] + slack)


@pytest.mark.parametrize("width", [800, 1400, 1920])
@pytest.mark.parametrize("case", sorted(CASES))
def test_headings_and_tokens_are_not_clipped(page, tmp_path, width, case):
    source, emitted = CASES[case]
    page.set_viewport_size({"width": width, "height": 900})
    path = write_attention_html(decoding_doc(source, emitted, layers=1, heads=2), tmp_path / "attention.html")
    page.goto(path.as_uri())
    page.click("[data-testid=kind-switch] button[data-kind=cross]")
    page.click(".thumb[data-layer='0'][data-head='1']")

    titles = page.evaluate(BOXES, "[data-testid=head-view] .column-title")
    assert [t["text"] for t in titles] == ["TARGET (QUERIES)", "SOURCE (KEYS)"]
    for title in titles:
        assert inside(title), f"{title['text']} runs out of the head view at {width} px"
        assert title["left"] >= 0 and title["right"] <= width, f"{title['text']} leaves the window at {width} px"
    assert titles[0]["right"] <= titles[1]["left"], "the two headings overlap"

    tokens = page.evaluate(BOXES, "[data-testid=head-view] .token")
    assert len(tokens) == len(source) + len(emitted)
    assert all(inside(t) and t["left"] >= 0 and t["right"] <= width for t in tokens)
    queries, keys = tokens[:len(emitted)], tokens[len(emitted):]  # drawn column by column
    assert max(t["right"] for t in queries) < min(t["left"] for t in keys)
    if case == "long":  # a token too long for its column is shortened with "…" and keeps its full text as a tooltip
        shortened = page.locator("[data-testid=head-view] .token", has_text="…")
        assert sorted(shortened.locator("title").all_text_contents()) == sorted([LONG, LONG[:40], LONG[::-1]])

    labels = page.evaluate(BOXES, "[data-testid=enlarged] .heatmap-svg text")
    assert labels and all(inside(label) for label in labels), "a heatmap label runs out of its map"
    assert page.evaluate(CUT) == []
    screenshot(page, f"page-layout-{case}-{width}.png")
