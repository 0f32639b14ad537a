"""The training issue's acceptance claims, each a real training run in the default configuration.

These are the lecture's points shown by a model: with sinusoidal positions a Transformer learns to
reverse; without positions it cannot reverse (self-attention is blind to order) but can still
sort (sorting needs no order); and the copy task is learned perfectly.
"""

import time

import pytest

from attnlab.cli.train_cmds import build_run_config
from attnlab.training.trainer import train

pytestmark = pytest.mark.slow


def default_run(tmp_path, task, **settings):
    config = build_run_config({"task": task, **settings})
    started = time.perf_counter()
    result = train(tmp_path / task, config, progress=False)
    minutes = (time.perf_counter() - started) / 60
    print(f"{task} {settings}: exact match {result['summary']['exact_match']:.3f} in {minutes:.2f} min")
    return result["summary"]


def test_reverse_with_sinusoidal_positions_reaches_99_percent(tmp_path):
    assert default_run(tmp_path, "reverse")["exact_match"] >= 0.99


def test_without_positions_reverse_fails_but_sort_succeeds(tmp_path):
    assert default_run(tmp_path, "reverse", pos_encoding="none")["exact_match"] < 0.10
    assert default_run(tmp_path, "sort", pos_encoding="none")["exact_match"] >= 0.95


def test_copy_is_learned_perfectly(tmp_path):
    assert default_run(tmp_path, "copy")["exact_match"] == 1.0
