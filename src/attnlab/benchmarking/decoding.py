"""Decoding speed: KV-cached vs uncached greedy decoding, and beam search."""

from __future__ import annotations

from typing import Callable

import torch

from .timing import BenchResult, compare, peak_memory_mib, ratio, synchronized
from .training import random_batch


def decode_full_length(model) -> None:
    """Push ``model``'s EOS logit, and those of the tokens decoders drop, far down (in place), so
    that every decode of it runs its full length and returns ``max_len`` tokens per row."""
    from ..data import EOS_ID
    from ..core.decoding import SILENT_TOKENS

    with torch.no_grad():
        model.generator.bias[[EOS_ID, *SILENT_TOKENS]] = -1e4


def cached_matches_uncached(model, src: torch.Tensor, *, max_len: int, beam_size: int = 4) -> dict[str, bool]:
    """Whether decoding through the KV cache emits exactly the tokens of recomputing the prefix.

    ``{"greedy": greedy_decode(cached) == greedy_decode(uncached), "beam": the same for
    beam_search(beam_size), "full_length": every cached greedy row holds max_len tokens}``
    (``full_length`` is what :func:`decode_full_length` promises, so that timed decoders do equal work).

    >>> cached_matches_uncached(model, src, max_len=8)
    {'greedy': True, 'beam': True, 'full_length': True}
    """
    from ..core.decoding import beam_search, greedy_decode

    cached = greedy_decode(model, src, max_len=max_len, use_cache=True)
    uncached = greedy_decode(model, src, max_len=max_len, use_cache=False)
    beam_cached = beam_search(model, src, beam_size=beam_size, max_len=max_len, use_cache=True)
    beam_uncached = beam_search(model, src, beam_size=beam_size, max_len=max_len, use_cache=False)
    return {"greedy": cached == uncached, "beam": beam_cached == beam_uncached,
            "full_length": all(len(row) == max_len for row in cached)}


def decoding_benchmark(
    config=None,
    *,
    model=None,
    src: torch.Tensor | None = None,
    batch: int = 8,
    src_len: int = 20,
    new_tokens: int = 64,
    beam_size: int = 4,
    warmup: int = 1,
    repeats: int = 3,
    memory: bool = True,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Greedy decoding with the KV cache vs recomputing the prefix, and beam search, on one model.

    The model is ``model`` (a trained one, say) or a fresh ``Transformer(config)``; the sources
    are ``src`` (B, Ls) or ``batch`` random ones of up to ``src_len`` tokens. The model's
    end-of-sentence logit is pushed down (:func:`decode_full_length`, in place) so that every
    sentence runs exactly ``new_tokens`` steps. First :func:`cached_matches_uncached` checks that
    both decoders emit the same tokens (``config["cached_matches_uncached"]``), then the
    candidates are timed interleaved. Rows: ``greedy_cached``, ``greedy_uncached``,
    ``beam{K}_cached`` with median ms per call (one batch), sentences/s and new tokens/s;
    ``cache_speedup`` = uncached / cached time (target >= 3).
    """
    from ..core.decoding import beam_search, greedy_decode
    from ..core.model import Transformer, TransformerConfig

    device = torch.device(device)
    if model is None:
        config = config or TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000, d_model=256, num_heads=4,
                                             num_encoder_layers=3, num_decoder_layers=3, d_ff=1024, dropout=0.1)
        torch.manual_seed(0)
        model = Transformer(config)
    config = model.config
    model = model.to(device).eval()
    decode_full_length(model)
    src = random_batch(batch, src_len, 1, config.src_vocab_size, device=device).src if src is None else src.to(device)
    batch = src.shape[0]
    agreement = cached_matches_uncached(model, src, max_len=new_tokens, beam_size=beam_size)
    if log is not None:
        log(f"decoding: cached == uncached tokens: greedy {agreement['greedy']}, beam-{beam_size} {agreement['beam']}")
    beam_name = f"beam{beam_size}_cached"
    candidates = {
        "greedy_cached": lambda: greedy_decode(model, src, max_len=new_tokens, use_cache=True),
        "greedy_uncached": lambda: greedy_decode(model, src, max_len=new_tokens, use_cache=False),
        beam_name: lambda: beam_search(model, src, beam_size=beam_size, max_len=new_tokens, use_cache=True),
    }
    candidates = {name: synchronized(fn, device) for name, fn in candidates.items()}  # CUDA: wait for the work
    timings = compare(candidates, warmup=warmup, repeats=repeats)
    rows = []
    for name, timing in timings.items():
        seconds = timing.median_ms / 1e3
        row = {"mode": name, "repeats": repeats, "ms": timing.median_ms, "sentences_per_s": batch / seconds,
               "new_tokens_per_s": batch * new_tokens / seconds,
               "peak_mib": peak_memory_mib(candidates[name], device) if memory else None, "samples_ms": timing.samples_ms}
        rows.append(row)
    speedup = ratio(timings["greedy_uncached"].median_ms, timings["greedy_cached"].median_ms)
    for row in rows:
        row["cache_speedup"] = speedup if row["mode"] == "greedy_cached" else None
    if log is not None:
        log(f"decoding: cached {timings['greedy_cached'].median_ms:.0f} ms, uncached "
            f"{timings['greedy_uncached'].median_ms:.0f} ms, speedup {speedup:.2f}x")
    return BenchResult(
        name="decoding",
        description={"greedy_cached": "greedy_decode(use_cache=True): one new token per step, keys/values kept",
                     "greedy_uncached": "greedy_decode(use_cache=False): the whole prefix recomputed every step",
                     beam_name: f"beam_search(beam_size={beam_size}, use_cache=True)",
                     "cache_speedup": "greedy uncached time / cached time (target >= 3)"},
        config={**config.to_dict(), "batch": batch, "src_len": src.shape[1], "new_tokens": new_tokens,
                "beam_size": beam_size, "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(),
                "device": str(device), "cached_matches_uncached": agreement},
        rows=rows,
    )
