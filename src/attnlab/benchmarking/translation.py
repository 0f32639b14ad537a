"""Translation trainings side by side, each on its own clock: what ``benchmarks/fra_eng.py`` and
``benchmarks/multi30k.py`` run.

attnlab's side is the plain command itself: :func:`attnlab_run` calls the trainer
(:func:`attnlab.training.trainer.train`) on ``RunConfig.for_task(task, max_minutes=M)``, so its
calibration, the plan fitted to the budget (model, batch, warmup, schedule, cool-down), its dev
evaluations and checkpoints and its stop are those of ``attnlab train --task TASK --max-minutes M``.
A :class:`Contender` (the torch.nn baseline) is a model stepped with the trainer's own pieces
(``BatchStream``, ``learning_rate``, ``train_step``) on a clock of its own step time. Given
contenders to train beside it, :func:`attnlab_run` steps each of them once after each of its own
steps, and its clock is wall time less the time they took, so a load change on a shared machine
hits both alike and each spends its budget of its own time. :func:`run_interleaved` steps
contenders in turn on their own (the rest of a baseline's budget).

A short budget: the baseline's schedule does not depend on its budget, so it is scored when its
clock passes the short budget (what a run given that budget would be); attnlab's plan does, so its
short budget is a run of its own.

    >>> baseline = baseline_contender(data, 60 * 30, max_tokens=4096)
    >>> short = attnlab_run(RunConfig.for_task("fra-eng", max_minutes=15), data, runs / "15", beside=[baseline],
    ...                     test=data.test, snapshot_minutes=15)
    >>> run_interleaved([baseline], data, data.test, 15)   # the baseline's remaining minutes
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..core.model import Transformer, TransformerConfig
from ..training.config import RunConfig, TrainConfig
from ..training.evaluation import evaluate
from ..training.schedule import learning_rate
from ..training.trainer import BatchStream, train, train_step
from .training import TorchSeq2Seq

__all__ = ["Contender", "translation_score", "run_interleaved", "attnlab_run", "baseline_contender", "BASELINE_MODEL",
           "d2l_setting"]

BASELINE_MODEL = dict(d_model=256, num_heads=4, num_encoder_layers=3, num_decoder_layers=3, d_ff=1024, dropout=0.1,
                      max_len=1024, norm_first=False, activation="relu", share_embeddings=True, tie_embeddings=True)
"""The torch.nn baseline's shape: post-LN ``nn.Transformer``, one embedding shared by source, target and output."""


@dataclass
class Contender:
    """One model being trained with attnlab's trainer pieces, on its own clock.

    Its learning rate comes from :func:`attnlab.training.schedule.learning_rate` with the budget
    used measured by its own clock. A short-budget score taken on the way (``snapshot``) is
    what a run given that budget gives only for a schedule that does not depend on the budget
    (no cool-down), so :func:`run_interleaved` refuses one with a cool-down.
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

    def summary(self) -> dict:
        return {"steps": self.step, "epochs": round(self.stream.epochs, 3),
                "train_minutes": round(self.clock_s / 60, 2), "batch_tokens": self.stream.max_tokens,
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


def _score_when_due(c: Contender, data, test, snapshot_minutes: float | None) -> None:
    """Score ``c`` on ``test`` once, on the step its clock passes ``snapshot_minutes`` (its short-budget score)."""
    if snapshot_minutes is not None and c.snapshot is None and c.clock_s >= 60 * snapshot_minutes:
        c.snapshot = {"at_minutes": round(c.clock_s / 60, 2), "steps": c.step, "budget_minutes": snapshot_minutes,
                      **translation_score(c.model, data, test, f"{c.name} at {snapshot_minutes:g} min, step {c.step}")}


def _check_snapshot(contenders: list[Contender], snapshot_minutes: float | None) -> None:
    if snapshot_minutes is None:
        return
    for c in contenders:
        if c.config.cooldown:
            raise ValueError(f"{c.name} cools down at the end of its budget: its state at {snapshot_minutes:g} "
                             "minutes is not what that budget gives; train that budget as a run of its own")


def _status(contenders: list[Contender]) -> str:
    def loss(c: Contender) -> str:  # the last logged loss; none before the first 100 steps
        return f"{c.log[-1]['loss']:.3f} loss" if c.log else "no loss logged yet"

    return "  " + "  |  ".join(f"{c.name}: step {c.step}, {c.clock_s / 60:.1f} min, {loss(c)}, "
                               f"{c.tokens / max(c.clock_s, 1e-9):.0f} tok/s" for c in contenders) \
        + f"  | load {os.getloadavg()[0]:.1f}"


def run_interleaved(contenders: list[Contender], data, test, snapshot_minutes: float | None) -> None:
    """One step of each unfinished contender in turn until every own clock has spent its budget.

    Each is scored on ``test`` when its clock passes ``snapshot_minutes`` (its short-budget
    score; a contender whose schedule cools down is refused, see :class:`Contender`).
    """
    _check_snapshot(contenders, snapshot_minutes)
    active = [c for c in contenders if not c.done]
    last_report = time.perf_counter()
    while active:
        for c in list(active):
            c.train_step()
            _score_when_due(c, data, test, snapshot_minutes)
            if c.done:
                active.remove(c)
        if active and time.perf_counter() - last_report > 60:
            last_report = time.perf_counter()
            print(_status(active), flush=True)


def attnlab_run(run_config: RunConfig, data, run_dir: Path, *, beside: list[Contender] = (), test=None,
                snapshot_minutes: float | None = None, label: str = "attnlab",
                wall: Callable[[], float] = time.perf_counter) -> dict:
    """``attnlab train`` in this process: the trainer on ``run_config`` and ``data`` in ``run_dir``.

    Every contender of ``beside`` that has budget left is stepped once after each of the run's
    steps (and scored on ``test`` when its clock passes ``snapshot_minutes``). The run's clock is
    wall time less the time spent on them, so its calibration, plan and stop are what the plain
    command does on this machine alone; its dev evaluations, checkpoints and plan are inside its
    budget, as they are there. Returns eval.json's summary with the mean ``target_tokens_per_s``
    of its logged windows, ``log`` (every 100th step of metrics.jsonl) and ``final`` (BLEU, chrF,
    loss and the first examples of the test split). ``wall`` is the wall clock (tests pass a fake one).
    """
    beside = list(beside)
    _check_snapshot(beside, snapshot_minutes)
    outside = 0.0  # seconds spent on the contenders beside it
    last_report = wall()

    def clock() -> float:
        return wall() - outside

    def step_beside(step: int) -> None:
        nonlocal outside, last_report
        began = wall()
        active = [c for c in beside if not c.done]
        for c in active:
            c.train_step()
            _score_when_due(c, data, test, snapshot_minutes)
        if active and began - last_report > 60:
            last_report = began
            print(_status(active), flush=True)
        outside += wall() - began

    result = train(Path(run_dir), run_config, data=data, progress_label=label, clock=clock,
                   on_step=step_beside if beside else None)
    summary = dict(result["summary"])
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if r.get("split") == "train"]
    rates = [r["tokens_per_s"] for r in steps]
    summary["target_tokens_per_s"] = round(sum(rates) / len(rates), 1) if rates else None
    summary["log"] = [{key: r[key] for key in ("step", "loss", "lr", "epoch")} for r in steps if r["step"] % 100 == 0]
    summary["final"] = {**{key: summary[key] for key in ("bleu", "chrf", "loss", "num_examples") if key in summary},
                        "examples": result["examples"][:5]}
    return summary


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
