"""The verdict of a review: the best proposal per headline metric (with its margin over
the runner-up), each proposal's bottleneck in one sentence read from the simulation, and
why proposals that tie do.

Main assumption: a bottleneck is the largest share of a training step that is not
computation (exposed TP / EP / CP / DP communication, pipeline bubble), or, where
computation is most of the step, the computation itself; for a service, the SLO limit that
binds first as load grows (TTFT, TPOT, or saturation), with the HBM and KV-cache figures
at that load.
"""

from __future__ import annotations

import math

import pandas as pd

from .run import ProposalRun

__all__ = ["bottleneck", "headline_metrics", "ties", "verdict"]

SCALE_UP_TIERS = {"scale-up", "host"}
_PARTS = {"tp_exposed": "exposed TP communication", "ep_exposed": "exposed EP all-to-all",
          "cp_exposed": "exposed CP exchange", "dp_exposed": "exposed DP gradient sync",
          "pp_bubble_and_wait": "pipeline bubble", "optimizer": "optimizer step"}


def headline_metrics(df: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """(column, label, lower is better) of the metrics the verdict ranks on."""
    out = [("usd_per_M_fleet_tokens", "$ per M fleet tokens (mix-weighted)", True)]
    out += [(c, f"$ per M tokens, {c.split(': ')[0]}", True)
            for c in df.columns if c.endswith(": usd_per_M_tokens")]
    out += [("fleet_tokens_per_kWh", "fleet tokens per kWh", False),
            ("capex_total_USD", "capex", True)]
    return [m for m in out if m[0] in df.columns and df[m[0]].notna().any()]


def _fmt(col: str, v: float) -> str:
    if "usd_per_M" in col:
        return f"${v:,.3f}"
    if "USD" in col:
        return f"${v / 1e6:,.1f}M"
    return f"{v:,.0f}"


def verdict(df: pd.DataFrame) -> list[dict]:
    """Per headline metric: the best proposal, its value, the runner-up and the margin."""
    rows = []
    for col, label, lower in headline_metrics(df):
        v = df[col].astype(float)
        ok = v.dropna().sort_values(ascending=lower)
        best = ok.index[0]
        row = {"metric": label, "column": col, "best": df.loc[best, "proposal"],
               "best_index": int(best), "value": float(ok.iloc[0]),
               "text": f"{label}: P{best + 1} {df.loc[best, 'proposal']} "
                       f"({_fmt(col, float(ok.iloc[0]))})"}
        if len(ok) > 1:
            second = ok.index[1]
            margin = abs(ok.iloc[1] - ok.iloc[0]) / abs(ok.iloc[1]) * 100
            row.update({"runner_up": df.loc[second, "proposal"], "margin_pct": margin})
            row["text"] += f", {margin:.1f}% ahead of P{second + 1}"
        missing = df.index[v.isna()].tolist()
        if missing:
            row["text"] += "; no figure for " + ", ".join(f"P{i + 1}" for i in missing)
        rows.append(row)
    return rows


def _scale_out_peak(run: ProposalRun, job: str | None = None) -> tuple[str, float] | None:
    """The busiest scale-out link tier during training job ``job``'s step, and its peak."""
    tiers = {k: v for k, v in run.tier_util(job).items() if k not in SCALE_UP_TIERS}
    if not tiers:
        return None
    k = max(tiers, key=lambda t: tiers[t][0])
    return k, tiers[k][0]


def _training_sentence(run: ProposalRun, o) -> str:
    r = o.result
    if r is None:
        return f"{o.entry.name}: cannot run ({o.error})"
    b, step = r.breakdown, r.step_time_s
    comp = b["compute"] / step
    part = max(_PARTS, key=lambda k: b.get(k, 0.0))
    share = b.get(part, 0.0) / step
    lay = (f"TP{r.workload.tp} PP{r.workload.pp} DP{r.workload.dp}"
           + (f" EP{r.workload.ep}" if r.workload.ep > 1 else "")
           + (f" CP{r.workload.cp}" if r.workload.cp > 1 else ""))
    if comp >= 0.7 or share < 0.05:
        s = f"{o.entry.name} ({lay}, {r.workload.gpus} GPUs): compute-bound ({comp:.0%} of " \
            f"the step is computation; largest other: {_PARTS[part]} {share:.0%})"
    else:
        s = f"{o.entry.name} ({lay}, {r.workload.gpus} GPUs): {_PARTS[part]} " \
            f"{share:.0%} of the step (computation {comp:.0%})"
    peak = _scale_out_peak(run, o.entry.name)
    if peak is not None:
        s += f"; busiest scale-out tier {peak[0]} at {peak[1]:.0%}"
    return s + (" [layout planned for this proposal]" if o.planned else "")


def _service_sentence(o) -> str:
    c = o.capacity
    if c is None:
        return f"{o.entry.name}: cannot run ({o.error})"
    if not c.rate_rps:
        return f"{o.entry.name}: misses its SLO at any load ({c.note})"
    m = c.summary
    lim = {"ttft": "TTFT", "tpot": "TPOT", "saturation": "throughput (saturation)"}.get(
        c.limited_by, c.limited_by)
    s = (f"{o.entry.name}: {lim} binds first, at {c.rate_rps / max(1, o.spec.replicas):.2f} "
         f"req/s per replica ({c.tokens_per_s / o.gpus:,.0f} output tokens/s per GPU; busy "
         f"{m.get('busy_fraction', math.nan):.0%}, HBM bandwidth "
         f"{m.get('hbm_utilization', math.nan):.0%}")
    if m.get("preemptions"):
        s += f", {m['preemptions']} KV-cache preemptions: the cache is full"
    return s + ")"


def bottleneck(run: ProposalRun) -> str:
    """One clause per job of where the proposal's time goes (a training job's busiest
    scale-out link tier with it)."""
    parts = [_training_sentence(run, o) for o in run.training]
    parts += [_service_sentence(o) for o in run.services]
    return "; ".join(parts) + "."


def ties(df: pd.DataFrame, runs: list[ProposalRun], tolerance: float = 0.01) -> list[str]:
    """Sentences explaining proposals whose training throughput per GPU is within
    ``tolerance`` of each other's: how little of the scale-out network the job uses."""
    out = []
    for col in [c for c in df.columns if c.endswith(": tokens_per_s_per_gpu")]:
        v = df[col].astype(float)
        order = v.dropna().sort_values()
        groups, cur = [], []
        for i in order.index:
            if cur and abs(v[i] - v[cur[0]]) > tolerance * v[cur[0]]:
                groups.append(cur)
                cur = []
            cur.append(i)
        groups.append(cur)
        job = col.split(": ")[0]
        if job not in [o.entry.name for o in runs[0].training]:
            continue  # a service: its figure is a measured capacity, not a step
        for g in (g for g in groups if len(g) > 1):
            peaks = [_scale_out_peak(runs[i], job) for i in g]
            worst = max((p[1] for p in peaks if p), default=0.0)
            out.append(f"{', '.join(f'P{i + 1}' for i in g)} tie on {job} (within "
                       f"{tolerance:.0%} tokens/s per GPU): its busiest scale-out link is "
                       f"at most {worst:.0%} utilized, so the fabrics' differences do not "
                       "bind this job")
    return out
