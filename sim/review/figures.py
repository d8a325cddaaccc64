"""A review's figures, fit for a design document: SVG and PNG at 150 dpi, proposal names on
the axes and in the legends, legends outside the plotted data.

Figures: cost breakdown, $ per million tokens per class, step-time breakdown of each
training job, latency vs load of each service with its SLO, a tornado chart of the
headline metric's sensitivity, and link utilization per tier.

Main assumption: matplotlib's object API (no pyplot), so the caller's backend is untouched.
"""

from __future__ import annotations

import io
import re
import textwrap

import numpy as np

__all__ = ["DPI", "review_figures"]

DPI = 150
_CAPEX = ["accelerators", "servers", "scale_out_switches", "optical_circuit_switches",
          "transceivers", "fibers", "copper_cables", "facility"]
_STEP = ["compute", "tp_exposed", "ep_exposed", "cp_exposed", "dp_exposed", "optimizer",
         "pp_bubble_and_wait"]


def _names(result) -> list[str]:
    """Axis labels: P<n> and the proposal's name before its first comma, wrapped short
    (parenthesised details dropped) so that six fit side by side."""
    out = []
    for i, r in enumerate(result.runs):
        short = re.sub(r"\s*\(.*?\)", "", r.name).split(",")[0]
        out.append(f"P{i + 1}\n" + "\n".join(textwrap.wrap(short, 11)))
    return out


def _fig(w: float = 8.0, h: float = 4.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def _save(fig) -> dict[str, bytes]:
    out = {}
    for fmt in ("svg", "png"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight")
        out[fmt] = buf.getvalue()
    return out


def _cost(result):
    df, names = result.table, _names(result)
    fig = _fig()
    ax = fig.subplots()
    bottom = np.zeros(len(df))
    for k in _CAPEX:
        v = df.get(f"capex_{k}_USD", 0 * bottom).fillna(0).to_numpy(float) / 1e6
        if v.sum():
            ax.bar(names, v, bottom=bottom, label=k.replace("_", " "))
            bottom += v
    ax.set_ylabel("capex (million USD)")
    ax.set_title("Capital cost by category")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    return fig


def _per_class(result):
    df, names = result.table, _names(result)
    cols = [c for c in df.columns if c.endswith(": usd_per_M_tokens")]
    fig = _fig(9, 4.5)
    ax = fig.subplots()
    x = np.arange(len(df))
    w = 0.8 / max(1, len(cols))
    for j, c in enumerate(cols):
        v = df[c].to_numpy(float)
        ax.bar(x + j * w - 0.4 + w / 2, np.nan_to_num(v), w, label=c.split(": ")[0])
        for i in np.flatnonzero(np.isnan(v)):
            ax.text(x[i] + j * w - 0.4 + w / 2, 0, "n/a", ha="center", va="bottom",
                    fontsize=7, rotation=90)
    ax.set_xticks(x, names, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("$ per million tokens (log)")
    ax.set_title("Cost per million tokens, per class of the fleet (served at the SLO)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def _steps(result):
    jobs = [o.entry.name for o in result.runs[0].training] if result.runs else []
    if not jobs:
        return None
    names = _names(result)
    fig = _fig(9, 3.2 * len(jobs))
    axes = np.atleast_1d(fig.subplots(len(jobs), 1))
    for ax, job in zip(axes, jobs, strict=True):
        bottom = np.zeros(len(names))
        for k in _STEP:
            v = np.array([next((o.result.breakdown.get(k, 0.0) for o in r.training
                                if o.entry.name == job and o.result is not None), 0.0)
                          for r in result.runs])
            if v.sum():
                ax.bar(names, v, bottom=bottom, label=k.replace("_", " "))
                bottom += v
        ax.set_ylabel("s on the critical stage")
        ax.set_title(f"Step time: {job}")
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def _load(result):
    svcs = [o.entry for o in result.runs[0].services] if result.runs else []
    if not svcs:
        return None
    fig = _fig(10, 3.6 * len(svcs))
    axes = np.atleast_2d(fig.subplots(len(svcs), 2))
    for row, e in zip(axes, svcs, strict=True):
        for ax, key, slo, label in ((row[0], "ttft", e.slo_ttft_s, "TTFT"),
                                    (row[1], "tpot", e.slo_tpot_s, "TPOT")):
            for i, r in enumerate(result.runs):
                o = next(o for o in r.services if o.entry.name == e.name)
                c = o.load_curve
                if c is None or not len(c):
                    continue
                col = f"{key}_p{int(e.percentile)}_s"
                col = col if col in c else f"{key}_p99_s"
                ax.plot(c["rate_rps"], c[col] * 1e3, marker="o", label=f"P{i + 1}")
            if slo is not None:
                ax.axhline(slo * 1e3, color="k", ls="--", lw=1, label="SLO")
            ax.set_xlabel("arrival rate per replica (requests/s)")
            ax.set_ylabel(f"p{e.percentile:g} {label} (ms)")
            ax.set_title(f"{e.name}: {label} vs load")
            ax.legend(fontsize=7, loc="upper left")
    return fig


def _tornado(result, metric: str):
    s = result.sensitivity
    if s is None or s.empty:
        return None
    g = s[s["metric"] == metric]
    best = next((v["best_index"] for v in result.verdict if v["column"] == metric), None)
    if best is None or g.empty:
        return None
    g = g[g["index"] == best]
    base = float(g["baseline"].iloc[0])
    keys = list(dict.fromkeys(g["assumption"]))
    lo = [float(g[(g["assumption"] == k) & (g["bound"] == "low")]["value"].iloc[0]) - base
          for k in keys]
    hi = [float(g[(g["assumption"] == k) & (g["bound"] == "high")]["value"].iloc[0]) - base
          for k in keys]
    order = np.argsort([abs(a) + abs(b) for a, b in zip(lo, hi, strict=True)])
    fig = _fig(8, 0.5 * len(keys) + 1.8)
    ax = fig.subplots()
    y = np.arange(len(keys))
    ax.barh(y, np.array(lo)[order], color="tab:blue", label="low end")
    ax.barh(y, np.array(hi)[order], color="tab:orange", label="high end")
    labels = [f"{keys[i]} {tuple(g[g['assumption'] == keys[i]]['setting'].unique())}"
              for i in order]
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(f"change of {metric} (baseline {base:,.4g})")
    ax.set_title(f"Sensitivity of P{best + 1}'s {metric}")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _links(result):
    tiers = sorted({t for r in result.runs for t, (mx, _) in r.tier_util().items() if mx > 0})
    if not tiers:
        return None
    fig = _fig(9, 4)
    ax = fig.subplots()
    w = 0.8 / len(result.runs)
    for i, r in enumerate(result.runs):
        tu = r.tier_util()
        x = np.arange(len(tiers)) + i * w
        ax.bar(x, [tu.get(t, (0, 0))[0] * 100 for t in tiers], w, label=f"P{i + 1} peak",
               color=f"C{i}", alpha=0.45)
        ax.bar(x, [tu.get(t, (0, 0))[1] * 100 for t in tiers], w * 0.5, color=f"C{i}")
    ax.set_xticks(np.arange(len(tiers)) + 0.4 - w / 2, tiers, fontsize=8)
    ax.set_ylabel("% of the step (light: busiest link, dark: mean)")
    ax.set_title("Link utilization per tier, first training job")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return fig


def review_figures(result) -> dict[str, dict[str, bytes]]:
    """name -> {"svg": bytes, "png": bytes} for every figure that has data."""
    makers = {"cost_breakdown": _cost, "cost_per_token": _per_class,
              "step_breakdown": _steps, "latency_vs_load": _load, "link_utilization": _links}
    for v in result.verdict:  # a tornado per headline metric, for its best proposal
        slug = re.sub(r"[^a-z0-9]+", "_", v["column"].lower()).strip("_")
        makers[f"sensitivity_{slug}"] = lambda r, m=v["column"]: _tornado(r, m)
    out = {}
    for name, make in makers.items():
        fig = make(result)
        if fig is not None:
            out[name] = _save(fig)
    return out
