"""Running a sweep: many trainings, in parallel processes, resumable.

A sweep is a list of :class:`Job` s — one training run each (a :class:`~attnlab.training.config.RunConfig`,
the labels that place it in the study's table, and the probes to measure afterwards). Each job
gets ``OUT/runs/NAME/``, an ordinary run directory. A run is *finished* when its ``eval.json``
exists; re-running the sweep skips finished runs, resumes a run from its last checkpoint, and
starts over only a run that never wrote one. Probes (cheap measurements on the trained model)
are cached in ``probes.json`` beside ``eval.json``.

Trainings run in up to ``workers`` processes (``spawn``, one PyTorch thread each, so two
processes on two cores do not fight over threads); ``workers=1`` runs in this process.

On a terminal one bar counts finished runs. Elsewhere (``nohup``, a batch job) each training
prints its own plain progress lines, headed by its run's name, and the sweep a line as each
run starts and ends (:mod:`attnlab.training.progress`).

    >>> outcome = run_sweep(Path("out"), jobs, workers=2)
    >>> outcome.trained, outcome.skipped          # names of runs trained now / already finished
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from ..files import atomic_write_text

__all__ = ["Job", "SweepOutcome", "run_sweep", "is_finished", "default_workers", "trainings_started"]

# How many trainings this process has started through run_sweep (tests count resumes with it).
trainings_started = 0


@dataclass
class Job:
    name: str  # the run directory's name under OUT/runs/
    run: dict  # RunConfig.to_dict()
    labels: dict  # e.g. {"encoder_layers": 2, "seed": 1}: where the run sits in the tables
    probes: dict = field(default_factory=dict)  # probe name → options (see experiments.probes)


@dataclass
class SweepOutcome:
    records: list[dict]  # one per job, in job order
    trained: list[str]  # jobs that needed training in this call
    skipped: list[str]  # jobs already finished before this call


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / "eval.json").is_file()


def _mean_tokens_per_s(metrics_path: Path) -> float | None:
    rates = []
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if "split" in record and record["split"] == "train" and "tokens_per_s" in record:
                rates.append(record["tokens_per_s"])
    # The first window includes start-up (first batches, allocator warm-up): leave it out when we can.
    return round(statistics.median(rates[1:] if len(rates) > 2 else rates), 1) if rates else None


def _curve(metrics_path: Path) -> list[list[float]]:
    points = []
    for line in metrics_path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("split") == "train":
            points.append([record["step"], record["loss"]])
    return points


def execute_job(job: Job, out_dir: str, threads: int | None = None, progress: bool = False) -> dict:
    """Train (or resume) one job, measure its probes, and return its record. Runs in a worker.

    ``progress``: the training's plain progress lines (a sweep without a terminal)."""
    import torch

    from ..training.config import RunConfig
    from ..training.trainer import train
    from .probes import run_probes

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(out_dir) / "runs" / job.name
    if not is_finished(run_dir):
        resume = (run_dir / "checkpoints" / "latest.json").is_file()
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # started but never checkpointed: nothing worth keeping
        train(run_dir, RunConfig.from_dict(job.run), resume=resume, progress=progress, progress_label=job.name)
    probes_path = run_dir / "probes.json"
    probes = json.loads(probes_path.read_text()) if probes_path.is_file() else {}
    missing = {name: options for name, options in job.probes.items() if name not in probes}
    if missing:
        probes.update(run_probes(run_dir, missing))
        atomic_write_text(probes_path, json.dumps(probes, indent=2))
    evaluation = json.loads((run_dir / "eval.json").read_text())
    summary = {key: value for key, value in evaluation.items() if key not in ("by_length", "examples")}
    metrics_path = run_dir / "metrics.jsonl"
    return {"name": job.name, "labels": job.labels, "summary": summary, "by_length": evaluation.get("by_length", {}),
            "tokens_per_s": _mean_tokens_per_s(metrics_path), "curve": _curve(metrics_path), "probes": probes}


def run_sweep(out_dir: Path, jobs: list[Job], *, workers: int | None = None, progress: bool = True,
              title: str = "experiment", on_train_start: Callable[[Job], None] | None = None) -> SweepOutcome:
    """Run every job (skipping finished ones), ``workers`` at a time, with one overall progress bar."""
    out_dir = Path(out_dir)
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError("every job in a sweep needs its own name")
    workers = max(1, min(workers or default_workers(), len(jobs) or 1))
    skipped = [job.name for job in jobs if is_finished(out_dir / "runs" / job.name)]
    trained = [job.name for job in jobs if job.name not in skipped]
    records: dict[str, dict] = {}

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..training.progress import format_duration, is_interactive

    console = Console(stderr=True)
    plain = progress and not is_interactive(console)  # no live bar: plain lines, from the sweep and its trainings
    bar = Progress(TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn(), console=console, disable=not progress or plain)
    clock_start = time.monotonic()

    def say(text: str) -> None:
        if plain:
            print(f"{title}: {len(records)}/{len(jobs)} runs done, elapsed "
                  f"{format_duration(time.monotonic() - clock_start)}; {text}", file=sys.stderr, flush=True)

    def started(job: Job) -> None:
        global trainings_started
        if job.name in trained:
            trainings_started += 1
            if on_train_start:
                on_train_start(job)
            say(f"training {job.name}")

    def finished(job: Job, record: dict) -> None:
        records[job.name] = record
        bar.update(task, advance=1, description=f"done: {job.name}")
        say(f"done: {job.name}")

    with bar:
        task = bar.add_task(f"{len(skipped)} already finished", total=len(jobs))
        say(f"{len(skipped)} already finished, {len(trained)} to train with {workers} worker(s)")
        if workers == 1:
            for job in jobs:
                started(job)
                finished(job, execute_job(job, str(out_dir), progress=plain))
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                pending = {}
                queue = list(jobs)
                while queue or pending:
                    while queue and len(pending) < workers:
                        job = queue.pop(0)
                        started(job)
                        pending[pool.submit(execute_job, job, str(out_dir), 1, plain)] = job
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = pending.pop(future)
                        finished(job, future.result())
    return SweepOutcome([records[name] for name in names], trained, skipped)
