"""Data-parallel training on PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc-per-node N -m attnlab train ...`` (or ``attnlab train --nproc N``,
which runs exactly that) starts N copies of the trainer. torchrun tells each one
who it is through environment variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``); :func:`setup` reads them and joins the process
group — ``gloo`` on CPU, ``nccl`` on CUDA — and the trainer wraps the model in
:class:`torch.nn.parallel.DistributedDataParallel`.

Every rank builds the *same* sequence of global batches (same seed) and keeps
its own contiguous block of rows (:func:`shard_batch`). Each rank's loss is its
summed token loss divided by (global tokens / world size); DDP averages the
gradients over ranks, so the result is exactly the gradient of the global
batch's mean loss — the same update a single process would make.

>>> context = from_environment()          # outside torchrun: rank 0 of 1
>>> context.enabled, context.is_main
(False, True)
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "from_environment", "setup", "shard_batch", "all_reduce_mean", "barrier",
           "cleanup", "torchrun_command"]


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes the run directory, logs and evaluates."""
        return self.rank == 0


def from_environment(environ=os.environ) -> DistributedContext:
    """The context torchrun describes in the environment (rank 0 of 1 when those variables are unset)."""
    try:
        world_size = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise ValueError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK must be integers): {error}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def setup(device: torch.device, *, timeout_minutes: float = 60.0) -> tuple[DistributedContext, torch.device]:
    """Join the process group if torchrun started us; return the context and this rank's device.

    On CUDA each rank takes GPU ``LOCAL_RANK`` and talks NCCL; on CPU ranks talk
    gloo. ``timeout_minutes`` bounds how long ranks wait for each other, e.g.
    while rank 0 evaluates (generous: evaluation decodes sentence by sentence).
    """
    context = from_environment()
    if not context.enabled:
        return context, device
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"distributed training supports cpu (gloo) and cuda (nccl) devices, not {device.type!r}")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return context, device


def shard_batch(batch, context: DistributedContext):
    """This rank's rows of a global batch, and the weight of its loss (0 for a filler row).

    Rows are split into ``world_size`` contiguous blocks. A global batch with
    fewer rows than ranks leaves some ranks empty: they process one row with
    weight 0, so that every rank still runs forward and backward (DDP needs
    every rank in every gradient all-reduce) without changing the gradient.
    """
    if not context.enabled:
        return batch, 1.0
    rows = len(batch)
    start, stop = rows * context.rank // context.world_size, rows * (context.rank + 1) // context.world_size
    weight = 1.0
    if start == stop:
        start, stop, weight = 0, 1, 0.0
    return replace(batch, src=batch.src[start:stop], tgt_in=batch.tgt_in[start:stop],
                   tgt_out=batch.tgt_out[start:stop], examples=batch.examples[start:stop]), weight


def all_reduce_mean(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The mean of ``value`` over ranks (``value`` itself when not distributed)."""
    if not context.enabled:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / context.world_size


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def cleanup(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command ``attnlab train --nproc N ...`` runs: torchrun on this Python, single node.

    >>> torchrun_command(2, ["train", "--task", "copy", "--out", "runs/copy"])[1:5]
    ['-m', 'torch.distributed.run', '--standalone', '--nproc-per-node']
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    return [sys.executable or shutil.which("python") or "python", "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(nproc), "-m", "attnlab", *args]
