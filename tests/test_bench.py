"""`attnlab bench` writes a complete, well-formed bench.json and plot (no timing claims: the machine is shared)."""

import json

import pytest

from attnlab.cli import main
from attnlab.benchmarking import model_flops_per_step, random_batch
from attnlab.core.model import TransformerConfig
from contract import check_bad_input


def test_quick_bench_writes_every_section_with_positive_timings_and_a_plot(tmp_path, capsys):
    assert main(["bench", "--quick", "--out", str(tmp_path / "bench")]) == 0
    result = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert {"environment", "matmul_gflops", "attention", "train_step", "decoding", "targets"} <= set(result)
    assert result["quick"] is True and result["matmul_gflops"]["fp32"] > 0 and result["matmul_gflops"]["bf16"] > 0
    assert [row["L"] for row in result["attention"]["rows"]] == [8, 16]
    train_rows = result["train_step"]["rows"]
    assert [row["precision"] for row in train_rows] == ["fp32", "bf16"]
    for row in train_rows:
        assert row["attnlab_ms"] > 0 and row["torch_ms"] > 0 and row["attnlab_mfu"] > 0
        assert row["parameters"] == row["torch_parameters"]  # the same model size on both sides
    modes = [row["mode"] for row in result["decoding"]["rows"]]
    assert modes == ["greedy_cached", "greedy_uncached", "beam2_cached"]
    assert all(row["ms"] > 0 and row["sentences_per_s"] > 0 for row in result["decoding"]["rows"])
    assert {"attention_vs_torch_mha", "train_step_vs_torch_fp32", "cached_vs_uncached_greedy"} <= set(result["targets"])
    assert (tmp_path / "bench" / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "attnlab_vs_torch" in printed and "cache_speedup" in printed


@pytest.mark.parametrize("args, message", [(["--only", "nonsense"], "--only"), (["--threads", "0"], "--threads"),
                                           (["--device", "tpu"], "--device")])
def test_bad_bench_options_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    def bench():
        code = main(["bench", "--quick", "--out", str(tmp_path / "bench"), *args])
        return code, capsys.readouterr().err

    check_bad_input(bench, message, watch=[tmp_path])


def test_random_batches_follow_the_data_pipeline_layout_and_flops_grow_with_length():
    batch = random_batch(4, 6, 5, 50)
    assert batch.src.shape == (4, 6) and batch.tgt_in.shape == batch.tgt_out.shape == (4, 5)
    assert batch.num_tokens == int((batch.tgt_out != 0).sum())  # the loss normaliser counts non-pad targets
    config = TransformerConfig(src_vocab_size=50, tgt_vocab_size=50, d_model=16, num_heads=2, d_ff=32)
    assert model_flops_per_step(config, 4, 12, 10) > model_flops_per_step(config, 4, 6, 5) > 0
