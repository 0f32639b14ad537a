"""Claims about reading parallel corpora: formats, cleaning, splitting, tokenizers."""

import gzip
from pathlib import Path

import pytest

from attnlab.data import load_task
from attnlab.data.corpus import find_corpus
from conftest import shared_data


# English<TAB>French, several French references per English sentence, like Tatoeba.
PAIRS = [(f"Sentence number {i}.", f"Phrase numéro {i} !") for i in range(60)]
PAIRS += [("Go.", "Va !"), ("Go.", "Bouge !"), ("Go.", "En route !"), ("Hi.", "Salut !"), ("Hi.", "Salut.")]
PAIRS += [("Run!", "Cours\u202f!"), ("Run!", "Courez\u00a0!")]


def _write_tsv(path: Path, pairs=PAIRS, extra_lines=()) -> Path:
    lines = [f"{en}\t{fr}\tCC-BY 2.0 (France) Attribution: tatoeba.org" for en, fr in pairs]
    path.write_text("\n".join(lines + list(extra_lines)) + "\n", encoding="utf-8")
    return path


def _splits_of_sources(data):
    splits = {}
    for name in ("train", "dev", "test"):
        for ex in getattr(data, name):
            splits.setdefault(ex.src_text, set()).add(name)
    return splits


def test_every_source_sentence_lands_in_one_split(tmp_path):
    path = _write_tsv(tmp_path / "pairs.tsv")
    for seed in range(5):
        data = load_task(str(path), seed=seed, tokenizer="word", dev_fraction=5, test_fraction=5)
        assert all(len(splits) == 1 for splits in _splits_of_sources(data).values())
        assert len(data.dev) == len(data.test) == 5
        assert sum(len(ex.references) for ex in data.train + data.dev + data.test) >= len(PAIRS)


def test_held_out_examples_carry_every_reference_and_train_keeps_every_pair(tmp_path):
    path = _write_tsv(tmp_path / "pairs.tsv")
    data = load_task(str(path), tokenizer="word", dev_fraction=20, test_fraction=20, seed=1)
    go = [ex for ex in data.train + data.dev + data.test if ex.src_text == "Go."]
    if go[0] in data.train:
        assert sorted(ex.tgt_text for ex in go) == ["Bouge !", "En route !", "Va !"]
    else:
        assert len(go) == 1 and sorted(go[0].references) == ["Bouge !", "En route !", "Va !"]
        assert go[0].tgt_text == go[0].references[0]
    assert len(data.train) + sum(len(ex.references) for ex in data.dev + data.test) == len(PAIRS)


def test_normalization_and_language_swap(tmp_path):
    path = _write_tsv(tmp_path / "pairs.tsv")
    data = load_task(str(path), src_lang="fr", tgt_lang="en", columns=("en", "fr"), lowercase=True,
                     tokenizer="word", dev_fraction=1, test_fraction=1, seed=0)
    by_source = {ex.src_text: ex for ex in data.train + data.dev + data.test}
    assert by_source["cours !"].tgt_text == "run!" and "courez !" in by_source  # U+202F, U+00A0 → " "
    raw = load_task(str(path), normalize=False, tokenizer="word", dev_fraction=1, test_fraction=1)
    assert any("\u202f" in ex.tgt_text for ex in raw.train + raw.dev + raw.test)


def test_tokenizers_are_trained_on_the_training_split_only(tmp_path):
    path = _write_tsv(tmp_path / "pairs.tsv")
    data = load_task(str(path), tokenizer="word", dev_fraction=10, test_fraction=10)
    train_words = {w for ex in data.train for w in ex.src_text.replace(".", " .").split()}
    held_out_only = {w for ex in data.dev + data.test for w in ex.src_text.replace(".", " .").split()} - train_words
    assert held_out_only  # sentence numbers seen only in dev/test
    for word in held_out_only:
        assert data.source.encode(word) == [data.source.unk_id]


def test_malformed_lines_counted_or_strict_error(tmp_path):
    path = _write_tsv(tmp_path / "bad.tsv", extra_lines=["only one column", "\tempty source", "a\tb\tc\td", ""])
    data = load_task(str(path), tokenizer="word", dev_fraction=1, test_fraction=1)
    assert data.info["skipped_lines"] == 4
    with pytest.raises(ValueError, match=rf"bad.tsv:{len(PAIRS) + 1}: malformed line"):
        load_task(str(path), strict=True)


def test_non_utf8_file_error_names_line(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("Go.\tVa !\nCafé.\tCafé !\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.tsv:2: not valid UTF-8"):
        load_task(str(path))


def test_empty_corpus_and_bad_options_are_value_errors(tmp_path):
    (tmp_path / "empty.tsv").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="no sentence pairs"):
        load_task(str(tmp_path / "empty.tsv"))
    path = _write_tsv(tmp_path / "pairs.tsv")
    for options, message in [({"tokenizer": "spm"}, "tokenizer"), ({"max_pairs": 0}, "max_pairs"),
                             ({"src_lang": "fr"}, "src_lang"), ({"vocab": 3}, "vocab"),
                             ({"dev_fraction": 1.5}, "dev_fraction")]:
        with pytest.raises(ValueError, match=message):
            load_task(str(path), **options)
    with pytest.raises(ValueError, match="src_lang"):
        load_task("multi30k", src_lang="cs", data_dir=tmp_path)


def test_max_pairs_and_max_len(tmp_path):
    path = _write_tsv(tmp_path / "pairs.tsv")
    data = load_task(str(path), tokenizer="word", max_pairs=30, dev_fraction=2, test_fraction=2)
    assert data.info["pairs_read"] == 30 and len(data.train) == 26
    short = load_task(str(path), tokenizer="word", max_len=3, dev_fraction=2, test_fraction=2)
    assert short.train and all(len(ex.src_ids) <= 3 and len(ex.tgt_ids) <= 3 for ex in short.train)
    assert short.info["dropped_long_pairs"] > 0


def _write_aligned(directory: Path, split: str, en: list[str], de: list[str], gz: bool):
    directory.mkdir(exist_ok=True)
    for lang, lines in (("en", en), ("de", de)):
        data = ("\n".join(lines) + "\n").encode()
        path = directory / (f"{split}.{lang}.gz" if gz else f"{split}.{lang}")
        path.write_bytes(gzip.compress(data) if gz else data)


def test_line_aligned_directory_uses_its_own_dev_and_test(tmp_path):
    corpus = tmp_path / "captions"
    _write_aligned(corpus, "train", [f"a dog {i}" for i in range(30)], [f"ein Hund {i}" for i in range(30)], gz=True)
    _write_aligned(corpus, "val", ["a cat", "a cat"], ["eine Katze", "die Katze"], gz=False)
    _write_aligned(corpus, "test_2016_flickr", ["a bird"], ["ein Vogel"], gz=True)
    data = load_task(str(corpus), src_lang="de", tgt_lang="en", tokenizer="word")
    assert len(data.train) == 30 and data.train[0].src_text == "ein Hund 0"
    assert [ex.src_text for ex in data.dev] == ["eine Katze", "die Katze"]
    assert [ex.tgt_text for ex in data.test] == ["a bird"]
    _write_aligned(corpus, "train", ["one", "two"], ["eins"], gz=True)
    with pytest.raises(ValueError, match="different numbers of lines"):
        load_task(str(corpus), src_lang="de", tgt_lang="en")


def test_known_corpus_is_found_via_data_dir_or_environment(tmp_path, monkeypatch):
    (tmp_path / "root" / "fra-eng").mkdir(parents=True)
    _write_tsv(tmp_path / "root" / "fra-eng" / "fra.txt")
    assert find_corpus("fra-eng", tmp_path / "root") == tmp_path / "root" / "fra-eng" / "fra.txt"
    monkeypatch.setenv("ATTNLAB_DATA", str(tmp_path / "root"))
    assert find_corpus("fra-eng") == tmp_path / "root" / "fra-eng" / "fra.txt"
    with pytest.raises(ValueError, match="attnlab data download multi30k"):
        find_corpus("multi30k", tmp_path / "nowhere")


def test_fra_eng_every_source_lands_in_one_split_and_references_are_complete():
    data = load_task("fra-eng", max_pairs=20000, data_dir=shared_data("fra-eng/fra.txt").parent, vocab_size=2000)
    splits = _splits_of_sources(data)
    assert all(len(s) == 1 for s in splits.values())
    assert len(data.dev) > 100 and len(data.test) > 100 and data.info["pairs_read"] == 20000
    assert any(len(ex.references) > 1 for ex in data.test)  # Tatoeba: several French references
    assert not any("\u202f" in r or "\u00a0" in r for ex in data.test for r in ex.references)
    assert all(data.target.decode(ex.tgt_ids) == ex.tgt_text for ex in data.test)  # byte-level BPE


def test_multi30k_reads_gzip_line_aligned_files():
    data = load_task("multi30k", src_lang="de", tgt_lang="en", max_pairs=500, vocab_size=1000,
                     data_dir=shared_data("multi30k"))
    assert len(data.train) == 500 and len(data.dev) > 900 and len(data.test) > 900
    assert data.train[0].src_text.startswith("Zwei junge weiße Männer")
    assert data.info["files"][0].endswith("train.de.gz")
