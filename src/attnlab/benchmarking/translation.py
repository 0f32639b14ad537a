"""Translation trainings side by side, each on its own clock: what ``benchmarks/fra_eng.py`` and
``benchmarks/multi30k.py`` run.

A :class:`Contender` is one model being trained with the trainer's own pieces (``BatchStream``,
``learning_rate``, ``train_step``). :func:`run_interleaved` steps every contender in turn, one step
each, until each has spent its budget of its *own* measured step time, so that a load change on a
shared machine hits all of them alike. Its learning rate at step s is

    lr = learning_rate(config, s, used),   used = own step time so far / budget

so a cool-down ends exactly when the budget does. A short budget is scored honestly: a contender
with a cool-down forks a copy at ``(1 - cooldown) × short budget`` that cools down to zero at the
short budget (everything before the cool-down does not depend on the budget), one without is
scored when its clock passes the short budget.

    >>> attnlab = attnlab_contender(data, 60 * 15, max_tokens=4096, task="fra-eng")
    >>> run_interleaved([attnlab, baseline_contender(data, 60 * 15, max_tokens=4096)], data, data.test, 5.0)
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.model import Transformer, TransformerConfig
from ..training.config import RunConfig, TrainConfig
from ..training.evaluation import evaluate
from ..training.hardware import resolve_precision
from ..training.schedule import learning_rate
from ..training.trainer import BatchStream, make_optimizer, train_step
from .training import TorchSeq2Seq

__all__ = ["Contender", "translation_score", "run_interleaved", "attnlab_contender", "baseline_contender", "BASELINE_MODEL",
           "d2l_setting"]

BASELINE_MODEL = dict(d_model=256, num_heads=4, num_encoder_layers=3, num_decoder_layers=3, d_ff=1024, dropout=0.1,
                      max_len=1024, norm_first=False, activation="relu", share_embeddings=True, tie_embeddings=True)
"""The torch.nn baseline's shape: post-LN ``nn.Transformer``, one embedding shared by source, target and output."""


@dataclass
class Contender:
    """One model being trained with attnlab's trainer pieces, on its own clock.

    Its learning rate comes from :func:`attnlab.training.schedule.learning_rate` with the budget
    used measured by its own clock, so a cool-down ends exactly when its budget does.
    """

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig  # schedule, warmup, cool-down, label smoothing, clipping, precision
    stream: BatchStream
    budget_s: float
    clock_s: float = 0.0
    step: int = 0
    tokens: int = 0
    log: list = field(default_factory=list)
    snapshot: dict | None = None
    parent: "Contender | None" = None  # a cool-down branch knows the run it was forked from

    @property
    def done(self) -> bool:
        return self.clock_s >= self.budget_s

    def train_step(self) -> None:
        """One optimiser step, timed (batching included) on this contender's clock; every 100th logged."""
        start = time.perf_counter()
        batch = self.stream.next()
        self.step += 1
        lr = learning_rate(self.config, self.step, self.clock_s / self.budget_s)
        self.model.train()
        loss = train_step(self.model, self.optimizer, batch, lr=lr, label_smoothing=self.config.label_smoothing,
                          grad_clip=self.config.grad_clip, precision=self.config.precision)
        self.tokens += batch.num_tokens
        self.clock_s += time.perf_counter() - start
        if self.step % 100 == 0:
            self.log.append({"step": self.step, "minutes": round(self.clock_s / 60, 3), "loss": round(loss.item(), 4),
                             "lr": lr, "epoch": round(self.stream.epochs, 3)})

    def fork(self, name: str, budget_s: float) -> "Contender":
        """A copy (weights, optimiser state, data position, clock) that spends a shorter budget.

        With a cool-down schedule the first ``1 - cooldown`` of a run does not depend on its
        budget, so a copy forked at ``(1 - cooldown) × budget_s`` and cooled down from there is
        exactly the run that a ``budget_s`` budget would have given.
        """
        model, optimizer = copy.deepcopy((self.model, self.optimizer))  # one memo: the copy's optimiser holds the copy's weights
        return Contender(name, model, optimizer, self.config, self.stream.copy(), budget_s, clock_s=self.clock_s,
                         step=self.step, tokens=self.tokens, log=list(self.log), parent=self)

    def summary(self) -> dict:
        return {"steps": self.step, "epochs": round(self.stream.epochs, 3),
                "train_minutes": round(self.clock_s / 60, 2),
                "target_tokens_per_s": round(self.tokens / max(self.clock_s, 1e-9), 1),
                "precision": self.config.precision,
                "parameters": sum(p.numel() for p in self.model.parameters())}


def translation_score(model, data, examples, note: str) -> dict:
    """Greedy-decoded BLEU, chrF and teacher-forced loss of ``model`` on ``examples``, printed under ``note``."""
    started = time.perf_counter()
    result = evaluate(model, examples, data, breakdown=False, num_examples_shown=5)
    summary = {key: result["summary"][key] for key in ("bleu", "chrf", "loss", "num_examples")}
    summary["eval_seconds"] = round(time.perf_counter() - started, 1)
    print(f"  [{note}] BLEU {summary['bleu']:.2f}  chrF {summary['chrf']:.2f}  test loss {summary['loss']:.3f}  "
          f"({summary['eval_seconds']} s)", flush=True)
    return {**summary, "examples": result["examples"]}


def run_interleaved(contenders: list[Contender], data, test, snapshot_minutes: float | None) -> None:
    """One step of each unfinished contender in turn until every own clock has spent its budget.

    At ``snapshot_minutes`` each contender gets its short-budget score: a contender whose
    schedule has a cool-down forks a branch at ``(1 - cooldown) × snapshot_minutes`` that cools
    down to zero at ``snapshot_minutes`` (what a run given that budget does); one without a
    cool-down is simply scored when its clock passes ``snapshot_minutes``.
    """
    active = list(contenders)
    last_report = time.perf_counter()
    while active:
        for c in list(active):
            c.train_step()
            if snapshot_minutes is not None and c.parent is None and c.snapshot is None and not c.done:
                cooldown = c.config.cooldown
                if cooldown and c.clock_s >= 60 * snapshot_minutes * (1 - cooldown):
                    c.snapshot = {"pending": True}
                    active.append(c.fork(f"{c.name} ({snapshot_minutes:g}-min budget)", 60 * snapshot_minutes))
                elif not cooldown and c.clock_s >= 60 * snapshot_minutes:
                    c.snapshot = {"at_minutes": round(c.clock_s / 60, 2), "steps": c.step, **translation_score(
                        c.model, data, test, f"{c.name} at {snapshot_minutes:g} min, step {c.step}")}
            if c.done:
                active.remove(c)
                if c.parent is not None:  # a finished cool-down branch is its parent's short-budget score
                    c.parent.snapshot = {"at_minutes": round(c.clock_s / 60, 2), "steps": c.step,
                                         "budget_minutes": snapshot_minutes, **translation_score(
                                             c.model, data, test, f"{c.name}, step {c.step}")}
        if time.perf_counter() - last_report > 60:
            last_report = time.perf_counter()
            print("  " + "  |  ".join(f"{c.name}: step {c.step}, {c.clock_s / 60:.1f} min, "
                                      f"{c.log[-1]['loss'] if c.log else float('nan'):.3f} loss, "
                                      f"{c.tokens / max(c.clock_s, 1e-9):.0f} tok/s" for c in active)
                  + f"  | load {os.getloadavg()[0]:.1f}", flush=True)


def attnlab_contender(data, budget_s: float, *, max_tokens: int, seed: int = 0, task: str = "fra-eng") -> Contender:
    """``attnlab train --task TASK --max-minutes M``: the task's preset (:meth:`RunConfig.for_task`), unchanged,
    with the clock alone ending it."""
    vocab = data.target.vocab_size
    run = RunConfig.for_task(task, steps=10**9, max_tokens=max_tokens, seed=seed,
                             max_minutes=budget_s / 60).with_vocab(vocab, vocab)
    torch.manual_seed(seed)
    model = Transformer(run.model)
    cpu = torch.device("cpu")
    config = run.train
    config.precision = resolve_precision(config.precision, cpu)
    return Contender("attnlab", model, make_optimizer(model, config, cpu), config,
                     BatchStream.for_config(data.train, config), budget_s)


def baseline_contender(data, budget_s: float, *, max_tokens: int, seed: int = 0) -> Contender:
    """The competent torch.nn recipe: :class:`~attnlab.benchmarking.TorchSeq2Seq` of :data:`BASELINE_MODEL`;
    label smoothing 0.1; Adam (0.9, 0.98, 1e-9), peak lr 1e-3 after 400 warmup steps then inverse
    square root; fp32, no clipping."""
    torch.manual_seed(seed)
    vocab = data.target.vocab_size
    model = TorchSeq2Seq(TransformerConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, **BASELINE_MODEL))
    config = TrainConfig(steps=10**9, max_tokens=max_tokens, lr=1e-3, schedule="noam", warmup=400,
                         label_smoothing=0.1, grad_clip=0.0, precision="fp32", seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    return Contender("torch.nn baseline", model, optimizer, config, BatchStream.for_config(data.train, config), budget_s)


def d2l_setting(data, *, pairs: int, epochs: int, lr: float = 0.001, seed: int = 0) -> dict:
    """D2L §11.7's Transformer (2 blocks, 256 hidden, 4 heads, ffn 64, dropout 0.2) on 512 pairs.

    As in the book: the first ``pairs`` pairs of the file (the shortest ones), lower-cased, word-level
    vocabularies (source and target separate), Adam, batches of 128, gradient clipping at 1.
    The learning rate is ``lr`` (default 0.001: at the older edition's 0.005 this model's training
    loss stalled at 4.0 and it emitted empty translations). Trained for ``epochs`` epochs (the book uses 30),
    then scored on the same held-out test sentences as the other models — lower-cased on both
    sides, which only makes BLEU more lenient.
    """
    import torch.nn.functional as F

    from ..data import PAD_ID, make_batches
    from ..data.corpus import SentencePair, make_translation_task

    first = [SentencePair(ex.src_text.lower(), ex.tgt_text.lower()) for ex in data.train[:pairs]]
    test = [SentencePair(ex.src_text.lower(), ref.lower()) for ex in data.test for ref in ex.references]
    task = make_translation_task("fra-eng-d2l", {"train": first, "dev": [], "test": test}, tokenizer="word",
                                 vocab_size=10000, shared_vocab=False, normalize=True, lowercase=True)
    task.test.sort(key=lambda ex: len(ex.src_ids))
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(src_vocab_size=task.source.vocab_size, tgt_vocab_size=task.target.vocab_size,
                                          d_model=256, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                                          d_ff=64, dropout=0.2))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    started = time.perf_counter()
    losses = []
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for batch in make_batches(task.train, batch_size=128, shuffle=True, seed=seed, epoch=epoch):
            logits = model(batch.src, batch.tgt_in)  # (B, Lt, V)
            loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, count = total + loss.item() * batch.num_tokens, count + batch.num_tokens
        losses.append(round(total / count, 4))
    minutes = (time.perf_counter() - started) / 60
    print(f"  D2L setting: {epochs} epochs on {len(task.train)} pairs in {minutes:.1f} min, train loss {losses[-1]}",
          flush=True)
    return {"pairs": len(task.train), "epochs": epochs, "lr": lr, "train_minutes": round(minutes, 2), "train_loss": losses,
            "vocab_size": {"source": task.source.vocab_size, "target": task.target.vocab_size},
            "final": translation_score(model, task, task.test, "D2L setting (lower-cased BLEU)"),
            "parameters": sum(p.numel() for p in model.parameters())}
