"""Multi-process training with ``torchrun``: process group, device, rank helpers.

``torchrun --nproc_per_node N -m training.cli stage1 ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`init_distributed` joins them with NCCL on GPUs or gloo
on CPUs. Without those variables everything runs as a single process (rank 0 of 1) and every helper
here is a no-op. Only rank 0 writes to the run folder or shows progress bars. Several nodes: the same command
on each with ``--nnodes`` and a rendezvous endpoint (docs/SCALING.md); when ``torchrun --max-restarts`` restarts
the workers after a failure, :func:`elastic_restart_count` is above 0 and training resumes from the checkpoint.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job. ``backend`` is ``""`` for a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU; ``cuda`` without CUDA is an error."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"runtime.device must be auto, cpu or cuda, not {preference!r}")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("runtime.device is cuda but this PyTorch build sees no GPU: install a CUDA build or use device: cpu.")
    if local_rank >= torch.cuda.device_count():
        raise SystemExit(
            f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): start at most that many "
            "processes per node (torchrun --nproc_per_node)."
        )
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto", timeout_minutes: float = 30.0) -> DistContext:
    """Join the ``torchrun`` process group (when ``WORLD_SIZE`` > 1) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_preference, local_rank)
    if world == 1:
        return DistContext(device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        timeout = dt.timedelta(minutes=timeout_minutes)
        store = _attempt_store(timeout)
        torch_dist.init_process_group(backend, timeout=timeout,
                                      **({"store": store, "rank": rank, "world_size": world} if store else {}),
                                      **({"device_id": device} if device.type == "cuda" else {}))
    return DistContext(rank, world, local_rank, device, backend)


def _attempt_store(timeout: dt.timedelta):
    """Under torchrun's agent store: that store with a key prefix for this attempt, else None (``env://``).

    torchrun keeps one TCPStore across ``--max-restarts`` restarts, so without a prefix a restarted attempt reads the
    killed attempt's gloo addresses and fails to connect (measured with torch 2.13)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = torch_dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                timeout=timeout)
    return torch_dist.PrefixStore(f"mrsynth/attempt_{elastic_restart_count()}", store)


def elastic_restart_count() -> int:
    """How often ``torchrun --max-restarts`` has restarted this job's workers (0 for the first attempt or without
    torchrun): a restarted job continues from the run folder's last checkpoint."""
    try:
        return max(0, int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
    except ValueError:
        return 0


def cleanup(ctx: DistContext) -> None:
    """Leave the process group (safe to call more than once)."""
    if ctx.distributed and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        torch_dist.barrier()


def gather_objects(ctx: DistContext, value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not ctx.distributed:
        return [value]
    values: list[Any] = [None] * ctx.world_size
    torch_dist.all_gather_object(values, value)
    return values


def broadcast_object(ctx: DistContext, value: T) -> T:
    """Rank 0's ``value`` on every rank."""
    if not ctx.distributed:
        return value
    box = [value]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_across_ranks(ctx: DistContext, value: float) -> float:
    """The mean of a float over all ranks (for logging)."""
    if not ctx.distributed:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device)
    torch_dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size


def run_everywhere(ctx: DistContext, work: Callable[[], T]) -> T:
    """Run ``work`` on every rank; if it fails on any rank, every rank stops with that rank's message
    (instead of the others waiting for it forever)."""
    result, error = None, None
    try:
        result = work()
    except (Exception, SystemExit) as failure:  # noqa: BLE001 - re-raised below on every rank
        error = f"{type(failure).__name__}: {failure}" if not isinstance(failure, SystemExit) else str(failure)
        if not ctx.distributed:
            raise
    errors = [(rank, e) for rank, e in enumerate(gather_objects(ctx, error)) if e]
    if errors:
        rank, message = errors[0]
        raise SystemExit(f"rank {rank}: {message}")
    return result


def run_on_main(ctx: DistContext, work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0 only and hand its result to every rank; a failure stops every rank."""
    outcome: tuple[Any, str | None] = (None, None)
    if ctx.is_main:
        try:
            outcome = (work(), None)
        except (Exception, SystemExit) as failure:  # noqa: BLE001 - re-raised below on every rank
            if not ctx.distributed:
                raise
            outcome = (None, str(failure) if isinstance(failure, SystemExit) else f"{type(failure).__name__}: {failure}")
    result, error = broadcast_object(ctx, outcome)
    if error:
        raise SystemExit(f"rank 0: {error}")
    return result


def wrap_model(model: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``model`` (already on ``ctx.device``) wrapped in DistributedDataParallel when distributed."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def broadcast_modules(ctx: DistContext, modules: dict[str, torch.nn.Module]) -> None:
    """Copy rank 0's parameters and buffers of every module to the other ranks (identical replicas to start from)."""
    if not ctx.distributed:
        return
    for name in sorted(modules):
        for tensor in list(modules[name].parameters()) + list(modules[name].buffers()):
            torch_dist.broadcast(tensor.data, src=0)


def average_gradients_on_step(ctx: DistContext, optimizer: torch.optim.Optimizer) -> None:
    """Make ``optimizer.step()`` first average its parameters' gradients over the ranks (data parallel).

    The same arithmetic as DistributedDataParallel (mean of the per-rank gradients; every rank then takes the same
    step), done in one all-reduce per optimiser step instead of overlapping with the backward pass, so it serves
    trainers with several optimisers and several backward passes per step (GANs, diffusion with auxiliary
    losses) without wrapping their networks. Gradient clipping before ``step()`` acts on each rank's own gradient.
    A parameter without a gradient on some ranks counts as zero there; one without a gradient on every rank is
    left out (the optimiser skips it, as in a single process). Every rank must call ``step()`` equally often.
    """
    if not ctx.distributed:
        return
    parameters = [p for group in optimizer.param_groups for p in group["params"]]

    def hook(_optimizer, _args, _kwargs) -> None:
        present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=ctx.device)
        torch_dist.all_reduce(present)
        chosen = [p for p, count in zip(parameters, present.tolist()) if count > 0]
        if not chosen:
            return
        for p in chosen:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1).float() for p in chosen])
        torch_dist.all_reduce(flat)
        flat /= ctx.world_size
        offset = 0
        for p in chosen:
            count = p.grad.numel()
            p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
            offset += count

    optimizer.register_step_pre_hook(hook)


def concat_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (same shape on all ranks) concatenated along dim 0 in rank order, on every rank; the
    tensor itself outside a process group. For state that grows from the batches, such as a memory bank, so every
    replica records the same entries."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()) or torch_dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(torch_dist.get_world_size())]
    torch_dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def data_parallel(ctx: DistContext, modules: dict[str, torch.nn.Module], optimizers) -> None:
    """Make a stage-2 trainer data parallel: rank 0's weights everywhere, every optimiser averaging gradients
    (:func:`broadcast_modules`, :func:`average_gradients_on_step`); nothing outside a process group."""
    broadcast_modules(ctx, modules)
    for optimizer in optimizers:
        average_gradients_on_step(ctx, optimizer)


def rank_seed(ctx: DistContext, *seed: int) -> list[int]:
    """A numpy seed sequence for this rank: ``seed`` itself on rank 0 (single-process runs keep their draws),
    ``seed + [rank]`` on the others (each rank draws its own batches)."""
    return list(seed) if ctx.rank == 0 else [*seed, ctx.rank]


def agree(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's decision on every rank (e.g. a wall-clock stop, measured on rank 0 only)."""
    return bool(broadcast_object(ctx, bool(flag)))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return getattr(model, "module", model)


def state_sha256(model: torch.nn.Module) -> str:
    """sha256 over the names, shapes and bytes of every parameter and buffer (on the CPU)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(unwrap(model).state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def replica_hashes(ctx: DistContext, model: torch.nn.Module) -> list[str]:
    """Every rank's :func:`state_sha256`, in rank order; DDP keeps them equal unless something desynchronised."""
    return gather_objects(ctx, state_sha256(model))


__all__ = ["DistContext", "agree", "average_gradients_on_step", "barrier", "broadcast_modules", "broadcast_object",
           "cleanup", "concat_across_ranks", "data_parallel", "elastic_restart_count", "gather_objects", "init_distributed",
           "mean_across_ranks", "rank_seed", "replica_hashes", "run_everywhere", "run_on_main", "select_device",
           "state_sha256", "unwrap", "wrap_model"]
