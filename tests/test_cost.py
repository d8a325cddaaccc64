"""Bill of materials, cost and power: closed-form counts, invariants, published cross-checks,
bad input."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from sim import bill_of_materials, cost, load_topology
from sim.cli import main
from sim.cost import NETWORK, OPTICAL, load_assumptions, network_cost
from sim.errors import ConfigError
from sim.fabric.builders import rail_only, rail_optimized

TOPO = "topologies"


@pytest.fixture(scope="module")
def superpod():
    return load_topology(f"{TOPO}/dgx-h100-superpod-ib.yaml")


def _count(bom, category, item=None, tier=None):
    sel = bom[bom["category"] == category]
    if item is not None:
        sel = sel[sel["item"] == item]
    if tier is not None:
        sel = sel[sel["tier"] == tier]
    return int(sel["count"].sum())


def test_bom_counts_closed_form(superpod):
    """128 DGX H100, 4 units of 32 servers: 8 rail leaves per unit, 32 down / 32 up each,
    16 spines; every NIC-leaf and leaf-spine cable leaves the rack (optics at both ends,
    twin-port 800G modules serve two 400G ports)."""
    bom = bill_of_materials(superpod)
    assert _count(bom, "accelerators", "H100-SXM") == 1024
    assert _count(bom, "servers", "DGX-H100") == 128
    assert _count(bom, "servers", "scale-out NIC ports") == 1024
    assert _count(bom, "scale-out switches", "QM9700", "leaf") == 32
    assert _count(bom, "scale-out switches", "QM9700", "spine") == 16
    assert _count(bom, "scale-up switches") == 128 * 4
    cables = 1024 + 32 * 32  # NIC-leaf + leaf-spine
    assert _count(bom, "transceivers") == 2 * cables // 2
    assert _count(bom, "fibers") == cables
    # in-node parts are priced inside the server
    assert (bom.loc[bom["category"] == "scale-up switches", "unit_price_USD"] == 0).all()
    # every priced row names a source
    assert (bom["source"].str.len() > 10).all()


def test_cost_totals_are_sums(superpod):
    a = load_assumptions()
    bom = bill_of_materials(superpod)
    c = cost(superpod, None, a, bom=bom)
    body = c[c["category"] != "total"]
    hw = float((bom["count"] * bom["unit_price_USD"]).sum())
    fac = float(body.loc[body["category"] == "facility", "capex_USD"].iloc[0])
    assert c.attrs["capex_USD"] == pytest.approx(hw + fac)
    it = float((bom["count"] * bom["unit_power_W"]).sum())  # no results: accelerators at TDP
    assert c.attrs["it_power_W"] == pytest.approx(it)
    assert fac == pytest.approx(a.facility_usd_per_kw * it / 1e3)
    assert c.attrs["facility_power_W"] == pytest.approx(it * a.pue)
    # $/h = sum over categories of capex / (years x 8766 h) + energy at PUE
    per_h = sum(r.capex_USD / (r.amortization_years * 8766) for r in body.itertuples())
    energy = it * a.pue / 1e3 * a.electricity_usd_per_kwh
    assert c.attrs["usd_per_h"] == pytest.approx(per_h + energy)


def test_accelerator_power_follows_utilization(superpod):
    acc = superpod.catalog.accelerators["H100-SXM"]
    a = load_assumptions()

    def power(busy):
        r = {"training": SimpleNamespace(stages=pd.DataFrame({"compute": [busy * 2.0]}),
                                         step_time_s=2.0)}
        c = cost(superpod, r, a)
        return float(c.loc[c["category"] == "accelerators", "it_power_W"].iloc[0]) / 1024

    assert power(0.0) == pytest.approx(acc.idle_power_W)
    assert power(1.0) == pytest.approx(acc.tdp_W)
    assert power(0.5) == pytest.approx((acc.idle_power_W + acc.tdp_W) / 2)


def test_assumptions_override(tmp_path, superpod):
    p = tmp_path / "a.yaml"
    p.write_text("pue: 1.1\nprices: {H100-SXM: 20000 USD}\namortization_years: {default: 3}\n")
    a = load_assumptions(p)
    base = load_assumptions()
    assert a.pue == 1.1 and a.electricity_usd_per_kwh == base.electricity_usd_per_kwh
    c0 = cost(superpod, None, base)
    c1 = cost(superpod, None, a)
    d = c0.attrs["capex_USD"] - c1.attrs["capex_USD"]
    assert d == pytest.approx(1024 * 10000)
    assert a.years("transceivers") == 3 and a.years("accelerators") == base.years("accelerators")


@pytest.mark.parametrize("text, field", [
    ("pue: 0.5\n", "pue"),
    ("electricty_usd_per_kwh: 0.1\n", "electricty_usd_per_kwh"),
    ("prices: {H100-SXM: cheap}\n", "prices.H100-SXM"),
    ("amortization_years: {gpus: 3}\n", "amortization_years.gpus"),
])
def test_bad_assumptions_name_file_and_field(tmp_path, text, field):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_assumptions(p)
    assert "bad.yaml" in str(e.value) and field in str(e.value)


def test_cli_bad_assumptions_is_one_line(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("pue: 9\n")
    rc = main(["compare", f"{TOPO}/dgx-h100-superpod-ib.yaml", "--assumptions", str(p)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "bad.yaml" in err and "pue" in err


@pytest.mark.parametrize("servers", [256, 512])
def test_rail_only_savings_inside_paper_range(servers):
    """Wang et al. (arXiv 2307.12169): rail-only cuts network cost 38-77% and power 37-75%
    against a rail-optimized Clos. At 2,048-4,096 GPUs with 64-port switches the
    rail-optimized network needs a third tier; each rail-only rail is a 2-tier Clos."""
    kw = dict(node="DGX-H100", servers=servers, leaf="QM9700", spine="QM9700", link="ib-ndr")
    ro = rail_optimized(core="QM9700", units_per_pod=4, **kw)
    rl = rail_only(**kw)
    (c_ro, p_ro), (c_rl, p_rl) = network_cost(cost(ro)), network_cost(cost(rl))
    assert 0.38 <= 1 - c_rl / c_ro <= 0.77
    assert 0.37 <= 1 - p_rl / p_ro <= 0.75


@pytest.mark.xfail(strict=True, reason=(
    "measured: optics + OCS = 15.2% of hardware capex and 4.5% of IT power with the catalog's "
    "estimated prices (6,144 optical ICI ports on catalog 400G-class DR4 modules at "
    "~800 USD/port, 48 OCS at an estimated 50k USD, TPU v4 at a notional 8k USD); the paper's "
    "<5% / <3% needs Google's in-house optics and system cost, which are not public"))
def test_tpu_v4_ocs_optical_share():
    f = load_topology(f"{TOPO}/tpu-v4-pod-ocs.yaml")
    c = cost(f)
    oc, op = network_cost(c, OPTICAL)
    hw = c.attrs["capex_USD"] - float(c.loc[c["category"] == "facility", "capex_USD"].iloc[0])
    assert oc / hw < 0.05
    assert op / c.attrs["it_power_W"] < 0.03


def test_tpu_bom_counts():
    """64 cubes x 6 faces x 16 face chips = 6,144 optical ICI links, one transceiver each
    (the OCS end is passive), 48 OCS; ICI inside a cube is copper. Secondary reports of the
    TPU v4 pod give the same "1.5 optical transceivers per TPU" (6,144 / 4,096; e.g.
    nextbigfuture.com 2025-11, 'Highly Customized Optical Networking ... TPUs')."""
    f = load_topology(f"{TOPO}/tpu-v4-pod-ocs.yaml")
    bom = bill_of_materials(f)
    assert _count(bom, "optical circuit switches") == 48
    assert _count(bom, "fibers") == 6144
    t = bom[bom["category"] == "transceivers"]
    ports = sum(r.count * f.catalog.transceivers[r.item].ports for r in t.itertuples())
    assert ports == 6144
    # 4x4x4 mesh inside a cube: 3 x 4 x 4 x 3 links
    assert _count(bom, "copper cables") == 64 * 3 * 16 * 3


def test_network_categories_cover_network_rows(superpod):
    c = cost(superpod)
    cats = set(c["category"]) - {"total"}
    assert cats <= set(NETWORK) | {"accelerators", "servers", "facility", "scale-up switches"}


def test_compare_json_records(capsys):
    rc = main(["compare", f"{TOPO}/dgx-h100-superpod-ib.yaml",
               f"{TOPO}/dgx-h100-superpod-2to1.yaml", "--json"])
    assert rc == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 2
    a, b = recs
    # the 2:1 design drops 8 spines and their 512 cables
    assert a["switches"] - b["switches"] == 8
    assert a["transceivers"] - b["transceivers"] == 512
    assert b["capex_network_USD"] < a["capex_network_USD"]
    assert all(math.isfinite(r["usd_per_hour"]) for r in recs)


def test_html_report_parses_offline(tmp_path, capsys):
    """The report is self-contained: one comparison table (metric + one column per
    proposal) and figures embedded as PNG data URIs; report.md links PNGs beside it."""
    import base64
    from html.parser import HTMLParser

    out = tmp_path / "report"
    rc = main(["compare", f"{TOPO}/dgx-h100-superpod-ib.yaml",
               f"{TOPO}/dgx-h100-superpod-roce.yaml", "--workload", "workloads/llama3-8b-cp.yaml",
               "--service", "workloads/llama2-70b-serve.yaml", "--duration", "5s",
               "-o", str(out)])
    assert rc == 0
    assert "report:" in capsys.readouterr().out

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.imgs, self.cell, self.in_cell = [], [], None, False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.in_cell, self.cell = True, ""
            elif tag == "img":
                self.imgs.append(a["src"])

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.rows[-1].append(self.cell)
                self.in_cell = False

        def handle_data(self, data):
            if self.in_cell:
                self.cell += data

    p = P()
    p.feed((out / "index.html").read_text())
    assert all(len(r) == 3 for r in p.rows)
    labels = {r[0] for r in p.rows}
    for need in ("capex: total", "IT power", "training step time", "MFU", "TTFT p99",
                 "$ per M training tokens", "$ per M served tokens", "amortized cost $/h"):
        assert need in labels
    assert len(p.imgs) == 4
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for name in ("cost_breakdown", "step_breakdown", "perf_vs_cost", "link_utilization"):
        assert f"({name}.png)" in md and (out / f"{name}.png").exists()
    # the RoCE column differs from the IB baseline in network capex: shown as a difference
    row = next(r for r in p.rows if r[0] == "capex: network")
    assert "%" in row[2] and "%" not in row[1]


def test_pareto_front():
    import numpy as np

    from sim.report import _pareto

    x = np.array([1.0, 2.0, 3.0, 2.5])
    y = np.array([1.0, 3.0, 2.0, 3.0])
    assert _pareto(x, y) == [0, 1]  # 2 is dominated by 1; 3 ties 1 on y at higher cost


@pytest.mark.parametrize("args, needle", [
    (["--workload", "nope.yaml"], "nope.yaml"),
    (["--service", "workloads/gpt3-175b-1k.yaml"], "gpt3-175b-1k.yaml"),
    (["--duration", "5x"], "--duration"),
])
def test_compare_bad_input_one_line(args, needle, capsys):
    rc = main(["compare", f"{TOPO}/dgx-h100-superpod-ib.yaml", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and "\n" not in err and "Traceback" not in err


def test_compare_reports_infeasible_proposal_and_keeps_others(capsys):
    """GB200 NVL72 x 14 has 1,008 GPUs: a 1,024-GPU job cannot run; the row says why."""
    rc = main(["compare", f"{TOPO}/gb200-nvl72-xdr.yaml", "--workload",
               "workloads/gpt3-175b-1k.yaml", "--json"])
    assert rc == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert "1008" in rec["training_error"] and "1024" in rec["training_error"]
    assert rec["capex_total_USD"] > 0
