"""Attention: the lecture's "Standard Attention" and "Multi-Head Attention".

Standard (scaled dot-product) attention lets each query find the relevant
information in a set of key/value pairs:

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Multi-head attention runs h such attentions side by side on learned
projections of the same inputs and mixes their results:

    MultiHead(Q, K, V) = Concat(head_1, …, head_h) Wᴼ,
    head_i = Attention(Q W_iᑫ, K W_iᴷ, V W_iⱽ)

Self-attention is the case Q = K = V = X (every token is a query and a key);
cross-attention takes queries from the decoder and keys/values from the
encoder's output ("memory").

Mask convention (the one used everywhere in attnlab)
----------------------------------------------------
A **boolean mask means True = may attend** — the convention of
``torch.nn.functional.scaled_dot_product_attention``. A float mask (``bias``)
is *added* to the scores (ALiBi, relative-position bias). Masks broadcast
against the scores ``(B, H, Lq, Lk)``. A query row whose keys are all masked
yields zero output and zero weights, never NaN, in forward and backward.
``torch.nn`` modules use the opposite boolean convention (True = ignore);
:mod:`attnlab.inspection.interop` converts at that boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "scaled_dot_product_attention",
    "AdditiveAttention",
    "MultiHeadAttention",
    "AttentionCache",
    "padding_mask",
    "causal_mask",
    "combine_masks",
]


# --------------------------------------------------------------------------- masks


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Key mask for padded batches: True where a token is real.

    >>> padding_mask(torch.tensor([[5, 6, 0]]), pad_id=0).shape
    torch.Size([1, 1, 1, 3])
    """
    return (tokens != pad_id)[:, None, None, :]  # (B, 1, 1, Lk)


def causal_mask(length: int, key_length: int | None = None, *, offset: int = 0, device=None) -> Tensor:
    """Mask that lets query i see keys 0..offset+i (the decoder's "no peeking").

    ``offset`` is the number of keys already cached before the first query.

    >>> causal_mask(3).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    key_length = length + offset if key_length is None else key_length
    query_pos = torch.arange(length, device=device)[:, None] + offset  # (Lq, 1)
    key_pos = torch.arange(key_length, device=device)[None, :]  # (1, Lk)
    return key_pos <= query_pos  # (Lq, Lk)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of boolean masks (None entries are ignored), broadcasting shapes."""
    result = None
    for mask in masks:
        if mask is None:
            continue
        _check_bool_mask(mask)
        result = mask if result is None else result & mask
    return result


def _check_bool_mask(mask: Tensor) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}; "
            "pass additive float masks as `bias=`"
        )


# --------------------------------------------------------------------------- standard attention


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ / √d_k + bias, masked) v, written out so the weights can be seen.

    Shapes: q (..., Lq, d_k), k (..., Lk, d_k), v (..., Lk, d_v);
    ``mask`` (bool, True = may attend) and ``bias`` (float, added) broadcast to
    (..., Lq, Lk). Returns ``(out (..., Lq, d_v), weights (..., Lq, Lk))``; the
    weights are those before dropout, each row sums to 1 (or is all zero when
    every key of that row is masked).

    >>> q = k = v = torch.randn(2, 5, 8)
    >>> out, weights = scaled_dot_product_attention(q, k, v)
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"query and key must share their last dimension d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"key and value must have the same length, got {k.shape[-2]} and {v.shape[-2]}")
    # Scaling q (Lq × d_k) rather than the scores (Lq × Lk) is cheaper once Lk > d_k,
    # and it makes q contiguous for the matmul in the same pass.
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (..., Lq, Lk)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        _check_bool_mask(mask)
        # A finite "minus infinity" keeps fully-masked rows finite (uniform), and
        # multiplying by the mask afterwards makes masked weights exactly zero.
        # In place when shapes allow: nothing autograd saved needs the raw scores.
        fill = torch.finfo(scores.dtype).min
        if torch.broadcast_shapes(mask.shape, scores.shape) == scores.shape:
            scores = scores.masked_fill_(~mask, fill)
        else:  # the mask adds batch dimensions
            scores = scores.masked_fill(~mask, fill)
    weights = torch.softmax(scores, dim=-1)  # (..., Lq, Lk)
    if mask is not None:
        weights = weights * mask
    attended = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    return attended @ v, weights  # (..., Lq, d_v), (..., Lq, Lk)


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None,
                     dropout_p: float, is_causal: bool) -> Tensor:
    """The same computation through PyTorch's fused kernel (no weights kept)."""
    if mask is None and bias is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal)
    attn_bias = bias
    if mask is not None:
        # Bool masks become additive with a finite minimum so that fully masked
        # rows stay finite; their output is zeroed below, as in the explicit path.
        neg = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, torch.finfo(q.dtype).min)
        attn_bias = neg if attn_bias is None else (attn_bias + neg).clamp(min=torch.finfo(q.dtype).min)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=dropout_p)
    if mask is not None:
        out = out * mask.any(dim=-1, keepdim=True)  # rows with no visible key -> 0
    return out


# --------------------------------------------------------------------------- additive attention


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: the "standard attention" decoder step.

        score(q, k) = wᵥᵀ tanh(W_q q + W_k k),   α = softmax(score),   c = Σ α v

    The decoder's state is the query; the encoder's outputs are keys and values.

    >>> attn = AdditiveAttention(query_dim=16, key_dim=16, hidden_dim=32)
    >>> context, weights = attn(torch.randn(2, 1, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 16))
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, *, dropout: float = 0.0):
        super().__init__()
        self.q_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.k_proj = nn.Linear(key_dim, hidden_dim, bias=False)
        self.score = nn.Linear(hidden_dim, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # query (B, Lq, Dq), key (B, Lk, Dk), value (B, Lk, Dv); mask broadcasts to (B, Lq, Lk)
        features = torch.tanh(self.q_proj(query)[:, :, None, :] + self.k_proj(key)[:, None, :, :])  # (B, Lq, Lk, Dh)
        scores = self.score(features).squeeze(-1)  # (B, Lq, Lk)
        if mask is not None:
            _check_bool_mask(mask)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights * mask
        return self.dropout(weights) @ value, weights  # (B, Lq, Dv), (B, Lq, Lk)


# --------------------------------------------------------------------------- multi-head attention


@dataclass
class AttentionCache:
    """Keys and values kept between decoding steps for one attention layer.

    Self-attention appends the new step's keys/values; cross-attention
    (``static=True``) computes them from the encoder memory once and reuses them.

    >>> cache = AttentionCache()
    >>> key, value = cache.update(torch.randn(2, 4, 1, 8), torch.randn(2, 4, 1, 8))  # step 1: (2, 4, 1, 8)
    """

    key: Tensor | None = None  # (B, H, L, d_head)
    value: Tensor | None = None  # (B, H, L, d_head)
    static: bool = False

    @property
    def length(self) -> int:
        return 0 if self.key is None else self.key.shape[2]

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Keep this call's keys/values and return every key/value the layer may attend to.

        Self-attention appends them to the earlier steps' (B, H, L + L_new, d_head);
        a static (cross-attention) cache stores the memory's (B, H, Ls, d_head) as they are.
        """
        if not self.static and self.key is not None:
            key = torch.cat([self.key, key], dim=2)  # (B, H, L + L_new, d_head)
            value = torch.cat([self.value, value], dim=2)
        self.key, self.value = key, value
        return key, value

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search keeps the surviving hypotheses)."""
        if self.key is not None:
            self.key = self.key.index_select(0, index)
            self.value = self.value.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with per-head weights available on request.

    ``forward(query, key, value, mask=None, *, need_weights=False, cache=None)``
    takes batch-first tensors (B, L, d_model) and returns ``out`` or, when
    ``need_weights``, ``(out, weights)`` with weights (B, H, Lq, Lk) per head,
    never averaged. Without weights the fused kernel runs; with them the
    explicit formula runs; both agree to 1e-5.

    ``positional`` (a :class:`attnlab.core.positional.PositionalEncoding`) may rotate
    queries/keys (RoPE) or bias the scores (ALiBi); ``is_causal`` adds the
    decoder's causal mask. ``record`` — set by :func:`attnlab.inspection.record.record_attention`
    — receives the weights of every call. ``kind`` says where the layer sits —
    ``encoder_self``, ``decoder_self`` or ``cross``, set by the block that builds it,
    or ``attention`` for one standing alone — and names its maps in a recording.

    >>> mha = MultiHeadAttention(d_model=64, num_heads=8)
    >>> x = torch.randn(2, 10, 64)
    >>> out, weights = mha(x, x, x, need_weights=True)   # weights: (2, 8, 10, 10)
    """

    def __init__(self, d_model: int, num_heads: int, *, dropout: float = 0.0, bias: bool = True,
                 kind: str = "attention"):
        super().__init__()
        if num_heads < 1 or d_model % num_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by num_heads ({num_heads}); "
                f"allowed num_heads: {[h for h in range(1, d_model + 1) if d_model % h == 0][:12]}"
            )
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.kind = kind
        self.record: Callable[[Tensor], None] | None = None

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, d_head)

    def _project_qkv(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if query is key and key is value:
            # Self-attention: one matmul for all three projections, as torch.nn does.
            weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # (3D, D)
            bias = None if self.q_proj.bias is None else torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
            return F.linear(query, weight, bias).chunk(3, dim=-1)
        return self.q_proj(query), self.k_proj(key), self.v_proj(value)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        *,
        need_weights: bool = False,
        cache: AttentionCache | None = None,
        is_causal: bool = False,
        positional=None,
    ):
        self._check_inputs(query, key, value, mask)
        batch, query_len, _ = query.shape
        offset = 0 if cache is None or cache.static else cache.length  # keys cached before this call's queries

        # 1. Project (Q = query·Wᑫ, K = key·Wᴷ, V = value·Wⱽ) and 2. split into H heads of d_head.
        if cache is not None and cache.static and cache.length:  # cross-attention: memory projected at step 1
            q, k, v = self._split_heads(self.q_proj(query)), cache.key, cache.value  # (B, H, L, d_head)
        else:
            q, k, v = (self._split_heads(t) for t in self._project_qkv(query, key, value))  # (B, H, L, d_head)
            if cache is not None:
                k, v = cache.update(k, v)  # every key so far: (B, H, offset + Lk, d_head)

        # 3. Attend: softmax(Q Kᵀ / √d_head) V in every head at once.
        out, weights = self._attend(q, k, v, mask, offset=offset, is_causal=is_causal, positional=positional,
                                    need_weights=need_weights)  # (B, H, Lq, d_head), (B, H, Lq, Lk) or None

        # 4. Merge the heads and mix them: Concat(head_1, …, head_h) Wᴼ.
        out = out.transpose(1, 2).reshape(batch, query_len, self.d_model)  # (B, Lq, H·d_head)
        out = self.out_proj(out)  # (B, Lq, d_model)
        return (out, weights) if need_weights else out

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None) -> None:
        if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
            raise ValueError(
                f"query, key and value must be (batch, length, d_model); got shapes "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        if query.shape[-1] != self.d_model or key.shape[-1] != self.d_model or value.shape[-1] != self.d_model:
            raise ValueError(
                f"last dimension of query/key/value must be d_model={self.d_model}; got "
                f"{query.shape[-1]}, {key.shape[-1]}, {value.shape[-1]}"
            )
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(
                f"batch and length must match: query {tuple(query.shape)}, key {tuple(key.shape)}, "
                f"value {tuple(value.shape)}"
            )
        if mask is not None:
            _check_bool_mask(mask)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *, offset: int, is_causal: bool,
                positional, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """Attention of split heads q (B, H, Lq, d_head) over k, v (B, H, Lk, d_head).

        Positions enter here (RoPE rotates q and k, ALiBi adds a bias); the explicit
        formula runs when the weights are wanted (asked for, or recorded), the fused
        kernel otherwise.
        """
        query_len, key_len = q.shape[2], k.shape[2]
        bias = None
        if positional is not None:
            q, k = positional.rotate_qk(q, k, query_offset=offset)
            bias = positional.score_bias(query_len, key_len, query_offset=offset, device=q.device, dtype=q.dtype)
        explicit = need_weights or self.record is not None
        if is_causal and (offset > 0 or mask is not None or bias is not None or explicit):
            # The fused kernel's own causal flag assumes no cache and no other mask: spell the mask out.
            mask = combine_masks(mask, causal_mask(query_len, key_len, offset=offset, device=q.device))
            is_causal = False
        dropout_p = self.dropout if self.training else 0.0
        if not explicit:
            return _fused_attention(q, k, v, mask, bias, dropout_p, is_causal), None
        out, weights = scaled_dot_product_attention(q, k, v, mask, bias=bias, dropout_p=dropout_p)
        if self.record is not None:
            self.record(weights.detach())
        return out, weights
