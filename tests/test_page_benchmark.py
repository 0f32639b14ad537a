"""benchmarks/page_render.py runs end to end (--quick: one 32-token page) and refuses bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "page_render.py"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_quick_run_measures_the_page_without_a_script_error(tmp_path):
    out = tmp_path / "page_render.json"
    result = run("--quick", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["page"] == "after" and row["tokens"] == 32 and row["script_errors"] == []
    assert 0 < row["parse_ms"] <= row["drawn_ms"] <= row["first_view_ms"]
    assert row["hover_ms"] > 0 and row["layer_switch_ms"] > 0
    assert set(data["description"]) >= {"first_view_ms", "drawn_ms", "parse_ms", "hover_ms", "layer_switch_ms"}


@pytest.mark.parametrize("args, message", [
    (["--tokens", "32,x"], "--tokens must be comma-separated integers"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--before", "no-such-commit"], "--before no-such-commit: no src/attnlab/viz/static/attention.js"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "page_render.json"
    result = run(*args, "--json", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert not out.exists()
