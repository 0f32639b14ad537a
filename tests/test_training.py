"""Claims about the trainer and checkpoints: reproducible, resumable after SIGKILL, safe to load."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attnlab.training.checkpoint import CheckpointError, load_weights
from attnlab.core.model import TransformerConfig
from attnlab.training.config import RunConfig, TrainConfig
from attnlab.training.hardware import resolve_precision
from attnlab.training.runs import load_run
from attnlab.training.schedule import budget_used, learning_rate
from attnlab.training.trainer import BatchStream, train

TINY_MODEL = dict(src_vocab_size=1, tgt_vocab_size=1, d_model=32, num_heads=2, num_encoder_layers=1,
                  num_decoder_layers=1, d_ff=64, dropout=0.1)
TIMING_KEYS = {"tokens_per_s"}  # wall-clock measurements differ between runs by nature


def tiny_run(steps=30, **train_overrides):
    settings = dict(steps=steps, batch_size=16, lr=3e-3, warmup=5, eval_every=10, checkpoint_every=10, log_every=5,
                    eval_examples=20)
    settings.update(train_overrides)
    return RunConfig(model=TransformerConfig(**TINY_MODEL), train=TrainConfig(**settings), task="copy",
                     task_options={"num_train": 300, "num_test": 20, "train_lengths": (1, 6), "test_lengths": (1, 6)})


def _records(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_same_seed_gives_identical_metrics_and_weights(tmp_path):
    train(tmp_path / "a", tiny_run(), progress=False)
    train(tmp_path / "b", tiny_run(), progress=False)
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    assert len(_records(tmp_path / "a")) == 6 + 2  # 6 train logs, dev evals at 10 and 20
    assert _digest(tmp_path / "a" / "model.safetensors") == _digest(tmp_path / "b" / "model.safetensors")
    train(tmp_path / "c", tiny_run(seed=1), progress=False)
    assert _digest(tmp_path / "c" / "model.safetensors") != _digest(tmp_path / "a" / "model.safetensors")


def test_run_directory_has_the_documented_files(tmp_path):
    result = train(tmp_path / "run", tiny_run(), progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "tokenizer-src.json", "tokenizer-tgt.json", "metrics.jsonl",
                 "eval.json"):
        assert (run / name).is_file(), name
    final = json.loads((run / "eval.json").read_text())
    for key in ("loss", "token_accuracy", "exact_match", "by_length"):
        assert key in final
    assert final["exact_match"] == result["summary"]["exact_match"]
    assert set(final["by_length"]) <= {str(n) for n in range(1, 7)}
    loaded = load_run(run)
    assert loaded.config.train.steps == 30 and loaded.source.vocab_size == loaded.config.model.src_vocab_size


def test_extending_a_finished_run_with_resume_matches_one_long_run(tmp_path, monkeypatch):
    """noam does not depend on the total step count, so 20 steps + 10 more equal 30 steps."""
    import attnlab.training.trainer as trainer

    train(tmp_path / "full", tiny_run(steps=30, schedule="noam"), progress=False)
    train(tmp_path / "part", tiny_run(steps=20, schedule="noam"), progress=False)
    first_leg = (tmp_path / "part" / "metrics.jsonl").read_bytes()
    plain_step, calls = trainer.train_step, []

    def counted_step(*args, **kwargs):
        calls.append(1)
        return plain_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", counted_step)
    train(tmp_path / "part", tiny_run(steps=30, schedule="noam"), resume=True, progress=False)
    # What only a real resume gives (training is deterministic: a retrain from step 0 would end the same):
    assert len(calls) == 10, f"the resumed run took {len(calls)} steps, not the 10 that were left"
    assert (tmp_path / "part" / "metrics.jsonl").read_bytes().startswith(first_leg)  # tokens_per_s included
    assert _digest(tmp_path / "full" / "model.safetensors") == _digest(tmp_path / "part" / "model.safetensors")

    def train_records(run):
        return [r for r in _records(run) if r["split"] == "train"]

    assert train_records(tmp_path / "full") == train_records(tmp_path / "part")


def _cli(*args):
    return [sys.executable, "-m", "attnlab", *args]


# `attnlab ARGS` (as python -m attnlab runs it) that also writes, to the file in argv[1], how many
# optimiser steps the process took: attnlab.training.trainer.train_step counts its calls.
COUNTING_CLI = """
import sys
from pathlib import Path
import attnlab.training.trainer as trainer
from attnlab.cli import main
plain_step, calls = trainer.train_step, []

def counted_step(*args, **kwargs):
    calls.append(1)
    return plain_step(*args, **kwargs)

trainer.train_step = counted_step
code = main(sys.argv[2:])
Path(sys.argv[1]).write_text(str(len(calls)))
sys.exit(code)
"""


@pytest.mark.slow
def test_resume_after_sigkill_gives_identical_final_weights(tmp_path):
    args = ["train", "--task", "copy", "--d-model", "32", "--heads", "2", "--encoder-layers", "1",
            "--decoder-layers", "1", "--d-ff", "64", "--steps", "400", "--batch-size", "32",
            "--checkpoint-every", "20", "--eval-every", "1000", "--num-train", "2000", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(*args, "--out", str(tmp_path / "full")), check=True, env=env, capture_output=True)

    victim = subprocess.Popen(_cli(*args, "--out", str(tmp_path / "killed")), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = tmp_path / "killed" / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= 60:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = json.loads(pointer.read_text())["step"]
    assert killed_at < 400 and not (tmp_path / "killed" / "eval.json").exists(), "the run finished before the kill"
    # the log as the killed process left it, up to its last checkpoint (a later flush may have outrun it)
    logged = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines(keepends=True)
    before_kill = "".join(line for line in logged if json.loads(line)["step"] <= killed_at)
    assert before_kill.count("\n") >= 2 and '"tokens_per_s"' in before_kill  # logged every 25 steps, killed at >= 60

    steps_file = tmp_path / "resumed-steps.txt"
    subprocess.run([sys.executable, "-c", COUNTING_CLI, str(steps_file), "train", "--out", str(tmp_path / "killed"),
                    "--resume", "--quiet"], check=True, env=env, capture_output=True)
    # Training is deterministic, so a --resume that retrained from step 0 would end with the same weights.
    # Only a real resume takes just the remaining steps and leaves the killed process's log lines (their
    # wall-clock tokens_per_s included) byte for byte as they were.
    assert int(steps_file.read_text()) == 400 - killed_at
    assert (tmp_path / "killed" / "metrics.jsonl").read_text().startswith(before_kill)
    assert _digest(tmp_path / "full" / "model.safetensors") == _digest(tmp_path / "killed" / "model.safetensors")
    assert _records(tmp_path / "full") == _records(tmp_path / "killed")


def test_schedules_have_the_documented_shape():
    noam = TrainConfig(steps=1000, lr=1e-3, schedule="noam", warmup=100)
    assert learning_rate(noam, 50) == pytest.approx(5e-4)
    assert learning_rate(noam, 100) == pytest.approx(1e-3)
    assert learning_rate(noam, 400) == pytest.approx(5e-4)  # inverse square root: 1e-3 * sqrt(100/400)
    cosine = TrainConfig(steps=1000, lr=1e-3, schedule="cosine", warmup=100)
    assert learning_rate(cosine, 100) == pytest.approx(1e-3)
    assert learning_rate(cosine, 550) == pytest.approx(5e-4)
    assert learning_rate(cosine, 1000) == pytest.approx(0.0, abs=1e-12)
    constant = TrainConfig(steps=1000, lr=1e-3, schedule="constant", warmup=10)
    assert learning_rate(constant, 5) == pytest.approx(5e-4) and learning_rate(constant, 999) == 1e-3


def test_cooldown_falls_linearly_to_zero_over_the_last_fraction():
    plain = TrainConfig(steps=1000, lr=1e-3, schedule="noam", warmup=100)
    cooled = TrainConfig(steps=1000, lr=1e-3, schedule="noam", warmup=100, cooldown=0.2)
    for step in (1, 50, 100, 400, 801):  # before the cool-down the two schedules are the same
        assert learning_rate(cooled, step) == pytest.approx(learning_rate(plain, step), rel=1e-12)
    # halfway through the cool-down (900 of 1000 steps used) the rate is half the schedule's
    assert learning_rate(cooled, 901) == pytest.approx(0.5 * learning_rate(plain, 901))
    assert learning_rate(cooled, 1000) == pytest.approx(learning_rate(plain, 1000) / 200)  # 1 step left of 200
    assert learning_rate(cooled, 500, used=1.0) == 0.0 and learning_rate(cooled, 500, used=1.5) == 0.0


def test_a_time_budget_uses_the_clock_when_it_runs_out_first():
    config = TrainConfig(steps=1000, lr=1e-3, schedule="constant", warmup=0, cooldown=0.5, max_minutes=10)
    assert budget_used(config, 101, elapsed_s=0.0) == pytest.approx(0.1)  # steps decide
    assert budget_used(config, 101, elapsed_s=450.0) == pytest.approx(0.75)  # the clock decides
    assert learning_rate(config, 101, budget_used(config, 101, 450.0)) == pytest.approx(0.5e-3)


def test_a_cooled_down_run_logs_its_schedule_and_checkpoints_its_clock(tmp_path):
    from attnlab.training.checkpoint import latest_checkpoint

    train(tmp_path / "run", tiny_run(steps=20, schedule="constant", cooldown=0.5, max_minutes=60.0), progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["lr"] for r in records if r["split"] == "train"}
    assert lr[5] == pytest.approx(3e-3)  # warmed up, before the cool-down
    assert lr[15] == pytest.approx(3e-3 * 0.6)  # 14 of 20 steps used: 0.3 of the budget left / 0.5
    assert lr[20] == pytest.approx(3e-3 * 0.1)  # the last step: 1 of 20 left
    state = json.loads((latest_checkpoint(tmp_path / "run") / "state.json").read_text())
    assert 0 < state["train_seconds"] < 600  # what a resumed time budget counts from


def test_batch_stream_resumes_at_its_position():
    from attnlab.data import load_task

    data = load_task("copy", num_train=100, num_test=4, train_lengths=(1, 6), test_lengths=(1, 6), seed=0)
    stream = BatchStream(data.train, batch_size=16, seed=3)
    seen = [stream.next().src for _ in range(20)]  # 100 examples = 7 batches an epoch: crosses two epochs
    assert stream.epoch == 2
    resumed = BatchStream(data.train, batch_size=16, seed=3, epoch=1, index=3)
    assert torch.equal(resumed.next().src, seen[7 + 3])
    with pytest.raises(ValueError, match="empty"):
        BatchStream([], batch_size=4)


def test_auto_precision_is_bf16_only_where_native(monkeypatch):
    import attnlab.training.hardware as training

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(training, "_cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(training, "_cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(steps=-5), "steps must be a positive integer"),
        (dict(schedule="linear"), "unknown schedule 'linear'"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(device="tpu"), "unknown device 'tpu'"),
        (dict(precision="fp8"), "unknown precision"),
        (dict(cooldown=1.0), "cooldown must be a fraction"),
    ],
)
def test_bad_training_settings_are_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**overrides)


def test_truncated_or_corrupt_weights_give_a_clear_error(tmp_path):
    train(tmp_path / "run", tiny_run(steps=10), progress=False)
    weights = tmp_path / "run" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_run(tmp_path / "run")
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_run(tmp_path / "run")


def test_mismatched_checkpoint_names_the_tensor(tmp_path):
    train(tmp_path / "run", tiny_run(steps=10), progress=False)
    loaded = load_run(tmp_path / "run")
    bigger = type(loaded.model)(TransformerConfig(**{**loaded.config.model.to_dict(), "d_model": 64}))
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_weights(bigger, tmp_path / "run" / "model.safetensors")


def test_checkpoints_contain_no_pickle(tmp_path):
    train(tmp_path / "run", tiny_run(steps=10), progress=False)
    files = list((tmp_path / "run").rglob("*"))
    suffixes = {f.suffix for f in files if f.is_file()}
    assert suffixes <= {".json", ".jsonl", ".safetensors"}, suffixes
    for path in files:
        if path.suffix == ".safetensors":
            header_len = int.from_bytes(path.read_bytes()[:8], "little")
            json.loads(path.read_bytes()[8 : 8 + header_len])  # a JSON header, then raw tensor bytes


def test_tied_embeddings_survive_save_and_load(tmp_path):
    config = tiny_run(steps=5)
    config.model = TransformerConfig(**{**TINY_MODEL, "tie_embeddings": True})
    train(tmp_path / "run", config, progress=False)
    loaded = load_run(tmp_path / "run")
    assert loaded.model.generator.weight is loaded.model.tgt_embed.weight
    assert torch.count_nonzero(loaded.model.generator.weight) > 0


# ------------------------------------------------------------------ output without a terminal, metrics as they come

PROGRESS_LINE = r"^train step (\d+)/100000, loss \d+\.\d{3}, lr \d\.\d\de[-+]\d\d, [\d,]+ tok/s, elapsed \d+:\d\d, ETA "


def _read_stderr_line(process, deadline):
    import select

    while time.time() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.time()))
        if ready:
            return process.stderr.readline()
    raise AssertionError("no progress line before the deadline")


def test_training_without_a_terminal_prints_progress_lines_while_it_runs_and_logs_before_a_checkpoint(tmp_path):
    import re

    run = tmp_path / "run"
    args = ["train", "--task", "copy", "--d-model", "32", "--heads", "2", "--encoder-layers", "1",
            "--decoder-layers", "1", "--d-ff", "64", "--steps", "100000", "--batch-size", "16", "--num-train", "300",
            "--eval-every", "100000", "--checkpoint-every", "100000", "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTNLAB_PROGRESS_INTERVAL": "0"}  # a line at every step
    process = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        steps, logged = [], []  # the step of each progress line; metrics.jsonl's length when it came
        while not steps or steps[-1] < 76:  # three records logged (every 25 steps)
            line = _read_stderr_line(process, deadline)
            assert line, f"the run ended early: {process.wait()}"
            match = re.match(PROGRESS_LINE, line)
            if match:
                steps.append(int(match.group(1)))
                logged.append(len((run / "metrics.jsonl").read_text().splitlines()))
        assert process.poll() is None, "the lines must come while the run is going, not at its end"
    finally:
        process.kill()
        process.wait()
    assert steps == sorted(steps) and steps[0] == 25  # the first line comes with the first logged step
    assert logged[0] >= 1 and logged[-1] >= logged[0] + 2, logged  # metrics.jsonl grows as the run goes ...
    assert not (run / "checkpoints").exists() and not (run / "model.safetensors").exists()  # ... before any checkpoint
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records][:3] == [25, 50, 75] and all(r["split"] == "train" for r in records)


def test_quiet_training_without_a_terminal_prints_no_progress(tmp_path):
    args = ["train", "--task", "copy", "--d-model", "32", "--heads", "2", "--encoder-layers", "1",
            "--decoder-layers", "1", "--d-ff", "64", "--steps", "30", "--eval-every", "10", "--num-train", "200",
            "--quiet", "--out", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTNLAB_PROGRESS_INTERVAL": "0"}
    done = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "train step" not in done.stderr and "dev loss" not in done.stderr
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2 + 2  # logged all the same


def test_plain_progress_lines_come_at_the_interval_and_at_each_evaluation(capsys):
    from attnlab.training.progress import TrainingProgress

    now = [0.0]
    bar = TrainingProgress(total=100, plain=True, interval_s=30.0, clock=lambda: now[0])
    with bar:
        now[0] = 10.0
        bar.update(10, loss=2.5, lr=1e-3, tokens_per_s=1234.0)  # the first logged step: a line
        now[0] = 20.0
        bar.update(20, loss=2.0, lr=1e-3, tokens_per_s=1234.0)  # 10 s later: none
        now[0] = 41.0
        bar.tick(41)  # 31 s after the last line: one, with the last logged loss
        now[0] = 50.0
        bar.note(50, {"loss": 1.75, "exact_match": 0.5}, "exact_match")  # an evaluation: always
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "train step 10/100, loss 2.500, lr 1.00e-03, 1,234 tok/s, elapsed 0:10, ETA 1:30",
        "train step 41/100, loss 2.000, lr 1.00e-03, 1,234 tok/s, elapsed 0:41, ETA 0:59",
        "train step 50/100, loss 2.000, lr 1.00e-03, 1,234 tok/s, elapsed 0:50, ETA 0:50, "
        "dev loss 1.750, dev exact_match 0.500 (step 50)",
    ]


def test_plain_progress_prints_the_last_step_once(capsys):
    from attnlab.training.progress import TrainingProgress

    now = [0.0]
    bar = TrainingProgress(total=100, plain=True, interval_s=30.0, clock=lambda: now[0])
    with bar:
        now[0] = 10.0
        bar.update(100, loss=2.0, lr=1e-3, tokens_per_s=1000.0)  # the trainer logs the last step ...
        bar.tick(100)  # ... and ticks it
    assert [line.split(",")[0] for line in capsys.readouterr().err.splitlines()] == ["train step 100/100"]


def test_plain_progress_of_a_resumed_time_budget_counts_earlier_sessions():
    from attnlab.training.progress import TrainingProgress

    now = [0.0]
    bar = TrainingProgress(total=1000, start=100, plain=True, interval_s=0.0, elapsed_before=500.0,
                           time_budget_s=600.0, clock=lambda: now[0])
    now[0] = 60.0
    bar.step = 200  # 100 steps in 60 s: 800 steps left would take 480 s, but the budget has 40 s left
    assert bar._eta_s(60.0) == pytest.approx(40.0)


def test_plain_progress_shows_the_steps_a_budget_plan_expects_once_it_is_made(capsys):
    from attnlab.training.progress import TrainingProgress

    now = [0.0]
    bar = TrainingProgress(total=1600, plain=True, interval_s=0.0, time_budget_s=900.0, clock=lambda: now[0])
    with bar:
        now[0] = 10.0
        bar.update(10, loss=7.0, lr=1e-4, tokens_per_s=4000.0)
        bar.set_plan(1066)
        bar.set_plan(2000)  # a plan for more than the configured steps leaves the configured total
        now[0] = 20.0
        bar.update(20, loss=6.5, lr=2e-4, tokens_per_s=4000.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("train step 10/1600, ")
    assert lines[1].startswith("train step 20/≈1,066, ") and lines[1].endswith("ETA 14:40")  # capped by the clock


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
    """A run killed mid-write leaves half a line after its last checkpoint; the resumed log is the uninterrupted one."""
    train(tmp_path / "full", tiny_run(steps=30, schedule="noam"), progress=False)
    train(tmp_path / "part", tiny_run(steps=20, schedule="noam"), progress=False)
    with (tmp_path / "part" / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 25, "split": "train", "loss": 1.0}\n{"step": 30, "spl')
    train(tmp_path / "part", tiny_run(steps=30, schedule="noam"), resume=True, progress=False)

    def train_records(run):  # (the 20-step leg had no dev evaluation at its last step, 20)
        return [r for r in _records(run) if r["split"] == "train"]

    assert train_records(tmp_path / "part") == train_records(tmp_path / "full")
    assert [r["step"] for r in train_records(tmp_path / "part")] == [5, 10, 15, 20, 25, 30]


def test_a_sweep_without_a_terminal_prints_its_runs_and_their_progress(tmp_path, capsys, monkeypatch):
    from attnlab.experiments.sweep import Job, run_sweep

    monkeypatch.setenv("ATTNLAB_PROGRESS_INTERVAL", "0")
    run_sweep(tmp_path, [Job("tiny", tiny_run(steps=15).to_dict(), {"seed": 0})], workers=1, progress=True,
              title="study")
    err = capsys.readouterr().err
    assert "study: 0/1 runs done" in err and "training tiny" in err and "study: 1/1 runs done" in err
    assert "tiny step 5/15, loss" in err and "tiny step 15/15, loss" in err and "dev loss" in err


# ------------------------------------------------------------------ CPUs without native bf16


def test_bf16_on_a_cpu_without_native_bf16_warns_once_and_names_what_auto_picks(monkeypatch, capsys):
    import attnlab.training.hardware as hardware

    cpu = torch.device("cpu")
    monkeypatch.setattr(hardware, "_warned_emulated_bf16", False)
    monkeypatch.setattr(hardware, "_cpu_has_native_bf16", lambda: False)
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("bf16", cpu) == "bf16"
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: precision bf16 is emulated on this CPU")
    assert "precision auto would pick fp32" in warnings[0]
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("auto", cpu) == "fp32"
    assert capsys.readouterr().err == ""

    monkeypatch.setattr(hardware, "_warned_emulated_bf16", False)
    monkeypatch.setattr(hardware, "_cpu_has_native_bf16", lambda: True)
    assert resolve_precision("bf16", cpu) == "bf16"
    assert capsys.readouterr().err == ""  # native: nothing to warn about


@pytest.mark.parametrize("kernels, flags, native", [
    ("AVX512", {"avx2", "avx512f", "amx_bf16"}, True),
    ("AVX2", {"avx2", "avx512f", "amx_bf16"}, False),  # ATEN_CPU_CAPABILITY=avx2 on an AMX CPU: emulated bf16
    ("AVX512", {"avx2", "avx512f"}, False),  # AVX-512 without its bf16 instructions
    ("AVX2", {"avx2"}, False),  # an AVX2-only CPU
])
def test_bf16_is_native_only_with_the_instructions_and_kernels_that_use_them(monkeypatch, kernels, flags, native):
    import attnlab.training.hardware as hardware

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: kernels)
    monkeypatch.setattr(hardware, "_read_cpuinfo", lambda: ("a CPU", flags))
    assert hardware._cpu_has_native_bf16() is native
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")


def test_cpu_capability_reports_what_the_precision_choice_reads():
    from attnlab.training.hardware import cpu_capability

    capability = cpu_capability()
    assert capability["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(capability["flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    if Path("/proc/cpuinfo").is_file():  # read here independently: the first "flags" line
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in lines if line.split(":")[0].strip() == "flags").split(":", 1)[1].split()
        assert capability["flags"] == {name: name in flags for name in capability["flags"]}
        assert capability["native_bf16"] == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if capability["native_bf16"] else "fp32")


def test_the_cpu_is_recorded_in_a_run_shown_by_info_and_in_benchmark_json(tmp_path, capsys):
    from attnlab.benchmarking import environment
    from attnlab.cli import main
    from attnlab.training.hardware import cpu_capability

    train(tmp_path / "run", tiny_run(steps=5), progress=False)
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["cpu"] == cpu_capability()
    assert main(["info", str(tmp_path / "run")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cpu"] == {"trained_on": cpu_capability(), "this_machine": cpu_capability()}
    assert environment()["cpu"] == cpu_capability()


def test_without_a_time_budget_the_trainer_neither_calibrates_nor_measures_the_hardware(tmp_path, monkeypatch):
    import attnlab.training.trainer as trainer

    def refuse(*args, **kwargs):
        raise AssertionError("a run without a time budget calibrated or measured the matmul rate")

    monkeypatch.setattr(trainer, "Calibration", refuse)
    monkeypatch.setattr(trainer, "UtilisationMeter", refuse)
    run_config = tiny_run(schedule="cosine", cooldown=0.3)
    result = train(tmp_path / "run", run_config, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["plan"] is None
    assert "plan" not in result["summary"] and "mfu" not in result["summary"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for record in (r for r in records if r["split"] == "train"):
        assert "mfu" not in record
        assert record["lr"] == learning_rate(run_config.train, record["step"])  # the configured schedule, exactly


def test_evaluations_are_counted_outside_the_steps_and_left_out_of_tokens_per_s(tmp_path, monkeypatch):
    import attnlab.training.trainer as trainer

    now = [0.0]
    plain_step, plain_evaluate = trainer.train_step, trainer.evaluate

    def one_second_step(*args, **kwargs):
        now[0] += 1.0
        return plain_step(*args, **kwargs)

    def slow_evaluate(*args, **kwargs):
        now[0] += 7.0
        return plain_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", one_second_step)
    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    run_config = tiny_run()  # dev evaluations at steps 10 and 20
    result = train(tmp_path / "run", run_config, progress=False, clock=lambda: now[0])
    assert result["summary"]["seconds_outside_steps"] == {"evaluation": 14.0, "checkpoint": 0.0, "plan": 0.0}
    data = run_config.load_data()
    stream = BatchStream.for_config(data.train, run_config.train)
    tokens = [stream.next().num_tokens for _ in range(30)]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for record in (r for r in records if r["split"] == "train"):  # 5 one-second steps a window, evaluations aside
        assert record["tokens_per_s"] == round(sum(tokens[record["step"] - 5: record["step"]]) / 5.0, 1)
