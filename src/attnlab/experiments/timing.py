"""Time per sequence as length grows: a recurrence steps through positions, attention does not.

An RNN's step t needs step t-1, so its work is L sequential steps however wide the machine; a
Transformer layer handles all L positions in a few large matrix products (at O(L²) attention cost).
We time one teacher-forced forward pass (the shape of a training step) of untrained models of the
same width on random ids, one PyTorch thread, median of several repeats.

    >>> time_per_sequence(["transformer", "rnn-attention"], [8, 16, 32], model_settings={...})
"""

from __future__ import annotations

import statistics
import time

import torch

from ..core.model import TransformerConfig
from ..training.config import RunConfig, TrainConfig
from ..training.runs import build_model

__all__ = ["time_per_sequence"]


@torch.no_grad()
def time_per_sequence(models: list[str], lengths: list[int], *, model_settings: dict, batch_size: int = 16,
                      repeats: int = 5, vocab_size: int = 100) -> list[dict]:
    """[{"model", "length", "ms_per_sequence"}] for a forward pass with source and target of ``length``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for architecture in models:
            config = TransformerConfig(**{**model_settings, "src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size,
                                          "dropout": 0.0, "max_len": max(lengths) + 2,
                                          "pos_encoding": "sinusoidal"})
            torch.manual_seed(0)
            model = build_model(RunConfig(model=config, train=TrainConfig(steps=1), task="copy",
                                          architecture=architecture)).eval()
            for length in lengths:
                src = torch.randint(4, vocab_size, (batch_size, length))
                tgt = torch.randint(4, vocab_size, (batch_size, length))
                model(src, tgt)  # warm-up
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model(src, tgt)
                    times.append(time.perf_counter() - start)
                rows.append({"model": architecture, "length": length,
                             "ms_per_sequence": round(1000 * statistics.median(times) / batch_size, 4)})
    finally:
        torch.set_num_threads(threads)
    return rows
