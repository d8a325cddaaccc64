"""What a proposal is made of and what it can carry: the numbers of ``fabsim topo show``.

Counts come straight from the graph (switches by model and tier, cables by technology,
transceivers and cables by reach). Bandwidth figures are per accelerator and per direction:

* injection: the scale-up bandwidth an accelerator has into its domain, and the
  scale-out bandwidth of its NIC(s) (shared by the accelerators of a NIC);
* oversubscription of a tier: downlink over uplink capacity of that tier's switches;
* bisection: for a Clos, the smallest per-accelerator capacity of any tier's uplinks
  (a balanced cut between the halves of the cluster crosses every tier below the top),
  which max-flow confirms on small instances (tests); for a torus, the capacity crossing
  the cut that halves its longest dimension, over half the chips;
* diameter: the most switches (and links) on a route between two accelerators, over a
  sample of destinations from the first accelerator (fabrics here are symmetric).

Main assumption: cables inside a rack are copper, cables that leave the rack are optical
with a transceiver at each end (one end for fibres into a passive OCS), choosing the
cheapest catalog module whose per-port speed matches and whose reach suffices.
"""

from __future__ import annotations

import math
from collections import Counter

from ..units import format_si
from .fabric import Fabric

__all__ = ["summarize", "format_summary", "bisection_per_accelerator", "tier_oversubscription",
           "cables", "transceivers", "REACH_M"]

_TIER_NAMES = {0: "scale-up", 1: "leaf", 2: "spine", 3: "core"}
#: Length a cable must span at each reach (m): what a copper cable or an optical module
#: must reach to be chosen for a link of that reach (``board`` links have no cable).
REACH_M = {"rack": 2.0, "row": 50.0, "hall": 500.0}


def cables(f: Fabric):
    """Each full-duplex cable bundle of ``f`` once.

    Parameters
    ----------
    f : Fabric

    Yields
    ------
    u, v : str
        The bundle's end nodes, ``u`` first in the graph's node order.
    data : dict
        The edge attributes of ``u -> v`` (``capacity`` in bytes/s per direction, ``count``
        cables, ``tech``, ``reach``, ``latency`` in s).
    """
    g = f.graph
    idx = {n: i for i, n in enumerate(g.nodes)}
    for u, v, d in g.edges(data=True):
        if idx[u] < idx[v]:
            yield u, v, d


def tier_oversubscription(f: Fabric) -> dict[str, float]:
    """Downlink / uplink capacity of each packet-switch tier that has uplinks."""
    g = f.graph
    down: Counter = Counter()
    up: Counter = Counter()
    for u, v, d in g.edges(data=True):
        nu, nv = g.nodes[u], g.nodes[v]
        if nv.get("kind") != "switch":
            continue
        tu = nu.get("tier", 0) if nu.get("kind") == "switch" else 0
        tv = nv["tier"]
        if tu < tv:  # u -> v goes up into v: a downlink of v, an uplink of u
            down[tv] += d["capacity"]
            if nu.get("kind") == "switch":
                up[tu] += d["capacity"]
    return {_TIER_NAMES.get(t, f"tier{t}"): down[t] / up[t] for t in sorted(down) if up[t] > 0}


def bisection_per_accelerator(f: Fabric) -> dict[str, float]:
    """Bisection bandwidth per accelerator (bytes/s, per direction) of each network part.

    Returns a dict with ``scale_out`` (Clos) and/or ``torus`` entries.
    """
    g = f.graph
    out: dict[str, float] = {}
    n = f.n_accelerators
    if f.accels_of_nic:
        up_cap: Counter = Counter()
        for u, v, d in g.edges(data=True):
            nu, nv = g.nodes[u], g.nodes[v]
            if nv.get("kind") == "switch" and nu.get("kind") in ("nic", "switch") and \
                    nv["tier"] > nu.get("tier", 0):
                up_cap[nu.get("tier", 0)] += d["capacity"]
        top = max((d.get("tier", 0) for _, d in g.nodes(data=True) if d.get("kind") == "switch"),
                  default=0)
        vals = [up_cap[t] for t in up_cap if t < top]
        out["scale_out"] = (min(vals) if vals else 0.0) / n
    if f.torus:
        best = math.inf
        for dom, t in f.torus.items():
            members = f.domains[dom]
            ld = t.long_dim
            half = t.dims[ld] // 2
            if t.dims[ld] < 2:
                continue
            side = {a: (t.coords[a][ld] < half) for a in members}
            via = {(h[0], h[1]): h[2] for h in t.hops.values()}  # circuits through an OCS
            cross = 0.0
            for a in members:
                if not side[a]:
                    continue
                for _, b, d in g.out_edges(a, data=True):
                    tgt = b if b in side else via.get((a, b))
                    if tgt is not None and not side[tgt]:
                        cross += d["capacity"]
            best = min(best, cross / (len(members) / 2))
        if best < math.inf:
            out["torus"] = best
    return out


def _diameter(f: Fabric, sample: int = 512) -> tuple[int, int]:
    accs = f.accelerators
    if len(accs) < 2:
        return 0, 0
    src = accs[0]
    step = max(1, len(accs) // sample)
    dests = set(accs[::step]) | {accs[-1]} | {d[-1] for d in f.domains[:: max(1, len(f.domains)
                                                                            // sample)]}
    sw, ln = 0, 0
    for d in dests:
        if d == src or f.domain_of.get(d) is None:
            continue
        r = f.route(src, d, policy="ecmp")
        sw, ln = max(sw, r.switch_hops), max(ln, r.hops)
    return sw, ln


def transceivers(f: Fabric) -> tuple[Counter, Counter]:
    """Optical modules and copper cables the fabric's cables need, by catalog part.

    Cables at ``rack`` reach are copper (the cheapest catalog copper cable of the link's
    per-cable speed reaching :data:`REACH_M` ``["rack"]``); longer ones are optical with a
    module at each end (one end for a fibre into a passive OCS), the cheapest module of
    the lowest standard rate at or above the per-cable speed that reaches
    :data:`REACH_M` of the cable's reach. ``board`` links need neither.

    Parameters
    ----------
    f : Fabric

    Returns
    -------
    modules : Counter
        Optical modules by catalog transceiver id (a multi-port module counts once for its
        ports), or a descriptive key where the catalog has no suitable module.
    copper : Counter
        Copper cables by catalog cable id, or a descriptive key where none fits.
    """
    cat = f.catalog
    g = f.graph
    ends: Counter = Counter()
    copper: Counter = Counter()
    for u, v, d in cables(f):
        reach = d["reach"]
        if reach == "board":
            continue
        speed = d["capacity"] / d["count"]
        if reach == "rack":
            cab = _pick([c for c in cat.cables.values() if c.medium != "fiber"], speed,
                        REACH_M["rack"], lambda c: c.speed_Bps)
            copper[cab.id if cab else f"copper {format_si(speed, 'bandwidth')}"] += d["count"]
            continue
        n_ends = 2 - sum(1 for x in (u, v) if g.nodes[x].get("kind") == "ocs")
        ends[(speed, reach)] += n_ends * d["count"]
    modules: Counter = Counter()
    for (speed, reach), n in ends.items():
        t = _pick(cat.transceivers.values(), speed, REACH_M[reach],
                  lambda t: t.speed_Bps / t.ports)
        if t is None:
            modules[f"optics {format_si(speed, 'bandwidth')} {reach} (no catalog module)"] += n
        else:
            modules[t.id] += math.ceil(n / t.ports)
    return modules, copper


def _pick(items, speed: float, reach_m: float, per_port):
    """The cheapest part of the lowest standard rate at or above ``speed`` that reaches
    ``reach_m`` (a 360 Gb/s ICI link rides on a 400G module), or None."""
    ok = [x for x in items if per_port(x) >= speed * (1 - 1e-6) and x.reach_m >= reach_m]
    if not ok:
        return None
    rate = min(per_port(x) for x in ok)
    ok = [x for x in ok if per_port(x) <= rate * (1 + 1e-6)]
    ports = getattr(ok[0], "ports", None)
    if ports is None:
        return min(ok, key=lambda x: (x.price_USD, x.reach_m, x.id))
    return min(ok, key=lambda x: (x.price_USD / x.ports, x.reach_m, x.id))


def summarize(f: Fabric) -> dict:
    """All figures of ``fabsim topo show`` as one JSON-ready dict (SI units)."""
    g = f.graph
    accs = Counter(g.nodes[a]["model"] for a in f.accelerators)
    switches: Counter = Counter()
    for _n, d in g.nodes(data=True):
        k = d.get("kind")
        if k in ("switch", "nvswitch", "ocs"):
            tier = "ocs" if k == "ocs" else _TIER_NAMES.get(d.get("tier", 0), "?")
            switches[f"{d['model']} ({tier})"] += d.get("chips", 1)
    links: Counter = Counter()
    for _, _, d in cables(f):
        links[d["tech"]] += d["count"]
    # injection per accelerator
    su: list[float] = []
    so: list[float] = []
    for a in f.accelerators:
        su.append(sum(d["capacity"] for _, b, d in g.out_edges(a, data=True)
                      if g.nodes[b].get("kind") in ("nvswitch", "accelerator", "ocs")))
        bw = 0.0
        for nic in f.nics_of.get(a, []):
            bw += sum(d["capacity"] for _, b, d in g.out_edges(nic, data=True)
                      if g.nodes[b].get("kind") == "switch") / len(f.accels_of_nic[nic])
        so.append(bw)
    modules, copper = transceivers(f)
    sw_hops, link_hops = _diameter(f)
    domains = Counter()
    for dom in f.domains:
        domains[len(dom)] += 1
    out = {
        "name": f.name,
        "builder": f.meta.get("builder"),
        "routing": f.routing,
        "accelerators": f.n_accelerators,
        "accelerator_models": dict(accs),
        "scale_up_domains": len(f.domains),
        "scale_up_domain_sizes": {str(k): v for k, v in sorted(domains.items())},
        "nodes": g.number_of_nodes(),
        "directed_links": g.number_of_edges(),
        "switches": dict(sorted(switches.items())),
        "cables_by_tech": dict(sorted(links.items())),
        "transceivers": dict(sorted(modules.items())),
        "copper_cables": dict(sorted(copper.items())),
        "injection_scale_up_Bps": max(su) if su else 0.0,
        "injection_scale_out_Bps": max(so) if so else 0.0,
        "bisection_per_accelerator_Bps": bisection_per_accelerator(f),
        "oversubscription": tier_oversubscription(f),
        "diameter_switch_hops": sw_hops,
        "diameter_links": link_hops,
    }
    if f.ocs is not None:
        out["ocs_slices"] = {s.name: "x".join(map(str, s.shape)) + (" twisted" if s.twisted
                                                                      else "")
                             for s in f.ocs.slices.values()}
        out["ocs_reconfigure_time_s"] = f.ocs.reconfigure_time_s
    return out


def format_summary(s: dict) -> str:
    """The summary as an aligned two-column text table."""
    bw = lambda x: format_si(x, "bandwidth")  # noqa: E731
    rows: list[tuple[str, str]] = [
        ("proposal", s["name"]),
        ("builder / routing", f"{s['builder']} / {s['routing']}"),
        ("accelerators", ", ".join(f"{n:,} x {m}" for m, n in s["accelerator_models"].items())),
        ("scale-up domains", ", ".join(f"{n:,} x {k}" for k, n in
                                       s["scale_up_domain_sizes"].items()) + " accelerators"),
    ]
    for k, n in s["switches"].items():
        rows.append(("switches", f"{n:,} x {k}"))
    for k, n in s["cables_by_tech"].items():
        rows.append(("links by technology", f"{n:,} x {k}"))
    for k, n in s["transceivers"].items():
        rows.append(("transceivers", f"{n:,} x {k}"))
    for k, n in s["copper_cables"].items():
        rows.append(("copper cables", f"{n:,} x {k}"))
    rows.append(("injection / accel, scale-up", bw(s["injection_scale_up_Bps"])))
    rows.append(("injection / accel, scale-out", bw(s["injection_scale_out_Bps"])))
    for k, v in s["bisection_per_accelerator_Bps"].items():
        total = v * s["accelerators"] / 2
        rows.append((f"bisection / accel, {k.replace('_', '-')}",
                     f"{bw(v)} (total {format_si(total, 'bandwidth')})"))
    for k, v in s["oversubscription"].items():
        rows.append((f"oversubscription, {k}", f"{v:.3g}:1"))
    rows.append(("diameter", f"{s['diameter_switch_hops']} switch hops, "
                             f"{s['diameter_links']} links"))
    if "ocs_slices" in s:
        rows.append(("OCS slices", ", ".join(f"{k}={v}" for k, v in s["ocs_slices"].items())
                     or "none"))
        rows.append(("OCS reconfiguration", format_si(s["ocs_reconfigure_time_s"], "time")
                     if s["ocs_reconfigure_time_s"] else "0 s"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
