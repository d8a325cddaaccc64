"""A proposal's economics under a set of assumptions: capex by category, power, $/h, and
per class of the fleet (each training job, each service at its SLO) the cost per million
tokens and the tokens per kWh; and the fleet's cost per million useful tokens.

Main assumption: a job is charged its share of the fleet's accelerators at the proposal's
cost per accelerator-second; ``utilization`` (the fraction of the fleet's hours that do
useful work: scheduling gaps, failures, maintenance) divides every token figure.
Cost per token of a class = (cost per accelerator-second) / (tokens per accelerator-
second x utilization); the fleet's useful tokens are the share-weighted sum of its
classes' tokens.
"""

from __future__ import annotations

import math

from ..cost import NETWORK, OPTICAL, Assumptions, cost
from .run import ProposalRun
from .spec import Review

__all__ = ["HOURS", "economics"]

HOURS = 3600.0


def _capex(c) -> dict:
    by = dict(zip(c["category"], c["capex_USD"], strict=True))
    rec = {f"capex_{k.replace(' ', '_').replace('-', '_')}_USD": float(by.get(k, 0.0))
           for k in ("accelerators", "servers", "scale-out switches",
                     "optical circuit switches", "transceivers", "fibers", "copper cables",
                     "facility")}
    rec["capex_network_USD"] = float(sum(by.get(k, 0.0) for k in NETWORK))
    rec["capex_optical_USD"] = float(sum(by.get(k, 0.0) for k in OPTICAL))
    rec["capex_total_USD"] = c.attrs["capex_USD"]
    return rec


def economics(run: ProposalRun, review: Review, a: Assumptions | None = None,
              utilization: float = 1.0) -> dict:
    """One flat record of the proposal's cost and per-class cost per token (USD, W, s)."""
    a = a or review.assumptions
    f = run.fabric
    n = f.n_accelerators
    c = cost(f, None, a, bom=run.bom, busy=run.busy(review))
    rec = {"proposal": run.name, "file": run.file, "accelerators": n}
    rec.update(_capex(c))
    rec.update({"it_power_W": c.attrs["it_power_W"],
                "facility_power_W": c.attrs["facility_power_W"],
                "usd_per_hour": c.attrs["usd_per_h"], "accelerator_busy": c.attrs["busy"],
                "utilization": utilization})
    per_acc_s = c.attrs["usd_per_h"] / HOURS / n
    kw_per_acc = c.attrs["facility_power_W"] / n / 1e3
    fleet_tps = 0.0
    complete = True
    for o in [*run.training, *run.services]:
        key = o.entry.name
        tps = o.tokens_per_s_per_gpu
        if tps is None:
            complete = False
            rec[f"{key}: usd_per_M_tokens"] = math.nan
            continue
        rec[f"{key}: tokens_per_s_per_gpu"] = tps
        rec[f"{key}: usd_per_M_tokens"] = per_acc_s / (tps * utilization) * 1e6
        rec[f"{key}: tokens_per_kWh"] = tps * utilization * HOURS / kw_per_acc
        ettr = getattr(o, "ettr", None)
        if ettr:  # a training job: the cost of a token that survives failures
            rec[f"{key}: ettr"] = ettr
            rec[f"{key}: usd_per_M_good_tokens"] = rec[f"{key}: usd_per_M_tokens"] / ettr
        fleet_tps += o.entry.share * n * tps * utilization
        cap = getattr(o, "capacity", None)
        if cap is not None:  # a service: the fleet's replicas and the tail at the SLO rate
            m = cap.summary
            replicas = int(o.entry.share * n // o.spec.tp)
            rec[f"{key}: replicas"] = replicas
            rec[f"{key}: fleet_rate_rps"] = replicas * cap.rate_rps / o.spec.replicas
            for q in ("ttft_p99_s", "tpot_p99_s"):
                rec[f"{key}: {q}"] = m.get(f"{q}_mean", math.nan)
                rec[f"{key}: {q}_ci95"] = m.get(f"{q}_ci95", math.nan)
    rec["fleet_tokens_per_s"] = fleet_tps if complete else math.nan
    rec["usd_per_M_fleet_tokens"] = (c.attrs["usd_per_h"] / HOURS / fleet_tps * 1e6
                                     if complete and fleet_tps > 0 else math.nan)
    rec["fleet_tokens_per_kWh"] = (fleet_tps * HOURS / (c.attrs["facility_power_W"] / 1e3)
                                   if complete else math.nan)
    return rec
