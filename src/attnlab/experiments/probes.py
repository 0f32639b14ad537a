"""Probes: measurements on a trained run beyond its held-out score.

* ``extrapolation`` — exact match per source length on a test set longer than anything seen in
  training. A learned positional table has no row past its ``max_len``: those lengths are reported
  as not applicable (``None``), never decoded into a crash.
* ``permutation`` — does the encoder distinguish orderings? Shuffle the source tokens (the final
  EOS stays put), encode both, undo the shuffle on the outputs and compare. Self-attention without
  positions is permutation-*equivariant*, so the difference is zero up to rounding; we also count how
  often the decoded output changes.
* ``alignment`` — on the toy corpus, compare each cross-attention head with the gold word alignment
  by alignment error rate (AER). Decoder query i reads ``<bos> w_1 … w_{i-1}`` and predicts target
  word i, so its attention row is that word's alignment; each target word links to the source word
  with the most weight (the EOS key is left out).

    >>> run_probes(Path("out/runs/pe-none-reverse-s1"), {"extrapolation": {"test_lengths": [1, 20]}})
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import torch

from ..data import PAD_ID, collate, load_task, source_ids
from ..core.decoding import greedy_decode
from ..inspection.record import record_attention
from ..training.runs import load_run

__all__ = ["run_probes", "extrapolation_probe", "permutation_probe", "alignment_probe"]

DISTINGUISH_THRESHOLD = 1e-3  # relative change above float rounding: the encoder saw a different order


def _task_data(run, **overrides):
    options = {**run.config.task_options, **overrides}
    return load_task(run.config.task, seed=run.config.train.seed, **options)


def _decode_all(model, sources: list[list[int]], batch_size: int = 64) -> list[list[int]]:
    outputs = []
    for start in range(0, len(sources), batch_size):
        rows = [source_ids(ids) for ids in sources[start:start + batch_size]]
        src = torch.full((len(rows), max(map(len, rows))), PAD_ID, dtype=torch.long)  # (B, Ls)
        for i, row in enumerate(rows):
            src[i, :len(row)] = torch.tensor(row)
        outputs.extend(greedy_decode(model, src))
    return outputs


@torch.no_grad()
def extrapolation_probe(run, *, test_lengths, num_test: int = 600) -> dict:
    """Exact match per source length on a test set drawn from ``test_lengths``."""
    data = _task_data(run, test_lengths=tuple(test_lengths), num_test=num_test)
    config = run.config.model
    table = config.max_len if config.pos_encoding == "learned" else None
    groups = defaultdict(list)
    for example in data.test:
        groups[len(example.src_ids)].append(example)
    per_length = {}
    for length, examples in sorted(groups.items()):
        needed = max(max(len(ex.src_ids), len(ex.tgt_ids)) + 1 for ex in examples)  # +EOS / +BOS
        if table is not None and needed > table:
            per_length[str(length)] = {"count": len(examples), "exact_match": None,
                                       "note": f"needs {needed} positions; learned table has {table}"}
            continue
        outputs = _decode_all(run.model, [ex.src_ids for ex in examples])
        correct = sum(out == ex.tgt_ids for out, ex in zip(outputs, examples))
        per_length[str(length)] = {"count": len(examples), "exact_match": round(correct / len(examples), 4)}
    return {"train_lengths": run.config.task_options.get("train_lengths"),
            "test_lengths": list(test_lengths), "learned_table": table, "by_length": per_length}


@torch.no_grad()
def permutation_probe(run, *, num: int = 100, seed: int = 0) -> dict:
    """How often a shuffled source changes the encoder's (un-shuffled) output and the decoded output."""
    data = _task_data(run)
    rng = random.Random(f"permutation-{seed}")
    originals, shuffled, orders = [], [], []
    for example in data.test:
        ids = example.src_ids
        if len(set(ids)) < 2:
            continue
        order = list(range(len(ids)))
        while [ids[i] for i in order] == ids:
            rng.shuffle(order)
        originals.append(ids)
        shuffled.append([ids[i] for i in order])
        orders.append(order)
        if len(originals) == num:
            break
    if not originals:
        return {"num": 0}
    model = run.model
    changes = []
    for ids, permuted, order in zip(originals, shuffled, orders):
        memory = model.encode(torch.tensor([source_ids(ids)]))[0]  # (L+1, d)
        permuted_memory = model.encode(torch.tensor([source_ids(permuted)]))[0]  # (L+1, d)
        index = torch.tensor(order + [len(ids)])  # position k of the shuffle holds token order[k]; EOS stays
        difference = (permuted_memory - memory[index]).norm() / memory.norm().clamp(min=1e-12)
        changes.append(float(difference))
    outputs = _decode_all(model, originals)
    permuted_outputs = _decode_all(model, shuffled)
    output_changed = sum(a != b for a, b in zip(outputs, permuted_outputs)) / len(originals)
    return {"num": len(originals), "mean_relative_change": round(sum(changes) / len(changes), 6),
            "encoder_distinguishes": round(sum(c > DISTINGUISH_THRESHOLD for c in changes) / len(changes), 4),
            "output_changes": round(output_changed, 4)}


def _aer_counts(weights: torch.Tensor, gold: set, num_src: int, num_tgt: int) -> tuple[int, int, int]:
    """weights (num_tgt, num_src) → (|A∩S|, |A|, |S|) for the argmax alignment."""
    predicted = {(int(weights[i].argmax()), i) for i in range(num_tgt)}
    return len(predicted & gold), len(predicted), len(gold)


@torch.no_grad()
def alignment_probe(run, *, num: int = 200) -> dict:
    """Corpus AER of every cross-attention head, of each layer's head average, and the best head."""
    data = _task_data(run)
    examples = [ex for ex in data.test if ex.alignment][:num]
    if not examples:
        raise ValueError(f"task {run.config.task!r} has no gold alignments (only the toy corpus does)")
    model = run.model
    batch = collate(examples, range(len(examples)))
    with record_attention(model) as recording:
        model(batch.src, batch.tgt_in)
    layers = [weights for _, weights in sorted(recording.by_kind("cross"), key=lambda item: item[0])]  # (B, H, Lt, Ls)
    heads = layers[0].shape[1]
    counts = torch.zeros(len(layers), heads + 1, 3)  # last column: the head average
    for b, example in enumerate(examples):
        num_src, num_tgt, gold = len(example.src_ids), len(example.tgt_ids), set(map(tuple, example.alignment))
        for layer, weights in enumerate(layers):
            per_head = weights[b, :, :num_tgt, :num_src]  # (H, Lt, Ls) without EOS key and padding
            for head in range(heads):
                counts[layer, head] += torch.tensor(_aer_counts(per_head[head], gold, num_src, num_tgt))
            counts[layer, heads] += torch.tensor(_aer_counts(per_head.mean(0), gold, num_src, num_tgt))
    aer = 1.0 - 2.0 * counts[..., 0] / (counts[..., 1] + counts[..., 2])  # (layers, H+1); P = S
    per_head = aer[:, :heads]
    best_layer, best_head = divmod(int(per_head.argmin()), heads)
    first = examples[0]
    src_tokens = first.src_text.split()
    tgt_tokens = first.tgt_text.split()
    if len(src_tokens) != len(first.src_ids) or len(tgt_tokens) != len(first.tgt_ids):
        src_tokens = [str(i) for i in first.src_ids]
        tgt_tokens = [str(i) for i in first.tgt_ids]
    example_weights = layers[best_layer][0, best_head, :len(first.tgt_ids), :len(first.src_ids)]
    return {"num": len(examples),
            "per_head": [[round(float(v), 4) for v in row] for row in per_head],
            "head_average": [round(float(v), 4) for v in aer[:, heads]],
            "best": {"layer": best_layer, "head": best_head, "aer": round(float(per_head.min()), 4),
                     "example": {"source_tokens": src_tokens, "target_tokens": tgt_tokens,
                                 "weights": [[round(float(v), 4) for v in row] for row in example_weights],
                                 "gold": [list(pair) for pair in first.alignment]}}}


PROBES = {"extrapolation": extrapolation_probe, "permutation": permutation_probe, "alignment": alignment_probe}


def run_probes(run_dir: Path, probes: dict) -> dict:
    """Run the named probes on a trained run directory: {name: options} → {name: result}."""
    unknown = sorted(set(probes) - set(PROBES))
    if unknown:
        raise ValueError(f"unknown probes {unknown}; allowed: {', '.join(PROBES)}")
    run = load_run(run_dir)
    return {name: PROBES[name](run, **options) for name, options in probes.items()}
