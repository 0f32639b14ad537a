"""Explanations and head ablation for the attention document of one sentence (attend, explore).

Two things the command line and the explorer add to what :class:`~attnlab.inspection.inference.Analyzer`
returns:

* :func:`explanations_field` — the ``"explanations"`` list of an attention document (version 2,
  checked by :func:`attnlab.document.check_explanations`): the maps of :func:`~attnlab.inspection.explain.explain_all`
  on the same tokens as the document, rows = the document's queries, columns = its keys.
  ``raw`` and ``value_norm`` give one map per layer, ``rollout`` one per layer (the rollout up
  to and including that layer), ``flow`` and the gradient methods one map for the whole model
  (``"layer": null``). Integrated gradients carries ``completeness_error`` = max_i |Σ_j a_ij − Δf_i|
  over the rows (nats).
* :class:`HeadAblation` — ``ablation(text, target, beam, heads)``: the document of the sentence
  with the chosen heads' outputs zeroed (:func:`~attnlab.inspection.interventions.ablate_heads`,
  only inside the call), its ``translation``, ``logprob_change`` = log p_ablated(y) − log p(y) of
  the un-ablated output y (or the forced target), and ``ablated``, the heads.

    >>> doc["explanations"] = explanations_field(analyzer, doc, "the cat sleeps .", None, 1, "rollout,ig")
    >>> HeadAblation(translator)("the cat sleeps .", None, 1, [{"kind": "cross", "layer": 1, "head": 0}])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..document import DIGITS, kind_tokens
from .explain import Explanation, explain_all, parse_methods

__all__ = ["explanations_field", "explanation_entries", "HeadAblation", "NOTES"]

NOTES = {
    "raw": "head-mean attention weights of each layer",
    "rollout": "head-mean attention + identity, renormalised, multiplied through the layers "
               "(translation: decoder rollout through cross-attention composed with the encoder's rollout)",
    "flow": "attention flow: max-flow from each output to each input through the layered attention graph",
    "grad_x_input": "gradient × input on the input embeddings: Σ_d e_jd ∂ log p(y_i)/∂e_jd (Captum)",
    "integrated_gradients": "integrated gradients from the zero embedding (Captum); completeness_error: the "
                            "largest |Σ_j a_ij − Δ log p(y_i)| over the rows",
    "value_norm": "‖Σ_h α_ij f_h(x_j)‖ of each layer (Kobayashi et al., 2020)",
}


def _matrix(values) -> list[list[float]]:
    return np.round(np.asarray(torch.as_tensor(values).detach().float().cpu(), dtype=np.float64), DIGITS).tolist()


def explanation_entries(results: dict[str, Explanation], kind: str) -> list[dict]:
    """Explanations → the document's entries (see the module docstring for which have layers)."""
    entries = []
    for method, result in results.items():
        base = {"method": method, "kind": kind, "note": NOTES[method]}
        if method in ("raw", "rollout", "value_norm") and result.layers is not None:
            entries += [{**base, "layer": layer, "matrix": _matrix(matrix)}
                        for layer, matrix in enumerate(result.layers)]
            if method == "rollout" and "encoder" in result.extras:  # translation: the encoder's own rollout too
                entries += [{**base, "kind": "encoder_self", "layer": layer, "matrix": _matrix(matrix)}
                            for layer, matrix in enumerate(result.extras["encoder"])]
            continue
        entry = {**base, "layer": None, "matrix": _matrix(result.relevance)}
        if result.completeness_error is not None:
            entry["completeness_error"] = round(float(result.completeness_error.abs().max()), DIGITS)
        entries.append(entry)
    return entries


def _translation_inputs(translator, text: str, target: str | None, beam: int) -> tuple[list[int], list[int], list[int]]:
    """(source ids ending with EOS, decoder input starting with BOS, the output) as ``Translator.attention`` uses."""
    from ..data import BOS_ID, source_ids

    src = source_ids(translator.encode(text))
    if target is None or not target.strip():
        output = translator.translate_ids([text], beam=beam)[0]
    else:
        output = translator.target.encode(target)
    return src, [BOS_ID] + list(output), list(output)


def explanations_field(analyzer, doc: dict, text: str, target: str | None, beam: int,
                       methods: str | Sequence[str]) -> list[dict]:
    """The ``"explanations"`` of ``doc`` (what ``analyzer(text, target, beam)`` returned) for ``methods``.

    Raises ``ValueError`` for an unknown method (listing them), flow over its length limit, or a
    method the model type cannot support (saying why).
    """
    from .inference import Translator

    names = parse_methods(methods)
    model = getattr(analyzer, "model", None)
    if isinstance(model, Translator):
        src, decoder_input, output = _translation_inputs(model, text, target, beam)
        source_tokens, target_tokens = model.source.tokens(src), model.target.tokens(decoder_input)
        if source_tokens != doc["source_tokens"] or target_tokens != doc.get("target_tokens"):
            raise RuntimeError("the explained tokens differ from the document's")  # a bug, not bad input
        results = explain_all(model.model, src, decoder_input, methods=names, source_tokens=source_tokens,
                              target_tokens=target_tokens)
        kind = "cross"
    elif model is not None:  # the pretrained encoder (minilm)
        results = explain_all(model, text, methods=names)
        kind = "encoder_self"
    else:
        raise ValueError(f"{getattr(analyzer, 'name', 'this model')} cannot be explained (no model behind it)")
    entries = explanation_entries(results, kind)
    for entry in entries:
        queries, keys = kind_tokens(doc, entry["kind"])
        if np.shape(entry["matrix"]) != (len(queries), len(keys)):
            raise ValueError(f"{entry['method']}: the model read {np.shape(entry['matrix'])[1]} tokens but the "
                             f"document has {len(keys)} (was the text truncated?)")
    return entries


def supports_ablation(analyzer) -> bool:
    """Whether ``analyzer`` translates with an attnlab Transformer (heads can be ablated and re-translated)."""
    from .inference import Translator

    return isinstance(getattr(analyzer, "model", None), Translator)


class HeadAblation:
    """``ablation(text, target, beam, heads) -> document + translation + logprob_change + ablated``.

    ``heads``: ``[{"kind", "layer", "head"}, ...]``; ``[]`` gives the plain document (change 0).
    The heads are zeroed only while this call runs (a ``with ablate_heads(...)`` block).
    """

    def __init__(self, translator):
        self.translator = translator

    def __call__(self, text: str, target: str | None, beam: int, heads: list[dict]) -> dict:
        from ..data import source_ids
        from .interventions import ablate_heads, reference_log_probability

        translator = self.translator
        chosen: dict[tuple[str, int], list[int]] = {}
        for head in heads:
            chosen.setdefault((head["kind"], head["layer"]), []).append(head["head"])
        plain = translator.attention(text, target, beam)
        if not chosen:
            return {**plain, "logprob_change": 0.0, "ablated": []}
        model = translator.model
        device = next(model.parameters()).device
        src = torch.tensor([source_ids(translator.encode(text))], device=device)  # (1, Ls)
        reference = _translation_inputs(translator, text, target, beam)[2]
        reference = torch.tensor([reference], dtype=torch.long, device=device)  # (1, Lt)
        before = float(reference_log_probability(model, src, reference)[0])
        with ablate_heads(model, chosen, mode="zero"):  # validates kinds, layers and heads (ValueError)
            ablated = translator.attention(text, target, beam)
            after = float(reference_log_probability(model, src, reference)[0])
        listed = [{"kind": kind, "layer": layer, "head": head}
                  for (kind, layer), numbers in chosen.items() for head in sorted(set(numbers))]
        return {**ablated, "logprob_change": round(after - before, DIGITS), "ablated": listed}
