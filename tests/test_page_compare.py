"""The compare page (payload "compare"), and several pages in one document, in real Chromium."""

import numpy as np
import pytest
from page_support import compare_payload, decoding_doc, diverging, head_means, screenshot

from attnlab.document import synthetic_attention_doc
from attnlab.viz.html import page_script, page_style, render_compare_html, render_page

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SOURCE = "the cat sat on the mat .".split()
EMITTED = ["le", "chat", "est", "assis", "<eos>"]


def open_compare(page, tmp_path, payload):
    path = tmp_path / "compare.html"
    path.write_text(render_compare_html(payload), encoding="utf-8")
    page.goto(path.as_uri())


def difference_cells(page):
    return page.locator("[data-testid=difference-view] rect.cell").evaluate_all(
        "cs => cs.map(c => [+c.dataset.q, +c.dataset.k, +c.dataset.w, c.getAttribute('fill')])")


def test_a_run_compared_with_itself_shows_both_views_and_a_zero_difference(page, tmp_path):
    doc = decoding_doc(SOURCE, EMITTED, layers=2, heads=4)
    open_compare(page, tmp_path, compare_payload(doc, doc))
    for side in ("compare-a", "compare-b"):
        assert page.locator(f"[data-testid={side}] .thumb").count() == 2 * 4
        assert page.locator(f"[data-testid={side}] [data-testid=head-view] .token").count() > 0
    assert page.locator("[data-testid=compare-label]").all_text_contents() == ["A · runs/a", "B · runs/b"]
    assert page.locator("[data-testid=compare-kind] button").all_text_contents() == [
        "Encoder self", "Decoder self (masked)", "Cross"]
    for kind in ("encoder_self", "decoder_self", "cross"):
        page.click(f"[data-testid=compare-kind] button[data-kind={kind}]")
        for layer in ("0", "1"):
            page.select_option("[data-testid=compare-layer]", layer)
            cells = difference_cells(page)
            assert len(cells) == len(head_means(doc)[kind, int(layer)].ravel())
            assert {w for _, _, w, _ in cells} == {0.0}
            assert {fill for _, _, _, fill in cells} == {"rgb(255,255,255)"}  # zero is white
            assert page.get_by_test_id("difference-max").text_content() == "largest |difference|: 0"
    screenshot(page, "page-compare-self.png")


def test_two_runs_give_the_difference_of_their_head_means_and_one_chooser_moves_both(page, tmp_path):
    doc_a = decoding_doc(SOURCE, EMITTED, layers=2, heads=4, seed=1)
    doc_b = decoding_doc(SOURCE, EMITTED, layers=2, heads=2, seed=2)  # another head count: still comparable
    open_compare(page, tmp_path, compare_payload(doc_a, doc_b))
    page.click("[data-testid=compare-kind] button[data-kind=cross]")
    page.select_option("[data-testid=compare-layer]", "1")
    expected = head_means(doc_b)["cross", 1] - head_means(doc_a)["cross", 1]
    cells = difference_cells(page)
    got = np.zeros_like(expected)
    for q, k, w, fill in cells:
        got[q, k] = w
        color = diverging(w / np.abs(np.round(expected, 6)).max())
        assert fill == "rgb({},{},{})".format(*color.astype(int))
    assert np.allclose(got, expected, atol=1e-6)
    assert page.get_by_test_id("difference-max").text_content() == \
        f"largest |difference|: {round(float(np.abs(np.round(expected, 6)).max()), 3)}"
    # Both viewers follow the chooser: cross-attention, layer 1.
    for side in ("compare-a", "compare-b"):
        box = page.locator(f"[data-testid={side}]")
        assert box.locator("[data-testid=kind-switch] button.active").text_content() == "Cross"
        assert box.get_by_test_id("layer-select").input_value() == "1"
    assert page.locator("[data-testid=compare-b] .thumb").count() == 2 * 2
    screenshot(page, "page-compare-two.png")


def test_two_pages_in_one_document_do_not_interfere(page, tmp_path):
    """As in a notebook: two roots, each with the script after it; a third mounted after load."""
    doc_1 = synthetic_attention_doc(["one", "two", "three"], None, num_layers=1, num_heads=2, seed=1)
    doc_2 = synthetic_attention_doc(["alpha", "beta", "gamma", "delta"], None, num_layers=2, num_heads=3, seed=2)

    def root_of(doc):
        page_html = render_page(doc, title="view")
        start = page_html.index("<div class=\"attnlab app\"")
        end = page_html.index("<script>\n")
        return page_html[start:end]

    script = "<script>" + page_script() + "</script>"
    html = ("<!doctype html><html><head><meta charset=utf-8><style>" + page_style() + "</style></head><body>" +
            root_of(doc_1) + script + root_of(doc_2) + script + "</body></html>")
    path = tmp_path / "two.html"
    path.write_text(html, encoding="utf-8")
    page.goto(path.as_uri())
    roots = page.locator("[data-attnlab-root]")
    assert roots.count() == 2
    assert page.locator("[id]").count() == 0  # no element ids to collide
    assert roots.nth(0).locator(".thumb").count() == 2 and roots.nth(1).locator(".thumb").count() == 6
    roots.nth(1).locator(".token[data-side=query][data-index='3']").hover()
    assert roots.nth(1).locator(".link.highlighted").count() > 0
    assert roots.nth(0).locator(".link.highlighted, .link.dimmed").count() == 0
    roots.nth(0).locator(".token[data-side=key][data-index='0']").hover()
    assert roots.nth(0).locator(".link.highlighted").count() > 0
    assert roots.nth(1).locator(".link.highlighted, .link.dimmed").count() == 0
    roots.nth(1).get_by_test_id("layer-select").select_option("1")
    assert roots.nth(0).get_by_test_id("layer-select").input_value() == "0"

    # A page added after load (a notebook output appearing later) mounts when its script runs.
    page.evaluate("""([root, script]) => {
        const holder = document.createElement('div');
        holder.innerHTML = root;
        document.body.appendChild(holder);
        const element = document.createElement('script');
        element.textContent = script;
        document.body.appendChild(element);
    }""", [root_of(doc_2), page_script()])
    assert roots.count() == 3
    assert roots.nth(2).locator(".thumb").count() == 6
    assert roots.nth(0).locator(".thumb").count() == 2  # the first ones were not mounted twice
    assert page.locator("[data-attnlab-mounted]").count() == 3
