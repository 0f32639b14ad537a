"""Using a trained run: translate text, and look at the attention behind a translation.

One :class:`Translator` serves ``attnlab translate``, ``generate``, ``attend``,
``explore`` and the demo, so every command checks its input the same way:

* empty or whitespace-only text → ``ValueError``;
* words the tokenizer does not know → a warning naming them (they become ``<unk>``);
* input longer than the model takes (``max_len`` positions) → ``ValueError``,
  or truncation with a warning when ``truncate=True``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .. import document
from ..data import BOS_ID, collate, source_ids
from ..data.example import Example
from ..core.decoding import beam_search, greedy_decode
from .record import teacher_forced_attention
from .steps import decoding_field
from ..training.runs import LoadedRun, load_run

__all__ = ["Translator", "Analyzer", "load_analyzer"]


class Translator:
    """Translate (or transform, for synthetic tasks) text with a trained run."""

    def __init__(self, run: LoadedRun, *, truncate: bool = False):
        self.run = run
        self.model = run.model
        self.source, self.target = run.source, run.target
        self.truncate = truncate
        self.max_tokens = run.config.model.max_len - 1  # one position for EOS / BOS

    @classmethod
    def load(cls, run_dir: Path, **options) -> "Translator":
        return cls(load_run(run_dir), **options)

    def encode(self, text: str) -> list[int]:
        """Text → source ids, with the checks described in the module docstring."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty; give a sentence to translate")
        unknown = self.source.unknown_tokens(text)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:8])
            warnings.warn(f"unknown to the tokenizer (read as <unk>): {shown}", stacklevel=2)
        ids = self.source.encode(text)
        if not ids:
            raise ValueError(f"text {text!r} has no tokens the model can read")
        if len(ids) > self.max_tokens:
            if not self.truncate:
                raise ValueError(f"text is {len(ids)} tokens long; this model takes at most {self.max_tokens} "
                                 "(shorten it, or allow truncation with --truncate)")
            warnings.warn(f"text truncated from {len(ids)} to {self.max_tokens} tokens", stacklevel=2)
            ids = ids[: self.max_tokens]
        return ids

    def output_budget(self, source_length: int) -> int:
        """The most tokens decoding may emit for a source of ``source_length`` ids (EOS included)."""
        return min(2 * source_length + 10, self.max_tokens)

    def translate_ids(self, texts: list[str], *, beam: int = 1, on_step=None) -> list[list[int]]:
        """Texts → output ids (no BOS/EOS); ``on_step`` watches beam search (see ``beam_search``)."""
        if beam < 1:
            raise ValueError(f"beam size must be >= 1, got {beam}")
        examples = [Example(self.encode(t), [], t, "", []) for t in texts]
        batch = collate(examples, range(len(examples)))
        device = next(self.model.parameters()).device
        src = batch.src.to(device)
        max_len = self.output_budget(src.shape[1])
        with torch.no_grad():
            if beam == 1:
                return greedy_decode(self.model, src, max_len=max_len)
            return beam_search(self.model, src, beam_size=beam, max_len=max_len, on_step=on_step)

    def translate(self, texts: list[str], *, beam: int = 1) -> list[str]:
        """Texts → output texts (batched)."""
        return [self.target.decode(ids) for ids in self.translate_ids(texts, beam=beam)]

    def attention(self, text: str, target: str | None = None, beam: int = 1, *, top_k: int = 10) -> dict:
        """attention.json for ``text``; the target is ``target`` (teacher-forced) or the model's own output.

        The document carries ``decoding`` (:mod:`attnlab.inspection.steps`): per step the model's
        ``top_k`` next tokens and, with ``beam`` > 1, the hypotheses of the search, whose winner
        is the output ``translate(text, beam=beam)`` gives.
        """
        src = source_ids(self.encode(text))
        history: list = []
        if target is None or not target.strip():
            strategy = "greedy" if beam == 1 else "beam"
            output = self.translate_ids([text], beam=beam, on_step=lambda *state: history.append(state))[0]
            ended = len(output) < self.output_budget(len(src))
        else:
            strategy, ended = "forced", True
            output = self.target.encode(target)
            if len(output) > self.max_tokens:
                raise ValueError(f"target is {len(output)} tokens long; this model takes at most {self.max_tokens}")
        decoder_input = [BOS_ID] + output
        doc, logits = teacher_forced_attention(self.model, src, decoder_input, self.source.tokens(src),
                                               self.target.tokens(decoder_input))
        doc["decoding"] = decoding_field(logits, decoder_input, self.target, strategy=strategy, beam_size=beam,
                                         beam_history=history, ended=ended, top_k=top_k)
        doc["translation"] = self.target.decode(output)
        doc["source_text"] = text
        document.validate_attention_doc(doc, allow_zero_rows=True)
        return doc


class Analyzer:
    """The ``analyze(text, target, beam) -> attention.json`` callable the explorer and ``attend`` use."""

    def __init__(self, name: str, analyze, info: dict, model=None):
        self.name, self._analyze, self.info = name, analyze, info
        self.model = model  # the Translator or pretrained encoder behind it (explanations, ablation), or None

    def __call__(self, text: str, target: str | None = None, beam: int = 1) -> dict:
        return self._analyze(text, target, beam)


def load_analyzer(run: str, *, truncate: bool = False) -> Analyzer:
    """A trained run directory, or ``minilm`` for the pretrained all-MiniLM-L6-v2 encoder.

    MiniLM reads up to its position table (512 tokens) here: sentence-transformers stops at 256
    for its embeddings, but the attention of a longer text is just as real and worth seeing.
    """
    if run == "minilm":
        from .pretrained import load_pretrained

        encoder = load_pretrained("minilm")
        encoder.max_length = encoder.max_positions

        def analyze(text, target=None, beam=1):
            doc = encoder.attention_document(text, truncate=truncate)
            doc["translation"], doc["source_text"] = "", text
            return doc

        return Analyzer("minilm", analyze, {"model": "all-MiniLM-L6-v2 (pretrained encoder, 6 layers x 12 heads)",
                                            "kind": "encoder-only", "examples": [
                                                "The animal didn't cross the street because it was too tired",
                                                "The animal didn't cross the street because it was too wide"]},
                        model=encoder)
    path = Path(run)
    if not path.is_dir():
        raise ValueError(f"RUN {run!r} is neither a run directory nor 'minilm'")
    translator = Translator.load(path, truncate=truncate)
    config = translator.run.config
    info = {"model": f"{config.architecture} {config.model.num_encoder_layers}+{config.model.num_decoder_layers} "
                     f"blocks, d_model {config.model.d_model}, {config.model.num_heads} heads, "
                     f"{config.model.pos_encoding} positions", "task": config.task, "kind": "encoder-decoder"}
    if config.task == "toy":
        from ..data import TOY_EXAMPLES

        info["examples"] = list(TOY_EXAMPLES)
    return Analyzer(str(path), translator.attention, info, model=translator)
