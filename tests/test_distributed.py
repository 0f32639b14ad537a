"""Claims about data-parallel training: two gloo ranks make the single-process update; resume works.

Each test launches real processes through torchrun (``python -m torch.distributed.run``) on the CPU.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attnlab.data import Batch
from attnlab.training.distributed import DistributedContext, from_environment, shard_batch, torchrun_command
from attnlab.core.model import TransformerConfig
from attnlab.training.config import RunConfig, TrainConfig
from attnlab.training.runs import load_run
from contract import check_bad_input

TINY_MODEL = dict(src_vocab_size=1, tgt_vocab_size=1, d_model=32, num_heads=2, num_encoder_layers=1,
                  num_decoder_layers=1, d_ff=64, dropout=0.0)

# Run a RunConfig (as JSON) with attnlab.training.trainer.train: what each torchrun rank executes (and, alone,
# the single-process reference). Rank 0 also saves the gradients of step 1 as train_step left them (DDP's
# all-reduced mean): weights after AdamW hide a uniform gradient-scale error, the gradients do not.
RANK_SCRIPT = """
import json, os, sys
from pathlib import Path
from safetensors.torch import save_file
from attnlab.training.config import RunConfig
import attnlab.training.trainer as trainer
run_dir, config_path, gradients_path = (Path(arg) for arg in sys.argv[1:4])
plain_step = trainer.train_step

def first_step_saving_gradients(model, *args, **kwargs):
    loss = plain_step(model, *args, **kwargs)
    trainer.train_step = plain_step  # steps 2, 3, ... run untouched
    if os.environ.get("RANK", "0") == "0":
        module = getattr(model, "module", model)  # DDP wraps the model
        save_file({name: p.grad.contiguous() for name, p in module.named_parameters() if p.grad is not None},
                  str(gradients_path))
    return loss

trainer.train_step = first_step_saving_gradients
trainer.train(run_dir, RunConfig.from_dict(json.loads(config_path.read_text())), progress=False)
"""


def tiny_run(steps):
    # 15 sentences per global batch: the two ranks get 7 and 8 rows, so the loss normalisation matters;
    # label smoothing on; noam does not depend on the total step count (resume may extend a run);
    # no gradient clipping, which would scale a wrongly scaled gradient back to the same norm.
    train_config = TrainConfig(steps=steps, batch_size=15, lr=3e-3, schedule="noam", warmup=5, label_smoothing=0.1,
                               eval_every=1000, checkpoint_every=3, log_every=2, eval_examples=10, device="cpu",
                               grad_clip=0.0)
    return RunConfig(model=TransformerConfig(**TINY_MODEL), train=train_config, task="copy",
                     task_options={"num_train": 200, "num_test": 10, "train_lengths": (1, 6), "test_lengths": (1, 6)})


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _gradients_path(run_dir):
    return Path(run_dir).with_name(Path(run_dir).name + "-step1-gradients.safetensors")


def _torchrun_train(tmp_path, run_dir, run_config, nproc=2):
    """Train on ``nproc`` torchrun ranks; ``nproc=1`` is one plain process (no torchrun, no process group)."""
    config_path = tmp_path / f"{Path(run_dir).name}.json"
    config_path.write_text(json.dumps(run_config.to_dict()))
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc-per-node", str(nproc)]
    command = [*launcher, str(script), str(run_dir), str(config_path), str(_gradients_path(run_dir))]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]


def _max_difference(path_a, path_b, *, skip=()):
    a, b = load_file(str(path_a)), load_file(str(path_b))
    assert a.keys() == b.keys()
    return max(float((a[name] - b[name]).abs().max()) for name in a if not name.endswith(skip))


# A key-projection bias adds q·b to every score of a query row, which softmax ignores: its gradient is
# zero in exact arithmetic, and rounding noise of ~1e-10 is all there is. Adam (eps 1e-9) turns that noise
# into full learning-rate steps in *both* runs, in different directions, so these biases drift apart
# (~1e-3 after 12 steps) without changing any output. They are compared through the outputs instead.
ZERO_GRADIENT = ("k_proj.bias",)


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    """12 steps on two gloo ranks (global batch 15), shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    _torchrun_train(tmp_path, tmp_path / "ddp", tiny_run(12))
    return tmp_path / "ddp"


def test_two_gloo_ranks_give_the_weights_of_one_process_on_the_global_batch(distributed_run, tmp_path):
    _torchrun_train(tmp_path, tmp_path / "single", tiny_run(12), nproc=1)
    ddp_gradients, single_gradients = (load_file(str(_gradients_path(run))) for run in (distributed_run,
                                                                                         tmp_path / "single"))
    assert ddp_gradients.keys() == single_gradients.keys()
    for name, gradient in single_gradients.items():  # step 1, before the optimiser: the global batch's gradient
        torch.testing.assert_close(ddp_gradients[name], gradient, atol=1e-6, rtol=1e-5, msg=name)
    ddp_weights, single_weights = distributed_run / "model.safetensors", tmp_path / "single" / "model.safetensors"
    assert _max_difference(ddp_weights, single_weights, skip=ZERO_GRADIENT) < 1e-5
    ddp_model, single_model = load_run(distributed_run).model, load_run(tmp_path / "single").model
    src, tgt = torch.randint(4, ddp_model.config.src_vocab_size, (3, 6)), torch.randint(4, 10, (3, 5))
    with torch.no_grad():
        torch.testing.assert_close(ddp_model(src, tgt), single_model(src, tgt), atol=1e-5, rtol=0)
    ddp_log = [json.loads(line) for line in (distributed_run / "metrics.jsonl").read_text().splitlines()]
    single_log = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ddp_log] == [r["step"] for r in single_log] == [2, 4, 6, 8, 10, 12]  # rank 0 only
    for ours, theirs in zip(ddp_log, single_log, strict=True):  # the logged loss is the global batch's mean
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-5) and ours["lr"] == theirs["lr"]
    assert json.loads((distributed_run / "eval.json").read_text())["world_size"] == 2


@pytest.mark.slow  # two more torchrun launches (~40 s on 2 cores)
def test_distributed_resume_through_the_cli_matches_an_uninterrupted_distributed_run(distributed_run, tmp_path):
    _torchrun_train(tmp_path, tmp_path / "part", tiny_run(7))  # stops mid-way: last checkpoint at step 7
    proc = subprocess.run([sys.executable, "-m", "attnlab", "train", "--out", str(tmp_path / "part"), "--resume",
                           "--steps", "12", "--nproc", "2", "--quiet"],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stderr and json.loads(proc.stdout)["steps"] == 12
    assert _max_difference(distributed_run / "model.safetensors", tmp_path / "part" / "model.safetensors") == 0.0
    steps = [json.loads(line)["step"] for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 7, 8, 10, 12]  # the first leg logged its last step, 7


def test_cli_nproc_rejects_bad_input_before_launching(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")

    def train_on_two_ranks(out, nproc):
        proc = subprocess.run([sys.executable, "-m", "attnlab", "train", "--task", "copy", "--out", str(out),
                               "--nproc", str(nproc)], capture_output=True, text=True, timeout=120, env=_env())
        return proc.returncode, proc.stderr  # one line only: no "launching: torchrun ..." before it

    check_bad_input(lambda: train_on_two_ranks(tmp_path / "taken", 2), "already exists", watch=[tmp_path])
    check_bad_input(lambda: train_on_two_ranks(tmp_path / "new", 0), "--nproc", watch=[tmp_path])


def test_each_rank_takes_a_contiguous_block_of_rows_and_an_empty_rank_gets_a_zero_weight_filler():
    rows = torch.arange(5)[:, None].repeat(1, 3)
    batch = Batch(src=rows, tgt_in=rows, tgt_out=rows, num_tokens=15, examples=list(range(5)))
    shards = [shard_batch(batch, DistributedContext(rank=r, world_size=2)) for r in range(2)]
    assert [s.examples for s, _ in shards] == [[0, 1], [2, 3, 4]] and [w for _, w in shards] == [1.0, 1.0]
    one_row = Batch(src=rows[:1], tgt_in=rows[:1], tgt_out=rows[:1], num_tokens=3, examples=[0])
    filler, weight = shard_batch(one_row, DistributedContext(rank=0, world_size=2))
    assert len(filler) == 1 and weight == 0.0
    assert shard_batch(batch, DistributedContext()) == (batch, 1.0)


def test_torchrun_environment_is_read_and_checked():
    assert from_environment({}) == DistributedContext(rank=0, world_size=1, local_rank=0)
    context = from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert context.enabled and not context.is_main and context.local_rank == 1
    with pytest.raises(ValueError, match="RANK"):
        from_environment({"RANK": "4", "WORLD_SIZE": "4"})
    assert torchrun_command(2, ["train"])[-4:] == ["2", "-m", "attnlab", "train"]
