"""One trainer for every task: synthetic sequences, the toy corpus, real parallel corpora.

Each step: a padded batch → teacher-forced logits → cross-entropy with label
smoothing (ignoring padding) → backward → gradient clipping → AdamW step with
the learning rate of the schedule (:mod:`attnlab.training.schedule`: noam,
cosine or constant, with an optional cool-down), in the precision that
:mod:`attnlab.training.hardware` resolves (fp32, or bf16 autocast).

The run directory is written only through :mod:`attnlab.training.checkpoint`, so it can
be resumed after a crash and reproduces an uninterrupted run bit for bit.

With a time budget (``max_minutes``) the first steps are timed and the warmup is fitted to
the steps the budget buys (:mod:`attnlab.training.budget`; the plan goes into ``config.json``),
and model FLOP utilisation is logged. ``average="ema"`` evaluates and saves an exponential
moving average of the weights (:mod:`attnlab.training.averaging`).

Under ``torchrun`` the same loop runs data-parallel (:mod:`attnlab.training.distributed`):
every rank builds the same global batch, keeps its own rows, and the loss is
normalised by the *global* token count, so that DistributedDataParallel's
gradient average equals the single-process gradient of the whole batch. Only
rank 0 writes the run directory, logs and evaluates.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..data import PAD_ID, TaskData, make_batches
from ..files import atomic_write_text
from . import checkpoint, distributed
from .averaging import AVERAGE_FILE, WeightAverage
from .budget import (EVAL_PROBE_EXAMPLES, RECALIBRATION_STEPS, SMALL_BUDGET_SHARE, BudgetPlan, Calibration,
                     UtilisationMeter, fit_plan, fitted_batch_tokens, fitted_model, fitted_schedule, has_shape,
                     small_budget)
from .config import RunConfig, TrainConfig
from .evaluation import evaluate
from .hardware import autocast, cpu_capability, keep_freed_memory, resolve_device, resolve_precision
from .runs import build_model, read_config, write_config
from .schedule import budget_used, learning_rate

__all__ = ["BatchStream", "train", "train_step", "make_optimizer"]


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW (β = 0.9, 0.98, ε = 1e-9) with weight decay on matrices only; fused on CPU and CUDA."""
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.dim() < 2 else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.lr, betas=(0.9, 0.98), eps=1e-9,
                             fused=device.type in ("cpu", "cuda"))  # one kernel for all parameters


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch, *, lr: float,
               label_smoothing: float = 0.0, grad_clip: float = 0.0, precision: str = "fp32",
               device: torch.device | None = None, token_normaliser: float | None = None,
               loss_weight: float = 1.0) -> torch.Tensor:
    """One optimiser step on ``batch``; returns the (detached) loss.

    The loss is the summed token cross-entropy divided by ``token_normaliser``
    (default: the batch's own non-pad target tokens, i.e. the mean). A
    data-parallel rank passes global tokens / world size, so that averaging
    the ranks' gradients gives the gradient of the global batch's mean loss.
    """
    device = batch.src.device if device is None else device
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, precision):
        logits = model(batch.src, batch.tgt_in)  # (B, Lt, V)
    summed = F.cross_entropy(logits.float().flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID,
                             label_smoothing=label_smoothing, reduction="sum")
    loss = summed * (loss_weight / (batch.num_tokens if token_normaliser is None else token_normaliser))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


class BatchStream:
    """Training batches epoch after epoch, reshuffled and re-bucketed each epoch.

    Its position is ``(epoch, index)``: a stream built with the position saved in
    a checkpoint continues with exactly the batches an uninterrupted run would see.
    """

    def __init__(self, examples, *, max_tokens: int | None = None, batch_size: int | None = None, seed: int = 0,
                 epoch: int = 0, index: int = 0):
        if not examples:
            raise ValueError("no training examples: the training split is empty")
        self.examples, self.max_tokens, self.batch_size, self.seed = examples, max_tokens, batch_size, seed
        self.epoch, self.index = epoch, index
        self._batches = self._make(epoch)

    @classmethod
    def for_config(cls, examples, config: TrainConfig, *, epoch: int = 0, index: int = 0,
                   max_tokens: int | None = None) -> "BatchStream":
        """The stream ``config`` describes; ``max_tokens`` replaces its batch (a plan's fitted batch)."""
        return cls(examples, max_tokens=max_tokens or config.max_tokens, batch_size=config.batch_size,
                   seed=config.seed, epoch=epoch, index=index)

    def rebatched(self, max_tokens: int) -> "BatchStream":
        """A stream of ``max_tokens``-token batches at the same share of the same epoch."""
        twin = BatchStream(self.examples, max_tokens=max_tokens, batch_size=self.batch_size, seed=self.seed,
                           epoch=self.epoch)
        twin.index = min(len(twin._batches), round(self.index * len(twin._batches) / max(len(self._batches), 1)))
        return twin

    def _make(self, epoch: int) -> list:
        return make_batches(self.examples, max_tokens=self.max_tokens,
                            batch_size=None if self.max_tokens else self.batch_size,
                            shuffle=True, seed=self.seed, epoch=epoch)

    def next(self):
        if self.index >= len(self._batches):
            self.epoch, self.index = self.epoch + 1, 0
            self._batches = self._make(self.epoch)
        self.index += 1
        return self._batches[self.index - 1]

    @property
    def epochs(self) -> float:
        """Epochs done, fractional."""
        return self.epoch + self.index / max(len(self._batches), 1)


class _MetricsLog:
    """metrics.jsonl: one JSON object per line, appended (and flushed) as each record is logged, so that
    ``tail -f`` follows a run; a resumed run first cuts it back to its checkpoint's step."""

    def __init__(self, path: Path, resume_step: int | None, *, enabled: bool = True):
        self.path = path
        self.enabled = enabled  # only rank 0 of a distributed run writes
        if not enabled:
            return
        if resume_step is None:
            atomic_write_text(path, "")
        else:
            kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
                    if _logged_step(line) is not None and _logged_step(line) <= resume_step]
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def add(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as handle:  # one write per record; closing flushes it to the file
                handle.write(json.dumps(record) + "\n")


def _logged_step(line: str) -> int | None:
    """The step of a metrics.jsonl line; None for a blank line or the torn last line of a killed run."""
    try:
        return json.loads(line)["step"] if line.strip() else None
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def train(run_dir: Path, run_config: RunConfig, *, resume: bool = False, progress: bool = True,
          data: TaskData | None = None, on_log=None, progress_label: str = "train",
          clock: Callable[[], float] = time.perf_counter,
          on_step: Callable[[int], None] | None = None) -> dict | None:
    """Train (or resume) the run in ``run_dir``; return the final evaluation dict.

    ``data`` may be given to reuse an already-loaded task (tests, experiments). ``progress``
    shows a bar on a terminal and plain lines elsewhere (:mod:`attnlab.training.progress`),
    headed ``progress_label``. ``clock`` (seconds) times the budget, the calibration and the
    throughput; tests pass a fake one. ``on_step(step)`` is called on rank 0 after every
    optimiser step; a caller that does work there (a benchmark steps a second model) takes its
    time off ``clock``.
    Started by torchrun, every rank trains its shard of each batch; rank 0
    returns the evaluation and the other ranks return None.
    """
    run_dir = Path(run_dir)
    config = run_config.train
    context, device = distributed.setup(resolve_device(config.device))
    keep_freed_memory()
    try:
        return _train(run_dir, run_config, context, device, resume=resume, progress=progress, data=data,
                      on_log=on_log, progress_label=progress_label, clock=clock, on_step=on_step)
    finally:
        keep_freed_memory(False)  # the rest of the process (tests, notebooks) gets glibc's defaults back
        distributed.cleanup(context)


def _stored_plan(run_dir: Path) -> BudgetPlan | None:
    """The plan in the run directory's config.json (a resumed run keeps the plan it made)."""
    return read_config(run_dir).plan if (run_dir / "config.json").is_file() else None


def _shared_plan(plan: BudgetPlan | None, context: "distributed.DistributedContext") -> BudgetPlan | None:
    """Rank 0's plan (or its absence) on every rank: their schedules must agree."""
    if not context.enabled:
        return plan
    box = [None if plan is None else plan.to_dict()]
    torch.distributed.broadcast_object_list(box, src=0)
    return None if box[0] is None else BudgetPlan.from_dict(box[0])


def _train(run_dir: Path, run_config: RunConfig, context: "distributed.DistributedContext", device: torch.device, *,
           resume: bool, progress: bool, data: TaskData | None, on_log, progress_label: str,
           clock: Callable[[], float], on_step: Callable[[int], None] | None) -> dict | None:
    config = run_config.train
    main = context.is_main
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    if data is None:
        data = run_config.load_data()
    run_config = run_config.with_vocab(data.source.vocab_size, data.target.vocab_size)
    if resume and config.small_budget_model and (run_dir / "config.json").is_file():
        stored = read_config(run_dir).model  # a budget may have chosen the smaller shape before the stop
        if stored == replace(run_config.model, **config.small_budget_model):
            run_config = replace(run_config, model=stored)
    model, optimizer, average = _fresh_model(run_config, device, average=config.average == "ema")

    precision = resolve_precision(config.precision, device)
    step, epoch, batch_index, trained_s = 0, 0, 0, 0.0
    batch_tokens = config.max_tokens  # what the stream batches by: a plan may have halved it
    positions = {"padded": 0, "real": 0}  # source + target positions of every batch so far, and the non-pad ones
    small = None  # whether the budget is small (budget.small_budget): the first estimate decides; checkpoints keep it
    if resume:  # every rank reads the checkpoint (a shared file system across nodes)
        state = checkpoint.load_checkpoint(run_dir, model, optimizer,
                                           extra_tensors=(AVERAGE_FILE,) if average is not None else ())
        step, epoch, batch_index = state["step"], state["epoch"], state["batch_index"]
        trained_s = state.get("train_seconds", 0.0)  # a time budget counts the sessions before this one
        batch_tokens = state.get("batch_tokens", batch_tokens)
        positions = {"padded": state.get("padded_positions", 0), "real": state.get("real_positions", 0)}
        small = state.get("small_budget")
        if average is not None:
            average.load_state_dict(state["tensors"][AVERAGE_FILE])
        if run_config.plan is None:
            run_config = replace(run_config, plan=_stored_plan(run_dir))
    elif main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, run_config)
        data.save_codecs(run_dir)
        atomic_write_text(run_dir / "data.json", json.dumps(data.info, indent=2, default=str))
        skipped = data.info.get("skipped_lines")
        if skipped:
            print(f"warning: skipped {skipped} malformed corpus line(s); details in {run_dir / 'data.json'} "
                  "(--strict stops at the first one)", file=sys.stderr)
    log = _MetricsLog(run_dir / "metrics.jsonl", step if resume else None, enabled=main)
    plan = run_config.plan
    # a time budget is calibrated once, in the session that reaches the end of the calibration
    calibration = Calibration() if config.max_minutes is not None and plan is None else None
    # the batch is fitted once, single-process, after the first calibration (a changed batch is timed again)
    fit_batch = (calibration is not None and not context.enabled and config.min_batch_tokens is not None
                 and config.max_tokens is not None and batch_tokens == config.max_tokens)
    if calibration is not None and batch_tokens != config.max_tokens:  # resumed after the batch was fitted
        calibration = Calibration(warm_in=1, steps=RECALIBRATION_STEPS)
    # ... and before it, the model: once, in a fresh single-process run (a resumed one has its shape)
    fit_shape = (calibration is not None and not resume and not context.enabled and not config.compile
                 and config.small_budget_model is not None and run_config.architecture == "transformer")
    meter = None
    if main and (config.max_minutes is not None or config.report_mfu) and run_config.architecture == "transformer":
        meter = UtilisationMeter(run_config.model, precision, device)  # measures the matmul rate (~0.2 s)

    def weights() -> torch.nn.Module:
        """What is evaluated and saved as the run's weights: the average, when there is one."""
        return model if average is None else average.averaged_model(model)

    def save(at_step: int, seconds: float) -> float:
        """Checkpoint (rank 0); returns the seconds it took."""
        began = clock()
        checkpoint.save_checkpoint(run_dir, at_step, model, optimizer,
                                   {"epoch": stream.epoch, "batch_index": stream.index, "train_seconds": seconds,
                                    "padded_positions": positions["padded"], "real_positions": positions["real"],
                                    **({"batch_tokens": stream.max_tokens} if stream.max_tokens else {}),
                                    **({"small_budget": small} if small is not None else {})},
                                   extra_tensors=None if average is None else {AVERAGE_FILE: average.state_dict()},
                                   run_weights=None if average is None else weights())
        return clock() - began

    step_model = model
    if context.enabled:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        step_model = torch.compile(step_model)

    from .progress import TrainingProgress  # rich is only needed while training

    bar = TrainingProgress(total=config.steps, start=step, enabled=progress and main, label=progress_label,
                           elapsed_before=trained_s, clock=clock,
                           time_budget_s=None if config.max_minutes is None else 60 * config.max_minutes)
    if plan is not None:  # a resumed run shows the steps its plan expects
        bar.set_plan(plan.steps)
    stream = BatchStream.for_config(data.train, config, epoch=epoch, index=batch_index, max_tokens=batch_tokens)
    session_start = clock()
    started = session_start - trained_s
    elapsed = trained_s  # rank 0's clock, shared by every rank: the schedule and the stop must agree
    window_tokens, window_flops, window_start, window_outside = 0, 0.0, clock(), 0.0
    spent = {"evaluation": 0.0, "checkpoint": 0.0, "plan": 0.0}  # this session's seconds outside training steps
    session_flops = 0.0
    model.train()
    stopped_early = False
    with bar:
        while step < config.steps:
            step_began = clock()
            global_batch = stream.next()
            step += 1
            lr = learning_rate(config, step, budget_used(config, step, elapsed), plan)
            if context.enabled:
                # Each rank's dropout stream is a function of (seed, rank, step): different on every
                # rank, and the same after a resume as in an uninterrupted run.
                torch.manual_seed(config.seed + 1_000_003 * context.rank + 7919 * step)
            batch, weight = distributed.shard_batch(global_batch, context)
            loss = train_step(step_model, optimizer, batch.to(device), lr=lr, device=device,
                              label_smoothing=config.label_smoothing, grad_clip=config.grad_clip,
                              precision=precision, loss_weight=weight,
                              token_normaliser=global_batch.num_tokens / context.world_size)
            if average is not None:
                average.update(model)
            if calibration is not None and device.type == "cuda":
                torch.cuda.synchronize(device)  # a calibrated step is a finished step
            step_s = clock() - step_began
            window_tokens += global_batch.num_tokens
            positions["padded"] += global_batch.src.numel() + global_batch.tgt_out.numel()
            positions["real"] += int((global_batch.src != PAD_ID).sum()) + global_batch.num_tokens
            if meter is not None:
                window_flops += meter.batch_flops(batch)

            if step % config.log_every == 0 or step == config.steps:
                loss_value = distributed.all_reduce_mean(loss, context).item()
                window_s = max(clock() - window_start - window_outside, 1e-9)  # evaluations and checkpoints excluded
                record = {"step": step, "split": "train", "epoch": stream.epoch, "loss": round(loss_value, 6),
                          "lr": lr, "tokens_per_s": round(window_tokens / window_s, 1),
                          "padding": _padding(positions)}
                if meter is not None:
                    record["mfu"] = float(f"{meter.mfu(window_flops, window_s):.4g}")
                log.add(record)
                bar.update(step, loss=loss_value, lr=lr, tokens_per_s=record["tokens_per_s"])
                session_flops += window_flops
                window_tokens, window_flops, window_start, window_outside = 0, 0.0, clock(), 0.0
                if on_log and main:
                    on_log(record)
            if step % config.eval_every == 0 and step != config.steps and main:
                began = clock()
                scores = evaluate(weights(), data.dev[: config.eval_examples], data, device=device, breakdown=False)
                model.train()
                log.add({"step": step, "split": "dev", **scores["summary"]})
                bar.note(step, scores["summary"], data.metric)
                window_outside += clock() - began
                spent["evaluation"] += clock() - began
            planned_at = None
            if calibration is not None:
                done = main and calibration.add(step_s) and step < config.steps
                if done and fit_shape:
                    fit_shape = False
                    estimate = fit_plan(config, step=step, elapsed_s=clock() - started,
                                        step_seconds=max(calibration.step_seconds, 1e-9))
                    small = small_budget(config, estimate.budget_steps)  # the first estimate: a fresh run's
                    shape = fitted_model(config, run_config.model, estimate.budget_steps)
                    if shape is not None:  # a new, smaller model from the seed: the steps so far are spent
                        run_config = replace(run_config, model=replace(run_config.model, **shape))
                        torch.manual_seed(config.seed)
                        model, optimizer, average = _fresh_model(run_config, device, average=average is not None)
                        step_model = model
                        if meter is not None:
                            meter = UtilisationMeter(run_config.model, precision, device, peak_gflops=meter.peak_gflops)
                        write_config(run_dir, run_config)
                        log = _MetricsLog(run_dir / "metrics.jsonl", 0)  # the log is the trained model's alone
                        window_flops, step, calibration, done = 0.0, 0, Calibration(), False
                        bar.message(f"budget: ≈ {estimate.budget_steps:,} steps of the configured model, under "
                                    f"{SMALL_BUDGET_SHARE:.0%} of the {config.steps:,} configured: training "
                                    + ", ".join(f"{name} {value}" for name, value in shape.items()) + " instead")
                if done and fit_batch:
                    fit_batch = False
                    estimate = fit_plan(config, step=step, elapsed_s=clock() - started,
                                        step_seconds=max(calibration.step_seconds, 1e-9))
                    small = small_budget(config, estimate.budget_steps) if small is None else small
                    tokens = fitted_batch_tokens(config, estimate.budget_steps)
                    if tokens != stream.max_tokens:
                        stream = stream.rebatched(tokens)
                        calibration, done = Calibration(warm_in=1, steps=RECALIBRATION_STEPS), False
                        bar.message(f"budget: ≈ {estimate.budget_steps:,} steps of {config.max_tokens:,} tokens, "
                                    f"under half the {config.steps:,} configured: batches of {tokens:,} tokens")
                if done:
                    began = clock()
                    plan = _make_plan(config, calibration, step, clock, started=started, dev=data.dev,
                                      evaluate_dev=lambda examples: evaluate(weights(), examples, data, device=device,
                                                                             breakdown=False),
                                      save=lambda: save(step, clock() - started), batch_tokens=stream.max_tokens,
                                      small=small)
                    planned_at = step  # _make_plan saved this step's checkpoint
                    model.train()
                    run_config = replace(run_config, plan=plan)
                    write_config(run_dir, run_config)
                    bar.message(plan.describe())
                    bar.set_plan(plan.steps)
                    window_outside += clock() - began
                    spent["plan"] += clock() - began
                plan = _shared_plan(plan, context)
                if plan is not None:
                    calibration = None
            bar.tick(step)
            if on_step is not None and main:
                on_step(step)
            elapsed = clock() - started
            if context.enabled and config.max_minutes is not None:  # rank 0's clock decides for every rank
                shared = torch.tensor([elapsed], dtype=torch.float64, device=device)
                torch.distributed.broadcast(shared, src=0)
                elapsed = shared.item()
            out_of_time = config.max_minutes is not None and elapsed > 60 * config.max_minutes
            due = step % config.checkpoint_every == 0 or step == config.steps or out_of_time
            if due and main and planned_at != step:
                checkpoint_s = save(step, elapsed)
                window_outside += checkpoint_s
                spent["checkpoint"] += checkpoint_s
            if out_of_time:
                stopped_early = True
                break
    distributed.barrier(context)  # the last checkpoint is complete before any rank leaves
    if not main:
        return None
    session_step_s = clock() - session_start - sum(spent.values())
    shape = config.small_budget_model  # set and matched: the budget chose it (an explicit shape turns it off)
    fitted_shape = shape if shape and has_shape(run_config.model, shape) else None
    train_minutes = round((clock() - started) / 60, 3)  # the budget's clock, before the test evaluation
    final = weights()
    result = evaluate(final, data.test, data, device=device, breakdown=True)
    result["summary"].update({"steps": step, "epochs": round(stream.epochs, 3),
                              "train_minutes": train_minutes,
                              "stopped_early": stopped_early, "precision": precision,
                              "parameters": sum(p.numel() for p in model.parameters()),
                              "world_size": context.world_size, "average": config.average,
                              "batch_tokens": stream.max_tokens, "fitted_model": fitted_shape,
                              "padding": _padding(positions),
                              # inside the budget, outside the training steps: dev evaluations, checkpoints, the plan
                              "seconds_outside_steps": {name: round(value, 2) for name, value in spent.items()}})
    if meter is not None:
        result["summary"].update(meter.summary(session_flops + window_flops, session_step_s))
    if plan is not None:
        result["summary"]["plan"] = plan.to_dict()
    result["summary"]["cpu"] = cpu_capability()
    atomic_write_text(run_dir / "eval.json", json.dumps({**result["summary"], "by_length": result["by_length"],
                                                         "examples": result["examples"]}, indent=2))
    return result


def _fresh_model(run_config: RunConfig, device: torch.device, *, average: bool):
    """A model built from the global seed as it stands, its optimiser, and its weight average (or None)."""
    model = build_model(run_config).to(device)
    optimizer = make_optimizer(model, run_config.train, device)
    return model, optimizer, WeightAverage(model, run_config.train.ema_decay) if average else None


def _padding(positions: dict) -> float:
    """The share of the run's batch positions (source and target, every step so far) that are padding."""
    return round(1 - positions["real"] / max(positions["padded"], 1), 4)


def _make_plan(config: TrainConfig, calibration: Calibration, step: int, clock: Callable[[], float], *,
               started: float, dev: list, evaluate_dev: Callable[[list], object],
               save: Callable[[], float], batch_tokens: int | None = None, small: bool | None = None) -> BudgetPlan:
    """The plan after the calibration's last step: time a dev evaluation (scaled up from a probe of
    :data:`EVAL_PROBE_EXAMPLES` sentences) and a checkpoint (saved at this step), then :func:`fit_plan`.

    ``small``: whether an earlier estimate (of the configured model and batch) found a small budget;
    None: this calibration is the first, and its plan decides."""
    eval_s = 0.0
    if dev:
        probe = dev[: min(EVAL_PROBE_EXAMPLES, config.eval_examples)]
        began = clock()
        evaluate_dev(probe)
        eval_s = (clock() - began) * min(config.eval_examples, len(dev)) / len(probe)
    checkpoint_s = save()
    plan = fit_plan(config, step=step, elapsed_s=clock() - started, step_seconds=max(calibration.step_seconds, 1e-9),
                    eval_seconds=eval_s, checkpoint_seconds=checkpoint_s, batch_tokens=batch_tokens)
    schedule = fitted_schedule(config, small_budget(config, plan.budget_steps) if small is None else small)
    return plan if schedule is None else replace(plan, schedule=schedule)
