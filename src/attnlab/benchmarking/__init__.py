"""Timing helpers shared by ``benchmarks/*.py`` and ``attnlab bench``.

Timings on a shared machine are noisy, so a comparison is only meaningful when
the candidates run side by side in one process: :func:`compare` warms every
candidate up, then times them interleaved (A B C, B C A, …) and reports medians.
Ratios of medians measured this way survive load from other processes much
better than absolute times do.

>>> timings = compare({"add": lambda: 1 + 1, "mul": lambda: 2 * 2}, warmup=1, repeats=3)
>>> timings["add"].median_ms >= 0.0
True

The helpers live in :mod:`.timing`; the benchmarks themselves in
:mod:`.attention`, :mod:`.training` and :mod:`.decoding`.
"""

from .attention import ATTENTION_CANDIDATES, attention_benchmark
from .decoding import decode_full_length, decoding_benchmark
from .timing import (BenchResult, Timing, compare, environment, format_table, median, peak_memory_mib, peak_rss_mib,
                     python_peak_mib, ratio, set_threads, synchronized, time_once, write_json)
from .training import (TRAIN_STEP_CANDIDATES, attnlab_train_step, TorchSeq2Seq, matmul_gflops, model_flops_per_step, random_batch,
                       train_step_benchmark)

__all__ = [
    "Timing",
    "BenchResult",
    "compare",
    "time_once",
    "median",
    "ratio",
    "peak_rss_mib",
    "peak_memory_mib",
    "python_peak_mib",
    "set_threads",
    "synchronized",
    "environment",
    "write_json",
    "format_table",
    "ATTENTION_CANDIDATES",
    "attention_benchmark",
    "matmul_gflops",
    "TorchSeq2Seq",
    "random_batch",
    "model_flops_per_step",
    "TRAIN_STEP_CANDIDATES",
    "attnlab_train_step",
    "train_step_benchmark",
    "decode_full_length",
    "decoding_benchmark",
]

