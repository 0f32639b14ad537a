"""Text ⇄ token ids: one `Codec` class for every task.

A Transformer sees integers, never text. The `Codec` is the one place where text becomes ids and
ids become text again. It wraps a HuggingFace `tokenizers.Tokenizer` (never a home-made
tokenizer), so what a run directory stores is the library's own JSON file.

Three flavours, all behind the same interface:

- ``Codec.from_symbols(["0", "1", ...])`` — word level over a fixed symbol list, split on
  whitespace. Used by the synthetic tasks: ``"3 1 2"`` → ``[7, 5, 6]``.
- ``Codec.train(texts, kind="word")`` — word level with punctuation split off, rare words → ``<unk>``.
  One token is one word, which makes attention heatmaps easy to read (the toy corpus uses it).
- ``Codec.train(texts, kind="bpe")`` — byte-level BPE (GPT-2 style): every string is encodable
  and decoding is lossless.

The special tokens come first in every vocabulary, so the ids are fixed::

    <pad> = 0    <bos> = 1    <eos> = 2    <unk> = 3

Example::

    >>> codec = Codec.from_symbols(["a", "b"])
    >>> codec.encode("a b a"), codec.decode([4, 5, 2, 4])
    ([4, 5, 4], 'a b')
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from attnlab.files import atomic_write_text

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]

# Word level: mark the start of each word with "▁" (SentencePiece's metaspace), then split each
# word into runs of letters/digits and single punctuation marks. A French elision keeps its
# apostrophe ("▁l'" "été", "▁n'" "aime") and English "n't" is its own word ("▁do" "n't"), as in
# the Penn Treebank. Because the spaces survive as "▁", decoding restores the input's spacing.
_WORD_SPLIT = Regex(r"▁?\w+(?=n['’]t)|n['’]t|▁?\w+['’]?|▁?[^\w▁]")


def text_normalizer(*, normalize: bool = True, lowercase: bool = False) -> normalizers.Normalizer | None:
    """The text normalisation attnlab applies to corpora (and embeds in their tokenizers).

    Unicode NFC; every run of whitespace — including U+00A0 (no-break space) and U+202F (narrow
    no-break space, which French puts before "!" and "?") — becomes one plain space; leading and
    trailing spaces are removed (when `normalize`); lower-case (when `lowercase`); None if neither.

        >>> text_normalizer().normalize_str("Va\\u202f!  ")
        'Va !'
    """
    steps = []
    if normalize:
        steps += [
            normalizers.NFC(),
            normalizers.Replace(Regex(r"[\s\u00a0\u202f]+"), " "),
            normalizers.Strip(),
        ]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps) if steps else None


class Codec:
    """Encode text to ids and decode ids to text, with fixed special ids (see module docstring)."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(self, tokenizer: Tokenizer):
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != expected_id:
                raise ValueError(
                    f"tokenizer: special token {token!r} must have id {expected_id}, "
                    f"got {tokenizer.token_to_id(token)}"
                )
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    # --- text ⇄ ids ------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without any special token (batching adds BOS/EOS)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`: stops at the first EOS and drops PAD/BOS/UNK. Detokenised, fit for BLEU."""
        ids = [int(i) for i in ids]
        if EOS_ID in ids:
            ids = ids[: ids.index(EOS_ID)]
        content = [i for i in ids if i >= len(SPECIAL_TOKENS)]
        return self.tokenizer.decode(content, skip_special_tokens=True).strip()

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """One readable string per id (labels of attention heatmaps): "▁chat"/"Ġchat" → "chat"."""
        labels = []
        for i in ids:
            i = int(i)
            if i < len(SPECIAL_TOKENS):
                labels.append(SPECIAL_TOKENS[i])
            else:
                label = self.tokenizer.decode([i], skip_special_tokens=False).strip()
                labels.append(label or self.tokenizer.id_to_token(i))
        return labels

    def unknown_tokens(self, text: str) -> list[str]:
        """The pieces of `text` (words, characters) that this vocabulary maps to ``<unk>``."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return [
            text[start:end].strip()
            for token_id, (start, end) in zip(encoding.ids, encoding.offsets)
            if token_id == UNK_ID
        ]

    # --- files -----------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the tokenizer JSON (the `tokenizers` format) atomically (:mod:`attnlab.files`)."""
        atomic_write_text(Path(path), self.tokenizer.to_str())

    @classmethod
    def load(cls, path: Path) -> "Codec":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"tokenizer file {path} does not exist")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as error:  # the library raises a bare Exception on bad JSON
            if isinstance(error, ValueError):
                raise
            raise ValueError(f"tokenizer file {path} is not a valid tokenizer: {error}") from None

    # --- building vocabularies -------------------------------------------------------------------

    @classmethod
    def from_symbols(cls, symbols: list[str]) -> "Codec":
        """Word-level codec over a fixed list of symbols, split on whitespace (synthetic tasks)."""
        if len(set(symbols)) != len(symbols) or set(symbols) & set(SPECIAL_TOKENS):
            raise ValueError("symbols: must be distinct and must not contain special tokens")
        if any(not s or any(c.isspace() for c in s) for s in symbols):
            raise ValueError("symbols: must be non-empty and contain no whitespace")
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + list(symbols))}
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tokenizer.add_special_tokens(SPECIAL_TOKENS)  # already in the vocabulary: marks them special
        return cls(tokenizer)  # no decoder: tokens are joined by single spaces

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        kind: str = "bpe",
        vocab_size: int = 8000,
        min_frequency: int = 1,
        normalize: bool = False,
        lowercase: bool = False,
    ) -> "Codec":
        """Learn a vocabulary from `texts`.

        kind="bpe": byte-level BPE of at most `vocab_size` tokens (lossless, no ``<unk>``).
        kind="word": the `vocab_size` most frequent words seen at least `min_frequency` times;
        other words become ``<unk>``. With `normalize`/`lowercase` the tokenizer also applies
        `text_normalizer` to everything it encodes later (e.g. user input in `attnlab translate`).

            >>> Codec.train(["le chat .", "la chatte ."], kind="word").encode("le chat .")
        """
        if kind not in ("bpe", "word"):
            raise ValueError(f"tokenizer: {kind!r} is not one of 'bpe', 'word'")
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size: must be more than {len(SPECIAL_TOKENS)}, got {vocab_size}")
        if kind == "bpe":
            tokenizer = Tokenizer(models.BPE())
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=SPECIAL_TOKENS,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
        else:
            tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Metaspace(prepend_scheme="always"),
                    pre_tokenizers.Split(_WORD_SPLIT, behavior="isolated"),
                ]
            )
            tokenizer.decoder = decoders.Metaspace(prepend_scheme="always")
            trainer = trainers.WordLevelTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=SPECIAL_TOKENS,
                show_progress=False,
            )
        normalizer = text_normalizer(normalize=normalize, lowercase=lowercase)
        if normalizer is not None:
            tokenizer.normalizer = normalizer
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer)
