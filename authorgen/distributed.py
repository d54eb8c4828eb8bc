"""Training on several processes with PyTorch DDP, as started by `torchrun`.

    torchrun --nproc_per_node=N -m authorgen train CORPUS ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK. Every process trains the same model on its own
rows of each batch; gradients are averaged. Rank 0 alone writes the run directory and prints.
Without torchrun (WORLD_SIZE unset or 1) all of this is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from authorgen import errors
from authorgen.errors import AuthorgenError


@dataclass
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def mean(self, values: list[float]) -> list[float]:
        """The mean of each value over all processes (the values themselves when alone)."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return (t / self.world).tolist()

    def main_first(self, fn, then=None):
        """Run `fn` on rank 0 first; the others then run `then` (default `fn`) once it worked,
        or raise rank 0's error, so all processes fail alike and none waits forever."""
        if not self.active:
            return fn()
        message = [None]
        result = None
        if self.main:
            try:
                result = fn()
            except Exception as exc:  # any failure: the others must not wait for rank 0
                message = [(type(exc).__name__, str(exc))]
                torch.distributed.broadcast_object_list(message, src=0)
                raise
            torch.distributed.broadcast_object_list(message, src=0)
            return result
        torch.distributed.broadcast_object_list(message, src=0)
        if message[0] is not None:
            raise _rebuilt(*message[0])
        return (then or fn)()

    def node_first(self, fn):
        """Run `fn` where each machine keeps its own files (a cache): rank 0 first, then the
        first process of every other node, then the rest, who find what their node's first
        process made. An error anywhere stops every process alike, none waits forever."""
        if not self.active:
            return fn()
        result = self.main_first(fn, then=lambda: None)
        leader = self.local_rank == 0 and not self.main
        failure = None
        if leader:
            try:
                result = fn()
            except Exception as exc:  # the others must hear of it, not wait
                failure = (type(exc).__name__, str(exc))
        failures = [None] * self.world
        torch.distributed.all_gather_object(failures, failure)
        if failure is not None:
            raise _rebuilt(*failure)
        first = next((f for f in failures if f is not None), None)
        if first is not None:
            raise _rebuilt(*first)
        return fn() if not self.main and not leader else result

    def shared(self, fn):
        """`fn()` as rank 0 computes it, on every process: a measurement all must agree on."""
        if not self.active:
            return fn()
        box = [self.main_first(fn, then=lambda: None)]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def _rebuilt(kind: str, text: str) -> Exception:
    """Another process's error, as this one raises it: its authorgen class, or the base one."""
    error = getattr(errors, kind, None)
    return (error if isinstance(error, type) else AuthorgenError)(text)


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 when not under torchrun); only rank 0 prints."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str) -> Group:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend)
    return Group(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank)


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
