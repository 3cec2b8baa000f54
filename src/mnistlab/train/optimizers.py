"""torch's fused Adam and AdamW, stepped without torch's per-step bookkeeping or layout copies.

    optimizer = Adam(model.parameters(), lr=1e-3, fused=True)    # as torch.optim.Adam

Two things cost a training step here that the update itself does not need:

* **Layout copies.** A bf16 run keeps its conv weights channels_last
  (mnistlab.train.precision), and so their gradients and optimizer state. torch's fused CPU
  kernels walk each tensor as one dense row and take a non-contiguous tensor through a
  contiguous copy and back, every step. A channels_last tensor is dense in another order of its
  dimensions, though, and an elementwise update does not care which order: so where a
  parameter, its gradient and its state share the same strides, these classes hand the kernel
  the same tensors permuted into that order (views: nothing is copied).
* **Gathering, every step.** torch's step() gathers each group's tensors into lists, looks up
  every state and dispatches through two layers of functions, each step. With ``fused=True``
  on the CPU, step() here gathers the lists once (through torch's own ``_init_group``, which
  also creates the state), keeps them, and calls the same fused kernel directly; each step
  first checks that every parameter, gradient and state tensor is still the one gathered, in
  the same storage (a new ``.grad``, a loaded state dict, a moved model: gathered again).

The update is the same, bit for bit, and the state dict is torch's
(tests/train/test_optimizer.py). On the seed CNN's weights (AMD EPYC, hot caches) Adam's step
took about 95 us, against 145 with the views alone and 180-190 for torch's. A step with a
closure, a gradient scaler (grad_scale / found_inf), amsgrad, differentiable or capturable
settings, or tensors off the CPU goes through torch's own step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def dense_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation that makes ``t`` contiguous, or None when ``t`` already is or no
    permutation does (a view with gaps or overlaps)."""
    if t.is_contiguous():
        return None
    order = tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), d)))
    return order if t.permute(order).is_contiguous() else None


# the fewest elements for which a view pays when the views are made anew each step (torch's
# own step, below): on smaller tensors torch's copies cost less than the views' bookkeeping (one
# channels_last weight's Adam step here: 4,608 elements 22 us copied against 31 us through
# views, 36,864: 32 against 36, 73,728: 49 against 44). Views made once cost nothing a step.
MIN_ELEMENTS = 65_536


def dense_views(params: list[torch.Tensor], *per_param: list[torch.Tensor],
                min_elements: int = MIN_ELEMENTS) -> None:
    """Replace, in the lists, each parameter of at least ``min_elements`` and its tensors in
    ``per_param`` (same index, same shape) by their contiguous permuted views, where they all
    share the parameter's strides. Lists of another length (amsgrad's, when off) or tensors of
    another shape (a step count) are left as they are."""
    lists = [ts for ts in per_param if len(ts) == len(params)]
    for i, p in enumerate(params):
        if p.numel() < min_elements:
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


@dataclass
class _Gathered:
    """One parameter group's tensors as the fused kernel takes them, and what they came from."""

    group: dict[str, Any]
    # per parameter of the group: (parameter, its storage, its .grad or None, the grad's
    # storage, its state dict, exp_avg, exp_avg_sq, step); checked before each step
    sources: list[tuple[Any, ...]]
    params: list[torch.Tensor]
    grads: list[torch.Tensor]
    exp_avgs: list[torch.Tensor]
    exp_avg_sqs: list[torch.Tensor]
    steps: list[torch.Tensor]

    def current(self, group: dict[str, Any], state: Any) -> bool:
        """Whether every tensor is still the one gathered, where it was."""
        if group is not self.group or len(group["params"]) != len(self.sources):
            return False
        for p, (q, where, grad, grad_where, s, avg, avg_sq, step) in zip(
                group["params"], self.sources, strict=True):
            g = p.grad
            if (p is not q or g is not grad or p.data_ptr() != where
                    or (g is not None and g.data_ptr() != grad_where)):
                return False
            if g is not None and (state.get(p) is not s or s.get("exp_avg") is not avg
                                  or s.get("exp_avg_sq") is not avg_sq
                                  or s.get("step") is not step):
                return False
        return True


def _direct(group: dict[str, Any]) -> bool:
    """Whether this group's step is one fused kernel call on CPU tensors of one dtype."""
    params = group["params"]
    return (bool(group.get("fused")) and not group["amsgrad"] and not group["differentiable"]
            and not group["capturable"] and all(p.device.type == "cpu" for p in params)
            and len({p.dtype for p in params}) <= 1)


def _torch_step(cls: type) -> Any:
    """torch's own step() of ``cls``, without the hooks' caller that torch wraps around a
    class's step when it first builds one (ours already runs them)."""
    step = cls.step
    return step.__wrapped__ if getattr(step, "hooked", False) else step


class _DirectFused:
    """Mixin over torch's Adam or AdamW (the class after it in the bases)."""

    _gathered: list[_Gathered | None]

    def _init_group(self, group: dict[str, Any], params: list[torch.Tensor],
                    *lists: list[torch.Tensor]) -> Any:
        # torch's own step (the fallback) as well as ours gather through here
        out = super()._init_group(group, params, *lists)  # type: ignore[misc]
        if group.get("fused"):
            dense_views(params, *lists)
        return out

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        groups: list[dict[str, Any]] = self.param_groups  # type: ignore[attr-defined]
        if (closure is not None or getattr(self, "grad_scale", None) is not None
                or getattr(self, "found_inf", None) is not None
                or not all(_direct(g) for g in groups)):
            torch_class = next(c for c in type(self).__mro__
                               if c.__module__.startswith("torch.optim"))
            return _torch_step(torch_class)(self, closure)
        if len(getattr(self, "_gathered", ())) != len(groups):
            self._gathered = [None] * len(groups)
        state = self.state  # type: ignore[attr-defined]
        for i, group in enumerate(groups):
            gathered = self._gathered[i]
            if gathered is None or not gathered.current(group, state):
                gathered = self._gathered[i] = self._gather(group)
            if not gathered.params:
                continue
            beta1, beta2 = (float(b) for b in group["betas"])
            update = (torch._fused_adamw_ if group["decoupled_weight_decay"]
                      else torch._fused_adam_)
            torch._foreach_add_(gathered.steps, 1)
            update(gathered.params, gathered.grads, gathered.exp_avgs, gathered.exp_avg_sqs,
                   [], gathered.steps, amsgrad=False, lr=group["lr"], beta1=beta1,
                   beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                   maximize=group["maximize"], grad_scale=None, found_inf=None)
        return None

    def _gather(self, group: dict[str, Any]) -> _Gathered:
        """The group's lists through torch's ``_init_group`` (creating any missing state), each
        channels_last tensor as its dense view: made once, so every size pays."""
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        avgs: list[torch.Tensor] = []
        avg_sqs: list[torch.Tensor] = []
        steps: list[torch.Tensor] = []
        super()._init_group(group, params, grads, avgs, avg_sqs, [], steps)  # type: ignore[misc]
        dense_views(params, grads, avgs, avg_sqs, min_elements=0)
        state = self.state  # type: ignore[attr-defined]
        sources = []
        for p in group["params"]:
            g, s = p.grad, state.get(p)
            sources.append((p, p.data_ptr(), g, g.data_ptr() if g is not None else 0, s,
                            *((s or {}).get(k) for k in ("exp_avg", "exp_avg_sq", "step"))))
        return _Gathered(group, sources, params, grads, avgs, avg_sqs, steps)


class Adam(_DirectFused, torch.optim.Adam):
    """torch.optim.Adam; with fused=True on the CPU, stepped directly (see the module)."""


class AdamW(_DirectFused, torch.optim.AdamW):
    """torch.optim.AdamW; with fused=True on the CPU, stepped directly (see the module)."""
