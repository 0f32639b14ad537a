"""Claims about the plan a time budget buys, on a fake clock (no timing assertions), and about MFU."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import attnlab.training.trainer as trainer
from attnlab.core.model import TransformerConfig
from attnlab.training.budget import (BudgetPlan, Calibration, UtilisationMeter, fit_plan, fitted_batch_tokens,
                                     fitted_model, fitted_schedule, small_budget)
from attnlab.training.config import RunConfig, TrainConfig
from attnlab.training.schedule import learning_rate
from attnlab.training.trainer import BatchStream, train

TINY_MODEL = dict(src_vocab_size=1, tgt_vocab_size=1, d_model=32, num_heads=2, num_encoder_layers=1,
                  num_decoder_layers=1, d_ff=64, dropout=0.1)
CORPUS = dict(steps=1600, warmup=200, lr=2e-3, schedule="noam", cooldown=0.2, max_minutes=30, max_tokens=4096,
              batch_size=None, eval_every=400, checkpoint_every=200)


def budget_run(**overrides):
    """200 configured steps of noam (warmup 100, peak 3e-3, cool-down 0.2) in a 90-second budget."""
    settings = dict(steps=200, batch_size=16, lr=3e-3, schedule="noam", warmup=100, cooldown=0.2, max_minutes=1.5,
                    eval_every=50, checkpoint_every=50, log_every=5, eval_examples=20)
    settings.update(overrides)
    return RunConfig(model=TransformerConfig(**TINY_MODEL), train=TrainConfig(**settings), task="copy",
                     task_options={"num_train": 300, "num_test": 20, "train_lengths": (1, 6), "test_lengths": (1, 6)})


class FakeClock:
    """Seconds that pass only when the test says so: each training step takes ``step_s``."""

    def __init__(self, step_s=1.0):
        self.now, self.step_s = 0.0, step_s

    def __call__(self):
        return self.now


@pytest.fixture
def fake_steps(monkeypatch):
    """A fake clock that every optimiser step advances by its step_s; also counts the steps.

    With ``clock.per_tokens`` set, a step takes step_s · (the stream's batch tokens / per_tokens):
    a smaller batch, a proportionally shorter step; with ``clock.per_width``, step_s · (the model's
    d_model / per_width).
    """
    clock, plain_step, plain_next = FakeClock(), trainer.train_step, BatchStream.next
    clock.steps, clock.per_tokens, clock.batch_tokens, clock.per_width = 0, None, None, None

    def next_batch(stream):
        clock.batch_tokens = stream.max_tokens
        return plain_next(stream)

    def timed_step(*args, **kwargs):
        clock.now += (clock.step_s * (clock.batch_tokens / clock.per_tokens if clock.per_tokens else 1.0)
                      * (args[0].config.d_model / clock.per_width if clock.per_width else 1.0))
        clock.steps += 1
        return plain_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", timed_step)
    monkeypatch.setattr(BatchStream, "next", next_batch)
    return clock


def _records(run_dir, split="train"):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["split"] == split]


# --------------------------------------------------------------------------- fitting the plan


def test_a_budget_that_buys_545_steps_gets_the_warmup_peak_and_cooldown_stated_for_545():
    # 30 minutes, 13 steps done in 42.9 s, 3.3 s a step: 13 + floor((1800 - 42.9) / 3.3) = 13 + 532 = 545 steps
    plan = fit_plan(TrainConfig(**CORPUS), step=13, elapsed_s=42.9, step_seconds=3.3)
    assert (plan.steps, plan.budget_steps, plan.calibration_steps) == (545, 545, 13)
    assert plan.warmup == 68  # the preset's 200 of 1,600 steps, compressed to 545: 200 * 545 / 1600 = 68.1
    assert plan.peak_lr == 2e-3
    assert plan.cooldown_from_minute == 24.0  # the last fifth of 30 minutes
    assert plan.cooldown_from_step == 437  # floor(0.8 * 545) + 1
    assert plan.describe() == "plan: ≈ 545 steps of 4,096 tokens; warmup 68; peak 2e-3; cool-down from minute 24"


def test_the_expected_evaluations_and_checkpoints_are_paid_for_out_of_the_budget():
    # By step 538: one dev evaluation (step 400, 20 s) and three checkpoints (200, 400, the stop; 1 s each),
    # so 13 + floor((1800 - 42.9 - 23) / 3.3) = 13 + 525 = 538 steps; one more would not fit.
    plan = fit_plan(TrainConfig(**CORPUS), step=13, elapsed_s=42.9, step_seconds=3.3, eval_seconds=20.0,
                    checkpoint_seconds=1.0)
    assert plan.steps == 538 and plan.overhead_seconds == 23.0
    assert plan.warmup == 67  # 200 * 538 / 1600 = 67.25


def test_a_budget_that_buys_every_configured_step_keeps_the_configured_schedule():
    plan = fit_plan(TrainConfig(**CORPUS), step=13, elapsed_s=6.5, step_seconds=0.5)  # 13 + 3587 steps affordable
    assert (plan.steps, plan.budget_steps) == (1600, 3600)
    assert plan.warmup == 200 and plan.cooldown_from_step == 1281  # floor(0.8 * 1600) + 1: the steps run out first
    assert plan.describe().startswith("plan: 1,600 steps of 4,096 tokens (all the configured steps; the budget "
                                      "buys ≈ 3,600); warmup 200; peak 2e-3; cool-down from step 1,281")
    config = TrainConfig(**CORPUS)
    for step in (1, 13, 14, 150, 200, 900, 1400, 1600):  # and the schedule is exactly the configured one
        assert learning_rate(config, step, 0.3, plan) == learning_rate(config, step, 0.3)


def test_a_tiny_budget_keeps_a_warmup_of_twice_the_calibration():
    # 20 s a step: 13 + floor(1757.1 / 20) = 100 steps; 200 * 100 / 1600 = 12.5, below 2 * 13 = 26
    plan = fit_plan(TrainConfig(**CORPUS), step=13, elapsed_s=42.9, step_seconds=20.0)
    assert plan.steps == 100 and plan.warmup == 26


def test_a_budget_that_buys_under_half_the_steps_halves_the_batch_down_to_its_floor():
    config = TrainConfig(**CORPUS, min_batch_tokens=1024)
    # 545 steps of 4,096 tokens: 2,048 buys ~1,090 (at least half of 1,600), so it stops there
    assert fitted_batch_tokens(config, 545) == 2048
    assert fitted_batch_tokens(config, 258) == 1024  # 2,048 would buy ~516: halved again, to the floor
    assert fitted_batch_tokens(config, 100) == 1024  # never below the floor
    assert fitted_batch_tokens(config, 800) == 4096  # half the configured steps: the configured batch
    assert fitted_batch_tokens(config, 1578) == 4096  # the machine the preset was tuned on: unchanged
    assert fitted_batch_tokens(TrainConfig(**CORPUS), 258) == 4096  # no floor, no fitting
    assert fitted_batch_tokens(TrainConfig(steps=1600, batch_size=64, min_batch_tokens=1024), 10) is None
    plan = fit_plan(config, step=24, elapsed_s=60.0, step_seconds=1.6, batch_tokens=2048)
    assert plan.batch_tokens == 2048 and plan.describe().startswith("plan: ≈ 1,111 steps of 2,048 tokens; warmup 139")


def test_a_spent_budget_plans_no_more_steps_and_a_plan_needs_a_budget():
    assert fit_plan(TrainConfig(**CORPUS), step=13, elapsed_s=2000.0, step_seconds=3.3).steps == 13
    with pytest.raises(ValueError, match="time budget"):
        fit_plan(TrainConfig(steps=100), step=13, elapsed_s=1.0, step_seconds=1.0)


def test_the_plan_round_trips_through_config_json_and_rejects_unknown_keys():
    plan = fit_plan(TrainConfig(**CORPUS), step=13, elapsed_s=42.9, step_seconds=3.3)
    config = RunConfig.for_task("fra-eng", max_minutes=30.0)
    planned = RunConfig(model=config.model, train=config.train, task=config.task, plan=plan)
    assert RunConfig.from_dict(json.loads(json.dumps(planned.to_dict()))) == planned
    assert RunConfig.from_dict(config.to_dict()).plan is None
    with pytest.raises(ValueError, match=r"unknown plan config keys \['warmup_steps'\]"):
        BudgetPlan.from_dict({**plan.to_dict(), "warmup_steps": 3})


def test_the_calibration_skips_the_warm_in_and_stops_after_its_steps_or_its_seconds():
    calibration = Calibration(warm_in=2, steps=3, max_seconds=100.0)
    assert [calibration.add(s) for s in (50.0, 40.0, 1.0, 2.0, 3.0, 4.0)] == [False, False, False, False, True, False]
    assert calibration.step_seconds == 2.0  # (1 + 2 + 3) / 3: the warm-in and the step after the end are not counted
    slow = Calibration(warm_in=1, steps=10, max_seconds=60.0)
    assert [slow.add(s) for s in (9.0, 35.0, 30.0)] == [False, False, True]  # 65 s of timed steps: enough
    assert slow.step_seconds == 32.5


# --------------------------------------------------------------------------- the schedule under a plan


def test_the_planned_schedule_continues_from_the_calibration_without_a_jump():
    config = TrainConfig(**CORPUS)
    plan = fit_plan(config, step=13, elapsed_s=42.9, step_seconds=3.3)  # warmup 68 after 13 calibration steps
    for step in range(1, 14):  # the calibration: the configured ramp, peak * step / 200
        assert learning_rate(config, step, 0.0, plan) == learning_rate(config, step, 0.0)
    reached = 2e-3 * 13 / 200
    assert learning_rate(config, 14, 0.0, plan) == pytest.approx(reached + (2e-3 - reached) / (68 - 13))
    assert learning_rate(config, 40, 0.0, plan) == pytest.approx(reached + (2e-3 - reached) * 27 / 55)
    assert learning_rate(config, 68, 0.0, plan) == pytest.approx(2e-3)  # the peak at the planned warmup
    assert learning_rate(config, 272, 0.0, plan) == pytest.approx(2e-3 * math.sqrt(68 / 272))  # noam after it: 1e-3
    assert learning_rate(config, 500, 0.9, plan) == pytest.approx(2e-3 * math.sqrt(68 / 500) * 0.5)  # cool-down
    rates = [learning_rate(config, step, 0.0, plan) for step in range(1, 400)]
    largest_rise = max(b - a for a, b in zip(rates, rates[1:]))
    assert largest_rise == pytest.approx((2e-3 - reached) / 55)  # the ramp's own slope: nothing jumps


# --------------------------------------------------------------------------- the trainer on a fake clock


def test_a_timed_run_makes_the_plan_its_budget_buys_and_follows_it(tmp_path, fake_steps, capsys):
    result = train(tmp_path / "run", budget_run(), clock=fake_steps)
    # 1 s a step; the plan is made after 3 warm-in + 10 timed steps, at 13 s: 13 + floor(77 / 1) = 90 steps
    plan = RunConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text())).plan
    assert (plan.steps, plan.calibration_steps, plan.step_seconds) == (90, 13, 1.0)
    assert plan.warmup == 45  # 100 * 90 / 200
    assert (plan.cooldown_from_minute, plan.cooldown_from_step) == (1.2, 73)
    err = capsys.readouterr().err
    assert "plan: ≈ 90 steps of 16 sentences; warmup 45; peak 3e-3; cool-down from minute 1.2" in err
    lines = [line for line in err.splitlines() if line.startswith("train step ")]  # every 30 s of the clock
    assert lines[0].startswith("train step 5/200, ") and lines[-1].startswith("train step 80/≈90, ")
    assert result["summary"]["plan"] == plan.to_dict() and result["summary"]["steps"] == 91  # stops past 90 s
    lr = {record["step"]: record["lr"] for record in _records(tmp_path / "run")}
    reached = 3e-3 * 13 / 100  # where the calibration's ramp (the configured warmup of 100) left off
    assert lr[10] == pytest.approx(3e-3 * 10 / 100)  # a calibration step: a real step at the warmup rate
    assert lr[20] == pytest.approx(reached + (3e-3 - reached) * 7 / 32)
    assert lr[45] == pytest.approx(3e-3)
    assert lr[60] == pytest.approx(3e-3 * math.sqrt(45 / 60))  # 59 of 90 s used: before the cool-down
    assert lr[80] == pytest.approx(3e-3 * math.sqrt(45 / 80) * (1 - 79 / 90) / 0.2)  # the clock's cool-down


def test_the_minutes_a_run_reports_end_with_its_budget_not_with_the_test_evaluation(tmp_path, fake_steps,
                                                                                     monkeypatch):
    plain_evaluate = trainer.evaluate

    def slow_test_evaluation(*args, breakdown, **kwargs):
        if breakdown:  # the held-out test split, after the last step: 10 minutes on this clock
            fake_steps.now += 600
        return plain_evaluate(*args, breakdown=breakdown, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", slow_test_evaluation)
    summary = train(tmp_path / "run", budget_run(), progress=False, clock=fake_steps)["summary"]
    assert summary["steps"] == 91 and summary["train_minutes"] == pytest.approx(91 / 60, abs=1e-3)


def token_budget_run(**overrides):
    """budget_run with 128-token batches that a budget may halve down to 32."""
    return budget_run(batch_size=None, max_tokens=128, min_batch_tokens=32, **overrides)


def test_a_budget_that_buys_too_few_steps_trains_on_halved_batches_timed_again(tmp_path, fake_steps, capsys):
    fake_steps.per_tokens = 128  # 1 s a step at 128 tokens, 0.5 s at 64
    result = train(tmp_path / "run", token_budget_run(), clock=fake_steps)
    # after 13 steps (13 s): 13 + 77 = 90 steps of 128 tokens, under half of 200, so 64 tokens (~180 steps);
    # 1 warm-in + 10 timed steps at 0.5 s: the plan at step 24, 18.5 s: 24 + floor(71.5 / 0.5) = 167 steps
    plan = RunConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text())).plan
    assert (plan.batch_tokens, plan.calibration_steps, plan.step_seconds, plan.steps) == (64, 24, 0.5, 167)
    assert plan.warmup == 84  # 100 * 167 / 200 = 83.5
    err = capsys.readouterr().err
    assert "under half the 200 configured: batches of 64 tokens" in err
    assert "plan: ≈ 167 steps of 64 tokens; warmup 84" in err
    summary = result["summary"]
    assert summary["steps"] == 168 and summary["batch_tokens"] == 64  # 18.5 + 0.5 * 144 = 90.5 s > 90 s
    assert 0 < summary["padding"] < 1
    assert all(0 <= record["padding"] < 1 for record in _records(tmp_path / "run"))


def test_a_budget_with_enough_steps_keeps_its_batch(tmp_path, fake_steps):
    fake_steps.per_tokens, fake_steps.step_s = 128, 0.4  # 13 + floor(84.8 / 0.4) = 225 steps: all 200 fit
    result = train(tmp_path / "run", token_budget_run(), progress=False, clock=fake_steps)
    plan = RunConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text())).plan
    assert (plan.batch_tokens, plan.calibration_steps, plan.steps) == (128, 13, 200)
    assert result["summary"]["batch_tokens"] == 128


# --------------------------------------------------------------------------- the model a budget buys

SMALL = {"d_model": 16, "d_ff": 32}  # half the width of TINY_MODEL


def test_only_a_budget_under_a_quarter_of_the_steps_chooses_the_small_budget_model():
    config = TrainConfig(steps=200, batch_size=16, small_budget_model=SMALL)
    tiny = TransformerConfig(**TINY_MODEL)
    assert fitted_model(config, tiny, 49) == SMALL and fitted_model(config, tiny, 50) is None
    assert fitted_model(config, TransformerConfig(**{**TINY_MODEL, **SMALL}), 10) is None  # already that shape
    assert fitted_model(TrainConfig(steps=200, batch_size=16), tiny, 10) is None  # none configured


def test_the_fra_eng_preset_has_a_small_budget_model_that_an_explicit_shape_turns_off():
    assert RunConfig.for_task("fra-eng").train.small_budget_model == {"d_model": 192, "d_ff": 768}
    assert RunConfig.for_task("fra-eng", dropout=0.1).train.small_budget_model == {"d_model": 192, "d_ff": 768}
    for shape in ({"d_model": 128}, {"num_encoder_layers": 2}, {"num_heads": 8}):
        assert RunConfig.for_task("fra-eng", **shape).train.small_budget_model is None
    assert RunConfig.for_task("multi30k").train.small_budget_model is None  # not measured there
    preset = RunConfig.for_task("fra-eng").train.small_budget_model
    preset["d_model"] = 1  # a run's copy: the preset itself is not changed
    assert RunConfig.for_task("fra-eng").train.small_budget_model["d_model"] == 192
    for bad in ({"dropout": 1}, {"d_model": 0}, {}, {"d_model": 1.5}):
        with pytest.raises(ValueError, match="small_budget_model must map"):
            TrainConfig(small_budget_model=bad)
    # a shape that cannot be built (4 heads do not divide 190) is refused with the config, not mid-run
    with pytest.raises(ValueError, match=r"small_budget_model \{'d_model': 190\}: d_model \(190\) must be divisible"):
        RunConfig.for_task("fra-eng", small_budget_model={"d_model": 190})


def test_a_budget_under_a_quarter_of_the_steps_trains_the_small_budget_model_timed_again(tmp_path, fake_steps,
                                                                                          capsys):
    from attnlab.training.runs import build_model

    fake_steps.per_width, fake_steps.step_s = 32, 2.5  # 2.5 s a step at width 32, 1.25 s at 16
    result = train(tmp_path / "run", budget_run(small_budget_model=SMALL), clock=fake_steps)
    # after 13 steps (32.5 s): 13 + floor(57.5 / 2.5) = 36 steps, under a quarter of 200: width 16, from step 0,
    # with a calibration of its own (3 warm-in + 10 timed steps, 16.25 s): the plan at its step 13, 48.75 s:
    # 13 + floor(41.25 / 1.25) = 46 steps
    stored = RunConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text()))
    assert (stored.model.d_model, stored.model.d_ff) == (16, 32)
    plan = stored.plan
    assert (plan.steps, plan.calibration_steps, plan.step_seconds) == (46, 13, 1.25)
    assert plan.warmup == 26  # 100 * 46 / 200 = 23, raised to twice the calibration
    assert "under 25% of the 200 configured: training d_model 16, d_ff 32 instead" in capsys.readouterr().err
    summary = result["summary"]
    assert summary["fitted_model"] == SMALL and summary["steps"] == 47  # 48.75 + 1.25 * 34 = 91.25 s > 90 s
    assert fake_steps.steps == 13 + 47  # the larger model's steps were paid for out of the budget
    assert summary["parameters"] == sum(p.numel() for p in build_model(stored).parameters())
    records = _records(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(5, 48, 5))  # the log is the trained model's alone
    assert records[0]["lr"] == pytest.approx(3e-3 * 5 / 100)  # its own ramp, from its step 0


@pytest.mark.parametrize("step_s", [1.0, 0.4])  # 90 steps (under half: the batch rule's case); 225
def test_a_budget_that_buys_a_quarter_of_the_steps_keeps_the_configured_model(tmp_path, fake_steps, step_s):
    fake_steps.per_width, fake_steps.step_s = 32, step_s
    result = train(tmp_path / "run", budget_run(small_budget_model=SMALL), progress=False, clock=fake_steps)
    stored = RunConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text()))
    assert stored.model.d_model == 32 and result["summary"]["fitted_model"] is None
    assert fake_steps.steps == result["summary"]["steps"]


class Killed(Exception):
    pass



def killed_at_step(run_dir, fake_steps, monkeypatch, run=None, at=60):
    """Start a budget run in ``run_dir`` on a fresh fake clock and kill it at optimiser step ``at``
    (counting every step the process took); return the real step."""
    counted_step = trainer.train_step

    def dies(*args, **kwargs):
        if fake_steps.steps == at - 1:
            raise Killed
        return counted_step(*args, **kwargs)

    fake_steps.now, fake_steps.steps = 0.0, 0
    monkeypatch.setattr(trainer, "train_step", dies)
    with pytest.raises(Killed):
        train(run_dir, run or budget_run(), progress=False, clock=fake_steps)
    return counted_step


def test_a_resumed_run_keeps_its_plan_and_does_not_recalibrate(tmp_path, fake_steps, monkeypatch, capsys):
    fitted = []
    plain_fit = trainer.fit_plan
    monkeypatch.setattr(trainer, "fit_plan", lambda *a, **k: fitted.append(1) or plain_fit(*a, **k))
    train(tmp_path / "full", budget_run(), progress=False, clock=fake_steps)
    assert len(fitted) == 1

    counted_step = killed_at_step(tmp_path / "part", fake_steps, monkeypatch)
    planned = json.loads((tmp_path / "part" / "config.json").read_text())["plan"]
    assert len(fitted) == 2 and planned["steps"] == 90  # the first session calibrated and stored its plan

    monkeypatch.setattr(trainer, "train_step", counted_step)
    fake_steps.now, fake_steps.step_s = 1000.0, 3.0  # a later session on a slower machine: recalibrating would differ
    capsys.readouterr()
    resumed = train(tmp_path / "part", budget_run(), resume=True,
                    clock=lambda: fake_steps.now)  # resumes from the checkpoint at step 50 (50 s spent)
    assert len(fitted) == 2, "the resumed run calibrated again"
    assert "train step 55/≈90, " in capsys.readouterr().err  # its progress shows the stored plan's steps
    assert json.loads((tmp_path / "part" / "config.json").read_text())["plan"] == planned
    assert resumed["summary"]["plan"] == planned
    lr_full = {r["step"]: r["lr"] for r in _records(tmp_path / "full")}
    lr_part = {r["step"]: r["lr"] for r in _records(tmp_path / "part")}
    # step 55 starts at 50 + 4 * 3 = 62 s: the plan's noam with warmup 45, before the cool-down, as uninterrupted
    assert lr_part[55] == lr_full[55] == pytest.approx(3e-3 * math.sqrt(45 / 55))
    # step 60 starts at 50 + 9 * 3 = 77 s of 90: the clock (3 s a step now) brings the cool-down forward
    assert lr_part[60] == pytest.approx(3e-3 * math.sqrt(45 / 60) * (1 - 77 / 90) / 0.2)
    assert resumed["summary"]["steps"] == 64 and resumed["summary"]["stopped_early"]  # 50 + 3 * 14 = 92 s > 90 s


def test_a_resumed_run_with_the_same_clock_ends_as_the_uninterrupted_one(tmp_path, fake_steps, monkeypatch):
    import hashlib

    train(tmp_path / "full", budget_run(), progress=False, clock=fake_steps)
    counted_step = killed_at_step(tmp_path / "part", fake_steps, monkeypatch)
    monkeypatch.setattr(trainer, "train_step", counted_step)
    fake_steps.now = 0.0  # a new process: its clock starts anywhere; the checkpoint's 50 s are counted
    train(tmp_path / "part", budget_run(), resume=True, progress=False, clock=fake_steps)

    def digest(run):
        return hashlib.sha256((tmp_path / run / "model.safetensors").read_bytes()).hexdigest()

    assert digest("part") == digest("full")
    strip = [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu")} for r in _records(tmp_path / "full")]
    assert strip == [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu")}
                     for r in _records(tmp_path / "part")]


@pytest.mark.parametrize("killed_at", [60, 21])  # after the plan; in the second calibration (a checkpoint at 20)
def test_a_resumed_run_keeps_its_halved_batch_and_ends_as_the_uninterrupted_one(tmp_path, fake_steps, monkeypatch,
                                                                                killed_at):
    import hashlib

    fake_steps.per_tokens = 128
    run = token_budget_run(checkpoint_every=10 if killed_at == 21 else 50)
    train(tmp_path / "full", run, progress=False, clock=fake_steps)
    counted_step = killed_at_step(tmp_path / "part", fake_steps, monkeypatch, run, at=killed_at)
    state = json.loads(sorted((tmp_path / "part" / "checkpoints").glob("step-*/state.json"))[-1].read_text())
    assert state["batch_tokens"] == 64
    monkeypatch.setattr(trainer, "train_step", counted_step)
    fake_steps.now = 0.0
    resumed = train(tmp_path / "part", run, resume=True, progress=False, clock=fake_steps)
    assert resumed["summary"]["batch_tokens"] == 64

    def digest(name):
        return hashlib.sha256((tmp_path / name / "model.safetensors").read_bytes()).hexdigest()

    full = json.loads((tmp_path / "full" / "config.json").read_text())["plan"]
    part = json.loads((tmp_path / "part" / "config.json").read_text())["plan"]
    if killed_at == 60:  # resumed after the plan: the same plan, the same weights
        assert part == full and digest("part") == digest("full")
    else:  # resumed before the plan: the batch stays fitted, and only its timing is taken again
        assert part["batch_tokens"] == 64 and part["calibration_steps"] == 31  # 20 + 1 warm-in + 10 timed


# --------------------------------------------------------------------------- a small budget's schedule


def test_a_budget_under_a_quarter_of_the_steps_is_small_and_runs_the_small_budget_schedule():
    config = TrainConfig(**CORPUS, small_budget_schedule="constant")
    assert small_budget(config, 399) and not small_budget(config, 400)  # a quarter of 1,600
    assert fitted_schedule(config, small=True) == "constant" and fitted_schedule(config, small=False) is None
    assert fitted_schedule(TrainConfig(**CORPUS), small=True) is None  # none set: the configured schedule
    assert fitted_schedule(TrainConfig(**{**CORPUS, "schedule": "constant"}, small_budget_schedule="constant"),
                           small=True) is None  # already the configured one
    with pytest.raises(ValueError, match="unknown small_budget_schedule 'flat'"):
        TrainConfig(small_budget_schedule="flat")
    assert RunConfig.for_task("fra-eng").train.small_budget_schedule == "constant"
    assert RunConfig.for_task("multi30k").train.small_budget_schedule is None  # not measured there


def test_a_plan_that_holds_the_peak_ramps_as_before_then_stays_at_the_peak_until_the_cooldown():
    config = TrainConfig(**CORPUS, small_budget_schedule="constant")
    noam = fit_plan(config, step=13, elapsed_s=42.9, step_seconds=3.3)
    plan = replace(noam, schedule="constant")
    assert plan.describe() == "plan: ≈ 545 steps of 4,096 tokens; warmup 68; peak 2e-3 held; cool-down from minute 24"
    for step in (1, 13, 14, 40, 68):  # the calibration's ramp and the planned one are unchanged
        assert learning_rate(config, step, 0.0, plan) == learning_rate(config, step, 0.0, noam)
    for step in (69, 272, 500):  # then the peak, where noam decays (1e-3 at step 272)
        assert learning_rate(config, step, 0.5, plan) == 2e-3
    assert learning_rate(config, 500, 0.9, plan) == pytest.approx(2e-3 * 0.5)  # half-way through the cool-down
    stored = RunConfig(model=TransformerConfig(**TINY_MODEL), train=config, task="copy", plan=plan).to_dict()
    assert RunConfig.from_dict(stored).plan.schedule == "constant"
    assert BudgetPlan.from_dict({k: v for k, v in noam.to_dict().items() if k != "schedule"}) == noam  # older plans


# 400 steps configured: 90 s at 1 s a step buys ~90 (under a quarter); at 0.5 s ~180 (under half, not small)
@pytest.mark.parametrize("step_s, schedule", [(1.0, "constant"), (0.5, None)])
def test_the_trainer_holds_the_peak_only_for_a_small_budget(tmp_path, fake_steps, step_s, schedule):
    fake_steps.step_s = step_s
    train(tmp_path / "run", budget_run(steps=400, small_budget_schedule="constant"), progress=False, clock=fake_steps)
    plan = RunConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text())).plan
    assert plan.schedule == schedule
    after_warmup = [r for r in _records(tmp_path / "run") if r["step"] > plan.warmup]
    before_cooldown = [r["lr"] for r in after_warmup if r["step"] * step_s < 0.8 * 90]  # the clock's last fifth
    assert before_cooldown and all(lr == 3e-3 if schedule else lr < 3e-3 for lr in before_cooldown)
    assert after_warmup[-1]["lr"] < 3e-3 * 0.25  # the cool-down either way


def test_the_first_estimate_decides_the_schedule_and_a_resumed_run_keeps_it(tmp_path, fake_steps, monkeypatch):
    # 2 s a step at 128 tokens: 13 + floor(64 / 2) = 45 steps, a small budget, so batches of 32 tokens, which
    # buy about 140 steps: not small by their own estimate, and the peak is held all the same
    fake_steps.per_tokens, fake_steps.step_s = 128, 2.0
    run = token_budget_run(checkpoint_every=10, small_budget_schedule="constant")
    train(tmp_path / "full", run, progress=False, clock=fake_steps)
    full = json.loads((tmp_path / "full" / "config.json").read_text())["plan"]
    assert full["batch_tokens"] == 32 and full["schedule"] == "constant" and full["budget_steps"] >= 50
    # killed in the calibration of the smaller batches (a checkpoint at step 20): the checkpoint keeps the decision
    counted_step = killed_at_step(tmp_path / "part", fake_steps, monkeypatch, run, at=21)
    state = json.loads(sorted((tmp_path / "part" / "checkpoints").glob("step-*/state.json"))[-1].read_text())
    assert state["batch_tokens"] == 32 and state["small_budget"] is True
    monkeypatch.setattr(trainer, "train_step", counted_step)
    fake_steps.now = 0.0
    train(tmp_path / "part", run, resume=True, progress=False, clock=fake_steps)
    part = json.loads((tmp_path / "part" / "config.json").read_text())["plan"]
    assert part["calibration_steps"] == 31 and part["schedule"] == "constant"  # timed again, decided once


# killed at the small model's step 40, after the plan; at its step 12, in its calibration (a checkpoint at 10)
@pytest.mark.parametrize("killed_at", [13 + 40, 13 + 12])
def test_a_resumed_run_keeps_the_small_budget_model_and_ends_as_the_uninterrupted_one(tmp_path, fake_steps,
                                                                                       monkeypatch, killed_at):
    import hashlib

    fake_steps.per_width, fake_steps.step_s = 32, 2.5
    run = budget_run(small_budget_model=SMALL, checkpoint_every=10)
    train(tmp_path / "full", run, progress=False, clock=fake_steps)
    counted_step = killed_at_step(tmp_path / "part", fake_steps, monkeypatch, run, at=killed_at)
    monkeypatch.setattr(trainer, "train_step", counted_step)
    fake_steps.now = 0.0
    resumed = train(tmp_path / "part", run, resume=True, progress=False, clock=fake_steps)  # the run as configured
    assert resumed["summary"]["fitted_model"] == SMALL

    def digest(name):
        return hashlib.sha256((tmp_path / name / "model.safetensors").read_bytes()).hexdigest()

    full = json.loads((tmp_path / "full" / "config.json").read_text())
    part = json.loads((tmp_path / "part" / "config.json").read_text())
    assert part["model"] == full["model"] and part["model"]["d_model"] == 16
    if killed_at == 13 + 40:  # resumed after the plan: the same plan, the same weights
        assert part["plan"] == full["plan"] and digest("part") == digest("full")
    else:  # resumed before the plan: the small model is timed again (10 + 3 + 10 steps), not chosen again
        assert part["plan"]["calibration_steps"] == 23 and part["plan"]["step_seconds"] == 1.25


# --------------------------------------------------------------------------- model FLOP utilisation


def test_mfu_is_the_batches_model_flops_over_the_window_and_the_measured_matmul_rate(tmp_path, fake_steps,
                                                                                     monkeypatch):
    import attnlab.benchmarking.training as bench_training
    from attnlab.benchmarking import model_flops_per_step

    monkeypatch.setattr(bench_training, "matmul_gflops", lambda *args, **kwargs: 0.5)  # 0.5 GFLOP/s, "measured"
    run_config = budget_run(max_minutes=None, report_mfu=True, steps=20, eval_every=1000)
    result = train(tmp_path / "run", run_config, progress=False, clock=fake_steps)
    data = run_config.load_data()
    model_config = run_config.with_vocab(data.source.vocab_size, data.target.vocab_size).model
    stream = BatchStream.for_config(data.train, run_config.train)  # the same batches, replayed
    flops = [model_flops_per_step(model_config, *b.src.shape, b.tgt_in.shape[1]) for b in
             (stream.next() for _ in range(20))]
    records = _records(tmp_path / "run")
    for record in records:  # a window of 5 steps takes 5 fake seconds
        window = flops[record["step"] - 5: record["step"]]
        assert record["mfu"] == pytest.approx(sum(window) / 5.0 / 0.5e9, rel=1e-3)
    summary = result["summary"]
    assert summary["matmul_gflops"] == 0.5 and summary["matmul_precision"] == "fp32"
    assert summary["mfu"] == pytest.approx(sum(flops) / 20.0 / 0.5e9, rel=1e-3)
    assert summary["model_gflops_per_s"] == pytest.approx(sum(flops) / 20.0 / 1e9, rel=1e-3)


def test_the_meter_measures_bf16_only_where_it_is_native():
    import attnlab.training.hardware as hardware

    meter = UtilisationMeter(TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=16, num_heads=2),
                             "bf16", torch.device("cpu"), peak_gflops=10.0)
    native = hardware.resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert meter.peak_precision == ("bf16" if native else "fp32")
    assert meter.mfu(4e9, seconds=2.0) == pytest.approx(0.2) and meter.mfu(1.0, seconds=0.0) == 0.0


def test_the_bench_step_reports_achieved_gflops_and_mfu_against_the_hardware_limit(monkeypatch):
    import attnlab.benchmarking.training as bench_training
    from attnlab.benchmarking import model_flops_per_step, train_step_benchmark

    tiny = TransformerConfig(src_vocab_size=50, tgt_vocab_size=50, d_model=16, num_heads=2, num_encoder_layers=1,
                             num_decoder_layers=1, d_ff=32, dropout=0.1, max_len=64)
    monkeypatch.setattr(bench_training, "native_bf16", lambda device="cpu": False)  # as on an AVX2-only CPU
    result = train_step_benchmark(tiny, batch=4, src_len=6, tgt_len=5, warmup=0, repeats=1, memory=False,
                                  peak_gflops={"fp32": 40.0, "bf16": 1.0})
    flops = model_flops_per_step(tiny, 4, 6, 5)
    for row in result.rows:
        for name in ("attnlab", "torch"):
            achieved = flops / (row[f"{name}_ms"] / 1e3) / 1e9
            assert row[f"{name}_gflops_per_s"] == pytest.approx(achieved)
            assert row[f"{name}_mfu"] == pytest.approx(achieved / 40.0)  # emulated bf16 too: against fp32's rate
        assert row["mfu_against"] == "fp32" and row["matmul_gflops"] == 40.0


# --------------------------------------------------------------------------- a run beside another model


class ModelBeside:
    """A stand-in for the baseline a benchmark trains beside a run: each of its steps takes 5 fake seconds."""

    def __init__(self, clock):
        self.clock, self.name, self.step, self.clock_s, self.tokens, self.log = clock, "beside", 0, 0.0, 0, []
        self.done = False

    def train_step(self):
        self.clock.now += 5.0
        self.step += 1


def test_a_run_trained_beside_another_model_spends_its_budget_on_its_own_steps(tmp_path, fake_steps):
    from attnlab.benchmarking import attnlab_run

    result = train(tmp_path / "alone", budget_run(), progress=False, clock=fake_steps)
    alone, alone_examples = result["summary"], result["examples"][:5]
    fake_steps.now, beside = 0.0, ModelBeside(fake_steps)
    summary = attnlab_run(budget_run(), None, tmp_path / "beside", beside=[beside], wall=fake_steps)
    # one step beside it after each of its steps; its 90 s are its own (6 s per pair would give 15 steps)
    assert summary["steps"] == alone["steps"] == beside.step > 15
    assert summary["plan"] == alone["plan"] and summary["train_minutes"] == alone["train_minutes"]
    assert summary["final"]["loss"] == alone["loss"] and summary["final"]["examples"] == alone_examples
    config = json.loads((tmp_path / "beside" / "config.json").read_text())
    assert config["plan"] == alone["plan"]


def test_a_short_budget_score_on_the_way_is_refused_for_a_schedule_that_cools_down():
    from attnlab.benchmarking import Contender, run_interleaved

    cooling = Contender("cooling", None, None, TrainConfig(cooldown=0.2), None, budget_s=60.0)
    with pytest.raises(ValueError, match="cools down at the end of its budget"):
        run_interleaved([cooling], None, [], 0.5)
    assert cooling.step == 0  # refused before any step


def test_the_progress_line_of_a_model_beside_says_so_before_its_first_logged_loss():
    from attnlab.benchmarking import Contender
    from attnlab.benchmarking.translation import _status

    baseline = Contender("baseline", None, None, TrainConfig(), None, budget_s=60.0, clock_s=30.0, step=23, tokens=600)
    assert "baseline: step 23, 0.5 min, no loss logged yet, 20 tok/s" in _status([baseline])
    baseline.log.append({"step": 100, "loss": 4.25})
    assert "4.250 loss" in _status([baseline]) and "nan" not in _status([baseline])
