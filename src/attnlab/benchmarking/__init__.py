"""attnlab measured against torch.nn: the benchmarks behind ``attnlab bench`` and ``benchmarks/*.py``.

Timings on a shared machine are noisy, so a comparison is only meaningful when
the candidates run side by side in one process: :func:`compare` warms every
candidate up, then times them interleaved (A B C, B C A, …) and reports medians.
Ratios of medians measured this way survive load from other processes much
better than absolute times do.

>>> timings = compare({"add": lambda: 1 + 1, "mul": lambda: 2 * 2}, warmup=1, repeats=3)
>>> timings["add"].median_ms >= 0.0
True

* :mod:`.timing` — interleaved medians, memory, the environment, tables and JSON
* :mod:`.attention`, :mod:`.training`, :mod:`.decoding` — attention, a training step (against
  :class:`TorchSeq2Seq`, the one ``torch.nn.Transformer`` baseline), torch.compile, decoding
* :mod:`.translation` — translation trainings side by side on their own clocks (fra-eng, Multi30K)
* :mod:`.script` — the flags and reports every script in ``benchmarks/`` shares
"""

from .attention import ATTENTION_CANDIDATES, attention_benchmark
from .decoding import cached_matches_uncached, decode_full_length, decoding_benchmark
from .script import ScriptArgumentParser, finish, log_to_stderr, script_parser, write_results
from .timing import (BenchResult, Timing, compare, environment, format_table, median, peak_memory_mib, peak_rss_mib,
                     python_peak_mib, ratio, set_threads, synchronized, time_once, write_json)
from .training import (TRAIN_STEP_CANDIDATES, TorchSeq2Seq, attnlab_train_step, compile_benchmark, matmul_gflops,
                       model_flops_per_step, random_batch, train_step_benchmark)
from .translation import (BASELINE_MODEL, Contender, attnlab_run, baseline_contender, d2l_setting,
                          run_interleaved, translation_score)

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
    "ScriptArgumentParser",
    "script_parser",
    "log_to_stderr",
    "finish",
    "write_results",
    "ATTENTION_CANDIDATES",
    "attention_benchmark",
    "matmul_gflops",
    "TorchSeq2Seq",
    "random_batch",
    "model_flops_per_step",
    "TRAIN_STEP_CANDIDATES",
    "attnlab_train_step",
    "train_step_benchmark",
    "compile_benchmark",
    "decode_full_length",
    "cached_matches_uncached",
    "decoding_benchmark",
    "BASELINE_MODEL",
    "Contender",
    "translation_score",
    "run_interleaved",
    "attnlab_run",
    "baseline_contender",
    "d2l_setting",
]
