"""What the explanation tests share: one small trained toy run per test session, and tiny models.

The run is trained once (through the command line, as a user would) into the session's base
temporary folder; every test module that asks for it reuses it.
"""

from __future__ import annotations

from pathlib import Path

from attnlab import TransformerConfig

TOY_SIZE = ["--d-model", "32", "--heads", "2", "--encoder-layers", "2", "--decoder-layers", "2", "--d-ff", "64",
            "--eval-every", "1000", "--quiet"]


def trained_toy_run(tmp_path_factory, steps: int = 150) -> Path:
    """A 2+2-layer toy translator (d_model 32, 2 heads) trained ``steps`` steps; trained once per session."""
    from attnlab.cli import main

    out = tmp_path_factory.getbasetemp() / f"explain-toy-{steps}"
    if not (out / "eval.json").is_file():
        assert main(["train", "--task", "toy", "--out", str(out), "--steps", str(steps), "--force", *TOY_SIZE]) == 0
    return out


def small_config(**overrides) -> TransformerConfig:
    settings = dict(src_vocab_size=30, tgt_vocab_size=30, d_model=16, num_heads=2, num_encoder_layers=2,
                    num_decoder_layers=2, d_ff=32, dropout=0.0, max_len=64)
    settings.update(overrides)
    return TransformerConfig(**settings)
