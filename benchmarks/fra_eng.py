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
to the shared embedding (``attnlab.benchmarking.TorchSeq2Seq``, the baseline ``attnlab bench``
times too); label smoothing 0.1; Adam (0.9, 0.98, 1e-9) at peak lr 1e-3 after 400 warmup steps,
then inverse square root; ~4k-token length-sorted batches; fp32.

attnlab's contender is exactly ``attnlab train --task fra-eng --max-minutes M``: the fra-eng
preset (``RunConfig.for_task("fra-eng")``) — the same model shape, bf16 autocast where the CPU computes in bf16
natively (``precision="auto"``), a 200-step warmup, no dropout, AdamW with clipping, and a linear
cool-down to zero over the last fifth of its time budget. Both models are stepped by the same
trainer pieces (``BatchStream`` and ``train_step`` from ``attnlab.training.trainer``,
``learning_rate`` from ``attnlab.training.schedule``); the contenders and their interleaving are
``attnlab.benchmarking.translation``.

The 15-minute column is an honest 15-minute run for both: the baseline's schedule does not depend
on its budget, so its state at 15 minutes is what a 15-minute run gives; attnlab's schedule does
(the cool-down), so at 12 minutes a copy of it is forked and cooled down to zero at 15 minutes —
identical to a run given 15 minutes, because everything before the cool-down is budget-independent.

Writes ``benchmarks/results/fra_eng.json`` and ``fra_eng.md`` (``--out`` to change the stem).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from attnlab.benchmarking import (ScriptArgumentParser, attnlab_contender, baseline_contender, d2l_setting,
                                  environment, format_table, run_interleaved, set_threads, translation_score,
                                  write_results)
from attnlab.data import load_task
from attnlab.training.presets import default_model, default_train

RESULTS = Path(__file__).resolve().parent / "results"
SNAPSHOT_MINUTES = 15.0


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
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
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
    if args.threads < 1 or args.max_tokens < 1 or (args.max_pairs is not None and args.max_pairs < 1):
        parser.error("--threads, --max-tokens and --max-pairs must be >= 1")
    if args.d2l_only and not Path(f"{args.out}.json").is_file():
        parser.error(f"--d2l-only replaces the D2L entry of {args.out}.json, which does not exist")
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
        return write_results(args.out, results, markdown(results))
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
        final = translation_score(c.model, data, test, f"{c.name} final, step {c.step}")
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
