"""Data-parallel training over the processes `torchrun` starts: process group, DDP, synchronised BatchNorm.

Outside torchrun (no RANK in the environment) the world is one process and every helper here is a no-op,
so single-process runs take the path they always took. The backend is chosen automatically: NCCL when
CUDA is available (each process then trains on GPU LOCAL_RANK), gloo on CPU. Batch sizes in the configs
are global: N processes each take 1/N of every batch, with BatchNorm statistics taken over the whole
batch, so N processes train the same weights as one process would.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")

# Rank 0 validates alone while the others wait in a collective: allow for a long validation split.
TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes, and the device it trains on."""
    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and logs and shows progress; the others only train."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: Tensor) -> Tensor:
        """Element-wise sum of `values` over the processes (`values` itself in one process)."""
        if not self.distributed:
            return values
        total = values.detach().clone()
        dist.all_reduce(total)
        return total

    def mean(self, values: dict[str, Tensor]) -> dict[str, float]:
        """Each 0-d tensor averaged over the processes, as floats (one collective for all of them)."""
        stacked = torch.stack([v.detach().float() for v in values.values()])
        return dict(zip(values, (self.sum(stacked) / self.size).tolist()))

    def gather(self, value: T) -> list[T]:
        """Every process's (picklable) `value`, in rank order."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def from_main(self, compute: Callable[[], T]) -> T:
        """`compute()` run on rank 0 alone, its (picklable) result returned on every rank."""
        result = [compute() if self.is_main else None]
        if self.distributed:
            dist.broadcast_object_list(result, src=0)
        return result[0]


def current() -> World:
    """The world of the process group this process has joined; one process when none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return World(dist.get_rank(), dist.get_world_size(), device)


@contextmanager
def session() -> Iterator[World]:
    """Join the process group `torchrun` prepared (RANK, WORLD_SIZE, MASTER_ADDR in the environment) and
    leave it together at the end; without torchrun, a world of one process."""
    if "RANK" not in os.environ or dist.is_initialized():
        yield current()
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    try:
        world = current()
        yield world
        world.barrier()  # rank 0 may still be writing the last checkpoint
    finally:
        dist.destroy_process_group()


def data_parallel(module: nn.Module, world: World) -> nn.Module:
    """What training forward passes go through: `module` itself in one process; across processes, `module`
    with its BatchNorm layers synchronised, wrapped in DDP. Evaluate and checkpoint `module` itself."""
    if not world.distributed or not any(p.requires_grad for p in module.parameters()):
        return module
    if world.device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    else:
        module = convert_to_gloo_sync_batchnorm(module)
    return nn.parallel.DistributedDataParallel(module, device_ids=[world.device] if world.device.type == "cuda" else None)


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce(SUM) whose gradient is the sum of every process's gradient (each input feeds every output)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the batch of every process, on CPU (`nn.SyncBatchNorm` needs a
    GPU); in eval mode, or in one process, a plain BatchNorm. Same parameters and buffers, same state dict."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]  # every axis but the channels
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() // x.shape[1]])
        totals = _SumOverProcesses.apply(torch.cat([x.sum(dims), count]))  # [C+1]: Σx per channel, then N
        n = totals[-1]
        mean = totals[:-1] / n  # [C]
        centred = x - mean.view(shape)
        var = _SumOverProcesses.apply(centred.pow(2).sum(dims)) / n  # [C], biased, as BatchNorm normalises
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var * n / (n - 1), alpha=momentum)  # unbiased, as BatchNorm
        return y


def convert_to_gloo_sync_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm layer replaced by a `GlooSyncBatchNorm` sharing its parameters and buffers."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlooSyncBatchNorm):
        synced = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        synced.weight, synced.bias = module.weight, module.bias
        synced.running_mean, synced.running_var = module.running_mean, module.running_var
        synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert_to_gloo_sync_batchnorm(child))
    return module
