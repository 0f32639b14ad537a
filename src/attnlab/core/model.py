"""The Transformer: the lecture's "Transformer Architecture" and "Transformer Flow".

::

    source ids ─ embed·√d + PE ─▶ [encoder blocks] ─▶ memory ──────────┐
    target ids ─ embed·√d + PE ─▶ [decoder blocks: masked self, cross(memory), FFN] ─▶ linear ─▶ logits

Besides the encoder–decoder :class:`Transformer`, the same blocks assemble an
encoder-only model (:class:`EncoderOnlyModel`, BERT-style) and a decoder-only
language model (:class:`DecoderOnlyLM`, GPT-style: encoder blocks with a
causal mask).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .._strict import strict_from_dict
from .attention import AttentionCache, padding_mask
from .blocks import ACTIVATIONS, DecoderBlock, EncoderBlock, LayerCache
from .positional import POSITIONAL_ENCODINGS, positional_encoding

__all__ = ["TransformerConfig", "Transformer", "EncoderOnlyModel", "DecoderOnlyLM", "TokenEmbedding"]


@dataclass
class TransformerConfig:
    """Every size and switch of a model; round-trips through JSON.

    Encoder-only models read ``src_vocab_size`` and ``num_encoder_layers``;
    decoder-only models read ``tgt_vocab_size`` and ``num_decoder_layers``.
    """

    src_vocab_size: int = 1000
    tgt_vocab_size: int = 1000
    d_model: int = 512
    num_heads: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    pos_encoding: str = "sinusoidal"
    max_len: int = 512
    norm_first: bool = False
    activation: str = "relu"
    pad_id: int = 0
    tie_embeddings: bool = False  # output projection shares the target embedding matrix
    share_embeddings: bool = False  # source and target share one embedding (shared vocabulary)
    final_norm: bool | None = None  # LayerNorm after each stack; None: only for pre-LN
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        positive = ["src_vocab_size", "tgt_vocab_size", "d_model", "num_heads", "d_ff", "max_len"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("num_encoder_layers", "num_decoder_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.pos_encoding not in POSITIONAL_ENCODINGS:
            raise ValueError(f"unknown pos_encoding {self.pos_encoding!r}; allowed: {', '.join(POSITIONAL_ENCODINGS)}")
        if self.pos_encoding == "rope" and (self.d_model // self.num_heads) % 2:
            raise ValueError(f"pos_encoding 'rope' needs an even head dimension, got d_model/num_heads = {self.d_model // self.num_heads}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError("share_embeddings needs src_vocab_size == tgt_vocab_size")

    @property
    def use_final_norm(self) -> bool:
        return self.norm_first if self.final_norm is None else self.final_norm

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerConfig":
        return strict_from_dict(cls, data, "model")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TransformerConfig":
        return cls.from_dict(json.loads(text))


class TokenEmbedding(nn.Module):
    """Token ids → vectors scaled by √d_model (paper §3.4), so they are not drowned by the PE."""

    def __init__(self, vocab_size: int, d_model: int, pad_id: int | None = None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)  # unit variance after scaling
        if pad_id is not None:
            with torch.no_grad():
                self.embedding.weight[pad_id].zero_()
        self.scale = math.sqrt(d_model)

    @property
    def weight(self) -> Tensor:
        return self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be an integer tensor, got {tokens.dtype}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.embedding.num_embeddings):
            raise ValueError(f"token ids must lie in [0, {self.embedding.num_embeddings}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        return self.embedding(tokens) * self.scale  # (B, L, d_model)


def _block_kwargs(config: TransformerConfig) -> dict:
    return dict(dropout=config.dropout, activation=config.activation, norm_first=config.norm_first,
                layer_norm_eps=config.layer_norm_eps)


def _make_positional(config: TransformerConfig):
    return positional_encoding(config.pos_encoding, config.d_model, config.max_len, num_heads=config.num_heads)


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform for every projection matrix (as torch.nn.Transformer does)."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)


class Encoder(nn.Module):
    """A stack of encoder blocks (with its own positional encoding); ``causal`` blocks for a decoder-only LM."""

    def __init__(self, config: TransformerConfig, num_layers: int, *, causal: bool = False):
        super().__init__()
        self.positional = _make_positional(config)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            EncoderBlock(config.d_model, config.num_heads, config.d_ff, causal=causal, **_block_kwargs(config))
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.use_final_norm else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None, *, caches: list[AttentionCache] | None = None) -> Tensor:
        offset = caches[0].length if caches else 0
        x = self.dropout(self.positional.add_to_embeddings(x, offset))  # (B, L, d_model)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, positional=self.positional, cache=caches[i] if caches else None)
        return self.norm(x)


class Decoder(nn.Module):
    """A stack of decoder blocks (with its own positional encoding)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.positional = _make_positional(config)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            DecoderBlock(config.d_model, config.num_heads, config.d_ff, **_block_kwargs(config))
            for _ in range(config.num_decoder_layers)
        )
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.use_final_norm else nn.Identity()

    def forward(self, y: Tensor, memory: Tensor, memory_mask: Tensor | None = None, *,
                cache: list[LayerCache] | None = None) -> Tensor:
        offset = cache[0].self_attn.length if cache else 0
        y = self.dropout(self.positional.add_to_embeddings(y, offset))  # (B, Lt, d_model)
        for i, layer in enumerate(self.layers):
            y = layer(y, memory, memory_mask, positional=self.positional, cache=cache[i] if cache else None)
        return self.norm(y)


class Transformer(nn.Module):
    """The encoder–decoder Transformer (Vaswani et al., 2017).

    ``forward(src, tgt)`` takes token ids (B, Ls) and (B, Lt) and returns logits
    (B, Lt, tgt_vocab_size); padding and causal masks come from ``pad_id``. The source
    mask is built once, by :meth:`source_mask`, and passed down to every layer that
    reads the source — and, in decoding, to every step.

    >>> model = Transformer(TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=32, num_heads=4,
    ...                                       num_encoder_layers=2, num_decoder_layers=2, d_ff=64))
    >>> model(torch.randint(1, 20, (2, 7)), torch.randint(1, 20, (2, 5))).shape
    torch.Size([2, 5, 20])
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.src_embed = TokenEmbedding(config.src_vocab_size, config.d_model, config.pad_id)
        self.tgt_embed = self.src_embed if config.share_embeddings else TokenEmbedding(
            config.tgt_vocab_size, config.d_model, config.pad_id)
        self.encoder = Encoder(config, config.num_encoder_layers)
        self.decoder = Decoder(config)
        self.generator = nn.Linear(config.d_model, config.tgt_vocab_size)
        _init_weights(self)
        if config.tie_embeddings:
            self.generator.weight = self.tgt_embed.embedding.weight

    def source_mask(self, src: Tensor) -> Tensor:
        """Source ids (B, Ls) → the key mask of every attention over the source (B, 1, 1, Ls), True = real token."""
        return padding_mask(src, self.config.pad_id)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Source ids (B, Ls) → memory (B, Ls, d_model); ``src_mask`` defaults to :meth:`source_mask`."""
        return self.encoder(self.src_embed(src), self.source_mask(src) if src_mask is None else src_mask)

    def decode(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor | None = None, *,
               cache: list[LayerCache] | None = None) -> Tensor:
        """Target ids (B, Lt) and memory (B, Ls, d_model) → logits (B, Lt, tgt_vocab_size).

        ``memory_mask`` is :meth:`source_mask` of the source (None: every source position is
        real). With ``cache`` (from :meth:`new_cache`), ``tgt`` holds only the new tokens;
        earlier keys/values are reused.

        >>> src_mask = model.source_mask(src)
        >>> logits = model.decode(tgt, model.encode(src, src_mask), src_mask)
        """
        hidden = self.decoder(self.tgt_embed(tgt), memory, memory_mask, cache=cache)
        return self.generator(hidden)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        src_mask = self.source_mask(src)  # (B, 1, 1, Ls), built once for the encoder and the decoder
        return self.decode(tgt, self.encode(src, src_mask), src_mask)

    def new_cache(self) -> list[LayerCache]:
        return [LayerCache() for _ in self.decoder.layers]

    @staticmethod
    def reorder_cache(cache: list[LayerCache], index: Tensor) -> None:
        """Keep the cache rows of surviving beam hypotheses (beam search)."""
        for layer in cache:
            layer.self_attn.reorder(index)  # cross-attention memory is identical across one source's beams

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class EncoderOnlyModel(nn.Module):
    """Embeddings and encoder blocks: contextual vectors for every token (BERT-style)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embed = TokenEmbedding(config.src_vocab_size, config.d_model, config.pad_id)
        self.encoder = Encoder(config, config.num_encoder_layers)
        _init_weights(self)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.encoder(self.embed(tokens), padding_mask(tokens, self.config.pad_id))  # (B, L, d_model)


class DecoderOnlyLM(nn.Module):
    """A GPT-style language model: encoder blocks with a causal mask, then a linear head."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embed = TokenEmbedding(config.tgt_vocab_size, config.d_model, config.pad_id)
        self.blocks = Encoder(config, config.num_decoder_layers, causal=True)
        self.head = nn.Linear(config.d_model, config.tgt_vocab_size)
        _init_weights(self)
        if config.tie_embeddings:
            self.head.weight = self.embed.embedding.weight

    def forward(self, tokens: Tensor, *, cache: list[AttentionCache] | None = None) -> Tensor:
        """tokens (B, L) → next-token logits (B, L, vocab). With ``cache``, tokens are the new ones."""
        return self.head(self.blocks(self.embed(tokens), caches=cache))

    def new_cache(self) -> list[AttentionCache]:
        return [AttentionCache() for _ in self.blocks.layers]
