"""Checkpoints: safetensors weights + JSON, written atomically, never pickled.

A run directory holds the latest usable weights at all times::

    RUN/config.json              {"model": TransformerConfig, "train": TrainConfig, "task": ...}
    RUN/model.safetensors        the weights
    RUN/checkpoints/latest.json  {"step": 400, "dir": "step-00000400"}
    RUN/checkpoints/step-00000400/{model,optimizer,rng}.safetensors + state.json
    RUN/checkpoints/step-00000200/...   the previous checkpoint, kept as a fallback

Each file is written to a temporary name, flushed to disk (fsync) and renamed
into place, so a crash leaves either the old or the new file, never half of
one. A checkpoint directory is complete before ``latest.json`` points at it,
and ``state.json`` records the SHA-256 of each tensor file, so a flipped byte
is caught as surely as a truncated file. The two newest checkpoints are kept:
when the latest is unreadable, :func:`load_checkpoint` resumes from the one
before it and says so. A write that fails (a full disk) raises
:class:`CheckpointWriteError` and leaves the earlier checkpoints as they were.
Loading reads only tensors and JSON: nothing is unpickled.

    >>> save_checkpoint(run_dir, 400, model, optimizer, {"epoch": 1, "batch_index": 7})
    >>> state = load_checkpoint(run_dir, model, optimizer)   # state["step"] == 400
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..files import atomic_path, atomic_write_text, fsync_dir, staging_dir

__all__ = ["CheckpointError", "CheckpointWriteError", "save_weights", "load_weights",
           "save_checkpoint", "load_checkpoint", "latest_checkpoint", "KEPT_CHECKPOINTS"]

KEPT_CHECKPOINTS = 2  # the latest and the one before it, to fall back on
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated or does not fit the model."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a file-size limit); earlier ones are intact."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return self.strerror


def _write_safetensors(tensors: dict[str, torch.Tensor], path: Path | str,
                       metadata: dict[str, str] | None = None) -> None:
    """``save_file``, with its I/O failures raised as the ``OSError`` they are (errno kept)."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as error:  # e.g. "I/O error: No space left on device (os error 28)"
        found = re.search(r"os error (\d+)", str(error))
        code = int(found.group(1)) if found else errno.EIO
        raise OSError(code, os.strerror(code), str(path)) from error


def _unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with tied (shared) tensors stored once, as safetensors requires."""
    seen: dict[int, str] = {}
    state = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen and tensor.numel():
            continue
        seen[key] = name
        state[name] = tensor.detach().contiguous().cpu()
    return state


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Atomically write the model's weights as safetensors."""
    with atomic_path(path) as tmp:  # not _save_tensors: the metadata goes along
        _write_safetensors(_unique_state(model), tmp, metadata)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({error})") from None


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load safetensors weights into ``model``; a mismatch names the offending tensors."""
    tensors = _read_tensors(path)
    expected = model.state_dict()
    tied = {name for name in expected if name not in tensors and _is_tied(model, name)}
    missing = sorted(set(expected) - set(tensors) - tied)
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = sorted(name for name in tensors if name in expected and tensors[name].shape != expected[name].shape)
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}")
        if wrong_shape:
            name = wrong_shape[0]
            details.append(f"shape of {name}: file {tuple(tensors[name].shape)} vs model {tuple(expected[name].shape)}")
        raise CheckpointError(f"checkpoint {path} does not match the model: " + "; ".join(details))
    model.load_state_dict(tensors, strict=False)
    return model


def _is_tied(model: nn.Module, name: str) -> bool:
    target = model.state_dict()[name].data_ptr()
    return sum(t.data_ptr() == target for t in model.state_dict().values()) > 1


# --------------------------------------------------------------------------- optimizer state


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A safetensors file written through :func:`attnlab.files.atomic_path`.

    ``save_file`` itself creates its file with mode 0600, whatever the umask says.
    """
    with atomic_path(path) as tmp:
        _write_safetensors(tensors, tmp)


# --------------------------------------------------------------------------- the checkpoint directory


def _step_of(directory: Path) -> int:
    """``step-00000400`` → 400 (-1 for a name that is not a checkpoint's)."""
    prefix, _, number = directory.name.partition("-")
    return int(number) if prefix == "step" and number.isdigit() else -1


def _pointed(root: Path) -> tuple[Path | None, str | None]:
    """The directory ``latest.json`` names, or None and why not."""
    pointer = root / "latest.json"
    if not pointer.is_file():
        return None, f"{pointer} is missing"
    try:
        name = json.loads(pointer.read_text())["dir"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"{pointer} is corrupt ({error})"
    return root / name, None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint directory ``latest.json`` points at (None without one)."""
    root = Path(run_dir) / "checkpoints"
    if not (root / "latest.json").is_file():
        return None
    directory, problem = _pointed(root)
    if directory is None:
        raise CheckpointError(problem)
    return directory


def _prune(root: Path, newest: Path) -> None:
    """Keep ``newest`` and the newest checkpoint before it; remove the rest and stale staging dirs.

    A checkpoint with a *later* step than ``newest`` belongs to a run that was
    resumed from an earlier checkpoint (a fallback), so it is stale as well.
    """
    checkpoints = sorted((d for d in root.glob("step-*") if d.is_dir()), key=_step_of)
    older = [d for d in checkpoints if _step_of(d) < _step_of(newest)]
    keep = {newest.name, *(d.name for d in older[-(KEPT_CHECKPOINTS - 1):])}
    for directory in checkpoints:
        if directory.name not in keep:
            shutil.rmtree(directory, ignore_errors=True)
    for staging in root.glob(".step-*"):  # left behind by a process killed while it saved
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, *, extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
                    run_weights: nn.Module | None = None) -> Path:
    """Write a full training checkpoint, then point ``latest.json`` at it; keep it and the one before.

    ``extra_tensors`` (file name → tensors) go into the checkpoint directory beside the others, with
    their digests (a weight average's state); ``run_weights`` is the module whose weights
    ``RUN/model.safetensors`` gets (default: ``model``).

    Raises :class:`CheckpointWriteError` when a file cannot be written; the
    earlier checkpoints and ``latest.json`` are then as they were.
    """
    root = Path(run_dir) / "checkpoints"
    name = f"step-{step:08d}"
    final = root / name
    previous, _ = _pointed(root)
    kept = (f"the last complete checkpoint, {previous}, is intact: free space and continue with --resume"
            if previous is not None and previous.is_dir() else "no earlier checkpoint exists")
    staging = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = staging_dir(root, prefix=f".{name}.")
        save_weights(model, staging / "model.safetensors")
        optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
        _save_tensors(optim_tensors, staging / "optimizer.safetensors")
        rng = {"torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["torch_cuda"] = torch.cuda.get_rng_state()
        _save_tensors(rng, staging / "rng.safetensors")
        for file, tensors in (extra_tensors or {}).items():
            _save_tensors(tensors, staging / file)
        digests = {file: _sha256(staging / file) for file in (*TENSOR_FILES, *(extra_tensors or {}))}
        atomic_write_text(staging / "state.json",
                          json.dumps({"step": step, "optimizer": optim_meta, "sha256": digests, **state}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        fsync_dir(root)
        atomic_write_text(root / "latest.json", json.dumps({"step": step, "dir": name}))
    except OSError as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointWriteError(f"could not write checkpoint {name} in {root} "
                                   f"({error.strerror or error}); {kept}", error.errno) from error
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        save_weights(model if run_weights is None else run_weights, Path(run_dir) / "model.safetensors")
    except OSError as error:
        raise CheckpointWriteError(f"checkpoint {final} is complete, but {Path(run_dir) / 'model.safetensors'} "
                                   f"could not be updated ({error.strerror or error}): free space and continue "
                                   "with --resume", error.errno) from error
    _prune(root, final)
    return final


def _restore(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
             extra_tensors: tuple[str, ...] = ()) -> dict:
    """Load one checkpoint directory into ``model`` / ``optimizer`` / the RNG; CheckpointError if unreadable."""
    try:
        state = json.loads((directory / "state.json").read_text())
        optimizer_meta = state["optimizer"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint state {directory / 'state.json'} is missing or corrupt ({error})") from None
    for file, expected in state.get("sha256", {}).items():  # checkpoints written before digests have none
        path = directory / file
        if path.is_file() and _sha256(path) != expected:
            raise CheckpointError(f"checkpoint {path} is corrupt (its SHA-256 differs from the one recorded "
                                  "when it was written)")
    load_weights(model, directory / "model.safetensors")
    rng = _read_tensors(directory / "rng.safetensors")
    state["tensors"] = {file: _read_tensors(directory / file) for file in extra_tensors}
    try:
        if optimizer is not None:
            optimizer.load_state_dict(_unflatten_optimizer(_read_tensors(directory / "optimizer.safetensors"),
                                                           optimizer_meta))
        torch.set_rng_state(rng["torch_cpu"])
        if "torch_cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["torch_cuda"])
    except (KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {directory} does not fit this run ({error})") from None
    return state


def _warn_on_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                    warn: Callable[[str], None] = _warn_on_stderr, extra_tensors: tuple[str, ...] = ()) -> dict:
    """Restore weights, optimizer and RNG state; return the saved trainer ``state`` dict.

    Tries the checkpoint ``latest.json`` names, then the others, newest first.
    Falling back is announced by one ``warning:`` line (through ``warn``) that
    names the unreadable checkpoint and the one resumed from; when none is
    readable, CheckpointError lists why. The files named in ``extra_tensors``
    (written by :func:`save_checkpoint`'s ``extra_tensors``) come back in ``state["tensors"]``.
    """
    root = Path(run_dir) / "checkpoints"
    pointed, pointer_problem = _pointed(root)
    others = sorted((d for d in root.glob("step-*") if d.is_dir() and d != pointed), key=_step_of, reverse=True)
    candidates = ([pointed] if pointed is not None else []) + others
    if not candidates:
        raise CheckpointError(f"no checkpoint to resume in {run_dir} (checkpoints/latest.json is missing)")
    problems = [pointer_problem] if pointer_problem else []
    for directory in candidates:
        try:
            state = _restore(directory, model, optimizer, extra_tensors)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if problems:
            warn(f"warning: {'; '.join(problems)}; resuming from {directory} (step {state['step']}), "
                 "the newest readable checkpoint, instead")
        return state
    raise CheckpointError(f"no readable checkpoint in {root}: " + "; ".join(problems))
