"""Attention forward+backward: attnlab vs torch.nn.MultiheadAttention vs raw SDPA."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from .timing import BenchResult, compare, peak_memory_mib, ratio, synchronized


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


def _attention_candidates(batch: int, length: int, num_heads: int, head_dim: int, seed: int = 0,
                          device: str | torch.device = "cpu") -> tuple[dict[str, Callable[[], Any]], Callable[[], None]]:
    """Closures doing forward + backward for each candidate on identical weights and inputs, on ``device``.

    On CUDA each closure waits for the device before it returns, so that host timers measure the work.
    """
    from torch import nn
    import torch.nn.functional as F

    from ..core.attention import MultiHeadAttention

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
    device = torch.device(device)
    if device.type != "cpu":  # the same values as on the CPU (drawn there), moved as leaves
        x, grad_out, grad_heads = (t.detach().to(device).requires_grad_(t.requires_grad) for t in (x, grad_out, grad_heads))
        q_leaf, k_leaf, v_leaf = (t.detach().to(device).requires_grad_() for t in (q_leaf, k_leaf, v_leaf))
        attnlab_mha.to(device)
        torch_mha.to(device)
        in_weight, in_bias, out_weight, out_bias = (nn.Parameter(t.detach().to(device))
                                                    for t in (in_weight, in_bias, out_weight, out_bias))
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
    return {name: synchronized(fn, device) for name, fn in candidates.items()}, clear_grads


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
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Forward + backward of attnlab's MultiHeadAttention against torch.nn and raw SDPA, per length, on ``device``.

    Each row holds the median milliseconds of every candidate in
    :data:`ATTENTION_CANDIDATES`, measured interleaved in this process (at least ``repeats``
    rounds, more — up to ``max_repeats`` — until the slowest candidate has run about
    ``min_time_s`` seconds, judged from the ``warmup`` rounds), and the ratios:
    ``attnlab_vs_torch`` and ``attnlab_vs_raw`` are speeds (other time / attnlab time,
    > 1 means attnlab is faster); ``explicit_vs_fused`` is a time ratio (explicit / fused).
    With ``memory``, ``*_peak_mib`` columns give each candidate's extra peak RSS
    (on CUDA: extra peak allocated device memory).
    """
    device = torch.device(device)
    rows = []
    for length in lengths:
        candidates, clear_grads = _attention_candidates(batch, length, num_heads, head_dim, device=device)
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
                row[name.replace("_ms", "_peak_mib")] = peak_memory_mib(fn, device)
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
                "device": str(device),
                "pass": "forward + backward, self-attention, no mask, training mode, dropout 0"},
        rows=rows,
    )
