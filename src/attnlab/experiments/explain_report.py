"""report.md and figures for ``attnlab experiment explain`` and ``attnlab experiment heads``.

Rendered from results.json only. Cells are ``mean ± half-width of the 95% t-interval`` over
seeds (toy) or over sentences (fra-eng, heads), as each table says. The sentences that name a
best method are written mechanically from paired differences (the methods explain the same
sentences of the same runs): another method is called behind only where the 95% interval of the
paired difference excludes zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..files import atomic_write_text
from .report import markdown_table, save_figure
from .stats import format_interval, summarize

__all__ = ["write_explain_report", "write_heads_report", "best_sentence"]

LABELS = {"raw": "raw attention", "rollout": "rollout", "flow": "flow", "grad_x_input": "gradient × input",
          "integrated_gradients": "integrated gradients", "value_norm": "value norm", "random": "random order"}


def best_sentence(stats: dict[str, dict], what: str, lower_is_better: bool, digits: int = 3,
                  paired_over: str = "runs") -> str:
    """Name the best method and say, for each other one, whether the paired difference separates them.

    ``stats[method]`` are :func:`~attnlab.experiments.stats.summarize` results whose ``values`` are
    paired (the same runs, in the same order); the difference best − other is summarised the same
    way, and a method counts as behind only when that 95% interval excludes zero.
    """
    rated = {name: stat for name, stat in stats.items() if stat and stat.get("mean") is not None}
    if not rated:
        return ""
    sign = 1 if lower_is_better else -1
    best = min(rated, key=lambda name: sign * rated[name]["mean"])
    sentence = (f"{'Lowest' if lower_is_better else 'Highest'} {what}: {LABELS.get(best, best)} "
                f"({format_interval(rated[best], digits)}).")
    if rated[best].get("ci95") is None:
        return sentence + " With one value there is no interval, so no comparison is made."
    behind, level = [], []
    for name, stat in rated.items():
        if name == best:
            continue
        gap = summarize([sign * (o - b) for b, o in zip(rated[best]["values"], stat["values"])], digits + 1)
        text = f"{LABELS.get(name, name)} by {format_interval(gap, digits)}"
        (behind if gap["ci95"] is not None and gap["mean"] - gap["ci95"] > 0 else level).append(text)
    if behind:
        sentence += f" Paired over the same {paired_over}, it is ahead of " + "; ".join(behind) + "."
    if level:
        sentence += (" The paired 95% interval includes zero for " + "; ".join(level) +
                     f", so these {paired_over} do not separate them.")
    return sentence


# --------------------------------------------------------------------------- figures


def _curves_figure(curves: dict[str, list[list[float]]], title: str, path: Path) -> Path:
    """curves[method] = [deletion curve, insertion curve] (mean over runs)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    for ax, index, label in zip(fig.subplots(1, 2), (0, 1), ("deletion: drop of log p(reference)",
                                                             "insertion: rise of log p(reference)")):
        for method, pair in curves.items():
            ax.plot(range(len(pair[index])), pair[index], marker="o", markersize=3, label=LABELS.get(method, method),
                    linestyle="--" if method == "random" else "-")
        ax.set_xlabel("k (top-k source tokens removed / inserted)")
        ax.set_ylabel(label + " (nats)")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def _example_figure(example: dict, path: Path) -> Path:
    maps = example["maps"]
    sources, targets = example["source_tokens"], example["target_tokens"]
    gold = np.zeros((len(targets), len(sources)))
    for source_index, target_index in example["gold"]:
        gold[target_index, source_index] = 1.0
    panels = [("gold alignment", gold)] + [(LABELS.get(m, m), np.asarray(v)) for m, v in maps.items()]
    columns = 4
    rows = (len(panels) + columns - 1) // columns
    fig = Figure(figsize=(4 * columns, 3.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, (title, matrix) in zip(axes, panels):
        ax.imshow(matrix, cmap="Greys", interpolation="nearest")
        ax.set_xticks(range(len(sources)), sources, rotation=70, ha="right", fontsize=6)
        ax.set_yticks(range(len(targets)), targets, fontsize=6)
        ax.set_ylabel("predicts", fontsize=7)
        ax.set_title(title, fontsize=9)
    for ax in axes[len(panels):]:
        ax.axis("off")
    return save_figure(fig, path)


def _mean_curves(analyses: list[dict], methods: list[str]) -> dict:
    return {m: [list(np.mean([a["deletion"][m]["curve"] for a in analyses], axis=0).round(5)),
                list(np.mean([a["insertion"][m]["curve"] for a in analyses], axis=0).round(5))] for m in methods}


# --------------------------------------------------------------------------- explain


def write_explain_report(out_dir: Path, results: dict) -> Path:
    out_dir, figures = Path(out_dir), Path(out_dir) / "figures"
    s, table = results["settings"], results["table"]
    methods = s["methods"]
    lines = ["# attnlab experiment explain", ""]
    if s.get("command"):
        lines += ["```", s["command"], "```", ""]
    lines += [f"Preset: {'quick' if s.get('quick') else 'full'}; {s['seeds']} toy runs (seeds 1–{s['seeds']}, "
              f"{s['steps']} steps, {s['num_pairs']} sentence pairs); {s['sentences']} test sentences per run "
              f"(at most {results['flow_max_tokens']} tokens a side), {min(s['sentences'], s['randomised_sentences'])} of "
              f"them for the randomisation check; integrated gradients with {s['ig_steps']} steps; deletion up to k = "
              f"{s['deletion_k']}. {len(results['trained_now'])} runs trained in the last invocation, "
              f"{len(results['skipped_finished'])} already finished; {results['wall_minutes']} min wall time.", "",
              "Cells are mean ± half-width of the 95% t-interval over the seeds.", "",
              "## Alignment, faithfulness and the sanity check (toy corpus)", ""]
    headers = ["method", "AER (final map)", "AER by layer", "deletion AOPC", "insertion AOPC",
               "ρ vs re-initialised", "flagged"]
    body = []
    for method in methods:
        by_layer = " / ".join(format_interval(stat, 3) for stat in table["aer_layers"].get(method, [])) or "—"
        body.append([LABELS[method], format_interval(table["aer"][method], 3), by_layer,
                     format_interval(table["deletion_aopc"][method], 3),
                     format_interval(table["insertion_aopc"][method], 3),
                     format_interval(table["rank_correlation"][method], 2),
                     "**yes**" if table["flagged"][method] else "no"])
    body.append([LABELS["random"], "—", "—", format_interval(table["deletion_aopc"]["random"], 3),
                 format_interval(table["insertion_aopc"]["random"], 3), "—", "—"])
    lines += [markdown_table(headers, body), ""]
    if "aer_best_head" in table:
        lines += [f"The best single raw-attention head (chosen per run on these sentences) has AER "
                  f"{format_interval(table['aer_best_head'], 3)}.", ""]
    lines += [best_sentence(table["aer"], "alignment error rate", lower_is_better=True), "",
              best_sentence({m: table["deletion_aopc"][m] for m in methods}, "deletion AOPC (most faithful)",
                            lower_is_better=False), "",
              best_sentence({m: table["insertion_aopc"][m] for m in methods}, "insertion AOPC",
                            lower_is_better=False), ""]
    flagged = [LABELS[m] for m in methods if table["flagged"][m]]
    lines += [("Flagged by the randomisation check (ρ ≥ " + f"{results['randomisation_flag']}): " +
               (", ".join(flagged) if flagged else "none") + "."), ""]
    if "ig_max_abs_error" in table:
        lines += [f"Integrated gradients' completeness error |Σ attributions − (f(x) − f(0))| per target position: "
                  f"mean {format_interval(table['ig_mean_abs_error'], 4)}, max {format_interval(table['ig_max_abs_error'], 4)} "
                  "nats (per run, then over seeds).", ""]
    lines += ["*AER*: each target word links to its most relevant source word; alignment error rate against the "
              "gold links (lower is better). *Deletion / insertion AOPC*: the mean drop (rise) of the reference "
              "token's log-probability when the top-k source tokens of that token are removed (are the only ones "
              "kept), k = 1..K (higher is more faithful). *ρ vs re-initialised*: Spearman correlation between the "
              "maps of the trained model and of the same architecture with fresh weights.", ""]
    analyses = results["analyses"]
    _curves_figure(_mean_curves(analyses, methods + ["random"]), "toy corpus (mean over seeds)",
                   figures / "deletion_toy.png")
    lines += ["![deletion and insertion, toy](figures/deletion_toy.png)", ""]
    _example_figure(analyses[0]["example"], figures / "example_maps.png")
    lines += [f"The first test sentence of run {analyses[0]['run']}, every method's map beside the gold alignment "
              "(row: the target token that position predicts; column: source token):", "",
              "![example maps](figures/example_maps.png)", ""]
    if "fra_eng" in results:
        fra = results["fra_eng"]
        present = [m for m in methods + ["random"] if m in fra["deletion"]]
        per_sentence = {m: {"del": summarize(fra["deletion"][m]["per_sentence_aopc"]),
                            "ins": summarize(fra["insertion"][m]["per_sentence_aopc"])} for m in present}
        lines += [f"## fra-eng ({fra['run']})", "",
                  f"{fra['num_sentences']} test sentences of at most {results['flow_max_tokens']} tokens a side; one run, "
                  "so the intervals are over sentences.", "",
                  markdown_table(["method", "deletion AOPC", "insertion AOPC", "ρ vs re-initialised"],
                                 [[LABELS[m], format_interval(per_sentence[m]["del"], 3),
                                   format_interval(per_sentence[m]["ins"], 3),
                                   f"{fra['randomisation'][m]['rank_correlation']:.2f}" if m in fra["randomisation"]
                                   else "—"] for m in present]), "",
                  best_sentence({m: per_sentence[m]["del"] for m in present if m != "random"},
                                "deletion AOPC on fra-eng", lower_is_better=False, paired_over="sentences"), ""]
        _curves_figure(_mean_curves([fra], present), "fra-eng", figures / "deletion_fra_eng.png")
        lines += ["![deletion and insertion, fra-eng](figures/deletion_fra_eng.png)", ""]
    else:
        lines += ["## fra-eng", "", "No fra-eng run was given (`--fra-eng-run RUN`), so there is no fra-eng curve.", ""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


# --------------------------------------------------------------------------- heads


def write_heads_report(out_dir: Path, results: dict) -> Path:
    out_dir, figures = Path(out_dir), Path(out_dir) / "figures"
    s = results["settings"]
    lines = ["# attnlab experiment heads", ""]
    if s.get("command"):
        lines += ["```", s["command"], "```", ""]
    base = results["baseline"]
    lines += [f"Run {results['run']}; {results['num_sentences']} test sentences; each head ablated alone "
              f"(mode {s['mode']}). Unablated: BLEU {base['bleu']:.2f}, loss {base['loss']:.4f} nats per token. "
              f"{results['wall_minutes']} min wall time.", "",
              "Δ loss is the mean over sentences of each sentence's change in per-token loss ± the half-width of "
              "its 95% t-interval; Δ BLEU is corpus BLEU (one number); *changed* is the share of translations "
              "that differ from the unablated ones. AER is that head's cross-attention alignment error rate "
              "against the gold alignment (toy corpus only).", ""]
    rows = sorted(results["heads"], key=lambda r: r["delta_bleu"])
    body = [[r["kind"], r["layer"], r["head"], f"{r['delta_bleu']:+.2f}", format_interval(r["delta_loss"], 4),
             f"{r['changed']:.2f}", "—" if r.get("aer") is None else f"{r['aer']:.3f}"] for r in rows]
    lines += [markdown_table(["kind", "layer", "head", "Δ BLEU", "Δ loss", "changed", "AER"], body), ""]
    if results.get("layers"):
        body = [[r["kind"], r["layer"], f"{r['delta_bleu']:+.2f}", format_interval(r["delta_loss"], 4),
                 f"{r['changed']:.2f}"] for r in results["layers"]]
        lines += ["Every head of one layer ablated at once, for comparison:", "",
                  markdown_table(["kind", "layer", "Δ BLEU", "Δ loss", "changed"], body), ""]
    if "num_cross_heads" in results:
        rho = lambda key: "n/a (the same for every head)" if results[key] is None else f"{results[key]:+.2f}"  # noqa: E731
        lines += [f"Across the {results['num_cross_heads']} cross-attention heads, Spearman ρ between a head's AER and "
                  f"its Δ BLEU is {rho('aer_vs_delta_bleu')}, and between AER and Δ loss {rho('aer_vs_delta_loss')}. "
                  "A positive ρ with Δ BLEU (low AER, large BLEU drop) or a negative one with Δ loss (low AER, large "
                  "loss rise) means that the heads which align words matter more to the output.", ""]
    fig = Figure(figsize=(max(6, 0.35 * len(rows)), 4), layout="constrained")
    ax = fig.subplots()
    names = [f"{r['kind'][:3]}{r['layer']}.{r['head']}" for r in results["heads"]]
    ax.bar(range(len(names)), [r["delta_bleu"] for r in results["heads"]], color="grey")
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    ax.set_ylabel("Δ BLEU when ablated alone")
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, figures / "delta_bleu_per_head.png")
    lines += ["![Δ BLEU per head](figures/delta_bleu_per_head.png)", ""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
