"""What a training step computes in: bf16 autocast where the hardware has bf16 units, else fp32 (fp16
on older GPUs); and on which device."""

from __future__ import annotations

from enum import Enum

from winnow.errors import InvalidArgumentError

DEVICES = ("auto", "cpu", "cuda")


class Precision(str, Enum):
    """Training arithmetic. ``auto``: bf16 autocast where the hardware has bf16 units (a CUDA GPU that
    supports it; a CPU with avx512_bf16 or AMX), else fp32 (fp16 on older GPUs). On the 2-core AVX-512 BF16
    development CPU bf16 autocast made a MiniLM-L6 training step 2.2-2.7x faster (docs/reranker.md)."""

    AUTO = "auto"
    BF16 = "bf16"
    FP32 = "fp32"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)


def check_precision_and_device(config) -> None:
    """For a frozen training config's ``__post_init__``: ``precision`` as a :class:`Precision` (a bad name
    raises, listing the choices) and ``device`` one of :data:`DEVICES`."""
    if not isinstance(config.precision, Precision):
        try:
            object.__setattr__(config, "precision", Precision(config.precision))
        except ValueError:
            raise InvalidArgumentError(
                f"unknown precision {config.precision!r}; choose one of: {', '.join(p.value for p in Precision)}"
            ) from None
    if config.device not in DEVICES:
        raise InvalidArgumentError(f"unknown device {config.device!r}; choose one of: {', '.join(DEVICES)}")


def cpu_has_bf16(features: frozenset[str] | None = None) -> bool:
    from winnow.models.backends import cpu_features

    features = cpu_features() if features is None else features
    return bool(features & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: "Precision", device: str) -> tuple[bool, bool]:
    """(bf16, fp16) for the trainer on ``device`` ("cpu" or "cuda")."""
    import torch

    if device == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision is Precision.FP32:
            return False, False
        if precision is Precision.BF16 and not bf16_ok:
            raise InvalidArgumentError("precision bf16: this GPU has no bf16 support; use auto or fp32")
        return bf16_ok, not bf16_ok
    if precision is Precision.FP32:
        return False, False
    if precision is Precision.BF16:
        return True, False
    return cpu_has_bf16(), False

