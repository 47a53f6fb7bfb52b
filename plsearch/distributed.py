"""Several processes, one model: torchrun process groups and FSDP2 sharding.

Under ``torchrun --nproc-per-node N -m plsearch ...`` every rank runs the same command.
``setup(device)`` joins the process group (NCCL on CUDA, HCCL on Ascend through torch_npu,
gloo on CPU) and returns this rank's device; ``shard_model`` shards a model with torch
FSDP2 (``fully_shard`` on each decoder layer, then on the whole model), optionally with
bf16 mixed precision and activation checkpointing. Without torchrun (no WORLD_SIZE in the
environment, or 1) nothing changes: one process, rank 0 of 1, models are not wrapped.

    device = distributed.setup("cuda")
    teacher = distributed.shard_model(teacher, device, param_dtype=torch.bfloat16)
    ...
    if distributed.is_main():
        write outputs
    distributed.barrier()

Rules every caller follows: all ranks run the same collectives in the same order (each
forward of a sharded model is one); only rank 0 writes files or talks to Optuna; small
Python objects (an arch, a trial number) travel with ``broadcast_object``.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from plsearch.errors import DeviceError, PlsearchError

logger = logging.getLogger(__name__)

__all__ = [
    "RankFailedError",
    "all_reduce_sum",
    "backend_for",
    "barrier",
    "broadcast_object",
    "collective",
    "follow",
    "full_state_dict",
    "is_distributed",
    "is_main",
    "is_sharded",
    "launched_by_torchrun",
    "lead",
    "load_sharded",
    "rank",
    "reshard",
    "setup",
    "shard_model",
    "shutdown",
    "stop_followers",
    "world_size",
]

_BACKENDS = {"cuda": "nccl", "npu": "hccl", "cpu": "gloo"}
# How long a rank waits in a collective for the others (a dead peer usually fails faster:
# gloo and NCCL see the closed connection, and torchrun stops the survivors).
TIMEOUT = datetime.timedelta(minutes=30)


# What gloo says when the other end of a collective has gone away.
_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
              "Timed out", "timed out")


class RankFailedError(PlsearchError):
    """Another rank stopped (crash, out of memory, killed) during a collective."""


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started with WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (torchrun's RANK before the process group exists)."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def backend_for(device_type: str) -> str:
    try:
        return _BACKENDS[device_type]
    except KeyError:
        raise DeviceError(f"no torch.distributed backend for device {device_type!r}; use "
                          "cpu, cuda or npu") from None


def setup(device: str | torch.device) -> torch.device:
    """Join torchrun's process group (once) and return this rank's device.

    ``device`` is the kind asked for (cpu, cuda, npu); under torchrun a cuda/npu rank
    takes the accelerator numbered LOCAL_RANK. Outside torchrun: ``device`` unchanged.
    """
    device = torch.device(device)
    if not launched_by_torchrun():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "npu":
        import torch_npu  # noqa: F401 - registers the npu device and the hccl backend
    if device.type != "cpu":
        count = getattr(torch, device.type).device_count()
        if local_rank >= count:
            raise DeviceError(f"local rank {local_rank} needs {device.type}:{local_rank} but "
                              f"this node has {count}; start torchrun with --nproc-per-node "
                              f"{count} or fewer")
        device = torch.device(device.type, local_rank)
        getattr(torch, device.type).set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device.type), timeout=TIMEOUT)
        logger.info("rank %d of %d on %s (%s)", dist.get_rank(), dist.get_world_size(),
                    device, dist.get_backend())
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn the error a rank sees when a peer dies inside ``what`` into one clear line."""
    try:
        yield
    except RuntimeError as exc:  # dist.DistError (NCCL, HCCL) is a RuntimeError too
        peer_lost = isinstance(exc, dist.DistError) or any(m in str(exc) for m in _PEER_LOST)
        if not (is_distributed() and peer_lost):
            raise
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RankFailedError(
            f"rank {rank()} of {world_size()}: another rank stopped during {what} ({first}); "
            "see that rank's error above; nothing was written") from None


def barrier() -> None:
    if is_distributed():
        with collective("a barrier"):
            dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable, small: an arch, a trial id)."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    with collective("a broadcast"):
        dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks, in place (float64 sums stay exact for counts)."""
    if is_distributed():
        with collective("an all-reduce"):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def reshard(model: nn.Module) -> None:
    """Put back the shards of every FSDP2 group of ``model`` that a forward left gathered.

    FSDP2 keeps the root group gathered from its forward to its backward. After a forward
    with no backward (a no_grad evaluation) ``model.parameters()`` then yields the gathered
    copies of the root's parameters: an optimizer built on them would update each rank's
    copy with its own unreduced gradient. No-op for a model that is not sharded.
    """
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def shard_model(model: nn.Module, device: torch.device, *, param_dtype: torch.dtype | None = None,
                activation_checkpointing: bool = False, family=None) -> nn.Module:
    """FSDP2 over all ranks: ``fully_shard`` per decoder layer (and on untied embeddings
    and lm_head), then on the whole model.

    ``param_dtype`` (e.g. bfloat16) is the compute dtype of the gathered parameters; the
    shards (and so AdamW's state) stay in the model's own dtype and gradients are reduced
    in float32. ``activation_checkpointing`` recomputes each layer's activations in the
    backward pass (transformers' gradient checkpointing, non-reentrant). Outside torchrun
    the model is only moved to ``device``. The model is modified in place and returned.
    """
    if activation_checkpointing:
        model.activation_checkpointing_enable(  # transformers 5's name
            activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if not is_distributed():
        return model.to(device)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from plsearch.families import get_family

    family = family or get_family(model)
    mesh = init_device_mesh(device.type, (world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32
                                  if param_dtype is not None else None)
    with collective("sharding a model"):
        for layer in family.layers(model):
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        if not model.config.tie_word_embeddings:  # gathered only while each one runs
            fully_shard(family.embed_tokens(model), mesh=mesh, mp_policy=policy)
            fully_shard(family.lm_head(model), mesh=mesh, mp_policy=policy)
        # The rest (final norm; tied embeddings, which two modules share) in the root group,
        # which stays gathered from its forward to its backward.
        fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def load_sharded(model_dir, device: torch.device, *, dtype: torch.dtype = torch.float32,
                 param_dtype: torch.dtype | None = None,
                 activation_checkpointing: bool = False) -> nn.Module:
    """The HF model in ``model_dir``, sharded as ``shard_model`` does, each rank reading
    only its own rows of every tensor from the safetensors files (so no rank ever holds
    the whole model, in host or device memory). A collective; needs torchrun.
    """
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    from plsearch.errors import ModelLoadError
    from plsearch.families import get_family
    from plsearch.models import read_config
    from plsearch.prune.skeleton import empty_model
    from plsearch.prune.stream import TensorFiles

    config = read_config(model_dir)
    family = get_family(config)
    files = TensorFiles(model_dir)
    model = empty_model(family, config, dtype)  # uninitialized: untouched pages, no memory
    if config.tie_word_embeddings:
        model.tie_weights()  # before sharding: the two modules share one sharded tensor
    model = shard_model(model, device, param_dtype=param_dtype,
                        activation_checkpointing=activation_checkpointing, family=family)
    params = dict(model.named_parameters())  # tied weights appear once
    missing = [n for n in params if n not in files.file_of]
    if missing:
        raise ModelLoadError(f"{model_dir} has no tensor {missing[0]} (and {len(missing) - 1} "
                             "more) under the names of its config's model class; re-save it "
                             "with save_pretrained")
    rows = {}
    for name, param in params.items():
        shape, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh,
                                                              param.placements)
        if shape[0]:
            rows[name] = (offset[0], offset[0] + shape[0])
    with torch.no_grad():
        for name, tensor in files.read_rows(rows):
            params[name].to_local().copy_(tensor.to(dtype))
    logger.info("rank %d loaded its shard of %s", rank(), model_dir)
    return model.eval()


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's tensors on CPU on rank 0 ({} on the others); a collective.

    Unsharded models give their own state_dict (rank 0 of 1).
    """
    if not is_sharded(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    with collective("gathering the model's weights"):
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                    cpu_offload=True))


def unsharded_copy(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A plain (unsharded, CPU) model of ``model``'s config holding ``state``; rank 0 only.

    What gets saved with save_pretrained: an ordinary HF model, no FSDP class.
    """
    from plsearch.families import get_family
    from plsearch.prune.skeleton import empty_model

    dtype = next(iter(state.values())).dtype
    plain = empty_model(get_family(model), copy.deepcopy(model.config), dtype)
    missing, unexpected = plain.load_state_dict(state, strict=False, assign=True)
    if model.config.tie_word_embeddings:
        plain.tie_weights()
    missing = [k for k in missing if not (model.config.tie_word_embeddings and "lm_head" in k)]
    assert not missing and not unexpected, (missing, unexpected)
    return plain


# ---------------------------------------------------------------- searches under torchrun
#
# Rank 0 runs the Optuna search as in one process, through a LeaderPipeline: before each
# call that touches a model it broadcasts the call, and every other rank, inside
# follow(), makes the same call on its own copy of the pipeline. So all ranks build,
# retrain, score and save the same candidate in lockstep (each a chain of collectives
# on sharded models) while only rank 0 talks to Optuna and writes.

_MODEL_CALLS = ("build", "heldout_kl", "retrain", "score", "save", "release", "parent_score")


class LeaderPipeline:
    """Rank 0's pipeline: announces every model call to the followers, then makes it."""

    def __init__(self, pipeline) -> None:
        self.inner = pipeline

    def __getattr__(self, name: str):
        attr = getattr(self.inner, name)
        if name not in _MODEL_CALLS:
            return attr  # predict, num_params, recipe, ...: rank 0 alone, no model work

        def announced(*args):
            model, rest = (args[0], args[1:]) if name not in ("build", "parent_score") \
                else (None, args)
            # progress callbacks (on_step, on_task) are rank 0's alone: followers get None
            shared = tuple(None if callable(a) else a for a in rest)
            broadcast_object((name, shared if name != "save" else ()))
            return attr(*args) if model is None else attr(model, *rest)

        return announced

    def stop(self) -> None:
        broadcast_object(("stop", ()))


def lead(pipeline):
    """``pipeline`` for rank 0 of a torchrun search (itself in one process)."""
    return LeaderPipeline(pipeline) if is_distributed() else pipeline


def stop_followers(pipeline) -> None:
    if isinstance(pipeline, LeaderPipeline):
        pipeline.stop()


def follow(pipeline) -> None:
    """Ranks > 0 of a torchrun search: make rank 0's model calls until it stops.

    A call that fails here fails the same way on rank 0 (the loss checks and shapes are
    the same on every rank), whose objective records the trial as failed and releases
    the model next; so the error is logged and the loop goes on.
    """
    model = None
    while True:
        name, args = broadcast_object(None)
        if name == "stop":
            return
        try:
            if name == "build":
                model = pipeline.build(*args)
            elif name == "parent_score":
                pipeline.parent_score()
            elif name == "release":
                pipeline.release(model)
                model = None
            elif name == "save":
                pipeline.save(model, None, None)  # the gather only: rank 0 writes
            else:
                getattr(pipeline, name)(model, *args)
        except (PlsearchError, torch.OutOfMemoryError) as exc:
            logger.warning("rank %d: %s failed (%s); rank 0 records the trial", rank(), name,
                           exc)
