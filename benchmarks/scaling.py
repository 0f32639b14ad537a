"""Measured cost of an attnlab training step vs batch size and model width (fp32 and bf16 autocast).

    python benchmarks/scaling.py                                   # CPU, 1 thread: B 16/32/64/128 at d 256; d 128/256/512 at B 64
    python benchmarks/scaling.py --device cuda --batches 16,64,256,1024 --size-batch 256 --out benchmarks/results/scaling-cuda
    python benchmarks/scaling.py --quick --out /tmp/scaling        # tiny shapes, one repeat: a smoke test

attnlab's Transformer (encoder–decoder, --layers + --layers blocks, d_ff = 4·d_model, heads = d_model / 64),
source and target length 24, an 8,000-word vocabulary, the trainer's own step (label smoothing 0.1,
clipping, fused AdamW). For every model size the fp32 and bf16 steps run interleaved in one process
(:func:`attnlab.benchmarking.compare`) and the table shows medians. MFU is the model's matmul FLOPs per
step (:func:`attnlab.benchmarking.model_flops_per_step`) over the step time and this machine's matmul
GFLOP/s measured in the same run and precision (:func:`attnlab.benchmarking.matmul_gflops`).
Writes OUT.json and OUT.md (atomically).
"""

from __future__ import annotations

import gc
import time

import torch

from attnlab.benchmarking import (attnlab_train_step, compare, environment, format_table, log_to_stderr,
                                  matmul_gflops, model_flops_per_step, random_batch, script_parser, set_threads,
                                  write_results)
from attnlab.core.model import TransformerConfig

COLUMNS = ["d_model", "parameters", "batch", "precision", "ms_per_step", "tokens_per_s", "model_gflop", "tflops",
           "mfu", "peak_mib"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def _model_config(d_model: int, args) -> TransformerConfig:
    return TransformerConfig(src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, d_model=d_model,
                             num_heads=max(1, d_model // 64), num_encoder_layers=args.layers,
                             num_decoder_layers=args.layers, d_ff=4 * d_model, dropout=0.1,
                             max_len=max(512, args.length + 1))


def measure(d_model: int, batch: int, args, peaks: dict, device: torch.device, log) -> list[dict]:
    """One model size and batch: the fp32 and bf16 steps interleaved; one row per precision."""
    config = _model_config(d_model, args)
    data = random_batch(batch, args.length, args.length, args.vocab, device=device)
    flops = model_flops_per_step(config, batch, args.length, args.length)
    base = {"d_model": d_model, "d_ff": 4 * d_model, "heads": config.num_heads, "batch": batch,
            "target_tokens": data.num_tokens, "model_gflop": flops / 1e9}
    try:
        steps, parameters = {}, 0
        for precision in args.precisions:
            steps[precision], parameters = attnlab_train_step(config, data, precision, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timings = compare(steps, warmup=args.warmup, repeats=args.repeats)
    except torch.cuda.OutOfMemoryError as error:  # a GPU too small for this batch: say so, keep going
        log(f"d_model {d_model}, batch {batch}: out of memory ({str(error).splitlines()[0]})")
        return [{**base, "precision": precision, "error": "out of memory"} for precision in args.precisions]
    finally:
        steps = None
        gc.collect()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    rows = []
    for precision, timing in timings.items():
        seconds = timing.median_ms / 1e3
        rows.append({**base, "parameters": parameters, "precision": precision, "repeats": len(timing.samples_ms),
                     "ms_per_step": timing.median_ms, "min_ms": timing.min_ms,
                     "tokens_per_s": data.num_tokens / seconds, "tflops": flops / seconds / 1e12,
                     "mfu": flops / seconds / (peaks[precision] * 1e9), "matmul_gflops": peaks[precision],
                     "peak_mib": peak, "samples_ms": timing.samples_ms})
        log(f"d_model {d_model:4d} batch {batch:5d} {precision}: {timing.median_ms:9.2f} ms/step, "
            f"{rows[-1]['tokens_per_s']:12,.0f} tok/s, MFU {rows[-1]['mfu']:.1%}")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = script_parser(__doc__.splitlines()[0])
    parser.set_defaults(threads=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batches", default="16,32,64,128", help="batch sizes swept at --base-d (default 16,32,64,128)")
    parser.add_argument("--d-models", default="128,256,512", help="widths swept at --size-batch (default 128,256,512)")
    parser.add_argument("--base-d", type=int, default=256, help="d_model of the batch sweep (default 256)")
    parser.add_argument("--size-batch", type=int, default=64, help="batch of the width sweep (default 64)")
    parser.add_argument("--length", type=int, default=24, help="padded source and target length (default 24)")
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder blocks each (default 3)")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default 2 on CPU, 5 on CUDA)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 7 on CPU, 20 on CUDA)")
    parser.add_argument("--matmul-size", type=int, help="side of the matmul behind the MFU peak "
                                                        "(default 1024 on CPU, 8192 on CUDA)")
    parser.add_argument("--out", default="benchmarks/results/scaling-cpu",
                        help="writes OUT.json and OUT.md (default benchmarks/results/scaling-cpu)")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available in this PyTorch build")
    if args.quick:
        args.batches, args.d_models, args.base_d, args.size_batch = "2,4", "16,32", 32, 2
        args.length, args.layers, args.vocab = 6, 1, 50
        args.warmup, args.repeats, args.matmul_size = 0, 1, 64
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    args.repeats = args.repeats if args.repeats is not None else (20 if cuda else 7)
    matmul_size = args.matmul_size or (8192 if cuda else 1024)
    try:
        batches, widths = _ints(args.batches), _ints(args.d_models)
    except ValueError:
        parser.error(f"--batches and --d-models take comma-separated whole numbers, got {args.batches!r}, "
                     f"{args.d_models!r}")
    if min([*batches, *widths, args.base_d, args.size_batch, args.length, args.layers, args.repeats,
            args.threads, args.vocab, matmul_size]) < 1 or args.warmup < 0 or not batches or not widths:
        parser.error("sizes, lengths, layers, repeats and threads must be >= 1 and warmup >= 0")
    args.precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    device = torch.device(args.device)
    threads = set_threads(args.threads)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (PyTorch's default; made explicit)

    started = time.perf_counter()
    peaks = {precision: matmul_gflops(DTYPES[precision], size=matmul_size, device=device)
             for precision in args.precisions}
    log_to_stderr("matmul peak: " + ", ".join(f"{p} {g:,.0f} GFLOP/s" for p, g in peaks.items()))
    points = [(args.base_d, batch) for batch in batches]
    points += [(width, args.size_batch) for width in widths if (width, args.size_batch) not in points]
    rows = []
    for d_model, batch in points:
        rows += measure(d_model, batch, args, peaks, device, log_to_stderr)
    env = environment(device)
    wall_s = time.perf_counter() - started
    config = {"device": str(device), "threads": threads, "layers": args.layers, "length": args.length,
              "vocab": args.vocab, "heads": "d_model / 64", "d_ff": "4 * d_model", "batch_sweep_d_model": args.base_d,
              "width_sweep_batch": args.size_batch, "warmup": args.warmup, "repeats": args.repeats,
              "matmul_size": matmul_size, "matmul_gflops": peaks, "quick": args.quick, "wall_s": wall_s,
              "optimizer": "AdamW fused, betas (0.9, 0.98), grad clip 1.0, label smoothing 0.1, final_norm"}
    where = env.get("gpu") or f"{env['processor']}, {env['cpu_count']} CPUs, {threads} threads"
    text = "\n".join([
        f"# training step vs batch and model size: {args.layers}+{args.layers} blocks, L={args.length}, "
        f"vocab {args.vocab}, {where}",
        f"# {env['date']}  torch {env['torch']}  `{env['command']}`  ({wall_s:.0f} s)",
        f"# median of {args.repeats} interleaved repeats after {args.warmup} warm-up; matmul {matmul_size}³ peak "
        + ", ".join(f"{p} {g:,.0f} GFLOP/s" for p, g in peaks.items())
        + ("  (--quick: measures nothing)" if args.quick else ""),
        "",
        format_table([row for row in rows if "error" not in row], COLUMNS, float_format=".4g"),
        *[f"- d_model {row['d_model']}, batch {row['batch']}, {row['precision']}: {row['error']}"
          for row in rows if "error" in row],
        "",
        "model_gflop: matmul FLOPs per step (fwd + bwd, padded positions); tflops: model_gflop / step time; "
        "mfu: that over the measured matmul peak of the same precision; tokens_per_s: non-padding target tokens; "
        "peak_mib: CUDA peak allocated memory over both precisions of that size (empty on CPU).",
    ])
    return write_results(args.out, {"name": "scaling", "config": config, "rows": rows, "environment": env}, text)


if __name__ == "__main__":
    raise SystemExit(main())
