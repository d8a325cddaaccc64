"""Compute on one accelerator: a roofline of measured matmul throughput and HBM bandwidth.

A GEMM of F FLOPs takes F / (peak x matmul efficiency) where the efficiency is the measured
maximum achievable matmul fraction of that accelerator and precision (MAMF, in
``topologies/catalog/accelerators.yaml``), never a per-case factor; an elementwise kernel
moving B bytes takes B / (HBM bandwidth x HBM efficiency). Each op also pays a fixed kernel
overhead. Constants: ``topologies/catalog/compute.yaml``.

Main assumption: kernels of one op run back to back (no overlap of compute-bound and
memory-bound kernels), as in an eager framework without fusion across ops.
"""

from __future__ import annotations

from .catalog import Accelerator, load_catalog

__all__ = ["gemm_time", "hbm_time", "matmul_rate"]


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


def hbm_time(acc: Accelerator, nbytes: float) -> float:
    """Seconds to stream ``nbytes`` through HBM."""
    cm = load_catalog().compute
    return nbytes / (acc.hbm_bandwidth_Bps * cm.hbm_efficiency) if nbytes > 0 else 0.0
