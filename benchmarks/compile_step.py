"""Eager vs torch.compile'd attnlab training step (corpus preset, fp32), timed interleaved after compilation.

    python benchmarks/compile_step.py --threads 1

The first compiled call pays the compilation (printed separately); the medians compare steady-state steps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import apply_threads, argument_parser  # noqa: E402

import torch  # noqa: E402

from attnlab.benchmarking import compare  # noqa: E402
from attnlab.benchmarking.training import _train_step_candidates, random_batch  # noqa: E402
from attnlab.core.model import TransformerConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args(argv)
    apply_threads(args)
    quick = args.quick
    config = TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000, d_model=64 if quick else 256, num_heads=4,
                               num_encoder_layers=1 if quick else 3, num_decoder_layers=1 if quick else 3,
                               d_ff=128 if quick else 1024, dropout=0.1)
    batch = random_batch(8 if quick else 64, 24, 24, 8000)
    eager, _ = _train_step_candidates(config, batch, "fp32", torch.device("cpu"))
    compiled, _ = _train_step_candidates(config, batch, "fp32", torch.device("cpu"), compile_attnlab=True)
    started = time.perf_counter()
    compiled["attnlab"]()
    print(f"first compiled step (includes compilation): {time.perf_counter() - started:.1f} s")
    timings = compare({"eager": eager["attnlab"], "compiled": compiled["attnlab"]}, warmup=1,
                      repeats=1 if quick else args.repeats)
    for name, timing in timings.items():
        print(f"{name}: median {timing.median_ms:.1f} ms")
    print(f"compiled speed relative to eager: {timings['eager'].median_ms / timings['compiled'].median_ms:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
