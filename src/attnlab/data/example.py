"""What every task produces: `Example`s (one sentence pair each) bundled in a `TaskData`.

Every task — synthetic, toy corpus, real parallel corpus — ends up in the same two shapes, so the
trainer, the evaluator and the CLI have exactly one code path:

    Example(src_ids=[5, 6, 7], tgt_ids=[7, 6, 5], src_text="1 2 3", tgt_text="3 2 1",
            references=["3 2 1"])

`src_ids`/`tgt_ids` carry no special tokens; `make_batches` adds BOS/EOS. `references` holds every
acceptable target text for the source (several for Tatoeba, where one English sentence has many
French translations), which is what multi-reference BLEU needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attnlab.data.codec import Codec

SOURCE_TOKENIZER_FILE = "tokenizer-src.json"
TARGET_TOKENIZER_FILE = "tokenizer-tgt.json"


@dataclass
class Example:
    """One source/target pair (ids without specials) plus every reference target text."""

    src_ids: list[int]
    tgt_ids: list[int]
    src_text: str
    tgt_text: str
    references: list[str]
    # Toy corpus only: gold word alignment, (source word index, target word index) pairs.
    alignment: list[tuple[int, int]] | None = None


@dataclass
class TaskData:
    """A task ready for training: codecs, the three splits, and a JSON-able description.

    `metric` is "exact_match" for synthetic tasks and "bleu" for translation. `target` may be the
    very same object as `source` (a shared vocabulary).
    """

    name: str
    kind: str  # "synthetic" | "translation"
    metric: str  # "exact_match" | "bleu"
    source: Codec
    target: Codec
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    info: dict = field(default_factory=dict)

    def save_codecs(self, run_dir: Path) -> None:
        """Write run_dir/tokenizer-src.json and run_dir/tokenizer-tgt.json (both, even if shared)."""
        run_dir = Path(run_dir)
        self.source.save(run_dir / SOURCE_TOKENIZER_FILE)
        self.target.save(run_dir / TARGET_TOKENIZER_FILE)

    @staticmethod
    def load_codecs(run_dir: Path) -> tuple[Codec, Codec]:
        """(source, target) codecs saved by `save_codecs`."""
        run_dir = Path(run_dir)
        return Codec.load(run_dir / SOURCE_TOKENIZER_FILE), Codec.load(run_dir / TARGET_TOKENIZER_FILE)
