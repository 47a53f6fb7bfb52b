"""A parent whose decoder-layer matrices stay on disk until a pass needs them.

    parent = open_streamed(model_dir)           # embeddings, norms, lm_head in memory
    imp = compute_importance(parent, windows)   # each layer read when its forward starts
    model, report = build_candidate(parent, imp, arch, recipe)   # layer by layer

The model is the family's ordinary HF class, built without initialization. Its
non-layer tensors (embeddings, final norm, untied lm_head) and every 1-D tensor (norm
weights, biases) are read at once; each decoder layer's matrices are meta tensors that a
forward pre-hook reads from the safetensors files (``safe_open``: memory-mapped, only
that layer's bytes) and a forward hook drops again. ``resident(parent, layers)`` does the
same for code that reads weights directly (``build_candidate``'s fill). So a full forward
or a candidate build holds the embeddings plus about one layer of the parent, whatever
the parent's depth: the memory of pruning is bounded by the candidate, not the parent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from plsearch.errors import ModelLoadError

logger = logging.getLogger(__name__)

__all__ = ["TensorFiles", "is_streamed", "open_streamed", "resident"]

_ATTR = "_plsearch_stream"  # the _LayerStream of a streamed model


class TensorFiles:
    """Where each tensor lives: name -> safetensors file of a model folder."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors import safe_open

        self.file_of: dict[str, Path] = {}
        index = model_dir / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            self.file_of = {name: model_dir / file for name, file in weight_map.items()}
        else:
            for path in sorted(model_dir.glob("*.safetensors")):
                with safe_open(str(path), framework="pt") as fh:
                    self.file_of.update(dict.fromkeys(fh.keys(), path))
        if not self.file_of:
            raise ModelLoadError(f"{model_dir} has no *.safetensors weights; save the model "
                                 "with save_pretrained(..., safe_serialization=True)")

    def _by_file(self, names: Iterable[str]) -> dict[Path, list[str]]:
        """The names grouped by the safetensors file that holds them (each opened once)."""
        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(self.file_of[name], []).append(name)
        return by_file

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) for each name, each file opened once and closed after its reads."""
        from safetensors import safe_open

        for path, file_names in self._by_file(names).items():
            with safe_open(str(path), framework="pt") as fh:
                for name in file_names:
                    yield name, fh.get_tensor(name)

    def read_rows(self, names_rows: dict[str, tuple[int, int]]
                  ) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, rows start:stop along dim 0) for each name; only those bytes are read."""
        from safetensors import safe_open

        for path, file_names in self._by_file(names_rows).items():
            with safe_open(str(path), framework="pt") as fh:
                for name in file_names:
                    start, stop = names_rows[name]
                    yield name, fh.get_slice(name)[start:stop]


class _LayerStream:
    """Reads and drops the matrices of one decoder layer at a time."""

    def __init__(self, files: TensorFiles, layers: nn.ModuleList, prefix: str, dtype) -> None:
        self.files, self.layers, self.prefix, self.dtype = files, layers, prefix, dtype
        self.count = [0] * len(layers)  # nesting depth of each layer's residence

    def matrices(self, index: int) -> list[tuple[str, nn.Module, str]]:
        """(file name, owning module, parameter name) of each streamed tensor of a layer."""
        out = []
        for module_name, module in self.layers[index].named_modules():
            for pname, param in module.named_parameters(recurse=False):
                if param.ndim >= 2:
                    full = f"{self.prefix}{index}.{module_name}.{pname}".replace("..", ".")
                    out.append((full, module, pname))
        return out

    def load(self, index: int) -> None:
        self.count[index] += 1
        if self.count[index] > 1:
            return
        slots = {name: (module, pname) for name, module, pname in self.matrices(index)}
        for name, tensor in self.files.read(slots):
            module, pname = slots[name]
            old = getattr(module, pname)
            if tuple(tensor.shape) != tuple(old.shape):
                raise ModelLoadError(f"{name} has shape {tuple(tensor.shape)} in the file but "
                                     f"the config needs {tuple(old.shape)}; fix config.json")
            setattr(module, pname, nn.Parameter(tensor.to(self.dtype), requires_grad=False))

    def drop(self, index: int) -> None:
        self.count[index] -= 1
        if self.count[index] > 0:
            return
        for _, module, pname in self.matrices(index):
            old = getattr(module, pname)
            setattr(module, pname, nn.Parameter(torch.empty(old.shape, dtype=self.dtype,
                                                            device="meta"), requires_grad=False))


def open_streamed(model_dir: str | Path, dtype: torch.dtype = torch.float32):
    """The parent in ``model_dir`` with its decoder-layer matrices read on demand (CPU)."""
    from plsearch.families import get_family
    from plsearch.models import read_config
    from plsearch.prune.skeleton import empty_model

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    family = get_family(config)
    files = TensorFiles(model_dir)
    model = empty_model(family, config, dtype)
    layers = family.layers(model)
    names = {id(module): name for name, module in model.named_modules()}
    prefix = names[id(layers)] + "."
    stream = _LayerStream(files, layers, prefix, dtype)
    for index in range(len(layers)):  # the skeleton's matrices were never touched: drop them
        stream.count[index] = 1
        stream.drop(index)
    resident_now = [(name, p) for name, p in model.named_parameters() if not p.is_meta]
    missing = [name for name, _ in resident_now if name not in files.file_of
               and not (config.tie_word_embeddings and name.endswith("lm_head.weight"))]
    missing += [name for i in range(len(layers)) for name, _, _ in stream.matrices(i)
                if name not in files.file_of]
    if missing:
        raise ModelLoadError(f"{model_dir} has no tensor {missing[0]} (and {len(missing) - 1} "
                             "more) under the names of its config's model class; load it "
                             "without streaming, or re-save it with save_pretrained")
    owners = {name: module for name, module in model.named_modules()}
    wanted = {name for name, _ in resident_now if name in files.file_of}
    with torch.no_grad():
        for name, tensor in files.read(wanted):
            module_name, _, pname = name.rpartition(".")
            module = owners[module_name]
            setattr(module, pname, nn.Parameter(tensor.to(dtype), requires_grad=False))
    if config.tie_word_embeddings:
        model.tie_weights()
    for index, layer in enumerate(layers):
        layer.register_forward_pre_hook(lambda m, a, i=index: stream.load(i))
        layer.register_forward_hook(lambda m, a, o, i=index: stream.drop(i))
    object.__setattr__(model, _ATTR, stream)
    logger.info("streaming %d decoder layers from %s", len(layers), model_dir)
    return model.eval()


def is_streamed(model: nn.Module) -> bool:
    return getattr(model, _ATTR, None) is not None


@contextmanager
def resident(model: nn.Module, layers: Iterable[int]) -> Iterator[None]:
    """The matrices of ``layers`` (parent indices) in memory inside the block; a no-op for
    an ordinary model."""
    stream = getattr(model, _ATTR, None)
    layers = sorted(set(layers)) if stream is not None else []
    loaded = []
    try:
        for index in layers:
            stream.load(index)
            loaded.append(index)
        yield
    finally:
        for index in loaded:
            stream.drop(index)
