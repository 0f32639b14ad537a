"""German→English on Multi30K: attnlab's recipe, BLEU on test_2016_flickr within a fixed CPU budget.

    python benchmarks/multi30k.py --minutes 15
    python benchmarks/multi30k.py --quick            # smoke test: 3,000 pairs, a few seconds

Multi30K's own splits: train (29,000 pairs) and test_2016_flickr (1,000), one reference each. A shared byte-level BPE (8k) is trained on the training split. The model and
schedule are ``attnlab train --task multi30k --max-minutes M``: the multi30k preset
(``attnlab.training.presets``: d_model 256, 3+3, dropout 0.1, bf16 autocast where native, noam warmup then a
linear cool-down to zero at the end of the budget); the budget is the model's own measured step
time. Greedy decoding, sacreBLEU.

Writes ``benchmarks/results/multi30k.json`` and ``multi30k.md``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from attnlab.benchmarking import (ScriptArgumentParser, attnlab_contender, environment, format_table,
                                  run_interleaved, set_threads, translation_score, write_results)
from attnlab.data import load_task
from attnlab.training.presets import default_model, default_train

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="own step-time budget (default 15)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3,000 pairs, 0.2 minutes")
    parser.add_argument("--max-tokens", type=int, default=4096, help="padded tokens per batch (default 4096)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--out", default=str(RESULTS / "multi30k"), help="output stem: STEM.json and STEM.md")
    args = parser.parse_args(argv)
    max_pairs = 3000 if args.quick else None
    minutes = min(args.minutes, 0.2) if args.quick else args.minutes
    if minutes <= 0:
        parser.error("--minutes must be > 0")
    if args.threads < 1 or args.max_tokens < 1:
        parser.error("--threads and --max-tokens must be >= 1")
    set_threads(args.threads)
    wall_start, load_start = time.perf_counter(), round(os.getloadavg()[0], 2)
    data = load_task("multi30k", src_lang="de", tgt_lang="en", tokenizer="bpe", vocab_size=8000,
                     max_pairs=max_pairs)
    print(f"multi30k loaded: {data.info['sizes']}", flush=True)
    contender = attnlab_contender(data, 60 * minutes, max_tokens=args.max_tokens, task="multi30k")
    run_interleaved([contender], data, data.test, None)
    test = sorted(data.test, key=lambda ex: len(ex.src_ids))  # shorter decoding batches; BLEU ignores order
    final = translation_score(contender.model, data, test, f"attnlab, step {contender.step}, test_2016_flickr")
    results = {"config": {"minutes": minutes, "max_tokens": args.max_tokens, "threads": args.threads,
                          "attnlab_recipe": {"model": default_model("multi30k"), "train": default_train("multi30k")}, "data": data.info},
               "attnlab": {**contender.summary(), "test_2016_flickr": final, "log": contender.log},
               "wall_minutes": round((time.perf_counter() - wall_start) / 60, 2),
               "load_average": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
               "environment": environment()}
    row = {"model": f"attnlab (d 256, 3+3, {contender.config.precision})", **{k: v for k, v in contender.summary().items()},
           "test2016_BLEU": final["bleu"], "test2016_chrF": final["chrf"]}
    env = results["environment"]
    text = "\n".join([f"# Multi30K German → English, {minutes:g} minutes of own step time", "",
                      f"`{env['command']}` — {env['date']}, torch {env['torch']}, {env['cpu_count']} CPUs, "
                      f"{env['torch_threads']} threads; load average {results['load_average']['start']} at start, "
                      f"{results['load_average']['end']} at end. Greedy decoding, sacreBLEU, one reference.", "",
                      format_table([row]), ""])
    return write_results(args.out, results, text)


if __name__ == "__main__":
    raise SystemExit(main())
