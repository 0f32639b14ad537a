"""English→French on Tatoeba (fra-eng): attnlab's recipe vs a torch.nn.Transformer baseline, trained side by side.

    python benchmarks/fra_eng.py --minutes 30          # both models, 30 minutes of their own step time each
    python benchmarks/fra_eng.py --minutes 30 --d2l    # plus D2L's chapter setting (512 pairs)
    python benchmarks/fra_eng.py --baseline            # the torch.nn.Transformer baseline only
    python benchmarks/fra_eng.py --quick               # smoke test: 4,000 pairs, a few seconds each

Both models see the same data, tokenizer (shared byte-level BPE 8k trained on the training split),
test split (every English sentence of it held out, scored against all its French translations)
and greedy decoding. The machine is shared and its load changes, so the two trainings are
**interleaved in one process** — one step of each in turn — and each gets its budget of its *own*
measured step time (``time.perf_counter`` around its own steps, batching included, evaluation
excluded). Both therefore train under the same machine conditions. When a model's own clock
reaches a short budget (15 minutes, ``--short-minutes``) that model's short-budget score is taken
on the test split too (the "BLEU@15min" column; see below).

The baseline (the issue's "competent recipe") is ``torch.nn.Transformer`` (d_model 256, 4 heads,
3+3, ff 1024, dropout 0.1) with its own embedding × √d, sinusoidal positions and a generator tied
to the shared embedding; label smoothing 0.1; Adam (0.9, 0.98, 1e-9) at peak lr 1e-3 after 400
warmup steps, then inverse square root; ~4k-token length-sorted batches; fp32.

attnlab's contender is exactly ``attnlab train --task fra-eng --max-minutes M``: the fra-eng
preset (``attnlab.training.presets``) — the same model shape, bf16 autocast where the CPU computes in bf16
natively (``precision="auto"``), a 200-step warmup, no dropout, AdamW with clipping, and a linear
cool-down to zero over the last fifth of its time budget. Both models are stepped by the same
trainer pieces (``BatchStream``, ``learning_rate``, ``train_step`` from ``attnlab.training.trainer``).

The 15-minute column is an honest 15-minute run for both: the baseline's schedule does not depend
on its budget, so its state at 15 minutes is what a 15-minute run gives; attnlab's schedule does
(the cool-down), so at 12 minutes a copy of it is forked and cooled down to zero at 15 minutes —
identical to a run given 15 minutes, because everything before the cool-down is budget-independent.

Writes ``benchmarks/results/fra_eng.json`` and ``fra_eng.md`` (``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results  # noqa: E402
from attnlab.benchmarking import environment, format_table, set_threads, write_json  # noqa: E402
from attnlab.data import PAD_ID, load_task, make_batches  # noqa: E402
from attnlab.training.evaluation import evaluate  # noqa: E402
from attnlab.core.model import Transformer, TransformerConfig  # noqa: E402
from attnlab.training.presets import default_model, default_train  # noqa: E402
from attnlab.training.config import TrainConfig  # noqa: E402
from attnlab.training.hardware import resolve_precision  # noqa: E402
from attnlab.training.schedule import learning_rate  # noqa: E402
from attnlab.training.trainer import BatchStream, make_optimizer, train_step  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SNAPSHOT_MINUTES = 15.0



# --------------------------------------------------------------------------- the baseline model


class BaselineTransformer(nn.Module):
    """``torch.nn.Transformer`` with an embedding × √d, sinusoidal positions and a tied generator.

    It offers ``encode``/``decode``/``forward`` like attnlab's model, so attnlab's greedy decoder
    and evaluation run on it unchanged (``new_cache`` returns None: it recomputes the prefix).
    """

    def __init__(self, vocab_size: int, *, d_model=256, num_heads=4, num_layers=3, d_ff=1024, dropout=0.1,
                 max_len=1024):
        super().__init__()
        self.config = SimpleNamespace(pos_encoding="sinusoidal", max_len=max_len)
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        position = torch.arange(max_len)[:, None]  # (L, 1)
        frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (d/2,)
        table = torch.zeros(max_len, d_model)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
        self.register_buffer("positions", table, persistent=False)  # (L, d)
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.Transformer(d_model, num_heads, num_layers, num_layers, d_ff, dropout,
                                          batch_first=True)
        self.generator = nn.Linear(d_model, vocab_size)
        self.generator.weight = self.embedding.weight  # tied target embedding

    def _embed(self, tokens):
        x = self.embedding(tokens) * math.sqrt(self.d_model) + self.positions[: tokens.shape[1]]  # (B, L, d)
        return self.dropout(x)

    def encode(self, src):
        return self.transformer.encoder(self._embed(src), src_key_padding_mask=src == PAD_ID)  # (B, Ls, d)

    def decode(self, tgt, memory, src, cache=None):
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])  # (Lt, Lt) float, -inf above
        hidden = self.transformer.decoder(self._embed(tgt), memory, tgt_mask=causal, tgt_is_causal=True,
                                          memory_key_padding_mask=src == PAD_ID)  # (B, Lt, d)
        return self.generator(hidden)  # (B, Lt, V)

    def forward(self, src, tgt):
        return self.decode(tgt, self.encode(src), src)

    def new_cache(self):
        return None


# --------------------------------------------------------------------------- one training, step by step


@dataclass
class Contender:
    """One model being trained with attnlab's trainer pieces, on its own clock.

    Its learning rate comes from ``attnlab.training.trainer.learning_rate`` with the budget used measured
    by its own clock, so a cool-down ends exactly when its budget does.
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


def score(model, data, examples, note: str) -> dict:
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
                    c.snapshot = {"at_minutes": round(c.clock_s / 60, 2), "steps": c.step, **score(
                        c.model, data, test, f"{c.name} at {snapshot_minutes:g} min, step {c.step}")}
            if c.done:
                active.remove(c)
                if c.parent is not None:  # a finished cool-down branch is its parent's short-budget score
                    c.parent.snapshot = {"at_minutes": round(c.clock_s / 60, 2), "steps": c.step,
                                         "budget_minutes": snapshot_minutes, **score(
                                             c.model, data, test, f"{c.name}, step {c.step}")}
        if time.perf_counter() - last_report > 60:
            last_report = time.perf_counter()
            print("  " + "  |  ".join(f"{c.name}: step {c.step}, {c.clock_s / 60:.1f} min, "
                                      f"{c.log[-1]['loss'] if c.log else float('nan'):.3f} loss, "
                                      f"{c.tokens / max(c.clock_s, 1e-9):.0f} tok/s" for c in active)
                  + f"  | load {os.getloadavg()[0]:.1f}", flush=True)


# --------------------------------------------------------------------------- the contenders


def attnlab_contender(data, budget_s: float, *, max_tokens: int, seed: int = 0, task: str = "fra-eng") -> Contender:
    """``attnlab train --task TASK --max-minutes M``: the task's preset, model and training, unchanged."""
    torch.manual_seed(seed)
    vocab = data.target.vocab_size
    model = Transformer(TransformerConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, **default_model(task)))
    cpu = torch.device("cpu")
    config = TrainConfig(**{**default_train(task), "steps": 10**9, "max_tokens": max_tokens, "seed": seed,
                            "max_minutes": budget_s / 60})  # the clock alone ends it
    config.precision = resolve_precision(config.precision, cpu)
    return Contender("attnlab", model, make_optimizer(model, config, cpu), config,
                     BatchStream.for_config(data.train, config), budget_s)


def baseline_contender(data, budget_s: float, *, max_tokens: int, seed: int = 0) -> Contender:
    """The issue's competent recipe: Adam, peak 1e-3 after 400 warmup steps then inverse sqrt, fp32, no clipping."""
    torch.manual_seed(seed)
    model = BaselineTransformer(data.target.vocab_size)
    config = TrainConfig(steps=10**9, max_tokens=max_tokens, lr=1e-3, schedule="noam", warmup=400,
                         label_smoothing=0.1, grad_clip=0.0, precision="fp32", seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    return Contender("torch.nn baseline", model, optimizer, config, BatchStream.for_config(data.train, config), budget_s)


def d2l_setting(data, *, pairs: int, epochs: int, lr: float = 0.001, seed: int = 0) -> dict:
    """D2L §11.7's Transformer (2 blocks, 256 hidden, 4 heads, ffn 64, dropout 0.2) on 512 pairs.

    As in the book: the first 512 pairs of the file (the shortest ones), lower-cased, word-level
    vocabularies (source and target separate), Adam, batches of 128, gradient clipping at 1.
    The learning rate is ``lr`` (default 0.001: at the older edition's 0.005 this model's training
    loss stalled at 4.0 and it emitted empty translations). Trained for ``epochs`` epochs (the book uses 30),
    then scored on the same held-out test sentences as the other models — lower-cased on both
    sides, which only makes BLEU more lenient.
    """
    from attnlab.data.corpus import SentencePair, make_translation_task

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
            logits = model(batch.src, batch.tgt_in)
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
            "final": score(model, task, task.test, "D2L setting (lower-cased BLEU)"),
            "parameters": sum(p.numel() for p in model.parameters())}


# --------------------------------------------------------------------------- report


def short_columns(results: dict) -> tuple[str, str]:
    short = results["config"].get("short_minutes", SNAPSHOT_MINUTES)
    return f"BLEU@{short:g}min", f"chrF@{short:g}min"


def table_rows(results: dict) -> list[dict]:
    bleu_short, chrf_short = short_columns(results)
    rows = []
    for name, entry in results["models"].items():
        snap = entry.get("snapshot") or {}
        rows.append({"model": name, "steps": entry["steps"], "epochs": entry["epochs"],
                     "train_min": entry["train_minutes"], "tgt_tok/s": entry["target_tokens_per_s"],
                     bleu_short: snap.get("bleu"), chrf_short: snap.get("chrf"),
                     "BLEU": entry["final"]["bleu"], "chrF": entry["final"]["chrf"],
                     "test_loss": entry["final"]["loss"]})
    if "d2l" in results:
        d2l = results["d2l"]
        rows.append({"model": f"D2L setting ({d2l['pairs']} pairs)", "steps": None, "epochs": d2l["epochs"],
                     "train_min": d2l["train_minutes"], "BLEU": d2l["final"]["bleu"], "chrF": d2l["final"]["chrf"],
                     "test_loss": d2l["final"]["loss"]})
    return rows


def columns(results: dict) -> list[str]:
    return ["model", "steps", "epochs", "train_min", "tgt_tok/s", *short_columns(results), "BLEU", "chrF", "test_loss"]


def markdown(results: dict) -> str:
    env, cfg = results["environment"], results["config"]
    lines = [f"# fra-eng (English → French), {cfg['minutes']:g} minutes of own step time per model",
             "",
             f"`{env['command']}` — {env['date']}, torch {env['torch']}, {env['cpu_count']} CPUs, "
             f"{env['torch_threads']} threads; wall clock {results['wall_minutes']:.1f} min; "
             f"load average {results['load_average']['start']} at start, {results['load_average']['end']} at end.",
             "",
             f"Test split: {cfg['test_sentences']} held-out English sentences (multi-reference, "
             f"{cfg['test_references']} French references), greedy decoding, sacreBLEU. "
             f"Train: {cfg['train_pairs']} pairs, shared byte-level BPE {cfg['vocab_size']}.",
             "",
             format_table(table_rows(results), columns(results)),
             ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="own step-time budget per model (default 30)")
    parser.add_argument("--short-minutes", type=float, default=SNAPSHOT_MINUTES,
                        help="the short budget scored on the way (default 15; --quick: half of --minutes)")
    parser.add_argument("--baseline", action="store_true", help="train only the torch.nn.Transformer baseline")
    parser.add_argument("--no-baseline", action="store_true", help="train only attnlab's recipe")
    parser.add_argument("--d2l", action="store_true", help="also train and score D2L's chapter setting")
    parser.add_argument("--d2l-epochs", type=int, default=100, help="epochs for the D2L setting (default 100)")
    parser.add_argument("--d2l-lr", type=float, default=0.001, help="Adam learning rate for D2L (default 0.001)")
    parser.add_argument("--d2l-only", action="store_true",
                        help="run only the D2L setting and replace it in an existing STEM.json")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4,000 pairs, 0.2 minutes, tiny D2L run")
    parser.add_argument("--max-pairs", type=int, help="read only the first N pairs of fra.txt")
    parser.add_argument("--max-tokens", type=int, default=4096, help="padded tokens per batch (default 4096)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--out", default=str(RESULTS / "fra_eng"), help="output stem: STEM.json and STEM.md")
    args = parser.parse_args(argv)
    if args.baseline and args.no_baseline:
        parser.error("--baseline and --no-baseline exclude each other")
    if args.quick:
        args.minutes, args.max_pairs, args.d2l_epochs = min(args.minutes, 0.2), args.max_pairs or 4000, 3
        args.short_minutes = min(args.short_minutes, args.minutes / 2)
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    set_threads(args.threads)
    wall_start, load_start = time.perf_counter(), round(os.getloadavg()[0], 2)

    started = time.perf_counter()
    data = load_task("fra-eng", src_lang="en", tgt_lang="fr", tokenizer="bpe", vocab_size=8000,
                     max_pairs=args.max_pairs)
    print(f"fra-eng loaded in {time.perf_counter() - started:.0f} s: {data.info['sizes']}", flush=True)
    # Sorted by source length so each decoding batch stops early (corpus BLEU ignores the order).
    test = sorted(data.test, key=lambda ex: len(ex.src_ids))
    if args.d2l_only:
        results = json.loads(Path(f"{args.out}.json").read_text())
        results["d2l"] = d2l_setting(data, pairs=512, epochs=args.d2l_epochs, lr=args.d2l_lr)
        results["d2l"]["command"] = environment()["command"]
        write_json(f"{args.out}.json", results)
        Path(f"{args.out}.md").write_text(markdown(results))
        print(markdown(results))
        return 0
    budget_s = 60 * args.minutes
    contenders = []
    if not args.baseline:
        contenders.append(attnlab_contender(data, budget_s, max_tokens=args.max_tokens))
    if not args.no_baseline:
        contenders.append(baseline_contender(data, budget_s, max_tokens=args.max_tokens))
    snapshot = args.short_minutes if args.minutes > args.short_minutes else None
    run_interleaved(contenders, data, test, snapshot)

    results = {"config": {"minutes": args.minutes, "short_minutes": args.short_minutes, "max_tokens": args.max_tokens, "threads": args.threads,
                          "max_pairs": args.max_pairs, "attnlab_recipe": {"model": default_model("fra-eng"), "train": default_train("fra-eng")},
                          "train_pairs": len(data.train), "test_sentences": len(test),
                          "test_references": sum(len(ex.references) for ex in test),
                          "vocab_size": data.target.vocab_size, "data": data.info},
               "models": {}}
    for c in contenders:
        final = score(c.model, data, test, f"{c.name} final, step {c.step}")
        snap = c.snapshot if c.snapshot is not None else (
            {"at_minutes": round(c.clock_s / 60, 2), "steps": c.step, **final}
            if abs(args.minutes - args.short_minutes) < 1e-9 else None)
        results["models"][c.name] = {**c.summary(), "snapshot": snap, "final": final, "log": c.log}
    if args.d2l:
        results["d2l"] = d2l_setting(data, pairs=512, epochs=args.d2l_epochs, lr=args.d2l_lr)
    results["wall_minutes"] = round((time.perf_counter() - wall_start) / 60, 2)
    results["load_average"] = {"start": load_start, "end": round(os.getloadavg()[0], 2)}
    results["environment"] = environment()
    text = markdown(results)
    return write_results(args.out, results, text)


if __name__ == "__main__":
    raise SystemExit(main())
