"""A run directory: writing its configuration, and loading a trained model back.

``RUN/config.json`` (:class:`~attnlab.training.config.RunConfig`) holds everything needed to
rebuild the model and resume training::

    {"architecture": "transformer", "model": {TransformerConfig}, "train": {TrainConfig},
     "task": "reverse", "task_options": {...}, "attnlab_version": "0.1.0"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from ..core.model import Transformer
from ..files import atomic_write_text
from .checkpoint import CheckpointError, load_weights
from .config import RunConfig

if TYPE_CHECKING:
    from ..data import Codec

__all__ = ["build_model", "write_config", "read_config", "load_run", "LoadedRun"]


def build_model(run_config: RunConfig) -> nn.Module:
    if run_config.architecture == "rnn-attention":
        from ..core.rnn import RNNAttentionSeq2Seq

        return RNNAttentionSeq2Seq(run_config.model)
    return Transformer(run_config.model)


def write_config(run_dir: Path, run_config: RunConfig) -> None:
    atomic_write_text(Path(run_dir) / "config.json", json.dumps(run_config.to_dict(), indent=2, default=list))


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{run_dir} is not an attnlab run directory (no config.json)")
    try:
        return RunConfig.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})") from None


@dataclass
class LoadedRun:
    path: Path
    config: RunConfig
    model: nn.Module
    source: Codec
    target: Codec


def load_run(run_dir: Path, device="cpu") -> LoadedRun:
    """Rebuild a trained model and its tokenizers from a run directory (eval mode)."""
    from ..data import TaskData

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{run_dir} has no trained weights yet (model.safetensors is missing)")
    model = load_weights(build_model(config), weights).to(device).eval()
    source, target = TaskData.load_codecs(run_dir)
    return LoadedRun(run_dir, config, model, source, target)
