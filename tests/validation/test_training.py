"""Training throughput against published runs (shared/validation/training_cases.tsv).

Slow (a few minutes: the 1T-parameter cases simulate thousands of pipeline operations),
so it runs in CI's slow pass. The bounds are the issue's targets where the model meets
them; where it does not (small H100 models, DeepSpeed ZeRO-3), the bound is the current
error so that a regression shows, and the gap is reported in the issue's note."""

from __future__ import annotations

import pytest

from sim.validation import training_cases


@pytest.fixture(scope="module")
def df():
    return training_cases()


@pytest.mark.slow
def test_every_expressible_case_runs(df):
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 28
    assert set(df[df["status"] != "ok"]["case"]) == {"MAXTEXT-V4-22B"}


@pytest.mark.slow
def test_median_error_within_target(df):
    ok = df[df["status"] == "ok"]
    assert ok["error_pct"].abs().median() <= 10.0


@pytest.mark.slow
def test_narayanan_and_korthikanti_within_25pct_except_zero3(df):
    ok = df[(df["status"] == "ok") & df["case"].str.match(r"(NAR21|KOR22)")
            & ~df["case"].str.contains("ZeRO3")]
    assert ok["error_pct"].abs().max() <= 25.0, ok[["case", "error_pct"]]


@pytest.mark.slow
def test_megatron_h100_from_70b_up_within_5pct(df):
    big = df[df["case"].isin([f"MLM-H100-WEAK-{s}" for s in
                              ("70B", "119B", "177B", "314B", "462B")])]
    assert len(big) == 5
    assert big["error_pct"].abs().max() <= 5.0, big[["case", "error_pct"]]


@pytest.mark.slow
def test_known_gaps_do_not_grow(df):
    """Over-predicted today: small H100 models (cause not found: XLA's measured H100 GEMM
    table puts their GEMM shapes near MAMF, so it is not GEMM shape; fused attention at
    its measured rate and the fp32 cross-entropy passes explain part of it) and DeepSpeed
    ZeRO-3 (gathers overlap less than modelled)."""
    e = df.set_index("case")["error_pct"]
    assert 0 < e["MLM-H100-WEAK-1.7B"] <= 45
    assert 0 < e["MLM-H100-WEAK-7.1B"] <= 35
    assert 0 < e["MLM-H100-WEAK-16B"] <= 15
    # under-predicted: with PP 1 only the last micro-batch's backward hides the fp32
    # gradient reduce-scatter (Megatron's default for bf16); the measured run hid more,
    # as 16-bit gradient reduction would (that run's flags are not reported)
    assert -25 <= e["MLM-H100-WEAK-32B"] < 0
    assert 0 < e["NAR21-T2-ZeRO3-175B-384"] <= 70
