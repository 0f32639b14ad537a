"""The default recipe within a time budget: `attnlab train --task T --max-minutes M`, seeds, median BLEU.

    python benchmarks/budget.py --minutes 30 15 --seeds 0 1                 # fra-eng, 4 runs
    python benchmarks/budget.py --task multi30k --minutes 30 --seeds 0
    python benchmarks/budget.py --emulate-avx2 --minutes 15 --seeds 0      # an AVX2-only CPU, on a newer one
    python benchmarks/budget.py --emulate-avx2 --time-scale 0.47 --minutes 15 --train-args "--vocab-size 4000"
    python benchmarks/budget.py --emulate-avx2 --match-tokens-per-s 1200 --minutes 30   # as issue 16's EPYC
    python benchmarks/budget.py --collect runs/a runs/b                    # tabulate finished runs only

Each run is the plain command a user types (no tuned flags), one at a time, in its own process,
so each gets the whole machine; the plan it fitted (steps, batch, warmup), its steps, epochs,
the padded share of its batches, the seconds it spent outside training steps, MFU and the held-out
scores come from its ``config.json`` / ``eval.json``. ``--beam 4`` also scores each run with beam
search (GNMT length penalty ``--length-penalty``) beside greedy. ``--ema`` trains with
``--average ema`` as well: averaging does not change the trained weights, so the run is scored
twice, with its average and with the weights before averaging (``attnlab eval --weights
checkpoint``), which are what the default recipe (no average) ends with; the medians are of those.
Each extra score is kept beside the run (``RUN/eval-checkpoint.json``, ``RUN/eval-beam4-lp0.6.json``).

``--emulate-avx2`` restricts ATen, oneDNN and MKL to AVX2 kernels, to stand in for an AVX2-only
CPU on one with AVX-512 / AMX: ``--precision auto`` then picks fp32 there too (bf16 would run
emulated), and the matmul rate the run measured is in its summary (``matmul_gflops``).

``--time-scale S`` stands in for a machine whose training step takes 1/S times as long as this
one's: a budget of M minutes runs as ``--max-minutes M·S`` here (the table keeps M, and the wall
budget beside it), so a faster CPU buys the steps the slower one would. S is a measured ratio of
the two machines' throughput on the default recipe (target tokens/s there over here), which
assumes the shapes compared keep their relative speed on both. ``--train-args`` adds options to
every run of a study (``"--vocab-size 4000 --d-model 192"``); runs with any setting that differs
from the preset are named in the ``changed`` column and left out of the medians.

``--match-tokens-per-s R`` measures S instead, before each run, on the machine as it is then (a
shared machine's speed drifts by a fifth from one session to the next): a probe of
``--probe-steps`` steps of ``--probe-task``'s preset (fra-eng, at its configured model, batch and
precision; no time budget, stopped before any evaluation) gives this machine's target tokens/s T,
and S = R / T, where R is the slower machine's rate on that step (1,200 for the AVX2-only EPYC of
issue 16). The probe times fra-eng's step whatever task the runs train; each run records its
probe and S (``RUN/budget.json``), and the table has them.

Writes ``benchmarks/results/STEM.json`` and ``STEM.md`` (``--out``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from attnlab.benchmarking import ScriptArgumentParser, environment, format_table, write_results
from attnlab.training.config import SHAPE_FIELDS
from attnlab.training.presets import default_model, default_train

RESULTS = Path(__file__).resolve().parent / "results"
PREDATES = "(none: the run predates it)"  # a preset setting missing from an older run's config.json
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def _attnlab(args: list[str], env: dict | None = None, capture: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "attnlab", *args]
    print("$ attnlab " + " ".join(args), file=sys.stderr, flush=True)
    return subprocess.run(command, env={**os.environ, **(env or {})}, check=True, text=True,
                          stdout=subprocess.PIPE if capture else None)


def _score(run: Path, env: dict, tag: str, *extra: str) -> dict:
    """``attnlab eval RUN EXTRA``, kept in RUN/eval-TAG.json (a later --collect reads it back)."""
    kept = run / f"eval-{tag}.json"
    if not kept.is_file():
        kept.write_text(_attnlab(["eval", str(run), *extra], env, capture=True).stdout)
    result = json.loads(kept.read_text())
    return {key: result[key] for key in ("bleu", "chrf", "loss") if key in result}


def _tokens_per_s(run: Path) -> float | None:
    """Median target tokens/s over the run's logged training steps (metrics.jsonl)."""
    rates = [row["tokens_per_s"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if row.get("split") == "train" and row.get("tokens_per_s")] if (run / "metrics.jsonl").is_file() else []
    return round(statistics.median(rates), 1) if rates else None


PROBE = """
import json, sys
from pathlib import Path
from attnlab.training.config import RunConfig
from attnlab.training.trainer import train

task, seed, windows, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
rates = []

class Enough(Exception):
    pass

def on_log(record):
    if record.get("split") == "train" and "tokens_per_s" in record:
        rates.append(record["tokens_per_s"])
        if len(rates) > windows:
            raise Enough

try:
    train(out, RunConfig.for_task(task, seed=seed, log_every=5), progress=False, on_log=on_log)
except Enough:
    pass
print(json.dumps(rates[1:]))
"""


def probe_tokens_per_s(task: str, run: Path, seed: int, steps: int, env: dict) -> float:
    """This machine's target tokens/s on the preset's step now (model, batch, precision as configured).

    The preset run is started and stopped after ``steps`` steps past a first 5-step window (the
    warm-in), before any evaluation; the median of its 5-step windows is the rate. Its folder is
    removed afterwards.
    """
    print(f"$ probe: {steps} steps of the {task} preset", file=sys.stderr, flush=True)
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, task, str(seed), str(max(1, steps // 5)), str(run)],
                              env={**os.environ, **env}, check=True, text=True, stdout=subprocess.PIPE)
        rates = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(run, ignore_errors=True)
    if not rates:
        raise SystemExit(f"error: the probe in {run} logged no throughput")
    return round(statistics.median(rates), 1)


def summarise(run: Path, *, beam: int, length_penalty: float, env: dict) -> dict:
    """One finished run: what it planned, what it did, and what it scored."""
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "eval.json").read_text())
    budget = json.loads((run / "budget.json").read_text()) if (run / "budget.json").is_file() else {}
    plan = summary.get("plan") or {}
    # settings that differ from the task's preset: a run with none is the default recipe
    preset_model = {**default_model(config["task"]), **(summary.get("fitted_model") or {})}  # a budget's choice
    changed = {**{k: v for k, v in preset_model.items() if config["model"].get(k) != v},
               # a setting newer than the run counts as changed: the run may have trained otherwise
               **{k: v for k, v in default_train(config["task"]).items() if config["train"].get(k, PREDATES) != v},
               **config.get("task_options", {})}
    if any(name in SHAPE_FIELDS for name in changed) and config["train"].get("small_budget_model") is None:
        changed.pop("small_budget_model", None)  # an explicit shape turns the budget's choice off: implied
    if (changed.get("precision") == "auto" and config["train"]["precision"] == "fp32"
            and summary.get("cpu", {}).get("torch_capability") in ("DEFAULT", "AVX2")):
        del changed["precision"]  # what auto resolves to under AVX2 kernels (bf16 would be emulated)
    options = config.get("task_options", {})
    shown = {k: changed[k] if k in options else config["model"].get(k, config["train"].get(k, PREDATES))
             for k in changed}
    if budget.get("study"):  # what the run tried that its settings do not show (e.g. code since changed)
        shown["study"] = budget["study"]
    row = {"run": run.name, "task": config["task"], "seed": config["train"]["seed"],
           "changed": ", ".join(f"{k}={v}" for k, v in shown.items()),
           "d_model": config["model"]["d_model"], "fitted_model": bool(summary.get("fitted_model")),
           "minutes": budget.get("minutes", config["train"]["max_minutes"]),
           "wall_budget_minutes": config["train"]["max_minutes"],
           "probe_tokens_per_s": budget.get("probe_tokens_per_s"), "batch_tokens": summary.get("batch_tokens"),
           "planned_steps": plan.get("steps"), "warmup": plan.get("warmup"), "steps": summary["steps"],
           "epochs": summary["epochs"], "tokens_per_s": _tokens_per_s(run), "padding": summary.get("padding"),
           "outside_steps_s": round(sum(summary.get("seconds_outside_steps", {}).values()), 1),
           "mfu": summary.get("mfu"), "matmul_gflops": summary.get("matmul_gflops"),
           "precision": summary["precision"], "kernels": summary.get("cpu", {}).get("torch_capability"),
           "average": summary.get("average", "none"),
           "bleu": summary["bleu"], "chrf": summary["chrf"], "test_loss": summary["loss"]}
    if row["average"] != "none":  # the same run, scored with its weights before averaging
        raw = _score(run, env, "checkpoint", "--weights", "checkpoint")
        row.update({"bleu_unaveraged": raw["bleu"], "chrf_unaveraged": raw["chrf"]})
    row["bleu_default_recipe"] = row.get("bleu_unaveraged", row["bleu"])
    if beam > 1:
        _score(run, env, f"beam{beam}-lp{length_penalty:g}", "--beam", str(beam), "--length-penalty",
               str(length_penalty))
    for kept in sorted(run.glob("eval-beam*-lp*.json")):  # every beam score made for this run, now or before
        beamed = json.loads(kept.read_text())
        row.update({f"bleu_{kept.stem[5:]}": beamed["bleu"], f"chrf_{kept.stem[5:]}": beamed["chrf"]})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="fra-eng", help="fra-eng (default) or multi30k")
    parser.add_argument("--minutes", type=float, nargs="+", default=[30.0], help="budgets (default 30)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (default 0 1)")
    parser.add_argument("--emulate-avx2", action="store_true", help="AVX2 kernels only, fp32 (see above)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="run each budget M as M·S minutes here, for a machine 1/S as fast (see above)")
    parser.add_argument("--match-tokens-per-s", type=float, default=None, metavar="R",
                        help="measure S before each run as R / this machine's tokens/s on the preset step")
    parser.add_argument("--probe-task", default="fra-eng",
                        help="whose preset step the probe times, the one R was measured on (default fra-eng)")
    parser.add_argument("--probe-steps", type=int, default=30, help="steps of that probe (default 30)")
    parser.add_argument("--train-args", default="", help='more `attnlab train` options for every run, quoted')
    parser.add_argument("--study", default="",
                        help="what the runs try beyond their settings (RUN/budget.json); such runs are not the default "
                             "recipe")
    parser.add_argument("--tag", default="", help="added to each run's folder name (default: none)")
    parser.add_argument("--ema", action="store_true", help="train with --average ema too and score both weights")
    parser.add_argument("--beam", type=int, default=1, help="also score with beam search of this size")
    parser.add_argument("--length-penalty", type=float, default=0.6, help="GNMT α for --beam (default 0.6)")
    parser.add_argument("--runs-dir", default="runs/budget", help="where the runs go (default runs/budget)")
    parser.add_argument("--collect", nargs="+", type=Path, help="only tabulate these finished runs")
    parser.add_argument("--out", default=None, help="output stem (default benchmarks/results/TASK-budget)")
    args = parser.parse_args(argv)
    if any(m <= 0 for m in args.minutes) or args.beam < 1 or args.time_scale <= 0:
        parser.error("--minutes and --time-scale must be > 0 and --beam >= 1")
    if args.match_tokens_per_s is not None and (args.match_tokens_per_s <= 0 or args.probe_steps < 5):
        parser.error("--match-tokens-per-s must be > 0 and --probe-steps at least 5")
    env = dict(AVX2_ONLY) if args.emulate_avx2 else {}
    wall_start, load_start = time.perf_counter(), round(os.getloadavg()[0], 2)
    runs = list(args.collect or [])
    for run in runs:
        if not (run / "eval.json").is_file():
            parser.error(f"{run} is not a finished run (no eval.json)")
    if not runs:
        for minutes in args.minutes:
            for seed in args.seeds:
                tag = f"-{args.tag}" if args.tag else ""
                run = Path(args.runs_dir) / f"{args.task}-{minutes:g}min-seed{seed}{tag}"
                flags = ["--average", "ema"] if args.ema else []
                scale, probe = args.time_scale, None
                if args.match_tokens_per_s is not None:
                    probe = probe_tokens_per_s(args.probe_task, run.with_name(run.name + "-probe"), seed,
                                               args.probe_steps, env)
                    scale = round(args.match_tokens_per_s / probe, 4)
                wall = round(minutes * scale, 3)
                _attnlab(["train", "--task", args.task, "--max-minutes", f"{wall:g}", "--seed", str(seed),
                          *flags, *shlex.split(args.train_args), "--quiet", "--force", "--out", str(run)],
                         env, capture=True)
                (run / "budget.json").write_text(json.dumps({"minutes": minutes, "time_scale": scale,
                                                                  "probe_tokens_per_s": probe,
                                                                  **({"study": args.study} if args.study else {})}))
                runs.append(run)
    rows = [summarise(run, beam=args.beam, length_penalty=args.length_penalty, env=env) for run in runs]
    medians = {}
    for minutes in sorted({row["minutes"] for row in rows}):
        scores = [row["bleu_default_recipe"] for row in rows if row["minutes"] == minutes and not row["changed"]]
        if scores:  # the default recipe's runs only
            medians[f"{minutes:g}"] = {"runs": len(scores), "median_bleu": round(statistics.median(scores), 2)}
    results = {"task": args.task, "emulate_avx2": args.emulate_avx2, "time_scale": args.time_scale,
               "match_tokens_per_s": args.match_tokens_per_s, "runs": rows, "median_bleu": medians,
               "wall_minutes": round((time.perf_counter() - wall_start) / 60, 2),
               "load_average": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
               "environment": environment()}
    env_info = results["environment"]
    scale_text = (f"time scale: {args.time_scale:g}" if args.match_tokens_per_s is None else
                  f"time scale: matched before each run to {args.match_tokens_per_s:g} target tokens/s (budget.json)")
    machine = env_info.get("cpu", {})
    text = "\n".join([f"# {args.task} within a time budget: the default recipe", "",
                      f"`{env_info['command']}` — {env_info['date']}, torch {env_info['torch']}, "
                      f"{env_info['cpu_count']} CPUs ({machine}), AVX2 emulated: {args.emulate_avx2}, "
                      f"{scale_text}. Greedy decoding unless a beam column says otherwise, sacreBLEU.", "",
                      format_table(rows, list(dict.fromkeys(key for row in rows for key in row))), "",
                      "Median BLEU per budget: " + ", ".join(f"{m} min: {v['median_bleu']} ({v['runs']} runs)"
                                                             for m, v in medians.items()), ""])
    return write_results(args.out or str(RESULTS / f"{args.task}-budget"), results, text)


if __name__ == "__main__":
    raise SystemExit(main())
