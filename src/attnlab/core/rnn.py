"""The baseline before Transformers: a GRU encoder–decoder with additive (Bahdanau) attention.

The lecture's "Standard attention" was born here (Bahdanau, Cho & Bengio, 2015). A recurrent
encoder reads the source left to right and right to left; a recurrent decoder writes the target
one word at a time, and before each word it looks back at every encoder state:

    e_tj = wᵥᵀ tanh(W_q s_{t-1} + W_k h_j)        (additive score of source position j)
    α_tj = softmax_j(e_tj),   c_t = Σ_j α_tj h_j    (context vector)
    s_t  = GRU([embed(y_{t-1}); c_t], s_{t-1})      (the next decoder state)
    p(y_t | …) = softmax(W_o · tanh(W_h [s_t; c_t; embed(y_{t-1})]))

Every decoder step needs the previous one — the *sequential* computation that self-attention
removes (the lecture's comparison of RNN, CNN and self-attention). ``attnlab experiment
architectures`` measures exactly that against :class:`attnlab.core.model.Transformer`.

The model speaks the Transformer's interface (``forward``, ``encode``, ``source_mask``,
``decode(tgt, memory, memory_mask, cache=)``, ``new_cache``, ``reorder_cache``, ``config``),
so the one trainer, greedy decoding and beam search
work unchanged. It reads from :class:`~attnlab.core.model.TransformerConfig`: ``d_model`` (the hidden
size; the bidirectional encoder uses d_model/2 per direction so its states are d_model wide),
``num_encoder_layers``, ``num_decoder_layers``, ``dropout``, ``pad_id``, ``share_embeddings`` and
``tie_embeddings``; attention heads and positional encodings do not apply (a recurrence knows the
order by construction).

    >>> config = TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=32, num_encoder_layers=1,
    ...                            num_decoder_layers=1, num_heads=1, d_ff=32)
    >>> RNNAttentionSeq2Seq(config)(torch.randint(1, 20, (2, 7)), torch.randint(1, 20, (2, 5))).shape
    torch.Size([2, 5, 20])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .attention import AdditiveAttention
from .model import TransformerConfig

__all__ = ["RNNAttentionSeq2Seq", "RNNDecoderCache"]


@dataclass
class RNNDecoderCache:
    """The decoder's recurrent state between decoding steps: (num_layers, B, d_model)."""

    hidden: Tensor | None = None


class RNNAttentionSeq2Seq(nn.Module):
    """Bidirectional GRU encoder, GRU decoder with additive attention over the encoder states."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.num_encoder_layers < 1 or config.num_decoder_layers < 1:
            raise ValueError("rnn-attention needs at least one encoder and one decoder layer, got "
                             f"{config.num_encoder_layers} and {config.num_decoder_layers}")
        if config.d_model % 2:
            raise ValueError(f"rnn-attention needs an even d_model (two directions of d_model/2), got {config.d_model}")
        self.config = config
        d = config.d_model
        self.src_embed = nn.Embedding(config.src_vocab_size, d, padding_idx=config.pad_id)
        self.tgt_embed = self.src_embed if config.share_embeddings else nn.Embedding(
            config.tgt_vocab_size, d, padding_idx=config.pad_id)
        self.encoder = nn.GRU(d, d // 2, num_layers=config.num_encoder_layers, batch_first=True,
                              bidirectional=True, dropout=config.dropout if config.num_encoder_layers > 1 else 0.0)
        self.bridge = nn.Linear(d, config.num_decoder_layers * d)  # pooled memory → initial decoder states
        self.attention = AdditiveAttention(query_dim=d, key_dim=d, hidden_dim=d)
        self.cells = nn.ModuleList(nn.GRUCell(2 * d if i == 0 else d, d) for i in range(config.num_decoder_layers))
        self.pre_output = nn.Linear(3 * d, d)  # [s_t; c_t; embed(y_{t-1})] → d
        self.generator = nn.Linear(d, config.tgt_vocab_size)
        self.dropout = nn.Dropout(config.dropout)
        if config.tie_embeddings:
            self.generator.weight = self.tgt_embed.weight

    # ------------------------------------------------------------------ encoder

    def source_mask(self, src: Tensor) -> Tensor:
        """Source ids (B, Ls) → the attention's key mask (B, 1, Ls), True = real token."""
        return (src != self.config.pad_id)[:, None, :]

    def encode(self, src: Tensor) -> Tensor:
        """Source ids (B, Ls) → encoder states (B, Ls, d_model); padding positions are zero."""
        lengths = (src != self.config.pad_id).sum(dim=1).clamp(min=1).cpu()  # (B,)
        embedded = self.dropout(self.src_embed(src))  # (B, Ls, d)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.encoder(packed)
        memory, _ = pad_packed_sequence(states, batch_first=True, total_length=src.shape[1])  # (B, Ls, d)
        return memory

    def _initial_state(self, memory: Tensor, memory_mask: Tensor) -> Tensor:
        real = memory_mask.transpose(1, 2).to(memory.dtype)  # (B, Ls, 1), 1 at real tokens
        pooled = (memory * real).sum(1) / real.sum(1).clamp(min=1.0)  # (B, d)
        hidden = torch.tanh(self.bridge(pooled))  # (B, layers·d)
        return hidden.view(memory.shape[0], len(self.cells), -1).transpose(0, 1).contiguous()  # (layers, B, d)

    # ------------------------------------------------------------------ decoder

    def decode(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor | None = None, *,
               cache: RNNDecoderCache | None = None) -> Tensor:
        """Target ids (B, Lt) and memory (B, Ls, d) → logits (B, Lt, tgt_vocab_size), one step at a time.

        ``memory_mask`` is :meth:`source_mask` of the source (None: every position is real).
        With ``cache`` (from :meth:`new_cache`), ``tgt`` holds only the new tokens and the
        recurrent state carries on from the previous call.
        """
        if memory_mask is None:
            memory_mask = torch.ones(memory.shape[0], 1, memory.shape[1], dtype=torch.bool, device=memory.device)
        if cache is not None and cache.hidden is not None:
            hidden = cache.hidden
        else:
            hidden = self._initial_state(memory, memory_mask)
        embedded = self.dropout(self.tgt_embed(tgt))  # (B, Lt, d)
        layers = list(hidden.unbind(0))  # num_layers × (B, d)
        outputs = []
        for t in range(tgt.shape[1]):
            query = layers[-1][:, None, :]  # (B, 1, d): s_{t-1} asks where to look
            context, _ = self.attention(query, memory, memory, memory_mask)  # (B, 1, d)
            step_input = torch.cat([embedded[:, t], context[:, 0]], dim=-1)  # (B, 2d)
            for i, cell in enumerate(self.cells):
                layers[i] = cell(step_input, layers[i])  # (B, d)
                step_input = self.dropout(layers[i]) if i + 1 < len(self.cells) else layers[i]
            features = torch.cat([layers[-1], context[:, 0], embedded[:, t]], dim=-1)  # (B, 3d)
            outputs.append(torch.tanh(self.pre_output(features)))  # (B, d)
        if cache is not None:
            cache.hidden = torch.stack(layers)
        hidden_states = self.dropout(torch.stack(outputs, dim=1))  # (B, Lt, d)
        return self.generator(hidden_states)  # (B, Lt, V)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        return self.decode(tgt, self.encode(src), self.source_mask(src))

    def new_cache(self) -> RNNDecoderCache:
        return RNNDecoderCache()

    @staticmethod
    def reorder_cache(cache: RNNDecoderCache, index: Tensor) -> None:
        """Keep the recurrent states of surviving beam hypotheses (beam search)."""
        if cache.hidden is not None:
            cache.hidden = cache.hidden.index_select(1, index)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
