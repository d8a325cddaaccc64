"""Capacity at the SLO: the search's invariants (the rate found passes, the next step above
fails, monotone in the SLO, bounded by saturation), determinism, and bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest

from sim.catalog import load_catalog
from sim.errors import ConfigError
from sim.fabric import nvswitch_node
from sim.workload.serving import Lengths, ServiceSpec
from sim.workload.serving.capacity import (
    capacity_at_slo,
    latency_vs_load,
    mean_ci,
    replicas_for,
    usd_per_M_tokens,
)

L8 = load_catalog().models["llama3-8b"]


@pytest.fixture(scope="module")
def dgx():
    return nvswitch_node("DGX-H100")


def _svc(**kw):
    base = dict(name="x", model=L8, replicas=1, tp=1, precision="fp8", kv_bytes=1,
                max_batch=64, prompt=Lengths("fixed", 512), output=Lengths("fixed", 64),
                slo_ttft_s=0.5, slo_tpot_s=0.02, seed=1)
    base.update(kw)
    return ServiceSpec(**base)


@pytest.fixture(scope="module")
def cap(dgx):
    return capacity_at_slo(dgx, _svc(), duration_s=10.0, steps=6)


def test_the_rate_found_passes_and_the_bound_above_it_fails(cap):
    t = cap.trace
    assert cap.rate_rps > 0 and cap.runs == len(t) + 1  # + the saturation run
    passed = t[t["passed"]]
    assert cap.rate_rps == pytest.approx(passed["rate_rps"].max())
    failed = t[~t["passed"]]
    if cap.limited_by != "saturation":
        above = failed[failed["rate_rps"] > cap.rate_rps]["rate_rps"].min()
        # bisection: the tightest failing rate is one step above the rate found
        assert above > cap.rate_rps and (above - cap.rate_rps) / cap.rate_rps < 0.2
        row = failed[failed["rate_rps"] == above].iloc[0]
        limit = {"ttft": 0.5, "tpot": 0.02}[cap.limited_by]
        assert row[f"{cap.limited_by}_s"] > limit
    assert cap.summary["ttft_at_percentile_s"] <= 0.5
    assert cap.summary["tpot_at_percentile_s"] <= 0.02
    assert cap.rate_rps <= 1.1 * cap.saturation_rps


def test_a_looser_slo_sustains_at_least_the_rate(dgx, cap):
    loose = capacity_at_slo(dgx, _svc(slo_tpot_s=0.04), duration_s=10.0, steps=6)
    assert loose.rate_rps >= cap.rate_rps


def test_same_seeds_same_numbers_and_a_finite_interval(dgx):
    a = capacity_at_slo(dgx, _svc(), duration_s=6.0, steps=3, seeds=2)
    b = capacity_at_slo(dgx, _svc(), duration_s=6.0, steps=3, seeds=2)
    assert a.rate_rps == b.rate_rps and a.trace.equals(b.trace)
    assert math.isfinite(a.summary["ttft_p99_s_ci95"])


def test_an_slo_no_load_meets_is_rate_zero_with_the_reason(dgx):
    c = capacity_at_slo(dgx, _svc(slo_ttft_s=1e-4), duration_s=5.0, steps=2)
    assert c.rate_rps == 0 and c.limited_by == "ttft" and "TTFT" in c.note


def test_no_slo_is_a_clear_error(dgx):
    with pytest.raises(ConfigError) as e:
        capacity_at_slo(dgx, _svc(slo_ttft_s=None, slo_tpot_s=None, file="s.yaml"))
    assert "s.yaml" in str(e.value) and "slo" in str(e.value)


def test_replicas_and_cost_closed_forms(cap):
    per = cap.per_replica_rps
    assert replicas_for(cap, 10 * per) == 10
    assert replicas_for(cap, 10.5 * per) == 11
    assert usd_per_M_tokens(cap, 8, 1e-3) == pytest.approx(8e-3 / cap.tokens_per_s * 1e6)
    m, h = mean_ci([1.0, 3.0])
    assert m == 2.0 and h == pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2))


def test_latency_grows_with_load(dgx, cap):
    df = latency_vs_load(dgx, _svc(), [0.3 * cap.rate_rps, cap.rate_rps], duration_s=8.0)
    assert list(df["rate_rps"]) == sorted(df["rate_rps"])
    assert df["tpot_p99_s"].iloc[1] >= df["tpot_p99_s"].iloc[0]
    assert dataclasses.is_dataclass(cap)


def test_the_saturation_bound_holds_under_overload(dgx, cap):
    """No Poisson rate is served above the search's bound (1.1 x saturation): an overload
    of 1.5x completes requests at most that fast, so the bound cuts off no sustainable
    rate; and the bound is not understated by the all-at-once run's drain (a Poisson load
    at 0.8x saturation is served at its offered rate)."""
    from sim.workload.serving import simulate_service

    sat = cap.saturation_rps
    over = simulate_service(dgx, dataclasses.replace(_svc(), rate=1.5 * sat), 10.0,
                            warmup_s=1.0).summary["requests_per_s"]
    assert over <= 1.1 * sat
    under = simulate_service(dgx, dataclasses.replace(_svc(), rate=0.8 * sat), 10.0,
                             warmup_s=1.0).summary["requests_per_s"]
    assert under == pytest.approx(0.8 * sat, rel=0.1)
