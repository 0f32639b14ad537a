"""``attnlab.explain``: every standard explanation of a Transformer's output, and interventions on its heads.

The public names of :mod:`attnlab.inspection.explain` (the methods) and
:mod:`attnlab.inspection.interventions` (ablation and patching), in one place::

    >>> from attnlab.explain import explain, ablate_heads
    >>> explain(model, src_ids, tgt_ids, method="rollout").relevance        # (Lt, Ls), rows sum to 1
    >>> with ablate_heads(model, {("cross", 1): [0, 2]}):
    ...     logits = model(src, tgt)
"""

from .inspection.explain import FLOW_MAX_TOKENS, METHODS, Explanation, explain, explain_all, parse_methods
from .inspection.interventions import (InterventionEffect, ablate_heads, all_heads, intervention_effect,
                                       patch_heads)

__all__ = ["METHODS", "FLOW_MAX_TOKENS", "Explanation", "explain", "explain_all", "parse_methods", "ablate_heads",
           "patch_heads", "all_heads", "intervention_effect", "InterventionEffect"]
