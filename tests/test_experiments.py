"""The Try This studies: complete results, reports that match them, resume, honest intervals, bad input."""

import json
import os
import re

import pytest

from attnlab.cli import main
from attnlab.experiments import architectures_study, blocks_study, pe_study, summarize
from attnlab.experiments import sweep
from attnlab.experiments.report import COLUMN_FORMATS, format_cell
from contract import check_bad_input

TINY_PE = dict(tasks=["reverse"], encodings=["learned", "none"], seeds=2, steps=20, num_train=400)
TINY_BLOCKS = dict(encoder_layers=[1, 2], seeds=2, steps=10, num_pairs=200)


def table_rows(report: str, first_cell: str) -> list[list[str]]:
    """Cells of the markdown table rows that start with ``first_cell``."""
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in report.splitlines() if line.startswith(f"| {first_cell} |")]


def header_of(report: str, starts: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {starts} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def assert_report_matches(report: str, table: list[dict], label_keys: list[str], header_start: str):
    headers = header_of(report, header_start)
    by_header = {fmt[0]: key for key, fmt in COLUMN_FORMATS.items()}
    for row in table:
        matches = [cells for cells in table_rows(report, str(row[label_keys[0]]))
                   if cells[:len(label_keys)] == [str(row[k]) for k in label_keys]]
        assert len(matches) == 1, f"no single report row for {[row[k] for k in label_keys]}"
        cells = dict(zip(headers, matches[0]))
        assert cells["seeds"] == str(len(row["seeds"]))
        checked = 0
        for header, cell in cells.items():
            if header in by_header:
                assert cell == format_cell(by_header[header], row[by_header[header]]), header
                checked += 1
        assert checked >= 4


def test_summary_is_mean_and_t_interval_and_unknown_for_one_seed():
    stat = summarize([0.80, 0.84, 0.82])
    assert stat["mean"] == pytest.approx(0.82)
    assert stat["ci95"] == pytest.approx(4.303 * 0.02 / 3 ** 0.5, abs=1e-4)  # t(0.975, 2) · s / √n
    assert summarize([0.5])["ci95"] is None
    assert summarize([None, None])["mean"] is None


def test_pe_study_has_every_configuration_and_seed_and_its_report_matches(tmp_path):
    results = pe_study(tmp_path, quick=True, workers=1, progress=False, **TINY_PE)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["table"] == results["table"]
    runs = {(r["labels"]["pos_encoding"], r["labels"]["seed"]) for r in saved["runs"]}
    assert runs == {(e, s) for e in TINY_PE["encodings"] for s in (1, 2)}
    assert all({"permutation", "extrapolation"} <= set(r["probes"]) for r in saved["runs"])
    report = (tmp_path / "report.md").read_text()
    assert_report_matches(report, saved["table"], ["task", "pos_encoding"], "task")
    # The learned table (max_len = 8 + 1 + 3) cannot place a source of 12 tokens + EOS: n/a, not a crash.
    learned_12 = next(r for r in saved["extrapolation"] if r["pos_encoding"] == "learned" and r["length"] == 12)
    assert learned_12["exact_match"] is None
    none_12 = next(r for r in saved["extrapolation"] if r["pos_encoding"] == "none" and r["length"] == 12)
    assert none_12["exact_match"]["n"] == 2
    assert re.search(r"^\| learned \|.*\| n/a \|$", report, re.M)
    # Without positions the encoder is permutation-equivariant: no shuffle is ever distinguished.
    none_row = next(r for r in saved["table"] if r["pos_encoding"] == "none")
    assert none_row["encoder_distinguishes"]["mean"] == 0.0
    for figure in ("extrapolation_reverse.png", "position_similarity.png", "learning_curves.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 0


def test_blocks_study_has_every_configuration_and_seed_and_alignment_on_toy(tmp_path):
    results = blocks_study(tmp_path, quick=True, workers=1, progress=False, **TINY_BLOCKS)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {(r["labels"]["encoder_layers"], r["labels"]["seed"]) for r in saved["runs"]} == {
        (1, 1), (1, 2), (2, 1), (2, 2)}
    assert [row["encoder_layers"] for row in saved["table"]] == [1, 2]
    report = (tmp_path / "report.md").read_text()
    assert_report_matches(report, saved["table"], ["encoder_layers", "decoder_layers"], "encoder blocks")
    alignment = saved["runs"][0]["probes"]["alignment"]
    decoder_layers, heads = 2, 4  # the quick toy model
    assert len(alignment["per_head"]) == decoder_layers and len(alignment["per_head"][0]) == heads
    assert all(0.0 <= aer <= 1.0 for row in alignment["per_head"] for aer in row)
    assert alignment["best"]["aer"] == min(min(row) for row in alignment["per_head"])
    assert (tmp_path / "figures" / "alignment_best_head.png").is_file()
    assert results["metric"] == "bleu"


def test_rerunning_skips_finished_runs_and_trains_only_new_ones(tmp_path):
    settings = dict(quick=True, workers=1, progress=False, encoder_layers=[1], steps=10, num_pairs=200)
    before = sweep.trainings_started
    blocks_study(tmp_path, seeds=1, **settings)
    assert sweep.trainings_started - before == 1
    finished = tmp_path / "runs" / "enc1-dec2-s1" / "eval.json"
    stamp = os.stat(finished).st_mtime_ns
    results = blocks_study(tmp_path, seeds=2, **settings)  # one more seed: only that one trains
    assert sweep.trainings_started - before == 2
    assert results["trained_now"] == ["enc1-dec2-s2"] and results["skipped_finished"] == ["enc1-dec2-s1"]
    assert os.stat(finished).st_mtime_ns == stamp
    again = blocks_study(tmp_path, seeds=2, **settings)
    assert sweep.trainings_started - before == 2 and again["trained_now"] == []
    assert len(again["runs"]) == 2


def test_architectures_study_compares_both_models_and_times_them(tmp_path):
    results = architectures_study(tmp_path, quick=True, workers=1, progress=False, tasks=["reverse"], seeds=1,
                                  steps=10, num_train=300, timing_lengths=[4, 8])
    assert {row["model"] for row in results["table"]} == {"transformer", "rnn-attention"}
    assert {(r["model"], r["length"]) for r in results["timing"]} == {
        (m, n) for m in ("transformer", "rnn-attention") for n in (4, 8)}
    assert all(r["ms_per_sequence"] > 0 for r in results["timing"])
    assert "## Time per sequence vs length" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["experiment", "blocks", "--encoder-layers", ""], "--encoder-layers must list at least one value"),
    (["experiment", "blocks", "--encoder-layers", "1,x"], "integers separated by commas"),
    (["experiment", "blocks", "--encoder-layers", "0,2"], "integers >= 1"),
    (["experiment", "pe", "--pos-encoding", ","], "--pos-encoding must list at least one value"),
    (["experiment", "pe", "--pos-encoding", "sinusoidal,fourier"], "unknown positional encoding 'fourier'"),
    (["experiment", "pe", "--tasks", "fra-eng"], "the pe study runs on"),
    (["experiment", "pe", "--seeds", "0"], "--seeds must be an integer >= 1"),
    (["experiment", "blocks", "--seeds", "-1"], "--seeds must be an integer >= 1"),
    (["experiment", "architectures", "--model", "lstm"], "unknown model 'lstm'"),
    (["experiment", "architectures", "--workers", "0"], "--workers must be >= 1"),
])
def test_bad_input_is_one_clear_error_and_exit_2(tmp_path, capsys, argv, message):
    def study():
        code = main(argv + ["--out", str(tmp_path / "study")])
        return code, capsys.readouterr().err

    check_bad_input(study, message, watch=[tmp_path])


def test_every_experiment_command_shows_an_example_in_help(capsys):
    for command in ("blocks", "pe", "architectures"):
        assert main(["experiment", command, "--help"]) == 0
        assert "Example: " in capsys.readouterr().out


@pytest.mark.slow
def test_quick_preset_nope_fails_reverse_and_solves_sort(tmp_path):
    results = pe_study(tmp_path, quick=True, progress=False, encodings=["none"], tasks=["reverse", "sort"], seeds=1)
    score = {row["task"]: row["exact_match"]["mean"] for row in results["table"]}
    assert score["reverse"] < 0.10
    assert score["sort"] >= 0.95
