"""Inspecting attention: recording every attention map a model computes.

The lecture's heatmaps ("which words does *it* attend to?") need the weights
α = softmax(QKᵀ/√d_k) of every head of every layer. Models do not keep them —
the fused kernel never even materialises them — so :func:`record_attention`
switches recording on for the duration of a ``with`` block::

    >>> with record_attention(model) as recording:
    ...     logits = model(src, tgt)
    >>> [(r["kind"], r["layer"], tuple(r["weights"].shape)) for r in recording][:1]
    [('encoder_self', 0, (1, 8, 7, 7))]

Each record is ``{"kind", "layer", "weights"}`` with weights (B, H, Lq, Lk), per
head, detached, in the order the layers were called. Outside the block nothing
is installed: recording off costs nothing.

Which layer is which
--------------------
attnlab's attention says what it is: each block sets the ``kind`` of its
:class:`~attnlab.core.attention.MultiHeadAttention` when it is built. ``torch.nn``'s
layers cannot, so their attention modules are named by the layer that holds them:

=====================================================  ===============
module                                                 kind
=====================================================  ===============
attnlab ``EncoderBlock(causal=False).self_attn``       ``encoder_self``
attnlab ``EncoderBlock(causal=True).self_attn``        ``decoder_self``
  (the blocks of a ``DecoderOnlyLM``)
attnlab ``DecoderBlock.self_attn`` / ``.cross_attn``   ``decoder_self`` / ``cross``
``nn.TransformerEncoderLayer.self_attn``               ``encoder_self``
``nn.TransformerDecoderLayer.self_attn``               ``decoder_self``
``nn.TransformerDecoderLayer.multihead_attn``          ``cross``
any other attention module                             ``attention``
=====================================================  ===============

``layer`` counts the layers of one kind in module order (``encoder.layers[i]``
is layer i). attnlab's :class:`~attnlab.core.attention.MultiHeadAttention` is
recorded through its ``record`` attribute, which also forces the explicit path.
``torch.nn.MultiheadAttention`` is recorded with hooks that ask for
``need_weights=True, average_attn_weights=False`` and hand the caller what it
originally asked for. PyTorch's fused "fast path" for ``nn.Transformer*``
layers bypasses ``MultiheadAttention.forward`` entirely, so it is switched off
(process-wide, ``torch.backends.mha``) while recording; everything is restored
on exit, also when the block raises. Note that ``torch.nn`` returns weights
*after* attention dropout in training mode; record in ``eval()`` mode to see
the distributions themselves.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from .. import document
from ..core.attention import MultiHeadAttention

__all__ = ["AttentionRecording", "record_attention", "attention_document", "translation_attention",
           "teacher_forced_attention"]


class AttentionRecording:
    """The attention maps of the calls made inside :func:`record_attention`, in call order.

    Behaves like a read-only list of ``{"kind", "layer", "weights"}`` dicts.

    >>> recording.by_kind("cross")       # [(0, Tensor (B, H, Lt, Ls)), (1, ...), ...]
    """

    def __init__(self) -> None:
        self._records: list[dict] = []

    def append(self, kind: str, layer: int, weights: Tensor) -> None:
        self._records.append({"kind": kind, "layer": layer, "weights": weights})

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self._records)

    def __getitem__(self, index):
        return self._records[index]

    def __repr__(self) -> str:
        summary = ", ".join(f"{r['kind']}[{r['layer']}]" for r in self._records[:8])
        more = ", …" if len(self._records) > 8 else ""
        return f"AttentionRecording({len(self._records)} calls: {summary}{more})"

    @property
    def kinds(self) -> list[str]:
        """The kinds present, in order of first appearance."""
        return list(dict.fromkeys(r["kind"] for r in self._records))

    def by_kind(self, kind: str) -> list[tuple[int, Tensor]]:
        """``[(layer, weights (B, H, Lq, Lk)), ...]`` for one kind, in call order."""
        return [(r["layer"], r["weights"]) for r in self._records if r["kind"] == kind]

    def clear(self) -> None:
        self._records.clear()


# --------------------------------------------------------------------------- labelling


# torch.nn layer → (attribute holding an nn.MultiheadAttention, its kind), in call order.
_TORCH_LAYER_KINDS = {
    nn.TransformerEncoderLayer: (("self_attn", "encoder_self"),),
    nn.TransformerDecoderLayer: (("self_attn", "decoder_self"), ("multihead_attn", "cross")),
}


def _attention_layers(model: nn.Module) -> list[tuple[nn.Module, str, int]]:
    """Every attention module of ``model`` with its (kind, layer) label, in module order."""
    torch_kinds: dict[int, str] = {}  # id of an nn.MultiheadAttention → the kind its layer gives it
    for module in model.modules():
        for layer_type, parts in _TORCH_LAYER_KINDS.items():
            if isinstance(module, layer_type):
                for name, kind in parts:
                    torch_kinds.setdefault(id(getattr(module, name)), kind)

    labelled: list[tuple[nn.Module, str, int]] = []
    counters: dict[str, int] = {}
    for module in model.modules():  # pre-order; a shared module comes once, under its first place
        if isinstance(module, MultiHeadAttention):
            kind = module.kind
        elif isinstance(module, nn.MultiheadAttention):
            kind = torch_kinds.get(id(module), "attention")
        else:
            continue
        labelled.append((module, kind, counters.get(kind, 0)))
        counters[kind] = counters.get(kind, 0) + 1
    return labelled


# --------------------------------------------------------------------------- torch.nn hooks

# nn.MultiheadAttention.forward(query, key, value, key_padding_mask, need_weights, attn_mask,
#                               average_attn_weights, is_causal): names of positional args 3..
_TORCH_MHA_ARGS = ("key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")


def _hook_torch_attention(module: nn.MultiheadAttention, on_weights: Callable[[Tensor], None]) -> list:
    """Make ``module`` compute per-head weights, pass them to ``on_weights``, and return
    to its caller exactly what the caller asked for. Returns the hook handles."""
    asked: list[tuple[bool, bool]] = []  # a stack: (need_weights, average_attn_weights) per call

    def pre_hook(mod, args, kwargs):
        kwargs = dict(kwargs)
        for name, value in zip(_TORCH_MHA_ARGS, args[3:]):  # positional → keyword, so we can override
            kwargs[name] = value
        asked.append((kwargs.get("need_weights", True), kwargs.get("average_attn_weights", True)))
        kwargs["need_weights"], kwargs["average_attn_weights"] = True, False
        return args[:3], kwargs

    def hook(mod, args, kwargs, output):
        need_weights, average = asked.pop()
        out, weights = output  # weights (B, H, Lq, Lk), or (H, Lq, Lk) for unbatched input
        on_weights(weights.detach() if weights.dim() == 4 else weights.detach()[None])
        if not need_weights:
            return out, None
        return out, (weights.mean(dim=-3) if average else weights)

    return [module.register_forward_pre_hook(pre_hook, with_kwargs=True),
            module.register_forward_hook(hook, with_kwargs=True)]


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[AttentionRecording]:
    """Record the per-head weights of every attention call of ``model`` inside the block.

    >>> with record_attention(model) as recording:
    ...     model(src, tgt)
    >>> recording.by_kind("encoder_self")[0][1].shape    # (B, H, Ls, Ls)
    """
    recording = AttentionRecording()
    layers = _attention_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no attention layers to record "
                         "(looked for attnlab MultiHeadAttention and torch.nn.MultiheadAttention)")
    restore: list[Callable[[], None]] = []
    try:
        for module, kind, layer in layers:
            def on_weights(weights: Tensor, kind=kind, layer=layer) -> None:
                recording.append(kind, layer, weights)

            if isinstance(module, MultiHeadAttention):
                previous = module.record
                if previous is None:
                    module.record = on_weights
                else:  # nested recordings: both hear every call
                    module.record = lambda w, a=previous, b=on_weights: (a(w), b(w))
                restore.append(lambda m=module, p=previous: setattr(m, "record", p))
            else:
                handles = _hook_torch_attention(module, on_weights)
                restore.append(lambda hs=handles: [h.remove() for h in hs])
        if any(isinstance(module, nn.MultiheadAttention) for module, _, _ in layers):
            fastpath = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
            restore.append(lambda f=fastpath: torch.backends.mha.set_fastpath_enabled(f))
        yield recording
    finally:
        for undo in reversed(restore):
            undo()


# --------------------------------------------------------------------------- attention.json


def _rows_for_tokens(weights: Tensor, num_queries: int, num_keys: int, where: str) -> Tensor:
    """(H, Lq, Lk) → (H, num_queries, num_keys), trimming padding that got no weight."""
    heads, recorded_queries, recorded_keys = weights.shape
    if recorded_queries < num_queries or recorded_keys < num_keys:
        raise ValueError(f"{where}: recorded weights cover {recorded_queries} queries × {recorded_keys} keys "
                         f"but {num_queries} × {num_keys} tokens were given")
    if recorded_keys > num_keys and weights[:, :num_queries, num_keys:].abs().max() > 1e-6:
        raise ValueError(f"{where}: {recorded_keys - num_keys} keys beyond the {num_keys} given tokens carry "
                         "attention weight, so they are not padding; pass one token per position")
    return weights[:, :num_queries, :num_keys]


def attention_document(src_tokens: list[str], tgt_tokens: list[str] | None,
                       recording: AttentionRecording, batch_index: int = 0) -> dict:
    """The attention document (:mod:`attnlab.document`) of one sentence of a recorded batch.

    Queries and keys follow the kind (:data:`attnlab.document.KIND_SIDES`): encoder_self is
    source × source, decoder_self target × target, cross target × source. Trailing padding
    positions (keys with zero weight) are trimmed to the given tokens. Records of kind
    ``attention`` (attention modules outside a known block) have no place in the document
    and are left out.

    >>> with record_attention(model) as rec: model(src[None], tgt[None])
    >>> doc = attention_document(["a", "b"], ["<bos>", "x"], rec)
    """
    tgt_tokens = list(tgt_tokens or [])
    tokens = {"source_tokens": list(src_tokens), "target_tokens": tgt_tokens}
    entries, seen = [], set()
    for record in recording:
        kind, layer = record["kind"], record["layer"]
        if kind not in document.KINDS:
            continue
        where = f"{kind} layer {layer}"
        if (kind, layer) in seen:
            raise ValueError(f"{where} was recorded more than once (e.g. step-by-step decoding); "
                             "record a single teacher-forced forward pass for a document")
        seen.add((kind, layer))
        weights = record["weights"]  # (B, H, Lq, Lk)
        if not 0 <= batch_index < weights.shape[0]:
            raise ValueError(f"batch_index {batch_index} out of range for a batch of {weights.shape[0]}")
        queries, keys = document.kind_tokens(tokens, kind)
        if not queries or not keys:
            raise ValueError(f"{where} needs {'target' if kind != 'encoder_self' else 'source'} tokens")
        weights = _rows_for_tokens(weights[batch_index].float().cpu(), len(queries), len(keys), where)
        entries.append({"kind": kind, "layer": layer, "weights": weights.double().numpy()})  # (H, Lq, Lk)
    if not entries:
        raise ValueError("the recording holds no encoder_self, decoder_self or cross attention; "
                         "run the model inside `with record_attention(model)` first")
    return document.build_document(src_tokens, tgt_tokens, entries)


def _as_ids(ids, name: str) -> Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of token ids for one sentence, "
                         f"got shape {tuple(ids.shape)}")
    return ids


@torch.no_grad()
def translation_attention(model: nn.Module, src_ids, tgt_ids, src_tokens: list[str], tgt_tokens: list[str]) -> dict:
    """Teacher-forced attention maps of an attnlab :class:`~attnlab.core.model.Transformer` on one sentence pair.

    ``src_ids`` (Ls,) are the source ids; ``tgt_ids`` (Lt,) are the *decoder input*,
    starting with BOS: ``<bos> w1 w2 …``. The document's target tokens are those same
    decoder-input tokens, because decoder query i is the position that has seen
    ``<bos> w1 … w_i`` and predicts ``w_{i+1}`` — the row labels are what the
    decoder actually read. The model runs in eval mode (its mode is restored).

    >>> doc = translation_attention(model, [5, 9, 2], [1, 7, 8], ["le", "chat", "</s>"], ["<bos>", "the", "cat"])
    """
    return teacher_forced_attention(model, src_ids, tgt_ids, src_tokens, tgt_tokens)[0]


@torch.no_grad()
def teacher_forced_attention(model: nn.Module, src_ids, tgt_ids, src_tokens: list[str],
                             tgt_tokens: list[str]) -> tuple[dict, Tensor]:
    """:func:`translation_attention` and the logits (Lt, vocab) of the same forward pass.

    Row t of the logits is the model's next-token score after reading ``tgt_ids[:t+1]``, the
    distribution decoding step t chose from (:mod:`attnlab.inspection.steps`).

    >>> doc, logits = teacher_forced_attention(model, [5, 9, 2], [1, 7], ["le", "chat", "</s>"], ["<bos>", "the"])
    """
    src, tgt = _as_ids(src_ids, "src_ids"), _as_ids(tgt_ids, "tgt_ids")
    if len(src_tokens) != src.numel() or len(tgt_tokens) != tgt.numel():
        raise ValueError(f"need one token per id: {src.numel()} source ids vs {len(src_tokens)} tokens, "
                         f"{tgt.numel()} target ids vs {len(tgt_tokens)} tokens")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with record_attention(model) as recording:
            logits = model(src[None].to(device), tgt[None].to(device))  # (1, Lt, vocab), teacher-forced
    finally:
        model.train(was_training)
    return attention_document(src_tokens, tgt_tokens, recording), logits[0].float().cpu()
