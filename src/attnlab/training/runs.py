"""A run directory: its configuration, and loading a trained model back.

``RUN/config.json`` holds everything needed to rebuild the model and resume
training::

    {"architecture": "transformer", "model": {TransformerConfig}, "train": {TrainConfig},
     "task": "reverse", "task_options": {...}, "attnlab_version": "0.1.0"}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from torch import nn

from .. import __version__
from ..files import atomic_write_text
from .checkpoint import CheckpointError, load_weights
from ..core.model import Transformer, TransformerConfig

__all__ = ["RunConfig", "ARCHITECTURES", "build_model", "write_config", "read_config", "load_run", "LoadedRun"]

ARCHITECTURES = ("transformer", "rnn-attention")


@dataclass
class RunConfig:
    model: TransformerConfig
    train: "TrainConfig"  # noqa: F821 - defined in training.py
    task: str
    task_options: dict = field(default_factory=dict)
    architecture: str = "transformer"

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown model {self.architecture!r}; allowed: {', '.join(ARCHITECTURES)}")

    def with_vocab(self, src_vocab_size: int, tgt_vocab_size: int) -> "RunConfig":
        model = replace(self.model, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
        if model.share_embeddings and src_vocab_size != tgt_vocab_size:
            model = replace(model, share_embeddings=False)
        return replace(self, model=model)

    def to_dict(self) -> dict:
        return {"architecture": self.architecture, "model": self.model.to_dict(), "train": asdict(self.train),
                "task": self.task, "task_options": self.task_options, "attnlab_version": __version__}

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        from .trainer import TrainConfig

        try:
            return cls(model=TransformerConfig.from_dict(data["model"]), train=TrainConfig.from_dict(data["train"]),
                       task=data["task"], task_options=data.get("task_options", {}),
                       architecture=data.get("architecture", "transformer"))
        except KeyError as missing:
            raise ValueError(f"run config lacks the key {missing}") from None


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
    source: "Codec"  # noqa: F821
    target: "Codec"  # noqa: F821


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
