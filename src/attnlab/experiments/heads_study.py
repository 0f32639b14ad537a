"""``attnlab experiment heads RUN``: ablate each attention head alone — does the output care?

For every head of every attention layer of a trained run (and, for comparison, every whole layer), :func:`~attnlab.inspection.interventions.ablate_heads`
removes that head's contribution (zero, or its mean over the dev sentences), and the test sentences
are translated again (greedy) and scored: the change in corpus BLEU, the change in each
sentence's teacher-forced loss (nats per target token, without label smoothing), and the share of
translations that changed. On the toy corpus each cross-attention head's alignment error rate
(:func:`~attnlab.experiments.probes.alignment_probe`) stands beside it, with the rank correlation
between AER and the damage — do the heads that align words matter for the output?

Each head's result is cached in ``OUT/heads/KIND-LAYER-HEAD.json``; heads are split over ``workers``
processes; re-running skips the finished ones.

    >>> results = heads_study("runs/toy", "out/heads", sentences=200)
    >>> results["heads"][0]            # {"kind", "layer", "head", "delta_bleu", "delta_loss", "changed", "aer"}
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from ..files import atomic_write_text
from ..inspection.interventions import ABLATION_MODES, ablate_heads, reference_log_probability
from .stats import summarize
from .sweep import default_workers

__all__ = ["heads_study", "HEADS_QUICK", "HEADS_FULL"]

HEADS_QUICK = {"sentences": 40, "mode": "zero"}
HEADS_FULL = {"sentences": 200, "mode": "zero"}
BATCH = 64


def _score(run, examples, data) -> dict:
    """Greedy BLEU of ``examples``, each sentence's per-token loss, and the outputs."""
    from ..core.decoding import greedy_decode
    from ..data import PAD_ID, collate
    from ..training.metrics import corpus_bleu

    outputs, losses = [], []
    for start in range(0, len(examples), BATCH):
        chunk = examples[start:start + BATCH]
        batch = collate(chunk, range(len(chunk)))
        outputs.extend(greedy_decode(run.model, batch.src))
        reference = torch.full((len(chunk), max(len(ex.tgt_ids) for ex in chunk)), PAD_ID, dtype=torch.long)
        for i, ex in enumerate(chunk):
            reference[i, :len(ex.tgt_ids)] = torch.tensor(ex.tgt_ids)  # (B, Lt) without BOS/EOS
        lengths = torch.tensor([len(ex.tgt_ids) + 1 for ex in chunk])  # predicted tokens, EOS included
        losses.extend((-reference_log_probability(run.model, batch.src, reference) / lengths).tolist())
    hypotheses = [data.target.decode(ids) for ids in outputs]
    bleu = corpus_bleu(hypotheses, [ex.references for ex in examples])
    return {"bleu": round(bleu, 3), "losses": losses, "outputs": outputs}


def _examples(run, sentences: int):
    data = run.config.load_data()
    return data, data.test[:sentences], data.dev[:BATCH]


def _heads_job(run_dir: str, heads: list[tuple[str, int, int]], settings: dict, out_dir: str,
               threads: int | None = None) -> list[dict]:
    """Ablate each head of ``heads`` alone; write and return one record per head."""
    from ..data import collate
    from ..training.runs import load_run

    if threads:
        torch.set_num_threads(threads)
    run = load_run(Path(run_dir))
    data, examples, dev = _examples(run, settings["sentences"])
    baseline = _score(run, examples, data)
    reference = None
    if settings["mode"] == "mean":
        batch = collate(dev, range(len(dev)))
        reference = (batch.src, batch.tgt_in)
    records = []
    for kind, layer, head in heads:
        path = Path(out_dir) / "heads" / f"{kind}-{layer}-{head}.json"
        key = {"mode": settings["mode"], "sentences": settings["sentences"]}
        if path.is_file() and json.loads(path.read_text()).get("settings") == key:
            records.append(json.loads(path.read_text()))
            continue
        chosen = "all" if head == "all" else [head]
        with ablate_heads(run.model, {(kind, layer): chosen}, mode=settings["mode"], reference=reference):
            ablated = _score(run, examples, data)
        deltas = [a - b for a, b in zip(ablated["losses"], baseline["losses"])]
        record = {"kind": kind, "layer": layer, "head": head, "settings": key, "bleu": ablated["bleu"],
                  "delta_bleu": round(ablated["bleu"] - baseline["bleu"], 3), "delta_loss": summarize(deltas, 5),
                  "changed": round(sum(a != b for a, b in zip(ablated["outputs"], baseline["outputs"])) / len(examples), 4)}
        atomic_write_text(path, json.dumps(record, indent=2))
        records.append(record)
    return records


def _spearman(a: list[float], b: list[float]) -> float | None:
    from .explain_study import rank_correlation

    if len(a) < 3 or len(set(a)) == 1 or len(set(b)) == 1:
        return None  # no ranking to correlate
    return round(rank_correlation(torch.tensor(a), torch.tensor(b)), 4)


def heads_study(run_dir, out_dir, *, quick: bool = False, sentences: int | None = None, mode: str | None = None,
                workers: int | None = None, progress: bool = True, command: str | None = None) -> dict:
    """Ablate every head of ``run_dir`` alone; write results.json and report.md to ``out_dir``."""
    from ..inspection.record import _attention_layers
    from ..training.runs import load_run
    from .explain_report import write_heads_report
    from .probes import alignment_probe

    started = time.perf_counter()
    settings = dict(HEADS_QUICK if quick else HEADS_FULL)
    settings.update({k: v for k, v in {"sentences": sentences, "mode": mode}.items() if v is not None})
    if settings["mode"] not in ABLATION_MODES:
        raise ValueError(f"unknown ablation mode {settings['mode']!r}; allowed: {', '.join(ABLATION_MODES)}")
    if not isinstance(settings["sentences"], int) or settings["sentences"] < 1:
        raise ValueError(f"--sentences must be an integer >= 1, got {settings['sentences']!r}")
    settings["command"] = command
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = load_run(run_dir)
    if run.config.architecture != "transformer":
        raise ValueError(f"{run_dir} is a {run.config.architecture} run; heads are ablated in Transformers only")
    layers = _attention_layers(run.model)
    heads = [(kind, layer, head) for module, kind, layer in layers for head in range(module.num_heads)]
    heads += [(kind, layer, "all") for _, kind, layer in layers]  # and each whole layer, for comparison
    workers = max(1, min(workers or default_workers(), len(heads)))
    chunks = [heads[i::workers] for i in range(workers)]
    if workers == 1:
        records = _heads_job(str(run_dir), heads, settings, str(out_dir))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_heads_job, str(run_dir), chunk, settings, str(out_dir), 1) for chunk in chunks]
            records = [record for future in futures for record in future.result()]
    order = {head: i for i, head in enumerate(heads)}
    records.sort(key=lambda r: order[(r["kind"], r["layer"], r["head"])])
    results_layers = [r for r in records if r["head"] == "all"]
    records = [r for r in records if r["head"] != "all"]
    data, examples, _ = _examples(run, settings["sentences"])
    baseline = _score(run, examples, data)
    results = {"experiment": "heads", "run": str(run_dir), "settings": settings, "num_sentences": len(examples),
               "baseline": {"bleu": baseline["bleu"], "loss": round(sum(baseline["losses"]) / len(examples), 5)},
               "heads": records, "layers": results_layers}
    if run.config.task == "toy":
        probe = alignment_probe(run, num=settings["sentences"])
        cross = [r for r in records if r["kind"] == "cross"]
        for record in cross:
            record["aer"] = probe["per_head"][record["layer"]][record["head"]]
        results["num_cross_heads"] = len(cross)
        results["aer_vs_delta_bleu"] = _spearman([r["aer"] for r in cross], [r["delta_bleu"] for r in cross])
        results["aer_vs_delta_loss"] = _spearman([r["aer"] for r in cross], [r["delta_loss"]["mean"] for r in cross])
    results["wall_minutes"] = round((time.perf_counter() - started) / 60, 2)
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    write_heads_report(out_dir, results)
    return results
