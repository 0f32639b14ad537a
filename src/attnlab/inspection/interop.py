"""Load weights from ``torch.nn`` modules so attnlab's numbers can be checked against PyTorch's.

``torch.nn.MultiheadAttention`` keeps the three input projections in one
``in_proj_weight`` (3·d, d) — rows [0:d] for queries, [d:2d] keys, [2d:3d]
values; attnlab keeps them as ``q_proj``, ``k_proj``, ``v_proj``. Boolean masks
mean the opposite in torch.nn (True = ignore); :func:`to_torch_key_padding_mask`
converts attnlab's (True = may attend).

>>> theirs = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
>>> ours = encoder_block_from_torch(theirs)   # same numbers, attnlab's code
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.attention import MultiHeadAttention
from ..core.blocks import DecoderBlock, EncoderBlock
from ..core.model import Transformer

__all__ = [
    "load_multihead_attention",
    "load_encoder_block",
    "load_decoder_block",
    "load_transformer",
    "encoder_block_from_torch",
    "decoder_block_from_torch",
    "to_torch_key_padding_mask",
]


def to_torch_key_padding_mask(mask: Tensor) -> Tensor:
    """attnlab key mask (B, 1, 1, L) or (B, L), True = real token → torch's (B, L), True = padding."""
    return ~mask.reshape(mask.shape[0], mask.shape[-1])


@torch.no_grad()
def load_multihead_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> MultiHeadAttention:
    """Copy an ``nn.MultiheadAttention``'s weights into attnlab's ``MultiHeadAttention``."""
    if theirs.embed_dim != ours.d_model or theirs.num_heads != ours.num_heads:
        raise ValueError(f"shape mismatch: torch has d_model={theirs.embed_dim}, heads={theirs.num_heads}; "
                         f"attnlab has d_model={ours.d_model}, heads={ours.num_heads}")
    if not theirs._qkv_same_embed_dim:
        raise ValueError("kdim/vdim different from embed_dim are not supported")
    for proj, weight in zip((ours.q_proj, ours.k_proj, ours.v_proj), theirs.in_proj_weight.chunk(3)):
        proj.weight.copy_(weight)
    if theirs.in_proj_bias is not None:
        for proj, bias in zip((ours.q_proj, ours.k_proj, ours.v_proj), theirs.in_proj_bias.chunk(3)):
            proj.bias.copy_(bias)
    ours.out_proj.load_state_dict(theirs.out_proj.state_dict())
    return ours


def _layer_settings(layer) -> dict:
    activation = layer.activation
    name = getattr(activation, "__name__", type(activation).__name__).lower()
    if name not in ("relu", "gelu"):
        raise ValueError(f"unsupported activation {name!r}; attnlab blocks support relu and gelu")
    if not layer.self_attn.batch_first:
        raise ValueError("attnlab is batch-first; build the torch layer with batch_first=True")
    return dict(d_model=layer.self_attn.embed_dim, num_heads=layer.self_attn.num_heads,
                d_ff=layer.linear1.out_features, dropout=layer.dropout.p, activation=name,
                norm_first=layer.norm_first, layer_norm_eps=layer.norm1.eps)


@torch.no_grad()
def _load_feed_forward(ours, layer) -> None:
    ours.feed_forward.linear1.load_state_dict(layer.linear1.state_dict())
    ours.feed_forward.linear2.load_state_dict(layer.linear2.state_dict())


@torch.no_grad()
def load_encoder_block(ours: EncoderBlock, layer: nn.TransformerEncoderLayer) -> EncoderBlock:
    """Copy an ``nn.TransformerEncoderLayer`` into an attnlab ``EncoderBlock``."""
    load_multihead_attention(ours.self_attn, layer.self_attn)
    _load_feed_forward(ours, layer)
    ours.attn_sublayer.norm.load_state_dict(layer.norm1.state_dict())
    ours.ff_sublayer.norm.load_state_dict(layer.norm2.state_dict())
    return ours


@torch.no_grad()
def load_decoder_block(ours: DecoderBlock, layer: nn.TransformerDecoderLayer) -> DecoderBlock:
    """Copy an ``nn.TransformerDecoderLayer`` into an attnlab ``DecoderBlock``."""
    load_multihead_attention(ours.self_attn, layer.self_attn)
    load_multihead_attention(ours.cross_attn, layer.multihead_attn)
    _load_feed_forward(ours, layer)
    ours.self_sublayer.norm.load_state_dict(layer.norm1.state_dict())
    ours.cross_sublayer.norm.load_state_dict(layer.norm2.state_dict())
    ours.ff_sublayer.norm.load_state_dict(layer.norm3.state_dict())
    return ours


def encoder_block_from_torch(layer: nn.TransformerEncoderLayer) -> EncoderBlock:
    """A new attnlab ``EncoderBlock`` with the same settings and weights as ``layer``."""
    return load_encoder_block(EncoderBlock(**_layer_settings(layer)), layer)


def decoder_block_from_torch(layer: nn.TransformerDecoderLayer) -> DecoderBlock:
    """A new attnlab ``DecoderBlock`` with the same settings and weights as ``layer``."""
    return load_decoder_block(DecoderBlock(**_layer_settings(layer)), layer)


@torch.no_grad()
def load_transformer(ours: Transformer, theirs: nn.Transformer) -> Transformer:
    """Copy ``nn.Transformer``'s encoder and decoder stacks (and their final norms) into ``ours``.

    ``nn.Transformer`` always ends each stack with a LayerNorm, so ``ours`` must
    be built with ``final_norm=True``; embeddings and the output layer are
    attnlab's own (nn.Transformer has none).
    """
    enc_layers, dec_layers = theirs.encoder.layers, theirs.decoder.layers
    if len(enc_layers) != len(ours.encoder.layers) or len(dec_layers) != len(ours.decoder.layers):
        raise ValueError(f"layer count mismatch: torch has {len(enc_layers)}+{len(dec_layers)}, attnlab has "
                         f"{len(ours.encoder.layers)}+{len(ours.decoder.layers)}")
    for block, layer in zip(ours.encoder.layers, enc_layers):
        load_encoder_block(block, layer)
    for block, layer in zip(ours.decoder.layers, dec_layers):
        load_decoder_block(block, layer)
    for stack, theirs_stack in ((ours.encoder, theirs.encoder), (ours.decoder, theirs.decoder)):
        if theirs_stack.norm is not None:
            if not isinstance(stack.norm, nn.LayerNorm):
                raise ValueError("nn.Transformer has final LayerNorms: build attnlab's model with final_norm=True")
            stack.norm.load_state_dict(theirs_stack.norm.state_dict())
    return ours
