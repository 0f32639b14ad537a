"""Decoding, step by step: the ``decoding`` field of an attention document (version 2).

Step t of decoding reads the prefix ``<bos> y_1 … y_t`` and emits ``y_{t+1}`` (``<eos>`` at the
end). The document's target tokens are that decoder input, so step t is row t of the
``cross`` and ``decoder_self`` maps, and its next-token distribution is

    p(· | x, y_≤t) = softmax(logits_t)

of the same teacher-forced pass that recorded the maps (causal: row t never saw a later
token, so it is exactly what decoding computed at step t). With beam search the step also
lists the hypotheses the search held after that step, with the score each was ranked by::

    score       = Σ_i log p(y_i | x, y_<i)                 (alive: what the beam keeps the best K of)
    final_score = score / ((5 + |y| + 1) / 6)^α            (finished, GNMT: the best of these wins)

    >>> history = []
    >>> beam_search(model, src, beam_size=4, on_step=lambda *state: history.append(state))
    >>> decoding = decoding_field(logits, [1, 7, 8], codec, strategy="beam", beam_size=4, beam_history=history)
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .. import document
from ..core.decoding import SILENT_TOKENS
from ..data.codec import EOS_ID

__all__ = ["decoding_field", "BeamState"]

# What beam_search's on_step hands over, for source 0: (step, alive_tokens (B·K, s+1), alive_scores (B, K),
# finished [per source: (final_score, tokens, log_prob)]).
BeamState = tuple[int, Tensor, Tensor, list]


def _rounded(value: float) -> float:
    return round(float(value), document.DIGITS)


def _top_k(logits: Tensor, codec, k: int) -> list[dict]:
    """The k most likely next tokens of one row of logits (V,), largest first."""
    probs = torch.softmax(logits.double(), dim=-1)  # (V,)
    values, indices = probs.topk(min(k, probs.numel()))
    names = codec.tokens(indices.tolist())
    return [{"token": name, "prob": _rounded(p)} for name, p in zip(names, values.tolist())]


def _visible(ids: Sequence[int]) -> list[int]:
    """What the decoders keep of a hypothesis in their output (they drop BOS and PAD)."""
    return [int(i) for i in ids if int(i) not in SILENT_TOKENS]


def _hypotheses(state: BeamState, beam_size: int, winner: list[int], codec) -> list[dict]:
    """The alive beams (best first), then every hypothesis finished so far, of source 0."""
    _, alive_tokens, alive_scores, finished = state
    listed = []
    for k in range(beam_size):
        score = float(alive_scores[0, k])
        if score == float("-inf"):  # an empty slot (fewer than K candidates)
            continue
        ids = alive_tokens[k].tolist()[1:]  # drop BOS
        listed.append({"tokens": codec.tokens(ids), "score": _rounded(score), "finished": False,
                       "winner_prefix": _visible(ids) == winner[: len(_visible(ids))]})
    for final_score, ids, log_prob in finished[0]:
        listed.append({"tokens": codec.tokens(ids), "score": _rounded(log_prob), "finished": True,
                       "winner_prefix": _visible(ids) == winner, "final_score": _rounded(final_score)})
    return listed


def decoding_field(logits: Tensor, decoder_input: Sequence[int], codec, *, strategy: str,
                   beam_size: int = 1, beam_history: Sequence[BeamState] = (), ended: bool = True,
                   top_k: int = 10) -> dict:
    """The document's ``decoding`` entry for one sentence.

    ``logits`` (Lt, V) are the teacher-forced logits of ``decoder_input`` (``<bos>`` + output
    ids, Lt of them); ``strategy`` is ``greedy``, ``beam`` (then ``beam_history`` holds
    beam_search's ``on_step`` states for a batch of one) or ``forced``; ``ended`` says whether
    the output was closed by ``<eos>`` (False when decoding ran out of length: the last step
    then shows the model's most likely token).
    """
    if strategy not in document.STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(document.STRATEGIES)}, got {strategy!r}")
    decoder_input = [int(i) for i in decoder_input]
    rows = len(decoder_input)
    if logits.dim() != 2 or logits.shape[0] != rows:
        raise ValueError(f"logits must be (rows, vocab) with one row per decoder input token, "
                         f"got {tuple(logits.shape)} for {rows} tokens")
    if strategy == "beam" and not beam_history:
        raise ValueError("beam decoding needs the beam history (beam_search's on_step states)")
    output = decoder_input[1:]
    steps = []
    for t in range(rows):
        if t + 1 < rows:
            emitted = output[t]
        else:
            emitted = EOS_ID if ended else int(logits[t].argmax())
        step = {"t": t, "token": codec.tokens([emitted])[0], "top_k": _top_k(logits[t], codec, top_k)}
        if strategy == "beam":  # the search's state after step t+1; past its end, its final state
            state = beam_history[min(t, len(beam_history) - 1)]
            step["hypotheses"] = _hypotheses(state, beam_size, output, codec)
        steps.append(step)
    field = {"strategy": strategy, "beam_size": beam_size if strategy == "beam" else 1, "steps": steps}
    if strategy == "beam":
        final = steps[-1]["hypotheses"]
        won = [i for i, h in enumerate(final) if h["winner_prefix"] and (h["finished"] or not ended)]
        if not won:
            raise ValueError("the beam history does not contain the output it is said to have produced")
        field["winner"] = max(won, key=lambda i: final[i].get("final_score", final[i]["score"]))
    return field
