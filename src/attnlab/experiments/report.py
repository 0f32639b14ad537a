"""report.md and figures from a study's results.json — the tables are rendered from that JSON only.

Every number is ``mean ± half-width of the 95% t-interval over seeds`` (see
:mod:`attnlab.experiments.stats`); "n/a" marks what does not apply (a learned positional table
asked for positions it does not have, BLEU on a synthetic task). The only sentences written about
the numbers are mechanical: which configuration has the best mean, and whose intervals overlap it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..files import atomic_write_text
from ..viz.figures import plot_position_similarity, plot_training_curves, save_figure  # noqa: F401
from .stats import format_interval

__all__ = ["write_report", "table_columns", "format_cell", "markdown_table"]

# key → (header, digits, scale); "higher" says which direction is better for the summary sentence.
COLUMN_FORMATS = {
    "bleu": ("BLEU", 1, 1.0), "exact_match": ("exact match", 3, 1.0), "loss": ("test loss", 3, 1.0),
    "parameters": ("parameters", 0, 1.0), "train_minutes": ("train min", 2, 1.0), "tokens_per_s": ("tokens/s", 0, 1.0),
    "aer_best_head": ("AER best head", 3, 1.0), "aer_last_layer_average": ("AER last-layer head avg", 3, 1.0),
    "encoder_distinguishes": ("encoder distinguishes shuffles", 2, 1.0),
    "output_changes": ("output changes under shuffle", 2, 1.0),
}
LOWER_IS_BETTER = {"loss", "aer_best_head", "aer_last_layer_average"}
LABEL_HEADERS = {"encoder_layers": "encoder blocks", "decoder_layers": "decoder blocks", "task": "task",
                 "pos_encoding": "positional encoding", "model": "model"}


def format_cell(key: str, stat) -> str:
    _, digits, scale = COLUMN_FORMATS[key]
    if key == "parameters" and stat and stat.get("mean") is not None:
        return f"{int(round(stat['mean'])):,}"
    return format_interval(stat, digits, scale)


def table_columns(rows: list[dict], label_keys: list[str]) -> list[str]:
    """The value columns present (with at least one number) in these rows, in a fixed order."""
    return [key for key in COLUMN_FORMATS if any(row.get(key) and row[key].get("mean") is not None for row in rows)]


def markdown_table(headers: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return "\n".join(lines)


def _main_table(rows: list[dict], label_keys: list[str]) -> str:
    columns = table_columns(rows, label_keys)
    headers = [LABEL_HEADERS[k] for k in label_keys] + ["seeds"] + [COLUMN_FORMATS[c][0] for c in columns]
    body = [[row[k] for k in label_keys] + [len(row["seeds"])] + [format_cell(c, row.get(c)) for c in columns]
            for row in rows]
    return markdown_table(headers, body)


def _overlap_sentence(rows: list[dict], metric: str, label_keys: list[str]) -> str:
    rated = [r for r in rows if r.get(metric) and r[metric]["mean"] is not None]
    if len(rated) < 2:
        return ""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    best = max(rated, key=lambda r: sign * r[metric]["mean"])

    def name(row):
        return ", ".join(f"{LABEL_HEADERS[k]} {row[k]}" for k in label_keys)

    def bounds(row):
        half = row[metric]["ci95"]
        return (None, None) if half is None else (row[metric]["mean"] - half, row[metric]["mean"] + half)

    low, high = bounds(best)
    header = COLUMN_FORMATS[metric][0]
    if low is None:
        return f"Best mean {header}: {name(best)}. With one seed there are no intervals, so no comparison is made."
    overlapping = [name(r) for r in rated if r is not best and bounds(r)[0] is not None
                   and bounds(r)[0] <= high and bounds(r)[1] >= low]
    sentence = f"Best mean {header}: {name(best)} ({format_cell(metric, best[metric])})."
    if overlapping:
        sentence += " Its 95% interval overlaps those of " + "; ".join(overlapping) + ", so these seeds do not separate them."
    else:
        sentence += " Its 95% interval overlaps no other configuration's."
    return sentence


# ------------------------------------------------------------------ figures


def _metric_vs_blocks(results: dict, path: Path) -> Path:
    metric = results["metric"]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for dec in sorted({row["decoder_layers"] for row in results["table"]}):
        rows = sorted((r for r in results["table"] if r["decoder_layers"] == dec), key=lambda r: r["encoder_layers"])
        ax.errorbar([r["encoder_layers"] for r in rows], [r[metric]["mean"] for r in rows],
                    yerr=[r[metric]["ci95"] or 0.0 for r in rows], marker="o", capsize=4,
                    label=f"{dec} decoder blocks")
    ax.set_xlabel("encoder blocks")
    ax.set_ylabel(f"test {COLUMN_FORMATS[metric][0]} (mean ± 95% CI)")
    ax.set_xticks(sorted({row["encoder_layers"] for row in results["table"]}))
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return save_figure(fig, path)


def _learning_curves(results: dict, group_keys: list[str], path: Path) -> Path:
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    groups: dict[tuple, list] = {}
    for record in results["runs"]:
        groups.setdefault(tuple(record["labels"][k] for k in group_keys), []).append(record["curve"])
    for key, curves in groups.items():
        steps = [point[0] for point in curves[0]]
        shortest = min(len(c) for c in curves)
        mean = np.mean([[point[1] for point in c[:shortest]] for c in curves], axis=0)
        ax.plot(steps[:shortest], mean, label=", ".join(f"{k}={v}" for k, v in zip(group_keys, key)))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over seeds)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7)
    return save_figure(fig, path)


def _alignment_figure(record: dict, path: Path) -> Path:
    best = record["probes"]["alignment"]["best"]
    example = best["example"]
    weights = np.asarray(example["weights"])  # (target, source)
    gold = np.zeros_like(weights)
    for source_index, target_index in example["gold"]:
        gold[target_index, source_index] = 1.0
    fig = Figure(figsize=(11, 5), layout="constrained")
    for ax, matrix, title in zip(fig.subplots(1, 2), (weights, gold),
                                 (f"cross-attention, layer {best['layer']} head {best['head']} (AER {best['aer']:.3f})",
                                  "gold alignment")):
        ax.imshow(matrix, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(example["source_tokens"])), example["source_tokens"], rotation=60, ha="right")
        ax.set_yticks(range(len(example["target_tokens"])), example["target_tokens"])
        ax.set_xlabel("source (English)")
        ax.set_ylabel("target (French)")
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"run {record['name']}")
    return save_figure(fig, path)


def _extrapolation_figure(rows: list[dict], task: str, train_high: int | None, path: Path) -> Path:
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for encoding in dict.fromkeys(r["pos_encoding"] for r in rows if r["task"] == task):
        points = [(r["length"], r["exact_match"]) for r in rows
                  if r["task"] == task and r["pos_encoding"] == encoding and r["exact_match"]]
        if points:
            ax.errorbar([p[0] for p in points], [p[1]["mean"] for p in points],
                        yerr=[p[1]["ci95"] or 0.0 for p in points], marker="o", markersize=3, capsize=2, label=encoding)
    if train_high:
        ax.axvline(train_high + 0.5, color="grey", linestyle="--", linewidth=1, label="longest training length")
    ax.set_xlabel("source length (tokens)")
    ax.set_ylabel("exact match (mean ± 95% CI)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{task}: length extrapolation")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    return save_figure(fig, path)


def _timing_figure(timing: list[dict], path: Path) -> Path:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for model in dict.fromkeys(row["model"] for row in timing):
        rows = [r for r in timing if r["model"] == model]
        ax.plot([r["length"] for r in rows], [r["ms_per_sequence"] for r in rows], marker="o", label=model)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (source = target)")
    ax.set_ylabel("ms per sequence (forward, 1 thread)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False)
    return save_figure(fig, path)


# ------------------------------------------------------------------ report.md


def _position_similarity(out_dir: Path, results: dict, path: Path) -> Path | None:
    """Sinusoidal table vs the trained learned tables (seed 1 of each task), cosine similarity."""
    from ..core.positional import sinusoidal_table
    from ..training.runs import load_run

    matrices = {}
    for record in results["runs"]:
        labels = record["labels"]
        if labels["pos_encoding"] == "learned" and labels["seed"] == min(results_seeds(results)):
            run = load_run(out_dir / "runs" / record["name"])
            table = run.model.encoder.positional.encoding_matrix(run.config.model.max_len).numpy()
            matrices.setdefault("sinusoidal", sinusoidal_table(table.shape[0], table.shape[1]).numpy())
            matrices[f"learned ({labels['task']})"] = table
    if not matrices:
        return None
    return plot_position_similarity(matrices, path, title="Cosine similarity between positions (encoder tables)")


def results_seeds(results: dict) -> list[int]:
    return sorted({record["labels"]["seed"] for record in results["runs"]})


def _header(results: dict) -> list[str]:
    settings = results["settings"]
    lines = [f"# attnlab experiment {results['experiment']}", ""]
    if settings.get("command"):
        lines += ["```", settings["command"], "```", ""]
    lines += [f"Preset: {'quick' if settings.get('quick') else 'full'}; seeds {', '.join(map(str, results_seeds(results)))}; "
              f"{settings['steps']} training steps per run; {len(results['runs'])} runs "
              f"({len(results['trained_now'])} trained in the last invocation, {len(results['skipped_finished'])} "
              f"already finished); last invocation {results['wall_minutes']} min wall time.", "",
              "Cells are mean ± half-width of the 95% t-interval over seeds (Student's t, n−1 degrees of "
              "freedom); `n/a` means not applicable. Parameters are identical across seeds.", ""]
    return lines


def write_report(out_dir: Path, results: dict) -> Path:
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    study = results["experiment"]
    lines = _header(results)
    if study == "blocks":
        keys = ["encoder_layers", "decoder_layers"]
        lines += ["## Held-out results by number of blocks", "", _main_table(results["table"], keys), "",
                  _overlap_sentence(results["table"], results["metric"], keys), ""]
        _metric_vs_blocks(results, figures / "metric_vs_blocks.png")
        _learning_curves(results, keys, figures / "learning_curves.png")
        lines += ["![metric vs blocks](figures/metric_vs_blocks.png)", "",
                  "![learning curves](figures/learning_curves.png)", ""]
    elif study == "pe":
        keys = ["task", "pos_encoding"]
        for task in results["settings"]["tasks"]:
            rows = [r for r in results["table"] if r["task"] == task]
            metric = results["metric"][task]
            lines += [f"## {task}", "", _main_table(rows, keys), "", _overlap_sentence(rows, metric, keys), ""]
            lengths = [r for r in results["extrapolation"] if r["task"] == task]
            if lengths:
                train_high = int(results["settings"]["lengths"][task].split("-")[-1])
                encodings = list(dict.fromkeys(r["pos_encoding"] for r in lengths))
                all_lengths = sorted({r["length"] for r in lengths})
                cell = {(r["pos_encoding"], r["length"]): r["exact_match"] for r in lengths}
                body = [[enc] + [format_interval(cell.get((enc, n)), 2) if (enc, n) in cell else "—"
                                 for n in all_lengths] for enc in encodings]
                lines += [f"Length extrapolation: exact match by source length (trained on lengths up to "
                          f"{train_high}; `n/a`: past the learned table).", "",
                          markdown_table(["encoding"] + [str(n) + ("*" if n > train_high else "") for n in all_lengths],
                                         body), "", "`*` longer than any training source.", ""]
                _extrapolation_figure(results["extrapolation"], task, train_high, figures / f"extrapolation_{task}.png")
                lines += [f"![extrapolation {task}](figures/extrapolation_{task}.png)", ""]
        lines += ["## Permutation probe", "",
                  "Each test source is shuffled (EOS stays last) and encoded; *encoder distinguishes shuffles* is the "
                  "share of sources whose encoder output, after undoing the shuffle, differs by more than 1e-3 "
                  "(relative); *output changes* is the share whose decoded output differs.", ""]
        if _position_similarity(out_dir, results, figures / "position_similarity.png"):
            lines += ["## Fixed vs learned positions", "", "![position similarity](figures/position_similarity.png)", ""]
        _learning_curves(results, keys, figures / "learning_curves.png")
        lines += ["![learning curves](figures/learning_curves.png)", ""]
    else:
        keys = ["task", "model"]
        for task in results["settings"]["tasks"]:
            rows = [r for r in results["table"] if r["task"] == task]
            lines += [f"## {task}", "", _main_table(rows, keys), "",
                      _overlap_sentence(rows, results["metric"][task], keys), ""]
        timing = results["timing"]
        models = list(dict.fromkeys(r["model"] for r in timing))
        lengths = sorted({r["length"] for r in timing})
        cell = {(r["model"], r["length"]): r["ms_per_sequence"] for r in timing}
        lines += ["## Time per sequence vs length", "",
                  "One teacher-forced forward pass, untrained models of equal width, batch 16, one thread, median "
                  "of 5 (a single measurement on a shared machine, no interval).", "",
                  markdown_table(["model"] + [f"L={n} (ms)" for n in lengths],
                                 [[m] + [f"{cell[(m, n)]:.3f}" for n in lengths] for m in models]), ""]
        _timing_figure(timing, figures / "time_per_sequence.png")
        lines += ["![time per sequence](figures/time_per_sequence.png)", ""]
    aligned = [r for r in results["runs"] if "alignment" in r["probes"]]
    if aligned:
        best = min(aligned, key=lambda r: r["probes"]["alignment"]["best"]["aer"])
        _alignment_figure(best, figures / "alignment_best_head.png")
        lines += ["## Alignment (toy corpus)", "",
                  "AER (Och & Ney) of each cross-attention head's argmax alignment against the gold word alignment "
                  "(lower is better), for the best single head and for the head average of the last decoder layer; "
                  "see the tables above. The lowest-AER head of all runs, beside the gold alignment:", "",
                  "![best head](figures/alignment_best_head.png)", ""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
