"""The lecture's "Try This" studies as sweeps: which runs to train, and what to make of them.

* :func:`blocks_study` — "Modify the number of encoder blocks": encoder (and decoder) depth × seeds.
* :func:`pe_study` — "Compare fixed PE vs. learned PE": encodings × tasks × seeds, with length
  extrapolation, the permutation probe and the position-similarity plots.
* :func:`architectures_study` — the lecture's RNN vs self-attention comparison, measured.

On the toy corpus every run is also scored against the gold alignments (AER per head). Each
study writes ``OUT/results.json``, ``OUT/report.md`` and ``OUT/figures/``; runs live in
``OUT/runs/`` and are skipped when finished (see :mod:`attnlab.experiments.sweep`).

    >>> blocks_study("out/blocks", task="toy", encoder_layers=[1, 2, 4, 6], seeds=3)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..files import atomic_write_text
from ..data import SYNTHETIC_TASKS, TASKS, parse_length_range
from ..core.positional import POSITIONAL_ENCODINGS
from ..training.config import ARCHITECTURES, RunConfig
from ..training.presets import default_model, default_train, task_family
from .stats import summarize
from .sweep import Job, run_sweep

__all__ = ["blocks_study", "pe_study", "architectures_study", "QUICK", "FULL", "settings_for"]

# Presets: `quick` is first contact and tests (minutes); `full` is what docs/experiments.md reports.
QUICK = {
    "blocks": {"task": "toy", "encoder_layers": [1, 2], "seeds": 2, "steps": 300, "num_pairs": 1500,
               "model": {"d_model": 64, "d_ff": 256}},
    "pe": {"tasks": ["reverse", "sort"], "encodings": list(POSITIONAL_ENCODINGS), "seeds": 2, "steps": 600,
           "num_train": 5000, "lengths": {"reverse": "1-8", "sort": "1-8", "add": "1-3"},
           "test_lengths": {"reverse": "1-12", "sort": "1-12", "add": "1-4"}, "num_pairs": 1500,
           "model": {}},
    "architectures": {"tasks": ["toy", "reverse"], "models": list(ARCHITECTURES), "seeds": 2, "steps": 300,
                      "num_train": 5000, "num_pairs": 1500, "max_pairs": 5000, "timing_lengths": [8, 16, 32, 64]},
}
FULL = {
    "blocks": {"task": "toy", "encoder_layers": [1, 2, 4, 6], "seeds": 3, "steps": 400, "num_pairs": 4000,
               "model": {}},
    "pe": {"tasks": ["reverse", "sort", "add", "toy"], "encodings": list(POSITIONAL_ENCODINGS), "seeds": 3,
           "steps": 600, "num_train": 10000, "lengths": {"reverse": "1-10", "sort": "1-10", "add": "1-4"},
           "test_lengths": {"reverse": "1-16", "sort": "1-16", "add": "1-6"}, "num_pairs": 4000, "model": {}},
    "architectures": {"tasks": ["toy", "reverse", "fra-eng"], "models": list(ARCHITECTURES), "seeds": 3,
                      "steps": 600, "num_train": 10000, "num_pairs": 4000, "max_pairs": 20000,
                      "timing_lengths": [8, 16, 32, 64, 128, 256]},
}
LEARNED_MARGIN = 3  # learned tables get this many rows past the longest training input


def settings_for(study: str, quick: bool, **overrides) -> dict:
    """The preset for ``study`` with the given (non-None) overrides, validated."""
    settings = json.loads(json.dumps((QUICK if quick else FULL)[study]))
    settings.update({key: value for key, value in overrides.items() if value is not None})
    settings["quick"] = quick
    _validate(study, settings)
    return settings


def _validate(study: str, s: dict) -> None:
    if not isinstance(s["seeds"], int) or isinstance(s["seeds"], bool) or s["seeds"] < 1:
        raise ValueError(f"--seeds must be an integer >= 1, got {s['seeds']!r}")
    if not isinstance(s["steps"], int) or s["steps"] < 1:
        raise ValueError(f"--steps must be an integer >= 1, got {s['steps']!r}")
    lists = {"blocks": ("encoder_layers",), "pe": ("encodings", "tasks"), "architectures": ("models", "tasks")}[study]
    for key in lists:
        if not s[key]:
            raise ValueError(f"--{key.replace('_', '-')} must list at least one value")
        if len(set(s[key])) != len(s[key]):
            raise ValueError(f"--{key.replace('_', '-')} lists a value twice: {s[key]}")
    if study == "blocks":
        for key in ("encoder_layers", "decoder_layers"):
            for value in s.get(key) or []:
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"--{key.replace('_', '-')} values must be integers >= 1, got {value!r}")
        _check_task(s["task"])
    for encoding in s.get("encodings", []):
        if encoding not in POSITIONAL_ENCODINGS:
            raise ValueError(f"unknown positional encoding {encoding!r}; allowed: {', '.join(POSITIONAL_ENCODINGS)}")
    for model in s.get("models", []):
        if model not in ARCHITECTURES:
            raise ValueError(f"unknown model {model!r}; allowed: {', '.join(ARCHITECTURES)}")
    for task in s.get("tasks", []):
        _check_task(task)
        if study == "pe" and task not in SYNTHETIC_TASKS + ("toy",):
            raise ValueError(f"the pe study runs on {', '.join(SYNTHETIC_TASKS + ('toy',))}; got {task!r}")
    for key in ("lengths", "test_lengths"):
        for value in s.get(key, {}).values():
            parse_length_range(value)


def _check_task(task: str) -> None:
    if task not in TASKS and not Path(task).exists():
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)} or a path to a parallel corpus")


def _task_options(task: str, s: dict, *, for_pe: bool = False) -> dict:
    family = task_family(task)
    if family == "synthetic":
        lengths = s.get("lengths", {}).get(task, "1-12" if task != "add" else "1-4")
        # Test in-distribution during training; extrapolation is a separate probe (learned tables end).
        return {"num_train": s["num_train"], "num_test": 300, "train_lengths": lengths, "test_lengths": lengths}
    if family == "toy":
        return {"num_pairs": s["num_pairs"]}
    return {"max_pairs": s["max_pairs"]}


def _positions_needed(task: str, lengths: str) -> int:
    """The longest encoder or decoder input of training (source + EOS, BOS + target)."""
    _, high = parse_length_range(lengths)
    return 2 * high + 2 if task == "add" else high + 1


def _run_config(task: str, s: dict, architecture: str = "transformer", **model_overrides) -> dict:
    """The task's preset with the study's model settings, its step budget (one dev evaluation, at the
    end) and a warmup of at most a fifth of it."""
    warmup = min(default_train(task)["warmup"], max(1, s["steps"] // 5))
    return RunConfig.for_task(task, architecture=architecture, **{**s.get("model", {}), **model_overrides},
                              steps=s["steps"], eval_every=s["steps"], checkpoint_every=200, warmup=warmup,
                              **_task_options(task, s)).to_dict()


def _with_seed(run: dict, seed: int) -> dict:
    return {**run, "train": {**run["train"], "seed": seed}}


# ------------------------------------------------------------------ aggregation


def _metric_name(task: str) -> str:
    return "exact_match" if task_family(task) == "synthetic" else "bleu"


def _record_values(record: dict) -> dict:
    summary = record["summary"]
    values = {"exact_match": summary.get("exact_match"), "bleu": summary.get("bleu"), "loss": summary.get("loss"),
              "parameters": summary.get("parameters"), "train_minutes": summary.get("train_minutes"),
              "tokens_per_s": record.get("tokens_per_s")}
    alignment = record["probes"].get("alignment")
    if alignment:
        values["aer_best_head"] = alignment["best"]["aer"]
        values["aer_last_layer_average"] = alignment["head_average"][-1]
    permutation = record["probes"].get("permutation")
    if permutation and permutation.get("num"):
        values["encoder_distinguishes"] = permutation["encoder_distinguishes"]
        values["output_changes"] = permutation["output_changes"]
    return values


def aggregate(records: list[dict], group_keys: list[str]) -> list[dict]:
    """One row per configuration (labels without the seed): every value summarised over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault(tuple(record["labels"][k] for k in group_keys), []).append(record)
    rows = []
    for key, members in groups.items():
        row = dict(zip(group_keys, key))
        row["seeds"] = sorted(m["labels"]["seed"] for m in members)
        values = [_record_values(m) for m in members]
        for name in values[0]:
            row[name] = summarize([v.get(name) for v in values])
        rows.append(row)
    return rows


def _write_results(out_dir: Path, results: dict) -> None:
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))


def _finish(out_dir: Path, study: str, settings: dict, outcome, extra: dict, started: float, progress: bool) -> dict:
    from .report import write_report

    results = {"experiment": study, "settings": settings, "trained_now": outcome.trained,
               "skipped_finished": outcome.skipped, "wall_minutes": round((time.perf_counter() - started) / 60, 2),
               "runs": outcome.records, **extra}
    _write_results(out_dir, results)
    write_report(out_dir, results)
    return results


# ------------------------------------------------------------------ studies


def blocks_study(out_dir, *, quick: bool = False, workers: int | None = None, progress: bool = True,
                 command: str | None = None, **overrides) -> dict:
    """Sweep the number of encoder (and decoder) blocks over seeds."""
    started = time.perf_counter()
    s = settings_for("blocks", quick, **overrides)
    s["command"] = command
    out_dir = Path(out_dir)
    task = s["task"]
    decoder_layers = s.get("decoder_layers") or [default_model(task)["num_decoder_layers"]]
    s["decoder_layers"] = decoder_layers
    probes = {"alignment": {}} if task == "toy" else {}
    jobs = []
    for enc in s["encoder_layers"]:
        for dec in decoder_layers:
            run = _run_config(task, s, num_encoder_layers=enc, num_decoder_layers=dec)
            for seed in range(1, s["seeds"] + 1):
                jobs.append(Job(f"enc{enc}-dec{dec}-s{seed}", _with_seed(run, seed),
                                {"encoder_layers": enc, "decoder_layers": dec, "seed": seed}, probes))
    outcome = run_sweep(out_dir, jobs, workers=workers, progress=progress, title="blocks")
    table = aggregate(outcome.records, ["encoder_layers", "decoder_layers"])
    return _finish(out_dir, "blocks", s, outcome, {"metric": _metric_name(task), "table": table}, started, progress)


def pe_study(out_dir, *, quick: bool = False, workers: int | None = None, progress: bool = True,
             command: str | None = None, **overrides) -> dict:
    """Compare positional encodings on each task, with extrapolation and the permutation probe."""
    started = time.perf_counter()
    s = settings_for("pe", quick, **overrides)
    s["command"] = command
    out_dir = Path(out_dir)
    jobs = []
    for task in s["tasks"]:
        synthetic = task_family(task) == "synthetic"
        if synthetic:
            lengths = s["lengths"].get(task, "1-12")
            max_len = _positions_needed(task, lengths) + LEARNED_MARGIN
            test_lengths = parse_length_range(s["test_lengths"].get(task, lengths))
        else:
            max_len = 128
        for encoding in s["encodings"]:
            run = _run_config(task, s, pos_encoding=encoding, max_len=max_len)
            probes = {"permutation": {}}
            if synthetic:
                probes["extrapolation"] = {"test_lengths": list(test_lengths)}
            if task == "toy":
                probes["alignment"] = {}
            for seed in range(1, s["seeds"] + 1):
                jobs.append(Job(f"{task}-{encoding}-s{seed}", _with_seed(run, seed),
                                {"task": task, "pos_encoding": encoding, "seed": seed}, probes))
    outcome = run_sweep(out_dir, jobs, workers=workers, progress=progress, title="pe")
    table = aggregate(outcome.records, ["task", "pos_encoding"])
    extrapolation = _extrapolation_table(outcome.records)
    metrics = {task: _metric_name(task) for task in s["tasks"]}
    return _finish(out_dir, "pe", s, outcome, {"metric": metrics, "table": table, "extrapolation": extrapolation},
                   started, progress)


def _extrapolation_table(records: list[dict]) -> list[dict]:
    """Exact match per (task, encoding, source length) over seeds; None where not applicable."""
    cells: dict[tuple, list] = {}
    for record in records:
        probe = record["probes"].get("extrapolation")
        if not probe:
            continue
        for length, entry in probe["by_length"].items():
            key = (record["labels"]["task"], record["labels"]["pos_encoding"], int(length))
            cells.setdefault(key, []).append(entry["exact_match"])
    rows = []
    for (task, encoding, length), values in sorted(cells.items()):
        applicable = all(v is not None for v in values)
        rows.append({"task": task, "pos_encoding": encoding, "length": length,
                     "exact_match": summarize(values) if applicable else None})
    return rows


def architectures_study(out_dir, *, quick: bool = False, workers: int | None = None, progress: bool = True,
                        command: str | None = None, **overrides) -> dict:
    """Transformer vs GRU + additive attention: held-out metric, tokens/s, time per sequence vs length."""
    from .timing import time_per_sequence

    started = time.perf_counter()
    s = settings_for("architectures", quick, **overrides)
    s["command"] = command
    out_dir = Path(out_dir)
    jobs = []
    for task in s["tasks"]:
        for model in s["models"]:
            run = _run_config(task, s, architecture=model)
            probes = {"alignment": {}} if task == "toy" and model == "transformer" else {}
            for seed in range(1, s["seeds"] + 1):
                jobs.append(Job(f"{task.replace('/', '_')}-{model}-s{seed}", _with_seed(run, seed),
                                {"task": task, "model": model, "seed": seed}, probes))
    outcome = run_sweep(out_dir, jobs, workers=workers, progress=progress, title="architectures")
    table = aggregate(outcome.records, ["task", "model"])
    timing = time_per_sequence(s["models"], s["timing_lengths"], model_settings=default_model("toy"))
    metrics = {task: _metric_name(task) for task in s["tasks"]}
    return _finish(out_dir, "architectures", s, outcome, {"metric": metrics, "table": table, "timing": timing},
                   started, progress)
