"""What a wall-clock budget buys: a training plan fitted to it, and how close the steps run to the hardware.

With ``max_minutes`` the trainer first times its opening steps (:class:`Calibration`: a short
warm-in, then :data:`CALIBRATION_STEPS` steps or :data:`CALIBRATION_MAX_S` seconds), then
:func:`fit_plan` estimates how many steps the rest of the budget buys, after the dev
evaluations and checkpoints it will also pay for:

    N = the largest n with  n ≤ k + ⌊(B − t_k − overhead(k, n)) / s⌋

(k: the step the plan is made at, t_k: seconds spent so far, B = 60 · max_minutes, s: seconds per
step, overhead: the evaluations and checkpoints due in (k, n], at their measured cost). When the
budget buys fewer steps than configured, the configured schedule is compressed to N steps: the
warmup keeps its share of the run, W = warmup · N / steps (at least 2k, so the ramp after the
calibration is no shorter than the calibration; at most the configured warmup). The peak rate is
the configured one, and the cool-down is the configured fraction of the clock (its first minute is
stated). The calibration steps are ordinary training steps on the configured warmup's ramp; the
plan's ramp continues from where they left off (:func:`attnlab.training.schedule.learning_rate`).

**The batch.** A budget that buys fewer than half the configured steps at ``max_tokens`` learns
more from more, smaller batches (:func:`fitted_batch_tokens`): with ``min_batch_tokens`` set, the
batch is halved (never below ``min_batch_tokens``) until the steps it would buy, estimated as
proportional to 1 / batch, reach half the configured steps. A changed batch is timed again (a
second calibration of :data:`RECALIBRATION_STEPS` steps) before the plan is fitted to it. A
budget that buys at least half the configured steps keeps the configured batch.

**The model.** With ``small_budget_model`` set (the fra-eng preset: width 192, feed-forward 768),
a budget that buys fewer than a quarter of the configured steps of the configured model (at
``max_tokens``) trains that smaller model instead (:func:`fitted_model`): it is built afresh from the seed, the steps the
larger one took count against the budget but not as steps, and it is timed by a calibration of its
own; the batch is then fitted to what it buys. A smaller model does less per step and learns less
per token, so it wins only where the steps are too few for the larger one: on an AVX2-only CPU it
won at 15 minutes (a quarter of the steps) and lost to smaller batches of the larger model at 30
(half of them; docs/translation.md).

**The schedule.** With ``small_budget_schedule`` set (the fra-eng preset: ``"constant"``), a small
budget — its first estimate, of the configured model at the configured batch, under
:data:`SMALL_BUDGET_SHARE` of the configured steps, the small model's case — runs that schedule
after the planned warmup instead of the configured one (:func:`fitted_schedule`;
``plan.schedule``): the peak is held until the cool-down, where noam would have fallen to a third
of it by the end of the run. It is the first estimate's decision, so the smaller model and batches
that follow keep it, and checkpoints record it (``small_budget`` in ``state.json``) for a resumed run.

    >>> plan = fit_plan(TrainConfig(steps=1600, warmup=200, lr=2e-3, cooldown=0.2, max_minutes=30, max_tokens=4096,
    ...                             eval_every=400, checkpoint_every=200), step=13, elapsed_s=42.9, step_seconds=3.3)
    >>> plan.describe()
    'plan: ≈ 545 steps of 4,096 tokens; warmup 68; peak 2e-3; cool-down from minute 24'

The plan is stored in ``config.json`` (``"plan"``), so a resumed run keeps it. Model FLOP
utilisation (:class:`UtilisationMeter`) is what the steps achieve against this process's measured
matmul rate: MFU = model FLOPs per second / matmul FLOPs per second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from .._strict import strict_from_dict

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["BudgetPlan", "Calibration", "fit_plan", "fitted_batch_tokens", "UtilisationMeter", "WARM_IN_STEPS",
           "CALIBRATION_STEPS", "RECALIBRATION_STEPS", "CALIBRATION_MAX_S", "EVAL_PROBE_EXAMPLES", "fitted_model",
           "SMALL_BUDGET_SHARE", "has_shape", "small_budget", "fitted_schedule"]

WARM_IN_STEPS = 3  # not timed: the first steps pay for allocations and thread start-up
CALIBRATION_STEPS = 10  # timed steps after the warm-in ...
CALIBRATION_MAX_S = 60.0  # ... or fewer, once they have taken this long
RECALIBRATION_STEPS = 10  # timed steps (after one warm-in step) at a batch the plan changed
EVAL_PROBE_EXAMPLES = 16  # dev sentences decoded to estimate what one dev evaluation costs
SMALL_BUDGET_SHARE = 0.25  # a budget buying fewer than this share of the configured steps is small: it trains
# small_budget_model with small_budget_schedule


@dataclass(frozen=True)
class BudgetPlan:
    """The steps a time budget is expected to buy, and the schedule set for them (``config.json``'s ``"plan"``)."""

    steps: int  # steps planned for: min(budget_steps, the configured steps)
    budget_steps: int  # steps the budget is expected to buy
    calibration_steps: int  # the plan was made after this step; steps up to it ran on the configured warmup's ramp
    warmup: int
    peak_lr: float
    cooldown_from_step: int | None  # None without a cool-down
    cooldown_from_minute: float | None
    step_seconds: float  # measured seconds per training step
    eval_seconds: float  # estimated seconds per dev evaluation
    checkpoint_seconds: float  # measured seconds per checkpoint
    overhead_seconds: float  # expected evaluation + checkpoint seconds after the plan, inside the budget
    max_minutes: float
    batch_tokens: int | None = None  # padded tokens per batch (max_tokens), or
    batch_sentences: int | None = None  # sentences per batch (batch_size)
    schedule: str | None = None  # the schedule after the warmup, where a small budget changed it (else configured)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BudgetPlan":
        return strict_from_dict(cls, data, "plan")

    def describe(self) -> str:
        """One line: steps, batch, warmup, peak and where the cool-down starts."""
        batch = (f"{self.batch_tokens:,} tokens" if self.batch_tokens is not None
                 else f"{self.batch_sentences:,} sentences")
        if self.steps < self.budget_steps:
            steps = f"{self.steps:,} steps of {batch} (all the configured steps; the budget buys ≈ {self.budget_steps:,})"
        else:
            steps = f"≈ {self.steps:,} steps of {batch}"
        if self.cooldown_from_step is None:
            cooldown = "no cool-down"
        elif self.steps < self.budget_steps:
            cooldown = f"cool-down from step {self.cooldown_from_step:,}"
        else:
            cooldown = f"cool-down from minute {self.cooldown_from_minute:g}"
        peak = f"peak {_short_float(self.peak_lr)}"
        if self.schedule == "constant":
            peak += " held"
        elif self.schedule is not None:
            peak += f", then {self.schedule}"
        return f"plan: {steps}; warmup {self.warmup:,}; {peak}; {cooldown}"


def _short_float(value: float) -> str:
    """0.002 → '2e-3', 0.0015 → '1.5e-3', 0.5 → '0.5'."""
    if value == 0 or 1e-2 <= abs(value) < 1e3:
        return f"{value:g}"
    mantissa, exponent = f"{value:.2e}".split("e")  # '2.00e-03'
    return f"{float(mantissa):g}e{int(exponent)}"


def _multiples(after: int, up_to: int, every: int) -> int:
    """How many multiples of ``every`` lie in (after, up_to]."""
    return max(0, up_to // every - after // every)


def _overhead_s(config: "TrainConfig", step: int, last: int, eval_seconds: float, checkpoint_seconds: float) -> float:
    """Seconds of dev evaluations and checkpoints due after ``step`` in a run that stops after ``last``.

    The trainer evaluates at every multiple of ``eval_every`` except the configured last step, and
    checkpoints at every multiple of ``checkpoint_every`` and when it stops.
    """
    evaluations = _multiples(step, min(last, config.steps - 1), config.eval_every)
    checkpoints = _multiples(step, last - 1, config.checkpoint_every) + (1 if last > step else 0)
    return evaluations * eval_seconds + checkpoints * checkpoint_seconds


def fitted_batch_tokens(config: "TrainConfig", budget_steps: int) -> int | None:
    """The padded tokens per batch for a budget that buys ``budget_steps`` steps at ``config.max_tokens``.

    Halve the batch while the steps it buys (``budget_steps · max_tokens / batch``) stay below half
    the configured steps and the half is at least ``min_batch_tokens``; without ``max_tokens`` or
    ``min_batch_tokens`` the batch is the configured one.

        >>> fitted_batch_tokens(TrainConfig(steps=1600, max_tokens=4096, min_batch_tokens=1024), 545)
        2048
        >>> fitted_batch_tokens(TrainConfig(steps=1600, max_tokens=4096, min_batch_tokens=1024), 258)
        1024
    """
    tokens = config.max_tokens
    if tokens is None or config.min_batch_tokens is None:
        return tokens
    while 2 * budget_steps * config.max_tokens < config.steps * tokens and tokens // 2 >= config.min_batch_tokens:
        tokens //= 2
    return tokens


def small_budget(config: "TrainConfig", budget_steps: int) -> bool:
    """Whether a budget that buys ``budget_steps`` of the configured model at the configured batch is
    small: under :data:`SMALL_BUDGET_SHARE` of the configured steps (the small model's and the small
    schedule's case).

        >>> small_budget(TrainConfig(steps=1600), 399), small_budget(TrainConfig(steps=1600), 400)
        (True, False)
    """
    return budget_steps < SMALL_BUDGET_SHARE * config.steps


def fitted_schedule(config: "TrainConfig", small: bool) -> str | None:
    """The schedule after the warmup for a budget that is ``small`` (:func:`small_budget`) or not.

    ``config.small_budget_schedule`` for a small budget, where it is set and differs from the
    configured schedule; otherwise None (the configured schedule).

        >>> fitted_schedule(TrainConfig(schedule="noam", small_budget_schedule="constant"), small=True)
        'constant'
        >>> fitted_schedule(TrainConfig(schedule="noam", small_budget_schedule="constant"), small=False) is None
        True
    """
    chosen = config.small_budget_schedule
    return chosen if small and chosen is not None and chosen != config.schedule else None


def fitted_model(config: "TrainConfig", model, budget_steps: int) -> dict | None:
    """The shape settings to train instead of ``model`` when the budget buys only ``budget_steps``, or None.

    None unless ``config.small_budget_model`` is set, the budget is small (:func:`small_budget`), and
    ``model`` (a TransformerConfig) is not already of that shape.

        >>> from attnlab.core.model import TransformerConfig
        >>> small = TrainConfig(steps=1600, small_budget_model={"d_model": 192, "d_ff": 768})
        >>> fitted_model(small, TransformerConfig(src_vocab_size=9, tgt_vocab_size=9, d_model=256), 280)
        {'d_model': 192, 'd_ff': 768}
        >>> fitted_model(small, TransformerConfig(src_vocab_size=9, tgt_vocab_size=9, d_model=256), 545) is None
        True
    """
    shape = config.small_budget_model
    if not shape or not small_budget(config, budget_steps):
        return None
    if has_shape(model, shape):
        return None
    return dict(shape)


def has_shape(model, shape: dict) -> bool:
    """Whether the TransformerConfig ``model`` has every setting of ``shape``."""
    return all(getattr(model, name) == value for name, value in shape.items())


def fit_plan(config: "TrainConfig", *, step: int, elapsed_s: float, step_seconds: float, eval_seconds: float = 0.0,
             checkpoint_seconds: float = 0.0, batch_tokens: int | None = None) -> BudgetPlan:
    """The plan for the rest of ``config``'s time budget, made after ``step`` steps and ``elapsed_s`` seconds.

    N is the largest step count whose steps, evaluations and checkpoints fit in the budget (see the
    module docstring); the warmup, peak and cool-down follow from N and the configuration.
    ``batch_tokens`` is the batch ``step_seconds`` was timed at (default: ``max_tokens``). The
    schedule after the warmup is the configured one; the trainer sets a small budget's
    (:func:`fitted_schedule`).

        >>> fit_plan(TrainConfig(steps=1600, warmup=200, max_minutes=30), step=13, elapsed_s=42.9,
        ...          step_seconds=3.3).warmup
        68
    """
    if config.max_minutes is None:
        raise ValueError("a plan needs a time budget (max_minutes)")
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be > 0, got {step_seconds!r}")
    budget_s = 60.0 * config.max_minutes

    def affordable(last: int) -> int:  # steps the budget buys if the overhead is that of a run ending at `last`
        left = budget_s - elapsed_s - _overhead_s(config, step, last, eval_seconds, checkpoint_seconds)
        return step + max(0, math.floor(left / step_seconds))

    # affordable() falls as `last` grows (more evaluations, more checkpoints), so the largest
    # n <= affordable(n) is found by bisection between `step` and the overhead-free count.
    low, high = step, affordable(step)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if middle <= affordable(middle) else (low, middle - 1)
    budget_steps = low
    steps = min(budget_steps, config.steps)
    warmup = config.warmup
    if steps < config.steps and config.warmup > 2 * step:
        warmup = min(config.warmup, max(2 * step, round(config.warmup * steps / config.steps)), max(steps, 1))
    cooldown_step = cooldown_minute = None
    if config.cooldown > 0:
        cooldown_step = math.floor((1 - config.cooldown) * steps) + 1
        if steps < config.steps:  # the clock runs out first: the cool-down starts at its fraction of the clock
            cooldown_minute = round((1 - config.cooldown) * config.max_minutes, 2)
        else:  # the steps run out first
            expected_s = elapsed_s + (cooldown_step - 1 - step) * step_seconds
            cooldown_minute = round(max(expected_s, elapsed_s) / 60.0, 2)
    return BudgetPlan(steps=steps, budget_steps=budget_steps, calibration_steps=step, warmup=warmup,
                      peak_lr=config.lr, cooldown_from_step=cooldown_step, cooldown_from_minute=cooldown_minute,
                      step_seconds=step_seconds, eval_seconds=eval_seconds, checkpoint_seconds=checkpoint_seconds,
                      overhead_seconds=round(_overhead_s(config, step, steps, eval_seconds, checkpoint_seconds), 3),
                      max_minutes=config.max_minutes,
                      batch_tokens=(batch_tokens or config.max_tokens) if config.max_tokens else None,
                      batch_sentences=None if config.max_tokens else config.batch_size)


class Calibration:
    """Seconds per training step, timed on a session's first steps.

    The first ``warm_in`` steps are not timed; then ``steps`` steps are, or fewer once they have
    taken ``max_seconds`` (at least one). :meth:`add` returns True on the step that completes it.

        >>> calibration = Calibration(warm_in=1, steps=2)
        >>> [calibration.add(s) for s in (9.0, 3.0, 5.0)], calibration.step_seconds
        ([False, False, True], 4.0)
    """

    def __init__(self, *, warm_in: int = WARM_IN_STEPS, steps: int = CALIBRATION_STEPS,
                 max_seconds: float = CALIBRATION_MAX_S):
        self.warm_in, self.steps, self.max_seconds = warm_in, steps, max_seconds
        self.seen, self.timed = 0, []

    def add(self, seconds: float) -> bool:
        """Record one step's duration; True when the calibration is complete (and only then)."""
        if self.done:
            return False
        self.seen += 1
        if self.seen > self.warm_in:
            self.timed.append(seconds)
        return self.done

    @property
    def done(self) -> bool:
        return bool(self.timed) and (len(self.timed) >= self.steps or sum(self.timed) >= self.max_seconds)

    @property
    def step_seconds(self) -> float:
        """Mean duration of the timed steps."""
        return sum(self.timed) / len(self.timed)


class UtilisationMeter:
    """Model FLOP utilisation of training steps: model FLOP/s over the matmul FLOP/s measured in this process.

    The peak is measured once (:func:`attnlab.benchmarking.matmul_gflops`, about 0.2 s) in the
    step's precision where the hardware runs it natively (bf16 on AMX / AVX-512 bf16 CPUs and
    CUDA), else in fp32, the rate emulated bf16 also runs at. A step's FLOPs are
    :func:`attnlab.benchmarking.model_flops_per_step` over its padded batch shape.

        >>> meter = UtilisationMeter(model_config, "fp32", torch.device("cpu"))
        >>> meter.mfu(meter.batch_flops(batch), seconds=0.5)
    """

    MATMUL_SIZE = 1024
    MATMUL_REPEATS = 5
    MATMUL_MAX_S = 0.3

    def __init__(self, model_config, precision: str, device: torch.device, *, peak_gflops: float | None = None):
        from ..benchmarking.training import matmul_gflops
        from .hardware import resolve_precision

        self.model_config = model_config
        native = precision == "bf16" and resolve_precision("auto", device) == "bf16"
        self.peak_precision = "bf16" if native else "fp32"
        if peak_gflops is None:
            dtype = torch.bfloat16 if native else torch.float32
            peak_gflops = matmul_gflops(dtype, size=self.MATMUL_SIZE, repeats=self.MATMUL_REPEATS, device=device,
                                        max_seconds=self.MATMUL_MAX_S)
        self.peak_gflops = peak_gflops

    def batch_flops(self, batch) -> float:
        """Matmul FLOPs of one training step on ``batch`` (padded shape: src (B, Ls), tgt_in (B, Lt))."""
        from ..benchmarking.training import model_flops_per_step

        rows, src_len = batch.src.shape
        return model_flops_per_step(self.model_config, rows, src_len, batch.tgt_in.shape[1])

    def mfu(self, flops: float, seconds: float) -> float:
        """flops / seconds / peak (0 when no time has passed)."""
        return flops / seconds / (self.peak_gflops * 1e9) if seconds > 0 else 0.0

    def summary(self, flops: float, seconds: float) -> dict:
        """The summary's fields: ``mfu``, ``model_gflops_per_s``, ``matmul_gflops`` and its precision (4 digits)."""
        achieved = flops / seconds / 1e9 if seconds > 0 else 0.0
        return {"mfu": float(f"{self.mfu(flops, seconds):.4g}"), "model_gflops_per_s": float(f"{achieved:.4g}"),
                "matmul_gflops": float(f"{self.peak_gflops:.4g}"), "matmul_precision": self.peak_precision}
