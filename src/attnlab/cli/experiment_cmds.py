"""``attnlab experiment blocks|pe|architectures``: the lecture's "Try This" as reproducible studies."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from . import app
from .common import check_writable_dir

experiment = typer.Typer(help="The lecture's Try This studies: report.md, results.json, figures.\n\n"
                              "Example: `attnlab experiment pe --quick --out runs/pe`", no_args_is_help=True)
app.add_typer(experiment, name="experiment")

OUT_HELP = "study directory: runs/, results.json, report.md, figures/ (re-running resumes)"
QUICK_HELP = "small preset that finishes in a few minutes (first contact, tests)"
WORKERS_HELP = "parallel training processes (default: number of cores)"


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{option} must list at least one value, e.g. 1,2,4")
    try:
        return [int(item) for item in items]
    except ValueError:
        raise ValueError(f"{option} takes integers separated by commas, got {text!r}") from None


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{option} must list at least one value")
    return items


def _command() -> str:
    return "attnlab " + " ".join(shlex.quote(arg) for arg in sys.argv[1:]) if sys.argv[1:] else None


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")


def _done(results: dict, out: Path) -> None:
    print(f"{len(results['trained_now'])} runs trained, {len(results['skipped_finished'])} already finished")
    print(f"report: {out / 'report.md'}")
    print(f"results: {out / 'results.json'}")


@experiment.command()
def blocks(
    out: Path = typer.Option(Path("experiments/blocks"), "--out", help=OUT_HELP),
    task: str = typer.Option(None, "--task", help="toy (default), reverse, sort, add, copy, fra-eng or a corpus path"),
    encoder_layers: str = typer.Option(None, "--encoder-layers", help="comma list (full default 1,2,4,6)"),
    decoder_layers: str = typer.Option(None, "--decoder-layers", help="comma list (default: the task's preset)"),
    seeds: int = typer.Option(None, "--seeds", help="seeds per configuration (full default 3)"),
    steps: int = typer.Option(None, "--steps", help="training steps per run"),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    workers: int = typer.Option(None, "--workers", help=WORKERS_HELP),
):
    """Sweep the number of encoder (and decoder) blocks over seeds.

    Example: `attnlab experiment blocks --task toy --encoder-layers 1,2,4,6 --seeds 3 --out runs/blocks`
    """
    from ..experiments import blocks_study

    _check_workers(workers)
    overrides = dict(task=task, encoder_layers=_ints(encoder_layers, "--encoder-layers"),
                     decoder_layers=_ints(decoder_layers, "--decoder-layers"), seeds=seeds, steps=steps)
    from ..experiments import settings_for

    settings_for("blocks", quick, **overrides)  # validate before touching the disk
    check_writable_dir(out)
    _done(blocks_study(out, quick=quick, workers=workers, command=_command(), **overrides), out)


@experiment.command()
def pe(
    out: Path = typer.Option(Path("experiments/pe"), "--out", help=OUT_HELP),
    pos_encoding: str = typer.Option(None, "--pos-encoding", help="comma list of sinusoidal,learned,none,rope,alibi"),
    tasks: str = typer.Option(None, "--tasks", "--task", help="comma list of reverse,sort,add,toy (copy also works)"),
    seeds: int = typer.Option(None, "--seeds", help="seeds per configuration (full default 3)"),
    steps: int = typer.Option(None, "--steps", help="training steps per run"),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    workers: int = typer.Option(None, "--workers", help=WORKERS_HELP),
):
    """Compare positional encodings: held-out score, length extrapolation, permutation probe, alignment.

    Example: `attnlab experiment pe --pos-encoding sinusoidal,learned,none --tasks reverse,sort --seeds 3`
    """
    from ..experiments import pe_study, settings_for

    _check_workers(workers)
    overrides = dict(encodings=_names(pos_encoding, "--pos-encoding"), tasks=_names(tasks, "--tasks"),
                     seeds=seeds, steps=steps)
    settings_for("pe", quick, **overrides)
    check_writable_dir(out)
    _done(pe_study(out, quick=quick, workers=workers, command=_command(), **overrides), out)


@experiment.command()
def architectures(
    out: Path = typer.Option(Path("experiments/architectures"), "--out", help=OUT_HELP),
    models: str = typer.Option(None, "--model", "--models", help="comma list of transformer,rnn-attention"),
    tasks: str = typer.Option(None, "--tasks", "--task", help="comma list (full default toy,reverse,fra-eng)"),
    seeds: int = typer.Option(None, "--seeds", help="seeds per configuration (full default 3)"),
    steps: int = typer.Option(None, "--steps", help="training steps per run"),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    workers: int = typer.Option(None, "--workers", help=WORKERS_HELP),
):
    """Transformer vs a GRU encoder-decoder with additive attention: score, tokens/s, time vs length.

    Example: `attnlab experiment architectures --quick --out runs/arch`
    """
    from ..experiments import architectures_study, settings_for

    _check_workers(workers)
    overrides = dict(models=_names(models, "--model"), tasks=_names(tasks, "--tasks"), seeds=seeds, steps=steps)
    settings_for("architectures", quick, **overrides)
    check_writable_dir(out)
    _done(architectures_study(out, quick=quick, workers=workers, command=_command(), **overrides), out)
