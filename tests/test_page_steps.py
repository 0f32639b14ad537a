"""The step control over the generated target (doc.decoding), in real Chromium.

For step t the page must show what step t computed: row t of cross and decoder self-attention
(head-view links, thumbnail rows, the attended-source list), the model's top-k next tokens and,
with beam search, the hypotheses alive at t with the winner marked.
"""

import numpy as np
import pytest
from page_support import decoding_doc, faded, screenshot, thumb_pixels, viridis

from attnlab.viz.html import write_attention_html

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SOURCE = "the <b>cat</b> sat on the mat .".split()
EMITTED = ["le", "chat", "<img src=x onerror=alert(1)>", "assis", "<eos>"]
LAYERS, HEADS = 2, 3


def open_doc(page, doc, tmp_path):
    path = write_attention_html(doc, tmp_path / "attention.html", title="steps")
    page.goto(path.as_uri())
    return path


def highlighted_links(page):
    return page.locator(".link.highlighted").evaluate_all(
        "ls => ls.map(l => [+l.dataset.head, +l.dataset.q, +l.dataset.k, +l.dataset.w])")


def expected_links(weights, row, threshold=0.01):
    """(head, key, weight) of row ``row`` at or above the threshold: what the head view draws."""
    return sorted((head, key, round(float(weights[head][row][key]), 6))
                  for head in range(len(weights)) for key in range(len(weights[head][row]))
                  if weights[head][row][key] >= threshold)


def test_each_step_highlights_its_rows_and_lists_top_k(page, tmp_path):
    doc = decoding_doc(SOURCE, EMITTED, layers=LAYERS, heads=HEADS)
    open_doc(page, doc, tmp_path)
    weights = {(e["kind"], e["layer"]): np.asarray(e["weights"]) for e in doc["attention"]}
    assert page.get_by_test_id("steps").is_visible()
    assert page.get_by_test_id("step-strategy").text_content() == "greedy decoding"
    assert page.locator(".link.highlighted").count() == 0  # "all steps": nothing singled out
    assert page.get_by_test_id("step-beam").is_hidden()

    page.get_by_test_id("step-next").click()  # step 0; the page moves from encoder_self to cross
    assert page.locator("[data-testid=kind-switch] button.active").text_content() == "Cross"
    for t, step in enumerate(doc["decoding"]["steps"]):
        if t:
            page.get_by_test_id("step-next").click()
        assert page.get_by_test_id("steps").get_attribute("data-step") == str(t)
        label = page.get_by_test_id("step-label").text_content()
        assert f"step {t + 1} of {len(EMITTED)}" in label
        assert f"reads “{doc['target_tokens'][t]}”" in label and f"emits “{EMITTED[t]}”" in label

        # Head view: exactly the links of query row t, with the recorded weights.
        links = highlighted_links(page)
        assert {q for _, q, _, _ in links} == {t}
        assert sorted((h, k, w) for h, _, k, w in links) == expected_links(weights["cross", 0], t)
        assert page.locator(".token.active[data-side=query]").all_text_contents() == [doc["target_tokens"][t]]

        # Model view: every cross thumbnail keeps row t in its colours and fades the others.
        for head in range(HEADS):
            pixels = thumb_pixels(page, f".thumb[data-layer='1'][data-head='{head}']")
            matrix = weights["cross", 1][head]
            assert np.abs(pixels[t] - np.array([viridis(w) for w in matrix[t]])).max() <= 1
            other = (t + 1) % len(EMITTED)
            assert np.abs(pixels[other] - np.array([faded(viridis(w)) for w in matrix[other]])).max() <= 1

        # The top-k list is the model's distribution at step t, the emitted token marked.
        items = page.locator("[data-testid=step-topk] li")
        assert items.evaluate_all("ls => ls.map(l => l.dataset.token)") == [e["token"] for e in step["top_k"]]
        assert items.evaluate_all("ls => ls.map(l => +l.dataset.prob)") == [e["prob"] for e in step["top_k"]]
        assert page.locator("[data-testid=step-topk] li.chosen").get_attribute("data-token") == EMITTED[t]

        # The attended sources: head-mean of cross row t at the shown layer, largest first.
        mean = weights["cross", 0][:, t, :].mean(axis=0)
        shown = page.locator("[data-testid=step-row] li").evaluate_all(
            "ls => ls.map(l => [+l.dataset.key, +l.dataset.weight])")
        order = np.argsort(-mean, kind="stable")[:len(shown)]
        assert [k for k, _ in shown] == list(order)
        assert np.allclose([w for _, w in shown], mean[order], atol=1e-9)
    screenshot(page, "page-steps-cross.png")

    # Decoder self-attention at step 2: row 2, and only keys up to 2 (nobody sees the future).
    page.get_by_test_id("step-slider").fill("2")
    page.click("[data-testid=kind-switch] button[data-kind=decoder_self]")
    links = highlighted_links(page)
    assert {q for _, q, _, _ in links} == {2} and max(k for _, _, k, _ in links) <= 2
    assert sorted((h, k, w) for h, _, k, w in links) == expected_links(weights["decoder_self", 0], 2)

    # The enlarged heatmap outlines the step's row; "all steps" clears every highlight.
    page.click(".thumb[data-layer='0'][data-head='1']")
    assert page.locator("[data-testid=enlarged] .step-row").get_attribute("data-q") == "2"
    page.get_by_test_id("step-all").click()
    assert page.locator(".link.highlighted").count() == 0
    assert page.locator("[data-testid=enlarged] .step-row").count() == 0
    assert page.get_by_test_id("step-body").is_hidden()
    # Hover still works over a pinned step, and leaving restores the pin.
    page.get_by_test_id("step-slider").fill("3")
    page.hover(".token[data-side=key][data-index='1']")
    assert {k for _, _, k, _ in highlighted_links(page)} == {1}
    page.mouse.move(3, 3)
    assert {q for _, q, _, _ in highlighted_links(page)} == {3}


def test_beam_steps_list_every_hypothesis_and_the_winner(page, tmp_path):
    doc = decoding_doc(SOURCE, EMITTED, layers=1, heads=2, beam=3)
    open_doc(page, doc, tmp_path)
    steps = doc["decoding"]["steps"]
    assert page.get_by_test_id("step-strategy").text_content() == "beam search, 3 beams"
    page.get_by_test_id("step-next").click()
    for t, step in enumerate(steps):
        if t:
            page.get_by_test_id("step-next").click()
        rows = page.locator("[data-testid=step-hypotheses] tr[data-index]")
        assert rows.count() == len(step["hypotheses"])
        texts = rows.evaluate_all("rs => rs.map(r => r.querySelector('.hypothesis').textContent)")
        assert texts == [" ".join(h["tokens"]) for h in step["hypotheses"]]
        scores = rows.evaluate_all("rs => rs.map(r => +r.children[2].textContent)")
        assert scores == [round(h["score"], 3) for h in step["hypotheses"]]
        prefix = rows.evaluate_all("rs => rs.map(r => r.classList.contains('winner-prefix'))")
        assert prefix == [h["winner_prefix"] for h in step["hypotheses"]]
    # At the last step the winner is marked, and it is the page's translation.
    winner = page.locator("[data-testid=step-hypotheses] tr.winner")
    assert winner.count() == 1
    index = int(winner.get_attribute("data-index"))
    assert index == doc["decoding"]["winner"]
    assert winner.locator(".hypothesis").text_content() == page.get_by_test_id("translation").text_content()
    assert page.locator("[data-testid=step-hypotheses] tr.finished").count() == 1
    screenshot(page, "page-steps-beam.png")


def test_a_document_without_decoding_has_no_step_control(page, tmp_path):
    doc = decoding_doc(SOURCE, EMITTED, layers=1, heads=2)
    del doc["decoding"]
    open_doc(page, doc, tmp_path)
    assert page.get_by_test_id("steps").is_hidden()
    assert page.locator(".thumb").count() == 2


def test_the_beam_winner_on_the_page_is_what_attnlab_translate_prints(page, tmp_path_factory, capsys):
    """A real trained run: `attnlab attend --beam 3` writes the page, `attnlab translate --beam 3`
    prints the translation; the page's winning hypothesis at the last step is that translation."""
    from explain_support import trained_toy_run

    from attnlab.cli import main

    run = trained_toy_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("beam-page")
    for sentence in ("the black dog slept .", "a small cat eats ."):
        assert main(["attend", str(run), sentence, "--beam", "3", "--out", str(out)]) == 0
        capsys.readouterr()
        assert main(["translate", str(run), sentence, "--beam", "3"]) == 0
        translation = capsys.readouterr().out.strip()
        page.goto((out / "attention.html").as_uri())
        assert page.get_by_test_id("step-strategy").text_content() == "beam search, 3 beams"
        last = page.get_by_test_id("step-slider").get_attribute("max")
        page.get_by_test_id("step-slider").fill(last)
        winner = page.locator("[data-testid=step-hypotheses] tr.winner .hypothesis")
        assert winner.count() == 1
        assert winner.text_content() == translation and translation  # a real sentence, not an empty output
        assert page.get_by_test_id("translation").text_content() == translation
