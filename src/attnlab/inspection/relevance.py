"""The arithmetic of attention-based explanations: rollout, attention flow, value norms.

Plain functions of attention matrices (and value vectors), so each can be checked by hand;
:mod:`attnlab.inspection.explain` records a model and calls them.

Residual-augmented attention (Abnar & Zuidema, 2020). A block adds its attention output to a
residual stream, so token i after the block is half "itself" and half what it attended to::

    Â = normalise_rows(½ A + ½ I)         A: (L, L) head-mean attention of one layer

*Rollout* multiplies these through the layers; *flow* treats them as capacities of a layered
graph and asks how much can flow from an input token to an output position (max-flow, solved by
networkx). *Value norms* (Kobayashi et al., 2020) weigh each attention weight by the size of the
vector it actually moves, ‖α_ij f(x_j)‖ with f(x) = (x W_V + b_V) W_O.

    >>> rollout([torch.eye(3), torch.full((3, 3), 1 / 3)])[-1].sum(-1)     # rows sum to 1
    tensor([1., 1., 1.])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["with_residual", "rollout", "encoder_decoder_rollout", "attention_flow",
           "encoder_decoder_flow", "value_norms"]


def with_residual(attention: Tensor) -> Tensor:
    """Â = normalise_rows(½ A + ½ I) for one layer's head-mean attention A (..., L, L).

    A row of A that is all zero (a query that saw no key) becomes the identity row.

    >>> with_residual(torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
    tensor([[0.5000, 0.5000],
            [0.2500, 0.7500]])
    """
    if attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"residual attention needs square (query = key) matrices, got {tuple(attention.shape)}")
    identity = torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
    mixed = 0.5 * attention + 0.5 * identity  # (..., L, L)
    return mixed / mixed.sum(-1, keepdim=True)


def rollout(attentions: Sequence[Tensor]) -> Tensor:
    """Attention rollout through a stack of self-attention layers (Abnar & Zuidema, 2020).

        R_1 = Â_1,   R_l = Â_l R_{l-1}     (Â_l: layer l's head-mean attention plus identity, renormalised)

    ``attentions`` holds each layer's head-mean attention (L, L), first layer first. Returns
    (layers, L, L): R_l[i, j] is how much input token j contributes to position i after layer l.
    Every row sums to 1.

    >>> rollout([torch.eye(2), torch.tensor([[0.0, 1.0], [0.0, 1.0]])])[-1]
    tensor([[0.5000, 0.5000],
            [0.0000, 1.0000]])
    """
    if not attentions:
        raise ValueError("rollout needs at least one attention layer")
    products, current = [], None
    for attention in attentions:
        step = with_residual(attention.double())  # (L, L)
        current = step if current is None else step @ current  # (L, L)
        products.append(current)
    return torch.stack(products).to(attentions[0].dtype)  # (layers, L, L)


def encoder_decoder_rollout(encoder_self: Sequence[Tensor], decoder_self: Sequence[Tensor],
                            cross: Sequence[Tensor]) -> dict[str, Tensor]:
    """Rollout for an encoder–decoder: how much each source token reaches each target position.

    The encoder's rollout gives R_enc = R^enc_N (Ls × Ls): memory position m in terms of source
    tokens. In the decoder we track two matrices whose rows, side by side, always sum to 1:
    T (Lt × Lt), the share of each decoder input token, and X (Lt × Ls), the share of each source
    token. Start with T_0 = I, X_0 = 0; then for each decoder layer l, with S_l its head-mean
    masked self-attention and C_l its head-mean cross-attention (Lt × Ls)::

        Ŝ_l = normalise_rows(½ S_l + ½ I)
        T, X = Ŝ_l T,  Ŝ_l X                    # self-attention mixes target positions (and residual)
        T, X = ½ T,    ½ X + ½ C_l R_enc        # cross-attention: half residual, half memory

    The *source attribution* after layer l is X_l with its rows renormalised to 1; the share of
    the source, X_l's row sum, is returned beside it (the rest of each row lies on the target prefix).

    Returns ``{"source": (Ld, Lt, Ls) per decoder layer, rows sum to 1; "target_prefix": (Ld, Lt, Lt)
    T_l; "source_share": (Ld, Lt); "encoder": (Le, Ls, Ls) the encoder's own rollout}``.
    """
    if len(decoder_self) != len(cross) or not cross:
        raise ValueError(f"need one self- and one cross-attention per decoder layer, got {len(decoder_self)} "
                         f"and {len(cross)}")
    num_tgt, num_src = cross[0].shape
    encoder = rollout(encoder_self).double() if encoder_self else torch.eye(num_src, dtype=torch.float64)[None]
    memory = encoder[-1]  # (Ls, Ls)
    prefix = torch.eye(num_tgt, dtype=torch.float64)  # T_0 (Lt, Lt)
    source = torch.zeros(num_tgt, num_src, dtype=torch.float64)  # X_0 (Lt, Ls)
    sources, prefixes, shares = [], [], []
    for self_attention, cross_attention in zip(decoder_self, cross):
        mixing = with_residual(self_attention.double())  # Ŝ_l (Lt, Lt)
        prefix, source = mixing @ prefix, mixing @ source
        prefix, source = 0.5 * prefix, 0.5 * source + 0.5 * cross_attention.double() @ memory
        share = source.sum(-1)  # (Lt,)
        sources.append(source / share.clamp(min=1e-12)[:, None])
        prefixes.append(prefix)
        shares.append(share)
    dtype = cross[0].dtype
    return {"source": torch.stack(sources).to(dtype), "target_prefix": torch.stack(prefixes).to(dtype),
            "source_share": torch.stack(shares).to(dtype), "encoder": encoder.to(dtype)}


# --------------------------------------------------------------------------- attention flow


def _max_flows(graph, sources: list, sinks: list) -> Tensor:
    """(len(sinks), len(sources)) max-flow values between every source and sink node."""
    from networkx.algorithms.flow import boykov_kolmogorov, build_residual_network

    # One residual network serves every pair (the solver resets its flows); Boykov–Kolmogorov was
    # the fastest of networkx's solvers on these layered graphs (2.6x edmonds_karp at 11 tokens).
    residual = build_residual_network(graph, "capacity")
    values = torch.zeros(len(sinks), len(sources), dtype=torch.float64)
    for i, sink in enumerate(sinks):
        for j, source in enumerate(sources):
            solved = boykov_kolmogorov(graph, source, sink, capacity="capacity", residual=residual, value_only=True)
            values[i, j] = solved.graph["flow_value"]
    return values


def _add_layer(graph, below: list, above: list, capacities: Tensor) -> None:
    """Edges below[j] → above[i] with capacity capacities[i, j] (zero capacities are left out)."""
    for i, upper in enumerate(above):
        for j, lower in enumerate(below):
            capacity = float(capacities[i, j])
            if capacity > 0.0:
                graph.add_edge(lower, upper, capacity=capacity)


def attention_flow(attentions: Sequence[Tensor]) -> Tensor:
    """Attention flow (Abnar & Zuidema, 2020) through a stack of self-attention layers.

    The graph has a node (l, i) for token i after layer l (l = 0: the input embeddings) and an
    edge (l−1, j) → (l, i) of capacity Â_l[i, j] (residual-augmented head-mean attention, see
    :func:`with_residual`). flow[i, j] = the maximum flow from input node (0, j) to output node
    (L, i), solved by networkx. Each value lies in [0, 1]; rows do not sum to 1.

    >>> attention_flow([torch.tensor([[1.0, 0.0], [0.5, 0.5]])])     # one layer: flow = Â
    tensor([[1.0000, 0.0000],
            [0.2500, 0.7500]])
    """
    import networkx as nx

    if not attentions:
        raise ValueError("attention flow needs at least one attention layer")
    length = attentions[0].shape[-1]
    graph = nx.DiGraph()
    layers = [[(0, i) for i in range(length)]]
    graph.add_nodes_from(layers[0])
    for index, attention in enumerate(attentions, start=1):
        layers.append([(index, i) for i in range(length)])
        graph.add_nodes_from(layers[-1])
        _add_layer(graph, layers[-2], layers[-1], with_residual(attention.double()))
    return _max_flows(graph, layers[0], layers[-1]).to(attentions[0].dtype)  # (L, L)


def encoder_decoder_flow(encoder_self: Sequence[Tensor], decoder_self: Sequence[Tensor],
                         cross: Sequence[Tensor]) -> Tensor:
    """Attention flow from each source token to each target position of an encoder–decoder.

    Nodes: ("enc", l, j) for source token j after encoder layer l (l = 0..Le) and ("dec", s, i)
    for target position i after decoder stage s (s = 0..2·Ld; each decoder layer l has a
    self-attention stage 2l−1 and a cross-attention stage 2l). Edges, capacities as in
    :func:`encoder_decoder_rollout`::

        ("enc", l−1, j) → ("enc", l, i)        Â^enc_l[i, j]
        ("dec", 2l−2, k) → ("dec", 2l−1, i)    Ŝ_l[i, k]
        ("dec", 2l−1, i) → ("dec", 2l, i)      ½          (the residual around cross-attention)
        ("enc", Le, j)  → ("dec", 2l, i)       ½ C_l[i, j]

    Returns (Lt, Ls): the max-flow from ("enc", 0, j) to ("dec", 2·Ld, i).
    """
    import networkx as nx

    num_tgt, num_src = cross[0].shape
    graph = nx.DiGraph()
    encoder = [[("enc", 0, j) for j in range(num_src)]]
    graph.add_nodes_from(encoder[0])
    for layer, attention in enumerate(encoder_self, start=1):
        encoder.append([("enc", layer, i) for i in range(num_src)])
        _add_layer(graph, encoder[-2], encoder[-1], with_residual(attention.double()))
    stage = [("dec", 0, i) for i in range(num_tgt)]
    graph.add_nodes_from(stage)
    for layer, (self_attention, cross_attention) in enumerate(zip(decoder_self, cross), start=1):
        after_self = [("dec", 2 * layer - 1, i) for i in range(num_tgt)]
        _add_layer(graph, stage, after_self, with_residual(self_attention.double()))
        after_cross = [("dec", 2 * layer, i) for i in range(num_tgt)]
        _add_layer(graph, after_self, after_cross, 0.5 * torch.eye(num_tgt, dtype=torch.float64))
        _add_layer(graph, encoder[-1], after_cross, 0.5 * cross_attention.double())
        stage = after_cross
    graph.add_nodes_from(stage)
    return _max_flows(graph, encoder[0], stage).to(cross[0].dtype)  # (Lt, Ls)


# --------------------------------------------------------------------------- value norms


def value_norms(weights: Tensor, values_in: Tensor, v_weight: Tensor, v_bias: Tensor | None,
                out_weight: Tensor) -> tuple[Tensor, Tensor]:
    """Norm-based attention (Kobayashi et al., 2020) of one layer.

    Head h moves f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h from key j to query i with weight α^h_ij::

        per head:   ‖α^h_ij f_h(x_j)‖ = α^h_ij ‖f_h(x_j)‖
        the layer:  ‖Σ_h α^h_ij f_h(x_j)‖

    weights (H, Lq, Lk); values_in (Lk, D): the vectors the layer reads its values from;
    v_weight (D, D), v_bias (D,) or None, out_weight (D, D) as stored by ``nn.Linear``
    (the output bias b_O is shared by all keys and left out). Returns ``(per_head (H, Lq, Lk),
    layer (Lq, Lk))``.
    """
    heads, _, num_keys = weights.shape
    d_model = values_in.shape[-1]
    head_dim = d_model // heads
    values = values_in @ v_weight.T + (v_bias if v_bias is not None else 0.0)  # (Lk, D)
    values = values.view(num_keys, heads, head_dim).transpose(0, 1)  # (H, Lk, d_head)
    out_slices = out_weight.view(d_model, heads, head_dim).permute(1, 2, 0)  # (H, d_head, D): W_O^h
    moved = values @ out_slices  # (H, Lk, D): f_h(x_j)
    per_head = weights * moved.norm(dim=-1)[:, None, :]  # (H, Lq, Lk)
    layer = torch.einsum("hqk,hkd->qkd", weights, moved).norm(dim=-1)  # (Lq, Lk)
    return per_head, layer
