"""The design-review comparison: ``fabsim compare A.yaml B.yaml ... --workload W -o report/``.

Each proposal is built, priced (:mod:`sim.cost`), and runs the same training workload and/or
inference service; the table puts the proposals side by side with each difference against
the first, and the report adds four figures (cost breakdown, step-time breakdown,
performance vs. cost with the Pareto front, link utilization per tier).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .cost import (
    NETWORK,
    OPTICAL,
    Assumptions,
    bill_of_materials,
    check_parts,
    cost,
    load_assumptions,
)
from .engine import DEFAULT_NETWORK
from .errors import SimError

__all__ = ["compare", "write_report", "link_tier", "tier_utilization", "table", "figures"]

_TIER = {0: "scale-up", 1: "leaf", 2: "spine", 3: "core"}
HOURS = 3600.0


def link_tier(g, u: str, v: str) -> str:
    """A link's place in the fabric: scale-up, host (PCIe), nic-leaf, leaf-spine, ... ."""
    ku, kv = g.nodes[u].get("kind"), g.nodes[v].get("kind")
    ks = {ku, kv}
    if "ocs" in ks:
        return "ocs"
    if ks <= {"accelerator", "nvswitch"}:
        return "scale-up"
    if "nic" in ks and "accelerator" in ks:
        return "host"
    if "nic" in ks:
        return "nic-leaf"
    if ks == {"switch"}:
        a, b = sorted((g.nodes[u].get("tier", 0), g.nodes[v].get("tier", 0)))
        return f"{_TIER.get(a, a)}-{_TIER.get(b, b)}"
    return "other"


def tier_utilization(f, util: np.ndarray) -> pd.DataFrame:
    """Peak and mean utilization of the links of each tier (all links, idle ones included).

    ``util`` is one value per link of ``f.compile()`` (a training result's
    ``extra["link_utilization"]``)."""
    c = f.compile()
    g = f.graph
    names = c.node_names
    tiers = np.array([link_tier(g, names[c.link_src[i]], names[c.link_dst[i]])
                      for i in range(len(util))])
    df = pd.DataFrame({"tier": tiers, "utilization": util})
    return df.groupby("tier")["utilization"].agg(["max", "mean"])


def _tier_util(f, tr) -> dict:
    if tr is None or "link_utilization" not in tr.extra:
        return {}
    t = tier_utilization(f, tr.extra["link_utilization"])
    return {k: (float(r["max"]), float(r["mean"])) for k, r in t.iterrows()}


def _proposal(path, workload, service, a: Assumptions, duration_s: float, network: str):
    from .engine import warmup_for
    from .fabric import load_topology
    from .fabric.summary import summarize
    from .workload import load_workload, simulate_training
    from .workload.serving import load_service, simulate_service

    f = load_topology(path)
    s = summarize(f)
    bom = bill_of_materials(f)
    rec: dict = {"proposal": f.name, "file": str(path), "accelerators": f.n_accelerators,
                 "network": network}
    results: dict = {}
    tr = sv = None
    if workload:
        try:
            w = load_workload(workload, catalog=f.catalog)
            tr = simulate_training(f, w, network=network)
            results["training"] = tr
        except SimError as e:  # infeasible on this proposal: say why, keep the others
            rec["training_error"] = str(e)
    if service:
        try:
            sp = load_service(service, catalog=f.catalog)
            sv = simulate_service(f, sp, duration_s, warmup_s=warmup_for(duration_s),
                                  network=network)
            results["service"] = sv
        except SimError as e:
            rec["service_error"] = str(e)
    c = cost(f, results, a, bom=bom)  # busy fraction: training if run, else the service
    by = dict(zip(c["category"], c["capex_USD"], strict=True))
    sw = bom[bom["category"].isin(("scale-out switches", "optical circuit switches"))]
    rec.update({
        "switches": int(sw["count"].sum()),
        "transceivers": int(bom.loc[bom["category"] == "transceivers", "count"].sum()),
        "cables": int(bom.loc[bom["category"].isin(("fibers", "copper cables")), "count"].sum()),
        "bisection_per_accel_Bps": min(s["bisection_per_accelerator_Bps"].values(), default=0.0),
    })
    for cat_ in ("accelerators", "servers", "scale-out switches", "optical circuit switches",
                 "transceivers", "fibers", "copper cables", "facility"):
        rec[f"capex_{cat_.replace(' ', '_')}_USD"] = float(by.get(cat_, 0.0))
    rec["capex_network_USD"] = float(sum(by.get(k, 0.0) for k in NETWORK))
    rec["capex_optical_USD"] = float(sum(by.get(k, 0.0) for k in OPTICAL))
    rec["capex_total_USD"] = c.attrs["capex_USD"]
    rec["it_power_W"] = c.attrs["it_power_W"]
    rec["facility_power_W"] = c.attrs["facility_power_W"]
    rec["usd_per_hour"] = c.attrs["usd_per_h"]
    rec["accelerator_busy"] = c.attrs["busy"]
    usd_per_s_per_acc = c.attrs["usd_per_h"] / HOURS / f.n_accelerators
    if tr is not None:
        gpus = tr.workload.gpus
        rec.update({"step_time_s": tr.step_time_s, "mfu": tr.mfu,
                    "train_tokens_per_s": tr.tokens_per_s,
                    "usd_per_step": usd_per_s_per_acc * gpus * tr.step_time_s,
                    "usd_per_M_train_tokens": usd_per_s_per_acc * gpus / tr.tokens_per_s * 1e6,
                    "train_tokens_per_kWh": tr.tokens_per_s * HOURS /
                    (c.attrs["facility_power_W"] * gpus / f.n_accelerators / 1e3)})
        for k, v in tr.breakdown.items():
            if k != "critical_stage":
                rec[f"step_{k}_s"] = v
        rec.update(_goodput(f, tr, rec["usd_per_M_train_tokens"]))
    if sv is not None:
        m = sv.summary
        gpus = sv.service.gpus
        thr = m["throughput_tokens_per_s"]
        rec.update({"warmup_s": m["warmup_s"], "ttft_p50_s": m["ttft_p50_s"], "ttft_p99_s": m["ttft_p99_s"],
                    "tpot_p50_s": m["tpot_p50_s"], "tpot_p99_s": m["tpot_p99_s"],
                    "serve_tokens_per_s": thr,
                    "usd_per_M_served_tokens": usd_per_s_per_acc * gpus / thr * 1e6
                    if thr > 0 else math.inf,
                    "served_tokens_per_kWh": thr * HOURS /
                    (c.attrs["facility_power_W"] * gpus / f.n_accelerators / 1e3)})
    extra = {"bom": bom, "cost": c, "tier_util": _tier_util(f, tr)}
    return rec, extra


def compare(topologies: list, workload=None, service=None, assumptions=None,
            duration_s: float = 30.0, network: str = DEFAULT_NETWORK):
    """Build, price and simulate each proposal.

    Returns
    -------
    (pandas.DataFrame, list of dict)
        One record per proposal (SI units, USD), and per proposal its bill of materials,
        cost table and per-tier peak link utilization.
    """
    if not topologies:
        raise SimError("compare needs at least one proposal")
    a = assumptions if isinstance(assumptions, Assumptions) else load_assumptions(assumptions)
    # a malformed spec is the user's error, not one proposal's infeasibility: fail up front
    from .catalog import load_catalog
    from .workload import load_workload
    from .workload.serving import load_service
    if workload:
        load_workload(workload, catalog=load_catalog())
    if service:
        load_service(service, catalog=load_catalog())
    recs, extras = [], []
    for p in topologies:
        r, e = _proposal(p, workload, service, a, duration_s, network)
        recs.append(r)
        extras.append(e)
    check_parts(a, [e["bom"] for e in extras])  # a price of no part is a typo, not a no-op
    return pd.DataFrame(recs), extras


# ------------------------------------------------------------------------------ report
_ROWS = [  # (column, label, kind, higher is better)
    ("accelerators", "accelerators", "int", None),
    ("switches", "scale-out switches + OCS", "int", None),
    ("transceivers", "transceivers", "int", None),
    ("cables", "fibres + copper cables", "int", None),
    ("bisection_per_accel_Bps", "bisection / accel (B/s)", "bw", True),
    ("capex_accelerators_USD", "capex: accelerators", "usd", False),
    ("capex_servers_USD", "capex: servers", "usd", False),
    ("capex_network_USD", "capex: network", "usd", False),
    ("capex_optical_USD", "  of which optical", "usd", False),
    ("capex_facility_USD", "capex: facility", "usd", False),
    ("capex_total_USD", "capex: total", "usd", False),
    ("it_power_W", "IT power", "kw", False),
    ("facility_power_W", "facility power (x PUE)", "kw", False),
    ("usd_per_hour", "amortized cost $/h", "usd", False),
    ("step_time_s", "training step time", "s", False),
    ("mfu", "MFU", "pct", True),
    ("train_tokens_per_s", "training tokens/s", "num", True),
    ("usd_per_step", "$ per training step", "usd2", False),
    ("usd_per_M_train_tokens", "$ per M training tokens", "usd2", False),
    ("ettr", "effective training time (30 days, failures)", "pct", True),
    ("usd_per_M_good_train_tokens", "$ per M training tokens, goodput-adjusted", "usd2",
     False),
    ("train_tokens_per_kWh", "perf/W: training tokens per kWh", "num", True),
    ("ttft_p50_s", "TTFT p50", "ms", False),
    ("ttft_p99_s", "TTFT p99", "ms", False),
    ("tpot_p50_s", "TPOT p50", "ms", False),
    ("tpot_p99_s", "TPOT p99", "ms", False),
    ("serve_tokens_per_s", "served tokens/s", "num", True),
    ("usd_per_M_served_tokens", "$ per M served tokens", "usd2", False),
    ("served_tokens_per_kWh", "perf/W: served tokens per kWh", "num", True),
]


GOODPUT_DAYS = 30
GOODPUT_SEEDS = 3


def _goodput(f, tr, usd_per_M: float) -> dict:
    """The training job's effective training time ratio over 30 days with the bundled
    failure model (3 seeds, the healthy step reused) and its goodput-adjusted cost."""
    from .workload.goodput import load_failures, simulate_goodput

    m = load_failures()
    ettr = float(np.mean([simulate_goodput(f, tr.workload, m, GOODPUT_DAYS * 86400.0,
                                           seed=s, step_s=tr.step_time_s).summary["ettr"]
                          for s in range(GOODPUT_SEEDS)]))
    return {"ettr": ettr, "usd_per_M_good_train_tokens": usd_per_M / ettr,
            "spare_policy": m.policy}


def _fmt(v, kind: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return {"int": f"{v:,.0f}", "usd": f"${v:,.0f}", "usd2": f"${v:,.3f}",
            "kw": f"{v / 1e3:,.1f} kW", "s": f"{v:.3f} s", "ms": f"{v * 1e3:.1f} ms",
            "pct": f"{v * 100:.1f}%", "num": f"{v:,.0f}",
            "bw": f"{v * 8 / 1e9:,.0f} Gb/s"}[kind]


def table(df: pd.DataFrame) -> list[list[str]]:
    """Rows of the side-by-side table: metric, then each proposal (difference vs. first)."""
    out = []
    for col, label, kind, _better in _ROWS:
        if col not in df.columns or df[col].isna().all():
            continue
        vals = df[col].tolist()
        base = vals[0]
        cells = []
        for i, v in enumerate(vals):
            s = _fmt(v, kind)
            if i > 0 and v is not None and base not in (None, 0) and \
                    all(isinstance(x, (int, float)) and math.isfinite(x) for x in (v, base)):
                s += f" ({(v - base) / abs(base) * 100:+.1f}%)"
            cells.append(s)
        out.append([label, *cells])
    return out


def _pareto(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of points that no other point beats on both lower x and higher y."""
    idx = []
    for i in range(len(x)):
        if not any((x[j] <= x[i] and y[j] >= y[i]) and (x[j] < x[i] or y[j] > y[i])
                   for j in range(len(x))):
            idx.append(i)
    return sorted(idx, key=lambda i: x[i])


def figures(df: pd.DataFrame, extras: list) -> dict[str, bytes]:
    """PNG figures of the comparison (name -> bytes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"P{i + 1}" for i in range(len(df))]
    figs = {}

    def save(fig, key):
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=150)
        plt.close(fig)
        figs[key] = buf.getvalue()

    def stacked(cols, scale, strip, ylabel, title, key):
        fig, ax = plt.subplots(figsize=(7, 4))
        bottom = np.zeros(len(df))
        for c in cols:
            v = df[c].fillna(0).to_numpy(dtype=float) / scale
            if v.sum() == 0:
                continue
            ax.bar(names, v, bottom=bottom, label=c[strip[0]:strip[1]].replace("_", " "))
            bottom += v
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)
        save(fig, key)

    stacked([c for c in df.columns if c.startswith("capex_") and c not in
             ("capex_total_USD", "capex_network_USD", "capex_optical_USD")], 1e6, (6, -4),
            "capex (million USD)", "Cost breakdown", "cost_breakdown")
    steps = [c for c in df.columns if c.startswith("step_") and c != "step_time_s"]
    if steps:
        stacked(steps, 1.0, (5, -2), "time on the critical stage (s)", "Step-time breakdown",
                "step_breakdown")

    perf = "train_tokens_per_s" if "train_tokens_per_s" in df else \
        ("serve_tokens_per_s" if "serve_tokens_per_s" in df else None)
    if perf is not None:
        ok = df[perf].notna().to_numpy()
        x = df["usd_per_hour"].to_numpy(dtype=float)
        y = df[perf].to_numpy(dtype=float)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(x[ok], y[ok])
        for i in np.flatnonzero(ok):
            ax.annotate(names[i], (x[i], y[i]))
        pf = [int(np.flatnonzero(ok)[k]) for k in _pareto(x[ok], y[ok])]
        ax.plot(x[pf], y[pf], "r--", label="Pareto front")
        ax.set_xlabel("amortized cost ($/h)")
        ax.set_ylabel(perf.replace("_", " "))
        ax.set_title("Performance vs. cost")
        ax.legend()
        save(fig, "perf_vs_cost")

    # tiers that carried simulated transfers (TP inside a scale-up domain is timed in closed
    # form per layer and does not load links here)
    tiers = sorted({t for e in extras for t, (mx, _) in e["tier_util"].items() if mx > 0})
    if tiers:
        fig, ax = plt.subplots(figsize=(8, 4))
        w = 0.8 / len(df)
        for i, e in enumerate(extras):
            tu = e["tier_util"]
            x = np.arange(len(tiers)) + i * w
            ax.bar(x, [tu.get(t, (0, 0))[0] * 100 for t in tiers], w, label=names[i],
                   color=f"C{i}", alpha=0.45)
            ax.bar(x, [tu.get(t, (0, 0))[1] * 100 for t in tiers], w * 0.5, color=f"C{i}")
        ax.set_xticks(np.arange(len(tiers)) + 0.4 - w / 2, tiers)
        ax.set_ylabel("% of step time (light: busiest link, dark: mean)")
        ax.set_title("Link utilization per tier (training step; DP/PP/EP/CP transfers)",
                     fontsize=10)
        ax.legend(fontsize=7)
        save(fig, "link_utilization")
    return figs


def write_report(out: str | Path, df: pd.DataFrame, extras: list, *, title: str = "",
                 assumptions: Assumptions | None = None) -> tuple[Path, Path]:
    """Write ``index.html`` (figures embedded, opens offline) and ``report.md`` (figures as
    PNG files beside it) into ``out``; returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = table(df)
    heads = ["metric"] + [f"P{i + 1}: {n}" for i, n in enumerate(df["proposal"])]
    figs = figures(df, extras)
    for k, png in figs.items():
        (out / f"{k}.png").write_bytes(png)
    notes = []
    for i, r in df.iterrows():
        for k in ("training_error", "service_error"):
            if k in df.columns and isinstance(r.get(k), str):
                notes.append(f"P{i + 1} {k.split('_')[0]}: {r[k]}")
    a = assumptions or load_assumptions()
    assume = (f"electricity {a.electricity_usd_per_kwh} USD/kWh, PUE {a.pue}, facility "
              f"{a.facility_usd_per_kw:,.0f} USD/kW, amortization {a.amortization_years} "
              f"years, accelerator power model: {a.power_model} (busy fraction of the training "
              f"step when a workload is given, else of the service)")
    md = [f"# {title or 'Design review'}", "", "Differences are against P1.", "",
          "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", f"Assumptions: {assume}.", ""]
    md += [f"- {n}" for n in notes]
    md += [""] + [f"![{k}]({k}.png)" for k in figs]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    h = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
         f"<title>{html.escape(title or 'Design review')}</title>",
         "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
         "td:first-child{text-align:left}</style></head><body>",
         f"<h1>{html.escape(title or 'Design review')}</h1><p>Differences are against P1.</p>",
         "<table id='comparison'><tr>" + "".join(f"<th>{html.escape(x)}</th>" for x in heads)
         + "</tr>"]
    for r in rows:
        h.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>")
    h.append(f"</table><p>Assumptions: {html.escape(assume)}.</p>")
    h += [f"<p>{html.escape(n)}</p>" for n in notes]
    for k, png in figs.items():
        h.append(f"<h2>{k.replace('_', ' ')}</h2><img alt='{k}' src='data:image/png;base64,"
                 f"{base64.b64encode(png).decode()}'>")
    h.append("</body></html>")
    html_path = out / "index.html"
    html_path.write_text("\n".join(h))
    return html_path, md_path
