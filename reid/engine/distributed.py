"""DistributedDataParallel under ``torchrun``: process group, model wrapping, small collectives.

The trainer runs unchanged in one process or in N processes started by ``torchrun``::

    torchrun --nproc_per_node=N -m cli.reid_train --data data/occluded.h5 ...

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``)
in each process's environment; :func:`init_distributed` reads them. Without them (a plain
``reid train``) everything here is a no-op for a single process.

Decisions:

* Backend: NCCL when the run uses CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on the
  CPU.
* SyncBatchNorm only on CUDA. PyTorch's :class:`torch.nn.SyncBatchNorm` raises
  "SyncBatchNorm expected input tensor to be on GPU ..." for CPU tensors (torch 2.x, checked
  on 2.14), so CPU/gloo runs keep plain per-process BatchNorm. DDP still broadcasts rank 0's
  BN buffers before every forward, and :func:`broadcast_buffers` does it once more at the end
  so every rank ends with rank 0's running statistics.
* ``find_unused_parameters``: the multi-task loss leaves whole heads out of the graph when
  a weight is zero (alpha = 0: the identity classifier and the local branch). The trainer
  freezes the OBC head when alpha = 1 (frozen parameters are invisible to DDP), so only
  alpha = 0 needs the slower unused-parameter search; :func:`wrap_model` takes the flag.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)

#: Collective timeout: rank 0 may validate for a while between epochs while others wait.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands.

    Attributes:
        rank: global rank in [0, world_size).
        world_size: number of processes (1 without torchrun).
        local_rank: rank on this machine (selects the GPU).
        initialized: True when this module created a process group that must be destroyed.
        launched: started by torchrun (its variables are set), even as its only process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized: bool = False
    launched: bool = False

    @property
    def distributed(self) -> bool:
        """Several processes, or one that torchrun started: ``torchrun --nproc_per_node=1``
        runs the whole DDP path (process group, NCCL on a GPU, SyncBatchNorm), so that a
        one-GPU machine can check it."""
        return self.world_size > 1 or self.launched

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files, logs progress and draws progress bars."""
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables (1 process if absent).

    Raises:
        ValueError: the variables are present but not integers or inconsistent.
    """
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return DistInfo()
    try:
        world_size = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ValueError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from exc
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, launched=True)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that torchrun describes, if any.

    Args:
        device: the device type this run trains on; CUDA selects NCCL and ``cuda:LOCAL_RANK``
            (the caller should use :func:`process_device` to pick that device).

    Returns:
        the :class:`DistInfo`; ``initialized`` is True when a group was created here.
    """
    info = env_dist_info()
    if not info.distributed:
        return info
    if dist.is_initialized():  # created by a caller (e.g. a test harness): reuse it
        return replace(info, initialized=False)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    logger.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)
    return replace(info, initialized=True)


def process_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` for a CUDA run under torchrun."""
    if device.type == "cuda" and info.distributed:
        return torch.device("cuda", info.local_rank)
    return device


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group created by :func:`init_distributed` (no-op otherwise)."""
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()


def sync_batchnorm_supported(device: torch.device) -> bool:
    """SyncBatchNorm runs on CUDA tensors only (see the module docstring)."""
    return device.type == "cuda"


def wrap_model(model: nn.Module, device: torch.device, info: DistInfo, find_unused_parameters: bool) -> nn.Module:
    """Wrap ``model`` (already on ``device``) in DDP when running distributed; else return it.

    On CUDA the BatchNorm layers become SyncBatchNorm first (statistics over the global
    batch, which a P x K batch split over GPUs needs: each GPU sees only P / N identities).
    """
    if not info.distributed:
        return model
    if sync_batchnorm_supported(device):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        logger.info("SyncBatchNorm needs CUDA; keeping per-process BatchNorm on %s", device.type)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if info.distributed and dist.is_initialized():
        if dist.get_backend() == "nccl":
            # Name this process's GPU, or NCCL guesses it (and warns) from the rank.
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``values`` (any shape) over the ranks; a NaN on any rank stays NaN everywhere."""
    if not info.distributed:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def broadcast_object(obj: object, info: DistInfo, src: int = 0) -> object:
    """Rank ``src``'s Python object on every rank (pickled; small objects only)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(model: nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BN running statistics) to every rank, in place."""
    if not info.distributed:
        return
    with torch.no_grad():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=src)
