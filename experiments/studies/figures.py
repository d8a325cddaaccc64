"""Run a bundled study and draw its figure.

    python experiments/studies/figures.py STUDY [--quick] [--workers N] [-o DIR]

STUDY is one of oversubscription, ib-vs-roce, rail-only, inference-slo (the YAML files
beside this script). The sweep's results go to ``results/<study>[-quick]/`` (resumable:
a rerun skips finished points), the figure to ``<DIR>/study-<study>[-quick].png``
(default: ``docs/`` for a full grid, where the README's figures live, and
``experiments/studies/figures/`` for a quick one) and the table it is drawn from to stdout.
``--quick`` runs the study's reduced grid (CI and the notebook use it); the README's
figures and findings come from the full grids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STUDIES = ("oversubscription", "ib-vs-roce", "rail-only", "inference-slo")


def run(name: str, quick: bool = False, workers: int | None = None,
        results: Path | None = None, progress: bool = True) -> pd.DataFrame:
    """The study's rows (see :func:`sim.sweep`), resumed from ``results`` if given."""
    from sim import sweep

    if name not in STUDIES:
        raise SystemExit(f"unknown study {name!r}: one of {', '.join(STUDIES)}")
    return sweep(HERE / f"{name}.yaml", out=results, workers=workers, quick=quick,
                 progress=progress)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    bad = df[df["status"] != "ok"]
    for _, r in bad.iterrows():
        print(f"# point {r['point']}: {r['status']}: {r['error']}", file=sys.stderr)
    return df[df["status"] == "ok"]


def oversubscription(df: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    d = _ok(df).copy()
    ov = "topology.params.tiers[1].oversubscription"
    d["job"] = d["workload.name"] + ", " + d["topology.routing"].map(
        {"ecmp": "E-ECMP (16 flows)", "adaptive": "adaptive"}).fillna(d["topology.routing"])
    t = d.pivot_table(index=ov, columns="job",
                      values=["step_time_s", "usd_per_M_train_tokens", "capex_network_USD"])
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, (col, lab) in enumerate([("step_time_s", "step time (s)"),
                                    ("usd_per_M_train_tokens", "$ per M training tokens"),
                                    ("capex_network_USD", "network capex ($M)")]):
        sub = t[col] / (1e6 if col == "capex_network_USD" else 1)
        for m in sub.columns:
            ax[i].plot(sub.index, sub[m], marker="o", label=m)
        ax[i].set_xlabel("oversubscription above the pods (x:1)")
        ax[i].set_ylabel(lab)
        ax[i].set_xticks(list(sub.index))
    ax[0].legend(fontsize=8)
    fig.suptitle("16K H100, Llama 3 cluster shape: oversubscription above the pods")
    fig.tight_layout()
    return fig, t


def ib_vs_roce(df: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    d = _ok(df)
    t = d.pivot_table(index="workload.name", columns="topology.name", values="step_time_s",
                      sort=False)
    s = d.groupby("topology.name", sort=False)[["ttft_p99_s", "tpot_p99_s",
                                                "usd_per_M_served_tokens",
                                                "capex_network_USD"]].first()
    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
    base = t.columns[0]
    (100 * (t.div(t[base], axis=0) - 1)).plot.bar(ax=ax[0], rot=0)
    ax[0].axhline(0, color="k", lw=0.6)
    ax[0].set_ylabel(f"step time vs {base} (%)")
    ax[0].set_xlabel("")
    ax[0].legend(fontsize=8)
    (s["capex_network_USD"] / 1e6).plot.bar(ax=ax[1], rot=15, color="tab:gray")
    for i, (ttft, usd) in enumerate(zip(s["ttft_p99_s"], s["usd_per_M_served_tokens"],
                                        strict=True)):
        ax[1].annotate(f"p99 TTFT {ttft * 1e3:.0f} ms\n${usd:.2f}/M served", (i, 0),
                       xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7)
    ax[1].set_ylabel("scale-out network capex ($M)")
    ax[1].set_xlabel("")
    fig.suptitle("1,024-GPU DGX H100 SuperPOD: InfiniBand vs RoCE")
    fig.tight_layout()
    return fig, pd.concat([t.T, s], axis=1)


def rail_only(df: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    d = _ok(df).copy()
    d["design"] = d["topology.name"].str.rsplit(" ", n=1).str[0]
    t = d.pivot_table(index="accelerators", columns="design",
                      values=["capex_network_USD", "network_power_W", "step_time_s"])
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, (col, lab, sc) in enumerate([("capex_network_USD", "network capex ($M)", 1e6),
                                        ("network_power_W", "network power (kW)", 1e3),
                                        ("step_time_s", "GPT-3 175B step time (s)", 1)]):
        for m in t[col].columns:
            ax[i].plot(t.index, t[col][m] / sc, marker="o", label=m)
        ax[i].set_xscale("log", base=2)
        ax[i].set_xlabel("GPUs")
        ax[i].set_ylabel(lab)
    ax[0].legend(fontsize=8)
    fig.suptitle("Rail-optimized vs rail-only vs ToR leaf-spine (400G, 51.2T switches)")
    fig.tight_layout()
    ro = t["capex_network_USD"]
    if {"rail-only", "rail-optimized"} <= set(ro.columns):
        t[("saving vs rail-optimized", "network capex")] = \
            1 - ro["rail-only"] / ro["rail-optimized"]
        pw = t["network_power_W"]
        t[("saving vs rail-optimized", "network power")] = \
            1 - pw["rail-only"] / pw["rail-optimized"]
    return fig, t


def inference_slo(df: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    d = _ok(df).copy()
    pol = {0: "continuous, chunked", 1: "continuous", 2: "static 8"}
    b = d["service.batching"].astype(str)
    d["policy"] = b.map({v: pol.get(i, v) for i, v in enumerate(pd.unique(b))})
    d["config"] = d["service.name"] + ", " + d["policy"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    colour = {n: f"C{i}" for i, n in enumerate(pd.unique(d["service.name"]))}
    dash = {p: ls for p, ls in zip(pol.values(), ("-", "--", ":"), strict=True)}
    for c, g in d.groupby("config", sort=False):
        g = g.sort_values("service.arrival.rate")
        kw = dict(marker="o", label=c, color=colour[g["service.name"].iloc[0]],
                  ls=dash.get(g["policy"].iloc[0], "-"))
        ax[0].plot(g["service.arrival.rate"], g["ttft_p99_s"], **kw)
        ax[1].plot(g["service.arrival.rate"], g["tpot_p99_s"] * 1e3, **kw)
        ax[2].plot(g["service.arrival.rate"], g["slo_attainment"], **kw)
    ax[0].axhline(2.0, color="k", lw=0.8, ls="--")
    ax[1].axhline(100, color="k", lw=0.8, ls="--")
    ax[0].set_yscale("log")
    for a, lab in zip(ax, ["p99 TTFT (s)", "p99 TPOT (ms)", "SLO attainment"], strict=True):
        a.set_xlabel("arrivals (requests/s)")
        a.set_ylabel(lab)
    ax[2].legend(fontsize=6, loc="lower left")
    fig.suptitle("Llama 3 70B on 128 H100: layout x batching vs SLO (TTFT 2 s, TPOT 100 ms)")
    fig.tight_layout()
    t = d.pivot_table(index="config", columns="service.arrival.rate", sort=False,
                      values=["slo_attainment", "usd_per_M_served_tokens"])
    return fig, t


PLOTS = {"oversubscription": oversubscription, "ib-vs-roce": ib_vs_roce,
         "rail-only": rail_only, "inference-slo": inference_slo}


def figure(name: str, quick: bool = False, workers: int | None = None,
           out_dir: Path | None = None, results: Path | None = None,
           progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Run study ``name`` and save its figure: (rows, the figure's table, PNG path)."""
    suffix = "-quick" if quick else ""
    results = results if results is not None else ROOT / "results" / f"{name}{suffix}"
    df = run(name, quick=quick, workers=workers, results=results, progress=progress)
    fig, table = PLOTS[name](df)
    if out_dir is None:
        out_dir = HERE / "figures" if quick else ROOT / "docs"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"study-{name}{suffix}.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return df, table, png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", choices=STUDIES + ("all",))
    ap.add_argument("--quick", action="store_true", help="the study's reduced grid")
    ap.add_argument("--workers", type=int, help="processes (default: all cores)")
    ap.add_argument("-o", "--out", type=Path, help="figure directory")
    args = ap.parse_args(argv)
    for name in STUDIES if args.study == "all" else (args.study,):
        df, table, png = figure(name, quick=args.quick, workers=args.workers,
                                out_dir=args.out)
        with pd.option_context("display.width", 220, "display.max_columns", 40):
            print(f"## {name}: {len(df)} rows -> {png}")
            print(table.to_string(float_format=lambda x: f"{x:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
