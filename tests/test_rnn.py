"""The GRU + additive-attention baseline: same interface as the Transformer, trains, decodes."""

import pytest
import torch

from attnlab.data import load_task, make_batches
from attnlab.core.decoding import beam_search, greedy_decode
from attnlab.core.model import TransformerConfig
from attnlab.core.rnn import RNNAttentionSeq2Seq
from attnlab.training.config import RunConfig, TrainConfig
from attnlab.training.runs import build_model


def small_config(**overrides) -> TransformerConfig:
    base = dict(src_vocab_size=16, tgt_vocab_size=16, d_model=32, num_heads=1, num_encoder_layers=1,
                num_decoder_layers=2, d_ff=32, dropout=0.0)
    return TransformerConfig(**{**base, **overrides})


def test_forward_shapes_and_padding_does_not_change_real_outputs():
    torch.manual_seed(0)
    model = RNNAttentionSeq2Seq(small_config()).eval()
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
    tgt = torch.tensor([[1, 7, 6], [1, 9, 8]])
    logits = model(src, tgt)
    assert logits.shape == (2, 3, 16)
    alone = model(src[1:, :3], tgt[1:])  # the same sentence without padding
    torch.testing.assert_close(logits[1:], alone, atol=1e-5, rtol=1e-5)


def test_build_model_makes_the_rnn_for_architecture_rnn_attention():
    run = RunConfig(model=small_config(), train=TrainConfig(steps=1), task="copy", architecture="rnn-attention")
    assert isinstance(build_model(run), RNNAttentionSeq2Seq)


def test_rejects_zero_layers():
    with pytest.raises(ValueError, match="at least one encoder"):
        RNNAttentionSeq2Seq(small_config(num_encoder_layers=0))


def test_loss_goes_down_on_copy_in_a_few_dozen_steps():
    torch.manual_seed(0)
    data = load_task("copy", seed=0, num_train=512, num_test=16, train_lengths=(2, 6), test_lengths=(2, 6))
    model = RNNAttentionSeq2Seq(small_config(src_vocab_size=data.source.vocab_size,
                                             tgt_vocab_size=data.target.vocab_size, d_model=64))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = make_batches(data.train, batch_size=32, shuffle=True, seed=0)
    losses = []
    for step in range(40):
        batch = batches[step % len(batches)]
        logits = model(batch.src, batch.tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_cached_greedy_and_beam_decoding_match_uncached():
    torch.manual_seed(1)
    model = RNNAttentionSeq2Seq(small_config(num_encoder_layers=2)).eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0], [11, 2, 0, 0, 0]])
    assert greedy_decode(model, src, max_len=8) == greedy_decode(model, src, max_len=8, use_cache=False)
    assert beam_search(model, src, beam_size=3, max_len=8) == beam_search(model, src, beam_size=3, max_len=8,
                                                                          use_cache=False)
