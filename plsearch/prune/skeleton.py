"""An HF model of a given config whose parameters are about to be replaced.

Built under transformers' no_init_weights, so no random initialization runs: the
parameters are uninitialized allocations (untouched pages cost no memory) that the
pruning code swaps for the sliced tensors. Buffers (rotary tables, Gemma's embedding
scale) are computed by the modules' own constructors from the new config.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["empty_model", "set_param"]


def empty_model(family, config, dtype: torch.dtype):
    """``family.build_model(config)`` in ``dtype``, without weight initialization."""
    from transformers.initialization import no_init_weights

    config.dtype = dtype  # from_config builds in config.dtype; it is also saved as such
    with no_init_weights():
        model = family.build_model(config)
    return model.eval()


def set_param(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
    """Replace ``module.<name>`` by ``tensor`` (shape-checked); None requires no parameter."""
    current = getattr(module, name)
    if tensor is None:
        assert current is None, f"{type(module).__name__}.{name} needs a tensor"
        return
    assert current is not None and current.shape == tensor.shape, (
        f"{type(module).__name__}.{name}: shape {tuple(tensor.shape)} does not fit "
        f"{None if current is None else tuple(current.shape)}"
    )
    setattr(module, name, nn.Parameter(tensor.to(current.dtype).contiguous(),
                                       requires_grad=current.requires_grad))
