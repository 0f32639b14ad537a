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
    "matmul_gflops",
    "TorchSeq2Seq",
    "random_batch",
    "model_flops_per_step",
    "TRAIN_STEP_CANDIDATES",
    "train_step_benchmark",
    "decoding_benchmark",
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


# --------------------------------------------------------------------------- matmul peak (the MFU denominator)


def matmul_gflops(dtype: torch.dtype = torch.float32, *, size: int = 1024, repeats: int = 10,
                  device: str | torch.device = "cpu") -> float:
    """This machine's measured (size × size) @ (size × size) throughput in GFLOP/s: best of ``repeats``.

    The best, not the median, because it is a ceiling: the most the matmul
    kernels delivered here, with the threads PyTorch uses now.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# --------------------------------------------------------------------------- training-step benchmark


class TorchSeq2Seq(torch.nn.Module):
    """The reference: ``torch.nn.Transformer`` with the embeddings, positions and output layer it lacks.

    Built from a :class:`~attnlab.model.TransformerConfig` so that it has the
    same sizes, and the same number of parameters, as attnlab's ``Transformer``
    with ``final_norm=True`` (``nn.Transformer`` always ends each stack with a LayerNorm).
    """

    def __init__(self, config):
        from torch import nn

        from .positional import sinusoidal_table

        super().__init__()
        self.config = config
        self.src_embed = nn.Embedding(config.src_vocab_size, config.d_model, padding_idx=config.pad_id)
        self.tgt_embed = nn.Embedding(config.tgt_vocab_size, config.d_model, padding_idx=config.pad_id)
        self.register_buffer("positions", sinusoidal_table(config.max_len, config.d_model), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.transformer = nn.Transformer(config.d_model, config.num_heads, config.num_encoder_layers,
                                          config.num_decoder_layers, config.d_ff, config.dropout,
                                          activation=config.activation, layer_norm_eps=config.layer_norm_eps,
                                          batch_first=True, norm_first=config.norm_first)
        self.generator = nn.Linear(config.d_model, config.tgt_vocab_size)

    def forward(self, src, tgt):
        scale = math.sqrt(self.config.d_model)
        source = self.dropout(self.src_embed(src) * scale + self.positions[: src.shape[1]])  # (B, Ls, D)
        target = self.dropout(self.tgt_embed(tgt) * scale + self.positions[: tgt.shape[1]])  # (B, Lt, D)
        causal = torch.nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device,
                                                                     dtype=source.dtype)  # (Lt, Lt), -inf above
        padding = src == self.config.pad_id  # (B, Ls), torch.nn's convention: True = ignore
        hidden = self.transformer(source, target, tgt_mask=causal, src_key_padding_mask=padding,
                                  memory_key_padding_mask=padding, tgt_is_causal=True)
        return self.generator(hidden)  # (B, Lt, V)


def random_batch(batch: int, src_len: int, tgt_len: int, vocab_size: int, *, seed: int = 0, device="cpu"):
    """A padded training :class:`~attnlab.data.Batch` of random ids: lengths uniform in [L/2, L]."""
    from .data import Batch, PAD_ID

    generator = torch.Generator().manual_seed(seed)

    def padded(length: int, lengths: torch.Tensor) -> torch.Tensor:
        ids = torch.randint(4, vocab_size, (batch, length), generator=generator)  # 0-3 are specials
        return ids.masked_fill(torch.arange(length)[None, :] >= lengths[:, None], PAD_ID)  # (B, L)

    src_lengths = torch.randint(max(1, src_len // 2), src_len + 1, (batch,), generator=generator)
    tgt_lengths = torch.randint(max(1, tgt_len // 2), tgt_len + 1, (batch,), generator=generator)
    tgt = padded(tgt_len + 1, tgt_lengths + 1)  # BOS ... EOS, as the data pipeline builds them
    return Batch(src=padded(src_len, src_lengths).to(device), tgt_in=tgt[:, :-1].to(device),
                 tgt_out=tgt[:, 1:].to(device), num_tokens=int(tgt_lengths.sum()), examples=list(range(batch)))


def model_flops_per_step(config, batch: int, src_len: int, tgt_len: int) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3 × forward) over padded positions.

    Counts every projection, feed-forward, output-layer and attention-score
    matmul at 2 FLOPs per multiply-add; the causal half of the decoder's
    self-attention is counted too, since the kernels compute it.
    """
    d, d_ff = config.d_model, config.d_ff
    src_tokens, tgt_tokens = batch * src_len, batch * tgt_len
    encoder = config.num_encoder_layers * (src_tokens * (4 * d * d + 2 * d * d_ff) + 2 * batch * src_len**2 * d)
    decoder = config.num_decoder_layers * (
        tgt_tokens * (4 * d * d + 2 * d * d + 2 * d * d_ff) + src_tokens * 2 * d * d  # self, cross q/out, FFN; cross k/v
        + 2 * batch * tgt_len**2 * d + 2 * batch * tgt_len * src_len * d)  # self and cross scores + weighted sums
    generator = tgt_tokens * d * config.tgt_vocab_size
    return 3 * 2 * (encoder + decoder + generator)


TRAIN_STEP_CANDIDATES = {
    "attnlab": "attnlab.training.train_step on attnlab's Transformer (the trainer's own step)",
    "torch": "a plain loop over torch.nn.Transformer (+ the same embeddings, positions, output layer): "
             "forward, the same loss, zero_grad, backward, clip_grad_norm_, the same fused AdamW",
}


def _train_step_candidates(config, batch, precision: str, device: torch.device, *, compile_attnlab: bool = False):
    import torch.nn.functional as F

    from .data import PAD_ID
    from .model import Transformer, TransformerConfig
    from .training import TrainConfig, autocast, make_optimizer, train_step

    train_config = TrainConfig(steps=1, lr=1e-4, label_smoothing=0.1, grad_clip=1.0, precision=precision)
    config = TransformerConfig.from_dict({**config.to_dict(), "final_norm": True})
    torch.manual_seed(0)
    ours = Transformer(config).to(device).train()
    theirs = TorchSeq2Seq(config).to(device).train()
    our_opt, their_opt = make_optimizer(ours, train_config, device), make_optimizer(theirs, train_config, device)
    stepped = torch.compile(ours) if compile_attnlab else ours

    def attnlab_step() -> None:
        train_step(stepped, our_opt, batch, lr=1e-4, label_smoothing=0.1, grad_clip=1.0, precision=precision,
                   device=device).item()

    def torch_step() -> None:
        for group in their_opt.param_groups:
            group["lr"] = 1e-4
        with autocast(device, precision):
            logits = theirs(batch.src, batch.tgt_in)  # (B, Lt, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID,
                               label_smoothing=0.1, reduction="sum") / batch.num_tokens
        their_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        their_opt.step()
        loss.item()

    counts = (sum(p.numel() for p in ours.parameters()), sum(p.numel() for p in theirs.parameters()))
    return {"attnlab": attnlab_step, "torch": torch_step}, counts


def train_step_benchmark(
    config=None,
    *,
    batch: int = 64,
    src_len: int = 24,
    tgt_len: int = 24,
    precisions: Sequence[str] = ("fp32", "bf16"),
    warmup: int = 2,
    repeats: int = 10,
    memory: bool = True,
    peak_gflops: Mapping[str, float] | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """A full training step of attnlab's Transformer vs ``torch.nn.Transformer``, same config and batch.

    One row per precision (``fp32``; ``bf16`` = autocast): median ms of each
    candidate (interleaved), ``attnlab_vs_torch`` (torch time / attnlab time,
    > 1: attnlab faster), target tokens/s and model FLOP utilisation
    (:func:`model_flops_per_step` / time / this machine's measured matmul
    GFLOP/s in that precision). The default config is the corpus preset
    (d_model 256, 4 heads, 3 + 3 layers, d_ff 1024, dropout 0.1) with an 8,000-word vocabulary.
    """
    from .model import TransformerConfig
    from .training import keep_freed_memory

    device = torch.device(device)
    config = config or TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000, d_model=256, num_heads=4,
                                         num_encoder_layers=3, num_decoder_layers=3, d_ff=1024, dropout=0.1)
    malloc_tuned = keep_freed_memory()  # as the trainer does; process-wide, so both candidates get it
    data = random_batch(batch, src_len, tgt_len, config.tgt_vocab_size, device=device)
    flops = model_flops_per_step(config, batch, src_len, tgt_len)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = dict(peak_gflops or {})
    rows = []
    for precision in precisions:
        if precision not in peaks:
            peaks[precision] = matmul_gflops(dtypes[precision], device=device)
        candidates, (ours, theirs) = _train_step_candidates(config, data, precision, device)
        timings = compare(candidates, warmup=warmup, repeats=repeats)
        row: dict[str, Any] = {"precision": precision, "repeats": repeats}
        for name, timing in timings.items():
            seconds = timing.median_ms / 1e3
            row[f"{name}_ms"] = timing.median_ms
            row[f"{name}_tokens_per_s"] = data.num_tokens / seconds
            row[f"{name}_mfu"] = flops / seconds / (peaks[precision] * 1e9)
        row["attnlab_vs_torch"] = ratio(row["torch_ms"], row["attnlab_ms"])
        row["parameters"] = ours
        row["torch_parameters"] = theirs
        row["matmul_gflops"] = peaks[precision]
        if memory:
            for name, fn in candidates.items():
                row[f"{name}_peak_mib"] = peak_memory_mib(fn)
        for name, fn in candidates.items():  # fresh pages the kernel had to hand out during one step
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            fn()
            row[f"{name}_page_faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        row["samples_ms"] = {name: timing.samples_ms for name, timing in timings.items()}
        rows.append(row)
        if log is not None:
            log(f"train step {precision}: attnlab={row['attnlab_ms']:.1f} ms, torch={row['torch_ms']:.1f} ms, "
                f"ratio {row['attnlab_vs_torch']:.2f}")
    keep_freed_memory(False)
    return BenchResult(
        name="train_step",
        description={**TRAIN_STEP_CANDIDATES,
                     "attnlab_vs_torch": "torch time / attnlab time (> 1: attnlab faster; target >= 1.0)",
                     "tokens_per_s": "non-padding target tokens per second",
                     "page_faults": "minor page faults during one step (fresh pages from the kernel)",
                     "mfu": "model FLOPs per step (all matmuls incl. attention, fwd + bwd, padded positions) "
                            "/ step time / measured matmul GFLOP/s of the same precision"},
        config={**config.to_dict(), "batch": batch, "src_len": src_len, "tgt_len": tgt_len,
                "target_tokens": data.num_tokens, "model_flops_per_step": flops, "precisions": list(precisions),
                "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(), "device": str(device),
                "optimizer": "AdamW fused, betas (0.9, 0.98), grad clip 1.0, label smoothing 0.1",
                "malloc_keeps_freed_memory": malloc_tuned},
        rows=rows,
    )


# --------------------------------------------------------------------------- decoding benchmark


def decoding_benchmark(
    config=None,
    *,
    batch: int = 8,
    src_len: int = 20,
    new_tokens: int = 64,
    beam_size: int = 4,
    warmup: int = 1,
    repeats: int = 3,
    memory: bool = True,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Greedy decoding with the KV cache vs recomputing the prefix, and beam search, on one model.

    The untrained model's end-of-sentence logit is pushed down so that every
    sentence runs exactly ``new_tokens`` steps. Rows: ``greedy_cached``,
    ``greedy_uncached``, ``beam{K}_cached`` with median ms per call (a batch of
    ``batch`` sources), sentences/s and new tokens/s; ``cache_speedup`` =
    uncached / cached time (target >= 3).
    """
    from .data import EOS_ID
    from .decoding import beam_search, greedy_decode
    from .model import Transformer, TransformerConfig

    device = torch.device(device)
    config = config or TransformerConfig(src_vocab_size=8000, tgt_vocab_size=8000, d_model=256, num_heads=4,
                                         num_encoder_layers=3, num_decoder_layers=3, d_ff=1024, dropout=0.1)
    torch.manual_seed(0)
    model = Transformer(config).to(device).eval()
    with torch.no_grad():
        model.generator.bias[EOS_ID] = -1e4  # never stop early: every call decodes new_tokens tokens
    src = random_batch(batch, src_len, 1, config.src_vocab_size, device=device).src
    beam_name = f"beam{beam_size}_cached"
    candidates = {
        "greedy_cached": lambda: greedy_decode(model, src, max_len=new_tokens, use_cache=True),
        "greedy_uncached": lambda: greedy_decode(model, src, max_len=new_tokens, use_cache=False),
        beam_name: lambda: beam_search(model, src, beam_size=beam_size, max_len=new_tokens, use_cache=True),
    }
    timings = compare(candidates, warmup=warmup, repeats=repeats)
    rows = []
    for name, timing in timings.items():
        seconds = timing.median_ms / 1e3
        row = {"mode": name, "repeats": repeats, "ms": timing.median_ms, "sentences_per_s": batch / seconds,
               "new_tokens_per_s": batch * new_tokens / seconds,
               "peak_mib": peak_memory_mib(candidates[name]) if memory else None, "samples_ms": timing.samples_ms}
        rows.append(row)
    speedup = ratio(timings["greedy_uncached"].median_ms, timings["greedy_cached"].median_ms)
    for row in rows:
        row["cache_speedup"] = speedup if row["mode"] == "greedy_cached" else None
    if log is not None:
        log(f"decoding: cached {timings['greedy_cached'].median_ms:.0f} ms, uncached "
            f"{timings['greedy_uncached'].median_ms:.0f} ms, speedup {speedup:.2f}x")
    return BenchResult(
        name="decoding",
        description={"greedy_cached": "greedy_decode(use_cache=True): one new token per step, keys/values kept",
                     "greedy_uncached": "greedy_decode(use_cache=False): the whole prefix recomputed every step",
                     beam_name: f"beam_search(beam_size={beam_size}, use_cache=True)",
                     "cache_speedup": "greedy uncached time / cached time (target >= 3)"},
        config={**config.to_dict(), "batch": batch, "src_len": src_len, "new_tokens": new_tokens,
                "beam_size": beam_size, "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(),
                "device": str(device)},
        rows=rows,
    )
