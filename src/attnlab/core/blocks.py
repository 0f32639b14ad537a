"""The lecture's "Encoder Block" and "Decoder Block".

Encoder block (post-LN, the paper's and the lecture's order)::

    x → multi-head self-attention → Add & LayerNorm → feed-forward → Add & LayerNorm

Decoder block::

    y → masked multi-head self-attention → Add & LayerNorm
      → encoder–decoder (cross) attention over the memory → Add & LayerNorm
      → feed-forward → Add & LayerNorm

"Add & Norm" is ``LayerNorm(x + Dropout(sublayer(x)))`` (Vaswani et al., 2017,
§5.4). With ``norm_first=True`` each sublayer instead sees a normalised input
and adds its result to an untouched residual stream, ``x + Dropout(sublayer(LayerNorm(x)))``
(pre-LN), which trains more stably in deep stacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from .attention import AttentionCache, MultiHeadAttention

__all__ = ["FeedForward", "EncoderBlock", "DecoderBlock", "LayerCache", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class FeedForward(nn.Module):
    """Position-wise feed-forward network: FFN(x) = W₂ · act(W₁ x + b₁) + b₂."""

    def __init__(self, d_model: int, d_ff: int, *, dropout: float = 0.1, activation: str = "relu"):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.activation = _activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))  # (B, L, d_model)


class _Sublayer(nn.Module):
    """Residual connection with LayerNorm around one sublayer (post-LN or pre-LN)."""

    def __init__(self, d_model: int, *, dropout: float, norm_first: bool, layer_norm_eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, sublayer) -> Tensor:
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))  # pre-LN
        return self.norm(x + self.dropout(sublayer(x)))  # post-LN: Add & LayerNorm


class EncoderBlock(nn.Module):
    """Self-attention and feed-forward, each wrapped in Add & LayerNorm.

    ``causal=True`` makes the self-attention masked (no token sees a later one): the block
    of a decoder-only language model, whose attention is then of kind ``decoder_self``.

    >>> block = EncoderBlock(d_model=64, num_heads=4, d_ff=128)
    >>> block(torch.randn(2, 7, 64)).shape
    torch.Size([2, 7, 64])
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, dropout: float = 0.1, activation: str = "relu",
                 norm_first: bool = False, layer_norm_eps: float = 1e-5, bias: bool = True, causal: bool = False):
        super().__init__()
        self.causal = causal
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, bias=bias,
                                            kind="decoder_self" if causal else "encoder_self")
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.attn_sublayer = _Sublayer(d_model, dropout=dropout, norm_first=norm_first, layer_norm_eps=layer_norm_eps)
        self.ff_sublayer = _Sublayer(d_model, dropout=dropout, norm_first=norm_first, layer_norm_eps=layer_norm_eps)

    def forward(self, x: Tensor, mask: Tensor | None = None, *, positional=None,
                cache: AttentionCache | None = None) -> Tensor:
        # x (B, L, d_model); mask: bool, True = may attend, e.g. padding_mask (B, 1, 1, L)
        x = self.attn_sublayer(
            x, lambda h: self.self_attn(h, h, h, mask, positional=positional, is_causal=self.causal, cache=cache)
        )
        return self.ff_sublayer(x, self.feed_forward)


@dataclass
class LayerCache:
    """The decoding caches of one decoder block: its self- and cross-attention."""

    self_attn: AttentionCache = field(default_factory=AttentionCache)
    cross_attn: AttentionCache = field(default_factory=lambda: AttentionCache(static=True))


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention over the memory, feed-forward.

    >>> block = DecoderBlock(d_model=64, num_heads=4, d_ff=128)
    >>> block(torch.randn(2, 5, 64), torch.randn(2, 7, 64)).shape
    torch.Size([2, 5, 64])
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, dropout: float = 0.1, activation: str = "relu",
                 norm_first: bool = False, layer_norm_eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, bias=bias, kind="decoder_self")
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, bias=bias, kind="cross")
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        sublayer = dict(dropout=dropout, norm_first=norm_first, layer_norm_eps=layer_norm_eps)
        self.self_sublayer = _Sublayer(d_model, **sublayer)
        self.cross_sublayer = _Sublayer(d_model, **sublayer)
        self.ff_sublayer = _Sublayer(d_model, **sublayer)

    def forward(self, y: Tensor, memory: Tensor, memory_mask: Tensor | None = None, *,
                positional=None, cache: LayerCache | None = None) -> Tensor:
        # y (B, Lt, d_model) target so far; memory (B, Ls, d_model) from the encoder;
        # memory_mask (B, 1, 1, Ls) hides source padding; self-attention is always causal.
        self_cache = cache.self_attn if cache is not None else None
        cross_cache = cache.cross_attn if cache is not None else None
        y = self.self_sublayer(
            y, lambda h: self.self_attn(h, h, h, is_causal=True, positional=positional, cache=self_cache)
        )
        y = self.cross_sublayer(y, lambda h: self.cross_attn(h, memory, memory, memory_mask, cache=cross_cache))
        return self.ff_sublayer(y, self.feed_forward)
