"""Timing helpers shared by ``benchmarks/*.py`` and ``attnlab bench``.

Timings on a shared machine are noisy, so a comparison is only meaningful when
the candidates run side by side in one process: :func:`compare` warms every
candidate up, then times them interleaved (A B C, B C A, …) and reports medians.
Ratios of medians measured this way survive load from other processes much
better than absolute times do.

>>> timings = compare({"add": lambda: 1 + 1, "mul": lambda: 2 * 2}, warmup=1, repeats=3)
>>> timings["add"].median_ms >= 0.0
True
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

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
    "environment",
    "write_json",
    "format_table",
    "ATTENTION_CANDIDATES",
    "attention_benchmark",
]


@dataclass
class Timing:
    """Wall-clock samples of one candidate, in milliseconds."""

    name: str
    samples_ms: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "median_ms": self.median_ms, "min_ms": self.min_ms, "samples_ms": self.samples_ms}


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    if not values:
        raise ValueError("median of an empty sequence")
    return float(statistics.median(values))


def ratio(numerator_ms: float, denominator_ms: float) -> float:
    """``numerator_ms / denominator_ms`` (inf when the denominator is 0).

    ``ratio(other_ms, mine_ms)`` is my speed relative to other (> 1: I am faster).
    """
    return numerator_ms / denominator_ms if denominator_ms > 0 else float("inf")


def time_once(fn: Callable[[], Any]) -> float:
    """Run ``fn`` once and return its wall-clock time in milliseconds."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def compare(
    candidates: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 1,
    repeats: int = 5,
    setup: Callable[[], Any] | None = None,
    rotate: bool = True,
) -> dict[str, Timing]:
    """Time each candidate ``repeats`` times, interleaved (A B C A B C …), after ``warmup`` untimed rounds.

    With ``rotate`` the order shifts by one each round (A B C, B C A, C A B, …).
    ``setup`` (if given) runs untimed before every call, e.g. to drop gradients
    so that each candidate does the same work. The garbage collector is off
    while timing. Returns ``{name: Timing}`` in the candidates' order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    timings = {name: Timing(name) for name in candidates}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        names = list(candidates)
        for round_index in range(warmup + repeats):
            # Rotate the starting candidate each round, so none always runs right
            # after the same neighbour (cache, allocator and page-fault effects).
            shift = round_index % len(names) if rotate and names else 0
            for name in names[shift:] + names[:shift]:
                fn = candidates[name]
                if setup is not None:
                    setup()
                elapsed = time_once(fn)
                if round_index >= warmup:
                    timings[name].samples_ms.append(elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (never decreases; Linux and macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _proc_status_mib(field_name: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 2**10  # kB -> MiB
    raise OSError(f"{field_name} not in /proc/self/status")


def peak_memory_mib(fn: Callable[[], Any]) -> float | None:
    """Extra resident memory at the peak of one call of ``fn``, in MiB (Linux only, else None).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``), runs
    ``fn`` and returns peak RSS minus RSS before the call. It sees tensors
    allocated in C++, unlike tracemalloc; memory the allocator keeps from an
    earlier call may be reused without showing up, so read it as approximate.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # reset VmHWM to the current RSS
        before = _proc_status_mib("VmRSS")
    except OSError:
        return None
    fn()
    return max(0.0, _proc_status_mib("VmHWM") - before)


def python_peak_mib(fn: Callable[[], Any]) -> float:
    """Peak memory allocated by *Python objects* while ``fn`` runs, in MiB (tracemalloc).

    Tensor storage is allocated in C++ and is not seen by tracemalloc: use this
    for Python-side overhead only, and :func:`peak_rss_mib` for the whole process.
    """
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def set_threads(num_threads: int | None) -> int:
    """Set PyTorch's intra-op thread count (None leaves it) and return the count in effect."""
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"threads must be >= 1, got {num_threads}")
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def environment() -> dict[str, Any]:
    """What a reader needs to judge a timing: when, where, with what."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


@dataclass
class BenchResult:
    """One benchmark run: what was measured, the rows of the table, and the environment."""

    name: str
    description: dict[str, str]  # column or candidate name -> what it measures
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    environment: dict[str, Any] = field(default_factory=environment)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_json(path: str | os.PathLike, result: BenchResult | Mapping[str, Any]) -> Path:
    """Write ``result`` as indented JSON (atomically: temp file, then rename) and return the path."""
    path = Path(path)
    payload = result.to_dict() if isinstance(result, BenchResult) else dict(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    tmp.replace(path)
    return path


def _cell(value: Any, float_format: str) -> str:
    if isinstance(value, float):
        return format(value, float_format)
    return "" if value is None else str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
                 float_format: str = ".2f") -> str:
    """A plain-text table (Markdown pipe syntax) of ``rows``; ``columns`` picks and orders the keys."""
    if not rows:
        return ""
    columns = list(columns) if columns is not None else list(rows[0])
    cells = [[_cell(row.get(column), float_format) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    header = "| " + " | ".join(column.rjust(width) for column, width in zip(columns, widths)) + " |"
    rule = "|" + "|".join("-" * (width + 1) + ":" for width in widths) + "|"
    body = ["| " + " | ".join(cell.rjust(width) for cell, width in zip(line, widths)) + " |" for line in cells]
    return "\n".join([header, rule, *body])


# --------------------------------------------------------------------------- attention benchmark

ATTENTION_CANDIDATES = {
    "attnlab_ms": "attnlab MultiHeadAttention(x, x, x), fused path (need_weights=False): "
                  "q/k/v projections + F.scaled_dot_product_attention + out_proj",
    "torch_mha_ms": "torch.nn.MultiheadAttention(batch_first=True)(x, x, x, need_weights=False): "
                    "its packed in_proj + SDPA + out_proj",
    "raw_sdpa_ms": "hand-written reference: one packed F.linear for q/k/v, view/transpose to heads, "
                   "F.scaled_dot_product_attention, F.linear out projection (no module overhead)",
    "explicit_ms": "attnlab MultiHeadAttention(x, x, x, need_weights=True): softmax(q kᵀ/√d) v "
                   "written out, weights (B, H, L, L) returned",
    "sdpa_kernel_ms": "F.scaled_dot_product_attention alone on already-projected q, k, v "
                      "(B, H, L, d_head) leaves: the kernel's share of the above",
}
"""What each timed column measures: forward + backward of one self-attention call, fp32, no mask."""


def _attention_candidates(batch: int, length: int, num_heads: int, head_dim: int,
                          seed: int = 0) -> tuple[dict[str, Callable[[], Any]], Callable[[], None]]:
    """Closures doing forward + backward for each candidate on identical weights and inputs."""
    from torch import nn
    import torch.nn.functional as F

    from .attention import MultiHeadAttention

    generator = torch.Generator().manual_seed(seed)
    d_model = num_heads * head_dim
    x = torch.randn(batch, length, d_model, generator=generator).requires_grad_()
    grad_out = torch.randn(batch, length, d_model, generator=generator)
    attnlab_mha = MultiHeadAttention(d_model, num_heads)
    torch_mha = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
    with torch.no_grad():  # the same weights everywhere
        torch_mha.in_proj_weight.copy_(torch.cat([attnlab_mha.q_proj.weight, attnlab_mha.k_proj.weight,
                                                  attnlab_mha.v_proj.weight]))
        torch_mha.in_proj_bias.copy_(torch.cat([attnlab_mha.q_proj.bias, attnlab_mha.k_proj.bias,
                                                attnlab_mha.v_proj.bias]))
        torch_mha.out_proj.load_state_dict(attnlab_mha.out_proj.state_dict())
    in_weight = nn.Parameter(torch_mha.in_proj_weight.detach().clone())  # (3D, D)
    in_bias = nn.Parameter(torch_mha.in_proj_bias.detach().clone())  # (3D,)
    out_weight = nn.Parameter(attnlab_mha.out_proj.weight.detach().clone())
    out_bias = nn.Parameter(attnlab_mha.out_proj.bias.detach().clone())
    q_leaf, k_leaf, v_leaf = (torch.randn(batch, num_heads, length, head_dim, generator=generator).requires_grad_()
                              for _ in range(3))
    grad_heads = torch.randn(batch, num_heads, length, head_dim, generator=generator)
    leaves = [x, in_weight, in_bias, out_weight, out_bias, q_leaf, k_leaf, v_leaf,
              *attnlab_mha.parameters(), *torch_mha.parameters()]

    def clear_grads() -> None:
        for leaf in leaves:
            leaf.grad = None

    def attnlab_fused() -> None:
        attnlab_mha(x, x, x).backward(grad_out)

    def torch_nn() -> None:
        torch_mha(x, x, x, need_weights=False)[0].backward(grad_out)

    def raw_sdpa() -> None:
        q, k, v = F.linear(x, in_weight, in_bias).split(d_model, dim=-1)  # 3 × (B, L, D)
        q, k, v = (t.view(batch, length, num_heads, head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, L, dh)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, dh)
        out = out.transpose(1, 2).reshape(batch, length, d_model)  # (B, L, D)
        F.linear(out, out_weight, out_bias).backward(grad_out)

    def attnlab_explicit() -> None:
        out, _weights = attnlab_mha(x, x, x, need_weights=True)
        out.backward(grad_out)

    def sdpa_kernel() -> None:
        F.scaled_dot_product_attention(q_leaf, k_leaf, v_leaf).backward(grad_heads)

    candidates = {"attnlab_ms": attnlab_fused, "torch_mha_ms": torch_nn, "raw_sdpa_ms": raw_sdpa,
                  "explicit_ms": attnlab_explicit, "sdpa_kernel_ms": sdpa_kernel}
    return candidates, clear_grads


def attention_benchmark(
    lengths: Sequence[int] = (32, 128, 512),
    *,
    batch: int = 32,
    num_heads: int = 8,
    head_dim: int = 64,
    warmup: int = 1,
    repeats: int = 5,
    min_time_s: float = 3.0,
    max_repeats: int = 30,
    memory: bool = True,
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Forward + backward of attnlab's MultiHeadAttention against torch.nn and raw SDPA, per length.

    Each row holds the median milliseconds of every candidate in
    :data:`ATTENTION_CANDIDATES`, measured interleaved in this process (at least ``repeats``
    rounds, more — up to ``max_repeats`` — until the slowest candidate has run about
    ``min_time_s`` seconds, judged from the ``warmup`` rounds), and the ratios:
    ``attnlab_vs_torch`` and ``attnlab_vs_raw`` are speeds (other time / attnlab time,
    > 1 means attnlab is faster); ``explicit_vs_fused`` is a time ratio (explicit / fused).
    With ``memory``, ``*_peak_mib`` columns give each candidate's extra peak RSS.
    """
    rows = []
    for length in lengths:
        candidates, clear_grads = _attention_candidates(batch, length, num_heads, head_dim)
        rounds = repeats
        if warmup > 0:
            warm = compare(candidates, warmup=0, repeats=warmup, setup=clear_grads)
            slowest_ms = max(timing.median_ms for timing in warm.values())
            rounds = max(repeats, min(max_repeats, math.ceil(min_time_s * 1e3 / max(slowest_ms, 1e-3))))
        timings = compare(candidates, warmup=0, repeats=rounds, setup=clear_grads)
        row: dict[str, Any] = {"L": length, "repeats": rounds, **{name: timing.median_ms for name, timing in timings.items()}}
        row["attnlab_vs_torch"] = ratio(row["torch_mha_ms"], row["attnlab_ms"])
        row["attnlab_vs_raw"] = ratio(row["raw_sdpa_ms"], row["attnlab_ms"])
        row["explicit_vs_fused"] = ratio(row["explicit_ms"], row["attnlab_ms"])
        if memory:
            for name, fn in candidates.items():
                clear_grads()
                row[name.replace("_ms", "_peak_mib")] = peak_memory_mib(fn)
        clear_grads()
        row["samples_ms"] = {name: timing.samples_ms for name, timing in timings.items()}
        rows.append(row)
        if log is not None:
            log(f"L={length}: " + ", ".join(f"{name}={row[name]:.1f}" for name in candidates))
    return BenchResult(
        name="attention",
        description={**ATTENTION_CANDIDATES,
                     "attnlab_vs_torch": "speed of attnlab fused relative to torch.nn.MultiheadAttention "
                                         "(torch time / attnlab time; target >= 1.0)",
                     "attnlab_vs_raw": "speed of attnlab fused relative to the raw SDPA reference "
                                       "(raw time / attnlab time; target >= 0.9)",
                     "explicit_vs_fused": "time of the explicit path / time of the fused path "
                                          "(target <= 1.5 at L=128)"},
        config={"lengths": list(lengths), "batch": batch, "num_heads": num_heads, "head_dim": head_dim,
                "d_model": num_heads * head_dim, "dtype": "float32", "warmup": warmup, "repeats": repeats,
                "min_time_s": min_time_s, "max_repeats": max_repeats, "threads": torch.get_num_threads(),
                "pass": "forward + backward, self-attention, no mask, training mode, dropout 0"},
        rows=rows,
    )
