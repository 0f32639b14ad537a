"""``attnlab experiment explain``: which explanation of a translation can be trusted, measured.

Three measurements of every method of :mod:`attnlab.inspection.explain`, on toy runs trained as
an ordinary sweep (seeds, parallel, resumable) and, when given, on a fra-eng run:

* **Alignment** — the toy corpus has gold word alignments. Each target word links to the source
  word of highest relevance (the EOS column left out); the alignment error rate against the gold
  links (Och & Ney, 2003, sure = possible) is reported for the final map of each method, for each
  layer where a method has layers, and for the best single raw-attention head.
* **Deletion and insertion** (faithfulness; the comprehensiveness/sufficiency curves of
  DeYoung et al., 2020). For target position t, the source tokens are ranked by relevance.
  Deleting the top k (replacing them by PAD, which every attention masks out; EOS stays) lowers
  f_t = log p(y_t); *inserting* only the top k into an all-PAD source raises it::

      deletion(k)  = mean_t [f_t(x) − f_t(x without its top k)]      AOPC_del = mean_{k=1..K} deletion(k)
      insertion(k) = mean_t [f_t(only the top k) − f_t(no source)]   AOPC_ins = mean_{k=1..K} insertion(k)

  A random ranking is the baseline. Higher AOPC is more faithful.
* **Model randomisation** (Adebayo et al., 2018). The same sentences are explained by a model of
  the same shape with freshly initialised weights. A method whose maps keep a Spearman rank
  correlation ≥ ``RANDOMISATION_FLAG`` with the trained model's is flagged: it barely depends on
  what the model learned.

    >>> results = explain_study("out/explain", quick=True)
    >>> results["table"]["aer"]["rollout"]            # {"mean", "ci95", "n", "values"} over seeds
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import torch

from ..files import atomic_write_text
from ..inspection.explain import FLOW_MAX_TOKENS, METHODS, explain_all, parse_methods
from .stats import summarize
from .sweep import Job, default_workers, run_sweep

__all__ = ["explain_study", "explain_settings", "analyse_run", "deletion_curves", "randomisation_check",
           "rank_correlation", "EXPLAIN_QUICK", "EXPLAIN_FULL", "RANDOMISATION_FLAG"]

EXPLAIN_QUICK = {"seeds": 2, "steps": 200, "num_pairs": 800, "model": {"d_model": 64, "d_ff": 256}, "sentences": 8,
                 "randomised_sentences": 4, "deletion_k": 4, "ig_steps": 16, "methods": list(METHODS),
                 "fra_eng_run": None, "fra_eng_sentences": 6}
EXPLAIN_FULL = {"seeds": 3, "steps": 400, "num_pairs": 2000, "model": {}, "sentences": 40,
                "randomised_sentences": 12, "deletion_k": 5, "ig_steps": 64, "methods": list(METHODS),
                "fra_eng_run": None, "fra_eng_sentences": 30}
RANDOMISATION_FLAG = 0.8  # Spearman ρ between trained and re-initialised maps at or above this: flagged
ANALYSIS_KEYS = ("sentences", "randomised_sentences", "deletion_k", "ig_steps", "methods")


def explain_settings(quick: bool, **overrides) -> dict:
    """The preset with the given (non-None) overrides, validated."""
    settings = json.loads(json.dumps(EXPLAIN_QUICK if quick else EXPLAIN_FULL))
    settings.update({key: value for key, value in overrides.items() if value is not None})
    settings["quick"] = quick
    settings["methods"] = parse_methods(settings["methods"])
    for key in ("seeds", "steps", "num_pairs", "sentences", "randomised_sentences", "deletion_k", "ig_steps",
                "fra_eng_sentences"):
        value = settings[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be an integer >= 1, got {value!r}")
    if settings["num_pairs"] < 10:
        raise ValueError(f"--num-pairs must be >= 10, got {settings['num_pairs']}")
    if settings["ig_steps"] < 2:
        raise ValueError(f"--ig-steps must be >= 2, got {settings['ig_steps']}")
    if settings["fra_eng_run"] is not None:
        run = Path(settings["fra_eng_run"])
        if not (run / "config.json").is_file() or not (run / "model.safetensors").is_file():
            raise ValueError(f"--fra-eng-run {run} is not a trained run directory (config.json, model.safetensors)")
        settings["fra_eng_run"] = str(run)
    return settings


# --------------------------------------------------------------------------- one sentence


def _sentence(example) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src (Ls,) ending with EOS, decoder input (Lt,) starting with BOS, labels (Lt,) ending with EOS)."""
    from ..data import BOS_ID, EOS_ID, source_ids

    return (torch.tensor(source_ids(example.src_ids)), torch.tensor([BOS_ID] + list(example.tgt_ids)),
            torch.tensor(list(example.tgt_ids) + [EOS_ID]))


@torch.no_grad()
def deletion_curves(model, src: torch.Tensor, tgt: torch.Tensor, labels: torch.Tensor, ranking: torch.Tensor,
                    max_k: int) -> tuple[list[float], list[float]]:
    """Deletion and insertion curves (k = 0..max_k) of one sentence, averaged over target positions.

    ``ranking`` (Lt, n): for each target position, the real source positions (EOS excluded) from
    most to least relevant. Removed tokens become PAD (masked by every attention).
    """
    from ..data import PAD_ID

    rows, real = ranking.shape
    ks = [min(k, real) for k in range(max_k + 1)]
    deleted, inserted = [], []
    for k in ks:
        for t in range(rows):
            top = ranking[t, :k]
            without = src.clone()
            without[top] = PAD_ID
            only = src.clone()
            keep = torch.zeros(len(src), dtype=torch.bool)
            keep[top] = True
            keep[real:] = True  # EOS (and anything after the real tokens) stays
            only[~keep] = PAD_ID
            deleted.append(without)
            inserted.append(only)
    sources = torch.stack(deleted + inserted)  # (2·(K+1)·Lt, Ls)
    log_probs = torch.log_softmax(model(sources, tgt[None].expand(len(sources), -1)).float(), dim=-1)
    picked = log_probs.gather(-1, labels[None, :, None].expand(len(sources), -1, 1))[..., 0]  # (N, Lt)
    own = picked.view(2, len(ks), rows, rows).diagonal(dim1=2, dim2=3)  # (2, K+1, Lt): row t under its own ranking
    deletion = (own[0, 0] - own[0]).mean(-1)  # (K+1,)
    insertion = (own[1] - own[1, 0]).mean(-1)
    return [round(float(v), 5) for v in deletion], [round(float(v), 5) for v in insertion]


def aopc(curve: list[float]) -> float:
    """Area over the perturbation curve: the mean of the curve over k = 1..K."""
    return sum(curve[1:]) / max(1, len(curve) - 1)


# --------------------------------------------------------------------------- randomisation


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    flat = values.flatten().double()
    ranks = torch.empty_like(flat)
    ranks[flat.argsort()] = torch.arange(len(flat), dtype=torch.float64)
    unique, inverse = torch.unique(flat, return_inverse=True)
    sums = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks)
    return (sums / torch.bincount(inverse).double())[inverse]  # tied values share their mean rank


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's ρ between two maps of the same shape (ties get their average rank).

    Two constant maps count as identical (ρ = 1); one constant map against a varying one as 0.
    """
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    scale = ra.norm() * rb.norm()
    if scale == 0:
        return 1.0 if ra.norm() == rb.norm() else 0.0
    return float((ra @ rb) / scale)


def randomisation_check(methods: dict[str, Callable], trained, randomised, sentences: list,
                        threshold: float = RANDOMISATION_FLAG) -> dict[str, dict]:
    """Mean Spearman ρ between each method's maps on ``trained`` and on ``randomised``; flag ρ ≥ threshold.

    ``methods[name](model, sentence)`` returns that method's relevance matrix for one sentence.

    >>> randomisation_check({"raw": raw_map}, model, fresh_model, sentences)["raw"]
    {'rank_correlation': 0.12, 'flagged': False}
    """
    results = {}
    for name, method in methods.items():
        values = [rank_correlation(method(trained, s), method(randomised, s)) for s in sentences]
        mean = sum(values) / len(values)
        results[name] = {"rank_correlation": round(mean, 4), "flagged": mean >= threshold}
    return results


# --------------------------------------------------------------------------- one run


def _aer(counts: torch.Tensor) -> float:
    """(…, 3) summed (|A∩S|, |A|, |S|) → AER = 1 − 2|A∩S| / (|A| + |S|) (sure = possible)."""
    return round(float(1.0 - 2.0 * counts[..., 0] / (counts[..., 1] + counts[..., 2])), 4)


def _headline_maps(model, sentence, methods: list[str], ig_steps: int) -> dict:
    src, tgt, labels = sentence
    return explain_all(model, src, tgt, methods=methods, labels=labels, steps=ig_steps)


def analyse_run(run_dir: str, settings: dict, threads: int | None = None, with_alignment: bool = True,
                cache: str | None = None) -> dict:
    """Alignment, deletion/insertion and randomisation for one trained run.

    The result is cached in ``cache`` (default ``RUN/explain.json``) with the analysis settings;
    a second call with the same settings reads it back.
    """
    from ..training.runs import build_model, load_run
    from .probes import _aer_counts

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    cache = Path(cache) if cache else run_dir / "explain.json"
    key = {k: settings[k] for k in ANALYSIS_KEYS}
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("analysis") == key and cached.get("with_alignment") == with_alignment:
            return cached
    run = load_run(run_dir)
    model = run.model.eval()
    data = run.config.load_data()
    examples = [ex for ex in data.test if not with_alignment or ex.alignment]
    if not with_alignment:  # a subword corpus: encode with the run's own tokenizers, not freshly trained ones
        examples = [replace(ex, src_ids=run.source.encode(ex.src_text), tgt_ids=run.target.encode(ex.tgt_text))
                    for ex in examples]
    examples = [ex for ex in examples if len(ex.src_ids) + 1 <= FLOW_MAX_TOKENS and len(ex.tgt_ids) + 1 <= FLOW_MAX_TOKENS]
    examples = examples[:settings["sentences"]]
    if not examples:
        raise ValueError(f"{run_dir}: no test sentence fits (gold alignments, at most {FLOW_MAX_TOKENS} tokens)")
    methods = settings["methods"]
    counts = {m: torch.zeros(3) for m in methods}
    layer_counts: dict[str, torch.Tensor] = {}
    head_counts = None
    curves = {m: ([], []) for m in methods + ["random"]}
    seconds = {m: 0.0 for m in methods}
    completeness = []
    rng = random.Random(f"explain-random-{run_dir.name}")
    first = _sentence(examples[0])
    example_maps = {"source_tokens": run.source.tokens(first[0].tolist()),
                    "target_tokens": run.target.tokens(first[2].tolist()),  # row t predicts labels[t]
                    "gold": [list(pair) for pair in examples[0].alignment or []], "maps": {}}
    for example in examples:
        sentence = _sentence(example)
        num_src, num_tgt = len(example.src_ids), len(example.tgt_ids)
        views = {}
        for method in methods:
            started = time.perf_counter()
            views[method] = _headline_maps(model, sentence, [method], settings["ig_steps"])[method]
            seconds[method] += time.perf_counter() - started
        gold = set(map(tuple, example.alignment or []))
        for method, view in views.items():
            if example is examples[0]:
                example_maps["maps"][method] = [[round(float(v), 4) for v in row] for row in view.relevance]
            if with_alignment:
                counts[method] += torch.tensor(_aer_counts(view.relevance[:num_tgt, :num_src], gold, num_src, num_tgt))
                if view.layers is not None:
                    per_layer = torch.stack([torch.tensor(_aer_counts(layer[:num_tgt, :num_src], gold, num_src, num_tgt))
                                             for layer in view.layers]).float()
                    layer_counts[method] = layer_counts.get(method, 0) + per_layer
                if method == "raw":
                    heads = torch.tensor([[_aer_counts(h[:num_tgt, :num_src], gold, num_src, num_tgt) for h in layer]
                                          for layer in view.heads]).float()  # (layers, H, 3)
                    head_counts = heads if head_counts is None else head_counts + heads
            if view.completeness_error is not None:
                completeness.append((view.completeness_error.abs(), view.output_change.abs()))
            ranking = view.relevance[:, :num_src].argsort(dim=-1, descending=True)  # (Lt, n)
            curve = deletion_curves(model, *sentence, ranking, settings["deletion_k"])
            curves[method][0].append(curve[0])
            curves[method][1].append(curve[1])
        shuffled = torch.stack([torch.tensor(rng.sample(range(num_src), num_src)) for _ in range(num_tgt + 1)])
        curve = deletion_curves(model, *sentence, shuffled, settings["deletion_k"])
        curves["random"][0].append(curve[0])
        curves["random"][1].append(curve[1])

    def mean_curve(rows):
        return [round(sum(column) / len(column), 5) for column in zip(*rows)]

    result = {"run": run_dir.name, "analysis": key, "with_alignment": with_alignment, "num_sentences": len(examples),
              "ms_per_sentence": {m: round(1000 * s / len(examples), 1) for m, s in seconds.items()},
              "deletion": {}, "insertion": {}, "example": example_maps}
    for method, (deletions, insertions) in curves.items():
        result["deletion"][method] = {"curve": mean_curve(deletions), "aopc": round(aopc(mean_curve(deletions)), 5),
                                      "per_sentence_aopc": [round(aopc(c), 5) for c in deletions]}
        result["insertion"][method] = {"curve": mean_curve(insertions), "aopc": round(aopc(mean_curve(insertions)), 5),
                                       "per_sentence_aopc": [round(aopc(c), 5) for c in insertions]}
    if with_alignment:
        result["aer"] = {m: _aer(c) for m, c in counts.items()}
        result["aer_layers"] = {m: [_aer(c) for c in layer] for m, layer in layer_counts.items()}
        if head_counts is not None:
            per_head = 1.0 - 2.0 * head_counts[..., 0] / (head_counts[..., 1] + head_counts[..., 2])
            best_layer, best_head = divmod(int(per_head.argmin()), per_head.shape[1])
            result["aer_best_head"] = {"layer": best_layer, "head": best_head, "aer": round(float(per_head.min()), 4)}
    if completeness:
        errors = torch.cat([e for e, _ in completeness])
        relative = torch.cat([e / c.clamp(min=1e-6) for e, c in completeness])
        result["ig_completeness"] = {"steps": settings["ig_steps"], "mean_abs": round(float(errors.mean()), 5),
                                     "max_abs": round(float(errors.max()), 5),
                                     "median_relative": round(float(relative.median()), 5)}
    torch.manual_seed(12345)
    randomised = build_model(run.config).eval()  # the same shape, freshly initialised weights
    checked = [_sentence(ex) for ex in examples[:settings["randomised_sentences"]]]
    result["randomisation"] = randomisation_check(
        {m: (lambda model, s, m=m: _headline_maps(model, s, [m], settings["ig_steps"])[m].relevance) for m in methods},
        model, randomised, checked)
    atomic_write_text(cache, json.dumps(result, indent=2))
    return result


def _analyse_all(run_dirs: list[Path], settings: dict, workers: int, with_alignment: bool = True) -> list[dict]:
    if workers == 1 or len(run_dirs) == 1:
        return [analyse_run(str(d), settings, None, with_alignment) for d in run_dirs]
    with ProcessPoolExecutor(max_workers=min(workers, len(run_dirs)), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(analyse_run, str(d), settings, 1, with_alignment) for d in run_dirs]
        return [future.result() for future in futures]


# --------------------------------------------------------------------------- the study


def _table(analyses: list[dict], methods: list[str]) -> dict:
    """Every number summarised over seeds (mean ± 95% t-interval)."""
    table = {"aer": {}, "aer_layers": {}, "deletion_aopc": {}, "insertion_aopc": {}, "rank_correlation": {},
             "flagged": {}, "ms_per_sentence": {}}
    for method in methods:
        table["aer"][method] = summarize([a["aer"][method] for a in analyses])
        if method in analyses[0]["aer_layers"]:
            layers = len(analyses[0]["aer_layers"][method])
            table["aer_layers"][method] = [summarize([a["aer_layers"][method][i] for a in analyses])
                                           for i in range(layers)]
        table["rank_correlation"][method] = summarize([a["randomisation"][method]["rank_correlation"] for a in analyses])
        table["flagged"][method] = table["rank_correlation"][method]["mean"] >= RANDOMISATION_FLAG
        table["ms_per_sentence"][method] = summarize([a["ms_per_sentence"][method] for a in analyses], digits=1)
    for method in methods + ["random"]:
        table["deletion_aopc"][method] = summarize([a["deletion"][method]["aopc"] for a in analyses])
        table["insertion_aopc"][method] = summarize([a["insertion"][method]["aopc"] for a in analyses])
    if all("aer_best_head" in a for a in analyses):
        table["aer_best_head"] = summarize([a["aer_best_head"]["aer"] for a in analyses])
    if all("ig_completeness" in a for a in analyses):
        table["ig_max_abs_error"] = summarize([a["ig_completeness"]["max_abs"] for a in analyses])
        table["ig_mean_abs_error"] = summarize([a["ig_completeness"]["mean_abs"] for a in analyses])
    return table


def explain_study(out_dir, *, quick: bool = False, workers: int | None = None, progress: bool = True,
                  command: str | None = None, **overrides) -> dict:
    """Train the toy runs (a sweep over seeds), measure every method on each, and write the report."""
    from ..training.config import RunConfig
    from .explain_report import write_explain_report

    started = time.perf_counter()
    s = explain_settings(quick, **overrides)
    s["command"] = command
    out_dir = Path(out_dir)
    run = RunConfig.for_task("toy", **s["model"], steps=s["steps"], eval_every=s["steps"], checkpoint_every=200,
                             warmup=min(100, max(1, s["steps"] // 5)), num_pairs=s["num_pairs"]).to_dict()
    jobs = [Job(f"toy-s{seed}", {**run, "train": {**run["train"], "seed": seed}}, {"seed": seed})
            for seed in range(1, s["seeds"] + 1)]
    outcome = run_sweep(out_dir, jobs, workers=workers, progress=progress, title="explain")
    workers = max(1, workers or default_workers())
    analyses = _analyse_all([out_dir / "runs" / job.name for job in jobs], s, workers)
    results = {"experiment": "explain", "settings": s, "trained_now": outcome.trained,
               "skipped_finished": outcome.skipped, "runs": outcome.records, "analyses": analyses,
               "table": _table(analyses, s["methods"]), "randomisation_flag": RANDOMISATION_FLAG,
               "flow_max_tokens": FLOW_MAX_TOKENS}
    if s["fra_eng_run"]:
        fra = analyse_run(s["fra_eng_run"], {**s, "sentences": s["fra_eng_sentences"]}, None, with_alignment=False,
                          cache=str(out_dir / "fra-eng-explain.json"))
        results["fra_eng"] = {"run": s["fra_eng_run"], **fra}
    results["wall_minutes"] = round((time.perf_counter() - started) / 60, 2)
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    write_explain_report(out_dir, results)
    return results
