"""How sensitive a review's answer is to its assumptions: each assumption moved to the low
and the high end of its stated range, one at a time, every proposal's headline metrics
recomputed, and whether the best proposal of a metric changes within the range.

Main assumption: the assumptions vary the economics only (prices, energy, amortization,
PUE, fleet utilization); the simulated performance is the same at every point, so no
simulation runs again and the analysis costs arithmetic only.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ..cost import NETWORK, Assumptions
from .economics import economics
from .run import ProposalRun
from .spec import Review

__all__ = ["flips", "perturbed", "sensitivity"]


def _apply(base: float, bound) -> float:
    """``bound`` as a value: a number as it is, a change like "+20%" relative to base."""
    if isinstance(bound, str):
        return base * (1.0 + float(bound.rstrip("%")) / 100.0)
    return float(bound)


def _scale_prices(a: Assumptions, runs: list[ProposalRun], cats: tuple, bound) -> dict:
    prices = dict(a.prices)
    for run in runs:
        for r in run.bom.itertuples():
            if r.category in cats:
                base = a.prices.get(r.item, r.unit_price_USD)
                prices[r.item] = _apply(base, bound) if isinstance(bound, str) else \
                    base * float(bound)
    return prices


def perturbed(review: Review, runs: list[ProposalRun], key: str, bound
              ) -> tuple[Assumptions, float]:
    """The review's assumptions with ``key`` at ``bound``, and the fleet utilization."""
    a = review.assumptions
    if key == "utilization":
        return a, _apply(1.0, bound)
    if key == "accelerator_price":
        return dataclasses.replace(a, prices=_scale_prices(a, runs, ("accelerators",),
                                                           bound)), 1.0
    if key == "network_price":
        return dataclasses.replace(a, prices=_scale_prices(a, runs, NETWORK, bound)), 1.0
    if key == "electricity_usd_per_kwh":
        return dataclasses.replace(a, electricity_usd_per_kwh=_apply(
            a.electricity_usd_per_kwh, bound)), 1.0
    if key == "pue":
        return dataclasses.replace(a, pue=_apply(a.pue, bound)), 1.0
    if key == "accelerator_years":
        years = dict(a.amortization_years)
        for cat in ("accelerators", "servers"):
            years[cat] = _apply(a.years(cat), bound)
        return dataclasses.replace(a, amortization_years=years), 1.0
    raise KeyError(key)


def sensitivity(review: Review, runs: list[ProposalRun], metrics: list[str]) -> pd.DataFrame:
    """One row per (assumption, bound, proposal, metric): the value and its baseline."""
    base = {run.name: economics(run, review) for run in runs}
    rows = []
    for key, bounds in review.sensitivity.items():
        for side, bound in zip(("low", "high"), bounds, strict=True):
            a, u = perturbed(review, runs, key, bound)
            for i, run in enumerate(runs):
                rec = economics(run, review, a, utilization=u)
                for m in metrics:
                    rows.append({"assumption": key, "bound": side, "setting": str(bound),
                                 "proposal": run.name, "index": i, "metric": m,
                                 "value": rec.get(m), "baseline": base[run.name].get(m)})
    return pd.DataFrame(rows)


def flips(sens: pd.DataFrame, lower_better: dict[str, bool]) -> list[str]:
    """Sentences naming each (metric, assumption bound) at which the best proposal is not
    the baseline's best; one sentence per metric that never flips."""
    out = []
    for m, g in sens.groupby("metric", sort=False):
        asc = lower_better[m]
        base_best = g.groupby("index")["baseline"].first().dropna().sort_values(
            ascending=asc)
        if base_best.empty:
            continue
        b0 = int(base_best.index[0])
        changed = []
        for (key, _side), h in g.groupby(["assumption", "bound"], sort=False):
            v = h.set_index("index")["value"].dropna().sort_values(ascending=asc)
            if len(v) and int(v.index[0]) != b0:
                changed.append(f"P{int(v.index[0]) + 1} at {key} {h['setting'].iloc[0]}")
        if changed:
            out.append(f"{m}: the best proposal changes from P{b0 + 1} to " +
                       "; ".join(changed))
        else:
            out.append(f"{m}: P{b0 + 1} stays best over every range")
    return out
