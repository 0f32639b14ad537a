"""Where and how a step runs: the device, the precision (bf16 autocast), and the allocator.

bf16 is only fast where the hardware computes in it: CUDA cards with bf16 support, and CPUs with
AVX-512 bf16 or AMX. Elsewhere PyTorch emulates it (measured on an AVX2-only CPU: a matmul about
50× slower than fp32), so ``auto`` never picks it there and an explicit ``bf16`` warns once.
:func:`cpu_capability` records what was decided from, for run results and benchmark JSON.

    >>> device = resolve_device("auto")                 # cuda, else mps, else cpu
    >>> with autocast(device, resolve_precision("auto", device)): ...
"""

from __future__ import annotations

import platform
import sys
from contextlib import nullcontext

import torch

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision", "autocast", "keep_freed_memory", "cpu_capability"]

PRECISIONS = ("fp32", "bf16", "auto")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute in bf16
REPORTED_FLAGS = ("avx2", "avx512f", *NATIVE_BF16_FLAGS)

_warned_emulated_bf16 = False  # the emulated-bf16 warning is printed once per process


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda, else mps, else cpu; a named device that is missing is a ``ValueError``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available in this PyTorch build")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but MPS is not available")
    return torch.device(name)


def _read_cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("", set()) where there is none (not Linux)."""
    model, flags = "", None
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and flags is None:
                    flags = set(value.split())
                if model and flags is not None:
                    break
    except OSError:
        pass
    return model, flags or set()


# PyTorch kernel levels below AVX-512: bf16 runs emulated there even on a CPU that has the
# instructions (ATEN_CPU_CAPABILITY=avx2 restricts a newer CPU to them; measured 0.4 GFLOP/s bf16 vs 73 fp32)
_BELOW_AVX512 = ("DEFAULT", "NO AVX", "AVX", "AVX2")


def _cpu_has_native_bf16() -> bool:
    if torch.backends.cpu.get_cpu_capability() in _BELOW_AVX512:
        return False
    return bool(_read_cpuinfo()[1] & set(NATIVE_BF16_FLAGS))


def cpu_capability() -> dict:
    """What this CPU offers a training step, so that timings from different machines are never compared blindly.

    ``torch_capability`` is the SIMD level PyTorch's CPU kernels dispatch to
    (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512, …);
    ``flags`` are the /proc/cpuinfo flags the precision choice reads;
    ``native_bf16`` is that choice: bf16 autocast computes natively (AVX-512 bf16 or AMX, and
    PyTorch's kernels dispatched at AVX-512 or above).

        >>> cpu_capability()["native_bf16"]
        True
    """
    model, flags = _read_cpuinfo()
    return {"model": model or platform.processor() or platform.machine(),
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "flags": {name: name in flags for name in REPORTED_FLAGS},
            "native_bf16": _cpu_has_native_bf16()}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` on CUDA cards and CPUs that compute in bf16 natively (AVX-512 bf16, AMX), else ``fp32``.

    Elsewhere bf16 autocast is emulated and slower than fp32, so it is never chosen automatically,
    and asking for it on such a CPU prints one warning per process.

        >>> resolve_precision("auto", torch.device("cpu"))   # on a CPU with AMX
        'bf16'
    """
    if precision == "bf16" and device.type == "cpu" and not _cpu_has_native_bf16():
        _warn_emulated_bf16()
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if _cpu_has_native_bf16() else "fp32"
    return "fp32"


def _warn_emulated_bf16() -> None:
    global _warned_emulated_bf16
    if _warned_emulated_bf16:
        return
    _warned_emulated_bf16 = True
    capability = cpu_capability()
    print(f"warning: precision bf16 is emulated on this CPU ({capability['model']}: no "
          f"{' or '.join(NATIVE_BF16_FLAGS)}) and much slower than fp32; precision auto would pick "
          f"{resolve_precision('auto', torch.device('cpu'))} here", file=sys.stderr)


def autocast(device: torch.device, precision: str):
    """bf16 autocast where asked (CPUs with AVX-512 bf16, CUDA); a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def keep_freed_memory(keep: bool = True) -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the kernel.

    A training step allocates and frees the same large tensors (activations,
    logits, attention scores) every time. By default glibc serves blocks over
    32 MiB with fresh ``mmap``s and gives freed heap tops back, so every step
    page-faults ~250 MiB of new zeroed pages (measured: 66,000 minor faults and
    0.1 s of kernel time per step of the corpus-preset model on this CPU). With
    large thresholds the pages are reused: ~2,000 faults, no kernel time. The
    cost is a resident size that stays at the training peak. ``keep=False``
    puts glibc's default thresholds (128 KiB) back when training ends. Linux/glibc
    only; returns whether the setting took effect.
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
        mmap_threshold, trim_threshold = ((1 << 30), (1 << 31) - 1) if keep else (128 * 1024, 128 * 1024)
        return bool(libc.mallopt(m_mmap_threshold, mmap_threshold) and libc.mallopt(m_trim_threshold, trim_threshold))
    except (OSError, AttributeError):  # musl, or no libc.so.6
        return False
