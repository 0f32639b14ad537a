"""The attention page and the explorer, driven in a real headless Chromium.

Needs Chromium at /usr/bin/chromium (or $ATTNLAB_CHROMIUM); CI installs it, so its absence is a
failure, not a skip. Screenshots go to test-artifacts/ at the repository root.
"""

import os
from pathlib import Path

import pytest
from conftest import ARTIFACTS
from playwright.sync_api import expect

from attnlab.document import synthetic_attention_doc
from attnlab.viz.explorer import background_server, create_app
from attnlab.viz.html import write_attention_html

pytestmark = [pytest.mark.slow, pytest.mark.browser]

HOSTILE_SOURCE = ["the", "<script>alert(1)</script>", "cat", "</script>", "sat", "."]
TARGET = ["le", "chat", "<img src=x onerror=alert(2)>", "assis", "."]
LAYERS, HEADS = 2, 4


@pytest.fixture
def page(browser):
    """A page that records every request, dialog and script error."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.requested, page.dialogs, page.errors = [], [], []
    page.on("request", lambda request: page.requested.append(request.url))
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    page.close()
    assert page.requested, "the page made no request at all?"
    outside = [url for url in page.requested
               if not (url.startswith("file://") or url.startswith("http://127.0.0.1:"))]
    assert outside == [], f"requests left the machine: {outside}"
    assert page.dialogs == [], f"a token ran as script: {page.dialogs}"
    assert page.errors == [], f"script errors: {page.errors}"


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_static_page_from_disk_head_view_model_view_and_kind_switch(page, tmp_path):
    doc = synthetic_attention_doc(HOSTILE_SOURCE, TARGET, num_layers=LAYERS, num_heads=HEADS)
    path = write_attention_html(doc, tmp_path / "attention.html", title="attnlab attention")
    page.goto(path.as_uri())

    # Hostile tokens are shown literally, as text.
    assert page.get_by_test_id("source-text").text_content() == " ".join(HOSTILE_SOURCE)
    assert page.locator(".token", has_text="<script>alert(1)</script>").count() == 2  # query + key column
    assert page.locator("img").count() == 0

    # Model view: one thumbnail per layer x head of the first kind (encoder_self).
    assert page.locator(".thumb").count() == LAYERS * HEADS
    assert page.locator("[data-testid=kind-switch] button").all_text_contents() == [
        "Encoder self", "Decoder self (masked)", "Cross"]

    # Hovering a query token highlights exactly its links and dims the others.
    page.hover(".token[data-side=query][data-index='2']")
    highlighted = page.locator(".link.highlighted")
    assert highlighted.count() > 0 and page.locator(".link.dimmed").count() > 0
    assert set(highlighted.evaluate_all("lines => lines.map(l => l.dataset.q)")) == {"2"}
    assert "active" in page.locator(".token[data-side=query][data-index='2']").get_attribute("class")
    screenshot(page, "attention-hover.png")
    page.mouse.move(5, 5)
    assert page.locator(".link.dimmed").count() == 0

    # Turning a head off removes its lines.
    assert page.locator(".link[data-head='0']").count() > 0
    page.locator(".head-chip[data-head='0'] input").uncheck()
    assert page.locator(".link[data-head='0']").count() == 0

    # Clicking a thumbnail enlarges it, labelled, with one cell per (query, key).
    page.click(".thumb[data-layer='1'][data-head='2']")
    assert page.get_by_test_id("enlarged").is_visible()
    assert page.get_by_test_id("enlarged-title").text_content() == "Encoder self · layer 1 · head 2"
    assert page.locator("[data-testid=enlarged] rect.cell").count() == len(HOSTILE_SOURCE) ** 2
    assert "selected" in page.locator(".thumb[data-layer='1'][data-head='2']").get_attribute("class")
    assert page.get_by_test_id("layer-select").input_value() == "1"
    screenshot(page, "attention-enlarged.png")

    # Switching to cross attention: target queries on the left, source keys on the right.
    page.click("[data-testid=kind-switch] button[data-kind=cross]")
    assert page.locator(".token[data-side=query]").all_text_contents() == TARGET
    assert page.locator(".token[data-side=key]").all_text_contents() == HOSTILE_SOURCE
    assert page.get_by_test_id("enlarged").is_hidden()
    page.select_option("[data-testid=layer-select]", "1")
    page.click("[data-testid=kind-switch] button[data-kind=decoder_self]")
    links = page.locator(".link").evaluate_all("ls => ls.map(l => [+l.dataset.q, +l.dataset.k])")
    assert links and all(key <= query for query, key in links)  # masked: nobody sees the future
    screenshot(page, "attention-decoder-self.png")


def fake_analyze(text, target, beam):
    words = text.split()
    if len(words) > 30:
        raise ValueError("at most 30 words")
    target_words = target.split() if target else [word.upper() for word in words]
    doc = synthetic_attention_doc(words, target_words, num_layers=LAYERS, num_heads=HEADS, seed=len(words))
    doc["translation"] = " ".join(target_words)
    return doc


def test_explorer_typed_sentence_redraws_the_views(page):
    app = create_app(fake_analyze, info={"examples": ["a small example"]})
    with background_server(app) as url:
        page.goto(url)
        assert page.get_by_test_id("empty").is_visible()
        assert page.locator("[data-testid=beam-select] option").count() == 8

        # Whitespace-only text: the server refuses, the page says why and keeps working.
        page.get_by_test_id("text-input").fill("   ")
        page.get_by_test_id("submit").click()
        expect(page.get_by_test_id("status")).to_have_class("status error")
        assert "text is empty" in page.get_by_test_id("status").text_content()

        page.get_by_test_id("text-input").fill("the cat sat on the mat")
        page.get_by_test_id("submit").click()
        expect(page.locator(".thumb")).to_have_count(LAYERS * HEADS)
        assert page.locator(".thumb").count() == LAYERS * HEADS
        assert page.get_by_test_id("translation").text_content() == "THE CAT SAT ON THE MAT"
        assert "error" not in page.get_by_test_id("status").get_attribute("class")
        page.hover(".token[data-side=key][data-index='1']")
        page.click(".thumb[data-layer='0'][data-head='1']")
        screenshot(page, "explorer.png")

        # A hostile sentence typed by the user is rendered as text, never run.
        page.get_by_test_id("text-input").fill("hi <script>alert(1)</script> </script> <b>x</b>")
        page.get_by_test_id("target-input").fill("<img src=x onerror=alert(3)>")
        page.get_by_test_id("submit").click()
        expect(page.get_by_test_id("translation")).to_have_text("<img src=x onerror=alert(3)>")
        assert page.get_by_test_id("source-text").text_content() == "hi <script>alert(1)</script> </script> <b>x</b>"
        assert page.locator("main b, main img").count() == 0

        # The example chips fill the box and submit.
        page.get_by_test_id("target-input").fill("")
        page.get_by_role("button", name="a small example").click()
        expect(page.get_by_test_id("translation")).to_have_text("A SMALL EXAMPLE")
