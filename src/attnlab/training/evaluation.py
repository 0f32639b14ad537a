"""Evaluation on held-out data: loss, token accuracy, exact match, BLEU/chrF, per length."""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from ..data import PAD_ID, TaskData, make_batches
from ..core.decoding import beam_search, greedy_decode
from .metrics import corpus_bleu, corpus_chrf, exact_match

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model, examples, data: TaskData, *, device="cpu", beam: int = 1, length_penalty: float = 0.6,
             breakdown: bool = True, batch_size: int = 64, num_examples_shown: int = 5) -> dict:
    """Score ``model`` on ``examples`` (greedy, or beam search of ``beam`` with GNMT ``length_penalty``).

    Returns ``{"summary": {...}, "by_length": {...}, "examples": [...]}``: the
    summary has ``loss`` and ``token_accuracy`` (teacher-forced), ``exact_match``
    (decoded), and for translation ``bleu`` and ``chrf`` against every reference.
    """
    model.eval()
    if not examples:
        raise ValueError("nothing to evaluate: the split is empty")
    total_loss, total_tokens, correct = 0.0, 0, 0
    predictions: list[list[int] | None] = [None] * len(examples)
    for batch in make_batches(examples, batch_size=batch_size, shuffle=False, seed=0):
        batch = batch.to(device)
        logits = model(batch.src, batch.tgt_in).float()  # (B, Lt, V)
        mask = batch.tgt_out != PAD_ID
        total_loss += F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID,
                                      reduction="sum").item()
        correct += ((logits.argmax(-1) == batch.tgt_out) & mask).sum().item()
        total_tokens += int(mask.sum())
        decoded = (greedy_decode(model, batch.src) if beam == 1
                   else beam_search(model, batch.src, beam_size=beam, length_penalty=length_penalty))
        for index, output in zip(batch.examples, decoded):
            predictions[index] = output

    targets = [ex.tgt_ids for ex in examples]
    summary = {"loss": round(total_loss / total_tokens, 6), "token_accuracy": round(correct / total_tokens, 6),
               "exact_match": round(exact_match(predictions, targets), 6), "num_examples": len(examples)}
    hypotheses = [data.target.decode(p) for p in predictions]
    if data.metric == "bleu":
        references = [ex.references for ex in examples]
        summary["bleu"] = round(corpus_bleu(hypotheses, references), 3)
        summary["chrf"] = round(corpus_chrf(hypotheses, references), 3)

    by_length = {}
    if breakdown:
        groups = defaultdict(list)
        for i, ex in enumerate(examples):
            groups[len(ex.src_ids)].append(i)
        for length, indices in sorted(groups.items()):
            entry = {"count": len(indices),
                     "exact_match": round(exact_match([predictions[i] for i in indices], [targets[i] for i in indices]), 6)}
            if data.metric == "bleu":
                entry["bleu"] = round(corpus_bleu([hypotheses[i] for i in indices],
                                                  [examples[i].references for i in indices]), 3)
            by_length[str(length)] = entry
    shown = [{"source": ex.src_text, "reference": ex.tgt_text, "output": hypotheses[i]}
             for i, ex in enumerate(examples[:num_examples_shown])]
    return {"summary": summary, "by_length": by_length, "examples": shown}
