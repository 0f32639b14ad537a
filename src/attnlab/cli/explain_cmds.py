"""``attnlab experiment explain`` and ``attnlab experiment heads RUN``: how far to trust each explanation."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import check_writable_dir
from .experiment_cmds import OUT_HELP, QUICK_HELP, WORKERS_HELP, _check_workers, _command, _names, experiment


@experiment.command()
def explain(
    out: Path = typer.Option(Path("experiments/explain"), "--out", help=OUT_HELP),
    task: str = typer.Option("toy", "--task", help="toy (the corpus with gold word alignments)"),
    methods: str = typer.Option(None, "--methods", help="comma list of raw,rollout,flow,grad_x_input,"
                                                        "integrated_gradients (ig),value_norm (default: all)"),
    seeds: int = typer.Option(None, "--seeds", help="toy runs, one per seed (full default 3)"),
    steps: int = typer.Option(None, "--steps", help="training steps per run"),
    sentences: int = typer.Option(None, "--sentences", help="test sentences explained per run (full default 40)"),
    ig_steps: int = typer.Option(None, "--ig-steps", help="integration steps of integrated gradients"),
    fra_eng_run: Path = typer.Option(None, "--fra-eng-run", help="a trained fra-eng run: add its deletion curves"),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    workers: int = typer.Option(None, "--workers", help=WORKERS_HELP),
):
    """Score every explanation method: AER against gold alignments, deletion/insertion AOPC, randomisation check.

    Example: `attnlab experiment explain --task toy --fra-eng-run runs/fra-eng --out runs/explain`
    """
    from ..experiments.explain_study import explain_settings, explain_study

    _check_workers(workers)
    if task != "toy":
        raise ValueError(f"--task {task!r}: the explain study needs gold word alignments, which only the toy corpus "
                         "has; for a corpus, give its trained run with --fra-eng-run (deletion curves)")
    overrides = dict(methods=_names(methods, "--methods"), seeds=seeds, steps=steps, sentences=sentences,
                     ig_steps=ig_steps, fra_eng_run=None if fra_eng_run is None else str(fra_eng_run))
    explain_settings(quick, **overrides)  # validate before touching the disk
    check_writable_dir(out)
    results = explain_study(out, quick=quick, workers=workers, command=_command(), **overrides)
    print(f"{len(results['trained_now'])} runs trained, {len(results['skipped_finished'])} already finished")
    print(f"report: {out / 'report.md'}")
    print(f"results: {out / 'results.json'}")


@experiment.command()
def heads(
    run: Path = typer.Argument(..., help="a trained run directory (attnlab train --out RUN)"),
    out: Path = typer.Option(Path("experiments/heads"), "--out", help="study directory: heads/, results.json, "
                                                                     "report.md, figures/ (re-running resumes)"),
    sentences: int = typer.Option(None, "--sentences", help="test sentences translated per head (full default 200)"),
    mode: str = typer.Option("zero", "--mode", help="zero (remove the head) or mean (its mean over dev sentences)"),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    workers: int = typer.Option(None, "--workers", help=WORKERS_HELP),
):
    """Ablate each attention head alone: BLEU and loss change, beside each cross-attention head's AER.

    Example: `attnlab experiment heads runs/toy --out runs/heads`
    """
    from ..experiments.heads_study import heads_study
    from ..inspection.interventions import ABLATION_MODES
    from ..training.runs import read_config

    _check_workers(workers)
    if mode not in ABLATION_MODES:
        raise ValueError(f"unknown --mode {mode!r}; allowed: {', '.join(ABLATION_MODES)}")
    if sentences is not None and sentences < 1:
        raise ValueError(f"--sentences must be >= 1, got {sentences}")
    if not run.is_dir():
        raise ValueError(f"RUN {run} is not a directory")
    read_config(run)  # a run directory, or a one-line error
    if not (run / "model.safetensors").is_file():
        raise ValueError(f"{run} has no trained weights yet (model.safetensors is missing)")
    check_writable_dir(out)
    heads_study(run, out, quick=quick, sentences=sentences, mode=mode, workers=workers, command=_command())
    print(f"report: {out / 'report.md'}")
    print(f"results: {out / 'results.json'}")
