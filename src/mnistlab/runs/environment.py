"""The machine and versions a run ran on: what decides whether it can be repeated bit for bit."""

from __future__ import annotations

import os
import platform

import numpy
import safetensors
import torch

from mnistlab import __version__
from mnistlab.machine import openmp_wait
from mnistlab.runs.schema import Environment

# The CPU flags that decide which kernels PyTorch (oneDNN) and mnistlab.fused can use, in
# /proc/cpuinfo's spelling; the rest of the flags line is noise for this purpose.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw",
             "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8", "amx_fp16", "asimd", "sve", "sve2", "bf16", "i8mm")


def isa_flags(cpuinfo: str | None = None) -> list[str]:
    """The ISA_FLAGS this CPU has (first ``flags`` / ``Features`` line of /proc/cpuinfo, or
    the text given), in ISA_FLAGS's order; [] where /proc/cpuinfo cannot be read."""
    if cpuinfo is None:
        cpuinfo = _cpuinfo()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):       # x86 | arm64
            present = set(value.split())
            return [flag for flag in ISA_FLAGS if flag in present]
    return []


def environment(threads: int | None = None, *, device: str | None = None) -> Environment:
    """Versions and machine facts that decide whether a run can be repeated bit for bit;
    ``device``: what the run trained on (mnistlab.train.device.describe)."""
    wait = openmp_wait()
    return Environment(
        mnistlab=__version__,
        torch=torch.__version__,
        numpy=numpy.__version__,
        safetensors=safetensors.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=cpu_name(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cpu_count=os.cpu_count(),
        threads=threads if threads is not None else torch.get_num_threads(),
        omp_wait_policy=wait["omp_wait_policy"],
        gomp_spincount=wait["gomp_spincount"],
        isa=isa_flags(),
        device=device,
    )


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``lscpu``'s "Model name") and, on x86, its family and model numbers:
    "AMD EPYC (family 25, model 17)". Virtual machines often give a bare "AMD EPYC" to Zen 3, 4
    and 5 alike, CPUs whose speeds differ several-fold, so figures and the engine probe's cache
    name the generation by its numbers too. Else what the platform says."""
    if cpuinfo is None:
        cpuinfo = _cpuinfo()
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break                                   # the first processor's block only
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name")
    if not name:
        return platform.processor() or platform.machine()
    family, model = fields.get("cpu family"), fields.get("model")
    if family and model and family.isdigit() and model.isdigit():
        return f"{name} (family {family}, model {model})"
    return name


def _cpuinfo() -> str:
    """/proc/cpuinfo's text; "" where it cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""
