"""The attention document (attention.json): its schema, its versions, and the one validator.

Whatever writes an attention document builds it here (:func:`build_document`, which
:mod:`attnlab.inspection.record` calls); whatever reads one — the PNG grids, the HTML page,
the explorer — checks it here (:func:`validate_attention_doc`). The module needs numpy,
not torch, so a document can be read where no model can run. The format (docs/design.md)::

    {"version": 1,
     "source_tokens": ["the", "cat"], "target_tokens": ["le", "chat"],
     "attention": [{"kind": "cross", "layer": 0, "weights": [[[0.9, 0.1], [0.2, 0.8]]]}],
     "translation": "le chat", "source_text": "the cat"}

``weights`` is ``[head][query][key]``: entry ``[h][i][j]`` is α_ij = softmax_j(q_i·k_j / √d_k)
of head h, so every row sums to 1. Which tokens are queries and keys depends on the kind:

=============  ===============  ===============
kind           queries (rows)   keys (columns)
=============  ===============  ===============
encoder_self   source tokens    source tokens
decoder_self   target tokens    target tokens
cross          target tokens    source tokens
=============  ===============  ===============

Weights are rounded to :data:`DIGITS` decimals. ``target_tokens`` may be absent or empty
(an encoder-only model). ``translation`` and ``source_text`` are optional strings.

Versions
--------
``version`` is an integer; a document without one is version 1 (every attention.json written
before the field existed), and reads as such. A version this module does not know is refused
with a message that says so, never half-read. Fields a newer version adds (explanations,
decoding steps) are registered in :data:`OPTIONAL_FIELDS` with the version that introduced
them and a check; :data:`UPGRADES` turns a version-n document into version n+1, so
:func:`upgrade` brings any older document to :data:`VERSION`. Fields nobody registered are
kept and not checked, so a tool may annotate a document.

Version 2 adds two optional fields:

* ``decoding`` — how the target was generated, step by step: ``{"strategy": "greedy" | "beam" |
  "forced", "beam_size": K, "steps": [{"t", "token", "top_k": [{"token", "prob"}, ...],
  "hypotheses": [{"tokens", "score", "finished", "winner_prefix", "final_score"?}, ...]}, ...],
  "winner": i}``. One step per row of the target: step t reads ``target_tokens[t]`` (the decoder
  input, ``<bos>`` first) and emits ``token`` (``target_tokens[t+1]``, ``<eos>`` at the end), so
  row t of ``cross`` and ``decoder_self`` is what step t computed.
* ``explanations`` — relevance maps other than raw attention: ``[{"method", "kind", "layer",
  "matrix" [query][key], "note"?, "completeness_error"?}, ...]``.

    >>> doc = build_document(["a", "b"], None, [{"kind": "encoder_self", "layer": 0,
    ...                                          "weights": [[[0.5, 0.5], [0.25, 0.75]]]}])
    >>> validate_attention_doc(doc); doc["version"]
    2
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

__all__ = [
    "VERSION", "SUPPORTED_VERSIONS", "KINDS", "KIND_SIDES", "DIGITS", "ROW_SUM_TOLERANCE",
    "OPTIONAL_FIELDS", "UPGRADES", "STRATEGIES", "EXPLANATION_METHODS", "MAX_TOP_K",
    "check_decoding", "check_explanations",
    "build_document", "validate_attention_doc", "document_version", "upgrade",
    "kind_tokens", "weights_by_kind", "to_jsonable", "to_json", "read_document", "synthetic_attention_doc",
]

VERSION = 2  # the version build_document writes
KINDS = ("encoder_self", "decoder_self", "cross")  # in the order documents list them
# Which token list plays query (rows) and key (columns) for each kind.
KIND_SIDES = {
    "encoder_self": ("source_tokens", "source_tokens"),
    "decoder_self": ("target_tokens", "target_tokens"),
    "cross": ("target_tokens", "source_tokens"),
}
DIGITS = 6  # decimals kept of each weight
ROW_SUM_TOLERANCE = 1e-5  # |Σ_j α_ij − 1| allowed before rounding; rounding adds ½·10⁻⁶ per key


def _check_string(name: str, value: Any, doc: Mapping | None = None) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")


STRATEGIES = ("greedy", "beam", "forced")
EXPLANATION_METHODS = ("rollout", "flow", "grad_x_input", "integrated_gradients", "value_norm", "raw")
MAX_TOP_K = 10


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def check_decoding(name: str, value: Any, doc: Mapping) -> None:
    """``decoding``: one step per target row, each with its emitted token and top-k; beam hypotheses."""
    _require(isinstance(value, dict), f"{name} must be an object, got {type(value).__name__}")
    strategy, beam_size, steps = value.get("strategy"), value.get("beam_size"), value.get("steps")
    _require(strategy in STRATEGIES, f"{name}.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    _require(isinstance(beam_size, int) and not isinstance(beam_size, bool) and beam_size >= 1,
             f"{name}.beam_size must be an integer >= 1, got {beam_size!r}")
    _require(isinstance(steps, list), f"{name}.steps must be a list, got {type(steps).__name__}")
    rows = len(doc.get("target_tokens") or [])
    _require(len(steps) == rows, f"{name}.steps has {len(steps)} steps but target_tokens has {rows} rows "
                                 "(one step per decoder row)")
    for t, step in enumerate(steps):
        where = f"{name}.steps[{t}]"
        _require(isinstance(step, dict) and step.get("t") == t, f"{where} must be an object with t = {t}")
        _require(isinstance(step.get("token"), str), f"{where}.token must be a string")
        top_k = step.get("top_k")
        _require(isinstance(top_k, list) and 0 < len(top_k) <= MAX_TOP_K,
                 f"{where}.top_k must be a list of 1 to {MAX_TOP_K} {{token, prob}} entries")
        probs = []
        for entry in top_k:
            _require(isinstance(entry, dict) and isinstance(entry.get("token"), str) and _number(entry.get("prob"))
                     and 0.0 <= entry["prob"] <= 1.0, f"{where}.top_k: each entry needs a token and a prob in [0, 1]")
            probs.append(entry["prob"])
        _require(all(a >= b for a, b in zip(probs, probs[1:])), f"{where}.top_k must be sorted by prob, largest first")
        _require(sum(probs) <= 1.0 + ROW_SUM_TOLERANCE + len(probs) * 10.0**-DIGITS,
                 f"{where}.top_k probabilities sum to {sum(probs):.6g} > 1")
        hypotheses = step.get("hypotheses")
        _require((hypotheses is not None) == (strategy == "beam"),
                 f"{where}: hypotheses belong to beam search steps and only to them (strategy {strategy!r})")
        for i, hypothesis in enumerate(hypotheses or []):
            spot = f"{where}.hypotheses[{i}]"
            _require(isinstance(hypothesis, dict), f"{spot} must be an object")
            tokens = hypothesis.get("tokens")
            _require(isinstance(tokens, list) and all(isinstance(x, str) for x in tokens),
                     f"{spot}.tokens must be a list of strings")
            _require(_number(hypothesis.get("score")) and hypothesis["score"] <= ROW_SUM_TOLERANCE,
                     f"{spot}.score must be a log-probability (a finite number <= 0)")
            for flag in ("finished", "winner_prefix"):
                _require(isinstance(hypothesis.get(flag), bool), f"{spot}.{flag} must be true or false")
            if "final_score" in hypothesis:
                _require(_number(hypothesis["final_score"]), f"{spot}.final_score must be a finite number")
    if strategy == "beam":
        final = (steps[-1].get("hypotheses") if steps else None) or []
        winner = value.get("winner")
        _require(isinstance(winner, int) and not isinstance(winner, bool) and 0 <= winner < len(final),
                 f"{name}.winner must index the final step's {len(final)} hypotheses, got {winner!r}")
    else:
        _require("winner" not in value, f"{name}.winner belongs to beam search (strategy {strategy!r})")


def check_explanations(name: str, value: Any, doc: Mapping) -> None:
    """``explanations``: ``[{method, kind, layer, matrix [query][key], note?, completeness_error?}]``."""
    _require(isinstance(value, list), f"{name} must be a list, got {type(value).__name__}")
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        _require(isinstance(item, dict), f"{where} must be an object, got {type(item).__name__}")
        method, kind, layer = item.get("method"), item.get("kind"), item.get("layer")
        _require(method in EXPLANATION_METHODS,
                 f"{where}.method must be one of {', '.join(EXPLANATION_METHODS)}, got {method!r}")
        _require(kind in KINDS, f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        _require(layer is None or (isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0),
                 f"{where}.layer must be null or an integer >= 0, got {layer!r}")
        queries, keys = kind_tokens(doc, kind)
        try:
            matrix = np.asarray(item.get("matrix"), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where}.matrix must be a numeric [query][key] array with rows of equal length") from None
        _require(matrix.shape == (len(queries), len(keys)),
                 f"{where}.matrix shape {matrix.shape} does not match ({len(queries)} queries, {len(keys)} keys) of {kind}")
        _require(bool(np.all(np.isfinite(matrix))), f"{where}.matrix contains NaN or infinity")
        if "note" in item:
            _check_string(f"{where}.note", item["note"])
        if "completeness_error" in item:
            _require(_number(item["completeness_error"]), f"{where}.completeness_error must be a finite number")


# Top-level fields beyond tokens and attention: name → (version that introduced it,
# check(name, value, doc)); doc is the whole document, for checks across fields.
OPTIONAL_FIELDS: dict[str, tuple[int, Callable[[str, Any, Mapping], None]]] = {
    "translation": (1, _check_string),
    "source_text": (1, _check_string),
    "decoding": (2, check_decoding),
    "explanations": (2, check_explanations),
}


def _version_1_to_2(doc: dict) -> dict:
    """Version 2 only adds optional fields: a version-1 document is already a valid version 2."""
    return {**doc, "version": 2}


# UPGRADES[n](doc) returns the version n+1 form of a version-n document (a new dict).
UPGRADES: dict[int, Callable[[dict], dict]] = {1: _version_1_to_2}
SUPPORTED_VERSIONS = tuple(range(1, VERSION + 1))


# --------------------------------------------------------------------------- versions


def document_version(doc: Mapping) -> int:
    """The version of ``doc``: its ``version`` field, or 1 when it has none.

    >>> document_version({"source_tokens": [], "attention": []})
    1
    """
    version = doc.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"version must be an integer, got {version!r}")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unknown attention document version {version}; this attnlab reads versions "
                         f"{SUPPORTED_VERSIONS[0]} to {SUPPORTED_VERSIONS[-1]} (was it written by a newer attnlab?)")
    return version


def upgrade(doc: Mapping) -> dict:
    """A copy of ``doc`` in the current :data:`VERSION`, with ``version`` set.

    >>> upgrade({"source_tokens": ["a"], "attention": []})["version"]
    2
    """
    version = document_version(doc)
    doc = dict(doc)
    while version < VERSION:
        doc = UPGRADES[version](doc)
        version += 1
    doc["version"] = VERSION
    return doc


# --------------------------------------------------------------------------- building


def kind_tokens(doc: Mapping, kind: str) -> tuple[list[str], list[str]]:
    """``(query_tokens, key_tokens)`` of one attention kind of ``doc``.

    >>> kind_tokens({"source_tokens": ["a", "b"], "target_tokens": ["x"]}, "cross")
    (['x'], ['a', 'b'])
    """
    if kind not in KIND_SIDES:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {', '.join(KINDS)}")
    query_field, key_field = KIND_SIDES[kind]
    return list(doc.get(query_field) or []), list(doc.get(key_field) or [])


def build_document(source_tokens: Iterable[str], target_tokens: Iterable[str] | None,
                   attention: Iterable[Mapping], *, digits: int | None = DIGITS, **fields: Any) -> dict:
    """A validated document of the current version from tokens and ``{kind, layer, weights}`` entries.

    ``weights`` of each entry is any array-like ``(heads, queries, keys)`` (numpy, nested
    lists); it is rounded to ``digits`` decimals (None: kept exact). Entries are put in the
    canonical order (kind as in :data:`KINDS`, then layer). ``target_tokens=None`` leaves the
    field out; ``fields`` adds optional top-level fields such as ``translation``. Rows that are
    all zero (a query whose every key was masked) are allowed.

    >>> doc = build_document(["a"], None, [{"kind": "encoder_self", "layer": 0, "weights": [[[1.0]]]}])
    """
    entries = []
    for entry in attention:
        try:
            weights = np.asarray(entry["weights"], dtype=np.float64)  # (H, Lq, Lk)
        except (KeyError, TypeError, ValueError):  # not an array: validation below names the fault
            entries.append(dict(entry))
            continue
        entries.append({**entry, "weights": weights if digits is None else np.round(weights, digits)})
    doc = {"version": VERSION, "source_tokens": list(source_tokens)}
    if target_tokens is not None:
        doc["target_tokens"] = list(target_tokens)
    doc["attention"] = entries
    doc.update(fields)
    validate_attention_doc(doc, allow_zero_rows=True)  # on the arrays: cheaper than on nested lists
    for entry in entries:
        entry["weights"] = entry["weights"].tolist()  # [head][query][key], plain JSON
    entries.sort(key=lambda e: (KINDS.index(e["kind"]), e["layer"]))
    return doc


# --------------------------------------------------------------------------- validation


def validate_attention_doc(doc: Any, *, allow_zero_rows: bool = False) -> None:
    """Raise ``ValueError`` with a precise message if ``doc`` is not a valid attention document.

    Checks: a known version (none = 1); token lists are lists of strings; every entry has a
    known kind, an integer layer >= 0 and rectangular ``(heads, queries, keys)`` weights whose
    shape matches the token counts of its kind; each (kind, layer) appears once and all layers
    of a kind have the same number of heads; weights are finite and non-negative; every row
    sums to 1 within :data:`ROW_SUM_TOLERANCE` plus the rounding of its keys (an exactly-zero
    row, a query whose keys were all masked, only with ``allow_zero_rows=True``);
    ``decoder_self`` is zero above the diagonal (a token never sees the future); registered
    optional fields have their type and belong to the document's version.

    >>> validate_attention_doc({"source_tokens": ["a"], "attention": [
    ...     {"kind": "encoder_self", "layer": 0, "weights": [[[1.0]]]}]})
    """
    if not isinstance(doc, dict):
        raise ValueError(f"attention document must be a JSON object, got {type(doc).__name__}")
    version = document_version(doc)
    for name in ("source_tokens", "target_tokens"):
        _check_tokens(doc, name)
    for name, (since, check) in OPTIONAL_FIELDS.items():
        if name in doc:
            if version < since:
                raise ValueError(f"{name} belongs to version {since} documents, but this one is version {version}")
            check(name, doc[name], doc)
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
            raise ValueError(f"attention[{index}]: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        layer = entry.get("layer")
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
            raise ValueError(f"attention[{index}] ({kind}): layer must be an integer >= 0, got {layer!r}")
        where = f"attention[{index}] ({kind}, layer {layer})"
        if (kind, layer) in seen:
            raise ValueError(f"{where}: duplicate entry for this kind and layer")
        seen.add((kind, layer))
        heads = _check_weights(doc, entry.get("weights"), kind, where, allow_zero_rows)
        if heads_of_kind.setdefault(kind, heads) != heads:
            raise ValueError(f"{where}: has {heads} heads but earlier {kind} layers have {heads_of_kind[kind]}")


def _check_tokens(doc: dict, name: str) -> None:
    if name not in doc or doc[name] is None:
        if name == "target_tokens":
            return  # encoder-only models have no target
        raise ValueError(f"{name} is missing: the document needs the list of its {name.split('_')[0]} tokens")
    tokens = doc[name]
    if not isinstance(tokens, (list, tuple)):
        raise ValueError(f"{name} must be a list of strings, got {type(tokens).__name__}")
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(token).__name__}")


def _check_weights(doc: dict, raw: Any, kind: str, where: str, allow_zero_rows: bool) -> int:
    """Check one entry's weights; return its number of heads."""
    query_tokens, key_tokens = kind_tokens(doc, kind)
    query_side, key_side = (side.split("_")[0] for side in KIND_SIDES[kind])
    if raw is None:
        raise ValueError(f"{where}: weights are missing")
    try:
        weights = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: weights must be a numeric [head][query][key] array with rows of equal "
                         "length (found rows of different lengths or values that are not numbers)") from None
    expected = (len(query_tokens), len(key_tokens))
    if not expected[0] or not expected[1]:
        missing = query_side if not expected[0] else key_side
        raise ValueError(f"{where}: {kind} needs {missing} tokens, but {missing}_tokens is empty")
    if weights.ndim != 3 or weights.shape[0] == 0 or weights.shape[1:] != expected:
        raise ValueError(f"{where}: weights shape {weights.shape} does not match (heads, {expected[0]} "
                         f"{query_side} tokens, {expected[1]} {key_side} tokens)")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{where}: weights contain NaN or infinity")
    if weights.min() < -ROW_SUM_TOLERANCE:
        head, query, key = np.unravel_index(np.argmin(weights), weights.shape)
        raise ValueError(f"{where}: negative weight {weights[head, query, key]:.6g} at head {head}, "
                         f"query {query}, key {key}")
    sums = weights.sum(axis=-1)  # (H, Lq)
    tolerance = ROW_SUM_TOLERANCE + expected[1] * 0.5 * 10.0**-DIGITS  # rounding moves each weight ≤ ½·10⁻ᴰ
    bad = np.abs(sums - 1.0) > tolerance
    if allow_zero_rows:
        bad &= ~np.all(weights == 0.0, axis=-1)
    if bad.any():
        head, query = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where}: row of head {head}, query {query} ({query_tokens[query]!r}) sums to "
                         f"{sums[head, query]:.6g}; every row must sum to 1 within {ROW_SUM_TOLERANCE:g} "
                         f"(plus {DIGITS}-decimal rounding)")
    if kind == "decoder_self":
        future = np.triu(np.ones(expected, dtype=bool), k=1)  # (Lt, Lt), True above the diagonal
        leaked = np.argwhere(np.abs(weights[:, future]) > ROW_SUM_TOLERANCE)
        if len(leaked):
            head = int(leaked[0][0])
            query, key = (int(i) for i in np.argwhere(future)[leaked[0][1]])
            raise ValueError(f"{where}: head {head}, query {query} attends to future key {key} "
                             f"(weight {weights[head, query, key]:.6g}); decoder_self must be zero above the diagonal")
    return weights.shape[0]


# --------------------------------------------------------------------------- reading


def weights_by_kind(doc: Mapping) -> dict[str, list[np.ndarray]]:
    """The entries of ``doc["attention"]`` grouped by kind (in :data:`KINDS` order), each list by layer.

    Every array has shape ``(heads, Lq, Lk)``.
    """
    grouped: dict[str, list[tuple[int, np.ndarray]]] = {}
    for entry in doc.get("attention", []):
        weights = np.asarray(entry["weights"], dtype=np.float64)
        grouped.setdefault(entry["kind"], []).append((int(entry["layer"]), weights))
    return {kind: [w for _, w in sorted(grouped[kind], key=lambda pair: pair[0])]
            for kind in KINDS if kind in grouped}


def read_document(path: str | os.PathLike) -> dict:
    """Read an attention.json file, validate it, and return it upgraded to the current version.

    >>> doc = read_document("attn/attention.json")
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    try:
        validate_attention_doc(doc, allow_zero_rows=True)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return upgrade(doc)


# --------------------------------------------------------------------------- JSON


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars, tensors and tuples turned into plain JSON types."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # e.g. a CPU torch.Tensor, without importing torch
        return value.tolist()
    return value


def to_json(doc: Mapping) -> str:
    """The JSON text of a document: strict JSON (no NaN), ASCII only (non-ASCII as ``\\uXXXX``).

    >>> to_json({"source_tokens": ["été"], "attention": []})
    '{"source_tokens": ["\\u00e9t\\u00e9"], "attention": []}'
    """
    return json.dumps(to_jsonable(doc), allow_nan=False)


# --------------------------------------------------------------------------- a document without a model


def synthetic_attention_doc(source_tokens: list[str], target_tokens: list[str] | None = None, *,
                            num_layers: int = 2, num_heads: int = 4, seed: int = 0) -> dict:
    """A valid document with random softmax rows, for demos and tests without a model.

    ``decoder_self`` is causal (zero above the diagonal); with no target only ``encoder_self``
    is produced, like an encoder-only model.

    >>> doc = synthetic_attention_doc(["the", "cat"], ["le", "chat"], num_layers=1, num_heads=2)
    """
    rng = np.random.default_rng(seed)

    def softmax_rows(num_queries: int, num_keys: int, causal: bool = False) -> np.ndarray:
        scores = rng.normal(scale=2.0, size=(num_heads, num_queries, num_keys))  # (H, Lq, Lk)
        if causal:
            scores[:, np.triu(np.ones((num_queries, num_keys), dtype=bool), k=1)] = -np.inf
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return weights / weights.sum(axis=-1, keepdims=True)

    src, tgt = len(source_tokens), len(target_tokens or [])
    attention = [{"kind": "encoder_self", "layer": layer, "weights": softmax_rows(src, src)}
                 for layer in range(num_layers)]
    if target_tokens:
        for layer in range(num_layers):
            attention.append({"kind": "decoder_self", "layer": layer, "weights": softmax_rows(tgt, tgt, causal=True)})
            attention.append({"kind": "cross", "layer": layer, "weights": softmax_rows(tgt, src)})
    return build_document(source_tokens, target_tokens or None, attention, digits=None)
