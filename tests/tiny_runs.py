"""Tiny trained runs for the notebook, compare and decoding-step tests (seconds, not minutes).

The weights barely learn in so few steps; these tests check bookkeeping (which weights, which
steps, which hypotheses), which holds for any weights.
"""

from pathlib import Path

from attnlab.training.config import RunConfig
from attnlab.training.trainer import train

TINY = dict(d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, d_ff=64,
            eval_every=10**6, checkpoint_every=10**6, eval_examples=10)
TASK_SIZES = {"reverse": dict(num_train=300, num_test=20), "toy": dict(num_pairs=400)}


def tiny_run(out: Path, task: str = "reverse", *, steps: int = 30, **overrides) -> Path:
    """Train ``task`` for ``steps`` steps into ``out`` (TINY model, small data) and return ``out``.

    >>> tiny_run(tmp_path / "reverse", pos_encoding="learned")
    """
    settings = {**TINY, **TASK_SIZES.get(task, {}), "steps": steps, **overrides}
    train(Path(out), RunConfig.for_task(task, **settings), progress=False)
    return Path(out)
