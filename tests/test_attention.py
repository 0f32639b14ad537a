"""Claims about attention.py: the formula, the mask convention, and equality with torch."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab import AdditiveAttention, MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention
from attnlab.core.attention import AttentionCache
from attnlab.inspection.interop import load_multihead_attention, to_torch_key_padding_mask
from contract import randomized


def test_scaled_dot_product_attention_equals_the_formula():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    out, weights = scaled_dot_product_attention(q, k, v)
    expected_weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected_weights @ v)


@pytest.mark.parametrize("masked", [False, True])
def test_scaled_dot_product_attention_equals_torch_sdpa(masked):
    q, k, v = torch.randn(2, 4, 6, 16), torch.randn(2, 4, 9, 16), torch.randn(2, 4, 9, 16)
    mask = torch.rand(2, 1, 6, 9) > 0.3 if masked else None
    if mask is not None:
        mask[..., 0] = True  # every row keeps a key, so torch's result is defined
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 6))
    if mask is not None:
        assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()


def test_bias_is_added_to_scores():
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    bias = torch.randn(2, 3, 5)
    _, weights = scaled_dot_product_attention(q, k, v, bias=bias)
    torch.testing.assert_close(weights, torch.softmax(q @ k.transpose(-1, -2) / 2 + bias, -1))


def test_fully_masked_rows_give_zeros_and_finite_gradients():
    q = torch.randn(1, 2, 3, 4, requires_grad=True)
    k = torch.randn(1, 2, 5, 4, requires_grad=True)
    v = torch.randn(1, 2, 5, 4, requires_grad=True)
    mask = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    mask[..., 1, :] = False  # query 1 may see nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert (out[..., 1, :] == 0).all() and (weights[..., 1, :] == 0).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    # the fused path of MultiHeadAttention obeys the same rule
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 4, 8, requires_grad=True)
    key_mask = torch.zeros(2, 1, 1, 4, dtype=torch.bool)
    key_mask[0] = True  # batch row 1 has no visible key at all
    fused = mha(x, x, x, key_mask)
    explicit, _ = mha(x, x, x, key_mask, need_weights=True)
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    fused.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_masks_follow_true_means_may_attend():
    mask = padding_mask(torch.tensor([[4, 5, 0, 0]]), pad_id=0)
    assert mask.shape == (1, 1, 1, 4) and mask.flatten().tolist() == [True, True, False, False]
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(1, 4, offset=3).tolist() == [[True, True, True, True]]
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(torch.randn(1, 2, 4), torch.randn(1, 2, 4), torch.randn(1, 2, 4),
                                     torch.ones(1, 2, 2))


def _copied_pair(d_model=32, num_heads=4, bias=True):
    """torch's module with every parameter drawn at random, loaded into an attnlab module drawn differently."""
    theirs = randomized(nn.MultiheadAttention(d_model, num_heads, batch_first=True, bias=bias))
    ours = load_multihead_attention(randomized(MultiHeadAttention(d_model, num_heads, bias=bias)), theirs)
    return ours.eval(), theirs.eval()


def _as_torch_state(ours: MultiHeadAttention, value=lambda parameter: parameter) -> dict:
    """``value`` of attnlab's q/k/v/out parameters (themselves, or their .grad), packed under torch's names.

    The packing is written here, independently of interop: nn.MultiheadAttention stacks the q, k
    and v projections in one (3·d, d) ``in_proj_weight`` and one (3·d,) ``in_proj_bias``.
    """
    projections = (ours.q_proj, ours.k_proj, ours.v_proj)
    state = {"in_proj_weight": torch.cat([value(p.weight) for p in projections]),  # (3·d, d): q rows, k, v
             "out_proj.weight": value(ours.out_proj.weight)}
    if ours.q_proj.bias is not None:
        state["in_proj_bias"] = torch.cat([value(p.bias) for p in projections])  # (3·d,)
        state["out_proj.bias"] = value(ours.out_proj.bias)
    return state


@pytest.mark.parametrize("bias", [False, True])
def test_loaded_weights_are_torchs_and_pack_back_into_an_equal_torch_module(bias):
    ours, theirs = _copied_pair(bias=bias)
    expected = theirs.state_dict()
    packed = _as_torch_state(ours)
    assert packed.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(packed[name], tensor), name
    # the other direction: attnlab's weights, packed by hand into a fresh torch module, compute what ours does
    rebuilt = randomized(nn.MultiheadAttention(32, 4, batch_first=True, bias=bias))
    rebuilt.load_state_dict({name: tensor.detach().clone() for name, tensor in packed.items()})
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(ours(x, x, x), rebuilt.eval()(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["self", "cross"])
def test_multihead_attention_equals_torch_with_padding(kind):
    ours, theirs = _copied_pair()
    query = torch.randn(3, 6, 32)
    memory = query if kind == "self" else torch.randn(3, 9, 32)
    tokens = torch.ones(3, memory.shape[1], dtype=torch.long)
    tokens[1, -2:] = 0
    tokens[2, -4:] = 0
    mask = padding_mask(tokens, pad_id=0)
    expected, expected_weights = theirs(query, memory, memory, key_padding_mask=to_torch_key_padding_mask(mask),
                                        average_attn_weights=False)
    fused = ours(query, memory, memory, mask)
    explicit, weights = ours(query, memory, memory, mask, need_weights=True)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-5)
    assert weights.shape == (3, 4, 6, memory.shape[1])


@pytest.mark.parametrize("bias", [False, True])
def test_multihead_attention_causal_equals_torch_and_gradients_agree(bias):
    ours, theirs = _copied_pair(bias=bias)
    x = torch.randn(2, 7, 32)
    expected, _ = theirs(x, x, x, attn_mask=~causal_mask(7), need_weights=False)
    torch.testing.assert_close(ours(x, x, x, is_causal=True), expected, atol=1e-5, rtol=1e-5)
    ours.train(), theirs.train()
    ours(x, x, x, is_causal=True).square().sum().backward()
    theirs(x, x, x, attn_mask=~causal_mask(7), need_weights=False)[0].square().sum().backward()
    # every gradient, packed as torch keeps them: q/k/v rows of in_proj, then out_proj
    ours_grads = _as_torch_state(ours, value=lambda parameter: parameter.grad)
    assert ours_grads.keys() == dict(theirs.named_parameters()).keys()
    for name, parameter in theirs.named_parameters():
        torch.testing.assert_close(ours_grads[name], parameter.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_self_attention_cache_matches_full_computation():
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    full = mha(x, x, x, is_causal=True)
    cache = AttentionCache()
    steps = [mha(x[:, i : i + 1], x[:, i : i + 1], x[:, i : i + 1], cache=cache) for i in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 6


def test_cross_attention_cache_projects_memory_once():
    mha = MultiHeadAttention(16, 4).eval()
    memory, y = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    cache = AttentionCache(static=True)
    first = mha(y, memory, memory, cache=cache)
    key_before = cache.key
    second = mha(y, torch.zeros_like(memory), torch.zeros_like(memory), cache=cache)  # memory ignored now
    assert cache.key is key_before
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize(
    "args, match",
    [
        (dict(d_model=30, num_heads=4), "divisible"),
        (dict(d_model=32, num_heads=0), "divisible"),
    ],
)
def test_bad_head_count_names_the_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**args)


def test_mismatched_shapes_are_rejected_clearly():
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match="d_model=16"):
        mha(torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="batch and length"):
        mha(torch.randn(2, 3, 16), torch.randn(2, 4, 16), torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match=r"\(batch, length, d_model\)"):
        mha(torch.randn(3, 16), torch.randn(3, 16), torch.randn(3, 16))


def test_additive_attention_weights_are_a_distribution_over_unmasked_keys():
    attn = AdditiveAttention(query_dim=6, key_dim=8, hidden_dim=10)
    query, keys, values = torch.randn(2, 1, 6), torch.randn(2, 5, 8), torch.randn(2, 5, 3)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, :]
    context, weights = attn(query, keys, values, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1))
    assert (weights[1, 0, 3:] == 0).all()
    torch.testing.assert_close(context, weights @ values)
    # the score is w·tanh(Wq q + Wk k), computed here independently
    manual = attn.score(torch.tanh(attn.q_proj(query[0, 0]) + attn.k_proj(keys[0]))).squeeze(-1)
    torch.testing.assert_close(weights[0, 0], torch.softmax(manual, -1))
