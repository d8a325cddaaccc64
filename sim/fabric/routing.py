"""Routing on a fabric: ECMP with per-flow hashing, spraying, dimension order on tori.

Main assumption: the scale-out network is an up/down network (a Clos: every switch has a
``tier``, and shortest paths between two NICs climb to the lowest tier where their
ancestors meet, then descend). That holds for leaf-spine, fat-trees, rail-optimized,
rail-only and multi-plane designs, and lets routes be computed on demand from the
ancestor sets of switches (memoised, a few thousand switches) instead of an all-pairs
table, so it scales to 100K accelerators.

Between accelerators of one scale-up domain, traffic stays in the domain (NVSwitch, mesh
or torus). Between domains it leaves through the source's NIC; when the source NIC and the
destination NIC share no scale-out switch (rail-only designs, across rails), the source
first moves the data through its scale-up domain to the accelerator on the destination's
rail (NCCL's PXN), which is how rail-only clusters carry cross-rail traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

import numpy as np

from ..errors import RoutingError

if TYPE_CHECKING:
    from .fabric import Fabric, TorusDomain

__all__ = ["Route", "Router", "flow_hash"]

_M64 = (1 << 64) - 1


def flow_hash(*keys: int) -> int:
    """Deterministic 64-bit hash of integers; stable across runs and processes.

    Python's ``hash`` of strings changes per process, so ECMP must not use it. Each key is
    folded in with a multiply-xorshift step (the finaliser of splitmix64 at the end).
    """
    h = 0x9E3779B97F4A7C15
    for k in keys:
        h = ((h ^ k) * 0xBF58476D1CE4E5B9) & _M64
        h ^= h >> 31
    h = ((h ^ (h >> 30)) * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


@dataclass(frozen=True)
class Route:
    """The links a flow from ``src`` to ``dst`` uses.

    Attributes
    ----------
    src, dst : str
    links : ndarray of int64
        Link ids (see :class:`~sim.fabric.fabric.CompiledFabric`).
    weights : ndarray of float64
        Fraction of the flow's bytes on each link (1.0 on every link of a single path;
        fractions summing to 1 at each hop when the flow is sprayed).
    hops : int
        Links on a path.
    switch_hops : int
        Switches (packet, NVSwitch, OCS) on a path.
    latency_s : float
        Expected path latency: sum over links of weight x latency.
    nodes : tuple or None
        The node path, when the flow takes a single path.
    """

    src: str
    dst: str
    links: np.ndarray
    weights: np.ndarray
    hops: int
    switch_hops: int
    latency_s: float
    nodes: tuple | None


_SWITCH_KINDS = ("switch", "nvswitch", "ocs")


class Router:
    """Computes and caches routes of one fabric. Use :meth:`Fabric.route`."""

    def __init__(self, fabric: Fabric):
        self.f = fabric
        self.g = fabric.graph
        self.c = fabric.compile()
        self._idx = self.c.node_index
        self._anc: dict[str, frozenset] = {}
        self._up: dict[str, list[str]] = {}
        self._down: dict[str, list[str]] = {}
        self._cache: dict[tuple, Route] = {}
        self._torus_paths: dict[tuple, dict] = {}
        self._lat = self.c.latency_s.tolist()
        self._meet_cache: dict[tuple, tuple] = {}
        self._lcache: dict[tuple, tuple] = {}
        self._tiers: dict[str, int] = {}

    # ------------------------------------------------------------- up/down sets
    def _tier(self, n: str) -> int:
        t = self._tiers.get(n)
        if t is None:
            t = self._tiers[n] = self.g.nodes[n].get("tier", 0)
        return t

    def up(self, n: str) -> list[str]:
        """Scale-out neighbours one tier up (sorted, for deterministic hashing)."""
        r = self._up.get(n)
        if r is None:
            t = self._tier(n)
            r = sorted((v for v in self.g.successors(n)
                        if self.g.nodes[v].get("kind") == "switch" and self._tier(v) > t),
                       key=self._idx.__getitem__)
            self._up[n] = r
        return r

    def down(self, n: str) -> list[str]:
        r = self._down.get(n)
        if r is None:
            t = self._tier(n)
            r = sorted((v for v in self.g.successors(n)
                        if self.g.nodes[v].get("kind") in ("switch", "nic") and self._tier(v) < t),
                       key=self._idx.__getitem__)
            self._down[n] = r
        return r

    def ancestors(self, n: str) -> frozenset:
        """All switches reachable from ``n`` by only going up (memoised)."""
        r = self._anc.get(n)
        if r is None:
            s: set = set()
            for u in self.up(n):
                s.add(u)
                s |= self.ancestors(u)
            r = frozenset(s)
            self._anc[n] = r
        return r

    def connected(self, nic_a: str, nic_b: str) -> bool:
        """Whether two NICs share a scale-out switch above them."""
        return nic_a == nic_b or not self.ancestors(nic_a).isdisjoint(self.ancestors(nic_b))

    # --------------------------------------------------------------- entry point
    def links(self, src: str, dst: str, policy: str, flow: int) -> tuple:
        """(link ids, weights, latency) of a route as lists: the lean form kernels need
        (cached)."""
        key = (src, dst, policy, flow if policy == "ecmp" else 0)
        r = self._lcache.get(key)
        if r is None:
            hit = self._cache.get(key)
            if hit is not None:
                r = (hit.links.tolist(), hit.weights.tolist(), hit.latency_s)
            else:
                loads = self._route(src, dst, policy, flow, lean=True)
                lat = self._lat
                r = (list(loads), list(loads.values()),
                     sum(lat[i] * w for i, w in loads.items()))
            self._lcache[key] = r
        return r

    def route(self, src: str, dst: str, policy: str, flow: int) -> Route:
        key = (src, dst, policy, flow if policy == "ecmp" else 0)
        r = self._cache.get(key)
        if r is None:
            r = self._route(src, dst, policy, flow)
            self._cache[key] = r
        return r

    def _route(self, src: str, dst: str, policy: str, flow: int, lean: bool = False):
        f = self.f
        make = self._lean if lean else self._make
        if src == dst:
            return make(src, dst, {}, [src])
        da, db = f.domain_of.get(src), f.domain_of.get(dst)
        if da is None or db is None:
            raise RoutingError(f"{src if da is None else dst} belongs to no scale-up domain "
                               "(an OCS pod chip outside every slice?)")
        if da == db:
            return make(src, dst, {}, self.domain_path(src, dst))
        nics_a, nics_b = f.nics_of.get(src, []), f.nics_of.get(dst, [])
        if not nics_a or not nics_b:
            raise RoutingError(f"{src} and {dst} are in different scale-up domains and "
                               f"{'neither' if not nics_a and not nics_b else 'one'} has a "
                               f"scale-out NIC")
        # Same-rail NICs: leave through the source's NIC.
        pair = next(((a, b) for a in nics_a for b in nics_b if self.connected(a, b)), None)
        prefix: list[str] = [src]
        if pair is None:
            # PXN: hop inside the source domain to the accelerator whose NIC reaches dst.
            relay = None
            for peer in f.domains[da]:
                for a in f.nics_of.get(peer, []):
                    for b in nics_b:
                        if self.connected(a, b):
                            relay, pair = peer, (a, b)
                            break
                    if relay:
                        break
                if relay:
                    break
            if relay is None:
                raise RoutingError(f"no scale-out path from {src} to {dst}: no NIC of domain "
                                   f"{da} shares a switch with {dst}'s NIC")
            prefix = self.domain_path(src, relay)
        nic_a, nic_b = pair
        head = prefix + [nic_a]
        tail = [nic_b, dst]
        if policy == "ecmp":
            mid = self._ecmp(nic_a, nic_b, flow, self._idx[src], self._idx[dst])
            return make(src, dst, {}, head[:-1] + mid + tail[1:])
        loads = self.spray_split(nic_a, nic_b)
        return make(src, dst, loads, head, tail)

    # --------------------------------------------------------------- scale-out
    def _meet(self, a: str, b: str) -> set:
        """Lowest-tier switches above both a and b (a's up-frontier meeting b's ancestors)."""
        target = self.ancestors(b)
        frontier = {a}
        while frontier:
            nxt = set()
            for v in frontier:
                nxt.update(self.up(v))
            hit = nxt & target
            if hit:
                return hit
            frontier = nxt
        raise RoutingError(f"NICs {a} and {b} share no switch")

    def _candidates(self, a: str, b: str) -> tuple[set, dict]:
        """(meet set, up-candidates) from NIC a towards NIC b, cached per pair of switch
        sets right above a and b (which most NIC pairs share). Up-candidates are keyed by
        switch, and by the tuple of a NIC's uplinks for the first hop."""
        key = (tuple(self.up(a)), tuple(self.up(b)))
        hit = self._meet_cache.get(key)
        if hit is not None:
            return hit
        meet = self._meet(a, b)
        upc: dict = {}
        frontier = [a]
        while frontier:
            nxt = []
            for v in frontier:
                k = v if v != a else key[0]
                if v in meet or k in upc:
                    continue
                cands = [u for u in self.up(v)
                         if u in meet or not self.ancestors(u).isdisjoint(meet)]
                upc[k] = cands
                nxt.extend(cands)
            frontier = nxt
        out = (meet, upc)
        self._meet_cache[key] = out
        return out

    def _ecmp(self, a: str, b: str, flow: int, si: int, di: int) -> list[str]:
        meet, upc = self._candidates(a, b)
        anc_b = self.ancestors(b)
        idx = self._idx
        path = [a]
        v = a
        first = tuple(self.up(a))
        while v not in meet:
            cands = upc[first if v == a else v]
            v = cands[flow_hash(si, di, flow, idx[v]) % len(cands)] if len(cands) > 1 \
                else cands[0]
            path.append(v)
        below = self._below(b)
        g = self.g
        while v != b:
            # children of v towards b: b's ancestors one tier down that v links to
            cands = [w for w in below.get(self._tier(v) - 1, ()) if w in g.succ[v]]
            if not cands:
                cands = [w for w in self.down(v) if w == b or w in anc_b]
            v = cands[flow_hash(si, di, flow, idx[v]) % len(cands)] if len(cands) > 1 \
                else cands[0]
            path.append(v)
        return path

    def _below(self, b: str) -> dict:
        """NIC b and its ancestors grouped by tier, sorted by node index (cached)."""
        key = ("below", b)
        hit = self._meet_cache.get(key)
        if hit is None:
            hit = {}
            for n in sorted(self.ancestors(b) | {b}, key=self._idx.__getitem__):
                hit.setdefault(self._tier(n) if n != b else 0, []).append(n)
            self._meet_cache[key] = hit
        return hit

    def spray_split(self, a: str, b: str) -> dict:
        """How a sprayed flow from NIC ``a`` to NIC ``b`` spreads over the scale-out links.

        The flow splits evenly at every hop over the up/down (shortest) paths from ``a``
        to ``b``: up through every uplink that still leads to a switch where the two
        NICs' ancestors meet, then down towards ``b``.

        Parameters
        ----------
        a, b : str
            NIC node names that share a scale-out switch (see :meth:`connected`).

        Returns
        -------
        dict
            ``(u, v)`` graph edge -> fraction of the flow's bytes it carries (fractions
            sum to 1 over the edges of each hop), including the NIC legs out of ``a``
            and into ``b``. A new dict on every call.

        Raises
        ------
        RoutingError
            If the NICs share no switch.
        """
        # The split is the same for every NIC pair under the same switches: cache it by
        # those switch sets, with the two NICs as placeholders.
        key = ("spray", tuple(self.up(a)), tuple(self.up(b)))
        hit = self._meet_cache.get(key)
        if hit is None:
            raw = self._spray_uncached(a, b)
            hit = [((0 if u == a else u, 1 if v == b else v), w) for (u, v), w in raw.items()]
            self._meet_cache[key] = hit
        return {(a if u == 0 else u, b if v == 1 else v): w for (u, v), w in hit}

    def _spray_uncached(self, a: str, b: str) -> dict:
        meet = self._meet(a, b)
        anc_b = self.ancestors(b)
        loads: dict[tuple, float] = {}
        mass = {a: 1.0}
        top: dict[str, float] = {}
        while mass:
            nxt: dict[str, float] = {}
            for v, m in mass.items():
                if v in meet:
                    top[v] = top.get(v, 0.0) + m
                    continue
                cands = [u for u in self.up(v) if u in meet or not self.ancestors(u).isdisjoint(meet)]
                share = m / len(cands)
                for u in cands:
                    loads[(v, u)] = loads.get((v, u), 0.0) + share
                    nxt[u] = nxt.get(u, 0.0) + share
            mass = nxt
        mass = top
        while mass:
            nxt = {}
            for v, m in mass.items():
                if v == b:
                    continue
                cands = [w for w in self.down(v) if w == b or w in anc_b]
                share = m / len(cands)
                for w in cands:
                    loads[(v, w)] = loads.get((v, w), 0.0) + share
                    nxt[w] = nxt.get(w, 0.0) + share
            mass = nxt
        return loads

    # --------------------------------------------------------------- scale-up
    def domain_path(self, a: str, b: str) -> list[str]:
        """Node path between two accelerators of one scale-up domain."""
        f = self.f
        d = f.domain_of[a]
        if a == b:
            return [a]
        sw = f.domain_switch.get(d)
        if sw is not None:
            return [a, sw, b]
        if self.g.has_edge(a, b):
            return [a, b]
        t = f.torus.get(d)
        if t is None:
            raise RoutingError(f"{a} and {b} share domain {d} but no scale-up path")
        if t.twisted:
            return self._torus_shortest(d, a, b)
        return self._dimension_order(t, a, b)

    def _dimension_order(self, t: TorusDomain, a: str, b: str) -> list[str]:
        c, cb = t.coords[a], t.coords[b]
        chips = [a]
        for dim, size in enumerate(t.dims):
            delta = (cb[dim] - c[dim]) % size
            if delta == 0:
                continue
            step = 1 if delta <= size - delta else -1
            while c[dim] != cb[dim]:
                c = t.neighbor(c, dim, step)
                chips.append(t.grid[c])
        return t.expand(chips)

    def _torus_shortest(self, d: int, a: str, b: str) -> list[str]:
        """Shortest path on a twisted torus: BFS over coordinates (cached per source)."""
        t = self.f.torus[d]
        key = (d, a)
        pred = self._torus_paths.get(key)
        if pred is None:
            start = t.coords[a]
            pred = {start: None}
            frontier = [start]
            while frontier:
                nxt = []
                for c in frontier:
                    for dim, size in enumerate(t.dims):
                        if size == 1:
                            continue
                        for step in (1, -1):
                            n = t.neighbor(c, dim, step)
                            if n not in pred:
                                pred[n] = c
                                nxt.append(n)
                frontier = nxt
            self._torus_paths[key] = pred
        chips = []
        c = t.coords[b]
        while c is not None:
            chips.append(t.grid[c])
            c = pred[c]
        return t.expand(chips[::-1])

    # --------------------------------------------------------------- assembling
    def _lean(self, src: str, dst: str, spray: dict, head: list[str],
              tail: list[str] | None = None) -> dict:
        """Link id -> fraction of the flow, without hop counts (for kernels)."""
        ei = self.c.edge_index
        links: dict[int, float] = {}
        for seq in (head, tail or ()):
            for u, v in zip(seq, seq[1:], strict=False):
                k = ei[(u, v)]
                links[k] = links.get(k, 0.0) + 1.0
        for (u, v), w in spray.items():
            k = ei[(u, v)]
            links[k] = links.get(k, 0.0) + w
        return links

    def _make(self, src: str, dst: str, spray: dict, head: list[str],
              tail: list[str] | None = None) -> Route:
        """Build a Route from a node path (head), or head + sprayed middle + tail."""
        ei = self.c.edge_index
        kinds = self.g.nodes
        links: dict[int, float] = {}
        for u, v in zip(head, head[1:], strict=False):
            k = ei[(u, v)]
            links[k] = links.get(k, 0.0) + 1.0
        hops = len(head) - 1
        switch_hops = sum(1 for n in head[1:-1] if kinds[n].get("kind") in _SWITCH_KINDS)
        if tail is not None:
            for (u, v), w in spray.items():
                k = ei[(u, v)]
                links[k] = links.get(k, 0.0) + w
            # one representative path's length: up/down hops are equal on every path
            mid = self._ecmp(head[-1], tail[0], 0, 0, 0)
            hops += len(mid) - 1 + len(tail) - 1
            switch_hops += sum(1 for n in mid[1:-1] if kinds[n].get("kind") in _SWITCH_KINDS)
            for u, v in zip(tail, tail[1:], strict=False):
                k = ei[(u, v)]
                links[k] = links.get(k, 0.0) + 1.0
        ids = sorted(links)
        lat = self._lat
        latency = sum(lat[i] * links[i] for i in ids)
        return Route(src, dst, np.array(ids, dtype=np.int64),
                     np.array([links[i] for i in ids], dtype=np.float64), hops, switch_hops,
                     latency, tuple(head) if tail is None else None)


def torus_coords(dims: tuple[int, ...]):
    """All coordinates of a torus in row-major order (last dimension fastest)."""
    return product(*(range(d) for d in dims))
