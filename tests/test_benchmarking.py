"""The benchmark harness produces well-formed results (no timing claims: the machine is shared)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attnlab.benchmarking import (
    ATTENTION_CANDIDATES,
    BenchResult,
    attention_benchmark,
    compare,
    format_table,
    median,
    write_json,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_compare_interleaves_rotating_candidates_and_keeps_only_timed_rounds():
    calls = []
    timings = compare({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=1, repeats=3)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # interleaved, start rotating
    assert [len(t.samples_ms) for t in timings.values()] == [3, 3]
    assert all(t.median_ms >= 0.0 for t in timings.values())


def test_median_and_table_are_plain():
    assert median([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(ValueError):
        median([])
    table = format_table([{"L": 32, "ms": 1.234}, {"L": 128, "ms": 10.0}]).splitlines()
    assert len(table) == 4 and "1.23" in table[2] and table[0].startswith("|")


def test_attention_benchmark_rows_have_every_candidate_and_ratio(tmp_path):
    result = attention_benchmark([4, 8], batch=2, num_heads=2, head_dim=4, warmup=0, repeats=1)
    assert isinstance(result, BenchResult)
    assert [row["L"] for row in result.rows] == [4, 8]
    for row in result.rows:
        for name in ATTENTION_CANDIDATES:
            assert row[name] > 0.0 and len(row["samples_ms"][name]) == row["repeats"] >= 1
        assert row["attnlab_vs_torch"] == pytest.approx(row["torch_mha_ms"] / row["attnlab_ms"])
        assert row["explicit_vs_fused"] == pytest.approx(row["explicit_ms"] / row["attnlab_ms"])
    loaded = json.loads(write_json(tmp_path / "r.json", result).read_text())
    assert loaded["name"] == "attention" and loaded["environment"]["torch"]


def test_quick_script_run_writes_a_well_formed_json(tmp_path):
    out = tmp_path / "attention.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "attention.py"), "--quick", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "attnlab_vs_torch" in proc.stdout and "explicit_vs_fused" in proc.stdout
    result = json.loads(out.read_text())
    assert set(ATTENTION_CANDIDATES) <= set(result["description"])
    assert result["config"]["threads"] == 1 and len(result["rows"]) == 2
    for row in result["rows"]:
        assert all(row[name] > 0.0 for name in ATTENTION_CANDIDATES)
        assert all(row[name.replace("_ms", "_peak_mib")] is None or row[name.replace("_ms", "_peak_mib")] >= 0.0
                   for name in ATTENTION_CANDIDATES)


def test_bad_flags_exit_with_status_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "attention.py"), "--quick", "--repeats", "0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2 and "repeats" in proc.stderr
