"""attnlab: a laboratory for Transformers and attention.

>>> from attnlab import Transformer, TransformerConfig
>>> model = Transformer(TransformerConfig(src_vocab_size=100, tgt_vocab_size=100, d_model=64, num_heads=4))
"""

from .core.attention import (
    AdditiveAttention,
    AttentionCache,
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    padding_mask,
    scaled_dot_product_attention,
)
from .core.blocks import DecoderBlock, EncoderBlock, FeedForward
from .core.model import DecoderOnlyLM, EncoderOnlyModel, Transformer, TransformerConfig
from .core.positional import POSITIONAL_ENCODINGS, PositionalEncoding, positional_encoding
from .viz.notebook import show

__version__ = "0.1.0"

__all__ = [
    "scaled_dot_product_attention",
    "AdditiveAttention",
    "MultiHeadAttention",
    "AttentionCache",
    "padding_mask",
    "causal_mask",
    "combine_masks",
    "positional_encoding",
    "PositionalEncoding",
    "POSITIONAL_ENCODINGS",
    "FeedForward",
    "EncoderBlock",
    "DecoderBlock",
    "TransformerConfig",
    "Transformer",
    "EncoderOnlyModel",
    "DecoderOnlyLM",
    "show",
]
