"""English→French on Tatoeba (fra-eng): attnlab's recipe vs a torch.nn.Transformer baseline, trained side by side.

    python benchmarks/fra_eng.py --minutes 30          # both models, 30 minutes each (+ attnlab's 15-minute run)
    python benchmarks/fra_eng.py --minutes 30 --seed 1 --runs-dir runs/bench   # another seed; keep attnlab's runs
    python benchmarks/fra_eng.py --minutes 30 --d2l    # plus D2L's chapter setting (512 pairs)
    python benchmarks/fra_eng.py --baseline            # the torch.nn.Transformer baseline only
    python benchmarks/fra_eng.py --quick               # smoke test: 4,000 pairs, a few seconds each

Both models see the same data, tokenizer (shared byte-level BPE 8k trained on the training split),
test split (every English sentence of it held out, scored against all its French translations)
and greedy decoding. attnlab's side is **the plain command itself**, ``attnlab train --task fra-eng --max-minutes M``
(``--seed S``), run in this process by the trainer (``attnlab.benchmarking.attnlab_run``): the
preset, its calibration and the plan it fits to the budget (a narrower model, smaller batches,
the warmup, the schedule and the cool-down where the budget calls for them), its dev
evaluations and checkpoints inside the budget, and its stop. The machine is shared and its load
changes, so the baseline is **trained beside it in the same process**: one baseline step after
each attnlab step, and each side's clock counts only its own time (attnlab's: wall time less the
baseline's; the baseline's: its own steps, batching included, evaluation excluded). A baseline
that has budget left when attnlab stops trains on alone until its clock is spent.

The baseline (the issue's "competent recipe") is ``torch.nn.Transformer`` (d_model 256, 4 heads,
3+3, ff 1024, dropout 0.1) with its own embedding × √d, sinusoidal positions and a generator tied
to the shared embedding (``attnlab.benchmarking.TorchSeq2Seq``, the baseline ``attnlab bench``
times too); label smoothing 0.1; Adam (0.9, 0.98, 1e-9) at peak lr 1e-3 after 400 warmup steps,
then inverse square root; ~4k-token length-sorted batches; fp32; stepped by the trainer's own
pieces (``BatchStream``, ``train_step``, ``learning_rate``).

**The short budget** (``--short-minutes``, default 15; the "BLEU@15min" column). The baseline's
schedule does not depend on its budget, so its state when its clock passes 15 minutes is what a
15-minute run gives, and it is scored there. attnlab's plan does depend on it, so its 15-minute
score is a second plain run, ``--max-minutes 15``, trained first, beside the baseline's first
15 minutes; the full-budget run follows, beside the rest. ``--short-minutes 0`` leaves it out.
A 30-minute comparison therefore takes about 15 + 30 minutes of attnlab and 30 of the baseline,
≈ 80 minutes of wall clock with the test evaluations.

Writes ``benchmarks/results/fra_eng.json`` and ``fra_eng.md`` (``--out`` to change the stem).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from attnlab.benchmarking import (ScriptArgumentParser, attnlab_run, baseline_contender, d2l_setting, environment,
                                  format_table, run_interleaved, set_threads, translation_score, write_results)
from attnlab.data import load_task
from attnlab.training.budget import BudgetPlan
from attnlab.training.config import RunConfig
from attnlab.training.presets import default_model, default_train

RESULTS = Path(__file__).resolve().parent / "results"
SNAPSHOT_MINUTES = 15.0


def run_name(seed: int, minutes: float) -> str:
    return f"fra-eng-{minutes:g}min-seed{seed}"


# --------------------------------------------------------------------------- report


def short_columns(results: dict) -> tuple[str, str]:
    short = results["config"].get("short_minutes", SNAPSHOT_MINUTES)
    return f"BLEU@{short:g}min", f"chrF@{short:g}min"


def table_rows(results: dict) -> list[dict]:
    bleu_short, chrf_short = short_columns(results)
    rows = []
    for name, entry in results["models"].items():
        snap = entry.get("snapshot") or {}
        plan = entry.get("plan") or {}
        rows.append({"model": name, "steps": entry["steps"], "epochs": entry["epochs"],
                     "batch": plan.get("batch_tokens") or entry.get("batch_tokens"),
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
    return ["model", "steps", "epochs", "batch", "train_min", "tgt_tok/s", *short_columns(results), "BLEU", "chrF",
            "test_loss"]


def markdown(results: dict) -> str:
    env, cfg = results["environment"], results["config"]
    lines = [f"# fra-eng (English → French), {cfg['minutes']:g} minutes per model: attnlab's "
             f"`--max-minutes {cfg['minutes']:g}`, the baseline's own step time",
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
    attnlab = results["models"].get("attnlab")
    if attnlab is not None:
        runs = [(cfg["minutes"], attnlab)] + ([(cfg["short_minutes"], attnlab["snapshot"])] if attnlab.get("snapshot") else [])
        lines += [f"attnlab's plan at {minutes:g} min: "
                  + (BudgetPlan.from_dict(run["plan"]).describe().removeprefix("plan: ") if run.get("plan")
                     else "none (the budget ended before the calibration)")
                  + (f" (the smaller model: {', '.join(f'{k} {v}' for k, v in run['fitted_model'].items())})"
                     if run.get("fitted_model") else "") + "." for minutes, run in runs]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="budget per model: attnlab's --max-minutes, the baseline's own step time (default 30)")
    parser.add_argument("--short-minutes", type=float, default=SNAPSHOT_MINUTES,
                        help="the short budget: the baseline scored on the way, attnlab a run of its own "
                             "(default 15; 0: none; --quick: half of --minutes)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both models and of the data split (default 0)")
    parser.add_argument("--runs-dir", help="keep attnlab's run directories here (default: a temporary directory)")
    parser.add_argument("--baseline", action="store_true", help="train only the torch.nn.Transformer baseline")
    parser.add_argument("--no-baseline", action="store_true", help="train only attnlab's recipe")
    parser.add_argument("--d2l", action="store_true", help="also train and score D2L's chapter setting")
    parser.add_argument("--d2l-epochs", type=int, default=100, help="epochs for the D2L setting (default 100)")
    parser.add_argument("--d2l-lr", type=float, default=0.001, help="Adam learning rate for D2L (default 0.001)")
    parser.add_argument("--d2l-only", action="store_true",
                        help="run only the D2L setting and replace it in an existing STEM.json")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4,000 pairs, 0.2 minutes, tiny D2L run")
    parser.add_argument("--max-pairs", type=int, help="read only the first N pairs of fra.txt")
    parser.add_argument("--max-tokens", type=int,
                        help="padded tokens per batch for both (default: the baseline 4,096, attnlab its preset's)")
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
    if args.short_minutes < 0:
        parser.error("--short-minutes must be >= 0")
    if args.threads < 1 or any(value is not None and value < 1 for value in (args.max_tokens, args.max_pairs)):
        parser.error("--threads, --max-tokens and --max-pairs must be >= 1")
    budgets = {"short": args.short_minutes, "full": args.minutes}
    if not 0 < args.short_minutes < args.minutes:
        del budgets["short"]
    runs = None if args.runs_dir is None else Path(args.runs_dir)
    if runs is not None and not args.baseline:
        taken = [str(runs / run_name(args.seed, m)) for m in budgets.values() if (runs / run_name(args.seed, m)).exists()]
        if taken:
            parser.error(f"{taken[0]} exists; a benchmark run starts fresh (move it or pick another --runs-dir)")
    if args.d2l_only and not Path(f"{args.out}.json").is_file():
        parser.error(f"--d2l-only replaces the D2L entry of {args.out}.json, which does not exist")
    set_threads(args.threads)
    wall_start, load_start = time.perf_counter(), round(os.getloadavg()[0], 2)

    started = time.perf_counter()
    data = load_task("fra-eng", seed=args.seed, src_lang="en", tgt_lang="fr", tokenizer="bpe", vocab_size=8000,
                     max_pairs=args.max_pairs)
    print(f"fra-eng loaded in {time.perf_counter() - started:.0f} s: {data.info['sizes']}", flush=True)
    # Sorted by source length so each decoding batch stops early (corpus BLEU ignores the order).
    test = sorted(data.test, key=lambda ex: len(ex.src_ids))
    if args.d2l_only:
        results = json.loads(Path(f"{args.out}.json").read_text())
        results["d2l"] = d2l_setting(data, pairs=512, epochs=args.d2l_epochs, lr=args.d2l_lr)
        results["d2l"]["command"] = environment()["command"]
        return write_results(args.out, results, markdown(results))
    baselines = [] if args.no_baseline else [
        baseline_contender(data, 60 * args.minutes, max_tokens=args.max_tokens or 4096, seed=args.seed)]
    snapshot = budgets.get("short")
    attnlab = {}
    if not args.baseline:
        with tempfile.TemporaryDirectory(prefix="fra-eng-bench-") as scratch:
            for key, minutes in budgets.items():  # the short run first, beside the baseline's first minutes
                overrides = {"max_minutes": minutes, "seed": args.seed}
                overrides.update({name: value for name, value in (("max_tokens", args.max_tokens),
                                                                   ("max_pairs", args.max_pairs)) if value is not None})
                run_dir = (runs or Path(scratch)) / run_name(args.seed, minutes)
                print(f"attnlab train --task fra-eng --max-minutes {minutes:g} --seed {args.seed}  ({run_dir})",
                      flush=True)
                attnlab[key] = attnlab_run(RunConfig.for_task("fra-eng", **overrides), data, run_dir, beside=baselines,
                                           test=test, snapshot_minutes=snapshot, label=f"attnlab {minutes:g} min")
    run_interleaved(baselines, data, test, snapshot)  # what is left of the baseline's budget, alone

    results = {"config": {"minutes": args.minutes, "short_minutes": args.short_minutes, "seed": args.seed,
                          "max_tokens": args.max_tokens, "threads": args.threads, "max_pairs": args.max_pairs,
                          "attnlab_recipe": {"model": default_model("fra-eng"), "train": default_train("fra-eng")},
                          "train_pairs": len(data.train), "test_sentences": len(test),
                          "test_references": sum(len(ex.references) for ex in test),
                          "vocab_size": data.target.vocab_size, "data": data.info},
               "models": {}}
    if attnlab:
        full, short = attnlab["full"], attnlab.get("short")
        snap = None if short is None else {"budget_minutes": args.short_minutes, "steps": short["steps"],
                                           "at_minutes": short["train_minutes"], "plan": short.get("plan"),
                                           "fitted_model": short.get("fitted_model"),
                                           **short["final"]}
        results["models"]["attnlab"] = {**full, "snapshot": snap}
    for c in baselines:
        final = translation_score(c.model, data, test, f"{c.name} final, step {c.step}")
        results["models"][c.name] = {**c.summary(), "snapshot": c.snapshot, "final": final, "log": c.log}
    if args.d2l:
        results["d2l"] = d2l_setting(data, pairs=512, epochs=args.d2l_epochs, lr=args.d2l_lr)
    results["wall_minutes"] = round((time.perf_counter() - wall_start) / 60, 2)
    results["load_average"] = {"start": load_start, "end": round(os.getloadavg()[0], 2)}
    results["environment"] = environment()
    text = markdown(results)
    return write_results(args.out, results, text)


if __name__ == "__main__":
    raise SystemExit(main())
