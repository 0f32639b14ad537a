"""Gradient attributions on the input embeddings, computed by Captum.

For each explained position t the output is f_t = log p(y_t | inputs), the log-probability the
model gives the token y_t that position t predicts. With e_j the embedding vector of input
token j (after the √d scaling, before positions are added) and the all-zero vector (the PAD
embedding) as baseline::

    gradient × input      a_tj = Σ_d e_jd · ∂f_t/∂e_jd
    integrated gradients  a_tj = Σ_d e_jd · ∫₀¹ ∂f_t/∂e_jd (α e) dα      (Sundararajan et al., 2017)

Integrated gradients is *complete*: Σ_j a_tj = f_t(e) − f_t(0), up to the error of the
integral's quadrature; :func:`embedding_attributions` returns that error (Captum's
convergence delta) for every position. Attributions are signed (positive: the token raised
the log-probability). Masks are computed from the real token ids, so a zeroed embedding is
still a token that can be attended to — only its content is removed.

Captum (captum.ai, the PyTorch project's attribution library) computes both; attnlab only
feeds it the embeddings and collects the sums.

    >>> result = embedding_attributions(model, "integrated_gradients", [src_ids, tgt_ids], labels, steps=64)
    >>> result.attributions[0].shape, result.completeness_error.abs().max()     # (Lt, Ls), tensor(0.0031)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = ["GRADIENT_METHODS", "GradientResult", "embedding_attributions"]

GRADIENT_METHODS = ("grad_x_input", "integrated_gradients")
MAX_ROWS_PER_PASS = 1024  # sequences per forward pass inside integrated gradients (bounds memory)


@dataclass
class GradientResult:
    attributions: list[Tensor]  # one per input sequence: (rows, L_input), summed over the embedding
    outputs: Tensor  # (rows,) f_t at the real input
    completeness_error: Tensor | None  # (rows,) Σ attributions − (f_t(e) − f_t(0)); integrated gradients only
    output_change: Tensor | None  # (rows,) f_t(e) − f_t(0)


@contextlib.contextmanager
def _embeddings_replaced(modules: Sequence[nn.Module], replacements: list[Tensor]) -> Iterator[None]:
    """The i-th embedding call inside the block returns ``replacements[i]`` instead of its output.

    ``modules[i]`` is the module expected at call i (the same module may appear twice: a shared
    source/target embedding is called once by the encoder, then once by the decoder).
    """
    calls = {"next": 0}

    def hook(module, args, output):
        index = calls["next"]
        if index >= len(modules) or modules[index] is not module:
            raise RuntimeError(f"unexpected embedding call {index} to {type(module).__name__}")
        calls["next"] += 1
        replacement = replacements[index]
        if replacement.shape != output.shape:
            raise RuntimeError(f"embedding call {index}: replacement {tuple(replacement.shape)} vs output "
                               f"{tuple(output.shape)}")
        return replacement

    handles = [module.register_forward_hook(hook) for module in dict.fromkeys(modules)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def embedding_attributions(model: nn.Module, method: str, embeddings: Sequence[nn.Module], token_ids: Sequence[Tensor],
                           labels: Tensor, *, steps: int = 64, forward=None) -> GradientResult:
    """Attribute log p(labels[t]) at every position t to the embedding of every input token.

    ``embeddings[i]`` is the module whose output is input sequence i's embedding (called in
    that order by ``forward``); ``token_ids[i]`` is that sequence, (L_i,). ``forward(ids...)``
    runs the model on a batch of id tensors (N, L_i) and returns logits (N, rows, V); row t of
    the logits predicts ``labels[t]``. Returns attributions (rows, L_i) per sequence.
    """
    from captum.attr import InputXGradient, IntegratedGradients

    if method not in GRADIENT_METHODS:
        raise ValueError(f"unknown gradient method {method!r}; allowed: {', '.join(GRADIENT_METHODS)}")
    if method == "integrated_gradients" and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 2):
        raise ValueError(f"integrated gradients needs steps >= 2, got {steps!r}")
    rows = labels.shape[0]
    forward = forward or (lambda *ids: model(*ids))
    with torch.no_grad():
        base = [module(ids[None]).detach() for module, ids in zip(embeddings, token_ids)]  # each (1, L_i, D)
    inputs = tuple(e.expand(rows, -1, -1).clone().requires_grad_(True) for e in base)  # each (rows, L_i, D)
    label_index = labels.to(inputs[0].device)

    def log_probabilities(*embedded: Tensor) -> Tensor:
        batch = embedded[0].shape[0]  # rows × (integration points in this chunk)
        ids = [t[None].expand(batch, -1) for t in token_ids]  # the masks come from the real ids
        with _embeddings_replaced(embeddings, list(embedded)):
            logits = forward(*ids).float()  # (N, rows, V)
        log_probs = torch.log_softmax(logits, dim=-1)
        return log_probs.gather(-1, label_index[None, :, None].expand(batch, -1, 1))[..., 0]  # (N, rows)

    targets = list(range(rows))  # example t of the batch explains output column t
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            outputs = log_probabilities(*[e.detach() for e in inputs]).detach().diagonal()  # (rows,)
            if method == "grad_x_input":
                attributions = InputXGradient(log_probabilities).attribute(inputs, target=targets)
                error = change = None
            else:
                chunk = max(1, MAX_ROWS_PER_PASS // rows) * rows
                attributions, error = IntegratedGradients(log_probabilities).attribute(
                    inputs, baselines=tuple(torch.zeros_like(e) for e in inputs), target=targets, n_steps=steps,
                    internal_batch_size=chunk, return_convergence_delta=True)
                zeros = [torch.zeros_like(e) for e in inputs]
                change = outputs - log_probabilities(*zeros).detach().diagonal()  # (rows,)
                error = error.detach()
    finally:
        model.train(was_training)
    summed = [a.detach().sum(-1) for a in attributions]  # each (rows, L_i)
    return GradientResult(summed, outputs, error, change)
