"""Eager vs torch.compile'd attnlab training step (corpus preset, fp32), timed interleaved after compilation.

    python benchmarks/compile_step.py --threads 1

The first compiled call pays the compilation (printed separately); the medians compare steady-state steps
(:func:`attnlab.benchmarking.compile_benchmark`).
"""

from __future__ import annotations

from attnlab.benchmarking import compile_benchmark, random_batch, script_parser, set_threads
from attnlab.core.model import TransformerConfig


def main(argv: list[str] | None = None) -> int:
    parser = script_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("repeats and threads must be >= 1")
    set_threads(args.threads)
    quick = args.quick
    config = TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000, d_model=64 if quick else 256, num_heads=4,
                               num_encoder_layers=1 if quick else 3, num_decoder_layers=1 if quick else 3,
                               d_ff=128 if quick else 1024, dropout=0.1)
    batch = random_batch(8 if quick else 64, 24, 24, 8000)
    row = compile_benchmark(config, batch, "fp32", "cpu", warmup=1, repeats=1 if quick else args.repeats)
    print(f"first compiled step (includes compilation): {row['compile_s']:.1f} s")
    print(f"eager: median {row['eager_ms']:.1f} ms")
    print(f"compiled: median {row['compiled_ms']:.1f} ms")
    print(f"compiled speed relative to eager: {row['speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
