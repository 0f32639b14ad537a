"""Checkpoints: safetensors weights + JSON, written atomically, never pickled.

A run directory holds the latest usable weights at all times::

    RUN/config.json              {"model": TransformerConfig, "train": TrainConfig, "task": ...}
    RUN/model.safetensors        the weights
    RUN/checkpoints/latest.json  {"step": 400, "dir": "step-00000400"}
    RUN/checkpoints/step-00000400/{model,optimizer}.safetensors + state.json

Each file is written to a temporary name, flushed to disk (fsync) and renamed
into place, so a crash leaves either the old or the new file, never half of
one. A checkpoint directory is complete before ``latest.json`` points at it.
Loading reads only tensors and JSON: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..files import atomic_path, atomic_write_text, fsync_dir, staging_dir

__all__ = ["CheckpointError", "save_weights", "load_weights",
           "save_checkpoint", "load_checkpoint", "latest_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated or does not fit the model."""


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
    with atomic_path(path) as tmp:
        save_file(_unique_state(model), tmp, metadata=metadata)


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


def _save_synced(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors file flushed to disk (inside a staging directory that is renamed as a whole)."""
    save_file(tensors, str(path))
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict) -> Path:
    """Write a full training checkpoint, then point ``latest.json`` at it; keep only the latest."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    staging = staging_dir(root, prefix=f".{name}.")
    try:
        save_weights(model, staging / "model.safetensors")
        optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
        _save_synced(optim_tensors, staging / "optimizer.safetensors")
        rng = {"torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["torch_cuda"] = torch.cuda.get_rng_state()
        _save_synced(rng, staging / "rng.safetensors")
        atomic_write_text(staging / "state.json", json.dumps({"step": step, "optimizer": optim_meta, **state}))
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(root)
    atomic_write_text(root / "latest.json", json.dumps({"step": step, "dir": name}))
    save_weights(model, Path(run_dir) / "model.safetensors")
    for old in root.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["dir"]
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{pointer} is corrupt ({error})") from None
    return Path(run_dir) / "checkpoints" / name


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore weights, optimizer and RNG state; return the saved trainer ``state`` dict."""
    directory = latest_checkpoint(run_dir)
    if directory is None:
        raise CheckpointError(f"no checkpoint to resume in {run_dir} (checkpoints/latest.json is missing)")
    try:
        state = json.loads((directory / "state.json").read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint state {directory / 'state.json'} is missing or corrupt ({error})") from None
    load_weights(model, directory / "model.safetensors")
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten_optimizer(_read_tensors(directory / "optimizer.safetensors"),
                                                       state["optimizer"]))
    rng = _read_tensors(directory / "rng.safetensors")
    torch.set_rng_state(rng["torch_cpu"])
    if "torch_cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["torch_cuda"])
    return state
