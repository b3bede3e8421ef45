"""Data-parallel training: the same script under ``torchrun --nproc_per_node=N``, widths identical on every rank.

Widths are ordinary parameters, so data parallelism needs nothing special from them: every rank computes the
gradient of its share of the batch, the gradients are averaged over the ranks, and every rank takes the same
optimizer step from the same state. :func:`softwidth.fit` does this by itself when it finds torchrun's
environment (``WORLD_SIZE > 1``)::

    torchrun --nproc_per_node=2 train.py     # train.py calls sw.fit(...) exactly as in one process

What ``fit`` then does, with the helpers of this module (usable in a hand-written loop too):

- :func:`setup` joins the default process group (``gloo`` on CPU, ``nccl`` when CUDA is available);
- rank 0's weights, widths and buffers are broadcast once, so every rank starts from the same state;
- each rank's noise generator is seeded with ``base + rank`` (``base`` drawn from rank 0's generator), so
  the injected noise is independent across ranks but the run is reproducible;
- after each ``backward()``, :func:`average_gradients` averages every gradient over the ranks (one
  flattened all-reduce; a parameter with no gradient on any rank keeps none);
- losses in the log are means over ranks; only rank 0 (:func:`is_main`) writes the CSV, checkpoints,
  TensorBoard events and the consolidated model, and shows progress bars.

Gradients are averaged by hand rather than by wrapping the model in ``DistributedDataParallel``: the width
schedule switches ``requires_grad`` of the widths on and off, the ordering pressure leaves a width out of
some ranks' graphs, and the cost term uses the widths outside ``forward``; DDP's reducer needs
``find_unused_parameters`` for the first two and would average the cost gradient too (harmless, it is the
same on every rank). The price is no overlap of communication with the backward pass, which is small for
models of this size. Each rank must hold its own share of the data: pass a ``DataLoader`` with a
``DistributedSampler``, or wrap a list of full batches with :func:`shard`. BatchNorm statistics are not
synchronised (each rank normalises with its own batch; rank 0's running statistics are kept, as with DDP's
default ``broadcast_buffers``). Resuming assumes the ranks share the checkpoint's file system (one node).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from .errors import SoftWidthError

__all__ = ["average_gradients", "broadcast_module", "is_main", "rank", "setup", "shard", "world_size"]


def setup(backend: str | None = None) -> bool:
    """Join the default process group from torchrun's environment; True when running on several ranks.

    Does nothing (and returns False) in a single process (``WORLD_SIZE`` unset or 1); returns True at once
    if a process group is already initialised with more than one rank. ``backend`` defaults to ``nccl``
    when CUDA is available, else ``gloo``.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    size = os.environ.get("WORLD_SIZE", "1")
    if not size.isdigit():
        raise SoftWidthError(f"distributed.setup: WORLD_SIZE must be an integer, got {size!r}")
    if int(size) <= 1:
        return False
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise SoftWidthError(
            f"distributed.setup: WORLD_SIZE={size} but {', '.join(missing)} not set; start the script with "
            "torchrun --nproc_per_node=N, or unset WORLD_SIZE for a single process"
        )
    dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return dist.get_world_size() > 1


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return _rank()


def world_size() -> int:
    """The number of ranks (1 in a single process)."""
    return _world()


def _rank() -> int:
    return dist.get_rank() if _active() else 0


def _world() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and shows progress."""
    return rank() == 0


def shard(batches: Iterable, *, rank: int | None = None, world_size: int | None = None) -> Shard:
    """This rank's share of every batch of ``batches``: a re-iterable with the same ``len()``.

    Each batch (a tensor, or a tuple/list/dict of tensors with a common first axis) is cut into
    ``world_size()`` contiguous parts along its first axis and rank ``r`` gets part ``r`` (``torch.chunk``),
    so ``N`` ranks together see exactly the full batches. Use it for a list of full batches; a ``DataLoader``
    takes a ``DistributedSampler`` instead. In one process it yields the batches unchanged. ``rank`` and
    ``world_size`` default to this process's (under torchrun this joins the process group, as ``fit`` would,
    so ``shard`` may be called before ``fit``).
    """
    if rank is None or world_size is None:
        setup()
    index = _rank() if rank is None else rank
    size = _world() if world_size is None else world_size
    if not 0 <= index < size:
        raise SoftWidthError(f"shard: rank {index} is outside [0, world_size={size})")
    return Shard(batches, index, size)


class Shard:
    """What :func:`shard` returns: iterates over ``batches`` yielding part ``rank`` of ``world_size``."""

    def __init__(self, batches: Iterable, rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        for batch in self.batches:
            yield self._part(batch)

    def _part(self, item):
        if self.world_size == 1:
            return item
        if isinstance(item, torch.Tensor):
            if item.dim() == 0 or item.shape[0] < self.world_size:
                raise SoftWidthError(
                    f"shard: a batch of {item.shape[0] if item.dim() else 0} examples cannot be split over "
                    f"{self.world_size} ranks; use batches of at least {self.world_size} examples"
                )
            return torch.tensor_split(item, self.world_size)[self.rank]
        if isinstance(item, dict):
            return {k: self._part(v) for k, v in item.items()}
        if isinstance(item, (tuple, list)):
            return type(item)(self._part(v) for v in item)
        return item  # non-tensor entries (names, lengths known to every rank) pass unchanged


def average_gradients(module: nn.Module) -> None:
    """Average the gradients of ``module``'s trainable parameters over all ranks (no-op in one process).

    Call after ``backward()`` and before ``optimizer.step()`` on every rank. Parameters without a gradient
    on one rank count as zero there; a parameter without a gradient on every rank keeps ``grad = None``
    (so optimizers skip it, as in a single process).
    """
    if not _active():
        return
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    device = params[0].device
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    parts = [p.grad.detach().reshape(-1).to(device=device, dtype=dtype) if p.grad is not None
             else torch.zeros(p.numel(), device=device, dtype=dtype) for p in params]
    flags = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], device=device, dtype=dtype)
    flat = torch.cat(parts + [flags])  # one all-reduce for every gradient and the has-a-gradient flags
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        chunk = flat[offset:offset + n].view_as(p).to(device=p.device, dtype=p.dtype)
        offset += n
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
    for p, unused in zip(params, (flat[offset:] == 0).tolist()):
        if unused:  # no rank produced a gradient: leave it unset
            p.grad = None


def broadcast_module(module: nn.Module, *, source: int = 0) -> None:
    """Copy rank ``source``'s parameters and buffers into every rank's ``module`` (no-op in one process)."""
    if not _active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=source)


# -- what fit needs beyond the public helpers ------------------------------------------------------------
def _mean(value: float, like: torch.Tensor | None = None) -> float:
    """The mean of a float over all ranks (the value itself in one process, unchanged bit for bit)."""
    if not _active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_device(like))
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def _device(like: torch.Tensor | None) -> torch.device:
    # nccl reduces CUDA tensors only; gloo any CPU tensor
    if like is not None:
        return like.device
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _replicate(model: nn.Module, *, steps_per_epoch: int, start_epoch: int) -> None:
    """Start every rank from rank 0's state, check the ranks agree on the run, and seed the noise per rank."""
    if not _active():
        return
    like = next(model.parameters(), None)
    mine = torch.tensor([steps_per_epoch, start_epoch], dtype=torch.float64, device=_device(like))
    low, high = mine.clone(), mine.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise SoftWidthError(
            f"fit (rank {_rank()}): ranks disagree on batches per epoch ({int(low[0])}..{int(high[0])}) or on "
            f"the resumed epoch ({int(low[1])}..{int(high[1])}); give every rank the same number of batches "
            "(DistributedSampler(drop_last=True) or softwidth.distributed.shard) and a shared out_dir"
        )
    broadcast_module(model)
    base = torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64).to(_device(like))
    dist.broadcast(base, src=0)
    torch.manual_seed(int(base) + _rank())
