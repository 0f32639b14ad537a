"""Explanation methods: milliseconds per sentence, and integrated gradients' completeness vs its steps.

    attnlab train --task toy --out /tmp/toy-explain                       # the demo model (~1 min)
    python benchmarks/explain.py --run /tmp/toy-explain                   # + --fra-eng-run RUN
    python benchmarks/explain.py --run /tmp/toy-explain --quick           # a smoke test

Each sentence is first translated greedily; every method then explains that translation
(teacher-forced, one sentence at a time, as ``attnlab.inspection.explain.explain`` does). The
methods are timed interleaved in one process (attnlab.benchmarking.compare): the median over
``--repeats`` rounds of one pass over all sentences, divided by their number. Integrated
gradients is timed at 64 steps (its default). The completeness error
|Σ attributions − (log p(y_t | x) − log p(y_t | 0))| is measured per target position for each
``--ig-steps`` value; the table gives its mean and maximum over all positions of all sentences.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from attnlab.benchmarking import compare, environment, log_to_stderr, script_parser, set_threads, write_results
from attnlab.data import BOS_ID, TOY_EXAMPLES, source_ids
from attnlab.inspection.explain import DEFAULT_STEPS, METHODS, explain
from attnlab.inspection.inference import Translator

RESULTS = Path(__file__).resolve().parent / "results"
FRA_ENG_EXAMPLES = ["I am very happy to see you.", "Where is the train station?", "She did not eat the apple.",
                    "We will go to the park tomorrow."]


def _sentences(translator: Translator, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(encoder input, decoder input) for each text, the target being the model's greedy translation."""
    outputs = translator.translate_ids(texts)
    return [(torch.tensor(source_ids(translator.encode(text))), torch.tensor([BOS_ID] + output))
            for text, output in zip(texts, outputs)]


def measure(name: str, run: str, texts: list[str], repeats: int, ig_steps: list[int], log) -> dict:
    translator = Translator.load(Path(run))
    model = translator.model
    sentences = _sentences(translator, texts)
    lengths = [(len(src), len(tgt)) for src, tgt in sentences]
    log(f"{name}: {len(sentences)} sentences, (source, target) lengths {lengths}")

    def candidate(method):
        return lambda: [explain(model, src, tgt, method=method, steps=DEFAULT_STEPS) for src, tgt in sentences]

    timings = compare({method: candidate(method) for method in METHODS}, warmup=1, repeats=repeats)
    per_sentence = {method: round(timing.median_ms / len(sentences), 1) for method, timing in timings.items()}
    log(f"{name}: ms per sentence {per_sentence}")
    completeness = []
    for steps in ig_steps:
        errors, relative = [], []
        started = time.perf_counter()
        results = [explain(model, src, tgt, method="ig", steps=steps) for src, tgt in sentences]
        seconds = time.perf_counter() - started
        for result in results:
            errors.append(result.completeness_error.abs())
            relative.append(result.completeness_error.abs() / result.output_change.abs().clamp(min=1e-6))
        errors, relative = torch.cat(errors), torch.cat(relative)
        completeness.append({"steps": steps, "mean_abs_error": round(float(errors.mean()), 5),
                             "max_abs_error": round(float(errors.max()), 5),
                             "median_relative_error": round(float(relative.median()), 5),
                             "ms_per_sentence": round(1000 * seconds / len(sentences), 1)})
        log(f"{name}: IG {completeness[-1]}")
    config = model.config
    return {"name": name, "run": str(run), "sentences": texts, "lengths": lengths,
            "model": f"{config.num_encoder_layers}+{config.num_decoder_layers} layers, d_model {config.d_model}, "
                     f"{config.num_heads} heads", "ms_per_sentence": per_sentence, "ig_completeness": completeness}


def _markdown(results: dict) -> str:
    lines = ["| model | sentences | " + " | ".join(METHODS) + " |", "|---|---:|" + "---:|" * len(METHODS)]
    for row in results["rows"]:
        lines.append(f"| {row['name']} ({row['model']}) | {len(row['sentences'])} | "
                     + " | ".join(f"{row['ms_per_sentence'][m]:.1f}" for m in METHODS) + " |")
    lines += ["", "Milliseconds per sentence (median of the rounds; integrated gradients at "
              f"{DEFAULT_STEPS} steps).", "",
              "| model | IG steps | mean abs. completeness error (nats) | max | median relative | ms / sentence |",
              "|---|---:|---:|---:|---:|---:|"]
    for row in results["rows"]:
        for point in row["ig_completeness"]:
            lines.append(f"| {row['name']} | {point['steps']} | {point['mean_abs_error']:.4f} | "
                         f"{point['max_abs_error']:.4f} | {point['median_relative_error']:.4f} | "
                         f"{point['ms_per_sentence']:.1f} |")
    env = results["environment"]
    lines += ["", f"{env.get('cpu', {}).get('model', '?')}, torch {env.get('torch', '?')}, "
              f"{results['threads']} thread(s), {env.get('date', env.get('time', ''))}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = script_parser(__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, metavar="RUN", help="the demo model: a trained toy run")
    parser.add_argument("--fra-eng-run", metavar="RUN", help="also measure a trained fra-eng run")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 3; 1 with --quick)")
    parser.add_argument("--ig-steps", default=None, help="comma list (default 8,16,32,64,128,256)")
    parser.add_argument("--out", metavar="STEM", help="write STEM.json and STEM.md (default benchmarks/results/explain)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    try:
        ig_steps = [int(s) for s in (args.ig_steps or ("8,16" if args.quick else "8,16,32,64,128,256")).split(",")]
    except ValueError:
        parser.error(f"--ig-steps takes integers separated by commas, got {args.ig_steps!r}")
    if repeats < 1 or min(ig_steps) < 2:
        parser.error("--repeats must be >= 1 and every --ig-steps value >= 2")
    for run in filter(None, [args.run, args.fra_eng_run]):
        if not (Path(run) / "config.json").is_file():
            parser.error(f"{run} is not a trained run directory (no config.json)")
    threads = set_threads(args.threads)
    toy_texts = TOY_EXAMPLES[:2] if args.quick else list(TOY_EXAMPLES)
    rows = [measure("toy", args.run, toy_texts, repeats, ig_steps, log_to_stderr)]
    if args.fra_eng_run:
        rows.append(measure("fra-eng", args.fra_eng_run, FRA_ENG_EXAMPLES[:2] if args.quick else FRA_ENG_EXAMPLES,
                            repeats, ig_steps, log_to_stderr))
    results = {"benchmark": "explain", "threads": threads, "environment": environment(), "rows": rows}
    return write_results(args.out or str(RESULTS / "explain"), results, _markdown(results))


if __name__ == "__main__":
    raise SystemExit(main())
