"""Forward + backward of attnlab's MultiHeadAttention vs torch.nn.MultiheadAttention vs raw SDPA.

    python benchmarks/attention.py                  # B=32, H=8, d_head=64, L in 32/128/512
    python benchmarks/attention.py --lengths 1024   # one more length, for a time-vs-length plot
    python benchmarks/attention.py --quick --json out.json

All candidates run interleaved in one process on the same weights and inputs;
the table shows median milliseconds and ratios (see the legend it prints).
"""

from __future__ import annotations

from attnlab.benchmarking import (ATTENTION_CANDIDATES, attention_benchmark, finish, format_table, log_to_stderr,
                                  script_parser, set_threads)

TIME_COLUMNS = ["L", "repeats", *ATTENTION_CANDIDATES, "attnlab_vs_torch", "attnlab_vs_raw", "explicit_vs_fused"]


def main(argv: list[str] | None = None) -> int:
    parser = script_parser(__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", metavar="L", help="sequence lengths (default 32 128 512)")
    parser.add_argument("--repeats", type=int, help="timed rounds per candidate (default 5; 1 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default 1; 0 with --quick)")
    parser.add_argument("--min-time", type=float, metavar="S",
                        help="add repeats until the slowest candidate ran ~S seconds (default 3; 0 with --quick)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    args = parser.parse_args(argv)
    if args.quick:
        shape = dict(batch=2, num_heads=2, head_dim=8)
        lengths, repeats, warmup = [4, 8], 1, 0
    else:
        shape = dict(batch=32, num_heads=8, head_dim=64)
        lengths, repeats, warmup = [32, 128, 512], 5, 1
    lengths = args.lengths or lengths
    repeats = repeats if args.repeats is None else args.repeats
    warmup = warmup if args.warmup is None else args.warmup
    if min(lengths) < 1 or repeats < 1 or warmup < 0 or args.threads < 1:
        parser.error("lengths, repeats and threads must be >= 1 and warmup >= 0")

    threads = set_threads(args.threads)
    min_time = args.min_time if args.min_time is not None else (0.0 if args.quick else 3.0)
    result = attention_benchmark(lengths, warmup=warmup, repeats=repeats, min_time_s=min_time,
                                 memory=not args.no_memory,
                                 log=log_to_stderr, **shape)
    env = result.environment
    print(f"# attention forward+backward, fp32, B={shape['batch']}, H={shape['num_heads']}, "
          f"d_head={shape['head_dim']}, {threads} threads, median of >= {repeats} interleaved repeats (column `repeats`)")
    print(f"# {env['date']}  torch {env['torch']}  {env['processor']}  `{env['command']}`")
    print(format_table(result.rows, TIME_COLUMNS))
    if not args.no_memory:
        memory_columns = ["L", *(name.replace("_ms", "_peak_mib") for name in ATTENTION_CANDIDATES)]
        print()
        print(format_table(result.rows, memory_columns, float_format=".0f"))
    return finish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
