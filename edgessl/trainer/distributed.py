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


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this rank's rows of the gradient summed over ranks.

    Public collectives only (``all_gather`` forward, ``all_reduce`` backward; gloo and nccl both have them):
    ``torch.distributed.nn.functional.all_gather`` is deprecated as of torch 2.13, and on gloo its backward
    runs an all-to-all.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, torch.tensor([len(x)], dtype=torch.long, device=x.device))
        if any(int(s) != len(x) for s in sizes):
            raise ValueError(f"gather_with_grad needs the same number of rows on every rank; got "
                             f"{[int(s) for s in sizes]} (use a DistributedSampler with drop_last)")  # fmt: skip
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x)
        ctx.rows = len(x)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (rank order), keeping gradients to each rank's own rows.

    Outside a process group this is the identity. The backward pass sums the gradients from every rank
    (each rank's loss sees every row); DDP then averages parameter gradients over ranks, which together
    give exactly the gradient of the loss on the global batch. Every rank must hold the same number of rows.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
