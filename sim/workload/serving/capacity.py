"""A service's capacity at its SLO: the highest Poisson arrival rate at which the tail
latencies of its requests stay within the SLO (the MLPerf Server method), found by
bisection between a trickle and the rate the service saturates at; and latency vs load.

Method: saturation is measured with every request queued at once (the throughput the
replicas reach while they never wait for work, before the queue empties); no rate much
above it is sustainable, and the search's upper bound is 1.1 x it. A rate passes
when the ``percentile`` of TTFT and of TPOT over the requests that arrive after the warm-up
meet the SLO at every seed (conservative: one seed's unlucky burst fails the rate). The
figures at the found rate are means over the seeds with a 95% confidence interval
(Student's t).

Main assumption: the run is long enough for its tail to be stationary (``duration_s`` of
arrivals; the report states it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...engine import warmup_for
from ...errors import ConfigError
from ...fabric.fabric import Fabric
from ...metrics import tokens_per_interval
from . import simulate_service
from .spec import ServiceSpec

__all__ = ["Capacity", "capacity_at_slo", "latency_vs_load", "replicas_for",
           "usd_per_M_tokens"]

# two-sided 95% Student's t quantiles by degrees of freedom (1..30); 1.96 beyond
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_ci(values) -> tuple[float, float]:
    """Mean and 95% confidence half-width (NaN for a single value)."""
    v = np.asarray([x for x in values if x == x], float)
    if not len(v):
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    t = _T975[len(v) - 2] if len(v) - 1 <= len(_T975) else 1.96
    return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(len(v)))


@dataclass
class Capacity:
    """The highest rate within the SLO and the service's figures there.

    Attributes
    ----------
    rate_rps : float
        Requests/s of the whole service as specified (0: the SLO fails even at a trickle).
    tokens_per_s : float
        Output tokens/s measured at that rate (mean over seeds).
    limited_by : str
        ``ttft``, ``tpot`` (the limit that fails first above the rate) or ``saturation``
        (both hold up to the saturation rate).
    summary : dict
        The service summary at that rate (first seed), with ``*_mean`` / ``*_ci95``
        entries over the seeds for the percentiles.
    trace : DataFrame
        Every rate tried: rate_rps, passed, ttft and tpot at the percentile (worst seed).
    """

    rate_rps: float
    tokens_per_s: float
    limited_by: str
    saturation_rps: float
    summary: dict = field(default_factory=dict)
    trace: pd.DataFrame = field(default_factory=pd.DataFrame)
    runs: int = 0
    seeds: int = 1
    note: str = ""

    @property
    def busy_fraction(self) -> float:
        return float(self.summary.get("busy_fraction", math.nan))

    @property
    def per_replica_rps(self) -> float:
        return self.rate_rps / max(1, int(self.summary.get("replicas", 1)))


def _tail(res, q: float) -> tuple[float, float]:
    """(TTFT, TPOT) at percentile q of the requests after the warm-up; a request that has
    not finished counts as infinitely late."""
    req = res.requests
    w = res.summary.get("warmup_s", 0.0)
    st = req[req["arrival_s"] >= w]
    if not len(st):
        return math.inf, math.inf
    ttft = st["ttft_s"].fillna(math.inf).to_numpy()
    tpot = st["tpot_s"].to_numpy()
    tpot = np.where(np.isnan(tpot) & st["finish_s"].isna().to_numpy(), math.inf, tpot)
    tpot = tpot[~np.isnan(tpot)]
    return (float(np.percentile(ttft, q)),
            float(np.percentile(tpot, q)) if len(tpot) else 0.0)


def _runs(f, spec, rate, duration_s, seeds, network):
    out = []
    for k in range(seeds):
        s = dataclasses.replace(spec, arrival="poisson", rate=rate, seed=spec.seed + k)
        out.append(simulate_service(f, s, duration_s, warmup_s=warmup_for(duration_s),
                                    network=network))
    return out


def _saturation(f: Fabric, spec: ServiceSpec, network: str) -> float:
    """Requests/s the replicas sustain with every request queued at once (enough to fill
    every batch slot four times): output tokens/s from the first request's finish (the
    first wave is all prefill) to the last request's first token (the queue is never empty
    before it, so the replicas never wait for work), over the mean output length.
    Finished requests over the whole run include the drain after the queue empties and so
    understate it (16 x TP8 Llama 3 70B: 169/s against 244/s), and the search's bound with
    it; the larger of the two is taken. Identical requests queued at once stay in lock-step
    (prefill-only iterations between decode waves), which Poisson arrivals break up: a
    Poisson rate somewhat above it may still be served; the bound's 1.1 covers that."""
    n = max(64, 4 * spec.max_batch * spec.replicas)
    s = dataclasses.replace(spec, arrival="all-at-once", rate=float(n))
    res = simulate_service(f, s, 1.0, network=network)
    whole = float(res.summary["requests_per_s"])
    req = res.requests
    if req["finish_s"].isna().any() or not len(req):
        return whole
    t0, t1 = float(req["finish_s"].min()), float(req["first_token_s"].max())
    if not t1 > t0:
        t0 = 0.0
    if not t1 > t0:
        return whole
    olen = req["output_tokens"].to_numpy()
    tok, _ = tokens_per_interval(req["first_token_s"].to_numpy(), req["finish_s"].to_numpy(),
                                 olen, np.array([t0, t1]))
    return max(whole, float(tok[0]) / (t1 - t0) / float(olen.mean()))


def _summary(results, q: float) -> dict:
    m = dict(results[0].summary)
    for key in ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s",
                "throughput_tokens_per_s", "busy_fraction"):
        mean, ci = mean_ci(r.summary.get(key, math.nan) for r in results)
        m[f"{key}_mean"], m[f"{key}_ci95"] = mean, ci
    tails = [_tail(r, q) for r in results]
    m["percentile"] = q
    m["ttft_at_percentile_s"] = max(t for t, _ in tails)
    m["tpot_at_percentile_s"] = max(t for _, t in tails)
    return m


def capacity_at_slo(fabric: Fabric, spec: ServiceSpec, *, duration_s: float = 120.0,
                    seeds: int = 1, steps: int = 7, network: str = "flow",
                    percentile: float = 99.0) -> Capacity:
    """The highest Poisson rate at which ``spec`` meets its SLO (see the module doc).

    Raises
    ------
    ConfigError
        The service has no SLO.
    """
    if spec.slo_ttft_s is None and spec.slo_tpot_s is None:
        raise ConfigError("capacity at the SLO needs an SLO (slo: {ttft: ..., tpot: ...})",
                          file=spec.file, field="slo")
    sat = _saturation(fabric, spec, network)
    trace, runs = [], 1

    def attempt(rate: float):
        nonlocal runs
        res = _runs(fabric, spec, rate, duration_s, seeds, network)
        runs += seeds
        tails = [_tail(r, percentile) for r in res]
        ttft, tpot = max(t for t, _ in tails), max(t for _, t in tails)
        bad_ttft = spec.slo_ttft_s is not None and ttft > spec.slo_ttft_s
        bad_tpot = spec.slo_tpot_s is not None and tpot > spec.slo_tpot_s
        trace.append({"rate_rps": rate, "passed": not (bad_ttft or bad_tpot),
                      "ttft_s": ttft, "tpot_s": tpot})
        return not (bad_ttft or bad_tpot), ("ttft" if bad_ttft else "tpot"), res

    lo = 0.05 * sat
    ok, why, best = attempt(lo)
    if not ok:
        t = trace[-1]
        return Capacity(0.0, 0.0, why, sat, _summary(best, percentile), pd.DataFrame(trace),
                        runs, seeds, note=f"at {lo:.3g} req/s (5% of saturation) p"
                        f"{percentile:g} TTFT is {t['ttft_s']:.3g} s and TPOT "
                        f"{t['tpot_s']:.3g} s against the SLO's {spec.slo_ttft_s} / "
                        f"{spec.slo_tpot_s} s")
    hi, limited = 1.1 * sat, "saturation"
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok, why, res = attempt(mid)
        if ok:
            lo, best = mid, res
        else:
            hi, limited = mid, why
    m = _summary(best, percentile)
    return Capacity(lo, m["throughput_tokens_per_s_mean"], limited, sat, m,
                    pd.DataFrame(trace), runs, seeds)


def replicas_for(capacity: Capacity, demand_rps: float) -> int:
    """Replicas that serve ``demand_rps`` within the SLO (each at the capacity's
    per-replica rate)."""
    per = capacity.per_replica_rps
    if per <= 0:
        raise ConfigError("the service meets its SLO at no load: no replica count serves "
                          "a demand", field="slo")
    return max(1, math.ceil(demand_rps / per - 1e-12))


def usd_per_M_tokens(capacity: Capacity, gpus: int, usd_per_s_per_gpu: float) -> float:
    """$ per million output tokens when ``gpus`` GPUs serve at the capacity's rate."""
    if capacity.tokens_per_s <= 0:
        return math.inf
    return usd_per_s_per_gpu * gpus / capacity.tokens_per_s * 1e6


def latency_vs_load(fabric: Fabric, spec: ServiceSpec, rates, *, duration_s: float = 60.0,
                    seeds: int = 1, network: str = "flow") -> pd.DataFrame:
    """p50 / p99 TTFT and TPOT (mean over seeds and their CI) at each arrival rate."""
    rows = []
    for rate in rates:
        res = _runs(fabric, spec, rate, duration_s, seeds, network)
        row = {"rate_rps": rate}
        for key in ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s",
                    "throughput_tokens_per_s"):
            row[key], row[f"{key}_ci95"] = mean_ci(r.summary[key] for r in res)
        rows.append(row)
    return pd.DataFrame(rows)
