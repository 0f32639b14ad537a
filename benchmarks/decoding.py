"""Decoding speed: KV-cached greedy vs uncached at 64 new tokens, and beam-4 sentences/s.

    python benchmarks/decoding.py                   # corpus-preset model (d 256, 3+3, vocab 8000), B=8
    python benchmarks/decoding.py --run RUN         # a trained run's model instead of random weights
    python benchmarks/decoding.py --quick --json out.json

Every candidate does identical work: the end-of-sentence token (and the start and padding
tokens, which decoders drop) is suppressed (``decode_full_length`` pushes its logit far down) so
each decoder runs exactly ``--new-tokens`` steps. The cached decoder appends one key/value
row per step to each self-attention layer and projects the encoder memory once; the uncached one
re-runs the decoder over the whole prefix every step. The script first checks that both emit the
same tokens, then times all candidates interleaved in one process (attnlab.benchmarking.compare).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from attnlab.benchmarking import (BenchResult, decoding_benchmark, format_table, log_to_stderr, script_parser,
                                  set_threads, write_json)
from attnlab.core.model import Transformer, TransformerConfig
from attnlab.data import EOS_ID, PAD_ID
from attnlab.training.presets import default_model

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = script_parser(__doc__.splitlines()[0])
    parser.add_argument("--run", metavar="RUN", help="decode with this run's model (default: random weights)")
    parser.add_argument("--batch", type=int, help="sentences per batch (default 8)")
    parser.add_argument("--source-length", type=int, help="source tokens per sentence (default 16)")
    parser.add_argument("--new-tokens", type=int, help="tokens generated per sentence (default 64)")
    parser.add_argument("--beam", type=int, default=4, help="beam size (default 4)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 5; 1 with --quick)")
    args = parser.parse_args(argv)
    batch = args.batch or (2 if args.quick else 8)
    source_length = args.source_length or (6 if args.quick else 16)
    new_tokens = args.new_tokens or (8 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 5)
    if min(batch, source_length, new_tokens, repeats, args.beam, args.threads) < 1:
        parser.error("batch, source length, new tokens, beam, repeats and threads must be >= 1")
    threads = set_threads(args.threads)
    torch.manual_seed(0)
    if args.run:
        from attnlab.training.runs import load_run

        model = load_run(args.run).model
        what = f"trained run {args.run}"
    else:
        shape = default_model("fra-eng") if not args.quick else dict(d_model=32, num_heads=2, num_encoder_layers=1,
                                                                      num_decoder_layers=1, d_ff=64)
        model = Transformer(TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000, **shape)).eval()
        what = "random weights, " + ("tiny shape" if args.quick else "corpus preset shape (d 256, 4 heads, 3+3, ff 1024)")
    config = model.config
    src = torch.randint(4, config.src_vocab_size, (batch, source_length))
    src[:, -1] = EOS_ID  # sources end with EOS, as in training
    assert not (src == PAD_ID).any()

    # decode_full_length (no row ends early), the cached == uncached check, then the interleaved timing
    measured = decoding_benchmark(model=model, src=src, new_tokens=new_tokens, beam_size=args.beam, warmup=1,
                                  repeats=repeats, memory=False, log=log_to_stderr)
    agreement = measured.config["cached_matches_uncached"]
    same_tokens, same_beam = agreement["greedy"], agreement["beam"]
    print(f"cached == uncached tokens: greedy {same_tokens}, beam-{args.beam} {same_beam}", flush=True)
    if not agreement["full_length"]:
        print("error: a cached greedy row ended before --new-tokens: the timed decoders would do unequal work",
              file=sys.stderr)
        return 1
    ms = {row["mode"]: row["ms"] for row in measured.rows}
    beam = f"beam{args.beam}"
    row = {"batch": batch, "source_len": source_length, "new_tokens": new_tokens, "repeats": repeats,
           "greedy_cached_ms": ms["greedy_cached"], "greedy_uncached_ms": ms["greedy_uncached"],
           f"{beam}_cached_ms": ms[f"{beam}_cached"],
           "cache_speedup": next(r["cache_speedup"] for r in measured.rows if r["mode"] == "greedy_cached"),
           "greedy_sent_per_s": batch / (ms["greedy_cached"] / 1e3),
           f"{beam}_sent_per_s": batch / (ms[f"{beam}_cached"] / 1e3),
           "same_tokens_greedy": same_tokens, "same_tokens_beam": same_beam}

    description = {
        "greedy_cached_ms": "greedy_decode(use_cache=True): one new token per step through the KV cache",
        "greedy_uncached_ms": "greedy_decode(use_cache=False): the decoder re-reads the whole prefix each step",
        f"{beam}_cached_ms": f"beam_search(beam_size={args.beam}) with the KV cache",
        "cache_speedup": "greedy_uncached_ms / greedy_cached_ms (> 1: the cache is faster)",
        "*_sent_per_s": "sentences per second of the cached decoders",
    }
    result = BenchResult("decoding", description,
                         {"model": what, "threads": threads, "eos_suppressed": True, **config.to_dict()}, [row])
    env = result.environment
    print(f"# decoding, {what}, fp32, {threads} threads, EOS suppressed so every candidate generates "
          f"{new_tokens} tokens; median of {repeats} interleaved repeats")
    print(f"# {env['date']}  torch {env['torch']}  {env['processor']}  `{env['command']}`")
    print(format_table([row], list(row), float_format=".2f"))
    out = args.json or (None if args.quick else str(RESULTS / "decoding.json"))
    if out:
        print(f"wrote {write_json(out, result)}")
    if not (same_tokens and same_beam):
        print("error: cached and uncached decoding disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
