"""`attnlab train`, `eval`, `info`: make a run directory, score it, describe it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import check_writable_dir, fail

# A run's settings are the fields of RunConfig.for_task (model, training, task options); a CLI flag or
# TOML key is the field's own name, except these, which keep their shorter command-line names.
FLAG_ALIASES = {"heads": "num_heads", "encoder_layers": "num_encoder_layers", "decoder_layers": "num_decoder_layers",
                "src": "src_lang", "tgt": "tgt_lang", "model": "architecture"}
NON_NEGATIVE_FLAGS = ("steps", "warmup", "batch_size", "max_tokens", "min_batch_tokens")  # named by flag in the error message


def setting_fields() -> dict[str, str]:
    """Every CLI flag / TOML key (with underscores) that sets part of a run → the field it sets."""
    from ..training.config import model_fields, task_option_names, train_fields

    flag_of = {field_name: flag for flag, field_name in FLAG_ALIASES.items()}
    names = ("task", "architecture", *model_fields(), *train_fields(), *task_option_names())
    return {flag_of.get(name, name): name for name in names}


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    if not path.is_file():
        fail(f"--config {path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        fail(f"--config {path}: not valid TOML ({error})")
    settings = {key.replace("-", "_"): value for key, value in data.items()}
    allowed = setting_fields()
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        fail(f"--config {path}: unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}")
    return settings


def _settings(config: Optional[Path], given: dict) -> dict:
    """The TOML file's settings, then the flags given on the command line (those not None) over them."""
    flags = setting_fields()
    settings = _read_toml(config) if config else {}
    settings.update({flag: value for flag, value in given.items() if flag in flags and value is not None})
    return settings


def build_run_config(settings: dict):
    """A RunConfig from flag-named ``settings`` (a TOML file, then CLI flags): preset defaults + these.

        >>> build_run_config({"task": "reverse", "heads": 2, "train_lengths": "1-8"}).model.num_heads
        2
    """
    from ..data import parse_length_range
    from ..training.config import RunConfig

    fields_of = setting_fields()
    overrides = {}
    for flag, value in settings.items():
        if value is None:
            continue
        if flag not in fields_of:
            raise ValueError(f"unknown setting {flag!r}; allowed: {', '.join(sorted(fields_of))}")
        if flag in ("train_lengths", "test_lengths") and isinstance(value, str):
            try:
                value = parse_length_range(value)
            except ValueError as error:
                fail(f"--{flag.replace('_', '-')}: {error}")
        if flag in NON_NEGATIVE_FLAGS and isinstance(value, int) and value < 0:
            fail(f"--{flag.replace('_', '-')} must not be negative, got {value}")
        overrides[fields_of[flag]] = value
    task = str(overrides.pop("task", None) or "reverse")
    return RunConfig.for_task(task, **overrides)


def _prepare_run_dir(out: Path, *, resume: bool, force: bool, check_only: bool = False) -> None:
    existing = out.exists() and any(out.iterdir()) if out.is_dir() else out.exists()
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    if resume:
        if not (out / "config.json").is_file():
            fail(f"--resume: {out} is not an attnlab run (no config.json); start it without --resume")
        return
    if existing and not force:
        fail(f"run directory {out} already exists; pass --resume to continue it or --force to replace it")
    check_writable_dir(out, "run directory")
    if existing and force and not check_only:
        shutil.rmtree(out)


@app.command()
def train(
    ctx: typer.Context,
    task: Optional[str] = typer.Option(None, "--task", "-t", help="copy, reverse, sort, add, toy, fra-eng, multi30k, or a corpus path"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory to create (or continue with --resume)"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file of settings; flags override it"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    model: Optional[str] = typer.Option(None, "--model", help="transformer (default) or rnn-attention (GRU + Bahdanau)"),
    encoder_layers: Optional[int] = typer.Option(None, help="number of encoder blocks"),
    decoder_layers: Optional[int] = typer.Option(None, help="number of decoder blocks"),
    d_model: Optional[int] = typer.Option(None, help="model width"),
    heads: Optional[int] = typer.Option(None, help="attention heads (must divide d_model)"),
    d_ff: Optional[int] = typer.Option(None, help="feed-forward width"),
    dropout: Optional[float] = typer.Option(None, help="dropout probability"),
    pos_encoding: Optional[str] = typer.Option(None, help="sinusoidal, learned, none, rope or alibi"),
    norm_first: Optional[bool] = typer.Option(None, "--norm-first/--norm-last", help="pre-LN (LayerNorm before each sublayer; the corpus presets) or the paper's post-LN (the synthetic and toy presets)"),
    activation: Optional[str] = typer.Option(None, help="relu or gelu"),
    max_len: Optional[int] = typer.Option(None, help="longest sequence a learned encoding supports"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps"),
    batch_size: Optional[int] = typer.Option(None, help="sentences per batch"),
    max_tokens: Optional[int] = typer.Option(None, help="padded tokens per batch (instead of --batch-size)"),
    min_batch_tokens: Optional[int] = typer.Option(None, help="with --max-minutes: a budget that buys under half the steps halves the batch, down to this"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    schedule: Optional[str] = typer.Option(None, help="noam, cosine or constant"),
    warmup: Optional[int] = typer.Option(None, help="warmup steps"),
    cooldown: Optional[float] = typer.Option(None, help="final fraction of the run over which the lr falls linearly to 0"),
    label_smoothing: Optional[float] = typer.Option(None, help="label smoothing (0 to disable)"),
    seed: Optional[int] = typer.Option(None, help="random seed (data, init, dropout)"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or mps"),
    precision: Optional[str] = typer.Option(None, help="fp32, bf16 (autocast), or auto (bf16 where the hardware is native)"),
    eval_every: Optional[int] = typer.Option(None, help="evaluate on the dev split every N steps"),
    checkpoint_every: Optional[int] = typer.Option(None, help="checkpoint every N steps"),
    max_minutes: Optional[float] = typer.Option(None, help="stop (and evaluate) after this many minutes; the plan "
                                                        "(warmup, batch, on fra-eng the model width) is fitted to it"),
    train_lengths: Optional[str] = typer.Option(None, help="synthetic tasks: training lengths, e.g. 1-12"),
    test_lengths: Optional[str] = typer.Option(None, help="synthetic tasks: test lengths, e.g. 13-24"),
    num_train: Optional[int] = typer.Option(None, help="synthetic tasks: training examples"),
    src: Optional[str] = typer.Option(None, help="corpora: source language (en, fr, de)"),
    tgt: Optional[str] = typer.Option(None, help="corpora: target language"),
    lowercase: Optional[bool] = typer.Option(None, "--lowercase/--keep-case", help="corpora: lowercase text"),
    tokenizer: Optional[str] = typer.Option(None, help="bpe or word"),
    vocab_size: Optional[int] = typer.Option(None, help="tokenizer vocabulary size"),
    max_pairs: Optional[int] = typer.Option(None, help="corpora: read at most this many pairs"),
    strict: Optional[bool] = typer.Option(None, "--strict/--lenient", help="corpora: stop at a malformed line"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                           help="torch.compile the training step (off by default: slower on small CPU models)"),
    average: Optional[str] = typer.Option(None, help="none, or ema: evaluate and save a moving average of the weights"),
    ema_decay: Optional[float] = typer.Option(None, help="decay of the moving average (with --average ema)"),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="data-parallel processes: launches torchrun (DDP; gloo on CPU, NCCL on GPU)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Train a model on a task; writes config.json, model.safetensors, metrics.jsonl, eval.json.

    Examples:

        attnlab train --task reverse --out runs/reverse

        attnlab train --task reverse --pos-encoding none --out runs/reverse-nope

        attnlab train --task toy --encoder-layers 4 --out runs/toy-4

        attnlab train --task fra-eng --max-minutes 30 --out runs/fra-eng

        attnlab train --out runs/reverse --resume

        attnlab train --task fra-eng --nproc 2 --out runs/fra-eng-ddp   # = torchrun --nproc-per-node 2 -m attnlab train ...
    """
    given = dict(locals())  # the parsed command line, before any other local name exists
    from ..training import distributed
    from ..training.runs import read_config
    from ..training.trainer import train as run_training

    if nproc is not None:
        _prepare_run_dir(out, resume=resume, force=force, check_only=True)  # bad input fails before any launch
        if not resume:
            build_run_config(_settings(config, given))
        _launch_torchrun(nproc, ctx)
        return
    context = distributed.from_environment()
    if context.is_main:  # under torchrun only rank 0 touches the run directory
        _prepare_run_dir(out, resume=resume, force=force, check_only=True)
    if resume:
        run_config = read_config(out)
        if steps is not None:
            run_config.train.steps = steps
    else:
        run_config = build_run_config(_settings(config, given))
    data = run_config.load_data()  # a corpus that cannot be read fails here, before anything is touched
    if context.is_main:
        _prepare_run_dir(out, resume=resume, force=force)  # --force replaces the old run only now
        ranks = f" on {context.world_size} processes" if context.enabled else ""
        print(f"training {run_config.architecture} on {run_config.task}{ranks} → {out}", file=sys.stderr)
    result = run_training(out, run_config, resume=resume, progress=not quiet, data=data)
    if result is None:  # a rank other than 0
        return
    summary = result["summary"]
    print(json.dumps(summary, indent=2))
    print(f"run written to {out} (eval.json, model.safetensors, metrics.jsonl)", file=sys.stderr)


def _launch_torchrun(nproc: int, ctx: typer.Context) -> None:
    """Run this same ``train`` command under ``torchrun --nproc-per-node nproc`` (one node)."""
    from ..training.distributed import torchrun_command

    if nproc < 1:
        fail(f"--nproc must be >= 1, got {nproc}")
    args = ["train"]
    for param in ctx.command.params:  # the command line again, from the parsed values, without --nproc
        value = ctx.params.get(param.name)
        if param.name == "nproc" or value is None or (param.is_flag and value == param.default):
            continue
        if param.is_flag:
            args.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            args += [param.opts[0], str(value)]
    command = torchrun_command(nproc, args)
    print("launching: " + " ".join(command), file=sys.stderr)
    status = subprocess.run(command).returncode
    if status != 0:
        raise typer.Exit(status)


@app.command("eval")
def evaluate_run(
    run: Path = typer.Argument(..., help="run directory"),
    split: str = typer.Option("test", help="test or dev"),
    beam: int = typer.Option(1, help="beam size (1 = greedy)"),
    length_penalty: float = typer.Option(0.6, help="beam search: GNMT length penalty α (0 = raw log-probabilities)"),
    weights: str = typer.Option("run", help="run (model.safetensors: the average, if the run keeps one) or "
                                            "checkpoint (the trained weights of the latest checkpoint)"),
    data: Optional[Path] = typer.Option(None, "--data", help="a parallel corpus to score instead of the run's split"),
    limit: Optional[int] = typer.Option(None, help="score only the first N sentences"),
):
    """Score a trained run on held-out data; prints JSON.

    Examples:

        attnlab eval runs/reverse

        attnlab eval runs/fra-eng --beam 4 --split dev

        attnlab eval runs/fra-eng --beam 4 --length-penalty 1.0

        attnlab eval runs/fra-eng-ema --weights checkpoint   # the weights before averaging
    """
    from ..data import load_task
    from ..training.evaluation import evaluate
    from ..training.runs import load_run

    if split not in ("test", "dev"):
        fail(f"--split must be test or dev, got {split!r}")
    if beam < 1:
        fail(f"--beam must be >= 1, got {beam}")
    if limit is not None and limit < 1:
        fail(f"--limit must be >= 1, got {limit}")
    if not length_penalty >= 0:
        fail(f"--length-penalty must be >= 0, got {length_penalty}")
    if weights not in ("run", "checkpoint"):
        fail(f"--weights must be run or checkpoint, got {weights!r}")
    loaded = load_run(run)
    config = loaded.config
    if weights == "checkpoint":
        from ..training.checkpoint import latest_checkpoint, load_weights

        directory = latest_checkpoint(run)
        if directory is None:
            fail(f"{run} has no checkpoint (checkpoints/latest.json is missing)")
        load_weights(loaded.model, directory / "model.safetensors")
    if data is not None:
        task_data = load_task(str(data), seed=config.train.seed, codecs=(loaded.source, loaded.target),
                              **_corpus_options(config.task_options))
    else:
        task_data = config.load_data()
    examples = getattr(task_data, split)
    if limit is not None:
        examples = examples[:limit]
    result = evaluate(loaded.model, examples, task_data, beam=beam, length_penalty=length_penalty, breakdown=True)
    print(json.dumps({**result["summary"], "split": split, "beam": beam,
                      **({"length_penalty": length_penalty} if beam > 1 else {}), "weights": weights,
                      "by_length": result["by_length"],
                      "examples": result["examples"]}, indent=2))


def _corpus_options(options: dict) -> dict:
    keep = ("src_lang", "tgt_lang", "lowercase", "normalize", "strict")
    return {k: v for k, v in options.items() if k in keep}


@app.command()
def info(run: Path = typer.Argument(..., help="run directory")):
    """Describe a run: configuration, parameter count, training progress, final metrics and the CPUs.

    Example:

        attnlab info runs/reverse
    """
    from ..training.hardware import cpu_capability
    from ..training.runs import load_run

    loaded = load_run(run)
    records = []
    metrics_path = run / "metrics.jsonl"
    if metrics_path.is_file():
        records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train_records = [r for r in records if r.get("split") == "train"]
    summary = {
        "run": str(run),
        "architecture": loaded.config.architecture,
        "task": loaded.config.task,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "model": loaded.config.model.to_dict(),
        "train": {f.name: getattr(loaded.config.train, f.name) for f in fields(loaded.config.train)},
        "progress": {"last_step": train_records[-1]["step"] if train_records else 0,
                     "last_loss": train_records[-1]["loss"] if train_records else None,
                     "mean_tokens_per_s": round(sum(r["tokens_per_s"] for r in train_records) / len(train_records), 1)
                     if train_records else None},
    }
    eval_path = run / "eval.json"
    final = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
    if final:
        summary["eval"] = {k: v for k, v in final.items() if k not in ("by_length", "examples", "cpu")}
    # The CPU decides what bf16 costs: the one the run trained on (recorded at its end) and this one.
    summary["cpu"] = {"trained_on": final.get("cpu"), "this_machine": cpu_capability()}
    print(json.dumps(summary, indent=2))
