"""Metrics: BLEU and chrF through sacreBLEU, exact match, and alignment error rate.

BLEU (Papineni et al., 2002) and chrF (Popović, 2015) are computed by
sacreBLEU (Post, 2018) on detokenised text, so numbers are comparable with
published ones; attnlab never re-implements them.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import sacrebleu

__all__ = ["corpus_bleu", "corpus_chrf", "exact_match", "alignment_error_rate"]


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str]]:
    """Per-sentence reference lists → sacreBLEU's per-reference-stream layout.

    Sentences with fewer references are padded with None, which sacreBLEU skips.
    """
    most = max((len(refs) for refs in references), default=0)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(most)]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0–100), each hypothesis scored against all its references.

    >>> corpus_bleu(["le chat dort ."], [["le chat dort .", "le chat sommeille ."]])
    100.0...
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(hypotheses), _reference_streams(references), force=True).score)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus chrF (0–100), multi-reference."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_chrf(list(hypotheses), _reference_streams(references)).score)


def exact_match(predictions: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> float:
    """Fraction of sequences predicted exactly (0–1)."""
    if not targets:
        return 0.0
    return sum(list(p) == list(t) for p, t in zip(predictions, targets)) / len(targets)


def alignment_error_rate(predicted: Iterable[tuple[int, int]], sure: Iterable[tuple[int, int]],
                         possible: Iterable[tuple[int, int]] | None = None) -> float:
    """AER (Och & Ney, 2003): 1 - (|A∩S| + |A∩P|) / (|A| + |S|), with S ⊆ P.

    With only sure links given, P = S.
    """
    predicted, sure = set(predicted), set(sure)
    possible = set(possible) | sure if possible is not None else sure
    if not predicted and not sure:
        return 0.0
    return 1.0 - (len(predicted & sure) + len(predicted & possible)) / (len(predicted) + len(sure))
