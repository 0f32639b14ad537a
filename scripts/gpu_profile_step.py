"""Where a CUDA training step's time goes: kernel launches vs GPU work, and eager vs torch.compile.

    python scripts/gpu_profile_step.py --out /tmp/profile.json          # on a machine with a CUDA GPU

For the corpus preset (d_model 256, 3+3 blocks, L=24, vocab 8000) at a few batch sizes and both
precisions: the step's wall time (median), the number of CUDA kernels it launches and their summed GPU
time (torch.profiler over one step) — GPU busy = kernel time / wall time; a step far from busy is
bound by the host (Python, autograd and launches), not by the GPU. Then eager vs ``torch.compile``
step times, interleaved, after compilation (printed separately).
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from attnlab.benchmarking import attnlab_train_step, compare, compile_benchmark, environment, random_batch, write_json
from attnlab.core.model import TransformerConfig


def config_for(d_model: int) -> TransformerConfig:
    return TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000, d_model=d_model, num_heads=max(1, d_model // 64),
                             num_encoder_layers=3, num_decoder_layers=3, d_ff=4 * d_model, dropout=0.1)


def kernels_of_one_step(step) -> tuple[int, float]:
    """(CUDA kernels launched, their summed GPU time in ms) during one call of ``step``."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernels = [event for event in prof.events() if event.device_type == torch.autograd.DeviceType.CUDA]
    return len(kernels), sum(event.time_range.elapsed_us() for event in kernels) / 1e3  # µs -> ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--batches", default="64,1024")
    parser.add_argument("--compile", default="64:fp32,64:bf16,1024:bf16", help="batch:precision pairs to compile")
    args = parser.parse_args()
    device = torch.device("cuda")
    config = config_for(256)
    rows, compiled_rows = [], []
    for batch_size in [int(b) for b in args.batches.split(",")]:
        batch = random_batch(batch_size, 24, 24, 8000, device=device)
        steps = {p: attnlab_train_step(config, batch, p, device)[0] for p in ("fp32", "bf16")}
        timings = compare(steps, warmup=5, repeats=20)
        for precision, step in steps.items():
            count, gpu_ms = kernels_of_one_step(step)
            wall = timings[precision].median_ms
            rows.append({"batch": batch_size, "precision": precision, "wall_ms": wall, "kernels": count,
                         "kernel_ms": gpu_ms, "gpu_busy": gpu_ms / wall})
            print(f"B={batch_size:5d} {precision}: {wall:7.2f} ms/step, {count} kernels, "
                  f"{gpu_ms:6.2f} ms of kernel time, GPU busy {gpu_ms / wall:.0%}", flush=True)
    for pair in [item for item in args.compile.split(",") if item]:
        batch_size, precision = int(pair.split(":")[0]), pair.split(":")[1]
        batch = random_batch(batch_size, 24, 24, 8000, device=device)
        row = {"batch": batch_size, "precision": precision,
               **compile_benchmark(config, batch, precision, device, warmup=3, repeats=20)}
        compiled_rows.append(row)
        print(f"B={batch_size:5d} {precision}: eager {row['eager_ms']:.2f} ms, compiled {row['compiled_ms']:.2f} ms "
              f"({row['speedup']:.2f}x; first call {row['compile_s']:.0f} s)", flush=True)
    write_json(args.out, {"name": "gpu_profile_step", "config": {**config.to_dict(), "src_len": 24, "tgt_len": 24},
                          "profile": rows, "compile": compiled_rows, "environment": environment(device)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
