"""Claims about head interventions (attnlab.inspection.interventions)."""

import re

import pytest
import torch
from torch import nn

from attnlab import Transformer
from attnlab.data import BOS_ID, EOS_ID, source_ids
from attnlab.inspection.interventions import (ablate_heads, all_heads, head_contributions, intervention_effect,
                                              patch_heads, reference_log_probability)
from attnlab.inspection.record import _attention_layers, record_attention
from explain_support import small_config, trained_toy_run

SRC_A = torch.tensor([[5, 6, 7, 8, EOS_ID], [9, 10, 11, EOS_ID, 0]])
TGT_A = torch.tensor([[BOS_ID, 12, 13, 14], [BOS_ID, 15, 16, 0]])
SRC_B = torch.tensor([[20, 21, 22, 23, EOS_ID], [24, 25, 26, 27, EOS_ID]])
TGT_B = torch.tensor([[BOS_ID, 17, 18, 19], [BOS_ID, 28, 29, 12]])


@pytest.fixture
def model() -> Transformer:
    model = Transformer(small_config(num_heads=4))
    with torch.no_grad():  # non-zero biases, so that a forgotten bias share cannot hide
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.normal_(0.0, 0.5)
    return model.eval()


def attention_modules(model):
    return {(kind, layer): module for module, kind, layer in _attention_layers(model)}


def attention_outputs(model, src, tgt) -> dict:
    """Every attention layer's output (B, Lq, D) for one forward pass."""
    outputs, handles = {}, []
    for key, module in attention_modules(model).items():
        handles.append(module.register_forward_hook(lambda m, a, o, key=key: outputs.__setitem__(key, o.detach())))
    try:
        with torch.no_grad():
            model(src, tgt)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def test_head_contributions_add_up_to_the_output_projection(model):
    linear = model.decoder.layers[0].cross_attn.out_proj
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(head_contributions(x, linear, 4).sum(2), linear(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("key", [("encoder_self", 1), ("decoder_self", 0), ("cross", 1)])
def test_ablating_every_head_of_a_layer_equals_zeroing_that_sublayers_attention_output(model, key):
    module = attention_modules(model)[key]
    handle = module.register_forward_hook(lambda m, a, o: torch.zeros_like(o))
    try:
        with torch.no_grad():
            expected = model(SRC_A, TGT_A)
    finally:
        handle.remove()
    with ablate_heads(model, {key: "all"}), torch.no_grad():
        ablated = model(SRC_A, TGT_A)
    assert torch.equal(ablated, expected)
    with torch.no_grad():
        assert not torch.allclose(model(SRC_A, TGT_A), expected)  # the ablation did something


def test_ablating_one_head_removes_exactly_its_slice_and_bias_share(model):
    module = model.decoder.layers[1].cross_attn
    head = 2

    def by_hand(linear, args):  # zero head 2's 4 columns of the concatenated heads, drop its bias share
        x = args[0].clone()
        x[..., head * 4:(head + 1) * 4] = 0
        return (x,)

    handles = [module.out_proj.register_forward_pre_hook(by_hand),
               module.out_proj.register_forward_hook(lambda m, a, o: o - m.bias / 4)]
    try:
        with torch.no_grad():
            expected = model(SRC_A, TGT_A)
    finally:
        for handle in handles:
            handle.remove()
    with ablate_heads(model, {("cross", 1): [head]}), torch.no_grad():
        torch.testing.assert_close(model(SRC_A, TGT_A), expected, atol=1e-5, rtol=1e-5)


def test_outputs_after_the_block_equal_those_before_bit_for_bit_even_when_it_raises(model):
    with torch.no_grad():
        before = model(SRC_A, TGT_A)
    with ablate_heads(model, all_heads(model)), torch.no_grad():
        assert not torch.equal(model(SRC_A, TGT_A), before)
    with pytest.raises(RuntimeError, match="inside the block"):
        with patch_heads(model, source_run=(SRC_B, TGT_B)):
            raise RuntimeError("inside the block")
    with pytest.raises(KeyError):
        with ablate_heads(model, {("cross", 0): [1]}, mode="mean", reference=(SRC_B, TGT_B)):
            raise KeyError("boom")
    with torch.no_grad():
        assert torch.equal(model(SRC_A, TGT_A), before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_patching_every_head_of_every_layer_from_b_reproduces_bs_attention_outputs(model):
    wanted = attention_outputs(model, SRC_B, TGT_B)
    with patch_heads(model, source_run=(SRC_B, TGT_B)):
        got = attention_outputs(model, SRC_A, TGT_A)
    assert set(got) == set(wanted) and len(got) == 6
    for key in wanted:
        torch.testing.assert_close(got[key], wanted[key], atol=1e-5, rtol=1e-5)
    plain = attention_outputs(model, SRC_A, TGT_A)
    assert not torch.allclose(plain[("cross", 1)], wanted[("cross", 1)])


def test_mean_ablation_puts_the_heads_mean_over_real_reference_tokens(model):
    module = attention_modules(model)[("encoder_self", 0)]
    captured = {}
    handle = module.out_proj.register_forward_hook(lambda m, a, o: captured.__setitem__("x", a[0].detach()))
    with torch.no_grad():
        model(SRC_B[:1, :3], TGT_B[:1])  # a reference without padding: 3 tokens
    handle.remove()
    mean = head_contributions(captured["x"], module.out_proj, 4)[0, :, 1].mean(0)  # head 1 over the 3 tokens
    got = {}
    with ablate_heads(model, {("encoder_self", 0): [1]}, mode="mean", reference=(SRC_B[:1, :3], TGT_B[:1])):
        # registered after the ablation's hook, so it sees the ablated output
        handle = module.out_proj.register_forward_hook(lambda m, a, o: got.update(x=a[0].detach(), out=o.detach()))
        with torch.no_grad():
            model(SRC_A, TGT_A)
        handle.remove()
    parts = head_contributions(got["x"], module.out_proj, 4)
    expected = parts[:, :, [0, 2, 3]].sum(2) + mean
    torch.testing.assert_close(got["out"], expected, atol=1e-5, rtol=1e-5)


def test_interventions_work_inside_a_recording(model):
    with ablate_heads(model, {("cross", 0): "all"}), record_attention(model) as recording, torch.no_grad():
        model(SRC_A, TGT_A)
    assert len(recording.by_kind("cross")) == 2


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("heads, message", [
    ({("cross", 2): [0]}, "cross layer 2 out of range: this model has cross layers 0..1"),
    ({("cross", 1): [4]}, "head 4 out of range: cross layer 1 has heads 0..3"),
    ({("encoder", 0): [0]}, "unknown attention kind 'encoder'; this model has: encoder_self, decoder_self, cross"),
    ({("cross", 0): []}, "cross layer 0: no heads listed"),
    ({}, "name the heads as"),
])
def test_bad_head_names_are_refused_with_the_allowed_range(model, heads, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        with ablate_heads(model, heads):
            pass


def test_a_bad_mode_a_mean_without_reference_and_torch_modules_are_refused(model):
    with pytest.raises(ValueError, match="unknown ablation mode 'median'; allowed: zero, mean"):
        with ablate_heads(model, {("cross", 0): [0]}, mode="median"):
            pass
    with pytest.raises(ValueError, match="mode='mean' needs reference="):
        with ablate_heads(model, {("cross", 0): [0]}, mode="mean"):
            pass
    with pytest.raises(ValueError, match="torch.nn.MultiheadAttention applies its own inside a fused call"):
        with ablate_heads(nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1),
                          {("cross", 0): [0]}):
            pass


def test_patching_refuses_the_kv_cache_and_inputs_of_another_shape(model):
    from attnlab.core.decoding import greedy_decode

    with patch_heads(model, {("cross", 0): [0]}, source_run=(SRC_B, TGT_B)):
        with pytest.raises(ValueError, match="decode with use_cache=False"):
            greedy_decode(model, SRC_A)
        with pytest.raises(ValueError, match="patching needs inputs of the same shape"), torch.no_grad():
            model(SRC_A[:1], TGT_A[:1])


# --------------------------------------------------------------------------- effect on the output


def test_the_effect_reports_the_new_translation_and_the_log_probability_change(tmp_path_factory):
    from attnlab.inspection.inference import Translator

    translator = Translator.load(trained_toy_run(tmp_path_factory))
    model = translator.model
    src = source_ids(translator.encode("the small cat does not like the red car ."))
    reference = translator.target.encode("le petit chat n' aime pas la voiture rouge .")
    effect = intervention_effect(model, src, reference, lambda: ablate_heads(model, all_heads(model)))
    assert effect.baseline_translation == translator.translate_ids(["the small cat does not like the red car ."])[0]
    assert effect.translation_changed and effect.log_probability_change < -1.0
    # the baseline log-probability is the teacher-forced sum, computed here by hand
    decoder_input = torch.tensor([[BOS_ID] + reference])
    labels = torch.tensor(reference + [EOS_ID])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([src]), decoder_input), -1)[0]
    assert effect.baseline_log_probability == pytest.approx(float(log_probs[range(len(labels)), labels].sum()), abs=1e-4)
    padded = reference_log_probability(model, torch.tensor([src, src]),
                                       torch.tensor([reference, reference[:3] + [0] * (len(reference) - 3)]))
    assert padded[0] == pytest.approx(effect.baseline_log_probability, abs=1e-4)
    patched = intervention_effect(model, src, reference, lambda: patch_heads(
        model, source_run=(torch.tensor([src]), decoder_input)))
    assert patched.log_probability_change == pytest.approx(0.0, abs=1e-3)  # patched from itself: nothing changes
    # decoding under the patch reads the source run's positions, so it stops at its length
    assert len(patched.translation) <= decoder_input.shape[1]
