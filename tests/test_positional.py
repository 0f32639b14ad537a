"""Claims about positional.py: the paper's formula, relative-position properties, bad names."""

import math

import pytest
import torch

from attnlab import positional_encoding
from attnlab.core.positional import alibi_slopes, sinusoidal_table


def test_sinusoidal_matches_the_paper_formula():
    table = sinusoidal_table(50, 16)
    for pos in (0, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_shift_is_a_fixed_linear_map():
    """PE(pos + k) = M_k · PE(pos) for one matrix M_k, whatever pos is."""
    table = sinusoidal_table(64, 16, dtype=torch.float64)
    k = 5
    # gelsd (SVD-based) is the deterministic, well-conditioned least-squares driver
    solution = torch.linalg.lstsq(table[:40].clone(), table[k : 40 + k].clone(), driver="gelsd").solution  # (16, 16)
    predicted = table[40:59] @ solution  # positions never used to fit M_k
    torch.testing.assert_close(predicted, table[45:64], atol=1e-8, rtol=1e-8)
    # and M_k is the block-diagonal rotation the formula predicts
    rotation = torch.zeros(16, 16, dtype=torch.float64)
    for i in range(8):
        angle = k / 10000 ** (2 * i / 16)
        c, s = math.cos(angle), math.sin(angle)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    torch.testing.assert_close(table[:59] @ rotation, table[k : 59 + k], atol=1e-10, rtol=1e-10)


def test_sinusoidal_works_past_max_len():
    pe = positional_encoding("sinusoidal", 8, max_len=4)
    out = pe.add_to_embeddings(torch.zeros(1, 10, 8))
    torch.testing.assert_close(out[0], sinusoidal_table(10, 8))


def test_learned_encoding_refuses_positions_beyond_max_len():
    pe = positional_encoding("learned", 8, max_len=6)
    assert pe.add_to_embeddings(torch.zeros(2, 6, 8)).shape == (2, 6, 8)
    with pytest.raises(ValueError, match="max_len=6"):
        pe.add_to_embeddings(torch.zeros(2, 7, 8))


def test_rope_scores_depend_only_on_relative_offset():
    rope = positional_encoding("rope", 32, num_heads=2)  # head dim 16
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(query_pos, key_pos):
        rq, _ = rope.rotate_qk(q, q, query_offset=query_pos)
        keys = k.expand(1, 1, key_pos + 1, 16)  # key at position key_pos is the last one
        _, rk = rope.rotate_qk(q, keys)
        return (rq[0, 0, 0] @ rk[0, 0, -1]).item()

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(0, 0) == pytest.approx(score(20, 20), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    # rotation preserves norms
    rq, _ = rope.rotate_qk(q, q, query_offset=7)
    assert rq.norm().item() == pytest.approx(q.norm().item(), rel=1e-5)


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -(i + 1) for i in range(8)])
    assert alibi_slopes(4).tolist() == pytest.approx([2 ** (-2 * (i + 1)) for i in range(4)])
    six = alibi_slopes(6).tolist()  # 4 from the power of two below, then every other of 8
    assert six == pytest.approx([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])


def test_alibi_bias_is_minus_slope_times_distance():
    alibi = positional_encoding("alibi", 16, num_heads=4)
    bias = alibi.score_bias(3, 5, query_offset=2)
    slopes = alibi_slopes(4)
    assert bias.shape == (4, 3, 5)
    assert bias[1, 0, 4].item() == pytest.approx(-slopes[1].item() * 2)
    assert bias[2, 2, 4].item() == 0


@pytest.mark.parametrize("name", ["sinusoidal", "learned", "none", "rope", "alibi"])
def test_each_kind_declares_where_it_acts(name):
    pe = positional_encoding(name, 16, num_heads=4)
    assert pe.acts_on in ("embeddings", "qk", "scores", "nothing")
    x = torch.randn(1, 3, 16)
    changed_embeddings = not torch.equal(pe.add_to_embeddings(x), x)
    assert changed_embeddings == (pe.acts_on == "embeddings")
    assert (pe.score_bias(3, 3) is not None) == (pe.acts_on == "scores")


def test_unknown_encoding_lists_the_allowed_names():
    with pytest.raises(ValueError, match="unknown pos_encoding 'wavelet'; allowed: sinusoidal, learned, none, rope, alibi"):
        positional_encoding("wavelet", 16)
