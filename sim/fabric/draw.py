"""Drawing a fabric for people: tiers top to bottom, repeated units collapsed.

A 1,024-GPU fabric has thousands of nodes; drawn one by one it is a hairball. Here nodes
are grouped into *units*: switches by (tier, plane, pod), scale-up domains (servers, NVL72
racks, TPU cubes) by the pod of the leaves they attach to. Each unit is one box labelled
with what it holds; boxes of one tier form a row, and a row with many boxes shows the first
few and the last, with the count of those left out. Lines join units that share cables,
labelled with the cable count and technology, thicker for more capacity.

Main assumption: units of one row are alike (builders make them so), so a few stand for
all.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from ..units import format_si
from .fabric import Fabric

__all__ = ["collapse", "draw"]

_MAX_BOXES = 7


def _unit_of(f: Fabric) -> dict:
    """Node -> unit key (row, label-group)."""
    unit: dict = {}
    _switch_units(f, unit)
    _domain_units(f, unit)
    _leftover_units(f, unit)
    return unit


def _switch_units(f: Fabric, unit: dict) -> None:
    """Units of packet switches, by (model, tier, plane, pod, unit), and of OCS groups."""
    for n, d in f.graph.nodes(data=True):
        k = d.get("kind")
        if k == "switch":
            t = d.get("tier", 1)
            unit[n] = (10 - t, ("switch", d["model"], t, d.get("plane", 0),
                                d.get("pod") if t <= 2 else None,
                                d.get("unit") if t == 1 else None))
        elif k == "ocs":
            unit[n] = (8, ("ocs", d["model"], n.split(".")[0]))


def _domain_units(f: Fabric, unit: dict) -> None:
    """Units of scale-up domains, by model, size and the (pod, unit) of their leaves;
    the cubes of an OCS pod."""
    g = f.graph
    pod_of_domain: dict[int, object] = {}
    for nic, accs in f.accels_of_nic.items():
        leaves = [v for v in g.successors(nic) if g.nodes[v].get("kind") == "switch"]
        if leaves:
            dom = f.domain_of.get(accs[0])
            ld = g.nodes[leaves[0]]
            pod_of_domain.setdefault(dom, (ld.get("pod"), ld.get("unit")))
    for dom, members in enumerate(f.domains):
        key = (20, ("domain", f.domain_models[dom] if dom < len(f.domain_models) else None,
                    len(members), pod_of_domain.get(dom)))
        for a in members:
            unit[a] = key
    if f.ocs is not None:  # cubes are the units of an OCS pod
        for ci, chips in enumerate(f.ocs.cubes):
            for a in chips:
                unit[a] = (20, ("cube", ci))


def _leftover_units(f: Fabric, unit: dict) -> None:
    """NICs and NVSwitches join the unit of their neighbour; lone accelerators are chips."""
    g = f.graph
    for n, d in g.nodes(data=True):
        if n in unit:
            continue
        if d.get("kind") == "nic" and n in f.accels_of_nic:
            unit[n] = unit.get(f.accels_of_nic[n][0])
        elif d.get("kind") == "nvswitch":
            nb = next(iter(g.successors(n)))
            unit[n] = unit.get(nb)
        elif d.get("kind") == "accelerator":
            unit[n] = (20, ("chip",))


def collapse(f: Fabric) -> tuple[dict, dict]:
    """Units and the cables between them.

    Returns
    -------
    units : dict
        unit key -> {'row': int, 'count': Counter of node models, 'label': str}
    joins : dict
        (unit a, unit b) -> {'count': cables, 'capacity': bytes/s, 'tech': set}
    """
    g = f.graph
    unit = _unit_of(f)
    units: dict = defaultdict(lambda: {"row": 0, "count": Counter()})
    for n, d in g.nodes(data=True):
        u = unit.get(n)
        if u is None:
            continue
        units[u]["row"] = u[0]
        units[u]["count"][(d.get("kind"), d.get("model"))] += d.get("chips", 1)
    joins: dict = defaultdict(lambda: {"count": 0, "capacity": 0.0, "tech": set()})
    for a, b, d in g.edges(data=True):
        ua, ub = unit.get(a), unit.get(b)
        if ua is None or ub is None or ua == ub or ua[0] > ub[0]:
            continue  # one direction, across units only
        j = joins[(ua, ub)]
        j["count"] += d["count"]
        j["capacity"] += d["capacity"]
        j["tech"].add(d["tech"])
    for u, rec in units.items():
        kind = u[1][0]
        c = rec["count"]
        if kind in ("domain", "cube"):
            acc = sum(v for (k, _), v in c.items() if k == "accelerator")
            model = next((m for (k, m), _ in c.items() if k == "accelerator"), "")
            if kind == "domain" and u[1][1]:
                n_dom = acc // u[1][2]
                rec["label"] = f"{n_dom} x {u[1][1]}\n({acc} x {model})"
            else:
                rec["label"] = f"{acc} x {model}"
            rec["group"] = ("domain",) if kind == "domain" else ("cube",)
        elif kind == "switch":
            _, model, tier, plane, pod, su = u[1]
            name = {1: "leaf", 2: "spine", 3: "core"}.get(tier, f"tier {tier}")
            rec["label"] = f"{sum(c.values())} x {model}\n{name}" + \
                (f" pod {pod}" if pod and tier == 2 else "") + \
                (f" unit {su}" if su is not None else "") + \
                (f" plane {plane}" if plane else "")
            rec["group"] = ("switch", tier, plane)
        elif kind == "ocs":
            rec["label"] = f"{sum(c.values())} x {u[1][1]}\ndim {u[1][2][3:]}"
            rec["group"] = ("ocs",)
        else:
            rec["label"] = kind
            rec["group"] = (kind,)
    return dict(units), dict(joins)


def draw(f: Fabric, path: str, *, title: str | None = None, dpi: int = 120) -> str:
    """Draw the collapsed fabric to ``path`` (PNG, SVG or PDF by extension).

    Returns
    -------
    str
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units, joins = collapse(f)
    rows, row_keys, shown, hidden_count = _layout(units)
    fig_w = 12
    fig_h = 1.6 + 1.5 * len(row_keys)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    _draw_joins(ax, units, joins, shown)
    _draw_boxes(ax, units, shown)
    _draw_row_notes(ax, rows, row_keys, hidden_count)
    ax.set_title(title or f"{f.name}\n{f.n_accelerators:,} accelerators", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _layout(units: dict) -> tuple[dict, list, dict, dict]:
    """Units by row, the sorted row keys, the (x, y) of each unit shown, and the count of
    units left out of each crowded row."""
    rows: dict[int, list] = defaultdict(list)
    for u, rec in units.items():
        rows[rec["row"]].append(u)
    shown: dict = {}
    hidden_count: dict[int, int] = {}
    row_keys = sorted(rows)
    for ri, r in enumerate(row_keys):
        us = sorted(rows[r], key=lambda u: repr(u))
        if len(us) > _MAX_BOXES:
            keep = us[: _MAX_BOXES - 2] + [None] + us[-1:]
            hidden_count[r] = len(us) - (_MAX_BOXES - 1)
        else:
            keep = us
        width = len(keep)
        for i, u in enumerate(keep):
            if u is not None:
                shown[u] = ((i + 0.5) / width, 1 - (ri + 0.5) / len(row_keys))
    return rows, row_keys, shown, hidden_count


def _draw_joins(ax, units: dict, joins: dict, shown: dict) -> None:
    """Lines between shown units, thicker for more capacity; one label per pair of groups."""
    maxcap = max((j["capacity"] for j in joins.values()), default=1.0)
    drawn_labels = set()
    for (ua, ub), j in joins.items():
        if ua not in shown or ub not in shown:
            continue
        (x1, y1), (x2, y2) = shown[ua], shown[ub]
        lw = 0.5 + 3.0 * math.log1p(j["capacity"]) / math.log1p(maxcap)
        ax.plot([x1, x2], [y1, y2], color="#7a8ca3", lw=lw, alpha=0.55, zorder=1)
        lab_key = (units[ua]["group"], units[ub]["group"])
        if lab_key not in drawn_labels:
            drawn_labels.add(lab_key)
            ax.text((x1 + x2) / 2, (y1 + y2) / 2,
                    f"{j['count']} x {'/'.join(sorted(j['tech']))}\n"
                    f"{format_si(j['capacity'], 'bandwidth')}",
                    fontsize=7, ha="center", va="center", color="#2b3a4f",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.8}, zorder=3)


def _draw_boxes(ax, units: dict, shown: dict) -> None:
    """One labelled box per shown unit, coloured by kind."""
    colors = {"switch": "#cfe3f7", "ocs": "#f7e3cf", "domain": "#d9f2d0", "cube": "#d9f2d0"}
    for u, (x, y) in shown.items():
        rec = units[u]
        ax.text(x, y, rec["label"], ha="center", va="center", fontsize=8, zorder=4,
                bbox={"boxstyle": "round,pad=0.4", "fc": colors.get(u[1][0], "#eeeeee"),
                      "ec": "#4a5a70"})


def _draw_row_notes(ax, rows: dict, row_keys: list, hidden_count: dict) -> None:
    """Each row's unit count, and the count of units left out where a row is cut."""
    for ri, r in enumerate(row_keys):
        y = 1 - (ri + 0.5) / len(row_keys)
        n = len(rows[r])
        if r in hidden_count:
            x = (_MAX_BOXES - 2 + 0.5) / (_MAX_BOXES)
            ax.text(x, y, f"... {hidden_count[r]} more", ha="center", va="center", fontsize=8,
                    color="#4a5a70")
        ax.text(0.0, y + 0.5 / len(row_keys) - 0.02, f"{n} unit{'s' if n > 1 else ''}",
                fontsize=7, color="#888888", va="top")
