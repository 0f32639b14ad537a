"""Batching: examples → padded tensors the model eats, with as little padding as possible.

A decoder is trained by *teacher forcing*: it reads the target shifted right by one (starting with
BOS) and predicts the target followed by EOS::

    src      = [x,  y,  EOS]               # encoder input  (B, Ls): the source ends with EOS
    tgt      =        [a,  b,  c]
    tgt_in   = [BOS,   a,  b,  c]          # decoder input  (B, Lt)
    tgt_out  = [  a,   b,  c, EOS]         # labels         (B, Lt)

Sentences of very different lengths in one batch waste compute on PAD. So we *bucket*: shuffle,
cut into large chunks, sort each chunk by length, then cut batches from the sorted chunk. Batches
are capped by padded token count (`max_tokens`, what fits in memory) or by sentence count
(`batch_size`). The result depends only on (seed, epoch).

    >>> batches = make_batches(data.train, max_tokens=4096, shuffle=True, seed=0, epoch=3)
    >>> batches[0].src.shape, batches[0].tgt_in.shape     # (B, Ls), (B, Lt)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from attnlab.data.codec import BOS_ID, EOS_ID, PAD_ID
from attnlab.data.example import Example

# How many batches' worth of examples are sorted together. Larger = less padding, less randomness.
_CHUNK_BATCHES = 50


@dataclass
class Batch:
    src: torch.Tensor  # (B, Ls) long, padded with PAD_ID
    tgt_in: torch.Tensor  # (B, Lt) long: BOS + tgt, padded
    tgt_out: torch.Tensor  # (B, Lt) long: tgt + EOS, padded
    num_tokens: int  # non-pad target tokens (= sum of len(tgt) + 1), the loss normaliser
    examples: list[int]  # indices into the list given to make_batches

    def to(self, device) -> "Batch":
        return replace(self, src=self.src.to(device), tgt_in=self.tgt_in.to(device),
                       tgt_out=self.tgt_out.to(device))

    def __len__(self) -> int:
        return self.src.shape[0]


def _pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def source_ids(ids: Sequence[int]) -> list[int]:
    """What the encoder reads: the source tokens followed by EOS.

    The end marker gives a bidirectional encoder a fixed point to measure from
    (symmetric position biases such as ALiBi cannot otherwise tell a sequence
    from its mirror image). Training and inference both build sources here.
    """
    return list(ids) + [EOS_ID]


def collate(examples: Sequence[Example], indices: Sequence[int]) -> Batch:
    """One padded `Batch` from `examples[i] for i in indices`, in that order."""
    chosen = [examples[i] for i in indices]
    return Batch(
        src=_pad([source_ids(ex.src_ids) for ex in chosen]),
        tgt_in=_pad([[BOS_ID] + ex.tgt_ids for ex in chosen]),
        tgt_out=_pad([ex.tgt_ids + [EOS_ID] for ex in chosen]),
        num_tokens=sum(len(ex.tgt_ids) + 1 for ex in chosen),
        examples=list(indices),
    )


def _padded_size(ex: Example) -> int:
    """The width one example needs: the longer of its source and its target (+1 for BOS/EOS)."""
    return max(len(ex.src_ids), len(ex.tgt_ids)) + 1


def make_batches(
    examples: Sequence[Example],
    *,
    max_tokens: int | None = None,
    batch_size: int | None = None,
    shuffle: bool,
    seed: int,
    epoch: int = 0,
    device="cpu",
) -> list[Batch]:
    """Length-bucketed batches. Exactly one of `max_tokens` / `batch_size` must be given.

    With `max_tokens`, a batch of B sentences padded to width W keeps B × W <= max_tokens (a single
    longer sentence still gets a batch of its own). Without `shuffle`, examples keep their order
    (for evaluation, so outputs line up with inputs) and no sorting happens.
    """
    if (max_tokens is None) == (batch_size is None):
        raise ValueError("make_batches: give exactly one of max_tokens or batch_size")
    cap = max_tokens if max_tokens is not None else batch_size
    if not isinstance(cap, int) or cap < 1:
        name = "max_tokens" if max_tokens is not None else "batch_size"
        raise ValueError(f"{name}: must be a positive integer, got {cap!r}")
    if not examples:
        return []

    order = list(range(len(examples)))
    if shuffle:
        rng = random.Random(f"batches-{seed}-{epoch}")
        rng.shuffle(order)
        # Sort by length inside chunks, so each batch holds sentences of similar length.
        mean_size = sum(_padded_size(examples[i]) for i in order) / len(order)
        per_batch = batch_size or max(1, int(max_tokens // mean_size))
        chunk = per_batch * _CHUNK_BATCHES
        order = [i for start in range(0, len(order), chunk)
                 for i in sorted(order[start : start + chunk], key=lambda i: _padded_size(examples[i]))]

    groups: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        new_width = max(width, _padded_size(examples[i]))
        too_big = (len(current) + 1) * new_width > max_tokens if max_tokens else len(current) + 1 > batch_size
        if current and too_big:
            groups.append(current)
            current, new_width = [], _padded_size(examples[i])
        current.append(i)
        width = new_width
    groups.append(current)

    if shuffle:  # otherwise the batches go short → long, every epoch
        random.Random(f"batch-order-{seed}-{epoch}").shuffle(groups)
    return [collate(examples, group).to(device) for group in groups]
