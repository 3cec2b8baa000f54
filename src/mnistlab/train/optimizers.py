"""torch's fused Adam and AdamW, stepping channels_last weights in place of copying them.

    optimizer = Adam(model.parameters(), lr=1e-3, fused=True)    # as torch.optim.Adam

A bf16 run keeps its conv weights channels_last (mnistlab.train.precision), and so their
gradients and optimizer state. torch's fused CPU kernels walk each tensor as one dense row and
take a non-contiguous tensor through a contiguous copy and back, every step. A channels_last
tensor is dense in another order of its dimensions, though, and an elementwise update does not
care which order: so where a parameter, its gradient and its state share the same strides, these
classes hand the kernel the same tensors permuted into that order (views: nothing is copied).
The update is the same, bit for bit (tests/train/test_optimizer.py), and the state dict is
torch's. On the seed CNN's weights (AMD EPYC, hot caches) Adam's step took 142 us against
torch's 184; small tensors keep torch's copies (MIN_ELEMENTS).

Where strides differ (a gradient in another layout than its weight), the tensors go to torch
as they are, which copies as before.
"""

from __future__ import annotations

from typing import Any

import torch


def dense_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation that makes ``t`` contiguous, or None when ``t`` already is or no
    permutation does (a view with gaps or overlaps)."""
    if t.is_contiguous():
        return None
    order = tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), d)))
    return order if t.permute(order).is_contiguous() else None


# the fewest elements for which a view pays: on smaller tensors torch's copies cost less than
# the views' own bookkeeping (one channels_last weight's Adam step here: 4,608 elements 22 us
# copied against 31 us through views, 36,864: 32 against 36, 73,728: 49 against 44)
MIN_ELEMENTS = 65_536


def dense_views(params: list[torch.Tensor], *per_param: list[torch.Tensor]) -> None:
    """Replace, in the lists, each parameter of at least MIN_ELEMENTS and its tensors in
    ``per_param`` (same index, same shape) by their contiguous permuted views, where they all
    share the parameter's strides. Lists of another length (amsgrad's, when off) or tensors of
    another shape (a step count) are left as they are."""
    lists = [ts for ts in per_param if len(ts) == len(params)]
    for i, p in enumerate(params):
        if p.numel() < MIN_ELEMENTS:
            continue
        order = dense_order(p)
        if order is None:
            continue
        mates = [ts for ts in lists if ts[i] is None or ts[i].shape == p.shape]
        if any(ts[i] is None or ts[i].stride() != p.stride() for ts in mates):
            continue
        params[i] = p.permute(order)
        for ts in mates:
            ts[i] = ts[i].permute(order)


class _DenseViews:
    """Mixin over a torch optimizer whose ``_init_group(group, params, grads, ...)`` gathers the
    tensors that its step hands to the fused kernel, and whose step then keys nothing by them.
    Adam's and AdamW's qualify; SGD's step files its momentum buffers under the gathered
    parameters, so there the views would become keys of its state, and it is left out."""

    def _init_group(self, group: dict[str, Any], params: list[torch.Tensor],
                    *lists: list[torch.Tensor]) -> Any:
        out = super()._init_group(group, params, *lists)  # type: ignore[misc]
        if group.get("fused"):
            dense_views(params, *lists)
        return out


class Adam(_DenseViews, torch.optim.Adam):
    """torch.optim.Adam; channels_last tensors reach its fused kernel without copies."""


class AdamW(_DenseViews, torch.optim.AdamW):
    """torch.optim.AdamW; channels_last tensors reach its fused kernel without copies."""
