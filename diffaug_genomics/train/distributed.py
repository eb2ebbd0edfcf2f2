"""Process-group set-up from torchrun or SLURM variables, and the few collectives the loop uses.

Single-process runs need none of this: :func:`env_context` then returns rank 0 of 1, and every
helper below is the identity (no ``torch.distributed`` call is made).

Where the ranks come from, first match wins:

* torchrun (or any launcher setting them): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; torchrun
  also sets ``MASTER_ADDR`` / ``MASTER_PORT``.
* ``srun`` with one task per GPU: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (else
  ``SLURM_NTASKS``), ``SLURM_LOCALID``, inside a job step (``SLURM_STEP_ID``). The
  master is the first host of ``SLURM_JOB_NODELIST`` (:func:`first_host`) and the port
  ``MASTER_PORT_BASE + SLURM_JOB_ID % MASTER_PORT_SPAN``, unless ``MASTER_ADDR`` /
  ``MASTER_PORT`` are set already.
* otherwise one process.

The backend is nccl on CUDA devices and gloo otherwise. Collectives time out after
``DIFFAUG_DIST_TIMEOUT`` seconds (default 1800): a rank that died is normally noticed at once
(its sockets close), the timeout only bounds a rank that hangs.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MASTER_PORT_BASE = 20000
MASTER_PORT_SPAN = 20000
"""Under srun without torchrun the rendezvous port is ``20000 + SLURM_JOB_ID % 20000``."""

DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share ``[lo, hi)`` of ``n`` items (sizes differ by at most 1)."""
        return self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size


SINGLE = DistContext()


def resolve_device(name: str, ctx: DistContext = SINGLE) -> torch.device:
    """``auto`` -> cuda (this process's local GPU) if available, else mps, else cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            from diffaug_genomics.errors import InputError

            raise InputError("--device cuda requested but no CUDA device is available")
        return torch.device("cuda", ctx.local_rank % max(1, torch.cuda.device_count()))
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        from diffaug_genomics.errors import InputError

        raise InputError("--device mps requested but MPS is not available")
    return torch.device(name)


def env_context() -> DistContext:
    """Rank information from torchrun (RANK/LOCAL_RANK/WORLD_SIZE) or SLURM, else single.

    SLURM variables count only inside an ``srun`` step: a job's batch script also sees
    ``SLURM_PROCID=0`` and ``SLURM_NTASKS``, but no ``SLURM_STEP_ID``, and a program started
    there directly is one process."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return DistContext(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    batch_script = "SLURM_JOB_ID" in env and "SLURM_STEP_ID" not in env
    if "SLURM_PROCID" in env and not batch_script and _slurm_step_tasks() > 1:
        return DistContext(int(env["SLURM_PROCID"]), _slurm_step_tasks(),
                           int(env.get("SLURM_LOCALID", 0)))
    return SINGLE


def _slurm_step_tasks() -> int:
    """Tasks of the current srun step (``SLURM_STEP_NUM_TASKS``, else ``SLURM_NTASKS``)."""
    env = os.environ
    return int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")))


# ------------------------------------------------------------------------------------ SLURM
def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of a SLURM compact node list, in order.

    ``"gpu[01-03,07],login1"`` -> ``["gpu01", "gpu02", "gpu03", "gpu07", "login1"]``; zero
    padding of ranges is kept; several bracket groups (``"r[1-2]n[1-2]"``) expand as a product.
    The same as ``scontrol show hostnames``, without needing SLURM installed.
    """
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        if item:
            hosts += _expand_one(item)
    return hosts


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _expand_one(item: str) -> list[str]:
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
    if m is None:
        return [item]
    prefix, ranges, rest = m.groups()
    heads = []
    for part in ranges.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            heads += [f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1)]
        else:
            heads.append(prefix + part)
    tails = _expand_one(rest) if rest else [""]
    return [h + t for h in heads for t in tails]


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (where rank 0 runs under srun)."""
    hosts = expand_nodelist(nodelist)
    if not hosts:
        from diffaug_genomics.errors import InputError

        raise InputError(f"SLURM_JOB_NODELIST is empty or unreadable ({nodelist!r})")
    return hosts[0]


def slurm_master_port(job_id: int) -> int:
    """Rendezvous port of a SLURM job, the same on every node: ``20000 + job_id % 20000``."""
    return MASTER_PORT_BASE + job_id % MASTER_PORT_SPAN


def _set_master_from_slurm() -> None:
    """Fill MASTER_ADDR / MASTER_PORT from SLURM variables when a launcher did not set them."""
    env = os.environ
    if "MASTER_ADDR" not in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
        env["MASTER_ADDR"] = first_host(nodelist)
    if "MASTER_PORT" not in env:
        env["MASTER_PORT"] = str(slurm_master_port(int(env.get("SLURM_JOB_ID", "0"))))


# ---------------------------------------------------------------------------- process group
def timeout() -> datetime.timedelta:
    """Collective timeout: ``DIFFAUG_DIST_TIMEOUT`` seconds (default 1800)."""
    return datetime.timedelta(seconds=float(os.environ.get("DIFFAUG_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))


@contextmanager
def process_group(ctx: DistContext, device: torch.device) -> Iterator[None]:
    """Initialise the default process group for ``ctx`` (nothing when single) and destroy it
    on a clean exit, after a barrier: a rank that tore its gloo connections down while a peer
    was still finishing (rank 0 writes the final files) could abort at exit ("terminate called
    without an active exception", exit -6) although its work was done.

    On an exception the group is left alone: the process is about to exit, which closes its
    connections, and the other ranks' next collective fails at once instead of waiting.
    """
    import torch.distributed as dist

    if not ctx.distributed or dist.is_initialized():
        yield
        return
    if "RANK" not in os.environ:  # srun without torchrun
        _set_master_from_slurm()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method="env://", rank=ctx.rank,
                            world_size=ctx.world_size, timeout=timeout())
    yield
    dist.barrier()
    dist.destroy_process_group()


def _dist():  # noqa: ANN202 - the torch.distributed module, when a group is initialised
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU for nccl, else the CPU."""
    dist = _dist()
    if dist is not None and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op when single)."""
    dist = _dist()
    if dist is not None:
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is True on any rank (one all-reduce of one number)."""
    dist = _dist()
    if dist is None:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(value: torch.Tensor) -> float:
    """The mean over ranks of a scalar tensor, as a float (``value.item()`` when single)."""
    dist = _dist()
    if dist is None:
        return value.item()
    t = value.detach().reshape(1).to(_comm_device(), torch.float64)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def mean_over_ranks_all(values: torch.Tensor) -> list[float]:
    """:func:`mean_over_ranks` of each element of a 1-d tensor, in one collective (one host
    sync) for all of them."""
    dist = _dist()
    if dist is None:
        return values.tolist()
    t = values.detach().reshape(-1).to(_comm_device(), torch.float64)
    dist.all_reduce(t)
    return [v / dist.get_world_size() for v in t.tolist()]


def average_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over ranks (no-op when single).

    One all-reduce of all gradients flattened in a fixed order (a missing gradient counts as
    zero), so the result does not depend on bucket timing: every rank ends with the same bits,
    and a resumed run repeats exactly the reductions of an uninterrupted one.
    """
    dist = _dist()
    if dist is None:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (no-op when single)."""
    dist = _dist()
    if dist is None:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)


def all_gather_rows(local: torch.Tensor, ctx: DistContext, n: int) -> torch.Tensor:
    """Concatenate every rank's share (rows ``ctx.shard(n)``) into all ``n`` rows, on every rank.

    ``local`` is ``(hi - lo, ...)`` of any dtype (sent as raw bytes, so float16 is exact); the
    result is on ``local``'s device, in row order. Identity when single.
    """
    dist = _dist()
    if dist is None:
        return local
    sizes = [DistContext(r, ctx.world_size).shard(n) for r in range(ctx.world_size)]
    longest = max(hi - lo for lo, hi in sizes)
    dev = _comm_device()
    row_bytes = int(np.prod(local.shape[1:], dtype=np.int64)) * local.element_size()
    raw = local.contiguous().reshape(-1).view(torch.uint8).reshape(len(local), row_bytes).to(dev)
    padded = torch.zeros((longest, row_bytes), dtype=torch.uint8, device=dev)
    padded[:len(raw)] = raw
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    rows = torch.cat([p[:hi - lo] for p, (lo, hi) in zip(parts, sizes, strict=True)])
    return rows.view(local.dtype).reshape(n, *local.shape[1:]).to(local.device)


def broadcast_array(array: np.ndarray | None, src: int = 0) -> np.ndarray:
    """Rank ``src``'s numpy array on every rank (others pass None). Identity when single."""
    dist = _dist()
    if dist is None:
        assert array is not None
        return array
    meta: list[Any] = [None if array is None else (array.shape, array.dtype.str)]
    dist.broadcast_object_list(meta, src, device=_comm_device())
    shape, dtype = meta[0]
    if dist.get_rank() == src:
        t = torch.from_numpy(np.ascontiguousarray(array).view(np.uint8).reshape(-1))
    else:
        t = torch.empty(int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=torch.uint8)
    t = t.to(_comm_device())
    dist.broadcast(t, src)
    return t.cpu().numpy().view(np.dtype(dtype)).reshape(shape)


def same_on_all_ranks(value: str) -> list[str]:
    """Every rank's ``value`` (rank order); single: ``[value]``. For consistency checks."""
    dist = _dist()
    if dist is None:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return [str(v) for v in out]
