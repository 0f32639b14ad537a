"""Static figures: each is written atomically as a real PNG or SVG of sensible size."""

import json

import numpy as np
import pytest

from attnlab.document import synthetic_attention_doc
from attnlab.viz.figures import (
    plot_alignment,
    plot_attention_doc,
    plot_attention_grid,
    plot_position_similarity,
    plot_positional_encoding,
    plot_training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOURCE = "the cat sat on the mat .".split()
TARGET = "le chat était assis sur le tapis".split()


@pytest.fixture
def doc():
    return synthetic_attention_doc(SOURCE, TARGET, num_layers=2, num_heads=4)


def assert_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is suspiciously small ({len(data)} bytes)"


def no_temp_files_left(directory):
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def sinusoidal(positions, dims):
    angles = np.arange(positions)[:, None] / 10000 ** (np.arange(0, dims, 2) / dims)  # (P, D/2)
    matrix = np.zeros((positions, dims))
    matrix[:, 0::2], matrix[:, 1::2] = np.sin(angles), np.cos(angles)
    return matrix


def test_attention_doc_gives_one_png_per_kind_present(doc, tmp_path):
    paths = plot_attention_doc(doc, tmp_path / "figures")
    assert [p.name for p in paths] == ["encoder_self.png", "decoder_self.png", "cross.png"]
    for path in paths:
        assert_png(path, min_bytes=20_000)
    assert no_temp_files_left(tmp_path / "figures")


def test_encoder_only_doc_gives_only_the_encoder_figure(tmp_path):
    doc = synthetic_attention_doc(SOURCE, None, num_layers=1, num_heads=2)
    assert [p.name for p in plot_attention_doc(doc, tmp_path)] == ["encoder_self.png"]


def test_grid_is_svg_when_the_suffix_says_so(doc, tmp_path):
    weights = [np.asarray(e["weights"]) for e in doc["attention"] if e["kind"] == "cross"]
    path = plot_attention_grid(weights, TARGET, SOURCE, tmp_path / "cross.svg", title="cross", max_heads=2)
    text = path.read_text(encoding="utf-8")
    assert "<svg" in text and "chat" in text  # token labels are in the drawing
    assert len(text) > 10_000


def test_grid_refuses_weights_that_do_not_match_the_tokens(tmp_path):
    with pytest.raises(ValueError, match=r"layer 0: weights shape \(2, 3, 3\) does not match \(heads, 3 query tokens, 4 key"):
        plot_attention_grid([np.full((2, 3, 3), 1 / 3)], list("abc"), list("abcd"), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_unknown_suffix_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="unsupported figure suffix '.gif'"):
        plot_positional_encoding(sinusoidal(8, 8), tmp_path / "pe.gif")
    assert not list(tmp_path.iterdir())


def test_positional_encoding_and_similarity_figures(tmp_path):
    pe = sinusoidal(50, 32)
    assert_png(plot_positional_encoding(pe, tmp_path / "pe.png", title="sinusoidal"))
    learned = np.random.default_rng(0).normal(size=(50, 32))
    path = plot_position_similarity({"sinusoidal": pe, "learned (trained)": learned}, tmp_path / "sim.png")
    assert_png(path, min_bytes=20_000)


def test_training_curves_from_metrics_jsonl_with_dev_records(tmp_path):
    records = [{"step": s, "loss": 5 / (1 + s / 50), "lr": min(s, 100) * 1e-5, "tokens_per_s": 1e4}
               for s in range(0, 500, 10)]
    records += [{"step": s, "split": "dev", "loss": 4 / (1 + s / 60), "bleu": s / 20, "exact_match": s / 600}
                for s in range(100, 500, 100)]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    assert_png(plot_training_curves(metrics, tmp_path / "curves.png"), min_bytes=20_000)
    # records without any evaluation still plot (loss and lr only)
    assert_png(plot_training_curves(records[:10], tmp_path / "train_only.png"))
    with pytest.raises(ValueError, match="no records"):
        plot_training_curves([], tmp_path / "empty.png")


def test_trainer_records_are_plotted_as_training_not_evaluation(tmp_path):
    from attnlab.viz.figures import split_metrics

    records = [{"step": 25, "split": "train", "loss": 2.0, "lr": 1e-3, "tokens_per_s": 900.0},
               {"step": 50, "split": "train", "loss": 1.5, "lr": 1e-3, "tokens_per_s": 950.0},
               {"step": 50, "split": "dev", "loss": 1.7, "exact_match": 0.2},
               {"step": 75, "loss": 1.2, "lr": 9e-4}]
    train, evals = split_metrics(records)
    assert [r["step"] for r in train] == [25, 50, 75]
    assert [(r["step"], r["split"]) for r in evals] == [(50, "dev")]
    assert_png(plot_training_curves(records, tmp_path / "curves.png"))


def test_alignment_outlines_gold_cells_and_checks_their_range(tmp_path):
    weights = np.eye(4) * 0.7 + 0.075
    pairs = [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert_png(plot_alignment(weights, pairs, list("abcd"), list("wxyz"), tmp_path / "align.png", title="t"))
    with pytest.raises(ValueError, match=r"gold pair \(4, 0\) is outside"):
        plot_alignment(weights, [(4, 0)], list("abcd"), list("wxyz"), tmp_path / "bad.png", title="t")
