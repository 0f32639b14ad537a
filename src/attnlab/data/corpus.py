"""Parallel corpora on disk → a translation `TaskData`.

Two file formats are read:

- **Tab-separated** (Tatoeba / manythings.org): one pair per line, ``source<TAB>target`` with an
  optional third attribution column. `fra-eng` is ``English<TAB>French``::

      Go.<TAB>Va !

- **Line-aligned** (Multi30k): a directory with ``train.en.gz`` and ``train.de.gz`` (gzip or plain);
  line i of one language translates line i of the other. Its own ``val`` and
  ``test_2016_flickr`` (or ``test``) files become dev and test when present.

Reading, step by step:

1. **Normalise** (``normalize=True``): Unicode NFC, U+00A0 (no-break space) and U+202F (narrow
   no-break space, as in "Va !") become plain spaces, runs of whitespace collapse to one, ends are
   stripped; optionally ``lowercase``. The tokenizers embed the same normaliser, so text typed at
   translation time is treated like the corpus.
2. **Skip malformed lines** (wrong column count, an empty side) and count them in
   ``info["skipped_lines"]``; with ``strict=True`` the first one is a ValueError naming file and line.
3. **Split by source sentence**: one English sentence often has several French translations.
   All pairs of one (normalised) source land in the same split, so the test set never holds a
   sentence the model trained on. Sources are ranked by a seeded hash; the first ones are dev,
   the next test. Dev/test hold one Example per source whose ``references`` are all its targets.
4. **Train the tokenizers on the training split only**, then encode.

    >>> data = load_corpus("fra-eng", max_pairs=20000, src_lang="fr", tgt_lang="en")
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from attnlab.data.codec import Codec, text_normalizer
from attnlab.data.download import user_cache_root
from attnlab.data.example import Example, TaskData

# Languages of the columns of each known corpus (tab-separated) or of its files (line-aligned).
CORPUS_LANGUAGES = {"fra-eng": ("en", "fr"), "multi30k": ("en", "de", "fr")}
DEV_FILES = ("val", "dev", "valid")
TEST_FILES = ("test_2016_flickr", "test")


@dataclass
class SentencePair:
    src: str
    tgt: str
    alignment: list[tuple[int, int]] | None = None


@dataclass
class _Reading:
    """What reading produced: pairs per split (dev/test None = carve them out of train)."""

    pairs: dict[str, list[SentencePair] | None]
    skipped_lines: int
    files: list[str]


# --- finding and reading files ---------------------------------------------------------------------


def _repo_shared_data() -> Path:
    # src/attnlab/data/corpus.py → the repository root is parents[3]; the developer copy of the
    # corpora lives beside it in ../shared/data (absent for users, who download instead).
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def _corpus_dir_candidates(name: str, data_dir) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / name]
    roots = [Path(os.environ["ATTNLAB_DATA"])] if os.environ.get("ATTNLAB_DATA") else []
    return [root / name for root in roots + [user_cache_root(), _repo_shared_data()]]


def find_corpus(name: str, data_dir=None) -> Path:
    """The file (fra-eng) or directory (multi30k) holding the corpus `name` (see module docs)."""
    for directory in _corpus_dir_candidates(name, data_dir):
        if name == "fra-eng" and (directory / "fra.txt").is_file():
            return directory / "fra.txt"
        for sub in (directory, directory / "raw"):
            if name == "multi30k" and _split_file(sub, "train", "en") is not None:
                return sub
    where = f"data_dir {data_dir}" if data_dir is not None else "$ATTNLAB_DATA or the user cache"
    raise ValueError(
        f"corpus {name!r} not found in {where}; run `attnlab data download {name}` "
        f"or pass the path of a corpus file instead of the name"
    )


def _split_file(directory: Path, split: str, lang: str) -> Path | None:
    for candidate in (directory / f"{split}.{lang}.gz", directory / f"{split}.{lang}"):
        if candidate.is_file():
            return candidate
    return None


def _read_lines(path: Path):
    """Yield (line number, text without newline); a ValueError names file and line if not UTF-8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid UTF-8 ({error.reason})") from None


class _Cleaner:
    """Normalises sides, and skips (or, when strict, rejects) malformed lines."""

    def __init__(self, *, normalize: bool, lowercase: bool, strict: bool):
        self.normalizer = text_normalizer(normalize=normalize, lowercase=lowercase)
        self.strict = strict
        self.skipped = 0

    def __call__(self, sides: list[str], path: Path, number: int, problem: str | None = None):
        if problem is None:
            sides = [self.normalizer.normalize_str(s) if self.normalizer else s.strip() for s in sides]
            problem = "empty side" if not all(sides) else None
        if problem is None:
            return sides
        if self.strict:
            raise ValueError(f"{path}:{number}: malformed line ({problem})")
        self.skipped += 1
        return None


def _read_tsv(path: Path, columns: tuple[str, str], src_lang: str, tgt_lang: str,
              clean: _Cleaner, max_pairs: int | None) -> list[SentencePair]:
    if {src_lang, tgt_lang} != set(columns):
        raise ValueError(f"src_lang/tgt_lang: {path} holds {columns[0]} and {columns[1]}, "
                         f"got {src_lang!r} and {tgt_lang!r}")
    src_col = columns.index(src_lang)
    pairs = []
    for number, line in _read_lines(path):
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
        fields = line.split("\t")
        problem = None if len(fields) in (2, 3) else f"{len(fields)} tab-separated columns, expected 2 or 3"
        sides = clean(fields[:2], path, number, problem)
        if sides is not None:
            pairs.append(SentencePair(sides[src_col], sides[1 - src_col]))
    return pairs


def _read_aligned(directory: Path, split: str, src_lang: str, tgt_lang: str,
                  clean: _Cleaner, max_pairs: int | None) -> tuple[list[SentencePair], list[str]]:
    src_path, tgt_path = _split_file(directory, split, src_lang), _split_file(directory, split, tgt_lang)
    if src_path is None or tgt_path is None:
        raise ValueError(f"corpus directory {directory}: needs {split}.{src_lang}[.gz] and "
                         f"{split}.{tgt_lang}[.gz]")
    pairs = []
    for src_line, tgt_line in zip_longest(_read_lines(src_path), _read_lines(tgt_path)):
        if src_line is None or tgt_line is None:
            raise ValueError(f"{src_path} and {tgt_path}: different numbers of lines")
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
        sides = clean([src_line[1], tgt_line[1]], src_path, src_line[0])
        if sides is not None:
            pairs.append(SentencePair(*sides))
    return pairs, [str(src_path), str(tgt_path)]


def _read(path: Path, *, columns, src_lang, tgt_lang, clean, max_pairs) -> _Reading:
    if path.is_dir():
        train, files = _read_aligned(path, "train", src_lang, tgt_lang, clean, max_pairs)
        reading = _Reading({"train": train, "dev": None, "test": None}, 0, files)
        for split, names in (("dev", DEV_FILES), ("test", TEST_FILES)):
            name = next((n for n in names if _split_file(path, n, src_lang)), None)
            if name is not None:
                reading.pairs[split], more = _read_aligned(path, name, src_lang, tgt_lang, clean, None)
                reading.files += more
    else:
        pairs = _read_tsv(path, columns, src_lang, tgt_lang, clean, max_pairs)
        reading = _Reading({"train": pairs, "dev": None, "test": None}, 0, [str(path)])
    reading.skipped_lines = clean.skipped
    if not reading.pairs["train"]:
        raise ValueError(f"corpus {path}: no sentence pairs found")
    return reading


# --- splitting and building the task --------------------------------------------------------------


def _count(fraction, num_groups: int, name: str) -> int:
    """A dev/test size given as a fraction (0 < f < 1) of the source sentences or as a count."""
    if isinstance(fraction, float) and 0 < fraction < 1:
        return max(1, round(fraction * num_groups))
    if isinstance(fraction, int) and fraction >= 0:
        return fraction
    raise ValueError(f"{name}: must be a fraction in (0, 1) or a count >= 0, got {fraction!r}")


def split_by_source(pairs: list[SentencePair], *, seed: int, dev_fraction, test_fraction
                    ) -> dict[str, list[SentencePair]]:
    """Assign whole source-sentence groups to train/dev/test, ranked by a seeded hash.

    Ranking by hash (rather than shuffling a list) keeps a sentence's split stable when the corpus
    grows or `max_pairs` changes."""
    sources = sorted({p.src for p in pairs},
                     key=lambda s: hashlib.blake2b(f"{seed}\0{s}".encode(), digest_size=8).digest())
    num_dev = _count(dev_fraction, len(sources), "dev_fraction")
    num_test = _count(test_fraction, len(sources), "test_fraction")
    if num_dev + num_test >= len(sources):
        raise ValueError(f"dev_fraction/test_fraction: {num_dev} + {num_test} held-out sources leave "
                         f"no training data out of {len(sources)}")
    split_of = {s: "dev" for s in sources[:num_dev]}
    split_of.update({s: "test" for s in sources[num_dev : num_dev + num_test]})
    splits: dict[str, list[SentencePair]] = {"train": [], "dev": [], "test": []}
    for pair in pairs:
        splits[split_of.get(pair.src, "train")].append(pair)
    return splits


def make_translation_task(name: str, splits: dict[str, list[SentencePair]], *, tokenizer: str,
                          vocab_size: int, shared_vocab: bool, normalize: bool, lowercase: bool,
                          max_len: int | None = None, info: dict | None = None,
                          codecs: tuple[Codec, Codec] | None = None) -> TaskData:
    """Train codecs on `splits["train"]` (or use given `codecs`) and encode every split into Examples.

    Train keeps every pair; dev and test get one Example per distinct source, whose `references`
    are all its targets (the first target is `tgt_text`)."""
    train = splits["train"]
    codec_options = dict(kind=tokenizer, vocab_size=vocab_size, normalize=normalize, lowercase=lowercase)
    if codecs is not None:
        source, target = codecs
    elif shared_vocab:
        source = target = Codec.train([t for p in train for t in (p.src, p.tgt)], **codec_options)
    else:
        source = Codec.train([p.src for p in train], **codec_options)
        target = Codec.train([p.tgt for p in train], **codec_options)

    def examples(pairs: list[SentencePair], one_per_source: bool) -> list[Example]:
        groups = _group(pairs)
        references = {src: [p.tgt for p in group] for src, group in groups.items()}
        chosen = [group[0] for group in groups.values()] if one_per_source else pairs
        return [Example(source.encode(p.src), target.encode(p.tgt), p.src, p.tgt,
                        references[p.src], p.alignment) for p in chosen]

    encoded = {"train": examples(train, False), "dev": examples(splits["dev"], True),
               "test": examples(splits["test"], True)}
    dropped = 0
    if max_len is not None:
        kept = [ex for ex in encoded["train"] if max(len(ex.src_ids), len(ex.tgt_ids)) <= max_len]
        dropped, encoded["train"] = len(encoded["train"]) - len(kept), kept
        if not kept:
            raise ValueError(f"max_len: no training pair is at most {max_len} tokens long")
    info = dict(info or {})
    info.update(tokenizer=tokenizer, shared_vocab=shared_vocab, normalize=normalize, lowercase=lowercase,
                max_len=max_len, dropped_long_pairs=dropped,
                sizes={split: len(exs) for split, exs in encoded.items()},
                vocab_size={"source": source.vocab_size, "target": target.vocab_size})
    return TaskData(name, "translation", "bleu", source, target,
                    encoded["train"], encoded["dev"], encoded["test"], info)


def _group(pairs: list[SentencePair]) -> dict[str, list[SentencePair]]:
    groups: dict[str, list[SentencePair]] = {}
    for p in pairs:
        groups.setdefault(p.src, []).append(p)
    return groups


def load_corpus(
    spec,
    *,
    seed: int = 0,
    src_lang: str = "en",
    tgt_lang: str = "fr",
    columns: tuple[str, str] | None = None,
    lowercase: bool = False,
    normalize: bool = True,
    tokenizer: str = "bpe",
    vocab_size: int = 8000,
    shared_vocab: bool = True,
    max_pairs: int | None = None,
    max_len: int | None = None,
    strict: bool = False,
    dev_fraction=0.02,
    test_fraction=0.02,
    data_dir=None,
    codecs: tuple[Codec, Codec] | None = None,
) -> TaskData:
    """A translation task from a known corpus name ("fra-eng", "multi30k") or a path.

    `columns`: languages of a tab-separated file's two columns; default ("en", "fr") for fra-eng,
    (src_lang, tgt_lang) for any other file. `max_pairs`: read only the first that many pairs.
    `max_len`: drop training pairs with more tokens than this on either side.
    `dev_fraction`/`test_fraction`: share (or count) of source sentences held out, when the corpus
    has no dev/test files of its own. `data_dir`: where a known corpus lives (see `find_corpus`).
    `codecs`: (source, target) tokenizers of a trained run — then nothing is trained or split, and
    the whole file (or a directory's own test split) becomes the test split, for scoring a model.
    """
    name = str(spec)
    if name in CORPUS_LANGUAGES:
        languages = CORPUS_LANGUAGES[name]
        for option, lang in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
            if lang not in languages:
                raise ValueError(f"{option}: {lang!r} is not in {name} (allowed: {', '.join(languages)})")
        path = find_corpus(name, data_dir)
        columns = columns or languages[:2]
    else:
        path = Path(spec)
        columns = columns or (src_lang, tgt_lang)
    if src_lang == tgt_lang:
        raise ValueError(f"src_lang/tgt_lang: must differ, both are {src_lang!r}")
    for option, value in (("max_pairs", max_pairs), ("max_len", max_len)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{option}: must be a positive integer or None, got {value!r}")
    if tokenizer not in ("bpe", "word"):
        raise ValueError(f"tokenizer: {tokenizer!r} is not one of 'bpe', 'word'")

    clean = _Cleaner(normalize=normalize, lowercase=lowercase, strict=strict)
    reading = _read(path, columns=columns, src_lang=src_lang, tgt_lang=tgt_lang, clean=clean,
                    max_pairs=max_pairs)
    if codecs is not None:
        test = reading.pairs["test"] if reading.pairs["test"] is not None else reading.pairs["train"]
        splits = {"train": [], "dev": [], "test": test}
    elif reading.pairs["dev"] is None or reading.pairs["test"] is None:
        carved = split_by_source(reading.pairs["train"], seed=seed, dev_fraction=dev_fraction,
                                 test_fraction=test_fraction)
        splits = {s: reading.pairs[s] if reading.pairs[s] is not None else carved[s] for s in carved}
        splits["train"] = carved["train"]
    else:
        splits = reading.pairs
    info = {"corpus": name, "files": reading.files, "seed": seed, "src_lang": src_lang,
            "tgt_lang": tgt_lang, "max_pairs": max_pairs, "strict": strict,
            "skipped_lines": reading.skipped_lines, "pairs_read": sum(len(p) for p in splits.values())}
    return make_translation_task(name, splits, tokenizer=tokenizer, vocab_size=vocab_size,
                                 shared_vocab=shared_vocab, normalize=normalize, lowercase=lowercase,
                                 max_len=max_len, info=info, codecs=codecs)
