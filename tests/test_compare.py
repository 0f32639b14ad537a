"""Claims about two runs side by side (attnlab.viz.compare, attnlab compare, explore with two runs).

The difference maps are checked against weights recorded independently with record_attention on
each model; the word-level merge against word groups read from the tokenizers' own offsets.
"""

import json
import re

import numpy as np
import pytest
import torch
from contract import check_bad_input
from tiny_runs import tiny_run

from attnlab.cli import main
from attnlab.data import BOS_ID, source_ids
from attnlab.document import synthetic_attention_doc
from attnlab.inspection.inference import Translator, load_analyzer
from attnlab.inspection.record import record_attention
from attnlab.viz.compare import compare_documents, compare_runs, merge_to_units, token_units, validate_compare

SEQUENCE, TARGET = "3 1 4 1 5 9 2", "2 9 5 1 4 1 3"
SENTENCE = "the black dog slept in the garden ."


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"sinusoidal": tiny_run(root / "sinusoidal", steps=20),
            "learned": tiny_run(root / "learned", steps=20, pos_encoding="learned", num_encoder_layers=2)}


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return {"word": tiny_run(root / "word", "toy", steps=5, tokenizer="word"),
            "bpe": tiny_run(root / "bpe", "toy", steps=5, tokenizer="bpe", vocab_size=300)}


def head_means(translator, text, target_ids):
    """{(kind, layer): head-mean weights (Lq, Lk)} recorded directly from the model, teacher-forced."""
    src = torch.tensor([source_ids(translator.encode(text))])
    with torch.no_grad(), record_attention(translator.model) as recording:
        translator.model(src, torch.tensor([[BOS_ID] + target_ids]))
    return {(r["kind"], r["layer"]): r["weights"][0].double().mean(0).numpy() for r in recording}


def word_of_each_token(codec, text):
    """The whitespace-separated word each token of ``text`` starts in, from the tokenizer's own offsets."""
    word_starts = [m.start() for m in re.finditer(r"\S+", text)]
    words = []
    for start, end in codec.tokenizer.encode(text, add_special_tokens=False).offsets:
        piece = text[start:end]
        first = start + len(piece) - len(piece.lstrip())  # a BPE piece carries the space before its word
        words.append(max(i for i, s in enumerate(word_starts) if s <= first))
    return words


def differences(payload):
    return {(d["kind"], d["layer"]): np.array(d["matrix"]) for d in payload["differences"]}


# --------------------------------------------------------------------------- the merge, by hand


def test_pieces_belong_to_the_word_they_start_in_and_specials_are_units_of_their_own():
    units, labels = token_units(["<bos>", "▁l'", "été", "Ġ", "chaud", "##s", "<unk>", ".", "<eos>"], "L'été chauds xyz.")
    assert units == [("special", "<bos>", 0), ("word", 0), ("word", 0), ("word", 1), ("word", 1), ("word", 1),
                     ("word", 2), ("word", 2), ("special", "<eos>", 0)]
    assert [labels[u] for u in dict.fromkeys(units)] == ["<bos>", "L'été", "chauds", "xyz.", "<eos>"]


def test_key_pieces_are_summed_and_query_rows_averaged():
    # tokens: a1 a2 b (two words "a", "b"); one row per token query.
    matrix = np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    words = [("word", 0), ("word", 0), ("word", 1)]
    merged = merge_to_units(matrix, words, words, [("word", 0), ("word", 1)], [("word", 0), ("word", 1)])
    expected = np.array([[((0.1 + 0.2) + (0.3 + 0.3)) / 2, (0.7 + 0.4) / 2], [0.5 + 0.25, 0.25]])
    assert np.allclose(merged, expected) and np.allclose(merged.sum(1), 1.0)


def test_word_level_difference_of_two_tokenizations_by_hand():
    doc_a = synthetic_attention_doc(["the", "cat", "<eos>"], None, num_layers=1, num_heads=2, seed=1)
    doc_b = synthetic_attention_doc(["the", "c", "at", "<eos>"], None, num_layers=1, num_heads=2, seed=2)
    payload = compare_documents(doc_a, doc_b, source_text="the cat")
    assert payload["level"] == "word" and payload["tokens"]["source"] == ["the", "cat", "<eos>"]
    a = np.array(doc_a["attention"][0]["weights"]).mean(0)
    b = np.array(doc_b["attention"][0]["weights"]).mean(0)  # (4, 4): pieces 1 and 2 are "cat"
    b_words = np.stack([b[0], (b[1] + b[2]) / 2, b[3]])  # query rows of "cat" averaged
    b_words = np.stack([b_words[:, 0], b_words[:, 1] + b_words[:, 2], b_words[:, 3]], axis=1)  # keys summed
    assert np.allclose(differences(payload)[("encoder_self", 0)], b_words - a, atol=1e-6)
    validate_compare(payload)


# --------------------------------------------------------------------------- trained runs


def test_a_run_compared_with_itself_differs_nowhere(runs):
    analyzer = load_analyzer(str(runs["sinusoidal"]))
    payload = compare_runs(analyzer, analyzer, SEQUENCE, labels=["a", "a again"])
    assert payload["level"] == "token"
    assert {kind for kind, _ in differences(payload)} == {"encoder_self", "decoder_self", "cross"}
    assert all(np.all(matrix == 0.0) for matrix in differences(payload).values())


def test_two_runs_differ_by_exactly_their_recorded_weights(runs):
    a, b = (Translator.load(runs[name]) for name in ("sinusoidal", "learned"))
    payload = compare_runs(a.attention, b.attention, SEQUENCE, TARGET, labels=["sinusoidal", "learned"])
    target = a.target.encode(TARGET)  # both teacher-forced on it
    means_a, means_b = head_means(a, SEQUENCE, target), head_means(b, SEQUENCE, target)
    shared = set(means_a) & set(means_b)
    assert ("encoder_self", 1) in means_b and ("encoder_self", 1) not in shared  # B's second block: no partner
    assert set(differences(payload)) == shared
    for key, matrix in differences(payload).items():
        assert np.allclose(matrix, means_b[key] - means_a[key], atol=2e-6), key
    assert any(np.abs(matrix).max() > 1e-3 for matrix in differences(payload).values())
    assert payload["translations"][0] == a.translate([SEQUENCE])[0]
    assert payload["translations"][1] == b.translate([SEQUENCE])[0]


def test_runs_that_tokenize_differently_are_compared_word_by_word(toy_runs):
    word, bpe = (Translator.load(toy_runs[name]) for name in ("word", "bpe"))
    target = "le chien noir a dormi dans le jardin ."
    payload = compare_runs(word.attention, bpe.attention, SENTENCE, target, labels=["word", "bpe"])
    assert payload["level"] == "word" and payload["merge"].startswith("each whitespace-separated word")
    assert payload["tokens"]["source"] == SENTENCE.split() + ["<eos>"]
    assert payload["tokens"]["target"] == ["<bos>"] + target.split()

    def merged(kind_map, query_groups, key_groups, query_units, key_units):  # (Lq, Lk) → (Uq, Uk)
        rows = np.array([[g == u for g in query_groups] for u in query_units], dtype=float)  # (Uq, Lq)
        columns = np.array([[g == u for u in key_units] for g in key_groups], dtype=float)  # (Lk, Uk)
        return (rows / rows.sum(1, keepdims=True)) @ kind_map @ columns

    source_units, target_units = list(range(len(SENTENCE.split()))) + ["eos"], ["bos"] + list(range(len(target.split())))
    means = {}
    for name, translator in (("word", word), ("bpe", bpe)):
        source_groups = word_of_each_token(translator.source, SENTENCE) + ["eos"]
        target_groups = ["bos"] + word_of_each_token(translator.target, target)
        maps = head_means(translator, SENTENCE, translator.target.encode(target))
        means[name] = {
            ("encoder_self", 0): merged(maps["encoder_self", 0], source_groups, source_groups, source_units, source_units),
            ("decoder_self", 0): merged(maps["decoder_self", 0], target_groups, target_groups, target_units, target_units),
            ("cross", 0): merged(maps["cross", 0], target_groups, source_groups, target_units, source_units)}
    assert len(bpe.source.encode(SENTENCE)) > len(SENTENCE.split())  # BPE really splits words here
    for key, matrix in differences(payload).items():
        assert np.allclose(matrix, means["bpe"][key] - means["word"][key], atol=2e-6), key
    assert set(differences(payload)) == {("encoder_self", 0), ("decoder_self", 0), ("cross", 0)}


def test_compare_command_writes_one_page_and_refuses_bad_input(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(runs["sinusoidal"]), str(runs["learned"]), SEQUENCE, "--target", TARGET,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "difference map(s) at token level" in printed
    payload = json.loads((out / "compare.json").read_text())
    validate_compare(payload)
    page = (out / "compare.html").read_text()
    assert '"compare":' in page and "http://" not in page and "https://" not in page

    def status(*args):
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err

    check_bad_input(lambda: status("compare", runs["sinusoidal"], runs["learned"], "  ", "--out", tmp_path / "x"),
                    "text is empty", watch=[tmp_path])
    check_bad_input(lambda: status("compare", runs["sinusoidal"], tmp_path / "nope", SEQUENCE, "--out", tmp_path / "x"),
                    "neither a run directory nor 'minilm'", watch=[tmp_path])
    check_bad_input(lambda: status("explore", runs["sinusoidal"], runs["learned"], runs["learned"]),
                    "explore takes one run, or two to compare", watch=[tmp_path])


def test_explorer_with_two_runs_answers_the_compare_payload(runs):
    from fastapi.testclient import TestClient

    from attnlab.viz.explorer import create_app

    a, b = load_analyzer(str(runs["sinusoidal"])), load_analyzer(str(runs["learned"]))
    client = TestClient(create_app(a, compare_with=b, labels=("sinusoidal", "learned")))
    response = client.post("/api/compare", json={"text": SEQUENCE, "target": None, "beam": 2})
    assert response.status_code == 200
    payload = response.json()
    validate_compare(payload)
    assert payload["labels"] == ["sinusoidal", "learned"] and payload["docs"][0]["decoding"]["strategy"] == "beam"
    assert payload == compare_runs(a, b, SEQUENCE, beam=2, labels=["sinusoidal", "learned"])
    assert client.post("/api/compare", json={"text": "  ", "beam": 1}).status_code == 400
    assert client.post("/api/attention", json={"text": SEQUENCE}).status_code in (404, 405)
    page = client.get("/").text
    assert '"api":"/api/compare"' in page and '"compare":true' in page


@pytest.mark.slow
@pytest.mark.browser
def test_live_compare_in_the_browser_draws_both_runs_without_leaving_the_machine(runs, browser):
    from attnlab.viz.explorer import background_server, create_app

    a, b = load_analyzer(str(runs["sinusoidal"])), load_analyzer(str(runs["learned"]))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested, errors = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    with background_server(create_app(a, compare_with=b, labels=("sinusoidal", "learned"))) as url:
        page.goto(url)
        page.get_by_test_id("text-input").fill(SEQUENCE)
        page.get_by_test_id("target-input").fill(TARGET)
        with page.expect_response(lambda response: response.url.endswith("/api/compare")) as answer:
            page.get_by_test_id("submit").click()
        assert answer.value.status == 200 and validate_compare(answer.value.json()) is None
        page.wait_for_selector(".thumb")
        assert page.locator(".thumb").count() > 0 and page.get_by_test_id("empty").first.is_hidden()
    page.close()
    assert [u for u in requested if not u.startswith("http://127.0.0.1:")] == []
    assert errors == []
