"""``attnlab bench``: attnlab against torch.nn and the fused kernel, measured in one process.

Three measurements, each with its candidates interleaved (see :func:`attnlab.benchmarking.compare`):
attention forward + backward over sequence lengths, a full training step against
``torch.nn.Transformer`` (fp32 and bf16 autocast, with model FLOP utilisation against this
machine's measured matmul throughput), and decoding with and without the KV cache.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import check_writable_dir, fail

SECTIONS = ("attention", "train", "decode")


def _settings(quick: bool, cuda: bool = False) -> dict:
    from ..core.model import TransformerConfig

    if quick:  # tiny shapes, one repeat: proves the pipeline, measures nothing
        tiny = TransformerConfig(src_vocab_size=50, tgt_vocab_size=50, d_model=16, num_heads=2, num_encoder_layers=1,
                                 num_decoder_layers=1, d_ff=32, dropout=0.1, max_len=64)
        return {"matmul_size": 128,
                "attention": dict(lengths=[8, 16], batch=2, num_heads=2, head_dim=8, warmup=0, repeats=1,
                                  min_time_s=0.0),
                "train": dict(config=tiny, batch=4, src_len=6, tgt_len=5, warmup=0, repeats=1),
                "decode": dict(config=tiny, batch=2, src_len=5, new_tokens=4, beam_size=2, warmup=0, repeats=1)}
    if cuda:  # a GPU: longer sequences, more warm-up (kernel selection, allocator), a matmul that fills the chip
        return {"matmul_size": 8192,
                "attention": dict(lengths=[32, 64, 128, 256, 512, 1024, 2048, 4096], batch=8, num_heads=8,
                                  head_dim=64, warmup=3, repeats=10, min_time_s=0.5, max_repeats=50),
                "train": dict(batch=64, src_len=24, tgt_len=24, warmup=5, repeats=20),
                "decode": dict(batch=8, src_len=20, new_tokens=64, beam_size=4, warmup=2, repeats=5)}
    return {"matmul_size": 2048,
            "attention": dict(lengths=[32, 64, 128, 256, 512, 1024], batch=8, num_heads=8, head_dim=64, warmup=1,
                              repeats=5, min_time_s=2.0, max_repeats=15),
            "train": dict(batch=64, src_len=24, tgt_len=24, warmup=2, repeats=10),
            "decode": dict(batch=8, src_len=20, new_tokens=64, beam_size=4, warmup=1, repeats=3)}


def _plot_attention(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ..benchmarking import ATTENTION_CANDIDATES

    lengths = [row["L"] for row in rows]
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    for name in ATTENTION_CANDIDATES:
        axes.plot(lengths, [row[name] for row in rows], marker="o", label=name.removesuffix("_ms"))
    # Reference slopes through the fused path's first point: linear and quadratic growth in L.
    first = rows[0]["attnlab_ms"]
    axes.plot(lengths, [first * length / lengths[0] for length in lengths], "k:", label="∝ L")
    axes.plot(lengths, [first * (length / lengths[0]) ** 2 for length in lengths], "k--", label="∝ L²")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("sequence length L")
    axes.set_ylabel("forward + backward, ms (median)")
    axes.set_title("Self-attention cost vs sequence length")
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    from ..files import atomic_path

    with atomic_path(path) as tmp:  # like every file attnlab writes: atomic, mode per umask
        figure.savefig(tmp, format="png", dpi=120)


def _summary(results: dict) -> dict:
    """The issue's targets, each with the measured value and whether it is met."""
    targets = {}
    if "attention" in results:
        worst = min(row["attnlab_vs_torch"] for row in results["attention"]["rows"])
        targets["attention_vs_torch_mha"] = {"target": ">= 1.0", "worst_over_lengths": worst, "met": worst >= 1.0}
    if "train_step" in results:
        for row in results["train_step"]["rows"]:
            value = row["attnlab_vs_torch"]
            targets[f"train_step_vs_torch_{row['precision']}"] = {"target": ">= 1.0", "value": value,
                                                                  "met": value >= 1.0}
    if "decoding" in results:
        speedup = results["decoding"]["rows"][0]["cache_speedup"]
        targets["cached_vs_uncached_greedy"] = {"target": ">= 3.0", "value": speedup, "met": speedup >= 3.0}
    return targets


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="tiny shapes, one repeat: a smoke test (seconds), not a measurement"),
    out: Path = typer.Option(Path("bench"), "--out", "-o", help="directory for bench.json and attention.png"),
    threads: Optional[int] = typer.Option(None, "--threads", help="PyTorch intra-op threads (default: PyTorch's choice)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (every section runs there; on CUDA also "
                                                        "L = 2048 and 4096 for attention)"),
    only: Optional[str] = typer.Option(None, "--only", help="comma-separated subset of: attention, train, decode"),
):
    """Measure attnlab against torch.nn: attention, a training step, decoding; write bench.json and a plot.

    The full run takes several minutes on a 2-core CPU; ratios are medians of
    interleaved repeats in this one process, so they hold up on a busy machine
    better than absolute times do.

    Examples:

        attnlab bench --out bench

        attnlab bench --quick --out /tmp/bench

        attnlab bench --only train --threads 2
    """
    import torch

    from ..benchmarking import (ATTENTION_CANDIDATES, attention_benchmark, decoding_benchmark, environment,
                                format_table, matmul_gflops, set_threads, train_step_benchmark, write_json)
    from ..benchmarking.training import native_bf16
    from ..training.hardware import resolve_device

    sections = SECTIONS if only is None else tuple(item.strip() for item in only.split(",") if item.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        fail(f"--only: unknown sections {unknown or only!r}; allowed: {', '.join(SECTIONS)}")
    if device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, got {device!r}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    check_writable_dir(out, "--out")
    if threads is not None and threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    torch_device = resolve_device(device)  # ValueError (exit 2) when CUDA is missing
    set_threads(threads)
    settings = _settings(quick, cuda=torch_device.type == "cuda")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    peaks = {}
    size = settings["matmul_size"]
    bf16_native = native_bf16(torch_device)
    peaks["fp32"] = matmul_gflops(torch.float32, size=size, device=torch_device)
    # emulated bf16 is ~50x slower: a few seconds show its rate, and the fp32 rate is the limit of its steps
    peaks["bf16"] = matmul_gflops(torch.bfloat16, size=size, device=torch_device,
                                  max_seconds=None if bf16_native else 3.0)
    log(f"matmul {size}³: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
        f"({'native' if bf16_native else 'emulated'})")
    env = environment(torch_device)
    results: dict = {"environment": env, "quick": quick,
                     "matmul_gflops": {**peaks, "bf16_native": bf16_native, "size": size,
                                       "device": str(torch_device)}}
    tables = []
    if "attention" in sections:
        result = attention_benchmark(device=torch_device, log=log, **settings["attention"]).to_dict()
        results["attention"] = result
        columns = ["L", "repeats", *ATTENTION_CANDIDATES, "attnlab_vs_torch", "attnlab_vs_raw", "explicit_vs_fused"]
        memory = ["L", *(name.replace("_ms", "_peak_mib") for name in ATTENTION_CANDIDATES)]
        config = result["config"]
        tables.append(f"## attention forward+backward (ms), fp32, {config['device']}, B={config['batch']}, "
                      f"H={config['num_heads']}, "
                      f"d_head={config['head_dim']}\n" + format_table(result["rows"], columns)
                      + "\n\npeak extra memory (MiB)\n" + format_table(result["rows"], memory, float_format=".0f"))
    if "train" in sections:
        result = train_step_benchmark(peak_gflops=peaks, device=torch_device, log=log, **settings["train"]).to_dict()
        results["train_step"] = result
        columns = ["precision", "attnlab_ms", "torch_ms", "attnlab_vs_torch", "attnlab_tokens_per_s",
                   "torch_tokens_per_s", "attnlab_gflops_per_s", "torch_gflops_per_s", "attnlab_mfu", "torch_mfu",
                   "mfu_against", "attnlab_peak_mib", "torch_peak_mib", "attnlab_page_faults"]
        config = result["config"]
        tables.append(f"## training step: attnlab Transformer vs torch.nn.Transformer, {result['rows'][0]['parameters']:,} "
                      f"parameters, batch {config['batch']} × {config['src_len']}/{config['tgt_len']} tokens\n"
                      + format_table(result["rows"], columns, float_format=".3g"))
    if "decode" in sections:
        result = decoding_benchmark(device=torch_device, log=log, **settings["decode"]).to_dict()
        results["decoding"] = result
        config = result["config"]
        tables.append(f"## decoding, batch {config['batch']}, {config['new_tokens']} new tokens\n"
                      + format_table(result["rows"], ["mode", "ms", "sentences_per_s", "new_tokens_per_s",
                                                      "cache_speedup", "peak_mib"], float_format=".3g"))
    results["targets"] = _summary(results)
    path = write_json(out / "bench.json", results)
    print(f"# attnlab bench  {env['date']}  torch {env['torch']}  {env['processor']}  {env['cpu_count']} CPUs  "
          f"{env['torch_threads']} threads  device {torch_device}" + (f" ({env['gpu']})" if "gpu" in env else ""))
    if quick:
        print("# --quick: tiny shapes and one repeat, a smoke test: these numbers measure nothing")
    print(f"# measured matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
          f"({'native' if bf16_native else 'emulated: a bf16 step is measured against the fp32 rate'}); "
          "mfu = a step's model GFLOP/s / that rate")
    for table in tables:
        print()
        print(table)
    print()
    for name, target in results["targets"].items():
        value = target.get("value", target.get("worst_over_lengths"))
        print(f"target {name}: {value:.2f} (want {target['target']}) {'met' if target['met'] else 'NOT met'}")
    if "attention" in results:
        _plot_attention(results["attention"]["rows"], out / "attention.png")
        print(f"wrote {path} and {out / 'attention.png'}")
    else:
        print(f"wrote {path}")
