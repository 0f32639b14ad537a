"""The translation benchmarks run end to end (``--quick``: a few thousand pairs, seconds of training)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.mark.slow
def test_fra_eng_benchmark_quick_scores_both_models_and_a_short_budget_branch(tmp_path):
    if not (SHARED_DATA / "fra-eng" / "fra.txt").exists():
        pytest.fail(f"fra-eng corpus missing at {SHARED_DATA / 'fra-eng'}")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fra_eng.py"), "--quick", "--threads", "1",
                    "--max-pairs", "2000", "--out", str(tmp_path / "fra")], check=True, capture_output=True)
    results = json.loads((tmp_path / "fra.json").read_text())
    models = results["models"]
    assert set(models) == {"attnlab", "torch.nn baseline"}
    attnlab = models["attnlab"]
    # attnlab's short-budget score comes from a branch cooled down to zero at the short budget
    assert attnlab["snapshot"]["budget_minutes"] == results["config"]["short_minutes"]
    assert attnlab["snapshot"]["steps"] <= attnlab["steps"]
    assert attnlab["precision"] in ("fp32", "bf16") and models["torch.nn baseline"]["precision"] == "fp32"
    for entry in models.values():
        assert 0.0 <= entry["final"]["bleu"] <= 100.0 and entry["steps"] > 0
    rows = [line.split("|")[1].strip() for line in (tmp_path / "fra.md").read_text().splitlines() if line.startswith("|")]
    assert "attnlab" in rows and "torch.nn baseline" in rows


@pytest.mark.slow
def test_multi30k_benchmark_quick_writes_its_results(tmp_path):
    if not (SHARED_DATA / "multi30k").exists():
        pytest.fail(f"multi30k corpus missing at {SHARED_DATA / 'multi30k'}")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "multi30k.py"), "--quick", "--threads", "1",
                    "--out", str(tmp_path / "m30k")], check=True, capture_output=True)
    results = json.loads((tmp_path / "m30k.json").read_text())
    assert results["attnlab"]["steps"] > 0 and "bleu" in results["attnlab"]["test_2016_flickr"]
    assert results["config"]["attnlab_recipe"]["model"]["dropout"] == 0.1
