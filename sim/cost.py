"""Bill of materials, capital cost, power and cost per hour / per token of a proposal.

Everything is counted from the fabric graph and priced from the catalog:

* accelerators (catalog ``price``, ``tdp``, ``idle_power``);
* servers / racks / cubes: the catalog node's ``price`` and ``host_power`` (CPUs, NICs, fans,
  and an in-node NVSwitch baseboard: the node entries price the node *without* its
  accelerators, so NICs and in-node switch chips are listed at 0 USD to avoid counting them
  twice);
* packet switches by tier and model, optical circuit switches;
* transceivers by reach and copper cables (:mod:`sim.fabric.summary` picks the cheapest
  catalog part of the link's rate that reaches: copper inside a rack, optics beyond);
* fibres: one catalog fibre patch cable per 400G lane group of every optical cable.

Power of an accelerator is ``idle + (tdp - idle) x busy`` where ``busy`` is its simulated
compute-busy fraction (training: compute time over step time, averaged over pipeline
stages; serving: the fraction of time a replica runs an iteration); without results it is
the TDP. Switches, optics and hosts draw their catalog power. Facility power is IT power
times the PUE.

Cost per hour = capex amortized linearly over its category's years + facility energy at the
electricity price. A job that uses part of the cluster is charged its share of accelerators.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import ConfigError
from .fabric import Fabric
from .fabric.summary import REACH_M, cables, transceivers
from .spec import load_yaml

__all__ = ["Assumptions", "load_assumptions", "bill_of_materials", "check_parts", "cost",
           "network_cost", "DEFAULT_ASSUMPTIONS"]

DEFAULT_ASSUMPTIONS = Path(__file__).resolve().parent.parent / "topologies" / "economics" / \
    "default.yaml"
CATEGORIES = ("accelerators", "servers", "scale-up switches", "scale-out switches",
              "optical circuit switches", "transceivers", "fibers", "copper cables",
              "facility")
NETWORK = ("scale-out switches", "optical circuit switches", "transceivers", "fibers",
           "copper cables")
OPTICAL = ("optical circuit switches", "transceivers", "fibers")


@dataclass(frozen=True)
class Assumptions:
    """Economic assumptions (``topologies/economics/default.yaml``; a user file overrides)."""

    electricity_usd_per_kwh: float
    pue: float
    amortization_years: dict
    facility_usd_per_kw: float
    power_model: str  # "utilization" | "tdp"
    prices: dict = field(default_factory=dict)  # catalog id -> USD
    powers: dict = field(default_factory=dict)  # catalog id -> W
    file: str | None = None

    def years(self, category: str) -> float:
        return self.amortization_years.get(category, self.amortization_years["default"])


def load_assumptions(path: str | Path | None = None) -> Assumptions:
    """The bundled defaults, with the fields of ``path`` (if given) over them.

    Raises
    ------
    ConfigError
        Naming the file and field of an unknown key or a bad value.
    """
    base = read_assumptions(load_yaml(DEFAULT_ASSUMPTIONS), None)
    if path is None:
        return base
    return read_assumptions(load_yaml(path), base)


def read_assumptions(doc, base: Assumptions | None) -> Assumptions:
    """Assumptions from a parsed file (a :class:`~sim.spec.Node`), over ``base``."""
    known = {"electricity_usd_per_kwh", "pue", "amortization_years",
             "facility_capex_usd_per_kw", "power_model",
             "prices", "powers", "source"}
    for k in doc.keys():
        if k not in known:
            raise doc.error(k, f"unknown field {k!r} (known: {', '.join(sorted(known))})")
    doc.raw("source", None)
    b = base
    elec = doc.number("electricity_usd_per_kwh", None, low=0.0, high=10.0)
    pue = doc.number("pue", None, low=1.0, high=5.0)
    years = dict(b.amortization_years) if b else {}
    if "amortization_years" in doc:
        ay = doc.sub("amortization_years")
        for k in ay.keys():
            if k != "default" and k not in CATEGORIES:
                raise ay.error(k, f"unknown category; expected default or one of "
                                  f"{', '.join(CATEGORIES)}")
            years[k] = ay.number(k, low=0.1, high=50)
    if "default" not in years:
        raise doc.error("amortization_years", "needs a `default` number of years")
    fac = doc.number("facility_capex_usd_per_kw", None, low=0.0, high=1e6)
    pm = doc.string("power_model", None, choices=("utilization", "tdp"))
    prices = dict(b.prices) if b else {}
    powers = dict(b.powers) if b else {}
    for key, out, kind in (("prices", prices, "money"), ("powers", powers, "power")):
        if key in doc:
            sub = doc.sub(key)
            for item in sub.keys():
                out[item] = sub.quantity(item, kind, allow_zero=True)
    doc.done()
    if b is None and (elec is None or pue is None or fac is None or pm is None):
        raise doc.error(None, "the default assumptions need electricity_usd_per_kwh, pue, "
                              "facility_capex_usd_per_kw and power_model")
    return Assumptions(
        electricity_usd_per_kwh=elec if elec is not None else b.electricity_usd_per_kwh,
        pue=pue if pue is not None else b.pue,
        amortization_years=years,
        facility_usd_per_kw=fac if fac is not None else b.facility_usd_per_kw,
        power_model=pm or b.power_model, prices=prices, powers=powers, file=doc.file)


# ------------------------------------------------------------------------ bill of materials
def _row(category, item, tier, count, price, power, prov, note=""):
    src = getattr(prov, "source", "") if prov is not None else note
    est = sorted(getattr(prov, "estimate", ()) or ()) if prov is not None else []
    return {"category": category, "item": item, "tier": tier, "count": int(count),
            "unit_price_USD": float(price), "unit_power_W": float(power),
            "estimate": ", ".join(est), "source": src if not note else f"{note}; {src}"}


def node_counts(f: Fabric) -> Counter:
    """Catalog node models (servers, racks, cubes) in the fabric and how many of each."""
    c: Counter = Counter(m for m in f.domain_models if m)
    if f.meta.get("builder") == "ocs_pod":
        c[f.meta["node"]] += int(f.meta["cubes"])
    return c


def bill_of_materials(f: Fabric) -> pd.DataFrame:
    """Every part of the proposal, counted from its graph, with catalog price and power.

    Returns
    -------
    pandas.DataFrame
        Columns ``category, item, tier, count, unit_price_USD, unit_power_W, estimate,
        source``; ``unit_power_W`` of an accelerator is its TDP (``cost`` applies
        utilization). ``estimate`` lists the catalog fields marked as estimates.

    Raises
    ------
    ConfigError
        If a link needs a transceiver or cable that the catalog does not have.
    """
    nodes = node_counts(f)
    rows = _compute_rows(f, nodes)
    rows += _switch_rows(f, nodes)
    rows += _optics_rows(f)
    rows += _fiber_rows(f)
    df = pd.DataFrame(rows, columns=["category", "item", "tier", "count", "unit_price_USD",
                                     "unit_power_W", "estimate", "source"])
    return df


def _compute_rows(f: Fabric, nodes: Counter) -> list[dict]:
    """Rows of the accelerators, the servers that hold them and their NIC ports."""
    cat = f.catalog
    g = f.graph
    rows = []
    for model, n in sorted(Counter(g.nodes[a]["model"] for a in f.accelerators).items()):
        a = cat.accelerators[model]
        rows.append(_row("accelerators", model, "", n, a.price_USD, a.tdp_W, a.provenance))
    for model, n in sorted(nodes.items()):
        nm = cat.nodes.get(model)
        if nm is None:
            continue
        rows.append(_row("servers", model, "", n, nm.price_USD, nm.host_power_W,
                         nm.provenance, "price and power without the accelerators"))
    n_nics = len(f.accels_of_nic)
    if n_nics:
        rows.append(_row("servers", "scale-out NIC ports", "", n_nics, 0, 0, None,
                         "included in the server price and host power"))
    return rows


def _switch_rows(f: Fabric, nodes: Counter) -> list[dict]:
    """Rows of the scale-up, scale-out and optical circuit switches, by model and tier."""
    cat = f.catalog
    rows = []
    sw: Counter = Counter()
    for _n, d in f.graph.nodes(data=True):
        k = d.get("kind")
        if k in ("switch", "nvswitch", "ocs"):
            tier = "ocs" if k == "ocs" else {0: "scale-up", 1: "leaf", 2: "spine",
                                             3: "core"}.get(d.get("tier", 0), "?")
            sw[(k, d["model"], tier)] += d.get("chips", 1)
    for (k, model, tier), n in sorted(sw.items()):
        s = cat.switches[model]
        if k == "nvswitch":
            in_node = any(cat.nodes[m].scale_up_switch == model for m in nodes
                          if m in cat.nodes)
            if in_node:
                rows.append(_row("scale-up switches", model, tier, n, 0, 0, s.provenance,
                                 "chips on the server's baseboard: in the server price and "
                                 "host power"))
                continue
            rows.append(_row("scale-up switches", model, tier, n, s.price_USD, s.power_W,
                             s.provenance))
        elif k == "ocs":
            rows.append(_row("optical circuit switches", model, tier, n, s.price_USD,
                             s.power_W, s.provenance))
        else:
            rows.append(_row("scale-out switches", model, tier, n, s.price_USD, s.power_W,
                             s.provenance))
    return rows


def _optics_rows(f: Fabric) -> list[dict]:
    """Rows of the transceivers and copper cables; ConfigError if the catalog lacks one."""
    cat = f.catalog
    rows = []
    modules, copper = transceivers(f)
    for category, counts, parts, what in (("transceivers", modules, cat.transceivers,
                                            "transceiver"),
                                           ("copper cables", copper, cat.cables, "cable")):
        for item, n in sorted(counts.items()):
            part = parts.get(item)
            if part is None:
                raise ConfigError(f"no catalog {what} for {item}: add one to "
                                  "topologies/catalog/optics.yaml", field=category)
            rows.append(_row(category, item, "", n, part.price_USD, part.power_W,
                             part.provenance))
    return rows


def _fiber_rows(f: Fabric) -> list[dict]:
    """Rows of the fibres of optical cables, the cheapest catalog fibre of each reach."""
    cat = f.catalog
    fibers: Counter = Counter()
    fiber_parts = [c for c in cat.cables.values() if c.medium == "fiber"]
    for _u, _v, d in cables(f):
        if d["reach"] in ("board", "rack"):
            continue
        speed = d["capacity"] / d["count"]
        need = REACH_M[d["reach"]]
        ok = [c for c in fiber_parts if c.reach_m >= need]  # the fibre of the optics' class
        p = min(ok, key=lambda c: (c.reach_m, c.price_USD, c.id)) if ok else None
        if p is None:
            raise ConfigError(f"no catalog fibre reaches {d['reach']} "
                              f"({REACH_M[d['reach']]:g} m)", field="cables")
        fibers[p.id] += d["count"] * math.ceil(speed / p.speed_Bps - 1e-9)
    rows = []
    for item, n in sorted(fibers.items()):
        c = cat.cables[item]
        rows.append(_row("fibers", item, "", n, c.price_USD, c.power_W, c.provenance))
    return rows


# ------------------------------------------------------------------------------- cost
def _busy(results: dict | None) -> float | None:
    """Compute-busy fraction of the accelerators from simulation results, if any."""
    if not results:
        return None
    tr = results.get("training")
    if tr is not None:
        st = tr.stages
        return float(min(1.0, (st["compute"] / tr.step_time_s).mean()))
    sv = results.get("service")
    if sv is not None:
        return float(sv.summary["busy_fraction"])
    return None


def cost(f: Fabric, results: dict | None = None, assumptions: Assumptions | None = None,
         bom: pd.DataFrame | None = None, busy: float | None = None) -> pd.DataFrame:
    """Capex, IT power and cost per hour of each category of the bill of materials.

    Parameters
    ----------
    results : dict, optional
        ``{"training": TrainingResult}`` or ``{"service": ServiceResult}``: the simulated
        busy fraction sets accelerator power (with ``power_model: utilization``).
    busy : float, optional
        The accelerators' busy fraction itself (a fleet's share-weighted mix); it takes
        precedence over ``results``.
    assumptions : Assumptions, optional
        Defaults from ``topologies/economics/default.yaml``.

    Returns
    -------
    pandas.DataFrame
        One row per category (and ``total``): ``capex_USD, it_power_W, amortization_years,
        capex_usd_per_h, energy_usd_per_h, usd_per_h``. ``df.attrs`` holds the totals,
        ``busy`` (the accelerator busy fraction used) and ``facility_power_W``.
    """
    a = assumptions or load_assumptions()
    bom = bill_of_materials(f) if bom is None else bom
    if a.power_model != "utilization":
        busy = None
    elif busy is None:
        busy = _busy(results)
    cat = f.catalog
    capex: Counter = Counter()
    power: Counter = Counter()
    for r in bom.itertuples():
        price = a.prices.get(r.item, r.unit_price_USD)
        pw = a.powers.get(r.item, r.unit_power_W)
        if r.category == "accelerators" and busy is not None:
            acc = cat.accelerators[r.item]
            idle = a.powers.get(f"{r.item}.idle", acc.idle_power_W)
            pw = idle + (pw - idle) * busy
        capex[r.category] += price * r.count
        power[r.category] += pw * r.count
    it = sum(power.values())
    capex["facility"] = a.facility_usd_per_kw * it / 1e3
    kwh_price = a.electricity_usd_per_kwh
    rows = []
    for c in CATEGORIES:
        if capex[c] == 0 and power[c] == 0:
            continue
        yrs = a.years(c)
        per_h = capex[c] / (yrs * 365.25 * 24)
        energy = power[c] * a.pue / 1e3 * kwh_price
        rows.append({"category": c, "capex_USD": capex[c], "it_power_W": power[c],
                     "amortization_years": yrs, "capex_usd_per_h": per_h,
                     "energy_usd_per_h": energy, "usd_per_h": per_h + energy})
    df = pd.DataFrame(rows)
    tot = df[["capex_USD", "it_power_W", "capex_usd_per_h", "energy_usd_per_h",
              "usd_per_h"]].sum()
    df = pd.concat([df, pd.DataFrame([{"category": "total", **tot.to_dict(),
                                       "amortization_years": float("nan")}])],
                   ignore_index=True)
    df.attrs.update({"capex_USD": float(tot["capex_USD"]), "it_power_W": float(it),
                     "facility_power_W": float(it * a.pue), "usd_per_h": float(tot["usd_per_h"]),
                     "busy": busy, "accelerators": f.n_accelerators})
    return df


def network_cost(df: pd.DataFrame, categories=NETWORK) -> tuple[float, float]:
    """(capex USD, IT power W) of the given categories of a :func:`cost` table."""
    sel = df[df["category"].isin(categories)]
    return float(sel["capex_USD"].sum()), float(sel["it_power_W"].sum())


def check_parts(a: Assumptions, boms: list[pd.DataFrame]) -> None:
    """Every part ``a`` prices or powers is in at least one of the bills of materials (a
    misspelt id would otherwise change nothing, silently).

    Raises
    ------
    ConfigError
        Naming the assumptions file, the field (``prices.X``) and the parts there are.
    """
    items = sorted({i for b in boms for i in b["item"]})
    for key, table in (("prices", a.prices), ("powers", a.powers)):
        for part in table:
            name = part[:-len(".idle")] if key == "powers" and part.endswith(".idle") \
                else part
            if name not in items:
                raise ConfigError(f"no part of the proposals is called {name!r} (parts: "
                                  f"{', '.join(items)})", file=a.file, field=f"{key}.{part}")
