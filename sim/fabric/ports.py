"""The cables of a bundle as ECMP sees them: one port each.

A fabric edge with ``count`` parallel cables between two switches (or a NIC and its leaf)
is one link of the compiled fabric with the bundle's whole capacity. Spraying and adaptive
routing spread a flow over every cable, so the pooled link is right for them. Per-flow
ECMP is not: a switch hashes each flow onto one *port*, so a flow never runs faster than
one cable and two flows that hash onto the same cable share it even when the bundle's
other cables are idle. Here every cable of a scale-out bundle gets a *port link* id after
the compiled links (``n_edges + k``), with one cable's capacity; an ECMP flow that
crosses a bundle also loads the port its hash picks, so the max-min models see the
collisions a per-port hash makes, and a fabric with fewer, fatter bundles no longer looks
better than its cables are.

Main assumption: the port is chosen by the same stable flow hash as the path
(:func:`~sim.fabric.routing.flow_hash` of the endpoints, the flow and the link), uniformly
over the bundle's cables, as a switch's ECMP group over its member ports does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clos_routes import flow_hash_np
from .fabric import Fabric

__all__ = ["EcmpPorts", "ecmp_ports", "port_links"]


@dataclass(frozen=True)
class EcmpPorts:
    """Port links of a fabric's scale-out bundles.

    Attributes
    ----------
    n_edges : int
        Compiled links (ids below it are edges, ids from it ports).
    base : ndarray of int64, (n_edges,)
        First port id of each edge's bundle, -1 where the edge has no ports (one cable,
        or not a scale-out link).
    count : ndarray of int64, (n_edges,)
        Cables in each edge's bundle.
    parent : ndarray of int64, (n_ports,)
        The edge each port belongs to.
    """

    n_edges: int
    base: np.ndarray
    count: np.ndarray
    parent: np.ndarray

    @property
    def n_links(self) -> int:
        """Edges plus ports: the length of capacity and load arrays."""
        return self.n_edges + len(self.parent)


def ecmp_ports(f: Fabric) -> EcmpPorts:
    """The port links of ``f`` (cached on the fabric until it is invalidated)."""

    def make() -> EcmpPorts:
        c = f.compile()
        m = len(c.link_src)
        scale_out = np.array([f.catalog.links[t].kind == "scale-out"
                              if t in f.catalog.links else False for t in c.tech_names],
                             bool)
        cnt = c.count.astype(np.int64)
        has = scale_out[c.tech] & (cnt > 1) if m else np.zeros(0, bool)
        base = np.full(m, -1, np.int64)
        sizes = cnt[has]
        base[has] = m + np.concatenate(([0], np.cumsum(sizes)[:-1])) if len(sizes) else []
        parent = np.repeat(np.nonzero(has)[0], sizes).astype(np.int64)
        return EcmpPorts(m, base, cnt, parent)

    return f.derived("fabric.ecmp_ports", make)


def port_links(p: EcmpPorts, links: np.ndarray, si: np.ndarray, di: np.ndarray,
               flow: int | np.ndarray = 0) -> np.ndarray:
    """Port link of each (link, flow) entry, -1 where the link is not a bundle.

    Parameters
    ----------
    p : EcmpPorts
    links : int64 array
        Edge ids on ECMP paths (any shape).
    si, di : int64 arrays, broadcastable to ``links``
        The flow's endpoints (node indices), hashed with ``flow`` and the link.
    flow : int or array
    """
    links = np.asarray(links, np.int64)
    out = np.full(links.shape, -1, np.int64)
    ok = links >= 0
    ok[ok] = p.base[links[ok]] >= 0
    if not ok.any():
        return out
    lk = links[ok]
    s = np.broadcast_to(np.asarray(si, np.int64), links.shape)[ok]
    d = np.broadcast_to(np.asarray(di, np.int64), links.shape)[ok]
    fl = np.broadcast_to(np.asarray(flow, np.int64), links.shape)[ok]
    h = flow_hash_np(s, d, fl, lk + (1 << 40))  # a different draw than the path's
    out[ok] = p.base[lk] + (h % p.count[lk].astype(np.uint64)).astype(np.int64)
    return out
