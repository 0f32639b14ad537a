"""Claims about decoding.py: the KV cache changes speed, never the output; beam search is sane."""

import pytest
import torch

from attnlab import Transformer, TransformerConfig
from attnlab.data import EOS_ID
from attnlab.core.decoding import beam_search, greedy_decode


def trained_ish_model(pos_encoding="sinusoidal"):
    torch.manual_seed(0)
    config = TransformerConfig(src_vocab_size=30, tgt_vocab_size=30, d_model=32, num_heads=4, num_encoder_layers=2,
                               num_decoder_layers=2, d_ff=64, dropout=0.0, pos_encoding=pos_encoding)
    model = Transformer(config).eval()
    with torch.no_grad():  # make EOS unlikely early so outputs have some length
        model.generator.bias[EOS_ID] = -2.0
    return model


def sources():
    src = torch.randint(4, 30, (5, 9))
    src[1, 6:] = 0  # padding
    src[3, 4:] = 0
    return src


@pytest.mark.parametrize("pos_encoding", ["sinusoidal", "rope", "alibi", "learned"])
def test_cached_greedy_decoding_emits_exactly_the_uncached_tokens(pos_encoding):
    model, src = trained_ish_model(pos_encoding), sources()
    cached = greedy_decode(model, src, max_len=20)
    assert cached == greedy_decode(model, src, max_len=20, use_cache=False)
    assert any(len(tokens) > 3 for tokens in cached)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_cached_beam_search_emits_exactly_the_uncached_tokens(beam_size):
    model, src = trained_ish_model(), sources()
    cached = beam_search(model, src, beam_size=beam_size, max_len=15)
    assert cached == beam_search(model, src, beam_size=beam_size, max_len=15, use_cache=False)
    assert len(cached) == len(src) and any(len(tokens) > 3 for tokens in cached)  # equal, and not trivially empty


def _log_prob(model, src, tokens, finished):
    """Sum of log-probabilities of `tokens` (+ EOS when `finished`) for one source, by teacher forcing."""
    tgt_in = torch.tensor([[1] + tokens])
    tgt_out = torch.tensor(tokens + [EOS_ID])
    if not finished:
        tgt_in, tgt_out = tgt_in[:, :-1], tgt_out[:-1]
    with torch.no_grad():
        log_probs = torch.log_softmax(model(src[None], tgt_in)[0], -1)
    return log_probs[torch.arange(len(tgt_out)), tgt_out].sum().item()


def test_beam_search_finds_at_least_as_likely_an_output_as_greedy():
    model, src = trained_ish_model(), sources()
    compared = 0
    for row in range(src.shape[0]):
        one = src[row : row + 1]
        greedy = greedy_decode(model, one, max_len=12)[0]
        beam = beam_search(model, one, beam_size=5, max_len=12, length_penalty=0.0)[0]
        finished = len(greedy) < 12
        if finished == (len(beam) < 12):  # both ended with EOS, or both ran to max_len: comparable scores
            assert _log_prob(model, one[0], beam, finished) >= _log_prob(model, one[0], greedy, finished) - 1e-4
            compared += 1
    assert compared >= 3


def test_beam_search_rejects_a_bad_beam_size():
    with pytest.raises(ValueError, match="beam size must be >= 1"):
        beam_search(trained_ish_model(), sources(), beam_size=0)
