"""Two models side by side: the same sentence through both, and where their attention differs.

The lecture's "compare fixed vs learned positional encodings" and "change the number of encoder
blocks" are one picture: run A and run B read the same source and the same target, and for every
kind and every layer both have, the difference of their head-mean maps is

    D = mean_h α_B[h] − mean_h α_A[h]        (queries × keys; positive: B attends more)

Where the two runs split the text into the same tokens, D is compared token by token. Where they
tokenize differently (another vocabulary, BPE against words), it is compared **word by word**: each
whitespace-separated word of the text is one unit; a key word's weight is the *sum* of its pieces'
weights (so a row still sums to 1) and a query word's row is the *mean* of its pieces' rows; a
special token (``<bos>``, ``<eos>``, ``[CLS]``…) is a unit of its own, kept when both runs have it.

The payload (what the page reads under ``"compare"``) holds both documents, the level,
the merge rule, the differences and the unit labels. This module needs numpy only; the models
are reached through ``analyze(text, target, beam)`` callables (:func:`compare_runs`).

    >>> payload = compare_documents(doc_a, doc_b, labels=["runs/a", "runs/b"], source_text="the cat")
    >>> payload["differences"][0]["kind"], payload["level"]
    ('encoder_self', 'token')
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import numpy as np

from .. import document

__all__ = ["MERGE_RULE", "SPECIAL_TOKENS", "token_units", "merge_to_units", "compare_documents",
           "compare_runs", "validate_compare"]

MERGE_RULE = ("each whitespace-separated word of the text is one unit: a key word's weight is the sum of its "
              "pieces' weights, a query word's row is the mean of its pieces' rows; a special token is a unit "
              "of its own, kept when both runs have it")
TOKEN_RULE = "both runs split the text into the same tokens: compared token by token"
SPECIAL_TOKENS = frozenset({"<pad>", "<bos>", "<eos>", "<s>", "</s>", "[CLS]", "[SEP]", "[PAD]", "[MASK]"})
UNKNOWN_TOKENS = frozenset({"<unk>", "[UNK]"})
_PIECE_MARKS = re.compile(r"^(##|▁|Ġ)")

Unit = tuple  # ("word", index) or ("special", name, occurrence)
Analyze = Callable[[str, "str | None", int], dict]


# --------------------------------------------------------------------------- tokens → words


def token_units(tokens: Sequence[str], text: str) -> tuple[list[Unit], dict[Unit, str]]:
    """The unit of each token of ``text``, and each unit's label.

    A piece is found in the text (case-insensitively, after its word-start mark ``▁``/``Ġ``/``##``)
    from where the previous one ended, and belongs to the whitespace-separated word it starts in; an
    unknown piece (``<unk>``) takes the run of word characters at that point.

    >>> token_units(["the", "ca", "ts", "<eos>"], "the cats")[0]
    [('word', 0), ('word', 1), ('word', 1), ('special', '<eos>', 0)]
    """
    words = [(match.start(), match.end(), match.group()) for match in re.finditer(r"\S+", text)]
    lowered = text.lower()

    def word_at(position: int) -> int:
        for index, (start, end, _) in enumerate(words):
            if position < end:
                return index
        return len(words) - 1

    units, labels, cursor, seen_special = [], {}, 0, {}
    for token in tokens:
        if token in SPECIAL_TOKENS:
            unit = ("special", token, seen_special.get(token, 0))
            seen_special[token] = unit[2] + 1
            units.append(unit)
            labels[unit] = token
            continue
        piece = _PIECE_MARKS.sub("", token).strip().lower()
        found = lowered.find(piece, cursor) if piece and token not in UNKNOWN_TOKENS else -1
        if found >= 0 and lowered[cursor:found].strip() == "":  # the very next thing in the text
            position, cursor = found, found + len(piece)
        elif not piece:  # a piece that is only a space (BPE's "Ġ"): it belongs to the word after it
            position = cursor + len(text[cursor:]) - len(text[cursor:].lstrip())
        else:  # <unk>, or bytes that do not print: the word-ish run at the cursor
            while cursor < len(text) and text[cursor].isspace():
                cursor += 1
            position = cursor
            match = re.compile(r"[\w'’]+|\S").match(text, cursor)
            cursor = match.end() if match else cursor
        if not words:
            raise ValueError(f"token {token!r} has no word of the text {text!r} to belong to")
        unit = ("word", word_at(position))
        units.append(unit)
        labels[unit] = words[unit[1]][2]
    return units, labels


def merge_to_units(matrix: np.ndarray, query_units: Sequence[Unit], key_units: Sequence[Unit],
                   queries: Sequence[Unit], keys: Sequence[Unit]) -> np.ndarray:
    """(Lq, Lk) token map → (len(queries), len(keys)) unit map: key pieces summed, query rows averaged.

    >>> merge_to_units(np.array([[0.5, 0.5]]), [("word", 0)], [("word", 0), ("word", 0)], [("word", 0)], [("word", 0)])
    array([[1.]])
    """
    key_sum = np.zeros((len(key_units), len(keys)))  # (Lk, Uk): 1 where piece j belongs to unit v
    query_mean = np.zeros((len(queries), len(query_units)))  # (Uq, Lq): 1/|u| where piece i is in unit u
    key_index, query_index = {u: i for i, u in enumerate(keys)}, {u: i for i, u in enumerate(queries)}
    for j, unit in enumerate(key_units):
        if unit in key_index:
            key_sum[j, key_index[unit]] = 1.0
    for i, unit in enumerate(query_units):
        if unit in query_index:
            query_mean[query_index[unit], i] = 1.0
    counts = query_mean.sum(axis=1, keepdims=True)
    if np.any(counts == 0):
        raise ValueError("a unit to compare has no token in one of the documents")
    return (query_mean / counts) @ matrix @ key_sum  # (Uq, Lq) @ (Lq, Lk) @ (Lk, Uk)


# --------------------------------------------------------------------------- the payload


def _head_means(doc: Mapping) -> dict[tuple[str, int], np.ndarray]:
    return {(entry["kind"], int(entry["layer"])): np.asarray(entry["weights"], dtype=np.float64).mean(axis=0)
            for entry in doc["attention"]}  # (Lq, Lk) per (kind, layer)


def _common(units_a: Sequence[Unit], units_b: Sequence[Unit]) -> list[Unit]:
    """The units of both sequences, in A's order (each once)."""
    in_b = set(units_b)
    return [u for u in dict.fromkeys(units_a) if u in in_b]


def compare_documents(doc_a: Mapping, doc_b: Mapping, *, labels: Sequence[str] = ("A", "B"),
                      source_text: str | None = None, target_text: str | None = None,
                      translations: Sequence[str] | None = None, note: str | None = None) -> dict:
    """The compare payload of two attention documents of the same sentence (differences B − A).

    Token level when both documents have the same source and target tokens; word level
    otherwise, which needs the texts (default: each document's ``source_text`` and A's
    ``translation``). A kind whose units differ between the runs (say, different targets) gets
    no difference map, and the note says so.
    """
    docs = [document.upgrade(document.to_jsonable(dict(d))) for d in (doc_a, doc_b)]
    for label, doc in zip(labels, docs):
        try:
            document.validate_attention_doc(doc, allow_zero_rows=True)
        except ValueError as error:
            raise ValueError(f"{label}: {error}") from None
    sides = ("source_tokens", "target_tokens")
    same_tokens = all(list(docs[0].get(side) or []) == list(docs[1].get(side) or []) for side in sides)
    texts = {"source_tokens": source_text or docs[0].get("source_text") or "",
             "target_tokens": target_text if target_text is not None else docs[0].get("translation") or ""}
    units: dict[str, list[list[Unit]]] = {}  # side → [A's unit per token, B's unit per token]
    unit_labels: dict[Unit, str] = {}
    for side in sides:
        units[side] = []
        for doc in docs:
            tokens = list(doc.get(side) or [])
            if same_tokens:
                found, names = [("token", i) for i in range(len(tokens))], {("token", i): t for i, t in enumerate(tokens)}
            else:
                try:
                    found, names = token_units(tokens, texts[side])
                except ValueError:  # no text to place these tokens in (an empty output): nothing to match
                    found = [("unplaced", len(units[side]), i) for i in range(len(tokens))]
                    names = {unit: token for unit, token in zip(found, tokens)}
            units[side].append([(side, *u) for u in found])
            unit_labels.update({(side, *u): name for u, name in names.items()})
    shared = {side: _common(*units[side]) for side in sides}

    def words_match(side: str) -> bool:  # specials only one run has are left out; words must all be there
        return {u for u in units[side][0] if u[1] != "special"} == {u for u in units[side][1] if u[1] != "special"}

    means = [_head_means(doc) for doc in docs]
    differences, skipped = [], []
    for kind, layer in sorted(set(means[0]) & set(means[1]),
                              key=lambda pair: (document.KINDS.index(pair[0]), pair[1])):
        query_side, key_side = document.KIND_SIDES[kind]
        if not (words_match(query_side) and words_match(key_side) and shared[query_side] and shared[key_side]):
            skipped.append(kind)
            continue
        merged = [merge_to_units(means[i][kind, layer], units[query_side][i], units[key_side][i],
                                 shared[query_side], shared[key_side]) for i in range(2)]
        differences.append({"kind": kind, "layer": layer,
                            "matrix": np.round(merged[1] - merged[0], document.DIGITS).tolist()})
    missing = sorted(set(skipped))
    notes = [note] if note else []
    if missing:
        notes.append(f"no difference map for {', '.join(missing)}: the runs' tokens there do not match")
    return {"labels": [str(label) for label in labels], "docs": docs,
            "level": "token" if same_tokens else "word", "merge": TOKEN_RULE if same_tokens else MERGE_RULE,
            "differences": differences,
            "tokens": {"source": [unit_labels[u] for u in shared["source_tokens"]],
                       "target": [unit_labels[u] for u in shared["target_tokens"]]},
            "note": "; ".join(notes),
            "translations": [str(t) for t in (translations or [d.get("translation", "") for d in docs])]}


def compare_runs(analyze_a: Analyze, analyze_b: Analyze, text: str, target: str | None = None, *,
                 beam: int = 1, labels: Sequence[str] = ("A", "B")) -> dict:
    """Both runs on ``text``: A on ``target`` (or its own output), B teacher-forced on the same target.

    Each run's own output (its decoding with ``beam``) is kept under ``translations``.

    >>> payload = compare_runs(load_analyzer("runs/a"), load_analyzer("runs/b"), "the cat sleeps .")
    """
    given = target if target is not None and target.strip() else None
    doc_a = analyze_a(text, given, beam)
    shared_target = given or doc_a.get("translation") or None
    if not doc_a.get("target_tokens"):
        doc_b, note = analyze_b(text, None, beam), f"{labels[0]} is encoder-only: no target"
        own_a, own_b = doc_a.get("translation", ""), doc_b.get("translation", "")
    else:
        doc_b = analyze_b(text, shared_target, beam)
        own_b = analyze_b(text, None, beam).get("translation", "")
        own_a = analyze_a(text, None, beam).get("translation", "") if given else doc_a.get("translation", "")
        note = ("target: the one given, teacher-forced in both runs" if given else
                f"target: {labels[0]}'s own output, teacher-forced in {labels[1]}" if shared_target else
                f"{labels[0]} produced no output: each run's target is its own")
    return compare_documents(doc_a, doc_b, labels=labels, source_text=text, target_text=shared_target or "",
                             translations=[own_a, own_b], note=note)


def validate_compare(payload: Mapping) -> None:
    """Raise ``ValueError`` unless ``payload`` is a compare payload the page can draw."""
    if not isinstance(payload, Mapping):
        raise ValueError(f"compare payload must be an object, got {type(payload).__name__}")
    docs, labels = payload.get("docs"), payload.get("labels")
    if not isinstance(docs, list) or len(docs) != 2 or not isinstance(labels, list) or len(labels) != 2:
        raise ValueError("compare payload needs two docs and two labels")
    for label, doc in zip(labels, docs):
        try:
            document.validate_attention_doc(doc, allow_zero_rows=True)
        except ValueError as error:
            raise ValueError(f"compare {label}: {error}") from None
    if payload.get("level") not in ("token", "word"):
        raise ValueError(f"compare level must be 'token' or 'word', got {payload.get('level')!r}")
    tokens = payload.get("tokens") or {}
    sides = {"source_tokens": tokens.get("source") or [], "target_tokens": tokens.get("target") or []}
    for index, entry in enumerate(payload.get("differences") or []):
        kind = entry.get("kind")
        if kind not in document.KINDS:
            raise ValueError(f"differences[{index}]: unknown kind {kind!r}")
        query_side, key_side = document.KIND_SIDES[kind]
        matrix = np.asarray(entry.get("matrix"), dtype=np.float64)
        expected = (len(sides[query_side]), len(sides[key_side]))
        if matrix.shape != expected or not np.all(np.isfinite(matrix)):
            raise ValueError(f"differences[{index}] ({kind}, layer {entry.get('layer')}): matrix shape "
                             f"{matrix.shape} is not the {expected} of its tokens, or not finite")
