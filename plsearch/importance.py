"""Activation importance of a parent model: one calibration pass, float32, cached on disk.

    imp = compute_importance(model, batches, key=ImportanceKey(...))   # docs/method.md sec. 1
    imp.channel          # (d,)      S_ch: sum over hidden-size norms of mean |norm output|
    imp.head             # (L, n_q)  S_head: mean L2 norm of each head's output (o_proj input)
    imp.kv_group         # (L, n_kv) S_kv: sum of S_head over the heads sharing a KV group
    imp.neuron           # (L, f)    S_ff: mean |down_proj input|
    imp.block_influence  # (L,)      BI = 1 - mean cos(block input, block output)

The pass runs the decoder only (no lm_head: logits are not needed), in inference mode,
with small hook objects that are always removed. Statistics are summed in float32 and
divided by the token count at the end. With a key, the result is stored as one
safetensors file (tensors + JSON metadata in its header) under the cache directory and a
second call with the same key loads it without running the model.

Under torchrun the micro-batches are shared out over the ranks (data-parallel, on a
replicated or an FSDP2-sharded model) and the sums are added up before the means, so the
result equals one process's (up to float32 summation order); rank 0 owns the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from plsearch import atomic, distributed

logger = logging.getLogger(__name__)

__all__ = [
    "Importance",
    "ImportanceKey",
    "compute_importance",
    "default_cache_dir",
    "importance_cache_path",
    "load_cached_importance",
]

_TENSOR_FIELDS = ("channel", "head", "kv_group", "neuron", "block_influence")
_FORMAT = 1  # bump when the meaning of a stored tensor changes


@dataclass(frozen=True)
class ImportanceKey:
    """What an importance result depends on; its digest names the cache file."""

    parent_hash: str  # models.weights_hash of the parent folder
    data: str  # calibration data source, as given (plus what identifies a file's version)
    num_samples: int  # N sequences
    seq_len: int  # T tokens each
    seed: int  # seed of the window sampling

    def digest(self) -> str:
        text = json.dumps({**asdict(self), "format": _FORMAT}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Importance:
    """Importance scores of one parent (docs/method.md section 1); larger = more important."""

    channel: torch.Tensor  # (d,) float32
    head: torch.Tensor  # (L, n_q)
    kv_group: torch.Tensor  # (L, n_kv)
    neuron: torch.Tensor  # (L, f)
    block_influence: torch.Tensor  # (L,)
    num_tokens: int  # tokens the means were taken over
    model_type: str
    key: ImportanceKey | None = None

    @property
    def num_layers(self) -> int:
        return self.block_influence.shape[0]

    def shape_mismatch(self, arch) -> str | None:
        """Why these scores cannot belong to a parent of ``arch`` (None when they can)."""
        expected = {
            "channel": (arch.hidden_size,),
            "head": (arch.num_hidden_layers, arch.num_attention_heads),
            "kv_group": (arch.num_hidden_layers, arch.num_key_value_heads),
            "neuron": (arch.num_hidden_layers, arch.intermediate_size),
            "block_influence": (arch.num_hidden_layers,),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                return f"importance '{name}' has shape {got}, the parent needs {shape}"
        return None

    def save(self, path: str | Path) -> None:
        """Write one safetensors file atomically (temp file in the same folder + rename)."""
        from safetensors.torch import save_file

        meta = {
            "format": _FORMAT,
            "num_tokens": self.num_tokens,
            "model_type": self.model_type,
            "key": asdict(self.key) if self.key else None,
        }
        tensors = {name: getattr(self, name).contiguous() for name in _TENSOR_FIELDS}
        atomic.write_file(path, lambda tmp: save_file(tensors, str(tmp),
                                                      metadata={"plsearch": json.dumps(meta)}))

    @classmethod
    def load(cls, path: str | Path) -> Importance:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads(fh.metadata()["plsearch"])
            tensors = {name: fh.get_tensor(name) for name in _TENSOR_FIELDS}
        key = ImportanceKey(**meta["key"]) if meta.get("key") else None
        return cls(**tensors, num_tokens=meta["num_tokens"], model_type=meta["model_type"],
                   key=key)


def default_cache_dir() -> Path:
    """$PLSEARCH_CACHE/importance, default ~/.cache/plsearch/importance."""
    from plsearch.data import cache_dir

    return cache_dir() / "importance"


def importance_cache_path(key: ImportanceKey, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"{key.digest()}.safetensors"


def load_cached_importance(
    key: ImportanceKey, cache_dir: str | Path | None = None
) -> Importance | None:
    """The cached result for ``key``, or None when there is none (or it is unreadable)."""
    path = importance_cache_path(key, cache_dir)
    if not path.exists():
        return None
    try:
        importance = Importance.load(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt cache entry is recomputed, never fatal
        logger.warning("ignoring unreadable importance cache %s (%s)", path, exc)
        return None
    if importance.key != key:
        logger.warning("importance cache %s holds another key; recomputing", path)
        return None
    logger.info("importance cache hit: %s", path)
    return importance


Batches = torch.Tensor | Iterable[torch.Tensor] | Callable[[], "Batches"]


def compute_importance(
    model: nn.Module,
    batches: Batches,
    family=None,
    *,
    key: ImportanceKey | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> Importance:
    """Importance of ``model`` over calibration token batches (docs/method.md section 1).

    ``batches``: a LongTensor (N, T), split into micro-batches of ``batch_size`` rows; or an
    iterable of (B, T) LongTensors; or a callable returning either (called only on a cache
    miss, so a cache hit never tokenizes data). With ``key`` the result is cached.
    """
    if key is not None:
        cached = load_cached_importance(key, cache_dir) if distributed.is_main() else None
        cached = distributed.broadcast_object(cached)  # rank 0's cache decides for all
        if cached is not None:
            return cached
    from plsearch.families import get_family

    family = family or get_family(model)
    if callable(batches) and not isinstance(batches, torch.Tensor):
        batches = batches()
    micro_batches = list(_micro_batches(batches, batch_size))
    if not micro_batches:
        raise ValueError("compute_importance got no calibration batches")
    # Under torchrun each rank takes every world-th micro-batch; sums are added up below.
    rank, world = distributed.rank(), distributed.world_size()
    mine = micro_batches[rank::world]
    device = next(model.parameters()).device
    forward = _decoder_forward(model, family)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            with _importance_hooks(model, family) as hooks:
                for batch in _progress(mine, progress and distributed.is_main(), "importance"):
                    forward(batch.to(device))
            if distributed.is_sharded(model):  # every rank runs as many forwards (FSDP)
                for _ in range(-(-len(micro_batches) // world) - len(mine)):
                    forward(micro_batches[0].to(device))  # no hooks: not counted
            _sum_over_ranks(hooks)
    finally:
        model.train(was_training)
    importance = hooks.result(model.config.model_type, key)
    if key is not None and distributed.is_main():
        path = importance_cache_path(key, cache_dir)
        importance.save(path)
        logger.info("importance cached at %s", path)
    return importance


def _decoder_forward(model: nn.Module, family) -> Callable[[torch.Tensor], object]:
    """One calibration forward. The decoder alone needs no logits; a model sharded with
    FSDP2 must be entered at its root (which gathers the embeddings), so it runs whole
    with logits for the last position only."""
    if distributed.is_sharded(model):
        return lambda ids: model(input_ids=ids, use_cache=False, logits_to_keep=1)
    decoder = family.decoder(model)
    return lambda ids: decoder(input_ids=ids, use_cache=False)


def _sum_over_ranks(hooks: _ImportanceHooks) -> None:
    """Every collector's sums (and token counts) added up over ranks, in place."""
    if distributed.world_size() == 1:
        return
    totals = ([hooks.channel] + [h.total for h in hooks.heads]
              + [n.total for n in hooks.neurons] + [b.total for b in hooks.blocks])
    tokens = torch.tensor([b.tokens for b in hooks.blocks], dtype=torch.float64)
    flat = torch.cat([t.reshape(-1).double() for t in totals] + [tokens.to(hooks.channel.device)])
    distributed.all_reduce_sum(flat)
    offset = 0
    for t in totals:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    for b, count in zip(hooks.blocks, flat[offset:].tolist()):
        b.tokens = int(count)


# ---- hooks ------------------------------------------------------------------------------


class _ChannelAbs:
    """Forward hook on a hidden-size norm: sum over tokens of |output| per channel."""

    def __init__(self, total: torch.Tensor) -> None:
        self.total = total  # shared by every norm: S_ch sums over norms

    def __call__(self, module, args, output) -> None:
        y = output[0] if isinstance(output, tuple) else output
        self.total += torch.linalg.vector_norm(y, ord=1, dim=(0, 1), dtype=torch.float32)


class _HeadNorm:
    """Forward pre-hook on o_proj: sum over tokens of each head's output L2 norm."""

    def __init__(self, num_heads: int, head_dim: int, device) -> None:
        self.total = torch.zeros(num_heads, device=device)
        self.head_dim = head_dim

    def __call__(self, module, args) -> None:
        x = args[0]
        heads = x.unflatten(-1, (-1, self.head_dim))  # (B, T, n_q, h)
        norms = torch.linalg.vector_norm(heads, dim=-1, dtype=torch.float32)  # (B, T, n_q)
        self.total += norms.sum(dim=(0, 1))


class _InputAbs:
    """Forward pre-hook on down_proj: sum over tokens of |input| per FFN neuron."""

    def __init__(self, size: int, device) -> None:
        self.total = torch.zeros(size, device=device)

    def __call__(self, module, args) -> None:
        x = args[0]
        self.total += torch.linalg.vector_norm(x, ord=1, dim=(0, 1), dtype=torch.float32)


class _BlockCosine:
    """Forward hook on a decoder layer: sum over tokens of cos(block input, block output)."""

    def __init__(self, device) -> None:
        self.total = torch.zeros((), device=device)
        self.tokens = 0

    def __call__(self, module, args, kwargs, output) -> None:
        x_in = args[0] if args else kwargs["hidden_states"]
        x_out = output[0] if isinstance(output, tuple) else output
        cos = F.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # (B, T)
        self.total += cos.sum()
        self.tokens += cos.numel()


class _ImportanceHooks:
    """The collectors of one pass; ``result`` turns their sums into means."""

    def __init__(self, model: nn.Module, family) -> None:
        arch = family.arch_from_config(model.config)
        device = next(model.parameters()).device
        self.arch = arch
        self.channel = torch.zeros(arch.hidden_size, device=device)
        layers = range(arch.num_hidden_layers)
        self.heads = [_HeadNorm(arch.num_attention_heads, arch.head_dim, device) for _ in layers]
        self.neurons = [_InputAbs(arch.intermediate_size, device) for _ in layers]
        self.blocks = [_BlockCosine(device) for _ in layers]

    def register(self, model: nn.Module, family) -> list:
        handles = []
        channel_hook = _ChannelAbs(self.channel)
        for i, layer in enumerate(family.layers(model)):
            parts = family.layer_parts(layer)
            for norm in parts.hidden_norms:
                handles.append(norm.register_forward_hook(channel_hook))
            handles.append(parts.o.register_forward_pre_hook(self.heads[i]))
            handles.append(parts.down.register_forward_pre_hook(self.neurons[i]))
            handles.append(layer.register_forward_hook(self.blocks[i], with_kwargs=True))
        handles.append(family.final_norm(model).register_forward_hook(channel_hook))
        return handles

    def result(self, model_type: str, key: ImportanceKey | None) -> Importance:
        tokens = self.blocks[0].tokens
        if tokens == 0:
            raise ValueError("compute_importance got no calibration batches")
        head = torch.stack([h.total for h in self.heads]).cpu() / tokens  # (L, n_q)
        per_group = self.arch.queries_per_group
        kv_group = head.unflatten(1, (self.arch.num_key_value_heads, per_group)).sum(-1)
        cosine = torch.stack([b.total for b in self.blocks]).cpu() / tokens
        return Importance(
            channel=(self.channel / tokens).cpu(),
            head=head,
            kv_group=kv_group,
            neuron=torch.stack([n.total for n in self.neurons]).cpu() / tokens,
            block_influence=1.0 - cosine,
            num_tokens=tokens,
            model_type=model_type,
            key=key,
        )


@contextmanager
def _importance_hooks(model: nn.Module, family) -> Iterator[_ImportanceHooks]:
    hooks = _ImportanceHooks(model, family)
    handles = []
    try:
        handles = hooks.register(model, family)
        yield hooks
    finally:
        for handle in handles:
            handle.remove()


# ---- batches and progress ----------------------------------------------------------------


def _micro_batches(batches, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(batches, torch.Tensor):
        if batches.dim() != 2:
            raise ValueError(f"calibration batches must be (N, T) token ids, got {tuple(batches.shape)}")
        yield from batches.split(batch_size)
    else:
        for batch in batches:
            yield batch if batch.dim() == 2 else batch[None]


def _progress(items: list, enabled: bool, label: str) -> Iterator:
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            yield item
            bar.advance(task)
