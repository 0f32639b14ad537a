"""Claims about the synthetic tasks, the Codec and batching."""

import json

import pytest
import torch

from attnlab.data import (
    BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, Codec, TaskData, load_task, make_batches,
    parse_length_range,
)

SMALL = dict(num_train=300, num_test=50)


def _pairs(data):
    return [(ex.src_text, ex.tgt_text) for split in (data.train, data.dev, data.test) for ex in split]


def test_synthetic_tasks_are_deterministic_for_a_seed():
    for task in ("copy", "reverse", "sort", "add"):
        assert _pairs(load_task(task, seed=3, **SMALL)) == _pairs(load_task(task, seed=3, **SMALL))
        assert _pairs(load_task(task, seed=3, **SMALL)) != _pairs(load_task(task, seed=4, **SMALL))


def test_copy_targets_equal_sources_and_info_is_json():
    data = load_task("copy", **SMALL)
    assert json.loads(json.dumps(data.info))["sizes"] == {"train": 300, "dev": 50, "test": 50}
    assert all(ex.tgt_ids == ex.src_ids and ex.references == [ex.src_text] for ex in data.train)


def test_reverse_targets_are_reversed_sources():
    data = load_task("reverse", **SMALL)
    assert all(ex.tgt_ids == ex.src_ids[::-1] for ex in data.train + data.test)


def test_sort_targets_are_sorted_sources():
    data = load_task("sort", vocab=20, **SMALL)
    for ex in data.train:
        assert [int(s) for s in ex.tgt_text.split()] == sorted(int(s) for s in ex.src_text.split())
    assert data.source.vocab_size == len(SPECIAL_TOKENS) + 20


def test_add_targets_are_sums():
    data = load_task("add", train_lengths=(1, 4), test_lengths=(5, 6), **SMALL)
    for split, most_digits in ((data.train + data.dev, 4), (data.test, 6)):
        for ex in split:
            left, right = ex.src_text.replace(" ", "").split("+")
            assert int(ex.tgt_text.replace(" ", "")) == int(left) + int(right)
            assert len(left) <= most_digits and len(right) <= most_digits
    assert data.metric == "exact_match" and data.kind == "synthetic"


def test_test_lengths_respected():
    data = load_task("reverse", train_lengths=(2, 5), test_lengths=(8, 10), **SMALL)
    assert {len(ex.src_ids) for ex in data.train + data.dev} <= set(range(2, 6))
    assert {len(ex.src_ids) for ex in data.test} <= {8, 9, 10}
    assert len(data.test) == len(data.dev) == 50 and len(data.train) == 300


def test_test_sources_avoid_training_sources_when_space_allows():
    data = load_task("copy", train_lengths=(6, 8), test_lengths=(6, 8), **SMALL)
    train = {ex.src_text for ex in data.train}
    assert not any(ex.src_text in train for ex in data.test + data.dev)


def test_parse_length_range():
    assert parse_length_range("1-12") == (1, 12) and parse_length_range("5") == (5, 5)
    for bad in ("12-1", "0-3", "abc", "1-2-3", ""):
        with pytest.raises(ValueError, match="length range"):
            parse_length_range(bad)


@pytest.mark.parametrize("spec, options, message", [
    ("copyy", {}, "task"),
    ("copy", {"num_trian": 5}, "num_trian"),
    ("copy", {"train_lengths": (5, 2)}, "train_lengths"),
    ("copy", {"test_lengths": "0-3"}, "length range"),
    ("copy", {"vocab": 1}, "vocab"),
    ("toy", {"lowercase": True}, "lowercase"),
    ("toy", {"num_pairs": 5}, "num_pairs"),
])
def test_bad_task_or_option_is_a_value_error_naming_it(spec, options, message):
    with pytest.raises(ValueError, match=message):
        load_task(spec, **options)


# --- Codec -------------------------------------------------------------------------------------------

def test_symbol_codec_has_fixed_special_ids_and_decodes_to_eos():
    codec = Codec.from_symbols(["a", "b", "+"])
    assert (codec.pad_id, codec.bos_id, codec.eos_id, codec.unk_id) == (0, 1, 2, 3)
    ids = codec.encode("a + b")
    assert ids == [4, 6, 5]
    assert codec.decode([BOS_ID] + ids + [EOS_ID, 4, 4]) == "a + b"
    assert codec.tokens(ids + [EOS_ID]) == ["a", "+", "b", "<eos>"]
    assert codec.unknown_tokens("a c b") == ["c"]


def test_codec_save_load_roundtrip(tmp_path):
    data = load_task("sort", **SMALL)
    data.save_codecs(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["tokenizer-src.json", "tokenizer-tgt.json"]
    source, target = TaskData.load_codecs(tmp_path / "run")
    for ex in data.test:
        assert source.encode(ex.src_text) == ex.src_ids and target.decode(ex.tgt_ids) == ex.tgt_text
    with pytest.raises(ValueError, match="does not exist"):
        Codec.load(tmp_path / "missing.json")


TEXTS = ["Va\u202f! Cours !", "L’été, c'est très chaud…", "I don't know.", "naïve café 3,5 €", "Hello, world."]


def test_bpe_codec_roundtrips_text():
    codec = Codec.train(TEXTS * 3, kind="bpe", vocab_size=300)
    assert codec.tokens([0, 1, 2, 3]) == SPECIAL_TOKENS
    for text in TEXTS + ["unseen ŵords 😀 too"]:  # byte level: even unseen characters round-trip
        assert codec.decode(codec.encode(text)) == text
        assert codec.unknown_tokens(text) == []


def test_word_codec_splits_punctuation_and_maps_rare_words_to_unk():
    codec = Codec.train(["the cat sat.", "the dog sat, then ran."], kind="word")
    assert codec.tokens(codec.encode("the cat sat.")) == ["the", "cat", "sat", "."]
    assert codec.decode(codec.encode("the dog sat, then ran.")) == "the dog sat, then ran."
    assert codec.encode("the zebra sat")[1] == codec.unk_id
    assert codec.unknown_tokens("the zebra sat, quietly.") == ["zebra", "quietly"]
    elisions = Codec.train(["I don't know.", "l'été, n' aime"], kind="word")
    assert elisions.tokens(elisions.encode("I don't know.")) == ["I", "do", "n't", "know", "."]
    assert elisions.tokens(elisions.encode("l'été, n' aime")) == ["l'", "été", ",", "n'", "aime"]
    assert elisions.decode(elisions.encode("l'été, n' aime")) == "l'été, n' aime"


def test_normalizing_codec_treats_no_break_spaces_like_spaces():
    codec = Codec.train(["Va ! Cours !"], kind="word", normalize=True, lowercase=True)
    assert codec.encode("VA\u202f!") == codec.encode("va !")


# --- batching ------------------------------------------------------------------------------------

def test_batches_are_padded_and_shifted():
    data = load_task("reverse", **SMALL)
    batches = make_batches(data.train, batch_size=16, shuffle=False, seed=0)
    assert [i for b in batches for i in b.examples] == list(range(300))  # no shuffle: input order
    for batch in batches:
        for row, index in enumerate(batch.examples):
            ex = data.train[index]
            n, m = len(ex.src_ids), len(ex.tgt_ids)
            assert batch.src[row, : n + 1].tolist() == ex.src_ids + [EOS_ID]  # the source ends with EOS
            assert (batch.src[row, n + 1 :] == PAD_ID).all()
            assert batch.tgt_in[row, : m + 1].tolist() == [BOS_ID] + ex.tgt_ids
            assert batch.tgt_out[row, : m + 1].tolist() == ex.tgt_ids + [EOS_ID]
            assert (batch.tgt_in[row, m + 1:] == PAD_ID).all() and (batch.tgt_out[row, m + 1:] == PAD_ID).all()
        assert batch.num_tokens == int((batch.tgt_out != PAD_ID).sum())
        assert batch.src.dtype == torch.long and len(batch) <= 16


def test_batches_respect_max_tokens_and_cover_every_example_once():
    data = load_task("copy", num_train=2000, num_test=10)
    batches = make_batches(data.train, max_tokens=200, shuffle=True, seed=1, epoch=2)
    assert sorted(i for b in batches for i in b.examples) == list(range(2000))
    for batch in batches:
        assert batch.src.numel() <= 200 and batch.tgt_in.numel() <= 200
    # Bucketing keeps padding small: most of every batch is real tokens.
    real = sum(b.num_tokens for b in batches)
    assert real / sum(b.tgt_out.numel() for b in batches) > 0.9


def test_batches_are_deterministic_per_seed_and_epoch():
    data = load_task("copy", **SMALL)
    order = lambda **kw: [b.examples for b in make_batches(data.train, max_tokens=100, shuffle=True, **kw)]  # noqa: E731
    assert order(seed=0, epoch=1) == order(seed=0, epoch=1)
    assert order(seed=0, epoch=1) != order(seed=0, epoch=2)
    with pytest.raises(ValueError, match="max_tokens or batch_size"):
        make_batches(data.train, shuffle=False, seed=0)
    assert make_batches(data.train[:1], batch_size=4, shuffle=False, seed=0)[0].to("cpu").src.device.type == "cpu"
