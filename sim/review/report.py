"""A review's report: ``index.html`` (self-contained: figures inline, opens offline) with
the verdict first, then what was simulated, the assumptions, the side-by-side table, the
sensitivity and the figures; ``report.md`` with the figures beside it as SVG and PNG;
``results.parquet`` with every number of the table and the sensitivity; ``review.json``.

Main assumption: a reader scans the verdict and stops; everything below it supports it.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from ..cost import Assumptions
from .figures import review_figures

__all__ = ["assumption_rows", "comparison_rows", "to_json", "write_review"]

_ROWS = [  # (column, label, kind)
    ("accelerators", "accelerators", "int"),
    ("capex_accelerators_USD", "capex: accelerators", "usd"),
    ("capex_servers_USD", "capex: servers", "usd"),
    ("capex_network_USD", "capex: network", "usd"),
    ("capex_optical_USD", "  of which optical", "usd"),
    ("capex_facility_USD", "capex: facility", "usd"),
    ("capex_total_USD", "capex: total", "usd"),
    ("it_power_W", "IT power", "kw"),
    ("facility_power_W", "facility power (x PUE)", "kw"),
    ("usd_per_hour", "amortized cost $/h", "usd"),
    ("accelerator_busy", "accelerator busy (fleet mix)", "pct"),
]


def _fmt(v, kind: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return {"int": f"{v:,.0f}", "usd": f"${v:,.0f}", "usd3": f"${v:,.3f}",
            "kw": f"{v / 1e3:,.1f} kW", "pct": f"{v * 100:.1f}%", "num": f"{v:,.0f}",
            "ms": f"{v * 1e3:,.1f} ms", "rps": f"{v:,.1f}"}[kind]


def comparison_rows(df: pd.DataFrame) -> list[list[str]]:
    """The side-by-side table: metric, then each proposal (difference against P1)."""
    rows = list(_ROWS)
    for c in df.columns:
        if c.endswith(": tokens_per_s_per_gpu"):
            job = c.split(": ")[0]
            rows += [(c, f"{job}: tokens/s per GPU", "num"),
                     (f"{job}: usd_per_M_tokens", f"{job}: $ per M tokens", "usd3"),
                     (f"{job}: tokens_per_kWh", f"{job}: tokens per kWh", "num")]
            if f"{job}: ettr" in df.columns:
                rows += [(f"{job}: ettr", f"{job}: effective training time (30 d)", "pct"),
                         (f"{job}: usd_per_M_good_tokens",
                          f"{job}: $ per M tokens, goodput-adjusted", "usd3")]
    for c in df.columns:
        if c.endswith(": replicas"):
            job = c.split(": ")[0]
            rows += [(c, f"{job}: replicas in the fleet", "int"),
                     (f"{job}: fleet_rate_rps", f"{job}: requests/s within the SLO", "rps"),
                     (f"{job}: ttft_p99_s", f"{job}: TTFT p99 at that rate", "ms"),
                     (f"{job}: tpot_p99_s", f"{job}: TPOT p99 at that rate", "ms")]
    rows += [("usd_per_M_fleet_tokens", "fleet: $ per M tokens (mix-weighted)", "usd3"),
             ("fleet_tokens_per_kWh", "fleet: tokens per kWh", "num")]
    out = []
    for col, label, kind in rows:
        if col not in df.columns:
            continue
        vals = df[col].tolist()
        cells = []
        cis = df[f"{col}_ci95"].tolist() if f"{col}_ci95" in df.columns else None
        for i, v in enumerate(vals):
            s = _fmt(v, kind)
            if cis is not None and isinstance(cis[i], float) and math.isfinite(cis[i]):
                s += f" ± {_fmt(cis[i], kind)}"
            b = vals[0]
            if i and isinstance(v, (int, float)) and isinstance(b, (int, float)) and \
                    math.isfinite(v) and math.isfinite(b) and b:
                s += f" ({(v - b) / abs(b) * 100:+.1f}%)"
            cells.append(s)
        out.append([label, *cells])
    return out


def assumption_rows(a: Assumptions) -> list[list[str]]:
    """The economic assumptions as (assumption, value) rows."""
    rows = [["electricity", f"{a.electricity_usd_per_kwh:g} USD/kWh"], ["PUE", f"{a.pue:g}"],
            ["facility capex", f"{a.facility_usd_per_kw:,.0f} USD per kW of IT power"],
            ["accelerator power", a.power_model]]
    rows += [[f"amortization: {k}", f"{v:g} years"] for k, v in a.amortization_years.items()]
    rows += [[f"price: {k}", f"{v:,.0f} USD"] for k, v in a.prices.items()]
    rows += [[f"power: {k}", f"{v:,.0f} W"] for k, v in a.powers.items()]
    return rows


def _table(rows, heads, ident: str) -> str:
    h = [f"<table id='{ident}'><tr>" + "".join(f"<th>{html.escape(str(x))}</th>"
                                               for x in heads) + "</tr>"]
    for r in rows:
        h.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>")
    return "".join(h) + "</table>"


def _md_table(rows, heads) -> list[str]:
    return ["| " + " | ".join(map(str, heads)) + " |", "|" + "---|" * len(heads)] + \
        ["| " + " | ".join(str(x).replace("|", "/") for x in r) + " |" for r in rows]


def _sections(res) -> dict[str, list]:
    """Section title -> list of items (paragraph strings or ("table", rows, heads, id))."""
    heads = ["metric"] + [f"P{i + 1}: {r.name}" for i, r in enumerate(res.runs)]
    inputs = res.inputs.fillna("-")
    meta = res.meta
    return {
        "Verdict": [v["text"] for v in res.verdict] +
                   [f"P{i + 1} {r.name}: {b}" for i, (r, b) in
                    enumerate(zip(res.runs, res.bottlenecks, strict=True))] + res.ties,
        "Sensitivity": res.flips,
        "What was simulated": [
            f"{meta['simulator']}, {meta['date']}; network model {meta['network']}; "
            f"services at their SLO over {meta['seeds']} seed(s) of {meta['duration_s']:g} s "
            f"of arrivals each; review file {meta['review']}; {meta['wall_s']:.0f} s.",
            ("table", inputs.values.tolist(), list(inputs.columns), "inputs")],
        "Assumptions": [("table", assumption_rows(res.review.assumptions),
                         ["assumption", "value"], "assumptions")],
        "Side by side": ["Differences are against P1.",
                         ("table", comparison_rows(res.table), heads, "comparison")],
    }


def to_json(res) -> dict:
    """The review's results as plain data (what ``--json`` prints)."""
    return {"meta": res.meta, "verdict": res.verdict, "bottlenecks": res.bottlenecks,
            "ties": res.ties, "flips": res.flips,
            "proposals": json.loads(res.table.to_json(orient="records")),
            "inputs": json.loads(res.inputs.to_json(orient="records"))}


def write_review(out: str | Path, res, title: str | None = None) -> dict[str, Path]:
    """Write the report into ``out``; returns the paths written by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = title or f"Design review: {res.review.name}"
    figs = review_figures(res)
    for k, f in figs.items():
        (out / f"{k}.svg").write_bytes(f["svg"])
        (out / f"{k}.png").write_bytes(f["png"])
    secs = _sections(res)
    h = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
         f"<title>{html.escape(title)}</title>",
         "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
         "padding:4px 8px;text-align:right}td:first-child{text-align:left}"
         "figure{margin:1em 0}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    md = [f"# {title}", ""]
    for name, items in secs.items():
        ident = name.lower().replace(" ", "-")
        h.append(f"<section id='{ident}'><h2>{html.escape(name)}</h2>")
        md += [f"## {name}", ""]
        lists = [x for x in items if isinstance(x, str)]
        if lists and name in ("Verdict", "Sensitivity"):
            h.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lists) + "</ul>")
            md += [f"- {x}" for x in lists] + [""]
        for x in items:
            if isinstance(x, str) and name not in ("Verdict", "Sensitivity"):
                h.append(f"<p>{html.escape(x)}</p>")
                md += [x, ""]
            elif isinstance(x, tuple):
                h.append(_table(x[1], x[2], x[3]))
                md += _md_table(x[1], x[2]) + [""]
        h.append("</section>")
    h.append("<section id='figures'><h2>Figures</h2>")
    md += ["## Figures", ""]
    for k, f in figs.items():
        svg = f["svg"].decode()
        svg = svg[svg.index("<svg"):]
        h.append(f"<figure id='fig-{k}'>{svg}<figcaption>{k.replace('_', ' ')}"
                 "</figcaption></figure>")
        md += [f"![{k.replace('_', ' ')}]({k}.svg)", ""]
    h.append("</section></body></html>")
    paths = {"html": out / "index.html", "md": out / "report.md",
             "parquet": out / "results.parquet", "json": out / "review.json"}
    paths["html"].write_text("\n".join(h))
    paths["md"].write_text("\n".join(md) + "\n")
    paths["json"].write_text(json.dumps(to_json(res), indent=1, default=float))
    _parquet(res, paths["parquet"])
    return paths


def _parquet(res, path: Path) -> None:
    """Every number of the table (long form: proposal, metric, value) and the
    sensitivity, in one Parquet file."""
    t = res.table.melt(id_vars=["proposal", "file"], var_name="metric", value_name="value")
    t = t[pd.to_numeric(t["value"], errors="coerce").notna()].assign(
        value=lambda d: d["value"].astype(float), table="proposals", assumption="",
        bound="")
    s = res.sensitivity.assign(table="sensitivity", file="")[
        ["proposal", "file", "metric", "value", "table", "assumption", "bound"]]
    pd.concat([t, s], ignore_index=True).to_parquet(path, index=False)
