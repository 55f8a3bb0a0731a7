"""How models run on this machine: the backends (torch, ONNX Runtime fp32, ONNX Runtime int8), what
``auto`` resolves to here, the CPU's features, and the int8 quantization config that suits them."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from winnow.errors import InvalidArgumentError, MissingDependencyError


class Backend(str, Enum):
    """How a model runs: ``auto`` (resolved per machine, see :func:`resolve_backend`), torch, ONNX Runtime
    fp32, or ONNX Runtime with int8 (dynamically quantized) weights."""

    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:  # messages show the value a user types: backend 'onnx-int8'
        return repr(self.value)

    @property
    def is_onnx(self) -> bool:
        return self in (Backend.ONNX, Backend.ONNX_INT8)


BACKENDS = tuple(b.value for b in Backend if b is not Backend.AUTO)
BACKEND_CHOICES = tuple(b.value for b in Backend)


@dataclass(frozen=True)
class QuantizationConfig:
    """How weights are quantized for one kind of CPU (activations: uint8, dynamic, per batch)."""

    name: str
    per_channel: bool
    reduce_range: bool  # 7-bit weights: avoids the u8*s8 overflow of AVX2/AVX-512 kernels without VNNI
    # () = every operator ONNX Runtime quantizes dynamically (MatMul, fused Attention, embeddings); see
    # docs/performance.md for the op sets measured (cosine and nDCG@10 to fp32)
    operators: tuple[str, ...] = ()


# Picked by CPU features, first match wins (the small-table style of bm25s' scoring variants).
QUANTIZATION_CONFIGS: tuple[tuple[str, QuantizationConfig], ...] = (
    ("amx_int8", QuantizationConfig("amx", per_channel=True, reduce_range=False)),
    ("avx512_vnni", QuantizationConfig("avx512vnni", per_channel=True, reduce_range=False)),
    ("avx_vnni", QuantizationConfig("avxvnni", per_channel=True, reduce_range=False)),
    ("asimddp", QuantizationConfig("arm64", per_channel=True, reduce_range=False)),
    ("avx512f", QuantizationConfig("avx512", per_channel=True, reduce_range=True)),
    ("avx2", QuantizationConfig("avx2", per_channel=True, reduce_range=True)),
)
FALLBACK_QUANTIZATION = QuantizationConfig("generic", per_channel=True, reduce_range=True)


@lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo`` on Linux; empty where unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    if platform.machine().lower() in ("arm64", "aarch64"):
        return frozenset({"asimddp"})  # Apple silicon and recent ARM servers have dot-product int8
    return frozenset()


def has_vnni(features: frozenset[str] | None = None) -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI/AMX on x86, dotprod on ARM)."""
    features = cpu_features() if features is None else features
    return bool(features & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})


def quantization_config(features: frozenset[str] | None = None) -> QuantizationConfig:
    """The quantization config for this CPU (or for ``features``)."""
    features = cpu_features() if features is None else features
    for flag, config in QUANTIZATION_CONFIGS:
        if flag in features:
            return config
    return FALLBACK_QUANTIZATION


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def check_backend(backend: str | Backend) -> Backend:
    """``backend`` as a :class:`Backend`, or a typed error naming the choices."""
    try:
        return Backend(backend)
    except ValueError:
        raise InvalidArgumentError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKEND_CHOICES)}") from None


def default_backend() -> Backend:
    """``auto`` resolved for this machine: ONNX fp32 where ONNX Runtime is installed, else torch.

    Never int8 by default: dense nDCG@10 with int8 vectors measured -0.003 on msmarco but -0.010 on
    dbpedia (docs/performance.md), outside the 0.005 a default may cost. ``onnx-int8`` is one flag away.
    """
    return Backend.ONNX if onnxruntime_available() else Backend.TORCH


def resolve_backend(backend: str | Backend) -> Backend:
    """``backend`` with ``auto`` resolved for this machine; a typed error where ONNX Runtime is missing."""
    backend = check_backend(backend)
    if backend is Backend.AUTO:
        return default_backend()
    if backend.is_onnx and not onnxruntime_available():
        raise MissingDependencyError(
            f"backend {backend!r} needs onnxruntime: pip install 'winnow[onnx]' (or use backend='torch')"
        )
    return backend

