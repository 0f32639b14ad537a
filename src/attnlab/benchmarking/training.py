"""A full training step: attnlab Transformer vs torch.nn.Transformer, and the matmul peak behind MFU."""

from __future__ import annotations

import math
import resource
import time
from typing import Any, Callable, Mapping, Sequence

import torch

from .timing import BenchResult, compare, peak_memory_mib, ratio


# --------------------------------------------------------------------------- matmul peak (the MFU denominator)


def matmul_gflops(dtype: torch.dtype = torch.float32, *, size: int = 1024, repeats: int = 10,
                  device: str | torch.device = "cpu", max_seconds: float | None = None) -> float:
    """This machine's measured (size × size) @ (size × size) throughput in GFLOP/s: best of ``repeats``.

    The best, not the median, because it is a ceiling: the most the matmul
    kernels delivered here, with the threads PyTorch uses now. ``max_seconds``
    stops the repeats early (after at least one) once they have taken that long:
    an emulated bf16 matmul is ~50× slower than fp32.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)  # random, never zeros: zeros run faster
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b  # warm-up
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if max_seconds is not None and spent >= max_seconds:
            break
    return 2 * size**3 / best / 1e9


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bf16 matmuls natively (CUDA with bf16, CPUs with AVX-512 bf16 or AMX).

    Elsewhere bf16 is emulated, on the fp32 units: a bf16 step's hardware limit is then the fp32 rate.
    """
    from ..training.hardware import resolve_precision

    return resolve_precision("auto", torch.device(device)) == "bf16"


def achieved_gflops(flops: float, seconds: float) -> float:
    """Model GFLOP/s of a step of ``flops`` that took ``seconds``."""
    return flops / seconds / 1e9


# --------------------------------------------------------------------------- training-step benchmark


class TorchSeq2Seq(torch.nn.Module):
    """The reference: ``torch.nn.Transformer`` with the embeddings, positions and output layer it lacks.

    Built from a :class:`~attnlab.core.model.TransformerConfig`, it has the same sizes and the
    same number of parameters as attnlab's ``Transformer`` with ``final_norm=True``
    (``nn.Transformer`` always ends each stack with a LayerNorm), and follows the config's
    ``norm_first``, ``activation``, ``share_embeddings`` and ``tie_embeddings``. Embeddings are
    scaled by √d_model, drawn from N(0, 1/d_model) like attnlab's, plus the sinusoidal table:

        logits = generator(nn.Transformer(dropout(E_src[src]·√d + PE), dropout(E_tgt[tgt]·√d + PE)))

    It offers attnlab's ``encode`` / ``decode`` / ``new_cache`` (None: it recomputes the prefix),
    so attnlab's decoders and :func:`attnlab.training.evaluation.evaluate` run on it unchanged.

    >>> from attnlab import TransformerConfig
    >>> model = TorchSeq2Seq(TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=16, num_heads=2))
    >>> model(torch.randint(1, 20, (2, 7)), torch.randint(1, 20, (2, 5))).shape  # (B, Lt, V)
    torch.Size([2, 5, 20])
    """

    def __init__(self, config):
        from torch import nn

        from ..core.positional import sinusoidal_table

        super().__init__()
        self.config = config
        self.src_embed = self._embedding(config.src_vocab_size)
        self.tgt_embed = self.src_embed if config.share_embeddings else self._embedding(config.tgt_vocab_size)
        self.register_buffer("positions", sinusoidal_table(config.max_len, config.d_model), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.transformer = nn.Transformer(config.d_model, config.num_heads, config.num_encoder_layers,
                                          config.num_decoder_layers, config.d_ff, config.dropout,
                                          activation=config.activation, layer_norm_eps=config.layer_norm_eps,
                                          batch_first=True, norm_first=config.norm_first)
        self.generator = nn.Linear(config.d_model, config.tgt_vocab_size)
        if config.tie_embeddings:
            self.generator.weight = self.tgt_embed.weight

    def _embedding(self, vocab_size: int) -> torch.nn.Embedding:
        embedding = torch.nn.Embedding(vocab_size, self.config.d_model, padding_idx=self.config.pad_id)
        torch.nn.init.normal_(embedding.weight, std=self.config.d_model**-0.5)  # unit variance after × √d
        return embedding

    def _embed(self, embedding: torch.nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        scaled = embedding(tokens) * math.sqrt(self.config.d_model)  # (B, L, D)
        return self.dropout(scaled + self.positions[: tokens.shape[1]])

    def source_mask(self, src: torch.Tensor) -> torch.Tensor:
        """Source ids (B, Ls) → attnlab's key mask (B, 1, 1, Ls), True = real token."""
        from ..core.attention import padding_mask

        return padding_mask(src, self.config.pad_id)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids (B, Ls) → memory (B, Ls, D); ``src_mask`` defaults to :meth:`source_mask`."""
        src_mask = self.source_mask(src) if src_mask is None else src_mask
        return self.transformer.encoder(self._embed(self.src_embed, src),
                                        src_key_padding_mask=_ignored_keys(src_mask, src.shape))

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None, *,
               cache=None) -> torch.Tensor:
        """Target ids (B, Lt) and memory (B, Ls, D) → logits (B, Lt, V); causal, the whole prefix every call."""
        target = self._embed(self.tgt_embed, tgt)  # (B, Lt, D)
        causal = torch.nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device,
                                                                     dtype=target.dtype)  # (Lt, Lt), -inf above
        hidden = self.transformer.decoder(target, memory, tgt_mask=causal, tgt_is_causal=True,
                                          memory_key_padding_mask=_ignored_keys(memory_mask, memory.shape[:2]))
        return self.generator(hidden)  # (B, Lt, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        src_mask = self.source_mask(src)
        return self.decode(tgt, self.encode(src, src_mask), src_mask)

    def new_cache(self) -> None:
        return None

    @staticmethod
    def reorder_cache(cache, index: torch.Tensor) -> None:
        """Nothing to reorder: there is no cache."""


def _ignored_keys(mask: torch.Tensor | None, shape) -> torch.Tensor | None:
    """attnlab's key mask (B, 1, 1, Ls), True = real token → torch.nn's key padding mask (B, Ls), True = ignore."""
    return None if mask is None else ~mask.reshape(*shape)


def random_batch(batch: int, src_len: int, tgt_len: int, vocab_size: int, *, seed: int = 0, device="cpu"):
    """A padded training :class:`~attnlab.data.Batch` of random ids: lengths uniform in [L/2, L]."""
    from ..data import Batch, PAD_ID

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


def attnlab_train_step(config, batch, precision: str, device: str | torch.device = "cpu", *,
                       compile_model: bool = False) -> tuple[Callable[[], None], int]:
    """One full training step of attnlab's ``Transformer`` as a zero-argument callable, and its parameter count.

    The trainer's own :func:`attnlab.training.train_step` (forward, label-smoothed
    loss, backward, clipping at 1.0, fused AdamW) on ``batch``, in ``precision``
    (``fp32``, or ``bf16`` autocast). The model has ``final_norm=True``, as in the
    comparison with ``torch.nn.Transformer``. The callable reads the loss back
    (``.item()``), so on CUDA it returns only when the step has finished.
    """
    from ..core.model import Transformer, TransformerConfig
    from ..training.config import TrainConfig
    from ..training.trainer import make_optimizer, train_step

    device = torch.device(device)
    train_config = TrainConfig(steps=1, lr=1e-4, label_smoothing=0.1, grad_clip=1.0, precision=precision)
    config = TransformerConfig.from_dict({**config.to_dict(), "final_norm": True})
    torch.manual_seed(0)
    model = Transformer(config).to(device).train()
    optimizer = make_optimizer(model, train_config, device)
    stepped = torch.compile(model) if compile_model else model

    def step() -> None:
        train_step(stepped, optimizer, batch, lr=1e-4, label_smoothing=0.1, grad_clip=1.0, precision=precision,
                   device=device).item()

    return step, sum(p.numel() for p in model.parameters())


def compile_benchmark(config, batch, precision: str = "fp32", device: str | torch.device = "cpu", *,
                      warmup: int = 1, repeats: int = 6) -> dict[str, float]:
    """Eager vs ``torch.compile``'d :func:`attnlab_train_step` on ``batch``, timed interleaved after compilation.

    Returns ``{"compile_s": the first compiled call (it compiles), "eager_ms", "compiled_ms": medians,
    "speedup": eager_ms / compiled_ms}`` (> 1: the compiled step is faster).

    >>> compile_benchmark(config, random_batch(8, 24, 24, 8000), repeats=1)["speedup"] > 0
    True
    """
    eager, _ = attnlab_train_step(config, batch, precision, device)
    compiled, _ = attnlab_train_step(config, batch, precision, device, compile_model=True)
    started = time.perf_counter()
    compiled()
    compile_s = time.perf_counter() - started
    timings = compare({"eager": eager, "compiled": compiled}, warmup=warmup, repeats=repeats)
    eager_ms, compiled_ms = timings["eager"].median_ms, timings["compiled"].median_ms
    return {"compile_s": compile_s, "eager_ms": eager_ms, "compiled_ms": compiled_ms,
            "speedup": ratio(eager_ms, compiled_ms)}


def _train_step_candidates(config, batch, precision: str, device: torch.device):
    import torch.nn.functional as F

    from ..data import PAD_ID
    from ..core.model import TransformerConfig
    from ..training.config import TrainConfig
    from ..training.hardware import autocast
    from ..training.trainer import make_optimizer

    train_config = TrainConfig(steps=1, lr=1e-4, label_smoothing=0.1, grad_clip=1.0, precision=precision)
    attnlab_step, our_count = attnlab_train_step(config, batch, precision, device)
    config = TransformerConfig.from_dict({**config.to_dict(), "final_norm": True})
    torch.manual_seed(0)
    theirs = TorchSeq2Seq(config).to(device).train()
    their_opt = make_optimizer(theirs, train_config, device)

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

    counts = (our_count, sum(p.numel() for p in theirs.parameters()))
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
    > 1: attnlab faster), target tokens/s, achieved model GFLOP/s
    (:func:`model_flops_per_step` / time) and model FLOP utilisation (that /
    this machine's measured matmul GFLOP/s in that precision where it is
    native, else in fp32: ``mfu_against``). The default config is the corpus preset
    (d_model 256, 4 heads, 3 + 3 layers, d_ff 1024, dropout 0.1) with an 8,000-word vocabulary.
    """
    from ..core.model import TransformerConfig
    from ..training.hardware import keep_freed_memory

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
        # the hardware limit of a step: its precision's matmul rate where native, else fp32's (emulated bf16 runs there)
        limit = precision if precision == "fp32" or native_bf16(device) else "fp32"
        for needed in {precision, limit}:
            if needed not in peaks:
                peaks[needed] = matmul_gflops(dtypes[needed], device=device, max_seconds=5.0)
        candidates, (ours, theirs) = _train_step_candidates(config, data, precision, device)
        timings = compare(candidates, warmup=warmup, repeats=repeats)
        row: dict[str, Any] = {"precision": precision, "repeats": repeats}
        for name, timing in timings.items():
            seconds = timing.median_ms / 1e3
            row[f"{name}_ms"] = timing.median_ms
            row[f"{name}_tokens_per_s"] = data.num_tokens / seconds
            row[f"{name}_gflops_per_s"] = achieved_gflops(flops, seconds)
            row[f"{name}_mfu"] = row[f"{name}_gflops_per_s"] / peaks[limit]
        row["attnlab_vs_torch"] = ratio(row["torch_ms"], row["attnlab_ms"])
        row["parameters"] = ours
        row["torch_parameters"] = theirs
        row["matmul_gflops"] = peaks[limit]
        row["mfu_against"] = limit
        if memory:
            for name, fn in candidates.items():
                row[f"{name}_peak_mib"] = peak_memory_mib(fn, device)
        for name, fn in candidates.items():  # fresh pages the kernel had to hand out during one step
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            fn()
            row[f"{name}_page_faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        row["samples_ms"] = {name: timing.samples_ms for name, timing in timings.items()}
        rows.append(row)
        if log is not None:
            log(f"train step {precision}: attnlab={row['attnlab_ms']:.1f} ms, torch={row['torch_ms']:.1f} ms, "
                f"ratio {row['attnlab_vs_torch']:.2f}, attnlab {row['attnlab_gflops_per_s']:.1f} GFLOP/s = "
                f"{row['attnlab_mfu']:.0%} of the {limit} matmul rate ({peaks[limit]:.0f} GFLOP/s)")
    keep_freed_memory(False)
    return BenchResult(
        name="train_step",
        description={**TRAIN_STEP_CANDIDATES,
                     "attnlab_vs_torch": "torch time / attnlab time (> 1: attnlab faster; target >= 1.0)",
                     "tokens_per_s": "non-padding target tokens per second",
                     "page_faults": "minor page faults during one step (fresh pages from the kernel)",
                     "gflops_per_s": "model FLOPs per step (all matmuls incl. attention, fwd + bwd, padded "
                                     "positions) / step time",
                     "mfu": "gflops_per_s / the measured matmul GFLOP/s of the same precision where the hardware "
                            "runs it natively, else of fp32 (mfu_against)"},
        config={**config.to_dict(), "batch": batch, "src_len": src_len, "tgt_len": tgt_len,
                "target_tokens": data.num_tokens, "model_flops_per_step": flops, "precisions": list(precisions),
                "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(), "device": str(device),
                "optimizer": "AdamW fused, betas (0.9, 0.98), grad clip 1.0, label smoothing 0.1",
                "malloc_keeps_freed_memory": malloc_tuned},
        rows=rows,
    )
