"""Positional encoding: the lecture's "Positional Encoding (PE)".

Self-attention alone is blind to order: permute the tokens and the outputs
are permuted the same way (it is permutation-*equivariant*). A positional
encoding injects order. Encodings differ in *where* they act, and each kind
declares it, so the model calls the same three hooks for every kind:

==============  ======================  ==========================================
name            acts on                 formula
==============  ======================  ==========================================
``sinusoidal``  embeddings (added)      PE(pos, 2i) = sin(pos / 10000^(2i/d)),
                                        PE(pos, 2i+1) = cos(pos / 10000^(2i/d))
``learned``     embeddings (added)      a trained table P[pos], one row per position
``none``        nothing                 (order-blind; useful as a control)
``rope``        queries and keys        rotate each pair (x₂ᵢ, x₂ᵢ₊₁) by pos·θᵢ,
                                        θᵢ = 10000^(-2i/d_head)  (Su et al., 2021)
``alibi``       attention scores        score += -mᵢ · |q_pos - k_pos|, one slope mᵢ
                                        per head  (Press et al., 2022)
==============  ======================  ==========================================

Note that ALiBi's symmetric distance penalty cannot tell a sequence from its
mirror image in a bidirectional encoder (|i - j| is unchanged by reversal);
an end-of-sequence token on the source breaks the tie.

Sinusoidal, RoPE and ALiBi work at any length; a learned table refuses
positions past its ``max_len``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "PositionalEncoding",
    "SinusoidalEncoding",
    "LearnedEncoding",
    "NoEncoding",
    "RotaryEncoding",
    "ALiBi",
    "positional_encoding",
    "POSITIONAL_ENCODINGS",
    "sinusoidal_table",
    "alibi_slopes",
]


class PositionalEncoding(nn.Module):
    """One interface for every kind: three hooks that default to "do nothing".

    ``acts_on`` is ``"embeddings"``, ``"qk"``, ``"scores"`` or ``"nothing"``.
    """

    acts_on = "nothing"
    max_len: int | None = None

    def add_to_embeddings(self, x: Tensor, offset: int = 0) -> Tensor:
        """x (B, L, d_model) at positions offset..offset+L-1 → x with positions added."""
        return x

    def rotate_qk(self, q: Tensor, k: Tensor, *, query_offset: int = 0) -> tuple[Tensor, Tensor]:
        """q (B, H, Lq, d_head), k (B, H, Lk, d_head); queries sit at query_offset.., keys at 0.."""
        return q, k

    def score_bias(self, query_len: int, key_len: int, *, query_offset: int = 0, device=None, dtype=None) -> Tensor | None:
        """An additive bias (H, Lq, Lk) for the attention scores, or None."""
        return None

    def encoding_matrix(self, length: int) -> Tensor | None:
        """The (length, d_model) matrix added to embeddings, for plots; None if not additive."""
        return None


def sinusoidal_table(length: int, d_model: int, *, offset: int = 0, dtype=torch.float32) -> Tensor:
    """The paper's fixed encoding (Vaswani et al., 2017, §3.5) as a (length, d_model) matrix."""
    position = torch.arange(offset, offset + length, dtype=torch.float64)[:, None]  # (L, 1)
    inv_freq = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (⌈d/2⌉,)
    angles = position * inv_freq  # (L, ⌈d/2⌉)
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return table.to(dtype)


class SinusoidalEncoding(PositionalEncoding):
    """Fixed sin/cos encoding, added to the (scaled) embeddings; any length."""

    acts_on = "embeddings"

    def __init__(self, d_model: int, max_len: int = 512):
        super().__init__()
        self.d_model = d_model
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)  # (max_len, d)

    def add_to_embeddings(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.shape[1]
        if end > self.table.shape[0]:  # grow the cached table; the formula has no limit
            self.table = sinusoidal_table(max(end, 2 * self.table.shape[0]), self.d_model).to(self.table.device)
        return x + self.table[offset:end].to(x.dtype)

    def encoding_matrix(self, length: int) -> Tensor:
        return sinusoidal_table(length, self.d_model)


class LearnedEncoding(PositionalEncoding):
    """A trained table of ``max_len`` position vectors (as in BERT and GPT-2)."""

    acts_on = "embeddings"

    def __init__(self, d_model: int, max_len: int = 512):
        super().__init__()
        self.max_len = max_len
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=0.02)

    def add_to_embeddings(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.shape[1]
        if end > self.max_len:
            raise ValueError(
                f"sequence of {end} positions exceeds the learned positional encoding's max_len={self.max_len}; "
                "shorten the input or train with a larger max_len (sinusoidal, rope and alibi have no limit)"
            )
        positions = torch.arange(offset, end, device=x.device)
        return x + self.table(positions).to(x.dtype)

    def encoding_matrix(self, length: int) -> Tensor:
        return self.table.weight[: min(length, self.max_len)].detach().float().cpu()


class NoEncoding(PositionalEncoding):
    """No positional information at all: the order-blind control."""


class RotaryEncoding(PositionalEncoding):
    """Rotary position embedding: rotate q and k so that q·k depends on the offset only.

    Each pair of features (x₂ᵢ, x₂ᵢ₊₁) at position p is rotated by the angle p·θᵢ;
    rotating q at m and k at n by their angles gives q·k a dependence on m - n alone.
    """

    acts_on = "qk"

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rope needs an even head dimension (d_model / num_heads), got {head_dim}")
        self.head_dim = head_dim
        self.register_buffer(
            "inv_freq", base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim), persistent=False
        )  # (d_head/2,)

    def _rotate(self, x: Tensor, offset: int) -> Tensor:
        positions = torch.arange(offset, offset + x.shape[-2], device=x.device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq  # (L, d_head/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]  # (B, H, L, d_head/2) each
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # (B, H, L, d_head/2, 2)
        return rotated.flatten(-2)  # (B, H, L, d_head), pairs interleaved back

    def rotate_qk(self, q: Tensor, k: Tensor, *, query_offset: int = 0) -> tuple[Tensor, Tensor]:
        return self._rotate(q, query_offset), self._rotate(k, 0)


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi's head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), …

    For a head count that is not a power of two, the paper takes the slopes of
    the closest smaller power of two and fills up with every other slope of
    the next power of two.
    """

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = power_of_two_slopes(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two_slopes(closest) + power_of_two_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes)


class ALiBi(PositionalEncoding):
    """Attention with linear biases: no embedding change, a distance penalty per head."""

    acts_on = "scores"

    def __init__(self, num_heads: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)  # (H,)

    def score_bias(self, query_len: int, key_len: int, *, query_offset: int = 0, device=None, dtype=None) -> Tensor:
        query_pos = torch.arange(query_offset, query_offset + query_len, device=device)[:, None]
        key_pos = torch.arange(key_len, device=device)[None, :]
        distance = (query_pos - key_pos).abs().to(dtype or torch.float32)  # (Lq, Lk)
        return -self.slopes.to(device=device, dtype=distance.dtype)[:, None, None] * distance  # (H, Lq, Lk)


POSITIONAL_ENCODINGS = ("sinusoidal", "learned", "none", "rope", "alibi")


def positional_encoding(name: str, d_model: int, max_len: int = 512, *, num_heads: int | None = None) -> PositionalEncoding:
    """Build a positional encoding by name.

    >>> pe = positional_encoding("sinusoidal", d_model=64)
    >>> pe.add_to_embeddings(torch.zeros(1, 10, 64)).shape
    torch.Size([1, 10, 64])
    """
    if name not in POSITIONAL_ENCODINGS:
        raise ValueError(f"unknown pos_encoding {name!r}; allowed: {', '.join(POSITIONAL_ENCODINGS)}")
    if name in ("rope", "alibi") and num_heads is None:
        raise ValueError(f"pos_encoding {name!r} needs num_heads")
    if name == "sinusoidal":
        return SinusoidalEncoding(d_model, max_len)
    if name == "learned":
        return LearnedEncoding(d_model, max_len)
    if name == "rope":
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        return RotaryEncoding(d_model // num_heads)
    if name == "alibi":
        return ALiBi(num_heads)
    return NoEncoding()
