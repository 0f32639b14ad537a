"""Explaining an output: which input tokens produced it, by every standard method side by side.

Raw attention weights are an unreliable answer to "which source words produced this output
word" (Jain & Wallace, 2019; Serrano & Smith, 2019). attnlab computes six views, each a
relevance matrix — target × source for translation, token × token for self-attention models —
so they can be compared on the same sentence, and measured (``attnlab experiment explain``):

=======================  ============================================================  ====================
method                   relevance of input j for position i                            needs
=======================  ============================================================  ====================
``raw``                  α_ij of one layer, per head and the head mean                 the recording
``rollout``              product of residual-augmented attention through the layers    the recording
                         (Abnar & Zuidema, 2020; the encoder–decoder composition is
                         :func:`~attnlab.inspection.relevance.encoder_decoder_rollout`)
``flow``                 max-flow through the layered attention graph (networkx)        the recording
``grad_x_input``         Σ_d e_jd ∂ log p(y_i)/∂e_jd on the input embeddings (Captum)   an output distribution
``integrated_gradients`` the same integrated from the zero embedding (Sundararajan       an output distribution
                         et al., 2017), with its completeness error
``value_norm``           ‖Σ_h α^h_ij f_h(x_j)‖, f_h(x) = (x W_V^h + b_V^h) W_O^h         attnlab attention
                         (Kobayashi et al., 2020)
=======================  ============================================================  ====================

Models: attnlab's :class:`~attnlab.core.model.Transformer` (rows: decoder positions, which read
``<bos> w1 … w_i`` and predict w_{i+1}; columns: source tokens), :class:`EncoderOnlyModel` and
the pretrained MiniLM (token × token, no gradients: they predict no tokens),
:class:`DecoderOnlyLM` (token × token; row i predicts token i+1), a run loaded from disk
(:class:`~attnlab.inspection.inference.Translator`, with text), and ``torch.nn.Transformer``
(raw, rollout and flow: what :func:`record_attention` gives).

    >>> result = explain(model, src_ids, tgt_ids, method="rollout")      # decoder input starts with BOS
    >>> result.relevance.shape, result.relevance.sum(-1)                  # (Lt, Ls), rows sum to 1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..core.attention import MultiHeadAttention
from ..core.model import DecoderOnlyLM, EncoderOnlyModel, Transformer
from .gradients import GRADIENT_METHODS, embedding_attributions
from .record import _attention_layers, record_attention
from .relevance import attention_flow, encoder_decoder_flow, encoder_decoder_rollout, rollout, value_norms

__all__ = ["METHODS", "FLOW_MAX_TOKENS", "Explanation", "explain", "explain_all", "parse_methods"]

METHODS = ("raw", "rollout", "flow", "grad_x_input", "integrated_gradients", "value_norm")
ALIASES = {"attention": "raw", "ig": "integrated_gradients", "gradxinput": "grad_x_input",
           "grad×input": "grad_x_input", "value-norm": "value_norm", "grad-x-input": "grad_x_input",
           "integrated-gradients": "integrated_gradients"}
# Flow solves one max-flow per (output, input) pair on a graph of ~layers·L² edges: about L⁴ work.
# For a 2+2-layer encoder–decoder one sentence took 1.6 s at 11 tokens a side, 8 s at 20 and 46 s at 30
# (one core of a shared 2-core machine, networkx Boykov–Kolmogorov); 24 tokens keeps it under about
# 20 s. Beyond that use rollout.
FLOW_MAX_TOKENS = 24
DEFAULT_STEPS = 64  # integrated gradients: Gauss–Legendre points (see benchmarks/explain.py)


@dataclass
class Explanation:
    """One method's answer for one sentence.

    ``relevance`` (rows, columns) is the headline matrix; ``layers`` (layers, rows, columns) the
    same after (or, for raw and value norms, at) each layer; ``heads`` (layers, H, rows, columns)
    per head where a method has heads; ``extras`` other maps (e.g. the target-prefix share).
    """

    method: str
    relevance: Tensor
    rows: str  # what a row is, e.g. "target position (decoder input)"
    columns: str  # what a column is
    row_tokens: list[str] | None = None
    column_tokens: list[str] | None = None
    layers: Tensor | None = None
    heads: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    completeness_error: Tensor | None = None  # (rows,) integrated gradients only
    output_change: Tensor | None = None  # (rows,) f(x) − f(baseline), integrated gradients only


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """``"rollout,ig"`` or ``["raw", "flow"]`` → canonical method names; unknown names raise ValueError."""
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    names = [ALIASES.get(name.lower(), name.lower()) for name in names if name]
    if not names:
        raise ValueError(f"no explanation method given; allowed: {', '.join(METHODS)}")
    for name in names:
        if name not in METHODS:
            raise ValueError(f"unknown explanation method {name!r}; allowed: {', '.join(METHODS)} (or ig)")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- what is explained


@dataclass
class _Subject:
    model: nn.Module
    family: str  # "translation", "torch-translation", "encoder" or "decoder"
    inputs: tuple  # model(*inputs) is one forward pass, batch of one
    kind: str  # the attention kind whose maps are the headline: cross, encoder_self or decoder_self
    rows: str
    columns: str
    row_tokens: list[str] | None = None
    column_tokens: list[str] | None = None
    token_ids: list[Tensor] = field(default_factory=list)  # per embedded sequence, (L,)
    embeddings: list[nn.Module] = field(default_factory=list)  # embedding modules in call order
    labels: Tensor | None = None  # (rows,) the token each row predicts
    no_gradients: str = ""  # why gradient methods do not apply, or ""
    forward_kwargs: dict = field(default_factory=dict)  # extra keyword arguments of the forward pass


def _ids(ids, name: str) -> Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long)
    ids = ids[0] if ids.dim() == 2 and ids.shape[0] == 1 else ids
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"{name} must be one non-empty sentence of token ids, got shape {tuple(ids.shape)}")
    return ids


def _translator_subject(translator, text, target) -> _Subject:
    from ..data import BOS_ID, EOS_ID, source_ids

    if not isinstance(text, str):
        raise ValueError("a Translator explains text: pass the source sentence as a string")
    src = source_ids(translator.encode(text))
    if target is None or (isinstance(target, str) and not target.strip()):
        output = translator.translate_ids([text])[0]
    elif isinstance(target, str):
        output = translator.target.encode(target)
    else:
        raise ValueError("a Translator's target must be text (or None: its own translation)")
    if len(output) > translator.max_tokens:
        raise ValueError(f"target is {len(output)} tokens long; this model takes at most {translator.max_tokens}")
    decoder_input = [BOS_ID] + output
    return _translation_subject(translator.model, src, decoder_input, output + [EOS_ID],
                                translator.source.tokens(src), translator.target.tokens(decoder_input))


def _translation_subject(model: Transformer, src, tgt, labels, src_tokens, tgt_tokens) -> _Subject:
    from ..data import EOS_ID

    if tgt is None:
        raise ValueError("explaining a translation needs the decoder input tgt (starting with BOS)")
    src, tgt = _ids(src, "src"), _ids(tgt, "tgt")
    labels = torch.cat([tgt[1:], torch.tensor([EOS_ID])]) if labels is None else _ids(labels, "labels")
    if labels.shape != tgt.shape:
        raise ValueError(f"labels needs one token per decoder position: {labels.numel()} for {tgt.numel()}")
    device = next(model.parameters()).device
    src, tgt, labels = src.to(device), tgt.to(device), labels.to(device)
    return _Subject(model, "translation", (src[None], tgt[None]), "cross", "target position (decoder input)",
                    "source token", tgt_tokens, src_tokens, [src, tgt], [model.src_embed, model.tgt_embed], labels)


def _torch_translation_subject(model: nn.Transformer, src, tgt) -> _Subject:
    if not (torch.is_tensor(src) and torch.is_tensor(tgt) and src.is_floating_point() and tgt.is_floating_point()):
        raise ValueError("torch.nn.Transformer reads embeddings: pass src (Ls, d_model) and tgt (Lt, d_model) floats")
    src, tgt = (t[None] if t.dim() == 2 else t for t in (src, tgt))  # (1, L, d_model), batch first
    if src.shape[0] != 1 or tgt.shape[0] != 1:
        raise ValueError("explain one sentence at a time (a batch of one)")
    causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=src.device)  # (Lt, Lt)
    if not model.encoder.layers[0].self_attn.batch_first:
        src, tgt = src.transpose(0, 1), tgt.transpose(0, 1)  # (L, 1, d_model)
    return _Subject(model, "torch-translation", (src, tgt), "cross", "target position", "source position",
                    no_gradients="torch.nn.Transformer takes embeddings and has no output layer, so there is no "
                                 "log-probability to attribute",
                    forward_kwargs={"tgt_mask": causal, "tgt_is_causal": True})


def _subject(model, src, tgt, labels, source_tokens, target_tokens) -> _Subject:
    from ..core.rnn import RNNAttentionSeq2Seq
    from .inference import Translator
    from .pretrained import PretrainedEncoder

    if isinstance(model, Translator):
        return _translator_subject(model, src, tgt)
    if isinstance(model, Transformer):
        return _translation_subject(model, src, tgt, labels, source_tokens, target_tokens)
    if isinstance(model, nn.Transformer):
        return _torch_translation_subject(model, src, tgt)
    if isinstance(model, PretrainedEncoder):
        if isinstance(src, str):
            ids, mask, tokens = model.tokenize([src])
            source_tokens = tokens[0]
        else:
            ids = _ids(src, "src")[None]
            mask = ids != model.pad_id
        device = next(model.parameters()).device
        return _Subject(model, "encoder", (ids.to(device), mask.to(device)), "encoder_self", "token", "token",
                        source_tokens, source_tokens,
                        no_gradients="a pretrained encoder returns hidden states and predicts no token, so there is "
                                     "no log-probability to attribute")
    if isinstance(model, (EncoderOnlyModel, DecoderOnlyLM)):
        tokens = _ids(src, "src").to(next(model.parameters()).device)
        if isinstance(model, EncoderOnlyModel):
            return _Subject(model, "encoder", (tokens[None],), "encoder_self", "token", "token", source_tokens,
                            source_tokens, no_gradients="EncoderOnlyModel returns hidden states and predicts no token, "
                                                        "so there is no log-probability to attribute")
        if labels is None:
            with torch.no_grad():
                following = model(tokens[None])[0, -1].argmax()  # the model's own next token for the last row
            labels = torch.cat([tokens[1:], following[None]])
        labels = _ids(labels, "labels").to(tokens.device)
        return _Subject(model, "decoder", (tokens[None],), "decoder_self", "token (predicts the next one)", "token",
                        source_tokens, source_tokens, [tokens], [model.embed], labels)
    if isinstance(model, RNNAttentionSeq2Seq):
        raise ValueError("the rnn-attention model has one additive attention per step, not attention layers: "
                         "the explanation methods need a Transformer")
    raise ValueError(f"cannot explain a {type(model).__name__}; supported: attnlab Transformer, EncoderOnlyModel, "
                     "DecoderOnlyLM, PretrainedEncoder (minilm), Translator and torch.nn.Transformer")


# --------------------------------------------------------------------------- recording


@torch.no_grad()
def _record(subject: _Subject, want_values: bool) -> tuple[dict[str, list[Tensor]], dict[tuple[str, int], Tensor]]:
    """Run the model once: every layer's weights (H, Lq, Lk) by kind, and the value inputs (Lk, D)."""
    model = subject.model
    values: dict[tuple[str, int], Tensor] = {}
    handles = []
    if want_values:
        for module, kind, layer in _attention_layers(model):
            if isinstance(module, MultiHeadAttention):
                def grab(mod, args, kwargs, key=(kind, layer)):
                    values[key] = (args[2] if len(args) > 2 else kwargs["value"]).detach()[0]  # (Lk, D)
                handles.append(module.register_forward_pre_hook(grab, with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        with record_attention(model) as recording:
            model(*subject.inputs, **subject.forward_kwargs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    maps = {kind: [w[0].float() for _, w in sorted(recording.by_kind(kind), key=lambda item: item[0])]
            for kind in recording.kinds}
    return maps, values


def _pick_layer(layer: int, count: int, kind: str) -> int:
    if not isinstance(layer, int) or not -count <= layer < count:
        raise ValueError(f"layer {layer} out of range: the model has {count} {kind} layers (0..{count - 1}, "
                         "or -1 for the last)")
    return layer % count


def _attention_modules(model: nn.Module, kind: str) -> list[nn.Module]:
    return [module for module, k, _ in sorted(((m, k, l) for m, k, l in _attention_layers(model) if k == kind),
                                              key=lambda item: item[2])]


# --------------------------------------------------------------------------- the methods


def _raw(subject, maps, layer) -> dict:
    heads = torch.stack(maps[subject.kind])  # (layers, H, Lq, Lk)
    means = heads.mean(1)  # (layers, Lq, Lk)
    others = {kind: torch.stack(weights) for kind, weights in maps.items() if kind != subject.kind}
    return dict(relevance=means[_pick_layer(layer, len(means), subject.kind)], layers=means, heads=heads,
                extras=others)


def _rollout(subject, maps) -> dict:
    head_means = {kind: [w.mean(0) for w in weights] for kind, weights in maps.items()}  # each (Lq, Lk)
    if subject.family in ("translation", "torch-translation"):
        composed = encoder_decoder_rollout(head_means.get("encoder_self", []), head_means["decoder_self"],
                                           head_means["cross"])
        return dict(relevance=composed["source"][-1], layers=composed["source"],
                    extras={k: composed[k] for k in ("target_prefix", "source_share", "encoder")})
    rolled = rollout(head_means[subject.kind])  # (layers, L, L)
    return dict(relevance=rolled[-1], layers=rolled)


def _flow(subject, maps) -> dict:
    longest = max(max(w.shape[-2:]) for weights in maps.values() for w in weights)
    if longest > FLOW_MAX_TOKENS:
        raise ValueError(f"flow: {longest} tokens exceed its limit of {FLOW_MAX_TOKENS} (one max-flow per token "
                         "pair, about L⁴ work); use rollout for long inputs")
    head_means = {kind: [w.mean(0) for w in weights] for kind, weights in maps.items()}
    if subject.family in ("translation", "torch-translation"):
        flow = encoder_decoder_flow(head_means.get("encoder_self", []), head_means["decoder_self"], head_means["cross"])
    else:
        flow = attention_flow(head_means[subject.kind])
    return dict(relevance=flow)


def _value_norm(subject, maps, values, layer) -> dict:
    if subject.family == "torch-translation":
        raise ValueError("value_norm needs each layer's value vectors, which torch.nn.MultiheadAttention does not "
                         "expose; load the weights into attnlab (attnlab.inspection.interop.load_transformer)")
    per_head, per_layer = [], []
    for index, (module, weights) in enumerate(zip(_attention_modules(subject.model, subject.kind), maps[subject.kind])):
        heads, combined = value_norms(weights, values[(subject.kind, index)].float(), module.v_proj.weight.float(),
                                      None if module.v_proj.bias is None else module.v_proj.bias.float(),
                                      module.out_proj.weight.float())
        per_head.append(heads)
        per_layer.append(combined)
    layers = torch.stack(per_layer).detach()  # (layers, Lq, Lk)
    return dict(relevance=layers[_pick_layer(layer, len(layers), subject.kind)], layers=layers,
                heads=torch.stack(per_head).detach())


def _gradients(subject, method, steps) -> dict:
    if subject.no_gradients:
        raise ValueError(f"{method} is not available for this model: {subject.no_gradients}")
    model = subject.model
    result = embedding_attributions(model, method, subject.embeddings, subject.token_ids, subject.labels, steps=steps,
                                    forward=lambda *ids: model(*ids))
    extras = {"target_prefix": result.attributions[1]} if subject.family == "translation" else {}
    extras["log_probability"] = result.outputs
    return dict(relevance=result.attributions[0], extras=extras, completeness_error=result.completeness_error,
                output_change=result.output_change)


def explain_all(model, src, tgt=None, *, methods: str | Sequence[str] = METHODS, labels=None, layer: int = -1,
                steps: int = DEFAULT_STEPS, source_tokens: list[str] | None = None,
                target_tokens: list[str] | None = None) -> dict[str, Explanation]:
    """Every requested method on one input, sharing one recorded forward pass.

    ``src``: source ids (Ls,) as the encoder reads them (ending with EOS), text for a Translator
    or MiniLM, or tokens (L,) for a self-attention model; ``tgt``: the decoder input (Lt,)
    starting with BOS (or target text, or None for a Translator's own translation).
    ``labels`` (Lt,): the token each row predicts (default: ``tgt`` shifted left, then EOS).
    ``layer`` picks the layer of the headline matrix for ``raw`` and ``value_norm``.

    >>> views = explain_all(model, src_ids, tgt_ids, methods="raw,rollout,ig")
    >>> views["integrated_gradients"].completeness_error      # (Lt,) nats
    """
    names = parse_methods(methods)
    subject = _subject(model, src, tgt, labels, source_tokens, target_tokens)
    for name in names:  # refuse before computing anything
        if name in GRADIENT_METHODS and subject.no_gradients:
            raise ValueError(f"{name} is not available for this model: {subject.no_gradients}")
        if name == "value_norm" and subject.family == "torch-translation":
            _value_norm(subject, {}, {}, layer)
    needs_recording = any(name not in GRADIENT_METHODS for name in names)
    maps, values = _record(subject, "value_norm" in names) if needs_recording else ({}, {})
    compute: dict[str, Callable[[], dict]] = {
        "raw": lambda: _raw(subject, maps, layer), "rollout": lambda: _rollout(subject, maps),
        "flow": lambda: _flow(subject, maps), "value_norm": lambda: _value_norm(subject, maps, values, layer),
        "grad_x_input": lambda: _gradients(subject, "grad_x_input", steps),
        "integrated_gradients": lambda: _gradients(subject, "integrated_gradients", steps)}
    if needs_recording and subject.kind not in maps:
        raise ValueError(f"the recording holds no {subject.kind} attention; is this a {subject.family} model?")
    results = {}
    for name in names:
        parts = compute[name]()
        results[name] = Explanation(name, parts.pop("relevance"), subject.rows, subject.columns, subject.row_tokens,
                                    subject.column_tokens, **parts)
    return results


def explain(model, src, tgt=None, *, method: str = "rollout", **options) -> Explanation:
    """One method on one input; see :func:`explain_all` for the arguments.

    >>> explain(model, src_ids, tgt_ids, method="flow").relevance      # (Lt, Ls) max-flow values
    """
    names = parse_methods(method)
    if len(names) != 1:
        raise ValueError(f"explain computes one method, got {names}; use explain_all for several")
    return explain_all(model, src, tgt, methods=names, **options)[names[0]]
