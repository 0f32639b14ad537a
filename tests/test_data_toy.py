"""Claims about the built-in English→French toy corpus."""

import pytest

from attnlab.data import TOY_EXAMPLES, load_task
from attnlab.data.toy import generate_corpus


@pytest.fixture(scope="module")
def toy():
    return load_task("toy", num_pairs=1500)


def _all(data):
    return data.train + data.dev + data.test


def test_toy_is_deterministic_distinct_and_split_80_10_10(toy):
    assert [ex.tgt_text for ex in toy.test] == [ex.tgt_text for ex in load_task("toy", num_pairs=1500).test]
    assert (len(toy.train), len(toy.dev), len(toy.test)) == (1200, 150, 150)
    sources = [ex.src_text for ex in _all(toy)]
    assert len(set(sources)) == len(sources) == 1500  # so no source sentence is in two splits
    assert toy.kind == "translation" and toy.metric == "bleu"
    assert generate_corpus(50, seed=1) != generate_corpus(50, seed=2)


def test_toy_sentences_are_lowercase_short_with_a_small_vocabulary(toy):
    for ex in _all(toy):
        for text in (ex.src_text, ex.tgt_text):
            assert text == text.lower() and text.endswith(" .")
            assert 3 <= len(text.split()) <= 12
    english = {w for ex in _all(toy) for w in ex.src_text.split()}
    french = {w for ex in _all(toy) for w in ex.tgt_text.split()}
    assert 50 <= len(english) <= 150 and 50 <= len(french) <= 150


def test_one_toy_token_is_one_word(toy):
    for ex in _all(toy)[:300]:
        assert toy.source.tokens(ex.src_ids) == ex.src_text.split()
        assert toy.target.tokens(ex.tgt_ids) == ex.tgt_text.split()
        assert toy.target.decode(ex.tgt_ids) == ex.tgt_text


def test_toy_corpus_has_gender_agreement_and_negation(toy):
    pairs = [(ex.src_text, ex.tgt_text) for ex in _all(toy)]
    french = " " + " ".join(fr for _, fr in pairs)
    for phrase in ("le chat", "la voiture", "une pomme", "les chats", "la voiture rouge", "le petit"):
        assert f" {phrase} " in french
    for wrong in ("le voiture", "la chat", "une chat", "un pomme", "les chat"):
        assert f" {wrong} " not in french
    negated = [(en, fr) for en, fr in pairs if " not " in en]
    assert len(negated) > 100
    for en, fr in negated:
        assert " pas " in fr and (" ne " in fr or " n' " in fr)
    assert any(" n' a pas " in fr or " n' ont pas " in fr for _, fr in negated)  # past tense
    assert any(w.endswith(("era", "eront", "ra", "ront")) for _, fr in pairs for w in fr.split())  # future
    assert any(" mangent " in fr for _, fr in pairs)  # plural verb agreement


def test_toy_alignments_point_at_translations(toy):
    determiners = {"le", "la", "les", "un", "une", "des", "de"}
    dictionary = {("the", "le"), ("cat", "chat"), ("red", "rouge"), ("not", "pas"), ("not", "ne"), (".", ".")}
    seen = set()
    for ex in _all(toy):
        en, fr = ex.src_text.split(), ex.tgt_text.split()
        assert ex.alignment and all(0 <= i < len(en) and 0 <= j < len(fr) for i, j in ex.alignment)
        assert {i for i, _ in ex.alignment} == set(range(len(en)))  # every English word is aligned
        assert {j for _, j in ex.alignment} == set(range(len(fr)))  # and every French word
        for i, j in ex.alignment:
            if en[i] in ("the", "a", "an", "some"):
                assert fr[j] in determiners
            seen.add((en[i], fr[j]))
    assert dictionary <= seen


def test_toy_demo_examples_are_in_the_vocabulary(toy):
    assert 3 <= len(TOY_EXAMPLES) <= 4
    for sentence in TOY_EXAMPLES:
        assert toy.source.unknown_tokens(sentence) == []
        assert len(toy.source.encode(sentence)) == len(sentence.split())
