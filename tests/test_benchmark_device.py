"""The benchmarks time device work, not kernel launches: on CUDA every timed call waits for the GPU,
memory is the device's, and ``attnlab bench --device cuda`` measures attention there too. The CUDA
calls are stood in for by recorders, so these run on a CPU; benchmarks/scaling.py runs end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnlab.benchmarking.attention as attention_module
import attnlab.benchmarking.decoding as decoding_module
from attnlab.benchmarking import (attention_benchmark, attnlab_train_step, decoding_benchmark, peak_memory_mib,
                                  random_batch, synchronized)
from attnlab.core.model import Transformer, TransformerConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = TransformerConfig(src_vocab_size=30, tgt_vocab_size=30, d_model=16, num_heads=2, num_encoder_layers=1,
                         num_decoder_layers=1, d_ff=32, dropout=0.0, max_len=32)


def test_synchronized_waits_for_cuda_after_the_call_and_is_the_identity_on_cpu(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(("sync", str(device))))

    def fn():
        events.append("call")
        return 7

    assert synchronized(fn, "cpu") is fn and synchronized(fn, None) is fn
    assert synchronized(fn, torch.device("cuda"))() == 7
    assert events == ["call", ("sync", "cuda")]


def test_peak_memory_on_cuda_is_the_allocators_peak_over_what_was_allocated_before(monkeypatch):
    mib = 2**20
    state = {"allocated": 3 * mib, "peak": 0}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["allocated"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: state.update(peak=state["allocated"]))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: state["peak"])
    assert peak_memory_mib(lambda: state.update(peak=10 * mib), "cuda") == pytest.approx(7.0)


def _recording_synchronized(monkeypatch, module):
    devices = []

    def record(fn, device):
        devices.append(torch.device(device).type)
        return fn

    monkeypatch.setattr(module, "synchronized", record)
    return devices


def test_attention_and_decoding_benchmarks_wait_for_the_device_they_run_on(monkeypatch):
    devices = _recording_synchronized(monkeypatch, attention_module)
    result = attention_benchmark([4], batch=1, num_heads=2, head_dim=4, warmup=0, repeats=1, memory=False,
                                 device="cpu")
    assert result.config["device"] == "cpu" and result.rows[0]["attnlab_ms"] > 0.0
    assert devices == ["cpu"] * 5  # one wrapper per candidate (a no-op on the CPU)
    devices = _recording_synchronized(monkeypatch, decoding_module)
    decoding_benchmark(TINY, batch=1, src_len=3, new_tokens=2, beam_size=2, warmup=0, repeats=1, memory=False)
    assert devices == ["cpu"] * 3


def test_bench_settings_on_cuda_reach_long_sequences_and_a_matmul_that_fills_the_chip():
    from attnlab.cli.bench_cmds import _settings

    cuda, cpu = _settings(False, cuda=True), _settings(False)
    assert max(cuda["attention"]["lengths"]) >= 1024 and cuda["matmul_size"] >= 8192
    assert cpu["matmul_size"] == 2048 and max(cpu["attention"]["lengths"]) == 1024


def test_attnlab_train_step_is_one_optimiser_step_of_the_trainer(monkeypatch):
    import attnlab.training.trainer as trainer
    from attnlab.training.trainer import TrainConfig, make_optimizer, train_step

    models = []  # the model each call of the trainer's train_step stepped

    def recording_train_step(model, *args, **kwargs):
        models.append(model)
        return train_step(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", recording_train_step)
    batch = random_batch(3, 5, 4, TINY.tgt_vocab_size)
    step, parameters = attnlab_train_step(TINY, batch, "fp32", "cpu")
    config = TransformerConfig.from_dict({**TINY.to_dict(), "final_norm": True})
    torch.manual_seed(0)
    reference = Transformer(config).train()  # the benchmark's initial weights (seed 0), stepped here directly
    assert parameters == sum(p.numel() for p in reference.parameters())
    initial = {name: p.detach().clone() for name, p in reference.named_parameters()}
    train_step(reference, make_optimizer(reference, TrainConfig(steps=1, lr=1e-4), torch.device("cpu")), batch,
               lr=1e-4, label_smoothing=0.1, grad_clip=1.0, precision="fp32", device=torch.device("cpu"))
    step()  # forward, label-smoothed loss, backward, clipping at 1.0, AdamW, as the trainer does it
    assert len(models) == 1, "one call, one step of the trainer's train_step"
    stepped = dict(models[0].named_parameters())
    assert stepped.keys() == initial.keys()
    assert [name for name in initial if torch.equal(stepped[name], initial[name])] == []  # the step moved every one
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(stepped[name], parameter, atol=0, rtol=0, msg=name)


def test_scaling_script_quick_writes_json_and_markdown_for_every_point(tmp_path):
    out = tmp_path / "scaling"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "scaling.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.with_suffix(".json").read_text())
    points = {(row["d_model"], row["batch"], row["precision"]) for row in result["rows"]}
    # --quick: batches 2, 4 at d_model 32, then d_model 16 (and 32, already measured) at batch 2
    assert points == {(d, b, p) for d, b in [(32, 2), (32, 4), (16, 2)] for p in ("fp32", "bf16")}
    for row in result["rows"]:
        assert row["ms_per_step"] > 0 and row["tokens_per_s"] > 0 and row["mfu"] > 0
    assert result["config"]["threads"] == 1 and result["config"]["device"] == "cpu"
    text = out.with_suffix(".md").read_text()
    assert "ms_per_step" in text and "mfu" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_scaling_script_rejects_bad_sizes(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "scaling.py"), "--batches", "0",
                           "--out", str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "sizes" in proc.stderr


def test_decode_full_length_makes_every_row_run_to_max_len():
    # A model whose output favours the tokens decoders drop (PAD, BOS) or stop at (EOS) would
    # otherwise return short rows, and a decoding benchmark would time unequal work.
    from attnlab.benchmarking import decode_full_length
    from attnlab.data import BOS_ID, EOS_ID, PAD_ID
    from attnlab.core.decoding import greedy_decode

    torch.manual_seed(0)
    model = Transformer(TINY).eval()
    with torch.no_grad():
        model.generator.bias[[EOS_ID, PAD_ID, BOS_ID]] = 50.0  # every step would pick one of them
    src = torch.randint(4, TINY.src_vocab_size, (3, 5))
    assert all(len(row) < 6 for row in greedy_decode(model, src, max_len=6))
    decode_full_length(model)
    rows = greedy_decode(model, src, max_len=6)
    assert [len(row) for row in rows] == [6, 6, 6]
    assert not {EOS_ID, PAD_ID, BOS_ID} & {token for row in rows for token in row}
