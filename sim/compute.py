"""Compute on one accelerator: a roofline of measured matmul throughput and HBM bandwidth.

A GEMM of F FLOPs takes F / (peak x matmul efficiency) where the efficiency is the measured
maximum achievable matmul fraction of that accelerator and precision (MAMF, in
``topologies/catalog/accelerators.yaml``), never a per-case factor; fused attention runs
at its own measured rate where the catalog has one; an elementwise kernel
moving B bytes takes B / (HBM bandwidth x HBM efficiency). Each op also pays a fixed kernel
overhead. Constants: ``topologies/catalog/compute.yaml``.

Main assumption: kernels of one op run back to back (no overlap of compute-bound and
memory-bound kernels), as in an eager framework without fusion across ops.
"""

from __future__ import annotations

from .catalog import Accelerator, load_catalog

__all__ = ["attention_time", "gemm_time", "hbm_time", "matmul_rate"]


def matmul_rate(acc: Accelerator, precision: str) -> float:
    """Achievable dense matmul FLOP/s of ``acc`` at ``precision`` (fp16 falls back to bf16,
    which every accelerator here runs at the same rate)."""
    cm = load_catalog().compute
    prec = precision if precision in acc.peak_flops else "bf16"
    eff = acc.matmul_efficiency.get(prec, acc.matmul_efficiency.get(
        "bf16", cm.default_matmul_efficiency))
    return acc.peak_flops[prec] * eff


def gemm_time(acc: Accelerator, precision: str, flops: float) -> float:
    """Seconds for ``flops`` of matmul work."""
    return flops / matmul_rate(acc, precision) if flops > 0 else 0.0


def attention_time(acc: Accelerator, precision: str, flops_fwd: float, *,
                   backward: bool = False) -> float:
    """Seconds for the fused attention core (scores, softmax, values) whose forward costs
    ``flops_fwd`` FLOPs (causal: the computed triangle only).

    Where the catalog gives measured fused-attention rates (``attention_efficiency``, as
    FlashAttention's papers count FLOPs: the backward is 2.5 x the forward, as it recomputes
    the scores), those apply; otherwise the attention core runs at the matmul rate like any
    GEMM, its backward twice the forward.
    """
    if flops_fwd <= 0:
        return 0.0
    eff = acc.attention_efficiency
    if eff:
        peak = acc.peak_flops["bf16"]
        return 2.5 * flops_fwd / (peak * eff["bwd"]) if backward else \
            flops_fwd / (peak * eff["fwd"])
    return (2.0 if backward else 1.0) * gemm_time(acc, precision, flops_fwd)


def hbm_time(acc: Accelerator, nbytes: float) -> float:
    """Seconds to stream ``nbytes`` through HBM."""
    cm = load_catalog().compute
    return nbytes / (acc.hbm_bandwidth_Bps * cm.hbm_efficiency) if nbytes > 0 else 0.0
