"""The attention.json document: reading it, checking it, making it JSON-safe.

Every view in :mod:`attnlab.viz` (PNG grids, the HTML page, the explorer) works from
this one plain-data format, described in DESIGN.md::

    {"source_tokens": ["the", "cat"], "target_tokens": ["le", "chat"],
     "attention": [{"kind": "cross", "layer": 0, "weights": [[[0.9, 0.1], [0.2, 0.8]]]}]}

``weights`` is ``[head][query][key]``. Which tokens are queries and keys depends on the kind:

=============  ===============  ===============
kind           queries (rows)   keys (columns)
=============  ===============  ===============
encoder_self   source tokens    source tokens
decoder_self   target tokens    target tokens
cross          target tokens    source tokens
=============  ===============  ===============
"""

from __future__ import annotations

from typing import Any

import numpy as np

KINDS = ("encoder_self", "decoder_self", "cross")
ROW_SUM_TOLERANCE = 1e-5
# Which token list plays query (rows) and key (columns) for each kind.
_KIND_SIDES = {
    "encoder_self": ("source_tokens", "source_tokens"),
    "decoder_self": ("target_tokens", "target_tokens"),
    "cross": ("target_tokens", "source_tokens"),
}


def kind_tokens(doc: dict, kind: str) -> tuple[list[str], list[str]]:
    """Return ``(query_tokens, key_tokens)`` for one attention kind of ``doc``.

    >>> kind_tokens({"source_tokens": ["a", "b"], "target_tokens": ["x"]}, "cross")
    (['x'], ['a', 'b'])
    """
    if kind not in _KIND_SIDES:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {', '.join(KINDS)}")
    query_key, key_key = _KIND_SIDES[kind]
    return list(doc.get(query_key) or []), list(doc.get(key_key) or [])


def weights_by_kind(doc: dict) -> dict[str, list[np.ndarray]]:
    """Group the entries of ``doc["attention"]`` by kind, each list ordered by layer.

    Every array has shape ``(heads, Lq, Lk)``. Kinds appear in the canonical order of ``KINDS``.
    """
    grouped: dict[str, list[tuple[int, np.ndarray]]] = {}
    for entry in doc.get("attention", []):
        weights = np.asarray(entry["weights"], dtype=np.float64)
        grouped.setdefault(entry["kind"], []).append((int(entry["layer"]), weights))
    return {
        kind: [w for _, w in sorted(grouped[kind], key=lambda pair: pair[0])]
        for kind in KINDS
        if kind in grouped
    }


def validate_attention_doc(doc: Any, *, allow_zero_rows: bool = False) -> None:
    """Raise ``ValueError`` with a precise message if ``doc`` is not a valid attention.json.

    Checks: token lists are lists of strings; every entry has a known kind, a layer number and
    ``(heads, queries, keys)`` weights whose shape matches the token counts of its kind; each
    (kind, layer) appears once and all layers of a kind have the same number of heads; weights
    are finite and non-negative; every row sums to 1 within 1e-5 (an exactly-zero row, a query
    whose keys were all masked, is accepted only with ``allow_zero_rows=True``); ``decoder_self``
    is zero above the diagonal (a token never sees the future).

    >>> validate_attention_doc({"source_tokens": ["a"], "attention": [
    ...     {"kind": "encoder_self", "layer": 0, "weights": [[[1.0]]]}]})
    """
    if not isinstance(doc, dict):
        raise ValueError(f"attention document must be a JSON object, got {type(doc).__name__}")
    for key in ("source_tokens", "target_tokens"):
        tokens = doc.get(key)
        if tokens is None and key == "target_tokens":
            continue  # encoder-only models have no target
        if not isinstance(tokens, (list, tuple)):
            raise ValueError(f"{key} must be a list of strings, got {type(tokens).__name__}")
        for i, token in enumerate(tokens):
            if not isinstance(token, str):
                raise ValueError(f"{key}[{i}] must be a string, got {type(token).__name__}")
    entries = doc.get("attention")
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError("attention must be a non-empty list of {kind, layer, weights} entries")

    seen: set[tuple[str, int]] = set()
    heads_of_kind: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"attention[{index}] must be an object, got {type(entry).__name__}")
        kind = entry.get("kind")
        if kind not in KINDS:
            raise ValueError(
                f"attention[{index}]: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
            )
        layer = entry.get("layer")
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
            raise ValueError(f"attention[{index}] ({kind}): layer must be an integer >= 0, got {layer!r}")
        where = f"attention[{index}] ({kind}, layer {layer})"
        if (kind, layer) in seen:
            raise ValueError(f"{where}: duplicate entry for this kind and layer")
        seen.add((kind, layer))
        _check_weights(doc, entry.get("weights"), kind, where, allow_zero_rows)
        heads = len(entry["weights"])
        if heads_of_kind.setdefault(kind, heads) != heads:
            raise ValueError(
                f"{where}: has {heads} heads but earlier {kind} layers have {heads_of_kind[kind]}"
            )


def _check_weights(doc: dict, raw: Any, kind: str, where: str, allow_zero_rows: bool) -> None:
    query_tokens, key_tokens = kind_tokens(doc, kind)
    query_name, key_name = (side.split("_")[0] for side in _KIND_SIDES[kind])
    try:
        weights = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: weights must be a numeric [head][query][key] array ({error})") from None
    expected = (len(query_tokens), len(key_tokens))
    if weights.ndim != 3 or weights.shape[0] == 0 or weights.shape[1:] != expected:
        raise ValueError(
            f"{where}: weights shape {weights.shape} does not match (heads, {expected[0]} "
            f"{query_name} tokens, {expected[1]} {key_name} tokens)"
        )
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{where}: weights contain NaN or infinity")
    if weights.min() < -ROW_SUM_TOLERANCE:
        head, query, key = np.unravel_index(np.argmin(weights), weights.shape)
        raise ValueError(
            f"{where}: negative weight {weights[head, query, key]:.6g} at head {head}, "
            f"query {query}, key {key}"
        )
    sums = weights.sum(axis=-1)  # (heads, Lq)
    bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if allow_zero_rows:
        bad &= ~np.all(weights == 0.0, axis=-1)
    if bad.any():
        head, query = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{where}: row of head {head}, query {query} ({query_tokens[query]!r}) sums to "
            f"{sums[head, query]:.6g}; every row must sum to 1 within {ROW_SUM_TOLERANCE:g}"
        )
    if kind == "decoder_self":
        future = np.triu(np.ones(expected, dtype=bool), k=1)  # (Lt, Lt), True above diagonal
        leaked = np.argwhere(np.abs(weights[:, future]) > ROW_SUM_TOLERANCE)
        if len(leaked):
            head = int(leaked[0][0])
            query, key = (int(i) for i in np.argwhere(future)[leaked[0][1]])
            raise ValueError(
                f"{where}: head {head}, query {query} attends to future key {key} "
                f"(weight {weights[head, query, key]:.6g}); decoder_self must be zero above the diagonal"
            )


def to_jsonable(value: Any) -> Any:
    """Turn numpy arrays/scalars and tuples inside ``value`` into plain JSON types."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # e.g. a CPU torch.Tensor
        return value.tolist()
    return value


def synthetic_attention_doc(source_tokens: list[str], target_tokens: list[str] | None = None, *,
                            num_layers: int = 2, num_heads: int = 4, seed: int = 0) -> dict:
    """A valid attention.json with random softmax rows, for demos and tests without a model.

    ``decoder_self`` is causal (zero above the diagonal); with no target only ``encoder_self``
    is produced, like an encoder-only model.

    >>> doc = synthetic_attention_doc(["the", "cat"], ["le", "chat"], num_layers=1, num_heads=2)
    """
    rng = np.random.default_rng(seed)

    def softmax_rows(num_queries: int, num_keys: int, causal: bool = False) -> list:
        scores = rng.normal(scale=2.0, size=(num_heads, num_queries, num_keys))  # (H, Lq, Lk)
        if causal:
            scores[:, np.triu(np.ones((num_queries, num_keys), dtype=bool), k=1)] = -np.inf
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return (weights / weights.sum(axis=-1, keepdims=True)).tolist()

    src, tgt = len(source_tokens), len(target_tokens or [])
    attention = [{"kind": "encoder_self", "layer": layer, "weights": softmax_rows(src, src)}
                 for layer in range(num_layers)]
    if target_tokens:
        for layer in range(num_layers):
            attention.append({"kind": "decoder_self", "layer": layer,
                              "weights": softmax_rows(tgt, tgt, causal=True)})
            attention.append({"kind": "cross", "layer": layer, "weights": softmax_rows(tgt, src)})
    doc = {"source_tokens": list(source_tokens), "attention": attention}
    if target_tokens:
        doc["target_tokens"] = list(target_tokens)
    return doc
