"""Compute on one accelerator: a roofline of measured matmul throughput and HBM bandwidth.

A GEMM of F FLOPs takes F / (peak x matmul efficiency) where the efficiency is the measured
maximum achievable matmul fraction of that accelerator and precision (MAMF, in
``topologies/catalog/accelerators.yaml``), never a per-case factor; fused attention runs
at its own measured rate where the catalog has one; an elementwise kernel
moving B bytes takes B / (HBM bandwidth x HBM efficiency). Each op also pays a fixed kernel
overhead. Constants: ``topologies/catalog/compute.yaml``, or the ``compute:`` section of
the catalog the accelerator was loaded from (a proposal's own catalog directory).

Main assumption: kernels of one op run back to back (no overlap of compute-bound and
memory-bound kernels), as in an eager framework without fusion across ops.
"""

from __future__ import annotations

import math

from .catalog import Accelerator, ComputeModel, load_catalog

__all__ = ["attention_time", "gemm_time", "gemms_time", "backward_gemms", "hbm_time",
           "matmul_rate", "shape_efficiency"]


def _constants(acc: Accelerator) -> ComputeModel:
    """The compute-model constants of the catalog ``acc`` came from (the bundled one for an
    accelerator built by hand)."""
    return acc.compute if acc.compute is not None else load_catalog().compute


def matmul_rate(acc: Accelerator, precision: str, sustained: bool = False) -> float:
    """Achievable dense matmul FLOP/s of ``acc`` at ``precision`` (fp16 falls back to bf16,
    which every accelerator here runs at the same rate). ``sustained``: the rate held at
    the power limit (a training step keeps the tensor cores saturated), where the catalog
    has one; otherwise the burst rate (MAMF)."""
    cm = _constants(acc)
    prec = precision if precision in acc.peak_flops else "bf16"
    eff = acc.matmul_efficiency.get(prec, acc.matmul_efficiency.get(
        "bf16", cm.default_matmul_efficiency))
    se = acc.sustained_matmul_efficiency
    key = "bf16" if prec == "fp16" and "fp16" not in se else prec  # fp16 at the bf16 rate
    if sustained and key in se:
        eff = se[key]
    return acc.peak_flops[prec] * eff


def gemm_time(acc: Accelerator, precision: str, flops: float,
              sustained: bool = False) -> float:
    """Seconds for ``flops`` of matmul work."""
    return flops / matmul_rate(acc, precision, sustained) if flops > 0 else 0.0


def shape_efficiency(acc: Accelerator, m: float, n: float, k: float) -> float:
    """Fraction of the matmul rate an (m x k) by (k x n) GEMM reaches on ``acc``: its
    measured throughput relative to the best shape of the accelerator's table (trilinear
    in log2 m, n, k, clipped to the table's range: larger GEMMs count as the largest
    measured); 1 without a table. Smaller GEMMs lose to tile and wave quantization and to
    their prologue and epilogue."""
    t = acc.gemm_shapes
    if t is None:
        return 1.0
    lo, hi = math.log2(t.grid[0]), math.log2(t.grid[-1])
    step = (hi - lo) / (len(t.grid) - 1)
    idx, frac = [], []
    for d in (m, n, k):
        x = (min(max(math.log2(max(d, 1.0)), lo), hi) - lo) / step
        i = min(int(x), len(t.grid) - 2)
        idx.append(i)
        frac.append(x - i)
    out = 0.0
    for corner in range(8):
        w = 1.0
        ijk = []
        for a in range(3):
            bit = (corner >> a) & 1
            w *= frac[a] if bit else 1.0 - frac[a]
            ijk.append(idx[a] + bit)
        if w:
            out += w * float(t.rel[ijk[0], ijk[1], ijk[2]])
    return out


def gemms_time(acc: Accelerator, precision: str, gemms, sustained: bool = False) -> float:
    """Seconds for GEMMs given as (m, n, k, count): 2 m n k FLOPs each, at the matmul rate
    (burst, or ``sustained`` at the power limit) times their shape efficiency."""
    rate = matmul_rate(acc, precision, sustained)
    return sum(2.0 * m * n * k * c / (rate * shape_efficiency(acc, m, n, k))
               for m, n, k, c in gemms if m * n * k * c > 0)


def backward_gemms(gemms) -> list:
    """The backward pass of forward GEMMs (m, n, k, count): the input gradient (m, k, n)
    and the weight gradient (k, n, m), which reduces over the m tokens."""
    return [g for m, n, k, c in gemms for g in ((m, k, n, c), (k, n, m, c))]


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
    cm = _constants(acc)
    return nbytes / (acc.hbm_bandwidth_Bps * cm.hbm_efficiency) if nbytes > 0 else 0.0


def straggler_factor(acc: Accelerator, gpus: int, gpus_per_server: int) -> float:
    """Expected slowdown of a synchronous job's computation: it runs at the pace of its
    slowest GPU. Each GPU's sustained speed is lognormal around the catalog rate (sigma
    ``gpu_speed_sigma``), and each server is, with probability ``slow_server_fraction``,
    slower by ``slow_server_slowdown`` (constants of the compute model, with their
    sources); returns E[max over the job's GPUs of their time multiplier] (>= 1 for a job
    of one GPU only by the lognormal mean shift), by numerical integration of the max's
    distribution.
    """
    cm = _constants(acc)
    sigma, p, d = cm.gpu_speed_sigma, cm.slow_server_fraction, cm.slow_server_slowdown
    if gpus <= 0 or (sigma == 0 and (p == 0 or d == 0)):
        return 1.0
    g = max(1, min(gpus_per_server, gpus))
    servers = math.ceil(gpus / g)
    if sigma == 0:  # only slow servers: the max is 1 + d if any server is slow
        return 1.0 + d * (1.0 - (1.0 - p) ** servers)
    # log-time multiplier x: a GPU on a normal server ~ N(0, sigma), on a slow one
    # ~ N(log(1 + d), sigma); F_max(x) = [(1-p) Phi(x/s)^g + p Phi((x - log(1+d))/s)^g]^S
    import numpy as np

    lo, hi = -6 * sigma, math.log1p(d) + 8 * sigma
    x = np.linspace(lo, hi, 4001)
    erf = np.vectorize(math.erf)

    def phi(z):
        return 0.5 * (1.0 + erf(z / math.sqrt(2.0)))

    node = (1 - p) * phi(x / sigma) ** g + p * phi((x - math.log1p(d)) / sigma) ** g
    cdf = node ** servers
    # E[e^X] = e^lo + integral of e^x (1 - F(x)) dx over [lo, hi]
    tail = np.exp(x) * (1.0 - cdf)
    return float(math.exp(lo) + np.sum((tail[1:] + tail[:-1]) * np.diff(x)) / 2)
