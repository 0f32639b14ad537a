"""Timing, memory and reporting helpers: interleaved medians, ratios, tables, JSON.

:func:`compare` warms every candidate up, then times them interleaved
(A B C, B C A, …) and reports medians, so load from other processes hits all
candidates alike.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
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

from ..files import atomic_write_text


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


def synchronized(fn: Callable[[], Any], device: str | torch.device | None) -> Callable[[], Any]:
    """``fn`` followed by a wait for the device (CUDA), so that a host clock around it times the device's work.

    On the CPU (or ``None``) it returns ``fn`` itself: CPU kernels finish before they return.
    """
    if device is None or torch.device(device).type != "cuda":
        return fn

    def call() -> Any:
        result = fn()
        torch.cuda.synchronize(device)
        return result

    return call


def peak_memory_mib(fn: Callable[[], Any], device: str | torch.device | None = None) -> float | None:
    """Extra memory at the peak of one call of ``fn``, in MiB: resident memory on the CPU (Linux only, else None),
    allocated device memory on CUDA.

    On the CPU it resets the kernel's high-water mark (``/proc/self/clear_refs``),
    runs ``fn`` and returns peak RSS minus RSS before the call. It sees tensors
    allocated in C++, unlike tracemalloc; memory the allocator keeps from an
    earlier call may be reused without showing up, so read it as approximate.
    On CUDA it returns ``torch.cuda.max_memory_allocated`` during the call minus
    the memory allocated before it (exact, for tensors PyTorch allocates).
    """
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return max(0.0, (torch.cuda.max_memory_allocated(device) - before) / 2**20)
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


def environment(device: str | torch.device | None = None) -> dict[str, Any]:
    """What a reader needs to judge a timing: when, where, with what (on a CUDA ``device``, the card too).

    ``cpu`` is :func:`attnlab.training.hardware.cpu_capability`: the CPU model, PyTorch's SIMD level
    and whether bf16 is native, so that numbers from different machines are never compared blindly.
    """
    from ..training.hardware import cpu_capability

    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "cpu": cpu_capability(),
    }
    if device is not None and torch.device(device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda_version"] = torch.version.cuda
    return env


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
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=True) + "\n")
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
