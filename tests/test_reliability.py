"""Claims about failure: checkpoints survive corruption and full disks; the reliability script passes.

The script itself (scripts/reliability.py) runs in its quick mode here; the checkpoint claims it
relies on are also tested directly, on a tiny model, so a failure points at its cause.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from attnlab.training.checkpoint import (KEPT_CHECKPOINTS, CheckpointError, load_checkpoint, save_checkpoint)

REPO = Path(__file__).resolve().parents[1]


def tiny_training(run: Path, steps: tuple[int, ...]) -> dict[int, dict[str, torch.Tensor]]:
    """A linear layer trained with Adam, checkpointed at ``steps``; the weights at each step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    weights = {}
    for step in steps:
        model(torch.randn(8, 4)).square().mean().backward()
        optimizer.step()
        save_checkpoint(run, step, model, optimizer, {"epoch": 0, "batch_index": step})
        weights[step] = {name: value.clone() for name, value in model.state_dict().items()}
    return weights


def fresh():
    model = torch.nn.Linear(4, 3)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # inside the tensor data: the safetensors header still parses
    path.write_bytes(bytes(data))


def test_the_latest_and_the_previous_checkpoint_are_kept(tmp_path):
    tiny_training(tmp_path, (10, 20, 30))
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert KEPT_CHECKPOINTS == 2 and kept == ["latest.json", "step-00000020", "step-00000030"]
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["dir"] == "step-00000030"


def test_resume_falls_back_to_the_previous_checkpoint_when_the_latest_is_corrupt(tmp_path):
    weights = tiny_training(tmp_path, (10, 20, 30))
    flip_last_byte(tmp_path / "checkpoints" / "step-00000030" / "model.safetensors")
    model, optimizer = fresh()
    warnings = []
    state = load_checkpoint(tmp_path, model, optimizer, warn=warnings.append)
    assert state["step"] == 20 and state["batch_index"] == 20
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[20][name]), name
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert "step-00000030/model.safetensors is corrupt" in warnings[0] and "step-00000020" in warnings[0]


def test_an_intact_latest_checkpoint_loads_without_a_warning(tmp_path):
    weights = tiny_training(tmp_path, (10, 20))
    model, optimizer = fresh()
    warnings = []
    assert load_checkpoint(tmp_path, model, optimizer, warn=warnings.append)["step"] == 20
    assert warnings == [] and torch.equal(model.weight, weights[20]["weight"])


def test_a_broken_latest_json_falls_back_to_the_newest_readable_checkpoint(tmp_path):
    tiny_training(tmp_path, (10, 20))
    (tmp_path / "checkpoints" / "latest.json").write_text('{"step": 2')
    warnings = []
    assert load_checkpoint(tmp_path, *fresh(), warn=warnings.append)["step"] == 20
    assert len(warnings) == 1 and "latest.json is corrupt" in warnings[0] and "step-00000020" in warnings[0]


def test_no_readable_checkpoint_is_refused_with_the_reason_for_each(tmp_path):
    tiny_training(tmp_path, (10, 20))
    optimizer_file = tmp_path / "checkpoints" / "step-00000010" / "optimizer.safetensors"
    optimizer_file.write_bytes(optimizer_file.read_bytes()[:40])
    (tmp_path / "checkpoints" / "step-00000020" / "state.json").write_text("{")
    with pytest.raises(CheckpointError, match="no readable checkpoint") as refused:
        load_checkpoint(tmp_path, *fresh())
    assert "step-00000020/state.json is missing or corrupt" in str(refused.value)
    assert "step-00000010/optimizer.safetensors is corrupt" in str(refused.value)


def test_checkpoints_written_before_digests_still_load(tmp_path):
    tiny_training(tmp_path, (10,))
    state_file = tmp_path / "checkpoints" / "step-00000010" / "state.json"
    state = json.loads(state_file.read_text())
    assert set(state["sha256"]) == {"model.safetensors", "optimizer.safetensors", "rng.safetensors"}
    del state["sha256"]
    state_file.write_text(json.dumps(state))
    assert load_checkpoint(tmp_path, *fresh())["step"] == 10


def test_saving_after_a_fallback_removes_the_abandoned_later_checkpoint(tmp_path):
    tiny_training(tmp_path, (10, 20, 30))
    flip_last_byte(tmp_path / "checkpoints" / "step-00000030" / "model.safetensors")
    model, optimizer = fresh()
    load_checkpoint(tmp_path, model, optimizer, warn=lambda message: None)
    save_checkpoint(tmp_path, 25, model, optimizer, {"epoch": 0, "batch_index": 25})
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000020", "step-00000025"]


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys, torch
    from pathlib import Path
    from attnlab.training.checkpoint import CheckpointWriteError, save_checkpoint
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    run = Path(sys.argv[1])
    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 64)).sum().backward(); optimizer.step()
    save_checkpoint(run, 10, model, optimizer, {"epoch": 0, "batch_index": 10})
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))  # the disk is full now
    try:
        save_checkpoint(run, 20, model, optimizer, {"epoch": 0, "batch_index": 20})
    except CheckpointWriteError as error:
        print(error)
        sys.exit(3)
""")


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one_intact(tmp_path):
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr
    assert "could not write checkpoint step-00000020" in done.stdout and "File too large" in done.stdout
    assert "step-00000010, is intact" in done.stdout
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.json", "step-00000010"]
    model = torch.nn.Linear(64, 64)
    assert load_checkpoint(tmp_path, model, torch.optim.Adam(model.parameters()))["step"] == 10


@pytest.mark.slow
def test_reliability_script_quick_mode_passes_and_prints_every_table():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "reliability.py"), "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=1500, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for heading in ("## (a) Bad input on every command", "## (b) SIGKILL and resume",
                    "## (c) Corrupt checkpoints", "## (d) A full disk", "## (e) The explorer under load"):
        assert heading in done.stdout
    assert "\n0 wrong case(s)" in done.stdout and "**WRONG**" not in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and line.endswith(" ok |")]
    assert len(rows) >= 70, len(rows)  # 56 bad inputs, 1 + 9 + 1 training cases, 1 + 12 explorer cases
