"""Claims about decoding step by step (the ``decoding`` field of attention.json, version 2).

Step t of the document is row t of cross and decoder_self: the tests record the weights while
the KV-cached greedy decoder actually decodes and compare them, step by step, with the rows; the
beam view's winner is what ``attnlab translate --beam K`` prints.
"""

import copy

import pytest
import torch
from tiny_runs import tiny_run

from attnlab.cli import main
from attnlab.core.decoding import beam_search, greedy_decode
from attnlab.data import BOS_ID, EOS_ID, PAD_ID, source_ids
from attnlab.document import synthetic_attention_doc, validate_attention_doc
from attnlab.inspection.inference import Translator
from attnlab.inspection.record import record_attention

SEQUENCE = "3 1 4 1 5 9 2"
BEAM = 3


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    return Translator.load(tiny_run(tmp_path_factory.mktemp("runs") / "reverse", steps=150))


def doc_rows(doc, kind, layer):
    entry = next(e for e in doc["attention"] if e["kind"] == kind and e["layer"] == layer)
    return torch.tensor(entry["weights"], dtype=torch.float64)  # (H, Lq, Lk)


def test_each_step_is_the_row_the_cached_decoder_computed_at_that_step(translator):
    doc = translator.attention(SEQUENCE)
    steps = doc["decoding"]["steps"]
    assert doc["decoding"]["strategy"] == "greedy" and len(steps) == len(doc["target_tokens"]) >= 2
    src = torch.tensor([source_ids(translator.encode(SEQUENCE))])
    model = translator.model
    with record_attention(model) as recording:  # the decoder as it runs: one query row per step
        output = greedy_decode(model, src, max_len=translator.output_budget(src.shape[1]), use_cache=True)[0]
    assert doc["target_tokens"] == translator.target.tokens([BOS_ID] + output)
    ended = len(output) < translator.output_budget(src.shape[1])  # else the last row was never decoded
    for kind in ("cross", "decoder_self"):
        for layer, _ in enumerate(model.decoder.layers):
            per_step = [w for l, w in recording.by_kind(kind) if l == layer]  # step t: (1, H, 1, keys)
            assert len(per_step) == len(steps) - (not ended)  # with the step that emitted <eos>
            rows = doc_rows(doc, kind, layer)  # (H, Lt, keys)
            for t, weights in enumerate(per_step):
                recorded = weights[0, :, 0].double()  # (H, keys so far)
                assert torch.allclose(rows[:, t, : recorded.shape[-1]], recorded, atol=1e-5), (kind, layer, t)
                assert torch.all(rows[:, t, recorded.shape[-1]:].abs() < 1e-6)  # nothing beyond step t


def test_top_k_is_the_next_token_distribution_of_each_step(translator):
    doc = translator.attention(SEQUENCE)
    src = torch.tensor([source_ids(translator.encode(SEQUENCE))])
    model = translator.model
    decoder_input = [BOS_ID] + translator.target.encode(doc["translation"])
    memory, mask = model.encode(src), model.source_mask(src)
    for t, step in enumerate(doc["decoding"]["steps"]):
        with torch.no_grad():  # the prefix alone, no cache: what step t saw
            logits = model.decode(torch.tensor([decoder_input[: t + 1]]), memory, mask)[0, -1]
        probs, ids = torch.softmax(logits.double(), -1).topk(len(step["top_k"]))
        assert [c["token"] for c in step["top_k"]] == translator.target.tokens(ids.tolist())
        assert torch.allclose(torch.tensor([c["prob"] for c in step["top_k"]], dtype=torch.float64), probs, atol=1e-5)
        assert step["token"] == step["top_k"][0]["token"]  # greedy emits the most likely token
    if len(doc["target_tokens"]) - 1 < translator.output_budget(src.shape[1]):
        assert doc["decoding"]["steps"][-1]["token"] == "<eos>"


def test_the_beam_winner_is_what_translate_prints(translator, capsys):
    doc = translator.attention(SEQUENCE, beam=BEAM)
    decoding = doc["decoding"]
    assert decoding["strategy"] == "beam" and decoding["beam_size"] == BEAM
    final = decoding["steps"][-1]["hypotheses"]
    winner = final[decoding["winner"]]
    assert main(["translate", str(translator.run.path), SEQUENCE, "--beam", str(BEAM)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == doc["translation"] == " ".join(winner["tokens"])
    assert winner["tokens"] == doc["target_tokens"][1:] and winner["finished"] and winner["winner_prefix"]
    finished = [h for h in final if h["finished"]]
    assert winner["final_score"] == max(h["final_score"] for h in finished)
    for t, step in enumerate(decoding["steps"]):
        alive = [h for h in step["hypotheses"] if not h["finished"]]
        assert len(alive) <= BEAM and all(len(h["tokens"]) == t + 1 for h in alive)
        assert [h["score"] for h in alive] == sorted((h["score"] for h in alive), reverse=True)
        on_path = [h for h in alive if h["winner_prefix"]]
        if t < len(winner["tokens"]):  # the winner's prefix is alive at every step before it ends
            assert [h["tokens"] for h in on_path] == [winner["tokens"][: t + 1]]


def test_beam_scores_are_the_summed_log_probabilities_of_the_tokens(translator):
    doc = translator.attention(SEQUENCE, beam=BEAM)
    src = torch.tensor([source_ids(translator.encode(SEQUENCE))])
    model = translator.model
    vocabulary = {token: i for i, token in enumerate(translator.target.tokens(range(translator.target.vocab_size)))}
    checked = 0
    for step in doc["decoding"]["steps"]:
        for hypothesis in step["hypotheses"]:
            ids = [vocabulary[token] for token in hypothesis["tokens"]] + ([EOS_ID] if hypothesis["finished"] else [])
            with torch.no_grad():
                log_probs = torch.log_softmax(model(src, torch.tensor([[BOS_ID] + ids[:-1]]))[0].double(), -1)
            expected = sum(log_probs[i, token].item() for i, token in enumerate(ids))
            assert hypothesis["score"] == pytest.approx(expected, abs=1e-4)
            checked += 1
    assert checked > BEAM


def test_watching_beam_search_does_not_change_its_output(translator):
    long, short = source_ids(translator.encode(SEQUENCE)), source_ids(translator.encode("9 9 1"))
    src = torch.tensor([long, short + [PAD_ID] * (len(long) - len(short))])  # (2, Ls), the second padded
    seen = []
    watched = beam_search(translator.model, src, beam_size=BEAM, on_step=lambda *state: seen.append(state))
    assert watched == beam_search(translator.model, src, beam_size=BEAM) and len(seen) >= 2
    step, tokens, scores, finished = seen[0]
    assert step == 1 and tokens.shape == (2 * BEAM, 2) and scores.shape == (2, BEAM) and len(finished) == 2


def test_a_forced_target_is_stepped_through_without_hypotheses(translator):
    doc = translator.attention(SEQUENCE, target="2 9 5")
    decoding = doc["decoding"]
    assert decoding["strategy"] == "forced" and "winner" not in decoding
    assert [s["token"] for s in decoding["steps"]] == ["2", "9", "5", "<eos>"]
    assert all("hypotheses" not in s for s in decoding["steps"])


# --------------------------------------------------------------------------- the validator


def decoded_doc():
    doc = synthetic_attention_doc(["a", "b", "<eos>"], ["<bos>", "x"], num_layers=1, num_heads=1)
    hypothesis = {"tokens": ["x"], "score": -0.1, "finished": True, "winner_prefix": True, "final_score": -0.09}
    doc["decoding"] = {"strategy": "beam", "beam_size": 2, "winner": 0, "steps": [
        {"t": 0, "token": "x", "top_k": [{"token": "x", "prob": 0.9}, {"token": "<eos>", "prob": 0.05}],
         "hypotheses": [dict(hypothesis, finished=False)]},
        {"t": 1, "token": "<eos>", "top_k": [{"token": "<eos>", "prob": 0.8}], "hypotheses": [hypothesis]}]}
    return doc


@pytest.mark.parametrize("spoil, message", [
    (lambda d: d["decoding"]["steps"].pop(), "steps has 1 steps but target_tokens has 2 rows"),
    (lambda d: d["decoding"]["steps"][0]["top_k"].reverse(), r"top_k must be sorted"),
    (lambda d: d["decoding"]["steps"][0].update(t=3), r"steps\[0\] must be an object with t = 0"),
    (lambda d: d["decoding"].update(winner=4), "winner must index the final step's 1 hypotheses"),
    (lambda d: d["decoding"].update(strategy="greedy"), "hypotheses belong to beam search steps"),
    (lambda d: d["decoding"]["steps"][1]["hypotheses"][0].update(score=float("nan")), "score must be a log-prob"),
    (lambda d: d["decoding"]["steps"][0]["top_k"][0].update(prob=1.5), r"prob in \[0, 1\]"),
    (lambda d: d.update(version=1), "decoding belongs to version 2 documents"),
])
def test_a_malformed_decoding_field_is_refused_by_name(spoil, message):
    doc = decoded_doc()
    validate_attention_doc(doc)
    spoiled = copy.deepcopy(doc)
    spoil(spoiled)
    with pytest.raises(ValueError, match=message):
        validate_attention_doc(spoiled)
