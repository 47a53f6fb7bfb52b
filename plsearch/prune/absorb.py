"""Post-RMSNorm absorption (docs/method.md section 4) for sandwich-norm families.

A post-norm computes y = gamma * z / rms(z) on the output z of o_proj or down_proj. With
rms(z) replaced by a constant r measured on calibration data, y = diag(gamma / r) z, which
is folded into that projection's rows (and bias); the norm op is then gone. The folded
model is rebuilt as the family's ``absorbed_model_type`` (glm4 -> glm), whose layers have
no post-norms, so the saved candidate loads in stock transformers.

Calibration rows are split: the first 3/4 fit r, the last 1/4 (at least one row) is held
out to report, per absorbed norm, the relative error ||y - y_abs|| / ||y|| of its output
(both computed from the same z of the unabsorbed model) and, for the whole decoder, the
relative error of its final hidden states before and after absorption.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from plsearch.prune.skeleton import empty_model
from plsearch.prune.slnp import effective_scale, norm_eps

logger = logging.getLogger(__name__)

__all__ = ["AbsorbedNorm", "absorb_post_norms", "split_calibration"]

_POST_SLOTS = (("post_attn_norm", "o"), ("post_mlp_norm", "down"))


@dataclass(frozen=True)
class AbsorbedNorm:
    layer: int  # candidate layer index
    slot: str  # "post_attn_norm" or "post_mlp_norm"
    r: float  # the constant that replaced rms(z)
    rms_cv: float  # std / mean of rms(z) over the fit tokens (0 = exactly constant)
    rel_error: float  # ||y - y_abs|| / ||y|| on held-out tokens


def split_calibration(batches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit rows, held-out rows) of an (N, T) calibration tensor; N = 1 uses it for both."""
    n = batches.shape[0]
    if n < 2:
        logger.warning("one calibration row: absorption errors are measured on the fit data")
        return batches, batches
    held = max(1, n // 4)
    return batches[: n - held], batches[n - held :]


def absorb_post_norms(
    model: nn.Module,
    family,
    batches: torch.Tensor,
    *,
    rms: str = "mean",
    batch_size: int = 8,
) -> tuple[nn.Module, list[AbsorbedNorm], float]:
    """(absorbed model, per-norm report, decoder output relative error).

    ``model`` is modified in place (its projections are folded) and then rebuilt as the
    absorbed family; pass a model you own (a candidate, never the parent).
    """
    fit, heldout = split_calibration(batches)
    fit_batches, held_batches = fit.split(batch_size), heldout.split(batch_size)
    post = _post_norms(model, family)

    stats = {key: _RmsStats(norm) for key, norm in post.items()}
    with _hooked(post, stats):
        _run(model, family, fit_batches)
    constants = {key: s.constant(rms) for key, s in stats.items()}

    errors = {key: _AbsorbError(norm, constants[key], family.norm_offset)
              for key, norm in post.items()}
    with _hooked(post, errors):
        reference = _run(model, family, held_batches)

    for (layer, slot), norm in post.items():
        projection = getattr(family.layer_parts(family.layers(model)[layer]), dict(_POST_SLOTS)[slot])
        _fold_rows(projection, effective_scale(norm, family.norm_offset) / constants[layer, slot])
    absorbed = _rebuild_without_post_norms(model, family, post)

    outputs = _run(absorbed, family, held_batches)
    num = sum((a.float() - b.float()).pow(2).sum().item() for a, b in zip(outputs, reference))
    den = sum(b.float().pow(2).sum().item() for b in reference)
    output_error = (num / den) ** 0.5 if den > 0 else 0.0
    report = [
        AbsorbedNorm(layer, slot, constants[layer, slot], stats[layer, slot].cv(),
                     errors[layer, slot].value())
        for layer, slot in post
    ]
    return absorbed, report, output_error


# ---- measurement --------------------------------------------------------------------------


class _RmsStats:
    """Forward hook on a post-norm: moments of rms(z) over tokens (z = the norm's input)."""

    def __init__(self, norm: nn.Module) -> None:
        self.eps = norm_eps(norm)
        self.sum = self.sum_sq = self.sum_inv = 0.0
        self.tokens = 0

    def __call__(self, module, args, output) -> None:
        z = args[0].float()
        rms = torch.sqrt(z.pow(2).mean(-1) + self.eps)  # (B, T)
        self.sum += rms.sum().item()
        self.sum_sq += rms.pow(2).sum().item()
        self.sum_inv += rms.reciprocal().sum().item()
        self.tokens += rms.numel()

    def constant(self, kind: str) -> float:
        if kind == "harmonic":
            return self.tokens / self.sum_inv
        return self.sum / self.tokens

    def cv(self) -> float:
        mean = self.sum / self.tokens
        var = max(self.sum_sq / self.tokens - mean * mean, 0.0)
        return var**0.5 / mean


class _AbsorbError:
    """Forward hook on a post-norm: ||y - gamma * z / r||^2 and ||y||^2 over tokens."""

    def __init__(self, norm: nn.Module, r: float, offset: float) -> None:
        self.gamma = effective_scale(norm, offset)
        self.r = r
        self.diff = self.ref = 0.0

    def __call__(self, module, args, output) -> None:
        y = output.float()
        y_abs = self.gamma.to(y.device) * args[0].float() / self.r
        self.diff += (y - y_abs).pow(2).sum().item()
        self.ref += y.pow(2).sum().item()

    def value(self) -> float:
        return (self.diff / self.ref) ** 0.5 if self.ref > 0 else 0.0


def _post_norms(model, family) -> dict[tuple[int, str], nn.Module]:
    norms = {}
    for i, layer in enumerate(family.layers(model)):
        parts = family.layer_parts(layer)
        for slot, _ in _POST_SLOTS:
            norm = getattr(parts, slot)
            assert norm is not None, f"{family.model_type} layer {i} has no {slot}"
            norms[i, slot] = norm
    return norms


@contextmanager
def _hooked(norms: dict, hooks: dict) -> Iterator[None]:
    handles = []
    try:
        for key, norm in norms.items():
            handles.append(norm.register_forward_hook(hooks[key]))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _run(model, family, batches) -> list[torch.Tensor]:
    """Final decoder hidden states of each batch (the stream the lm_head reads)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        return [family.decoder(model)(input_ids=b.to(device), use_cache=False).last_hidden_state
                for b in batches]


# ---- folding and rebuilding ---------------------------------------------------------------


@torch.no_grad()
def _fold_rows(linear: nn.Linear, scale: torch.Tensor) -> None:
    """W <- diag(scale) W and b <- scale * b, computed in float32."""
    scale = scale.to(linear.weight.device)
    linear.weight.copy_(linear.weight.float() * scale[:, None])
    if linear.bias is not None:
        linear.bias.copy_(linear.bias.float() * scale)


def _rebuild_without_post_norms(model, family, post: dict) -> nn.Module:
    """The same weights in the absorbed family's model class (no copies: tensors move)."""
    from plsearch.families import get_family

    config = family.absorbed_config(model.config)
    target = get_family(config)
    names = {module: name for name, module in model.named_modules()}
    dropped = {names[norm] + "." for norm in post.values()}
    state = {k: v for k, v in model.state_dict().items()
             if not any(k.startswith(prefix) for prefix in dropped)}
    device = next(model.parameters()).device
    absorbed = empty_model(target, config, next(model.parameters()).dtype)
    absorbed.load_state_dict(state, strict=True, assign=True)
    absorbed.tie_weights()
    absorbed.generation_config = model.generation_config
    return absorbed.to(device).eval()
