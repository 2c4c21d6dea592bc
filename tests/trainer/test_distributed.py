"""Two CPU processes (gloo) give the same loss and gradients as one process on the same global batch."""

import json
import os
import socket

import pytest

torch = pytest.importorskip("torch")
mp = pytest.importorskip("torch.multiprocessing")

from edgessl.trainer.encoders import EncoderConfig  # noqa: E402
from edgessl.trainer.methods import MethodConfig, build_method  # noqa: E402

SMALL = EncoderConfig(widths=(8, 16), kernels=(5, 3), strides=(1, 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _views():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, 40, generator=g), torch.randn(16, 3, 40, generator=g)


def _method(name):
    torch.manual_seed(0)
    m = build_method(SMALL, MethodConfig(name=name, proj_hidden=16, proj_dim=8)).double()
    return m.eval()  # BatchNorm on running statistics, so per-rank batches see the same normalisation


def _worker(rank, world, port, name, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    va, vb = _views()
    half = len(va) // world
    m = _method(name)
    loss = m.loss_from_views(va[rank * half : (rank + 1) * half].double(), vb[rank * half : (rank + 1) * half].double())
    loss.backward()
    grads = []
    for p in m.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)  # what DDP does, followed by the average
            grads.append(p.grad / world)
    if rank == 0:
        torch.save({"loss": loss.detach(), "grads": grads}, out)
    open(f"{out}.rank{rank}.done", "w").close()  # every collective of this rank has returned
    from edgessl.trainer.distributed import teardown

    teardown()  # barrier, then destroy: no rank leaves while the other still talks to it


@pytest.mark.parametrize("name", ["simclr", "vicreg", "barlow"])
def test_two_process_loss_and_grads_equal_single_process(tmp_path, name):
    out = str(tmp_path / "rank0.pt")
    try:
        mp.spawn(_worker, args=(2, _free_port(), name, out), nprocs=2, join=True)
    except mp.ProcessExitedException as e:
        # gloo can abort a rank in its background threads while the group is torn down ("terminate called
        # without an active exception"; rare, seen once on CI despite the barrier in teardown). Tolerated only
        # after both ranks finished every collective: the figures under test are complete by then
        if e.signal_name != "SIGABRT" or not all(os.path.exists(f"{out}.rank{r}.done") for r in range(2)):
            raise
        import warnings

        warnings.warn(f"gloo aborted a rank during teardown, after the computation: {e}", stacklevel=1)
    got = torch.load(out, weights_only=True)
    va, vb = _views()
    m = _method(name)
    loss = m.loss_from_views(va.double(), vb.double())
    loss.backward()
    ref = [p.grad for p in m.parameters() if p.grad is not None]
    assert got["loss"].item() == pytest.approx(loss.item(), rel=1e-10)
    assert len(ref) == len(got["grads"])
    for a, b in zip(ref, got["grads"], strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def _fit_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))  # fmt: skip
    from edgessl.trainer.distributed import teardown
    from edgessl.trainer.fit import FitConfig, fit

    torch.manual_seed(0)
    m = build_method(SMALL, MethodConfig(name="simclr", proj_hidden=16, proj_dim=8))
    X = torch.randn(64, 3, 32, generator=torch.Generator().manual_seed(1))
    fit(m, (X,), FitConfig(epochs=2, batch_size=32, warmup_epochs=1, device="cpu"), out_dir,
        {"kind": "ddp"}, progress=False)  # fmt: skip
    teardown()


@pytest.mark.slow
def test_fit_under_two_processes_rank0_writes(tmp_path):
    mp.spawn(_fit_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    from edgessl.trainer.fit import load_checkpoint

    ck = load_checkpoint(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert ck["epoch"] == 1 and len(rows) == 2


def _uneven_worker(rank, world, port, out):
    import torch.distributed as dist

    from edgessl.trainer.distributed import gather_with_grad, teardown

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        gather_with_grad(torch.zeros(4 + rank, 3))
    except ValueError as e:
        with open(f"{out}.rank{rank}", "w") as f:
            f.write(str(e))
    teardown()


def test_gather_with_grad_refuses_uneven_rows_on_every_rank(tmp_path):
    out = str(tmp_path / "err")
    mp.spawn(_uneven_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    for r in range(2):  # both ranks refuse (none waits in a collective the other never joins)
        msg = open(f"{out}.rank{r}").read()
        assert "same number of rows on every rank" in msg and "[4, 5]" in msg
