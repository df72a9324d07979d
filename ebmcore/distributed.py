"""torch.distributed set-up for runs started by ``torchrun`` (gloo on CPU, nccl on GPU)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env(device: str = "cpu") -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment.

    Returns ``(rank, world_size)``; ``(0, 1)`` when not started by torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mean_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics over all ranks (identity in a single process)."""
    if not is_distributed():
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def all_ok(flag: bool) -> bool:
    """True only if ``flag`` holds on every rank (so all ranks take the same branch)."""
    if not is_distributed():
        return flag
    t = torch.tensor([0 if flag else 1], dtype=torch.int64)
    dist.all_reduce(t)
    return int(t.item()) == 0
