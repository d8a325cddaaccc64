"""The compute roofline's closed forms: GEMMs at MAMF times their measured shape
efficiency, fused attention at its measured rate (FlashAttention's FLOP convention),
elementwise kernels at HBM speed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.catalog import load_catalog
from sim.compute import (
    attention_time,
    backward_gemms,
    gemm_time,
    gemms_time,
    hbm_time,
    matmul_rate,
    shape_efficiency,
)
from sim.workload.models import layer_costs

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
    tpu = CAT.accelerators["TPUv5p"]
    assert not tpu.attention_efficiency
    f = 3e13
    assert attention_time(tpu, "bf16", f) == gemm_time(tpu, "bf16", f)
    assert attention_time(tpu, "bf16", f, backward=True) == 2 * gemm_time(tpu, "bf16", f)
    assert attention_time(H100, "bf16", 0.0) == 0.0


def test_a100_attention_at_flashattention2_rates():
    """FlashAttention-2 on A100: up to 73% of the 312 TFLOP/s peak forward, 63% backward,
    its backward counted as 2.5 x the forward's FLOPs."""
    f = 3e13
    assert attention_time(A100, "bf16", f) == pytest.approx(f / (0.73 * 312e12))
    assert attention_time(A100, "bf16", f, backward=True) == pytest.approx(
        2.5 * f / (0.63 * 312e12))


def test_hbm_time():
    eff = CAT.compute.hbm_efficiency
    assert hbm_time(H100, 3.35e12) == pytest.approx(1 / eff, rel=1e-9)


def _table(name):
    rows = {}
    for line in (Path(__file__).resolve().parents[1] / "topologies" / "catalog" / "gemm" /
                 name).read_text().splitlines():
        if line and not line.startswith(("#", "m,")):
            m, n, k, v = line.split(",")
            rows[(int(m), int(n), int(k))] = float(v)
    return rows


def test_shape_efficiency_is_the_measured_table_relative_to_its_best():
    t = _table("xla-sm90-bf16.csv")
    best = max(t.values())
    for key in [(1024, 4096, 4096), (4096, 2048, 2048), (256, 2048, 2048), (512, 256, 1024)]:
        assert shape_efficiency(H100, *key) == pytest.approx(t[key] / best, rel=1e-12)
    # between grid points: geometric midpoint in m interpolates linearly in log2 m
    mid = shape_efficiency(H100, 1024 * 2**0.5, 4096, 4096)
    assert mid == pytest.approx((t[(1024, 4096, 4096)] + t[(2048, 4096, 4096)]) / 2 / best)
    # beyond the table: as its edge
    assert shape_efficiency(H100, 16384, 16384, 16384) == pytest.approx(1.0)
    assert shape_efficiency(H100, 64, 4096, 4096) == shape_efficiency(H100, 256, 4096, 4096)
    assert shape_efficiency(A100, 64, 64, 64) == 1.0  # no table: MAMF for every shape


def test_gemms_time_and_backward():
    g = [(4096, 6144, 2048, 1), (4096, 2048, 2048, 2)]
    flops = sum(2 * m * n * k * c for m, n, k, c in g)
    assert gemms_time(A100, "bf16", g) == pytest.approx(gemm_time(A100, "bf16", flops))
    assert gemms_time(H100, "bf16", g) > gemm_time(H100, "bf16", flops)
    bwd = backward_gemms(g)
    assert sum(2 * m * n * k * c for m, n, k, c in bwd) == 2 * flops
    # input gradient (m, k, n) and weight gradient reducing over the tokens (k, n, m)
    assert bwd[:2] == [(4096, 2048, 6144, 1), (2048, 6144, 4096, 1)]


@pytest.mark.parametrize("model, tp, ep", [("gpt3-175b", 8, 1), ("llama3-70b", 4, 1),
                                           ("mixtral-8x7b", 2, 4), ("deepseek-v3", 8, 8)])
def test_layer_gemms_carry_the_layer_flops(model, tp, ep):
    m = CAT.models[model]
    for layer in (0, m.layers - 1):
        c = layer_costs(m, micro_batch=2, seq_len=4096, tp=tp, ep=ep, layer=layer)
        assert sum(2 * a * b * k * n for a, b, k, n in c.gemms) == \
            pytest.approx(c.gemm_fwd, rel=1e-12)


def test_sustained_matmul_rate_at_the_power_limit():
    """Training GEMMs run at the rate held at the power limit where the catalog has one
    (H200 MSMF 755 TFLOP/s BF16, 1354 FP8; H100 taken as the same), else at MAMF."""
    assert matmul_rate(H100, "bf16", sustained=True) == pytest.approx(0.763 * 989e12)
    assert matmul_rate(H100, "fp8", sustained=True) == pytest.approx(0.684 * 1979e12)
    assert matmul_rate(H100, "bf16", sustained=True) < matmul_rate(H100, "bf16")
    assert matmul_rate(H100, "fp16", sustained=True) == matmul_rate(H100, "bf16", sustained=True)
    assert matmul_rate(A100, "bf16", sustained=True) == matmul_rate(A100, "bf16")
    g = [(4096, 4096, 4096, 3)]
    assert gemms_time(H100, "bf16", g, sustained=True) == pytest.approx(
        gemms_time(H100, "bf16", g) * 0.803 / 0.763)


def test_sustained_above_burst_is_a_catalog_error():
    from sim.catalog import _read_acc
    from sim.errors import ConfigError
    from sim.spec import Node

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "topologies" / "catalog" /
                          "accelerators.yaml").read_text())["accelerators"]["H100-SXM"]
    raw["sustained_matmul_efficiency"] = {"bf16": 0.9}
    with pytest.raises(ConfigError, match="sustained 0.9 exceeds the burst"):
        _read_acc("H100-SXM", Node(raw, "accelerators.yaml", "accelerators.H100-SXM"))


def test_a_users_catalog_sets_the_compute_constants_of_its_accelerators(tmp_path):
    """One catalog per run: an accelerator loaded from a catalog whose compute.yaml says
    HBM kernels reach 50% streams at that rate, not at the bundled 85%."""
    from sim.catalog import load_catalog
    from sim.compute import hbm_time, matmul_rate

    (tmp_path / "compute.yaml").write_text(
        'compute:\n  hbm_efficiency: 0.5\n  default_matmul_efficiency: 0.35\n'
        '  kernel_overhead: "4 us"\n  source: "test"\n  as_of: "2026-12"\n'
        '  estimate: [hbm_efficiency]\n')
    own, bundled = load_catalog(tmp_path), load_catalog()
    a, b = own.accelerators["H100-SXM"], bundled.accelerators["H100-SXM"]
    assert hbm_time(a, 1e9) == pytest.approx(1e9 / (a.hbm_bandwidth_Bps * 0.5))
    assert hbm_time(a, 1e9) / hbm_time(b, 1e9) == pytest.approx(
        bundled.compute.hbm_efficiency / 0.5)
    # measured MAMF is the accelerator's own; the default applies only without it
    assert matmul_rate(a, "bf16") == matmul_rate(b, "bf16")
