"""The compute roofline's closed forms: GEMMs at MAMF, fused attention at its measured
rate (FlashAttention's FLOP convention), elementwise kernels at HBM speed."""

from __future__ import annotations

import pytest

from sim.catalog import load_catalog
from sim.compute import attention_time, gemm_time, hbm_time, matmul_rate

CAT = load_catalog()
H100 = CAT.accelerators["H100-SXM"]
A100 = CAT.accelerators["A100-80GB"]


def test_gemm_at_mamf():
    assert gemm_time(H100, "bf16", 1e15) == pytest.approx(1e15 / (989e12 * 0.803), rel=1e-9)
    assert matmul_rate(H100, "fp16") == matmul_rate(H100, "bf16")


def test_fused_attention_at_its_measured_rates():
    """FA3 paper (cuDNN, hdim 128, 4k): forward 518, backward 499 TFLOP/s; the backward
    counts 2.5 x the forward's FLOPs."""
    f = 1e14
    assert attention_time(H100, "bf16", f) == pytest.approx(f / 518e12, rel=2e-3)
    assert attention_time(H100, "bf16", f, backward=True) == \
        pytest.approx(2.5 * f / 499e12, rel=2e-3)
    # the same FLOPs take longer than at the matmul rate: fused attention runs below MAMF
    assert attention_time(H100, "bf16", f) > gemm_time(H100, "bf16", f)


def test_attention_without_measurements_runs_as_gemms():
    assert not A100.attention_efficiency
    f = 3e13
    assert attention_time(A100, "bf16", f) == gemm_time(A100, "bf16", f)
    assert attention_time(A100, "bf16", f, backward=True) == 2 * gemm_time(A100, "bf16", f)
    assert attention_time(H100, "bf16", 0.0) == 0.0


def test_hbm_time():
    eff = CAT.compute.hbm_efficiency
    assert hbm_time(H100, 3.35e12) == pytest.approx(1 / eff, rel=1e-9)
