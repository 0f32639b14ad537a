"""Static figures (PNG or SVG, chosen by the file suffix) drawn with matplotlib.

Each function draws on its own ``matplotlib.figure.Figure`` (no pyplot global state, safe from
threads) and writes atomically: to a temporary file beside the target, then ``os.replace``.

    >>> plot_attention_doc(json.load(open("attention.json")), "figures/")
    [PosixPath('figures/encoder_self.png'), PosixPath('figures/decoder_self.png'), ...]
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never open a window
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ..files import atomic_path  # noqa: E402
from ..document import kind_tokens, validate_attention_doc, weights_by_kind  # noqa: E402

ATTENTION_CMAP = "viridis"
_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
_KIND_TITLES = {
    "encoder_self": "Encoder self-attention (source → source)",
    "decoder_self": "Decoder masked self-attention (target → target)",
    "cross": "Cross-attention (target queries → source keys)",
}


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically; the format follows the suffix (.png, .svg, .pdf)."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported figure suffix {path.suffix!r} for {path}; use .png or .svg")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    return path


def _label_fontsize(count: int) -> float:
    """Token labels shrink as sentences grow, but stay readable."""
    return float(np.clip(11 - 0.15 * count, 5.5, 10))


def _set_token_ticks(ax, tokens: Sequence[str], axis: str, show: bool) -> None:
    step = max(1, math.ceil(len(tokens) / 60))  # at most ~60 labels per axis
    positions = list(range(0, len(tokens), step))
    labels = [tokens[i] for i in positions] if show else []
    size = _label_fontsize(len(tokens))
    if axis == "x":
        ax.set_xticks(positions if show else [], labels, rotation=90, fontsize=size)
    else:
        ax.set_yticks(positions if show else [], labels, fontsize=size)


def plot_attention_grid(
    weights: Sequence[np.ndarray],
    query_tokens: Sequence[str],
    key_tokens: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    max_heads: int | None = None,
) -> Path:
    """Draw a layers × heads grid of attention heatmaps (rows: queries, columns: keys).

    ``weights`` is a list over layers of ``(heads, Lq, Lk)`` arrays. All panels share one colour
    scale 0..1 and one colorbar; with more than four panels, token labels appear only on the
    outer axes (left column, bottom row). ``max_heads`` keeps the first heads of each layer.

    >>> plot_attention_grid([np.full((2, 3, 3), 1 / 3)], list("abc"), list("abc"), "grid.png")
    PosixPath('grid.png')
    """
    layers = [np.asarray(w, dtype=np.float64) for w in weights]
    if not layers:
        raise ValueError("weights must hold at least one layer of (heads, Lq, Lk) arrays")
    expected = (len(query_tokens), len(key_tokens))
    for index, layer in enumerate(layers):
        if layer.ndim != 3 or layer.shape[1:] != expected:
            raise ValueError(
                f"layer {index}: weights shape {layer.shape} does not match (heads, {expected[0]} "
                f"query tokens, {expected[1]} key tokens)"
            )
    num_heads = max(layer.shape[0] for layer in layers)
    if max_heads is not None:
        num_heads = min(num_heads, max_heads)
    num_layers = len(layers)

    # Each panel grows with the sentence, within bounds that keep the image a sensible size.
    panel = float(np.clip(0.22 * max(expected) + 0.8, 2.0, 6.0))
    fig = Figure(figsize=(panel * num_heads + 1.2, panel * num_layers + 0.8), layout="constrained")
    axes = fig.subplots(num_layers, num_heads, squeeze=False)
    outer_only = num_layers * num_heads > 4
    image = None
    for layer_index, layer in enumerate(layers):
        for head in range(num_heads):
            ax = axes[layer_index, head]
            if head >= layer.shape[0]:
                ax.set_axis_off()
                continue
            image = ax.imshow(layer[head], cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0,
                              aspect="auto", interpolation="nearest")
            ax.set_title(f"layer {layer_index} · head {head}", fontsize=9)
            _set_token_ticks(ax, key_tokens, "x", not outer_only or layer_index == num_layers - 1)
            _set_token_ticks(ax, query_tokens, "y", not outer_only or head == 0)
    fig.colorbar(image, ax=axes, shrink=min(1.0, 0.6 + 0.1 * num_layers), label="attention weight")
    if title:
        fig.suptitle(title, fontsize=12)
    return save_figure(fig, path)


def plot_attention_doc(doc: dict, out_dir: str | os.PathLike) -> list[Path]:
    """Write one grid per attention kind present in an attention.json ``doc``.

    Files are ``encoder_self.png`` (source × source), ``decoder_self.png`` (target × target) and
    ``cross.png`` (target queries × source keys) inside ``out_dir``; returns their paths.
    """
    validate_attention_doc(doc, allow_zero_rows=True)
    out_dir = Path(out_dir)
    written = []
    for kind, layers in weights_by_kind(doc).items():
        query_tokens, key_tokens = kind_tokens(doc, kind)
        written.append(plot_attention_grid(layers, query_tokens, key_tokens,
                                           out_dir / f"{kind}.png", title=_KIND_TITLES[kind]))
    return written


def plot_positional_encoding(matrix: np.ndarray, path: str | os.PathLike, *,
                             title: str = "Positional encoding") -> Path:
    """Heatmap of a ``(positions, dims)`` positional-encoding matrix (diverging colours around 0)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"positional encoding must be a (positions, dims) matrix, got shape {matrix.shape}")
    limit = float(np.abs(matrix).max()) or 1.0
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                      interpolation="nearest")
    ax.set_xlabel("encoding dimension")
    ax.set_ylabel("position")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="value")
    return save_figure(fig, path)


def cosine_similarity_matrix(matrix: np.ndarray) -> np.ndarray:
    """``(positions, dims)`` → ``(positions, positions)`` cosine similarity between positions."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)  # (P, 1)
    unit = matrix / np.where(norms == 0, 1.0, norms)
    return unit @ unit.T  # (P, P)


def plot_position_similarity(matrices: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                             title: str = "Cosine similarity between positions") -> Path:
    """Side-by-side position × position cosine-similarity maps, one per named encoding.

    >>> plot_position_similarity({"sinusoidal": pe, "learned (trained)": learned}, "sim.png")
    """
    if not matrices:
        raise ValueError("matrices must name at least one (positions, dims) matrix")
    fig = Figure(figsize=(4.2 * len(matrices) + 1.0, 4.3), layout="constrained")
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    image = None
    for ax, (name, matrix) in zip(axes, matrices.items()):
        if np.ndim(matrix) != 2:
            raise ValueError(f"{name}: expected a (positions, dims) matrix, got shape {np.shape(matrix)}")
        image = ax.imshow(cosine_similarity_matrix(matrix), cmap="RdBu_r", vmin=-1, vmax=1,
                          interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("position")
        ax.set_ylabel("position")
    fig.colorbar(image, ax=list(axes), label="cosine similarity", shrink=0.85)
    fig.suptitle(title)
    return save_figure(fig, path)


def _read_records(source: str | os.PathLike | Iterable[dict]) -> list[dict]:
    if isinstance(source, (str, os.PathLike)):
        lines = Path(source).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    return [dict(record) for record in source]


def split_metrics(records: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """metrics.jsonl records → (training-step records, evaluation records); both need a ``step``."""
    records = [r for r in records if "step" in r]
    train = [r for r in records if r.get("split", "train") == "train"]
    return train, [r for r in records if r.get("split", "train") != "train"]


def plot_training_curves(metrics: str | os.PathLike | Iterable[dict], path: str | os.PathLike) -> Path:
    """Loss (train and dev), learning rate and dev metrics against the training step.

    ``metrics`` is a metrics.jsonl path or its records, as the trainer writes them: training
    steps ``{"step", "split": "train", "loss", "lr", ...}`` (a record without ``split`` counts as
    training too) and evaluations with another split, e.g.
    ``{"step": 500, "split": "dev", "loss": 1.2, "bleu": 21.0}``. The metric panel appears only when an
    evaluation record carries ``exact_match``, ``bleu``, ``chrf`` or ``token_accuracy``.
    """
    train, evals = split_metrics(_read_records(metrics))
    if not train and not evals:
        raise ValueError("no records with a 'step' field to plot")
    metric_names = [m for m in ("exact_match", "bleu", "chrf", "token_accuracy")
                    if any(m in r for r in evals)]
    panels = ["loss", "lr"] + (["metric"] if metric_names else [])
    fig = Figure(figsize=(4.6 * len(panels), 3.8), layout="constrained")
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0]))

    def series(rows, key):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        return ([p[0] for p in points], [p[1] for p in points]) if points else None

    if (train_loss := series(train, "loss")):
        axes["loss"].plot(*train_loss, label="train", color="#4c72b0", linewidth=1.2)
    for split in sorted({r["split"] for r in evals}):
        if (eval_loss := series([r for r in evals if r["split"] == split], "loss")):
            axes["loss"].plot(*eval_loss, "o-", label=split, color="#dd8452", markersize=4)
    axes["loss"].set_title("loss")
    axes["loss"].legend(frameon=False)
    if (lr := series(train, "lr")):
        axes["lr"].plot(*lr, color="#55a868")
        axes["lr"].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes["lr"].set_title("learning rate")
    if metric_names:
        for name in metric_names:
            if (values := series(evals, name)):
                axes["metric"].plot(*values, "o-", label=name, markersize=4)
        axes["metric"].set_title("evaluation")
        axes["metric"].legend(frameon=False)
    for ax in axes.values():
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_alignment(weights_2d: np.ndarray, gold_pairs: Iterable[tuple[int, int]],
                   src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                   path: str | os.PathLike, *, title: str = "Attention vs. gold alignment") -> Path:
    """Cross-attention heatmap (rows: target, columns: source) with gold alignments outlined.

    ``gold_pairs`` holds ``(source_index, target_index)`` pairs, the order of the Pharaoh
    ``i-j`` format used by alignment corpora; each is drawn as a red box on its cell.
    """
    weights = np.asarray(weights_2d, dtype=np.float64)
    if weights.shape != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"weights shape {weights.shape} does not match ({len(tgt_tokens)} target, "
                         f"{len(src_tokens)} source) tokens")
    size = float(np.clip(0.35 * max(weights.shape) + 2.0, 4.0, 14.0))
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, interpolation="nearest")
    for source_index, target_index in gold_pairs:
        if not (0 <= source_index < len(src_tokens) and 0 <= target_index < len(tgt_tokens)):
            raise ValueError(f"gold pair ({source_index}, {target_index}) is outside the "
                             f"{len(src_tokens)} × {len(tgt_tokens)} source × target grid")
        ax.add_patch(Rectangle((source_index - 0.5, target_index - 0.5), 1, 1, fill=False,
                               edgecolor="#d62728", linewidth=2))
    _set_token_ticks(ax, list(src_tokens), "x", True)
    _set_token_ticks(ax, list(tgt_tokens), "y", True)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.8)
    return save_figure(fig, path)
