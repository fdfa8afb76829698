"""Process-group handling for data-parallel training launched by `torchrun`.

`torchrun --standalone --nproc_per_node=N -m electives train …` (or a multi-node rendezvous) starts N copies of
the same command with RANK, WORLD_SIZE and LOCAL_RANK in the environment. `init()` joins them into one process
group (NCCL when training on CUDA, gloo on CPU); without those variables it is a no-op and every helper below
behaves as for a single process, so training has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from electives.errors import ElectivesError

__all__ = ["Context", "all_mean", "broadcast_object", "context", "init", "shutdown"]


@dataclass(frozen=True)
class Context:
    """Where this process sits: `rank` of `world_size` processes, `local_rank` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints reports and writes files."""
        return self.rank == 0

    def device(self, name: str) -> str:
        """The device this rank trains on: each process of a node takes its own GPU."""
        if self.distributed and name in ("cuda", "auto") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        if name == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return name


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ElectivesError(f"environment variable {name}={text!r}: expected a whole number") from None


def context() -> Context:
    """This process's place, from an initialised process group or else torchrun's environment variables."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ElectivesError(f"RANK={rank}, WORLD_SIZE={world}: expected 0 ≤ RANK < WORLD_SIZE")
    return Context(rank, world, local)


def init(device: str = "auto") -> Context:
    """Join the process group torchrun set up (idempotent); a no-op for a single process."""
    ctx = context()
    if not ctx.distributed or dist.is_initialized():
        return ctx
    if not dist.is_available():
        raise ElectivesError("this torch build has no torch.distributed; cannot train under torchrun")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(ctx.local_rank)
    # MASTER_ADDR/MASTER_PORT come from torchrun; "env://" reads them.
    dist.init_process_group(backend=backend, init_method="env://", rank=ctx.rank, world_size=ctx.world_size)
    return ctx


def shutdown() -> None:
    """Leave the process group (after the last collective), so the launcher sees a clean exit."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_mean(value: float, device: str = "cpu") -> float:
    """The mean of `value` over all ranks (the value itself for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (e.g. the validation score that drives early stopping)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
