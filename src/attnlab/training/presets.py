"""Sensible defaults per kind of task, sized for a laptop CPU.

Synthetic tasks are tiny and learn in a minute; the toy corpus trains a small
translator for the demo; real corpora get a recipe sized for ~30 minutes of a
2-core CPU (d_model 256, 3+3 blocks, ~1,600 steps of ~4k-token batches):

* pre-LN blocks (``norm_first``, with a final LayerNorm on each stack) at a
  peak rate of 2e-3: the largest gain a step-matched search found for a short
  budget (fra-eng, 754 steps: 38.8 / 39.9 BLEU for two seeds, against 33.9 /
  34.7 for post-LN at 1e-3);
* a short warmup (200 steps) — the paper's 4,000 outlast the whole budget; with ``--max-minutes``
  the trainer times its first steps and, when the budget buys fewer than 1,600, compresses the
  warmup to the same share of the steps it buys (:mod:`attnlab.training.budget`; 545 steps → 68);
* on a slower CPU, more and smaller batches (``min_batch_tokens=1024``): a budget that buys
  fewer than 800 steps of 4,096 tokens halves the batch, down to 1,024 tokens, until it buys
  about 800 or more (an AVX2-only 2-core CPU: 2,048 tokens in 30 minutes, 1,024 in 15), and the
  warmup is fitted to the steps the smaller batch buys; the machine the recipe was tuned on
  (1,578 steps in 30 minutes) keeps 4,096 tokens;
* on fra-eng, before the batch, a narrower model for a still smaller budget
  (``small_budget_model``: width 192, feed-forward 768, the same depth and heads): a budget that
  buys fewer than 400 steps of 4,096 tokens for the width-256 model trains the width-192 one
  instead, built afresh and timed again (an AVX2-only 2-core CPU in 15 minutes: 33.8 / 34.1 BLEU
  against 29.9; at 30 minutes the width-256 model on halved batches wins, docs/translation.md);
  an explicit shape (``--d-model`` and the like) turns this off;
* on fra-eng, with that narrower model, the peak rate held after the warmup until the cool-down
  instead of noam's decay (``small_budget_schedule="constant"``): at 815 steps of the width-192
  model, step-matched, 33.3 BLEU with the peak held against 31.0 with noam (docs/translation.md);
  at 30 minutes on the same CPU (not a small budget) noam stays, as it scored higher there;
* a linear cool-down to zero over the last fifth of the run (steps, or the
  clock with ``--max-minutes``): the low-rate end settles the weights;
* bf16 autocast where the hardware computes in bf16 natively (``auto``);
* fra-eng (157k pairs) sees its data about three times in that budget, too few
  to overfit, so it trains without dropout; the small Multi30k (29k pairs)
  keeps dropout 0.1.

No preset averages its weights (``average="none"``): on fra-eng within a 15- or 30-minute CPU
budget an EMA of the weights (β 0.995) scored below the weights it averaged, which the cool-down
has already settled (docs/translation.md).

``benchmarks/fra_eng.py`` measures this recipe against a torch.nn.Transformer
baseline; the README has the numbers.
"""

from __future__ import annotations

import copy

from ..data import SYNTHETIC_TASKS

__all__ = ["task_family", "default_model", "default_train"]


def task_family(task: str) -> str:
    if task in SYNTHETIC_TASKS:
        return "synthetic"
    if task == "toy":
        return "toy"
    return "corpus"


_MODEL = {
    "synthetic": dict(d_model=64, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, d_ff=256, dropout=0.0),
    "toy": dict(d_model=128, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, d_ff=512, dropout=0.1,
                share_embeddings=True, tie_embeddings=True),
    "corpus": dict(d_model=256, num_heads=4, num_encoder_layers=3, num_decoder_layers=3, d_ff=1024, dropout=0.1,
                   norm_first=True, share_embeddings=True, tie_embeddings=True),
}

_TRAIN = {
    "synthetic": dict(steps=1200, batch_size=64, lr=2e-3, schedule="cosine", warmup=100, label_smoothing=0.0,
                      eval_every=400, checkpoint_every=400),
    "toy": dict(steps=600, batch_size=64, lr=2e-3, schedule="noam", warmup=100, label_smoothing=0.1,
                eval_every=200, checkpoint_every=200, eval_examples=200),
    "corpus": dict(steps=1600, batch_size=None, max_tokens=4096, min_batch_tokens=1024, lr=2e-3, schedule="noam", warmup=200, cooldown=0.2,
                   precision="auto", label_smoothing=0.1, eval_every=400, checkpoint_every=200, eval_examples=300),
}

_TASK_MODEL = {  # per-corpus changes to the family's model defaults
    "fra-eng": dict(dropout=0.0),
}

_TASK_TRAIN = {  # per-corpus changes to the family's training defaults
    # a time budget that buys under a quarter of the steps trains a narrower model and holds its peak rate
    # until the cool-down (docs/translation.md)
    "fra-eng": dict(small_budget_model=dict(d_model=192, d_ff=768), small_budget_schedule="constant"),
}


def default_model(task: str) -> dict:
    """TransformerConfig keyword defaults for ``task`` (vocabulary sizes come from the data)."""
    return {**_MODEL[task_family(task)], **_TASK_MODEL.get(task, {})}


def default_train(task: str) -> dict:
    """TrainConfig keyword defaults for ``task``."""
    return copy.deepcopy({**_TRAIN[task_family(task)], **_TASK_TRAIN.get(task, {})})
