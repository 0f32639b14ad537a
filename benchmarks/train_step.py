"""Tokens/s of an attnlab training step vs a plain loop over torch.nn.Transformer, and model FLOP utilisation.

    python benchmarks/train_step.py                          # corpus preset: d 256, 4 heads, 3+3, d_ff 1024, B=64, L=24
    python benchmarks/train_step.py --d-model 512 --heads 8 --d-ff 2048 --batch 32
    python benchmarks/train_step.py --precision fp32 --quick --json out.json

Same sizes, same batch, same loss (label smoothing 0.1), same fused AdamW and gradient clipping on both
sides; the candidates run interleaved in one process and the table shows medians. MFU is the model's
matmul FLOPs per step (forward + backward) over the step time and this machine's measured matmul
GFLOP/s in the same precision (printed first).
"""

from __future__ import annotations

from attnlab.benchmarking import finish, format_table, log_to_stderr, script_parser, set_threads, train_step_benchmark
from attnlab.core.model import TransformerConfig

COLUMNS = ["precision", "repeats", "attnlab_ms", "torch_ms", "attnlab_vs_torch", "attnlab_tokens_per_s",
           "torch_tokens_per_s", "attnlab_mfu", "torch_mfu", "matmul_gflops", "attnlab_page_faults", "torch_page_faults"]


def main(argv: list[str] | None = None) -> int:
    parser = script_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="sentences per batch (default 64)")
    parser.add_argument("--src-len", type=int, default=24, help="padded source length (default 24)")
    parser.add_argument("--tgt-len", type=int, default=24, help="padded target length (default 24)")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder blocks each (default 3)")
    parser.add_argument("--d-ff", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 10; 1 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default 2; 0 with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.src_len, args.tgt_len, args.d_model, args.heads, args.layers, args.d_ff, args.vocab = \
            4, 6, 5, 16, 2, 1, 32, 50
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    if min(args.batch, args.src_len, args.tgt_len, repeats, args.threads) < 1 or warmup < 0:
        parser.error("batch, lengths, repeats and threads must be >= 1 and warmup >= 0")
    try:
        config = TransformerConfig(src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, d_model=args.d_model,
                                   num_heads=args.heads, num_encoder_layers=args.layers, num_decoder_layers=args.layers,
                                   d_ff=args.d_ff, dropout=args.dropout, max_len=max(512, args.src_len, args.tgt_len + 1))
    except ValueError as error:
        parser.error(str(error))
    threads = set_threads(args.threads)
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    result = train_step_benchmark(config, batch=args.batch, src_len=args.src_len, tgt_len=args.tgt_len,
                                  precisions=precisions, warmup=warmup, repeats=repeats,
                                  log=log_to_stderr)
    env, row = result.environment, result.rows[0]
    print(f"# training step, {row['parameters']:,} parameters, d_model {args.d_model}, {args.layers}+{args.layers} blocks, "
          f"batch {args.batch} × {args.src_len}/{args.tgt_len} ({result.config['target_tokens']} target tokens), "
          f"{threads} threads, median of {repeats} interleaved repeats")
    print(f"# {env['date']}  torch {env['torch']}  {env['processor']}  `{env['command']}`")
    print(format_table(result.rows, COLUMNS, float_format=".4g"))
    return finish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
