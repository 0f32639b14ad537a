"""Which fused attention kernel serves each of attnlab's attention calls on a CUDA card.

For three kinds of model call — a decoder-only model (causal self-attention, no mask), an
encoder–decoder on a batch without padding, and one on a padded batch (the encoder–decoder
passes a padding mask to encoder self-attention and cross-attention in both) — it runs a
forward and backward pass under bf16 autocast
with PyTorch's SDPA restricted to one backend at a time (flash, memory-efficient, math)
and records which backends accept it. A backend that cannot serve a call raises, so the
table is what PyTorch really dispatches, not what the documentation promises.

    python scripts/gpu_kernels.py --out gpu-kernels.json       # needs a CUDA device
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from attnlab import DecoderOnlyLM, Transformer, TransformerConfig
from attnlab.benchmarking import write_json

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "math": SDPBackend.MATH}


def _accepts(backend, step) -> bool | str:
    try:
        with sdpa_kernel([backend]), torch.autocast("cuda", dtype=torch.bfloat16):
            step()
        torch.cuda.synchronize()
        return True
    except RuntimeError as error:
        return f"no: {str(error).splitlines()[0][:120]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    torch.manual_seed(0)
    shape = dict(d_model=256, num_heads=4, d_ff=1024, dropout=0.0)
    lm = DecoderOnlyLM(TransformerConfig(src_vocab_size=1000, tgt_vocab_size=1000, num_encoder_layers=0,
                                         num_decoder_layers=2, **shape)).to(device)
    seq2seq = Transformer(TransformerConfig(src_vocab_size=1000, tgt_vocab_size=1000, num_encoder_layers=2,
                                            num_decoder_layers=2, **shape)).to(device)
    tokens = torch.randint(4, 1000, (8, 128), device=device)
    padded = tokens.clone()
    padded[:4, 100:] = 0  # PAD_ID: a padding mask is needed

    cases = {
        "decoder-only LM, causal, no mask": lambda: lm(tokens).float().sum().backward(),
        "encoder-decoder, no padding": lambda: seq2seq(tokens, tokens).float().sum().backward(),
        "encoder-decoder, padded batch": lambda: seq2seq(padded, padded).float().sum().backward(),
    }
    table = {name: {label: _accepts(backend, step) for label, backend in BACKENDS.items()}
             for name, step in cases.items()}
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "autocast": "bf16", "table": table}
    for name, row in table.items():
        print(f"{name:36s} " + "  ".join(f"{k}={'yes' if v is True else 'no'}" for k, v in row.items()))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
