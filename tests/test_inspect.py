"""Claims about recording attention (attnlab.inspection.record)."""

import numpy as np
import pytest
import torch
from torch import nn

from attnlab import (DecoderBlock, DecoderOnlyLM, EncoderBlock, EncoderOnlyModel, MultiHeadAttention, Transformer,
                     TransformerConfig)
from attnlab.inspection.record import attention_document, record_attention, translation_attention
from attnlab.document import validate_attention_doc


def small_config(**overrides) -> TransformerConfig:
    settings = dict(src_vocab_size=30, tgt_vocab_size=30, d_model=32, num_heads=4, num_encoder_layers=2,
                    num_decoder_layers=2, d_ff=64, dropout=0.0, max_len=64)
    settings.update(overrides)
    return TransformerConfig(**settings)


@pytest.fixture
def model() -> Transformer:
    return Transformer(small_config()).eval()


@pytest.fixture
def torch_transformer() -> nn.Transformer:
    return nn.Transformer(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                          dropout=0.0, batch_first=True).eval()


def nothing_installed(module: nn.Module) -> bool:
    for sub in module.modules():
        if sub._forward_hooks or sub._forward_pre_hooks:
            return False
        if isinstance(sub, MultiHeadAttention) and sub.record is not None:
            return False
    return True


def test_recorded_weights_equal_what_need_weights_returns(model):
    mha = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 6, 32)
    with record_attention(mha) as recording:
        mha(x, x, x)
    _, expected = mha(x, x, x, need_weights=True)
    assert [(r["kind"], r["layer"]) for r in recording] == [("attention", 0)]
    torch.testing.assert_close(recording[0]["weights"], expected, atol=0, rtol=0)

    src = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 9, 0, 0]])
    with record_attention(model) as recording:
        model(src, torch.tensor([[1, 2, 3], [1, 4, 0]]))
    encoder = model.encoder
    h = encoder.positional.add_to_embeddings(model.src_embed(src))  # (B, Ls, d), input of layer 0
    _, expected = encoder.layers[0].self_attn(h, h, h, model.source_mask(src), positional=encoder.positional,
                                              need_weights=True)
    torch.testing.assert_close(recording.by_kind("encoder_self")[0][1], expected, atol=1e-6, rtol=0)


def test_transformer_layers_are_labelled_by_kind_and_index_in_call_order(model):
    src, tgt = torch.randint(1, 30, (2, 7)), torch.randint(1, 30, (2, 5))
    with record_attention(model) as recording:
        model(src, tgt)
    assert [(r["kind"], r["layer"]) for r in recording] == [
        ("encoder_self", 0), ("encoder_self", 1),
        ("decoder_self", 0), ("cross", 0), ("decoder_self", 1), ("cross", 1)]
    assert recording.kinds == ["encoder_self", "decoder_self", "cross"]
    shapes = {kind: tuple(recording.by_kind(kind)[0][1].shape) for kind in recording.kinds}
    assert shapes == {"encoder_self": (2, 4, 7, 7), "decoder_self": (2, 4, 5, 5), "cross": (2, 4, 5, 7)}
    assert [layer for layer, _ in recording.by_kind("cross")] == [0, 1]


def test_decoder_only_blocks_are_causal_decoder_self_and_encoder_only_blocks_encoder_self():
    lm = DecoderOnlyLM(small_config()).eval()
    with record_attention(lm) as recording:
        lm(torch.randint(1, 30, (1, 6)))
    assert [(r["kind"], r["layer"]) for r in recording] == [("decoder_self", 0), ("decoder_self", 1)]
    weights = recording[0]["weights"][0]  # (H, L, L)
    assert torch.all(weights.triu(diagonal=1) == 0)

    encoder = EncoderOnlyModel(small_config()).eval()
    with record_attention(encoder) as recording:
        encoder(torch.randint(1, 30, (1, 6)))
    assert [(r["kind"], r["layer"]) for r in recording] == [("encoder_self", 0), ("encoder_self", 1)]


def test_outputs_are_the_same_with_and_without_recording(model, torch_transformer):
    src, tgt = torch.tensor([[3, 4, 5, 6, 0]]), torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        plain = model(src, tgt)
        with record_attention(model):
            recorded = model(src, tgt)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=0)  # explicit vs fused path

    x, y = torch.randn(2, 6, 32), torch.randn(2, 4, 32)
    causal = nn.Transformer.generate_square_subsequent_mask(4)
    with torch.no_grad():
        plain = torch_transformer(x, y, tgt_mask=causal)
        with record_attention(torch_transformer) as recording:
            recorded = torch_transformer(x, y, tgt_mask=causal)
    assert len(recording) == 6
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_nn_transformer_weights_equal_multihead_attention_computed_by_hand(torch_transformer):
    encoder, decoder = torch_transformer.encoder, torch_transformer.decoder
    src, tgt = torch.randn(2, 6, 32), torch.randn(2, 4, 32)
    src_padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])  # torch.nn: True = padding
    causal = nn.Transformer.generate_square_subsequent_mask(4)
    with torch.no_grad():  # eval + no_grad is where PyTorch's fused fast path would kick in
        with record_attention(torch_transformer) as recording:
            torch_transformer(src, tgt, src_key_padding_mask=src_padding, tgt_mask=causal,
                              memory_key_padding_mask=src_padding)

        def per_head(attention, query, key, **masks):
            return attention(query, key, key, need_weights=True, average_attn_weights=False, **masks)

        enc0 = encoder.layers[0]
        _, expected_enc0 = per_head(enc0.self_attn, src, src, key_padding_mask=src_padding)
        hidden = enc0(src, src_key_padding_mask=src_padding)
        _, expected_enc1 = per_head(encoder.layers[1].self_attn, hidden, hidden, key_padding_mask=src_padding)
        memory = encoder(src, src_key_padding_mask=src_padding)
        dec0 = decoder.layers[0]
        self_out, expected_dec0 = per_head(dec0.self_attn, tgt, tgt, attn_mask=causal)
        query = dec0.norm1(tgt + self_out)  # post-LN: Add & Norm before cross-attention
        _, expected_cross0 = per_head(dec0.multihead_attn, query, memory, key_padding_mask=src_padding)

    assert expected_enc0.shape == (2, 4, 6, 6)
    got = {(r["kind"], r["layer"]): r["weights"] for r in recording}
    for key, expected in [(("encoder_self", 0), expected_enc0), (("encoder_self", 1), expected_enc1),
                          (("decoder_self", 0), expected_dec0), (("cross", 0), expected_cross0)]:
        torch.testing.assert_close(got[key], expected, atol=1e-5, rtol=0, msg=str(key))


def test_torch_attention_caller_gets_what_it_asked_for():
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 32)
    averaged_before = mha(x, x, x)[1]
    with record_attention(mha) as recording:
        out, averaged = mha(x, x, x)  # default: averaged over heads
        _, none = mha(x, x, x, None, False)  # need_weights=False passed positionally
    torch.testing.assert_close(averaged, averaged_before)
    assert none is None
    assert len(recording) == 2 and recording[0]["weights"].shape == (2, 4, 5, 5)
    torch.testing.assert_close(recording[0]["weights"].mean(dim=1), averaged_before)


def test_nothing_remains_installed_after_exit_even_after_an_exception(model, torch_transformer):
    fastpath = torch.backends.mha.get_fastpath_enabled()
    for module in (model, torch_transformer):
        with record_attention(module):
            assert not nothing_installed(module)
            if module is torch_transformer:
                assert not torch.backends.mha.get_fastpath_enabled()
        assert nothing_installed(module)
        with pytest.raises(RuntimeError, match="boom"):
            with record_attention(module):
                raise RuntimeError("boom")
        assert nothing_installed(module)
    assert torch.backends.mha.get_fastpath_enabled() == fastpath


def test_nested_recordings_both_see_every_call(model):
    src, tgt = torch.randint(1, 30, (1, 5)), torch.randint(1, 30, (1, 3))
    with record_attention(model) as outer:
        with record_attention(model) as inner:
            model(src, tgt)
        model(src, tgt)
    assert len(inner) == 6 and len(outer) == 12
    assert nothing_installed(model)


def test_a_model_without_attention_is_refused():
    with pytest.raises(ValueError, match="no attention layers"):
        with record_attention(nn.Linear(3, 3)):
            pass


def test_translation_document_obeys_the_schema(model):
    src_tokens, tgt_tokens = ["le", "chat", "dort", "</s>"], ["<bos>", "the", "cat", "sleeps"]
    doc = translation_attention(model, [5, 6, 7, 2], [1, 8, 9, 10], src_tokens, tgt_tokens)
    validate_attention_doc(doc)
    assert doc["source_tokens"] == src_tokens and doc["target_tokens"] == tgt_tokens
    assert [(e["kind"], e["layer"]) for e in doc["attention"]] == [
        ("encoder_self", 0), ("encoder_self", 1), ("decoder_self", 0), ("decoder_self", 1), ("cross", 0), ("cross", 1)]
    for entry in doc["attention"]:
        weights = np.array(entry["weights"])  # (H, Lq, Lk)
        queries = src_tokens if entry["kind"] == "encoder_self" else tgt_tokens
        keys = tgt_tokens if entry["kind"] == "decoder_self" else src_tokens
        assert weights.shape == (4, len(queries), len(keys))
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
        if entry["kind"] == "decoder_self":
            assert np.all(np.triu(weights, k=1) == 0)
    assert not model.training


def test_document_of_a_padded_sentence_is_trimmed_to_its_tokens(model):
    src = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    tgt = torch.tensor([[1, 2, 3], [1, 4, 0]])
    with record_attention(model) as recording:
        model(src, tgt)
    doc = attention_document(["c", "d"], ["<bos>", "x"], recording, batch_index=1)
    validate_attention_doc(doc)
    assert np.array(doc["attention"][0]["weights"]).shape == (4, 2, 2)
    with pytest.raises(ValueError, match="not padding"):
        attention_document(["a", "b"], ["<bos>", "x"], recording, batch_index=0)
    with pytest.raises(ValueError, match="batch_index"):
        attention_document(["a"], ["<bos>"], recording, batch_index=2)


def test_translation_attention_needs_one_token_per_id(model):
    with pytest.raises(ValueError, match="one token per id"):
        translation_attention(model, [5, 6], [1, 8], ["le"], ["<bos>", "the"])


def test_each_attention_is_recorded_under_the_kind_its_block_declared():
    blocks = nn.ModuleList([EncoderBlock(32, 4, 64), EncoderBlock(32, 4, 64, causal=True), DecoderBlock(32, 4, 64)])
    assert [block.self_attn.kind for block in blocks] == ["encoder_self", "decoder_self", "decoder_self"]
    assert blocks[2].cross_attn.kind == "cross" and MultiHeadAttention(32, 4).kind == "attention"
    x = torch.randn(1, 5, 32)
    with record_attention(blocks.eval()) as recording:
        blocks[0](x), blocks[1](x), blocks[2](x, x)
    assert [(r["kind"], r["layer"]) for r in recording] == [
        ("encoder_self", 0), ("decoder_self", 0), ("decoder_self", 1), ("cross", 0)]
    assert torch.all(recording[1]["weights"].triu(diagonal=1) == 0)  # causal=True hides later tokens
    assert torch.any(recording[0]["weights"].triu(diagonal=1) > 0)
