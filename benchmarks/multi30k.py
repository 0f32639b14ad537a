"""German→English on Multi30K: attnlab's recipe, BLEU on test_2016_flickr within a fixed CPU budget.

    python benchmarks/multi30k.py --minutes 15
    python benchmarks/multi30k.py --minutes 30 --seed 1 --runs-dir runs/bench   # keep the run directory
    python benchmarks/multi30k.py --quick            # smoke test: 3,000 pairs, a few seconds

Multi30K's own splits: train (29,000 pairs) and test_2016_flickr (1,000), one reference each. A shared byte-level BPE (8k) is trained on the training split. The training
is the plain command ``attnlab train --task multi30k --src de --tgt en --max-minutes M``, run in this
process by the trainer (``attnlab.benchmarking.attnlab_run``): the multi30k preset
(``attnlab.training.presets``: d_model 256, 3+3, dropout 0.1, bf16 autocast where native) with the
plan it fits to the budget (batch, warmup, cool-down to zero at the end of the budget), its dev
evaluations and checkpoints inside the budget. Greedy decoding, sacreBLEU.

Writes ``benchmarks/results/multi30k.json`` and ``multi30k.md``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from attnlab.benchmarking import ScriptArgumentParser, attnlab_run, environment, format_table, set_threads, write_results
from attnlab.data import load_task
from attnlab.training.budget import BudgetPlan
from attnlab.training.config import RunConfig
from attnlab.training.presets import default_model, default_train

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="the run's --max-minutes (default 15)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3,000 pairs, 0.2 minutes")
    parser.add_argument("--max-tokens", type=int, help="padded tokens per batch (default: the preset's, 4,096)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the training order (default 0)")
    parser.add_argument("--runs-dir", help="keep the run directory here (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--out", default=str(RESULTS / "multi30k"), help="output stem: STEM.json and STEM.md")
    args = parser.parse_args(argv)
    max_pairs = 3000 if args.quick else None
    minutes = min(args.minutes, 0.2) if args.quick else args.minutes
    if minutes <= 0:
        parser.error("--minutes must be > 0")
    if args.threads < 1 or (args.max_tokens is not None and args.max_tokens < 1):
        parser.error("--threads and --max-tokens must be >= 1")
    run_dir = None if args.runs_dir is None else Path(args.runs_dir) / f"multi30k-{minutes:g}min-seed{args.seed}"
    if run_dir is not None and run_dir.exists():
        parser.error(f"{run_dir} exists; a benchmark run starts fresh (move it or pick another --runs-dir)")
    set_threads(args.threads)
    wall_start, load_start = time.perf_counter(), round(os.getloadavg()[0], 2)
    data = load_task("multi30k", seed=args.seed, src_lang="de", tgt_lang="en", tokenizer="bpe", vocab_size=8000,
                     max_pairs=max_pairs)
    print(f"multi30k loaded: {data.info['sizes']}", flush=True)
    overrides = {"max_minutes": minutes, "seed": args.seed, "src_lang": "de", "tgt_lang": "en"}
    overrides.update({name: value for name, value in (("max_tokens", args.max_tokens), ("max_pairs", max_pairs))
                      if value is not None})
    with tempfile.TemporaryDirectory(prefix="multi30k-bench-") as scratch:
        run = attnlab_run(RunConfig.for_task("multi30k", **overrides), data,
                          run_dir or Path(scratch) / "run", label=f"attnlab {minutes:g} min")
    final = run.pop("final")
    summary = {key: run[key] for key in ("steps", "epochs", "batch_tokens", "train_minutes", "target_tokens_per_s",
                                         "precision", "parameters")}
    results = {"config": {"minutes": minutes, "seed": args.seed, "max_tokens": args.max_tokens, "threads": args.threads,
                          "attnlab_recipe": {"model": default_model("multi30k"), "train": default_train("multi30k")}, "data": data.info},
               "attnlab": {**run, "test_2016_flickr": final},
               "wall_minutes": round((time.perf_counter() - wall_start) / 60, 2),
               "load_average": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
               "environment": environment()}
    row = {"model": f"attnlab (d 256, 3+3, {run['precision']})", **summary,
           "test2016_BLEU": final["bleu"], "test2016_chrF": final["chrf"]}
    env = results["environment"]
    text = "\n".join([f"# Multi30K German → English, attnlab train --max-minutes {minutes:g}", "",
                      f"`{env['command']}` — {env['date']}, torch {env['torch']}, {env['cpu_count']} CPUs, "
                      f"{env['torch_threads']} threads; load average {results['load_average']['start']} at start, "
                      f"{results['load_average']['end']} at end. Greedy decoding, sacreBLEU, one reference.", "",
                      format_table([row]), "",
                      "Plan: " + (BudgetPlan.from_dict(run["plan"]).describe().removeprefix("plan: ") if run.get("plan")
                                  else "none (the budget ended before the calibration)") + ".", ""])
    return write_results(args.out, results, text)


if __name__ == "__main__":
    raise SystemExit(main())
