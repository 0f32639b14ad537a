"""Decoding: turning a trained encoder–decoder into output sequences.

The decoder predicts one token at a time, each step conditioned on all
earlier ones. Recomputing the whole prefix every step costs O(L²) projections;
the **KV cache** keeps each layer's self-attention keys/values and appends one
row per step, and computes the cross-attention keys/values of the encoder
memory once (see :class:`attnlab.core.attention.AttentionCache`).

* :func:`greedy_decode` — take the most likely token each step (batched).
* :func:`beam_search` — keep the ``beam_size`` best partial hypotheses, score
  finished ones with the GNMT length penalty ((5 + |y|) / 6)^α (Wu et al., 2016).

Both accept ``use_cache=False`` to recompute the full prefix instead; tests
check that both ways emit exactly the same tokens.

The model is anything with ``encode(src)``, ``source_mask(src)``,
``decode(tgt, memory, memory_mask, cache=)``, ``new_cache()`` and
``reorder_cache(cache, index)`` (:class:`~attnlab.core.model.Transformer`,
:class:`~attnlab.core.rnn.RNNAttentionSeq2Seq`). The source mask is built once per
call and handed to every step, as the memory is.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..data.codec import BOS_ID, EOS_ID, PAD_ID

__all__ = ["greedy_decode", "beam_search", "default_max_len", "SILENT_TOKENS"]

SILENT_TOKENS = (BOS_ID, PAD_ID)  # dropped from a decoded sequence (EOS ends it)


def default_max_len(model, src: Tensor) -> int:
    """A generous output budget: twice the source plus ten, within a learned encoding's table."""
    budget = 2 * src.shape[1] + 10
    if getattr(model.config, "pos_encoding", None) == "learned":
        budget = min(budget, model.config.max_len - 1)
    return budget


def _step_logits(model, tokens: Tensor, memory: Tensor, memory_mask: Tensor, cache) -> Tensor:
    if cache is not None:
        return model.decode(tokens[:, -1:], memory, memory_mask, cache=cache)[:, -1]  # (N, V)
    return model.decode(tokens, memory, memory_mask)[:, -1]  # (N, V)


def _strip(sequence: list[int]) -> list[int]:
    out = []
    for token in sequence:
        if token == EOS_ID:
            break
        if token not in SILENT_TOKENS:
            out.append(token)
    return out


@torch.no_grad()
def greedy_decode(model, src: Tensor, *, max_len: int | None = None, use_cache: bool = True) -> list[list[int]]:
    """Most-likely-token decoding for a batch of sources (B, Ls) → B token lists (no BOS/EOS).

    >>> greedy_decode(model, torch.tensor([[5, 6, 7]]))
    [[7, 6, 5]]
    """
    model.eval()
    max_len = default_max_len(model, src) if max_len is None else max_len
    memory, memory_mask = model.encode(src), model.source_mask(src)  # (B, Ls, d_model), e.g. (B, 1, 1, Ls)
    tokens = torch.full((src.shape[0], 1), BOS_ID, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    cache = model.new_cache() if use_cache else None
    for _ in range(max_len):
        next_token = _step_logits(model, tokens, memory, memory_mask, cache).argmax(-1)  # (B,)
        next_token = next_token.masked_fill(finished, PAD_ID)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= next_token == EOS_ID
        if bool(finished.all()):
            break
    return [_strip(row) for row in tokens.tolist()]


@torch.no_grad()
def beam_search(model, src: Tensor, *, beam_size: int = 4, max_len: int | None = None,
                length_penalty: float = 0.6, use_cache: bool = True,
                on_step: Callable[[int, Tensor, Tensor, list], None] | None = None) -> list[list[int]]:
    """Beam search for a batch of sources (B, Ls) → the best token list per source.

    ``length_penalty`` is the GNMT α: 0 compares raw log-probabilities (favouring
    short outputs), larger values favour longer ones. ``on_step``, if given, watches the
    search: after step s (1, 2, …) it is called as ``on_step(s, alive_tokens (B·K, s+1) with
    BOS, alive_scores (B, K) summed log-probs (-inf: empty slot), finished)``, where
    ``finished[b]`` lists ``(final_score, tokens, log_prob)`` of every hypothesis of source b
    that has ended so far; it changes nothing in the search.

    >>> beam_search(model, src, beam_size=4, on_step=lambda s, tokens, scores, done: print(s))
    """
    if beam_size < 1:
        raise ValueError(f"beam size must be >= 1, got {beam_size}")
    model.eval()
    max_len = default_max_len(model, src) if max_len is None else max_len
    batch, beams = src.shape[0], beam_size
    # Row b·K + k is beam k of source b. A beam only ever continues a beam of its own source,
    # so memory and mask, the same for all K beams of a source, are expanded once, never reordered.
    memory = model.encode(src).repeat_interleave(beams, dim=0)  # (B·K, Ls, d_model)
    memory_mask = model.source_mask(src).repeat_interleave(beams, dim=0)  # e.g. (B·K, 1, 1, Ls)
    tokens = torch.full((batch * beams, 1), BOS_ID, dtype=torch.long, device=src.device)  # (B·K, 1)
    scores = torch.full((batch, beams), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive so they don't duplicate
    cache = model.new_cache() if use_cache else None
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch

    def penalty(length: int) -> float:
        return ((5.0 + length) / 6.0) ** length_penalty

    for step in range(1, max_len + 1):
        log_probs = torch.log_softmax(_step_logits(model, tokens, memory, memory_mask, cache).float(),
                                      dim=-1)  # (B·K, V)
        vocab = log_probs.shape[-1]
        candidates = (scores.view(-1, 1) + log_probs).view(batch, beams * vocab)  # (B, K·V)
        top_scores, top_index = candidates.topk(2 * beams, dim=-1)  # 2K: enough even if K of them end
        new_scores = torch.full((batch, beams), float("-inf"), device=src.device)
        origin = torch.arange(batch * beams, device=src.device).view(batch, beams)  # default: stay in place
        new_tokens = torch.full((batch, beams), PAD_ID, dtype=torch.long, device=src.device)
        for b in range(batch):
            if done[b]:
                continue
            kept = 0
            for score, index in zip(top_scores[b].tolist(), top_index[b].tolist()):
                beam, token = divmod(index, vocab)
                if score == float("-inf"):
                    break
                if token == EOS_ID or step == max_len:
                    hypothesis = tokens[b * beams + beam].tolist()[1:] + ([] if token == EOS_ID else [token])
                    finished[b].append((score / penalty(len(hypothesis) + 1), hypothesis, score))
                    continue
                new_scores[b, kept] = score
                origin[b, kept] = b * beams + beam
                new_tokens[b, kept] = token
                kept += 1
                if kept == beams:
                    break
            done[b] = len(finished[b]) >= beams or kept == 0
        order = origin.view(-1)
        expanded = torch.cat([tokens.index_select(0, order), new_tokens.view(-1, 1)], dim=1)  # (B·K, step+1)
        if on_step is not None:
            on_step(step, expanded, new_scores, [list(hypotheses) for hypotheses in finished])
        if all(done):
            break
        tokens, scores = expanded, new_scores
        if cache is not None:
            model.reorder_cache(cache, order)
    results = []
    for b in range(batch):
        if not finished[b]:  # ran out of length: take the best alive beam
            best_beam = int(scores[b].argmax())
            finished[b].append((0.0, tokens[b * beams + best_beam].tolist()[1:], float(scores[b, best_beam])))
        results.append(_strip(max(finished[b], key=lambda item: item[0])[1]))
    return results
