"""torch.compile gives the eager model's numbers (it is a speed option, never a different model)."""

import pytest
import torch

from attnlab.core.model import Transformer, TransformerConfig

# Inductor fuses and reorders float operations, so results differ from eager by rounding only:
# fp32 logits of this model agree to 1e-5 absolute / 1e-4 relative, gradients to 1e-4.
TOLERANCE = dict(atol=1e-5, rtol=1e-4)


@pytest.mark.slow  # inductor compiles C++ kernels: ~1 minute on 2 cores
def test_compiled_and_eager_transformer_give_the_same_logits_and_gradients():
    config = TransformerConfig(src_vocab_size=40, tgt_vocab_size=40, d_model=32, num_heads=4, num_encoder_layers=2,
                               num_decoder_layers=2, d_ff=64, dropout=0.0)
    model = Transformer(config)
    compiled = torch.compile(model)
    src = torch.randint(4, 40, (3, 7))
    src[0, 5:] = 0  # padding in the source: masks go through the compiled graph too
    tgt = torch.randint(4, 40, (3, 6))
    eager_logits = model(src, tgt)
    compiled_logits = compiled(src, tgt)
    torch.testing.assert_close(compiled_logits, eager_logits, **TOLERANCE)

    eager_logits.square().mean().backward()
    eager_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    compiled(src, tgt).square().mean().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, eager_grads[name], atol=1e-4, rtol=1e-3, msg=name)
