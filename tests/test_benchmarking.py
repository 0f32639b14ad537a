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
from contract import check_bad_input

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
    def script():
        proc = subprocess.run(
            [sys.executable, str(REPO_ROOT / "benchmarks" / "attention.py"), "--quick", "--repeats", "0"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
        return proc.returncode, proc.stderr

    check_bad_input(script, "repeats", watch=[tmp_path])  # it runs in tmp_path: nothing lands there


# --------------------------------------------------------------------------- the torch.nn baseline, the cache check


def _tiny(**switches):
    from attnlab.core.model import TransformerConfig

    return TransformerConfig(src_vocab_size=40, tgt_vocab_size=40, d_model=16, num_heads=2, num_encoder_layers=2,
                             num_decoder_layers=2, d_ff=32, dropout=0.0, max_len=32, **switches)


@pytest.mark.parametrize("switches", [{}, {"share_embeddings": True, "tie_embeddings": True},
                                      {"norm_first": True, "activation": "gelu"}])
def test_torch_baseline_has_attnlabs_size_and_ignores_padded_source_positions(switches):
    import torch

    from attnlab.benchmarking import TorchSeq2Seq
    from attnlab.core.decoding import greedy_decode
    from attnlab.core.model import Transformer, TransformerConfig

    config = _tiny(**switches)
    baseline = TorchSeq2Seq(config).eval()
    attnlab = Transformer(TransformerConfig.from_dict({**config.to_dict(), "final_norm": True}))
    assert sum(p.numel() for p in baseline.parameters()) == sum(p.numel() for p in attnlab.parameters())
    shared = baseline.src_embed is baseline.tgt_embed and baseline.generator.weight is baseline.tgt_embed.weight
    assert shared == bool(switches.get("share_embeddings"))
    src = torch.tensor([[5, 6, 7, 8, 9], [11, 12, 13, 0, 0]])  # row 1: three tokens, then padding
    tgt = torch.tensor([[1, 20, 21], [1, 22, 23]])
    with torch.no_grad():
        logits = baseline(src, tgt)  # (2, 3, 40)
        alone = baseline(src[1:, :3], tgt[1:])  # row 1 without its padding
        by_parts = baseline.decode(tgt, baseline.encode(src), baseline.source_mask(src))
    torch.testing.assert_close(logits[1:], alone, atol=1e-5, rtol=1e-5)  # padded keys are masked out
    torch.testing.assert_close(logits, by_parts)
    assert greedy_decode(baseline, src, max_len=4) == greedy_decode(baseline, src, max_len=4, use_cache=False)


def test_cached_matches_uncached_tells_a_cache_that_changes_the_tokens_and_rows_that_end_early():
    import torch

    from attnlab.benchmarking import cached_matches_uncached, decode_full_length
    from attnlab.core.model import Transformer
    from attnlab.data import EOS_ID

    class CacheChangesTheOutput(Transformer):
        def decode(self, tgt, memory, memory_mask=None, *, cache=None):
            logits = super().decode(tgt, memory, memory_mask, cache=cache)
            if cache is not None:
                logits[..., 7] += 1e3  # the cached path always picks token 7
            return logits

    src = torch.randint(4, 40, (3, 5))
    torch.manual_seed(0)
    model = Transformer(_tiny()).eval()
    decode_full_length(model)
    assert cached_matches_uncached(model, src, max_len=6, beam_size=2) == {"greedy": True, "beam": True,
                                                                           "full_length": True}
    torch.manual_seed(0)
    broken = CacheChangesTheOutput(_tiny()).eval()
    decode_full_length(broken)
    assert cached_matches_uncached(broken, src, max_len=6, beam_size=2) == {"greedy": False, "beam": False,
                                                                            "full_length": True}
    with torch.no_grad():
        model.generator.bias[EOS_ID] = 1e4  # every row ends at once
    assert cached_matches_uncached(model, src, max_len=6, beam_size=2)["full_length"] is False


def test_decoding_script_quick_checks_the_cache_before_it_times(tmp_path):
    out = tmp_path / "decoding.json"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "decoding.py"), "--quick", "--threads", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cached == uncached tokens: greedy True, beam-4 True" in proc.stdout
    row = json.loads(out.read_text())["rows"][0]
    assert row["same_tokens_greedy"] is row["same_tokens_beam"] is True and row["new_tokens"] == 8
    assert row["cache_speedup"] == pytest.approx(row["greedy_uncached_ms"] / row["greedy_cached_ms"])
    assert row["beam4_sent_per_s"] == pytest.approx(row["batch"] / (row["beam4_cached_ms"] / 1e3))


def test_compile_benchmark_compiles_once_and_compares_medians(monkeypatch):
    import torch

    from attnlab.benchmarking import compile_benchmark, random_batch

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)  # no compiler in a test
    row = compile_benchmark(_tiny(), random_batch(2, 5, 4, 40), repeats=2)
    assert len(compiled) == 1 and set(row) == {"compile_s", "eager_ms", "compiled_ms", "speedup"}
    assert row["compile_s"] > 0 and row["speedup"] == pytest.approx(row["eager_ms"] / row["compiled_ms"])
