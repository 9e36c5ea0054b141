"""What this machine computes fast: the choice behind `precision = "auto"`.

`mixed_bfloat16` roughly halves the training time of the shipped recipes on a CPU with
native bf16 instructions (AVX512-BF16 or AMX-BF16) or on a GPU of compute capability 8.0
or newer. Without them TensorFlow emulates bf16, and training runs several times slower
than in float32 (12x for `fast`'s step on an AVX2-only AMD EPYC: BENCHMARKS.md). So "auto"
picks bf16 only where the hardware has it, and float32 everywhere else, including where it
cannot tell (no `/proc/cpuinfo`, e.g. macOS and Windows).

It also holds `prefer_onednn`: TensorFlow runs its oneDNN kernels by default only on x86
CPUs with VNNI, AVX512-BF16 or AMX, and its slower Eigen kernels on the rest, where oneDNN
trains the recipes' models 1.5-1.7x faster in float32 (an AVX2-only AMD EPYC:
BENCHMARKS.md, "oneDNN on CPUs without VNNI"), so `fashion-cnn train` and `tune` ask for it.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger(__name__)

#: x86 CPU flags (as Linux lists them in /proc/cpuinfo) of native bf16 dot products.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: The environment variable that TensorFlow reads, once, when it is imported.
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
#: `platform.machine()` names of x86-64, where TensorFlow's wheels ship oneDNN.
X86_64 = frozenset({"x86_64", "amd64"})
#: The oldest NVIDIA compute capability with bf16 tensor cores (Ampere).
GPU_BF16_CAPABILITY = (8, 0)


def cpuinfo_field(name: str, cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """One field of the first CPU as Linux reports it, e.g. "flags" or "model name".

    Args:
        name: the field's name.
        cpuinfo: the file to read.

    Returns:
        The field's value, or None where the file is missing, unreadable or lacks it.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (the `flags` line of the first CPU).

    Args:
        cpuinfo: the file to read.

    Returns:
        The flags, or an empty set where the file is missing or unreadable.
    """
    return frozenset((cpuinfo_field("flags", cpuinfo) or "").split())


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the GPUs TensorFlow sees (empty: it trains on the CPU)."""
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(tuple(details.get("compute_capability") or (0, 0)))
    return found


def auto_precision(flags: frozenset[str], gpus: list[tuple[int, int]]) -> str:
    """The precision "auto" stands for on a machine with these CPU flags and GPUs.

    Args:
        flags: CPU feature flags (`cpu_flags()`).
        gpus: compute capabilities of the visible GPUs (`gpu_capabilities()`); when there
            are any, TensorFlow trains on them and they decide.

    Returns:
        "mixed_bfloat16" or "float32".
    """
    if gpus:
        native = all(tuple(c) >= GPU_BF16_CAPABILITY for c in gpus)
    else:
        native = bool(flags & CPU_BF16_FLAGS)
    return "mixed_bfloat16" if native else "float32"


def resolve_precision(precision: str) -> str:
    """`precision` itself, or for "auto" the precision this machine trains fastest in.

    Args:
        precision: a `TrainConfig.precision` value.

    Returns:
        A Keras dtype policy name: "float32" or "mixed_bfloat16".
    """
    if precision != "auto":
        return precision
    flags, gpus = cpu_flags(), gpu_capabilities()
    chosen = auto_precision(flags, gpus)
    if gpus:
        why = f"GPU compute capability {min(gpus)}"
    else:
        native = sorted(flags & CPU_BF16_FLAGS)
        why = f"CPU flags {', '.join(native)}" if native else "no native bf16 on this CPU"
    log.info('precision "auto" -> %s (%s)', chosen, why)
    return chosen


def agreed_precision(strategy, local: str) -> str:
    """The precision every replica of a multi-worker `strategy` trains in, for "auto".

    Each worker resolves "auto" for its own hardware, and a cluster can mix machines with
    and without native bf16. Its replicas must agree, since they share one model and one
    run folder: bf16 only where every worker chose it, float32 as soon as one did not.
    Every worker must call this (it is a collective all-reduce).

    Args:
        strategy: a `tf.distribute` strategy.
        local: this worker's `resolve_precision("auto")`.

    Returns:
        "mixed_bfloat16" or "float32", the same on every worker.
    """
    from fashion_cnn.cluster import replica_sum

    without_bf16 = replica_sum(strategy, 0.0 if local == "mixed_bfloat16" else 1.0)
    chosen = "mixed_bfloat16" if without_bf16 == 0 else "float32"
    if chosen != local:
        log.info(
            'precision "auto" -> %s on every worker (%d replica(s) lack native bf16)',
            chosen,
            round(without_bf16),
        )
    return chosen


def prefer_onednn(environ: MutableMapping[str, str], machine: str | None = None) -> bool:
    """Asks TensorFlow for its oneDNN kernels on any x86-64 CPU, not only the newest.

    TensorFlow leaves oneDNN off by default on x86 CPUs without AVX512-VNNI, AVX512-BF16,
    AVX-VNNI or AMX, e.g. AVX2-only ones, where its Eigen kernels train the recipes'
    models 1.5-1.7x slower (BENCHMARKS.md). `fashion-cnn` calls this for the commands that
    train, first thing: it only takes effect before TensorFlow is imported. (Not for
    `serve`: one image at a time, oneDNN was ~1.5 ms slower there.) A value the user set,
    e.g. `TF_ENABLE_ONEDNN_OPTS=0`, is kept.

    Args:
        environ: the environment to change (`os.environ`, or a child process's copy).
        machine: the architecture as `platform.machine()` names it (default: this one's).

    Returns:
        Whether it set `TF_ENABLE_ONEDNN_OPTS=1`.
    """
    machine = platform.machine() if machine is None else machine
    if machine.lower() not in X86_64 or ONEDNN_VARIABLE in environ:
        return False
    environ[ONEDNN_VARIABLE] = "1"
    return True


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
