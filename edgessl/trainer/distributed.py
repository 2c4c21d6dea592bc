"""torchrun support: process-group setup from the environment, and gradient-preserving gathers."""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(prefer: str = "auto", local_rank: int = 0) -> torch.device:
    if prefer == "cpu" or (prefer == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if prefer.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch.cuda.is_available() is False")
    return torch.device(f"cuda:{local_rank}")


def setup(prefer_device: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(device=pick_device(prefer_device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(prefer_device, local)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistEnv(rank, world, local, device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        # every rank reaches this point before any tears down: a rank that leaves while another is still
        # talking to it can abort in gloo's background threads ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping gradients to each rank's own rows.

    Outside a process group this is the identity. The backward pass sums the gradients from every rank
    (``torch.distributed.nn.functional.all_gather``); DDP then averages parameter gradients over ranks,
    which together give exactly the gradient of the loss on the global batch.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)
