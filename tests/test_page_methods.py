"""The method switch (doc.explanations) and head ablation in the explorer, in real Chromium."""

import json

import numpy as np
import pytest
from page_support import (decoding_doc, diverging, local_server, screenshot, thumb_pixels, viridis, with_explanations)

from attnlab.viz.html import render_page, write_attention_html

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SOURCE = "the cat sat on the mat .".split()
EMITTED = ["le", "chat", "est", "assis", "<eos>"]


def link_weights(page):
    return page.locator(".link").evaluate_all("ls => ls.map(l => [+l.dataset.q, +l.dataset.k, +l.dataset.w])")


def test_method_switch_redraws_every_view_from_the_chosen_matrices(page, tmp_path):
    doc = with_explanations(decoding_doc(SOURCE, EMITTED, layers=2, heads=4))
    page.goto(write_attention_html(doc, tmp_path / "attention.html").as_uri())
    buttons = page.locator("[data-testid=method-switch] button")
    assert buttons.all_text_contents() == ["attention", "rollout", "grad×input", "IG"]
    assert page.locator(".thumb").count() == 2 * 4

    # Rollout of the encoder: one map for the whole model, non-negative, viridis on value / max.
    page.click("[data-testid=method-switch] button[data-method=rollout]")
    rollout = np.asarray(doc["explanations"][0]["matrix"])
    assert page.locator(".thumb").count() == 1
    assert page.get_by_test_id("layer-select").locator("option").all_text_contents() == ["all layers"]
    assert "identity, renormalised" in page.get_by_test_id("method-note").text_content()
    pixels = thumb_pixels(page, ".thumb")
    expected = np.array([[viridis(v / rollout.max()) for v in row] for row in rollout])
    assert np.abs(pixels - expected).max() <= 1
    drawn = link_weights(page)
    assert sorted(map(tuple, drawn)) == sorted((q, k, v) for q, row in enumerate(rollout.tolist()) for k, v in enumerate(row)
                                   if v / rollout.max() >= 0.01)
    assert page.get_by_test_id("legend-high").text_content() == str(round(rollout.max(), 3))

    # Signed grad×input of cross-attention: diverging colours, zero white, one map per layer.
    page.click("[data-testid=method-switch] button[data-method=grad_x_input]")
    assert page.locator("[data-testid=kind-switch] button").all_text_contents() == ["Cross"]
    assert page.locator(".thumb").count() == 2
    gradients = np.asarray(doc["explanations"][3]["matrix"])  # layer 1
    largest = max(np.abs(np.asarray(e["matrix"])).max() for e in doc["explanations"][2:4])
    pixels = thumb_pixels(page, ".thumb[data-layer='1']")
    expected = np.array([[diverging(v / largest) for v in row] for row in gradients])
    assert np.abs(pixels - expected).max() <= 1
    page.select_option("[data-testid=layer-select]", "0")
    assert (thumb_pixels(page, ".thumb[data-layer='0']")[0, 0] == 255).all()  # the exact zero is white
    strokes = page.locator(".link").evaluate_all("ls => ls.map(l => [+l.dataset.w, l.getAttribute('stroke')])")
    assert strokes and {stroke for w, stroke in strokes if w < 0} == {"rgb(33,102,172)"}
    assert {stroke for w, stroke in strokes if w > 0} == {"rgb(178,24,43)"}
    assert page.get_by_test_id("legend-low").text_content().startswith("-")
    assert "red positive, blue negative" in page.get_by_test_id("model-hint").text_content()
    assert "grad×input map" in page.get_by_test_id("head-hint").text_content()
    page.click(".thumb[data-layer='0']")
    assert page.get_by_test_id("enlarged-title").text_content() == "Cross · layer 0 · grad×input"
    cells = page.locator("[data-testid=enlarged] rect.cell").evaluate_all("cs => cs.map(c => +c.dataset.w)")
    assert np.allclose(cells, np.asarray(doc["explanations"][2]["matrix"]).ravel())
    screenshot(page, "page-method-grad.png")

    page.click("[data-testid=method-switch] button[data-method=integrated_gradients]")
    assert "completeness error 0.0031" in page.get_by_test_id("method-note").text_content()

    # Back to attention: every head again, the kind kept.
    page.click("[data-testid=method-switch] button[data-method=attention]")
    assert page.locator(".thumb").count() == 2 * 4
    assert page.locator("[data-testid=kind-switch] button.active").text_content() == "Cross"


def test_a_document_without_explanations_has_no_method_switch(page, tmp_path):
    doc = decoding_doc(SOURCE, EMITTED, layers=1, heads=2)
    page.goto(write_attention_html(doc, tmp_path / "attention.html").as_uri())
    assert page.get_by_test_id("method-switch").is_hidden()


def test_clicking_a_head_ablates_it_at_once_and_reset_restores_the_model(page):
    base = decoding_doc(SOURCE, EMITTED, layers=2, heads=4)
    posted = []

    def attention(body):
        return 200, "application/json", json.dumps(base).encode()

    def ablate(body):
        request = json.loads(body)
        posted.append(request)
        heads = request["heads"]
        doc = decoding_doc(SOURCE, EMITTED, layers=2, heads=4, seed=len(heads))
        doc["translation"] = base["translation"] if not heads else f"le chien ({len(heads)} off)"
        doc["logprob_change"] = -0.25 * len(heads)
        return 200, "application/json", json.dumps(doc).encode()

    def refuse(body):
        return 400, "application/json", json.dumps({"detail": "head 9 out of range 0..3"}).encode()

    explorer = {"api": "/api/attention", "ablate": "/api/ablate", "max_beam": 4, "max_chars": 200, "examples": []}
    html = render_page(None, title="explorer", explorer=explorer).encode()
    with local_server({"GET /": lambda body: (200, "text/html; charset=utf-8", html),
                       "POST /api/attention": attention, "POST /api/ablate": ablate}) as url:
        page.goto(url + "/")
        assert page.get_by_test_id("ablation").is_hidden()
        page.get_by_test_id("text-input").fill("the cat sat on the mat .")
        page.get_by_test_id("submit").click()
        page.get_by_test_id("ablation").wait_for()
        page.click("[data-testid=kind-switch] button[data-kind=cross]")

        # Ablation off: a click enlarges, as always.
        page.click(".thumb[data-layer='1'][data-head='2']")
        assert page.get_by_test_id("enlarged").is_visible() and posted == []

        page.get_by_test_id("ablate-mode").check()
        page.click(".thumb[data-layer='1'][data-head='2']")
        page.wait_for_function("() => document.querySelector('[data-testid=logprob-change]')")
        assert posted[-1] == {"text": "the cat sat on the mat .", "target": None, "beam": 1,
                              "heads": [{"kind": "cross", "layer": 1, "head": 2}]}
        assert page.get_by_test_id("ablated-translation").text_content() == "le chien (1 off)"
        assert page.get_by_test_id("logprob-change").text_content() == "-0.250"
        assert base["translation"] in page.get_by_test_id("ablation-result").text_content()
        assert page.get_by_test_id("translation").text_content() == "le chien (1 off)"  # the views redrawn
        assert "ablated" in page.locator(".thumb[data-layer='1'][data-head='2']").get_attribute("class")
        assert page.get_by_test_id("ablated-heads").text_content() == "ablated: cross layer 1 head 2"
        assert page.locator("[data-testid=kind-switch] button.active").text_content() == "Cross"  # place kept

        page.click(".thumb[data-layer='0'][data-head='0']")
        page.wait_for_function("() => document.querySelector('[data-testid=logprob-change]')?.textContent === '-0.500'")
        assert len(posted[-1]["heads"]) == 2
        page.click(".thumb[data-layer='1'][data-head='2']")  # a second click restores that head
        page.wait_for_function("() => document.querySelector('[data-testid=logprob-change]')?.textContent === '-0.250'")
        assert posted[-1]["heads"] == [{"kind": "cross", "layer": 0, "head": 0}]
        screenshot(page, "page-ablation.png")
        # The explorer's views download like the page's.
        with page.expect_download() as info:
            page.click("[data-testid=head-view] .download[data-format=png]")
        assert open(info.value.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        with page.expect_download() as info:
            page.click("[data-testid=model-panel] .download[data-format=svg]")
        assert open(info.value.path(), "rb").read().lstrip().startswith(b"<svg")

        page.get_by_test_id("ablate-reset").click()
        page.wait_for_function("() => document.querySelector('[data-testid=logprob-change]')?.textContent === '0.000'")
        assert posted[-1]["heads"] == []
        assert page.get_by_test_id("ablated-translation").text_content() == base["translation"]
        assert page.locator(".thumb.ablated").count() == 0
        assert page.get_by_test_id("ablated-heads").text_content() == "no head ablated"

    # A refused ablation is reported and the page keeps working.
    with local_server({"GET /": lambda body: (200, "text/html; charset=utf-8", html),
                       "POST /api/attention": attention, "POST /api/ablate": refuse}) as url:
        page.goto(url + "/")
        page.get_by_test_id("text-input").fill("the cat")
        page.get_by_test_id("submit").click()
        page.get_by_test_id("ablation").wait_for()
        page.get_by_test_id("ablate-mode").check()
        page.click(".thumb[data-layer='0'][data-head='1']")
        page.wait_for_function("() => document.querySelector('[data-testid=ablation-result]').classList.contains('error')")
        assert "head 9 out of range 0..3" in page.get_by_test_id("ablation-result").text_content()
