"""Interventions on attention heads: ablation and activation patching, inside a ``with`` block.

A multi-head layer's output is a sum over its heads (the lecture's Concat(head_1 … head_h) Wᴼ,
split by the columns of Wᴼ). attnlab gives each head an equal share of the output bias, so the
heads' contributions add up to the layer's output exactly::

    out = Σ_h c_h,    c_h = head_h · W_O^h + b_O / H      (head_h: (L, d_head), W_O^h: its d_head columns of Wᴼ)

An intervention replaces some c_h and leaves the others alone:

* :func:`ablate_heads` — ``mode="zero"``: c_h = 0 (so ablating every head of a layer zeroes its
  attention output); ``mode="mean"``: c_h = its mean over the real tokens of a ``reference`` batch.
* :func:`patch_heads` — activation patching: c_h is taken from a second input (``source_run``),
  position by position.

Like :func:`~attnlab.inspection.record.record_attention`, the hooks live only inside the block and
are removed on exit, also when it raises. Heads are named ``{(kind, layer): [head, ...] | "all"}``
with the kinds of :mod:`attnlab.inspection.record` (``encoder_self``, ``decoder_self``, ``cross``).

    >>> with ablate_heads(model, {("cross", 1): [0, 2]}):
    ...     logits = model(src, tgt)
    >>> intervention_effect(model, src_ids, reference_ids, lambda: ablate_heads(model, {("cross", 1): "all"}))
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch
from torch import Tensor, nn

from ..core.attention import MultiHeadAttention
from .record import _attention_layers

__all__ = ["ablate_heads", "patch_heads", "head_contributions", "Intervention", "InterventionEffect",
           "intervention_effect", "all_heads", "ABLATION_MODES"]

ABLATION_MODES = ("zero", "mean")


def head_contributions(concatenated: Tensor, out_proj: nn.Linear, num_heads: int) -> Tensor:
    """Per-head output c_h = head_h W_O^h + b_O/H: (B, L, H·d_head) → (B, L, H, D); Σ_h c_h = out_proj(x)."""
    batch, length, width = concatenated.shape
    head_dim = width // num_heads
    heads = concatenated.view(batch, length, num_heads, head_dim)  # (B, L, H, d_head)
    slices = out_proj.weight.view(out_proj.out_features, num_heads, head_dim)  # (D, H, d_head): W_O^h
    parts = torch.einsum("blhe,dhe->blhd", heads, slices)  # (B, L, H, D)
    if out_proj.bias is not None:
        parts = parts + out_proj.bias / num_heads
    return parts


def all_heads(model: nn.Module) -> dict[tuple[str, int], str]:
    """``{(kind, layer): "all"}`` for every attention layer of ``model``."""
    return {(kind, layer): "all" for _, kind, layer in _attention_layers(model)}


@dataclass
class _Target:
    module: MultiHeadAttention
    kind: str
    layer: int
    heads: list[int]


def _resolve(model: nn.Module, heads: dict) -> list[_Target]:
    layers = _attention_layers(model)
    ours = {(kind, layer): module for module, kind, layer in layers if isinstance(module, MultiHeadAttention)}
    if not ours:
        raise ValueError(f"{type(model).__name__} has no attnlab MultiHeadAttention: interventions hook attnlab's "
                         "output projection (torch.nn.MultiheadAttention applies its own inside a fused call); "
                         "load the weights with attnlab.inspection.interop.load_transformer")
    if not isinstance(heads, dict) or not heads:
        raise ValueError('name the heads as {(kind, layer): [head, ...] or "all"}, e.g. {("cross", 1): [0, 2]}')
    kinds = list(dict.fromkeys(kind for kind, _ in ours))
    targets = []
    for key, chosen in heads.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"head keys are (kind, layer) pairs such as ('cross', 1), got {key!r}")
        kind, layer = key
        if kind not in kinds:
            raise ValueError(f"unknown attention kind {kind!r}; this model has: {', '.join(kinds)}")
        count = sum(1 for k, _ in ours if k == kind)
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < count:
            raise ValueError(f"{kind} layer {layer!r} out of range: this model has {kind} layers 0..{count - 1}")
        module = ours[(kind, layer)]
        if chosen == "all":
            chosen = list(range(module.num_heads))
        chosen = list(chosen) if isinstance(chosen, (list, tuple, range)) else [chosen]
        if not chosen:
            raise ValueError(f"{kind} layer {layer}: no heads listed")
        for head in chosen:
            if not isinstance(head, int) or isinstance(head, bool) or not 0 <= head < module.num_heads:
                raise ValueError(f"head {head!r} out of range: {kind} layer {layer} has heads 0..{module.num_heads - 1}")
        targets.append(_Target(module, kind, layer, sorted(set(chosen))))
    return targets


@dataclass
class Intervention:
    """What an installed intervention tells :func:`intervention_effect` about decoding under it."""

    targets: list[_Target]
    full_prefix_only: bool = False  # patching: every call must recompute positions from 0 (no KV cache)
    max_length: int | None = None  # patching: the source run's longest query length


@contextlib.contextmanager
def _replacing(targets: list[_Target], replace: Callable[[_Target, Tensor], Tensor],
               refuse_cache: str | None = None) -> Iterator[None]:
    """Install the out_proj hooks: out = Σ_{h kept} c_h + Σ_{h chosen} replace(target, c)[..., h]."""
    handles = []
    try:
        for target in targets:
            keep = [h for h in range(target.module.num_heads) if h not in target.heads]

            def hook(linear, args, output, target=target, keep=keep):
                parts = head_contributions(args[0], linear, target.module.num_heads)  # (B, L, H, D)
                replaced = replace(target, parts)  # (B, L, len(target.heads), D)
                return parts[:, :, keep].sum(2) + replaced.sum(2)  # (B, L, D)

            handles.append(target.module.out_proj.register_forward_hook(hook))
            if refuse_cache:
                def no_cache(module, args, kwargs):
                    if kwargs.get("cache") is not None:
                        raise ValueError(refuse_cache)
                handles.append(target.module.register_forward_pre_hook(no_cache, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _query_mask(model: nn.Module, kind: str, inputs: tuple, length: int) -> Tensor | None:
    """(B, L) True at real query tokens of ``kind`` in ``inputs`` (token ids), or None if unknown."""
    ids = [t for t in inputs if torch.is_tensor(t) and t.dtype == torch.long]
    if not ids:
        return None
    queries = ids[0] if kind == "encoder_self" else ids[-1]
    pad_id = getattr(getattr(model, "config", None), "pad_id", 0)
    pad_id = pad_id if isinstance(pad_id, int) else 0
    return (queries != pad_id) if queries.shape[-1] == length else None


def _capture(model: nn.Module, targets: list[_Target], inputs: tuple) -> dict[tuple[str, int], Tensor]:
    """Run ``model(*inputs)`` once and keep each target layer's head contributions (B, L, H, D)."""
    captured: dict[tuple[str, int], Tensor] = {}
    handles = []
    for target in targets:
        def hook(linear, args, output, target=target):
            captured[(target.kind, target.layer)] = head_contributions(args[0], linear, target.module.num_heads).detach()
        handles.append(target.module.out_proj.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    missing = [f"{t.kind} {t.layer}" for t in targets if (t.kind, t.layer) not in captured]
    if missing:
        raise ValueError(f"the reference inputs never reached {', '.join(missing)}")
    return captured


@contextlib.contextmanager
def ablate_heads(model: nn.Module, heads: dict, *, mode: str = "zero", reference: tuple | None = None
                 ) -> Iterator[Intervention]:
    """Remove chosen heads' contributions inside the block (``mode`` "zero" or "mean").

    ``reference`` (the inputs of one forward pass, e.g. ``(src_batch, tgt_batch)``) is needed for
    ``mode="mean"``: each head's contribution is averaged over its real (non-PAD) query tokens.

    >>> with ablate_heads(model, {("cross", 0): [1], ("encoder_self", 1): "all"}):
    ...     greedy_decode(model, src)
    """
    if mode not in ABLATION_MODES:
        raise ValueError(f"unknown ablation mode {mode!r}; allowed: {', '.join(ABLATION_MODES)}")
    targets = _resolve(model, heads)
    means: dict[tuple[str, int], Tensor] = {}
    if mode == "mean":
        if reference is None:
            raise ValueError("mode='mean' needs reference=(inputs of one forward pass) to average each head over")
        for key, parts in _capture(model, targets, tuple(reference)).items():
            mask = _query_mask(model, key[0], tuple(reference), parts.shape[1])
            weights = parts.new_ones(parts.shape[:2]) if mask is None else mask.to(parts.dtype)  # (B, L)
            means[key] = (parts * weights[..., None, None]).sum((0, 1)) / weights.sum().clamp(min=1)  # (H, D)

    def replace(target: _Target, parts: Tensor) -> Tensor:
        if mode == "zero":
            return parts.new_zeros(*parts.shape[:2], len(target.heads), parts.shape[-1])
        return means[(target.kind, target.layer)][target.heads].expand(*parts.shape[:2], -1, -1)

    with _replacing(targets, replace):
        yield Intervention(targets)


@contextlib.contextmanager
def patch_heads(model: nn.Module, heads: dict | None = None, *, source_run: tuple) -> Iterator[Intervention]:
    """Activation patching: chosen heads' contributions come from ``source_run`` instead.

    ``source_run`` is the inputs of one forward pass (e.g. ``(src_b, tgt_b)``); ``heads=None``
    patches every head of every layer. Each call inside the block takes the source run's
    contributions at the same positions: the same batch size, the same query length for the
    encoder, and a prefix of it for decoder layers (greedy decoding without the KV cache).

    >>> with patch_heads(model, {("cross", 1): [3]}, source_run=(src_b, tgt_b)):
    ...     patched = model(src_a, tgt_a)
    """
    targets = _resolve(model, all_heads(model) if heads is None else heads)
    stored = _capture(model, targets, tuple(source_run))

    def replace(target: _Target, parts: Tensor) -> Tensor:
        source = stored[(target.kind, target.layer)]  # (B, L_source, H, D)
        batch, length = parts.shape[:2]
        prefix_ok = target.kind != "encoder_self" and length <= source.shape[1]
        if source.shape[0] != batch or not (length == source.shape[1] or prefix_ok):
            raise ValueError(f"patch_heads: {target.kind} layer {target.layer} of the source run has "
                             f"{source.shape[0]} × {source.shape[1]} positions, this call {batch} × {length}; "
                             "patching needs inputs of the same shape")
        return source[:, :length, target.heads]

    longest = max(parts.shape[1] for parts in stored.values())
    message = ("patch_heads needs forward passes that start at position 0; decode with use_cache=False "
               "(the KV cache hides which position a step is at)")
    with _replacing(targets, replace, refuse_cache=message):
        yield Intervention(targets, full_prefix_only=True, max_length=longest)


# --------------------------------------------------------------------------- effect on the output


@dataclass
class InterventionEffect:
    """Greedy output and the reference's log-probability, with and without an intervention."""

    translation: list[int]
    baseline_translation: list[int]
    log_probability: float  # Σ_t log p(reference_t | …) under the intervention (nats)
    baseline_log_probability: float

    @property
    def log_probability_change(self) -> float:
        return self.log_probability - self.baseline_log_probability

    @property
    def translation_changed(self) -> bool:
        return self.translation != self.baseline_translation


def reference_log_probability(model: nn.Module, src: Tensor, reference: Tensor) -> Tensor:
    """Σ_t log p(y_t) of each reference (B, Lt) given sources (B, Ls), teacher-forced; PAD is skipped → (B,)."""
    from ..data import BOS_ID, EOS_ID, PAD_ID

    batch = reference.shape[0]
    bos = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=reference.device)
    decoder_input = torch.cat([bos, reference], dim=1)  # (B, Lt + 1)
    labels = torch.cat([reference, torch.full_like(bos, PAD_ID)], dim=1)  # (B, Lt + 1)
    lengths = (reference != PAD_ID).sum(1)  # EOS goes right after the last real token
    labels[torch.arange(batch), lengths] = EOS_ID
    with torch.no_grad():
        log_probs = torch.log_softmax(model(src, decoder_input).float(), dim=-1)  # (B, Lt + 1, V)
    picked = log_probs.gather(-1, labels[..., None])[..., 0]  # (B, Lt + 1)
    return (picked * (labels != PAD_ID)).sum(1)


def intervention_effect(model: nn.Module, src, reference, intervention: Callable[[], ContextManager[Intervention]]
                        ) -> InterventionEffect:
    """The new greedy translation and the change in the reference's log-probability.

    ``src`` (Ls,): encoder input ending with EOS; ``reference`` (Lt,): the reference target
    without BOS/EOS; ``intervention``: a zero-argument callable returning the ``with`` block,
    e.g. ``lambda: ablate_heads(model, {("cross", 1): [0]})``.
    """
    from ..core.decoding import greedy_decode
    from ..core.model import Transformer

    if not isinstance(model, Transformer):
        raise ValueError(f"intervention_effect translates, so it needs an attnlab Transformer, got {type(model).__name__}")
    device = next(model.parameters()).device
    src = torch.as_tensor(src, dtype=torch.long, device=device).reshape(1, -1)  # (1, Ls)
    reference = torch.as_tensor(reference, dtype=torch.long, device=device).reshape(1, -1)  # (1, Lt)
    was_training = model.training
    model.eval()
    try:
        baseline = greedy_decode(model, src)[0]
        baseline_lp = float(reference_log_probability(model, src, reference)[0])
        with intervention() as installed:
            if installed.full_prefix_only:
                output = greedy_decode(model, src, max_len=installed.max_length, use_cache=False)[0]
            else:
                output = greedy_decode(model, src)[0]
            changed_lp = float(reference_log_probability(model, src, reference)[0])
    finally:
        model.train(was_training)
    return InterventionEffect(output, baseline, changed_lp, baseline_lp)
