"""Claims about blocks.py and model.py: equal to torch.nn, and the lecture's properties."""

import json

import pytest
import torch
from torch import nn

from attnlab import DecoderBlock, DecoderOnlyLM, EncoderBlock, EncoderOnlyModel, MultiHeadAttention, Transformer, TransformerConfig
from attnlab.core.attention import padding_mask
from attnlab.inspection.interop import (
    decoder_block_from_torch,
    encoder_block_from_torch,
    load_transformer,
    to_torch_key_padding_mask,
)
from attnlab.core.positional import positional_encoding
from contract import randomized


def small_config(**overrides):
    settings = dict(src_vocab_size=23, tgt_vocab_size=19, d_model=32, num_heads=4, num_encoder_layers=2,
                    num_decoder_layers=2, d_ff=64, dropout=0.0)
    settings.update(overrides)
    return TransformerConfig(**settings)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_equals_torch_encoder_layer(norm_first, activation):
    theirs = randomized(nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation=activation, batch_first=True,
                                                   norm_first=norm_first)).eval()
    ours = encoder_block_from_torch(theirs).eval()
    x = torch.randn(3, 7, 32)
    tokens = torch.ones(3, 7, dtype=torch.long)
    tokens[1, 5:] = 0
    mask = padding_mask(tokens, 0)
    expected = theirs(x, src_key_padding_mask=to_torch_key_padding_mask(mask))
    got = ours(x, mask)
    real = tokens.bool()  # torch's fast path may leave padded rows as zeros; compare real tokens
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_decoder_block_equals_torch_decoder_layer(norm_first, activation):
    theirs = randomized(nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0, activation=activation, batch_first=True,
                                                   norm_first=norm_first)).eval()
    ours = decoder_block_from_torch(theirs).eval()
    y, memory = torch.randn(2, 5, 32), torch.randn(2, 8, 32)
    src = torch.ones(2, 8, dtype=torch.long)
    src[0, 6:] = 0
    memory_mask = padding_mask(src, 0)
    expected = theirs(y, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5), tgt_is_causal=True,
                      memory_key_padding_mask=to_torch_key_padding_mask(memory_mask))
    torch.testing.assert_close(ours(y, memory, memory_mask), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_equals_torch_transformer_with_same_embeddings(norm_first):
    config = small_config(norm_first=norm_first, final_norm=True)
    ours = randomized(Transformer(config)).eval()  # drawn apart from theirs: a block left uncopied shows
    theirs = randomized(nn.Transformer(32, 4, 2, 2, 64, dropout=0.0, batch_first=True, norm_first=norm_first)).eval()
    load_transformer(ours, theirs)
    src = torch.randint(1, 23, (3, 9))
    src[2, 6:] = 0
    tgt = torch.randint(1, 19, (3, 6))
    pe = positional_encoding("sinusoidal", 32)
    src_in = pe.add_to_embeddings(ours.src_embed(src))
    tgt_in = pe.add_to_embeddings(ours.tgt_embed(tgt))
    key_padding = to_torch_key_padding_mask(padding_mask(src, 0))
    hidden = theirs(src_in, tgt_in, tgt_mask=nn.Transformer.generate_square_subsequent_mask(6), tgt_is_causal=True,
                    src_key_padding_mask=key_padding, memory_key_padding_mask=key_padding)
    torch.testing.assert_close(ours(src, tgt), ours.generator(hidden), atol=1e-5, rtol=1e-5)


def test_self_attention_without_positions_is_permutation_equivariant():
    encoder = EncoderOnlyModel(small_config(pos_encoding="none")).eval()
    tokens = torch.randint(1, 23, (2, 8))
    perm = torch.randperm(8)
    torch.testing.assert_close(encoder(tokens)[:, perm], encoder(tokens[:, perm]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sinusoidal", "learned", "rope", "alibi"])
def test_any_positional_encoding_breaks_permutation_equivariance(name):
    encoder = EncoderOnlyModel(small_config(pos_encoding=name)).eval()
    tokens = torch.arange(1, 9)[None]
    perm = torch.tensor([2, 0, 7, 1, 5, 3, 6, 4])
    assert not torch.allclose(encoder(tokens)[:, perm], encoder(tokens[:, perm]), atol=1e-3)


def test_symmetric_alibi_encoder_cannot_tell_a_sequence_from_its_mirror():
    """A property worth knowing: |i - j| is unchanged by reversal, so ALiBi alone is mirror-blind."""
    encoder = EncoderOnlyModel(small_config(pos_encoding="alibi")).eval()
    tokens = torch.arange(1, 9)[None]
    mirror = torch.arange(7, -1, -1)
    torch.testing.assert_close(encoder(tokens)[:, mirror], encoder(tokens[:, mirror]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sinusoidal", "rope", "alibi", "none"])
def test_changing_a_future_target_token_leaves_earlier_outputs_unchanged(name):
    model = Transformer(small_config(pos_encoding=name)).eval()
    src, tgt = torch.randint(1, 23, (2, 7)), torch.randint(1, 19, (2, 6))
    changed = tgt.clone()
    changed[:, 4] = (changed[:, 4] % 18) + 1
    a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("name", ["sinusoidal", "learned", "rope", "alibi"])
def test_appending_padding_leaves_real_positions_unchanged(name):
    model = Transformer(small_config(pos_encoding=name)).eval()
    src, tgt = torch.randint(1, 23, (2, 7)), torch.randint(1, 19, (2, 6))
    padded_src = torch.cat([src, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(src, tgt), model(padded_src, tgt), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sinusoidal", "learned", "rope", "alibi"])
def test_incremental_decoding_with_cache_equals_full_prefix(name):
    model = Transformer(small_config(pos_encoding=name)).eval()
    src, tgt = torch.randint(1, 23, (2, 7)), torch.randint(1, 19, (2, 6))
    memory = model.encode(src)
    full = model.decode(tgt, memory, model.source_mask(src))
    cache = model.new_cache()
    steps = [model.decode(tgt[:, i : i + 1], memory, model.source_mask(src), cache=cache) for i in range(6)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_decoder_only_lm_cache_matches_full_and_is_causal():
    lm = DecoderOnlyLM(small_config(pos_encoding="rope", tie_embeddings=True)).eval()
    tokens = torch.randint(1, 19, (2, 9))
    full = lm(tokens)
    cache = lm.new_cache()
    steps = torch.cat([lm(tokens[:, i : i + 1], cache=cache) for i in range(9)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    assert lm.head.weight is lm.embed.embedding.weight


def test_number_of_encoder_and_decoder_blocks_is_independent():
    model = Transformer(small_config(num_encoder_layers=5, num_decoder_layers=1))
    assert len(model.encoder.layers) == 5 and len(model.decoder.layers) == 1
    fewer = Transformer(small_config(num_encoder_layers=1, num_decoder_layers=1))
    assert fewer.num_parameters() < model.num_parameters()


def test_embeddings_are_scaled_by_sqrt_d_model():
    model = Transformer(small_config())
    tokens = torch.tensor([[3]])
    torch.testing.assert_close(model.src_embed(tokens)[0, 0], model.src_embed.weight[3] * 32**0.5)


def test_tied_embeddings_share_one_matrix():
    model = Transformer(small_config(tie_embeddings=True))
    assert model.generator.weight is model.tgt_embed.weight


def test_config_round_trips_through_json_and_rejects_unknown_keys():
    config = small_config(pos_encoding="alibi", norm_first=True)
    assert TransformerConfig.from_json(config.to_json()) == config
    data = json.loads(config.to_json())
    data["n_layers"] = 3
    with pytest.raises(ValueError, match="unknown model config keys \\['n_layers'\\]"):
        TransformerConfig.from_dict(data)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(d_model=30), "d_model \\(30\\) must be divisible by num_heads \\(4\\)"),
        (dict(pos_encoding="fourier"), "unknown pos_encoding 'fourier'; allowed"),
        (dict(activation="tanh"), "unknown activation 'tanh'"),
        (dict(dropout=1.5), "dropout"),
        (dict(num_encoder_layers=-1), "num_encoder_layers"),
    ],
)
def test_bad_configs_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        small_config(**overrides)


def test_learned_encoding_too_long_input_names_max_len():
    model = Transformer(small_config(pos_encoding="learned", max_len=8)).eval()
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.randint(1, 23, (1, 9)), torch.randint(1, 19, (1, 3)))


def test_out_of_range_token_ids_are_rejected():
    model = Transformer(small_config())
    with pytest.raises(ValueError, match="token ids must lie in \\[0, 23\\)"):
        model(torch.tensor([[1, 99]]), torch.tensor([[1]]))


def test_dropout_makes_training_stochastic_and_eval_deterministic():
    model = Transformer(small_config(dropout=0.3))
    src, tgt = torch.randint(1, 23, (2, 7)), torch.randint(1, 19, (2, 6))
    assert not torch.equal(model(src, tgt), model(src, tgt))
    model.eval()
    assert torch.equal(model(src, tgt), model(src, tgt))
