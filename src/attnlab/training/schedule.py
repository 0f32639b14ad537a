"""The learning rate at each step, and how much of the budget (steps or wall clock) is spent.

* ``noam`` — the paper's warmup then inverse square root (§5.3), written with
  the peak rate explicit: lr(s) = peak · min(s / warmup, √(warmup / s));
  the paper's d_model^-0.5 · min(s^-0.5, s · warmup^-1.5) is this with
  peak = (d_model · warmup)^-0.5.
* ``cosine`` — linear warmup, then cosine decay to zero at the last step.
* ``constant`` — linear warmup, then flat.

Any of them can end in a **cool-down** (``cooldown`` > 0): over the last
fraction of the budget the rate falls linearly to zero. A short budget gains
most from it — the final low-rate steps settle the weights. With a time budget
(``max_minutes``) the budget used is the larger of the step and the time
fraction, so the rate reaches zero as the clock runs out, whichever comes first.

A **plan** fitted to a time budget (:mod:`attnlab.training.budget`) shortens the warmup to
W steps for the N steps the budget buys. The steps before the plan (the calibration, k steps)
ran on the configured warmup's ramp, reaching r_k = peak · k / warmup; the planned ramp goes on
from there, in a straight line to the peak at step W, so the rate never jumps:

    lr(s) = r_k + (peak − r_k) · (s − k) / (W − k)    for k < s ≤ W

after which the schedule continues with W as its warmup — the configured schedule, or the plan's
own where a small budget chose one (``plan.schedule``: ``constant`` holds the peak until the
cool-down).

    >>> learning_rate(TrainConfig(steps=1000, lr=1e-3, schedule="noam", warmup=100), 400)
    0.0005
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .budget import BudgetPlan
    from .config import TrainConfig

__all__ = ["SCHEDULES", "learning_rate", "budget_used"]

SCHEDULES = ("noam", "cosine", "constant")


def learning_rate(config: "TrainConfig", step: int, used: float | None = None,
                  plan: "BudgetPlan | None" = None) -> float:
    """The learning rate at (1-based) ``step`` under the configured schedule and cool-down.

    ``used`` is the fraction of the budget spent before this step (default
    ``(step - 1) / steps``; see :func:`budget_used` for time budgets). It only
    matters with ``cooldown`` > 0: once ``used`` passes ``1 - cooldown`` the
    rate is scaled by ``(1 - used) / cooldown``, reaching zero at the end.
    ``plan`` (a time budget's, see the module docstring) sets the warmup and the peak after
    its calibration steps (and the schedule after the warmup, where it names one); without it, or
    when it changes none of these, the rate is the configured one.
    """
    if plan is not None and step > plan.calibration_steps and (
            (plan.warmup, plan.peak_lr) != (config.warmup, config.lr) or plan.schedule not in (None, config.schedule)):
        rate = _planned_rate(config, step, plan)
    else:
        rate = _configured_rate(config, step)
    if config.cooldown > 0:
        used = (step - 1) / config.steps if used is None else used
        rate *= min(1.0, max(0.0, 1.0 - used) / config.cooldown)
    return rate


def _configured_rate(config: "TrainConfig", step: int) -> float:
    warmup = max(config.warmup, 1)
    if config.schedule == "noam":
        return config.lr * min(step / warmup, math.sqrt(warmup / step))
    if step <= config.warmup:
        return config.lr * step / warmup
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _planned_rate(config: "TrainConfig", step: int, plan: "BudgetPlan") -> float:
    """After a plan's calibration: its ramp from r_k to the peak at W, then the schedule with warmup W."""
    calibrated, warmup, peak = plan.calibration_steps, max(plan.warmup, 1), plan.peak_lr
    if step <= warmup:
        reached = config.lr * min(calibrated / max(config.warmup, 1), 1.0)  # r_k: where the calibration left off
        return reached + (peak - reached) * (step - calibrated) / max(warmup - calibrated, 1)
    schedule = plan.schedule or config.schedule  # a small budget's schedule, or the configured one
    if schedule == "noam":
        return peak * math.sqrt(warmup / step)
    if schedule == "constant":
        return peak
    progress = (step - warmup) / max(1, config.steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def budget_used(config: "TrainConfig", step: int, elapsed_s: float) -> float:
    """Fraction of the budget spent before ``step``: steps, or the wall clock when that runs out sooner.

    used = max((step − 1) / steps, elapsed_s / (60 · max_minutes))

        >>> budget_used(TrainConfig(steps=1000, max_minutes=10), 101, elapsed_s=450.0)
        0.75
    """
    used = (step - 1) / config.steps
    if config.max_minutes is not None:
        used = max(used, elapsed_s / (60.0 * config.max_minutes))
    return used
