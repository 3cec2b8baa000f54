"""Which device a run trains or evaluates on: ``--device auto|cpu|cuda|mps``.

    device = resolve_device("auto")     # torch.device: cuda if present, else mps, else cpu
    describe(device)                    # "cpu" | "cuda:0 (NVIDIA H200)" (config.json records it)

On a GPU the data is moved to the device once and kept there (MNIST is 200 MB in fp32), the
model lives there, and autocast runs on the device's type; the fused engine is CPU-only
(mnistlab.train.precision.resolve_engine). On the CPU nothing differs from a run without
the flag.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from mnistlab.checks import DEVICES
from mnistlab.errors import UserError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available(kind: str) -> bool:
    """Whether this machine (and this torch build) can run on ``kind``."""
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return _mps_available()
    return False


# what every message says where bf16 is emulated
NO_NATIVE_BF16 = "this CPU has no native bf16 (AVX-512 BF16 or AMX)"


def native_bf16(kind: str = "cpu") -> bool:
    """Whether ``kind`` (a device type) computes bf16 natively: on the CPU, oneDNN's bf16 (AVX-512
    BF16 or AMX), as PyTorch reports it. Without it a CPU emulates bf16, far slower than fp32
    (a 2-core AMD EPYC with AVX2 only: the bf16 matmul ran at about 1 GFLOP/s). MPS counts as
    not (its bf16 autocast is partial)."""
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def autocast(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` (a device type; weights stay fp32; matmuls and convs run in
    bf16). Here rather than in ``precision``, which loads the fused engine: predicting needs
    this, not that."""
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_device(name: str, label: str = "--device") -> torch.device:
    """``auto`` -> cuda if available, else mps, else cpu; an explicit device that this machine
    lacks is a UserError (raised before anything is written)."""
    if name == "auto":
        kind = next(k for k in ("cuda", "mps", "cpu") if available(k))
        return torch.device(kind)
    if name not in DEVICES:
        raise UserError(f"{label} must be one of {', '.join(DEVICES)}, got {name!r}")
    if not available(name):
        raise UserError(f"{label} {name}: no {name.upper()} device on this machine "
                        f"(torch {torch.__version__}); use --device cpu or auto")
    return torch.device(name)


def describe(device: torch.device) -> str:
    """What config.json records: ``cpu``, ``mps``, or ``cuda:0 (its name)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def to_device(device: torch.device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors on ``device``; on the CPU the very same tensors (no copy)."""
    if device.type == "cpu":
        return tensors
    return tuple(t.to(device) for t in tensors)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a GPU runs asynchronously): before reading a
    clock that times it. On the CPU nothing to wait for."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
