"""Collective time on a fabric: compile an algorithm's phases into link loads, then time
them with the collective library's protocols (NCCL LL, LL128, Simple; NVLS; SHARP).

Compiling (:func:`compile_plan`) routes every flow of every phase once and sums the bytes
per link with the ``@njit`` :func:`~sim.collectives.kernels.link_loads` kernel, *per byte
of message size*: loads scale linearly with the size, so a sweep from 1 KiB to 16 GiB
reuses one compiled plan and costs arithmetic only. Plans are cached on the fabric
(:meth:`~sim.fabric.fabric.Fabric.derived`) until it is invalidated.

Timing one phase with protocol pi (:func:`phase_times`)::

    t = steps x per-step latency + n x U / (bandwidth_factor(pi) x channels(n)/C x chunk_eff(n))

* U is the phase's bottleneck: max over links of (bytes per byte of n) / effective
  capacity (line rate x the link's protocol efficiency, i.e. what NCCL kernels reach);
* per-step latency: NCCL's per-hop latency for the protocol (NVLink or network hop), or
  the route's own latency where that is larger (long multi-switch paths); a pipelined
  phase mixes intra- and inter-domain hops in proportion, an exchange step waits for its
  slowest pair;
* channels(n): NCCL drops channels while ``n < channels x threads x threshold``;
* chunk_eff(n) = c / (c + tau x B_ch): a per-chunk synchronisation cost tau for the Simple
  protocol, with chunk c from NCCL's chunking rules and B_ch the per-channel rate.

The library picks, like NCCL's tuner, the (algorithm, protocol) with the least time.
Constants live in ``topologies/catalog/nccl.yaml`` with their sources.

Main assumption: ranks run the collective alone (contention with other traffic is the flow
network model's job, see :mod:`sim.network`), and every rank holds the same bytes except
for uneven all-to-all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InfeasibleError
from ..fabric.fabric import Fabric
from ..network.models import Transfer, effective_capacity
from .algorithms import OPS, PhaseSpec, bus_factor, phases
from .kernels import link_loads

__all__ = ["CompiledPhase", "Plan", "compile_plan", "compile_phase", "link_capacity",
           "collective_time", "CollectiveResult", "AUTO_ORDER"]

# What ``auto`` chooses from: the algorithms NCCL/RCCL implement (ring, tree, NVLS, SHARP
# via CollNet/NVLS-tree), torus rings for ICI domains, direct for all-to-all and send/recv.
# Halving-doubling and the two-level hierarchical scheme run only when asked for by name.
AUTO_ORDER = ("ring", "tree", "nvls", "sharp", "torus", "direct")


@dataclass
class CompiledPhase:
    """A phase's link loads per byte of message size, and its latency structure."""

    name: str
    links: np.ndarray
    unit: np.ndarray
    steps: int
    pipelined: bool
    inter_frac: float
    path_intra_s: float
    path_inter_s: float
    unit_time_s: float  # max_l unit_l / capacity_l: seconds per byte of n at full rate
    kind: str = "flows"  # flows | nvls | sharp
    cost: np.ndarray | None = None  # capacity per byte on each link (1 / efficiency)

    def transfer(self, nbytes: float, latency_s: float = 0.0, tag: str = "",
                 group=None) -> Transfer:
        """This phase moving ``nbytes`` (bytes = unit x nbytes) as one network transfer."""
        return Transfer(self.links, self.unit * nbytes, latency_s, tag or self.name, group,
                        self.cost)


@dataclass
class Plan:
    """An algorithm compiled for one op, rank list and routing policy on one fabric."""

    op: str
    algorithm: str
    ranks: tuple
    policy: str
    phases: list[CompiledPhase]
    absolute: bool = False  # uneven all-to-all: loads are bytes, not bytes per byte of n
    meta: dict = field(default_factory=dict)

    @property
    def p(self) -> int:
        return len(self.ranks)

    def transfers(self, nbytes: float, protocol_times: list[tuple[float, float]] | None = None,
                  tag: str = "") -> list[Transfer]:
        """Transfers for the network models, one per phase (bytes = unit x n).

        ``protocol_times`` (latency, bandwidth-time) per phase, from :func:`phase_times`,
        set each transfer's latency; the bandwidth part is left to the network model,
        which shares capacity with concurrent traffic.
        """
        scale = 1.0 if self.absolute else float(nbytes)
        out = []
        for i, ph in enumerate(self.phases):
            lat = protocol_times[i][0] if protocol_times else 0.0
            out.append(ph.transfer(scale, lat, tag or f"{self.op}:{ph.name}"))
        return out


# ------------------------------------------------------------------ compiling
def _route_arrays(f: Fabric, ranks: tuple, src: np.ndarray, dst: np.ndarray, policy: str):
    """CSR routes and per-flow latency for flows src[k] -> dst[k] (rank indices).

    Under ECMP with ``f.ecmp_flows = q > 1`` (NCCL posting to q queue pairs that the
    switches hash apart, Meta's E-ECMP) a flow between domains is q sub-flows of 1/q of
    its bytes, each hashed on its own; its latency is their mean.
    """
    q = int(getattr(f, "ecmp_flows", 1)) if policy == "ecmp" else 1
    if q <= 1:
        return _route_arrays_one(f, ranks, src, dst, policy, 0)
    parts = [_route_arrays_one(f, ranks, src, dst, policy, j) for j in range(q)]
    indptr0, _, _, lat0, inter, pre = parts[0]
    cnts = np.stack([np.diff(p[0]) for p in parts])  # [q, n]
    counts = np.where(inter, cnts.sum(axis=0), cnts[0])
    indptr = np.zeros(len(src) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    links = np.empty(indptr[-1], np.int64)
    weights = np.empty(indptr[-1], np.float64)
    offset = indptr[:-1].copy()
    for j, (ip, lk, w, _, _, _) in enumerate(parts):
        use = inter if j else np.ones(len(src), bool)
        rows = np.nonzero(use)[0]
        if not len(rows):
            continue
        n_j = cnts[j][rows]
        src_pos = _segments(ip[rows], n_j)
        pos = _segments(offset[rows], n_j)
        links[pos] = lk[src_pos]
        share = np.where(inter[rows], 1.0 / q, 1.0)
        weights[pos] = w[src_pos] * np.repeat(share, n_j)
        offset[rows] += n_j
    lat = np.where(inter, np.mean([p[3] for p in parts], axis=0), lat0)
    return indptr, links, weights, lat, inter, pre


def _segments(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Positions starts[i] .. starts[i] + lens[i] - 1 of every segment, concatenated."""
    return np.repeat(starts - np.cumsum(np.concatenate(([0], lens[:-1]))), lens) + \
        np.arange(int(lens.sum()))


def _route_arrays_one(f: Fabric, ranks: tuple, src: np.ndarray, dst: np.ndarray,
                      policy: str, flow: int):
    """CSR routes and per-flow latency for flows src[k] -> dst[k], ECMP flow ``flow``.

    Three paths, fastest first: flows inside one NVSwitch domain (GPU uplink + downlink),
    ECMP flows on a regular Clos (:class:`~sim.fabric.clos_routes.ClosIndex`, numpy, the
    same routes as the router), and the rest one by one through the cached router (PXN,
    spraying, tori, irregular fabrics).
    """
    c = f.compile()
    n = len(src)
    names = ranks
    node, dom, up, down, nic = _rank_endpoints(f, names)
    counts = np.zeros(n, np.int64)
    same = (dom[src] == dom[dst]) & (up[src] >= 0)
    counts[same] = 2
    # --- vectorised ECMP on a regular Clos
    vec = np.zeros(n, bool)
    ecmp = _ecmp_paths(f, policy, src, dst, same, dom, node, nic, flow)
    if ecmp is not None:
        cand, ecmp_links = ecmp[1], _ecmp_links(c, ecmp, src, dst, node, flow)
        vec[cand] = True
        counts[cand] = (ecmp_links >= 0).sum(axis=1)  # acc->nic, path, nic->acc, ports
    # --- spraying on a regular Clos: flows under the same pair of leaves share one split
    spray = _spray_paths(f, policy, names, src, dst, same, dom, nic)
    pre = None
    if spray is not None:
        pre = spray[1]
        vec[pre[0]] = True
        counts[pre[0]] = 4  # accelerator -> NIC -> leaf ... leaf -> NIC -> accelerator
    # --- one at a time
    others = np.nonzero(~same & ~vec)[0]
    o_links, o_w, o_lat = _router_paths(f, names, src, dst, others, policy, counts, flow)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    links = np.empty(indptr[-1], np.int64)
    weights = np.ones(indptr[-1], np.float64)
    lat = np.zeros(n)
    idx = np.nonzero(same)[0]
    links[indptr[idx]] = up[src[idx]]
    links[indptr[idx] + 1] = down[dst[idx]]
    lat[idx] = c.latency_s[up[src[idx]]] + c.latency_s[down[dst[idx]]]
    if pre is not None:
        _fill_spray(c, spray, src, dst, node, nic, indptr, links, lat)
    elif vec.any():
        _fill_ecmp(c, ecmp[1], ecmp_links, indptr, links, lat)
    if len(others):
        starts = indptr[others]
        lens = counts[others]
        pos = np.repeat(starts - np.cumsum(np.concatenate(([0], lens[:-1]))), lens) + \
            np.arange(lens.sum())
        links[pos] = np.array(o_links, dtype=np.int64)
        weights[pos] = np.array(o_w, dtype=np.float64)
        lat[others] = o_lat
    inter = dom[src] != dom[dst]
    return indptr, links, weights, lat, inter, pre


def _rank_endpoints(f: Fabric, names: tuple):
    """Per rank: node index, domain, NVSwitch uplink and downlink ids, first NIC's index."""
    c = f.compile()
    ei = c.edge_index
    node = np.array([c.node_index[r] for r in names], np.int64)
    dom = np.array([f.domain_of[r] for r in names])
    up = np.full(len(names), -1, np.int64)
    down = np.full(len(names), -1, np.int64)
    nic = np.full(len(names), -1, np.int64)
    for i, r in enumerate(names):
        sw = f.domain_switch.get(dom[i])
        if sw is not None:
            up[i] = ei[(r, sw)]
            down[i] = ei[(sw, r)]
        ns = f.nics_of.get(r)
        if ns:
            nic[i] = c.node_index[ns[0]]
    return node, dom, up, down, nic


def _ecmp_paths(f: Fabric, policy: str, src, dst, same, dom, node, nic, flow: int = 0):
    """Vectorised ECMP NIC-to-NIC paths on a regular Clos: (index, flows, path, length),
    or None when the policy is not ECMP or the fabric is not such a Clos."""
    ix = None
    if policy == "ecmp" and (~same).any():
        from ..fabric.clos_routes import ClosIndex

        ix = ClosIndex.of(f)
    if ix is None:
        return None
    cand = np.nonzero(~same & (dom[src] != dom[dst]) & (nic[src] >= 0) &
                      (nic[dst] >= 0))[0]
    if not len(cand):
        return None
    path, length, ok = ix.ecmp(nic[src[cand]], nic[dst[cand]], node[src[cand]],
                               node[dst[cand]], flow)
    cand, path, length = cand[ok], path[ok], length[ok]
    return ix, cand, path, length


def _spray_paths(f: Fabric, policy: str, names, src, dst, same, dom, nic):
    """Sprayed flows on a regular Clos: (index, (flows, group of each, splits), middle
    latency), or None when the policy is ECMP or no flow can be sprayed this way."""
    if not (policy != "ecmp" and (~same).any()):
        return None
    from ..fabric.clos_routes import ClosIndex

    ix_s = ClosIndex.of(f)
    if ix_s is None:
        return None
    cand = np.nonzero(~same & (dom[src] != dom[dst]) & (nic[src] >= 0) &
                      (nic[dst] >= 0))[0]
    la, lb = ix_s.nic_leaf[nic[src[cand]]], ix_s.nic_leaf[nic[dst[cand]]]
    cand = cand[(la >= 0) & (lb >= 0)]
    if not len(cand):
        return None
    pre, mid_lat, cand = _spray_loads(f, ix_s, names, src, dst, nic, cand)
    if not len(cand):
        return None
    return ix_s, (cand,) + pre, mid_lat


def _router_paths(f: Fabric, names, src, dst, others, policy: str, counts, flow: int = 0):
    """Route ``others`` one at a time (one flow per pair); sets their link ``counts``.
    An ECMP flow also loads the port of each cable bundle it crosses (sim.fabric.ports)."""
    from ..fabric.ports import ecmp_ports, port_links

    router = f.router
    ports = ecmp_ports(f) if policy == "ecmp" else None
    idx = f.compile().node_index
    o_links: list = []
    o_w: list = []
    o_lat = np.empty(len(others))
    for j, k in enumerate(others.tolist()):
        a, b = names[src[k]], names[dst[k]]
        lk, w, lt = router.links(a, b, policy, flow)
        if ports is not None and lk:
            pl = port_links(ports, np.asarray(lk, np.int64), idx[a], idx[b], flow)
            has = pl >= 0
            if has.any():
                lk = list(lk) + pl[has].tolist()
                w = list(w) + np.asarray(w, np.float64)[has].tolist()
        counts[k] = len(lk)
        o_links.extend(lk)
        o_w.extend(w)
        o_lat[j] = lt
    return o_links, o_w, o_lat


def _fill_spray(c, spray, src, dst, node, nic, indptr, links, lat) -> None:
    """Write the per-flow NIC legs of sprayed flows into the CSR arrays, with latency."""
    ix_s, pre, mid_lat = spray
    rows = pre[0]
    na, nb = nic[src[rows]], nic[dst[rows]]
    legs = [ix_s.edges(node[src[rows]], na), ix_s.edges(na, ix_s.nic_leaf[na]),
            ix_s.edges(ix_s.nic_leaf[nb], nb), ix_s.edges(nb, node[dst[rows]])]
    lat[rows] = mid_lat
    for col, lk in enumerate(legs):
        links[indptr[rows] + col] = lk
        lat[rows] += c.latency_s[lk]


def _ecmp_links(c, ecmp, src, dst, node, flow: int = 0) -> np.ndarray:
    """Link ids of vectorised ECMP paths, one row per flow: the path's links, then the
    port each of its cable bundles hashes the flow onto (sim.fabric.ports); -1 pads."""
    from ..fabric.ports import ecmp_ports, port_links

    ix, cand, path, length = ecmp
    # accelerator, scale-out path (nic ... nic), accelerator
    full = np.full((len(cand), path.shape[1] + 2), -1, np.int64)
    full[:, 0] = node[src[cand]]
    full[:, 1:-1] = path
    full[np.arange(len(cand)), length + 1] = node[dst[cand]]
    edges = np.full((len(cand), full.shape[1] - 1), -1, np.int64)
    for col in range(full.shape[1] - 1):
        has = col < length + 1
        if has.any():
            edges[has, col] = ix.edges(full[has, col], full[has, col + 1])
    ports = port_links(ecmp_ports(ix.f), edges, full[:, :1], full[np.arange(len(cand)),
                                                                  length + 1][:, None], flow)
    return np.concatenate([edges, ports], axis=1)


def _fill_ecmp(c, cand, ecmp_links, indptr, links, lat) -> None:
    """Write vectorised ECMP links (path, then ports) into the CSR arrays, packed to the
    left of each flow's slots, with the path's latency (ports add none)."""
    ok = ecmp_links >= 0
    pos = indptr[cand][:, None] + np.cumsum(ok, axis=1) - 1
    links[pos[ok]] = ecmp_links[ok]
    n = c.n_links
    lat_of = np.where((ecmp_links >= 0) & (ecmp_links < n),
                      c.latency_s[np.clip(ecmp_links, 0, n - 1)], 0.0)
    lat[cand] += lat_of.sum(axis=1)


def _spray_loads(f: Fabric, ix, names, src, dst, nic, cand):
    """Sprayed flows NIC to NIC on a regular Clos, grouped by (source leaf, destination
    leaf): every flow of a group splits the same way between the two leaves.

    Returns ((group of each flow, [(links, weights) of each group's leaf-to-leaf split]),
    middle latency of each flow, the flows handled: those whose leaves share a switch).
    """
    router = f.router
    c = f.compile()
    la = ix.nic_leaf[nic[src[cand]]]
    lb = ix.nic_leaf[nic[dst[cand]]]
    uniq, first, inv = np.unique(la * ix.n + lb, return_index=True, return_inverse=True)
    # leaf pairs that share no switch (rail-only, across rails) need the PXN relay: the
    # one-at-a-time router handles those flows
    linked = np.array([router.connected(c.node_names[nic[src[cand[j]]]],
                                        c.node_names[nic[dst[cand[j]]]])
                       for j in first.tolist()], bool)
    if not linked.all():
        keep = linked[inv]
        cand = cand[keep]
        if not len(cand):
            return None, None, cand
        return _spray_loads(f, ix, names, src, dst, nic, cand)
    pats = []
    mid = np.empty(len(uniq))
    for g_, j in enumerate(first.tolist()):
        k = cand[j]
        a_nic, b_nic = c.node_names[nic[src[k]]], c.node_names[nic[dst[k]]]
        loads = {e: w for e, w in router.spray_split(a_nic, b_nic).items()
                 if e[0] != a_nic and e[1] != b_nic}  # the NIC legs are per flow
        lk = np.array([c.edge_index[e] for e in loads], np.int64)
        w = np.array(list(loads.values()), np.float64)
        pats.append((lk, w))
        mid[g_] = float(np.dot(c.latency_s[lk], w)) if len(lk) else 0.0
    return (inv, pats), mid[inv], cand


def compile_phase(f: Fabric, ranks: tuple, ph: PhaseSpec, policy: str, cap: np.ndarray
                  ) -> CompiledPhase:
    """Route one phase's flows and sum their bytes per link, per byte of message size.

    Parameters
    ----------
    f : Fabric
    ranks : tuple of str
        Accelerator names; the phase's ``src``/``dst`` index into it.
    ph : PhaseSpec
        The phase, from :func:`~sim.collectives.algorithms.phases` or built by hand (a
        pipeline hand-off, a KV-cache transfer).
    policy : {'ecmp', 'spray', 'adaptive'}
        Scale-out routing policy.
    cap : ndarray of float64
        Effective capacity of every link (bytes/s), as :func:`link_capacity` gives.

    Returns
    -------
    CompiledPhase
        Loads on the links the phase uses (bytes per byte of n, or bytes for an absolute
        phase), its latency structure and its time per byte at full rate (s/B).
    """
    n_links = len(cap)  # compiled links, then bundle ports (sim.fabric.ports)
    loads, path_intra, path_inter, inter_share = _flow_loads(f, ranks, ph, policy)
    kind = "flows"
    eff = np.ones(n_links)  # in-network operations run below line rate
    if ph.direct_links:
        kind, path_intra, path_inter = _direct_loads(f, ph, loads, eff, path_intra,
                                                     path_inter)
    if ph.p2p:
        r = _p2p_ratio(f)
        eff[:len(r)] = np.minimum(eff[:len(r)], r)
    nz = np.nonzero(loads)[0]
    unit = loads[nz]
    unit_time = float((unit / (cap[nz] * eff[nz])).max()) if len(nz) else 0.0
    frac = ph.inter_frac if ph.inter_frac is not None else inter_share
    cost = 1.0 / eff[nz] if (eff[nz] < 1.0).any() else None
    return CompiledPhase(ph.name, nz.astype(np.int64), unit, ph.steps, ph.pipelined, frac,
                         path_intra, path_inter, unit_time, kind, cost)


def _flow_loads(f: Fabric, ranks: tuple, ph: PhaseSpec, policy: str
                ) -> tuple[np.ndarray, float, float, float]:
    """Per-link loads of a phase's routed flows, the slowest intra- and inter-domain
    logical hop's latency (s) and the share of hops that leave the domain."""
    n_links = len(link_capacity(f))  # compiled links, then bundle ports
    loads = np.zeros(n_links)
    path_intra = path_inter = 0.0
    inter_share = 0.0
    if len(ph.src):
        indptr, links, weights, lat, inter, pre = _route_arrays(f, ranks, ph.src, ph.dst,
                                                                 policy)
        loads = link_loads(np.ascontiguousarray(indptr, np.int64),
                           np.ascontiguousarray(links, np.int64),
                           np.ascontiguousarray(weights, np.float64),
                           np.ascontiguousarray(ph.unit, np.float64), int(n_links))
        if pre is not None:  # sprayed leaf-to-leaf splits, once per group of flows
            rows, inv, pats = pre
            totals = np.bincount(inv, weights=ph.unit[rows], minlength=len(pats))
            for (lk, w), tot in zip(pats, totals.tolist(), strict=True):
                np.add.at(loads, lk, w * tot)
        # a logical hop's latency is the sum of its legs (PXN relay + network leg)
        hop_lat = np.bincount(ph.hop - ph.hop.min(), weights=lat)
        hop_inter = np.bincount(ph.hop - ph.hop.min(), weights=inter.astype(float)) > 0
        if (~hop_inter).any():
            path_intra = float(hop_lat[~hop_inter].max())
        if hop_inter.any():
            path_inter = float(hop_lat[hop_inter].max())
        inter_share = float(hop_inter.mean())
    return loads, path_intra, path_inter, inter_share


def _direct_loads(f: Fabric, ph: PhaseSpec, loads: np.ndarray, eff: np.ndarray,
                  path_intra: float, path_inter: float) -> tuple[str, float, float]:
    """Add a phase's direct link loads (in-network reduction) to ``loads`` and their
    efficiency to ``eff``; returns the phase kind and the updated hop latencies (s)."""
    c = f.compile()
    ei = c.edge_index
    lk = np.array([u if v is None else ei[(u, v)] for u, v, _, _ in ph.direct_links],
                  np.int64)  # each entry names a link id or a node pair
    b = np.array([x[2] for x in ph.direct_links])
    e = np.array([x[3] for x in ph.direct_links])
    np.add.at(loads, lk, b)
    np.minimum.at(eff, lk, e)
    kind = "nvls" if ph.name.startswith("NVLS") and not ph.inter else \
        "nvlstree" if ph.name.startswith("NVLS") else "sharp"
    from_switch = _packet_switch_mask(f)[c.link_src[lk]]
    lat_d = c.latency_s[lk]
    if ph.inter and from_switch.any():
        path_inter = max(path_inter, float(lat_d[from_switch].max()))
    rest = ~from_switch if ph.inter else np.ones(len(lk), bool)
    if rest.any():
        path_intra = max(path_intra, float(lat_d[rest].max()))
    return kind, path_intra, path_inter


def _as_ranks(f: Fabric, ranks) -> tuple:
    if isinstance(ranks, (int, np.integer)):
        if ranks < 2 or ranks > f.n_accelerators:
            raise InfeasibleError(f"{ranks} ranks requested; fabric {f.name!r} has "
                                  f"{f.n_accelerators} accelerators")
        return tuple(f.accelerators[:int(ranks)])
    ranks = tuple(ranks)
    missing = [r for r in ranks if r not in f.domain_of]
    if missing:
        raise InfeasibleError(f"ranks not accelerators of {f.name!r} (or outside every "
                              f"slice): {', '.join(map(str, missing[:3]))}")
    if len(set(ranks)) != len(ranks):
        raise InfeasibleError("ranks repeat an accelerator")
    return ranks


def compile_plan(f: Fabric, op: str, ranks, algorithm: str, *, policy: str | None = None,
                 matrix=None) -> Plan:
    """Compile ``algorithm`` for ``op`` over ``ranks`` (cached on the fabric until
    :meth:`~sim.fabric.fabric.Fabric.invalidate`; an uneven ``matrix`` is not cached).

    Parameters
    ----------
    f : Fabric
    op : str
        One of :data:`~sim.collectives.algorithms.OPS`.
    ranks : int or sequence of str
        A count (the first accelerators in locality order) or accelerator names in rank
        order.
    algorithm : str
    policy : str, optional
        Scale-out routing policy (the fabric's default if omitted).
    matrix : array (p, p), optional
        Uneven all-to-all: bytes from rank i to rank j (absolute, not per byte).

    Returns
    -------
    Plan
    """
    ranks = _as_ranks(f, ranks)
    policy = policy or f.routing
    cache = _plan_cache(f)
    key = (op, algorithm, ranks, policy) if matrix is None else None
    if key is not None and key in cache:
        return cache[key]
    specs = phases(f, op, list(ranks), algorithm, matrix=matrix)
    cap = link_capacity(f)
    plan = Plan(op, algorithm, ranks, policy,
                [compile_phase(f, ranks, s, policy, cap) for s in specs],
                absolute=matrix is not None)
    if key is not None:
        cache[key] = plan
    return plan


def _plan_cache(f: Fabric) -> dict:
    """(op, algorithm, ranks, policy) -> Plan, on the fabric until it is invalidated."""
    return f.derived("collectives.plans", dict)


def _packet_switch_mask(f: Fabric) -> np.ndarray:
    """Boolean per node index: is it a packet switch (cached on the fabric)."""
    g = f.graph

    def make():
        c = f.compile()
        return np.array([g.nodes[x].get("kind") == "switch" for x in c.node_names])

    return f.derived("collectives.packet_switch_mask", make)


def link_capacity(f: Fabric) -> np.ndarray:
    """Effective capacity of every link of ``f`` (cached on the fabric).

    Parameters
    ----------
    f : Fabric

    Returns
    -------
    ndarray of float64
        Per link id, line rate times the protocol efficiency of its technology (bytes/s),
        as :func:`sim.network.models.effective_capacity` computes it. The array is shared:
        do not modify it. It is recomputed after :meth:`Fabric.invalidate`.
    """
    return f.derived("collectives.link_capacity", lambda: effective_capacity(f))


def _p2p_ratio(f: Fabric) -> np.ndarray:
    """Per link: p2p_efficiency / protocol_efficiency of its technology (1 where the
    catalog gives no p2p figure), the extra derating of many-peer send/recv phases."""
    links = f.catalog.links

    def make():
        c = f.compile()
        r = np.array([links[t].p2p_efficiency / links[t].protocol_efficiency
                      if t in links and links[t].p2p_efficiency is not None else 1.0
                      for t in c.tech_names])
        return r[c.tech]

    return f.derived("collectives.p2p_ratio", make)


def lower_bound(f: Fabric, specs: list[PhaseSpec], ranks: tuple, nbytes: float, cat) -> float:
    """A time no protocol can beat for these phases, without routing: protocol hop
    latencies, and each rank's outgoing bytes over its links' total effective capacity."""
    c = f.compile()
    out_cap = np.bincount(c.link_src, weights=link_capacity(f)[:len(c.link_src)],
                          minlength=len(c.node_names))
    rank_cap = out_cap[[c.node_index[r] for r in ranks]]
    pos = {r: i for i, r in enumerate(ranks)}
    fastest = max(pr.bandwidth_factor for pr in cat.protocols.values())
    hop_nv = min(pr.hop_latency_nvlink_s for pr in cat.protocols.values())
    hop_net = min(pr.hop_latency_net_s for pr in cat.protocols.values())
    t = 0.0
    for ph in specs:
        egress = np.zeros(len(ranks))
        if len(ph.src):
            np.add.at(egress, ph.src, ph.unit)
        for u, v, b, e in ph.direct_links:
            if v is not None and u in pos:
                egress[pos[u]] += b / e
        ok = rank_cap > 0
        bw = float((egress[ok] / rank_cap[ok]).max()) / fastest if ok.any() else 0.0
        frac = ph.inter_frac if ph.inter_frac is not None else (1.0 if ph.inter else 0.0)
        lat = ph.steps * ((1 - frac) * hop_nv + frac * hop_net) if ph.pipelined else 0.0
        t += lat + nbytes * bw
    return t


# ------------------------------------------------------------------ timing
def _injection(f: Fabric, ranks: tuple) -> float:
    """Achievable scale-up bandwidth per direction of the first rank (bytes/s)."""
    acc = f.catalog.accelerators[f.graph.nodes[ranks[0]]["model"]]
    eff = f.catalog.links[acc.scale_up_link].protocol_efficiency
    return acc.scale_up_bandwidth_Bps * eff


def _channels(n: float, proto, lib, p: int, ring: bool) -> int:
    thr = proto.thread_threshold_B * (p if ring and proto.id == "LL" else 1)
    return int(max(1, min(lib.max_channels, math.floor(n / (proto.threads * thr)))))


def _nvls_chunk(n: float, channels: int, lib, p: int) -> float:
    """NCCL's NVLS chunk (enqueue.cc calcCollChunking): smaller for smaller messages."""
    ops = channels * p
    c = lib.nvls_max_chunk_B
    if n < 2 * ops * c:
        return 16 * 1024.0
    if n < 8 * ops * c:
        return 32 * 1024.0
    if n < 64 * ops * c:
        return 64 * 1024.0
    return c


def phase_times(f: Fabric, plan: Plan, nbytes: float, protocol: str) -> list[tuple[float, float]]:
    """(latency, bandwidth time) of each phase of ``plan`` for ``nbytes`` under ``protocol``.

    The protocol's base latency is added to the first phase.
    """
    cat = f.catalog
    lib = cat.library
    proto = cat.protocols[protocol]
    p = plan.p
    n = float(nbytes)
    b_inj = _injection(f, plan.ranks)
    out = []
    for ph in plan.phases:
        if ph.kind in ("nvls", "nvlstree"):
            sw = f.domain_switch[f.domain_of[plan.ranks[0]]]
            eff_r = cat.switches[f.graph.nodes[sw]["model"]].reduction_efficiency
            q = sum(1 for r in plan.ranks if f.domain_of[r] == f.domain_of[plan.ranks[0]])
            acc = f.graph.nodes[plan.ranks[0]]["model"]
            nch = lib.nvls_channels.get(acc, lib.nvls_channels["default"])
            c = _nvls_chunk(n, nch, lib, q)
            b_ch = b_inj * eff_r / nch
            ce = c / (c + lib.chunk_overhead_s * b_ch)
            lat = lib.nvls_latency_s
            if ph.kind == "nvlstree":
                lat += ph.steps * max(lib.nvls_net_latency_s, ph.path_inter_s)
            bw = (1.0 if plan.absolute else n) * ph.unit_time_s / ce
            out.append((lat, bw))
            continue
        if ph.kind == "sharp":
            lat = lib.sharp_latency_s + ph.steps * max(proto.hop_latency_net_s, ph.path_inter_s)
            ce = 1.0
            if proto.chunked:
                c = min(lib.ring_simple_max_chunk_B, n / (lib.max_channels * p))
                ce = c / (c + lib.chunk_overhead_s * b_inj / lib.max_channels) if c > 0 else 1
            bw = (1.0 if plan.absolute else n) * ph.unit_time_s / (proto.bandwidth_factor * ce)
            out.append((lat, bw))
            continue
        nc = _channels(n, proto, lib, p, plan.algorithm == "ring")
        share = nc / lib.max_channels
        ce = 1.0
        if proto.chunked:
            c = min(lib.ring_simple_max_chunk_B, n / (nc * p))
            b_ch = b_inj / lib.max_channels
            ce = c / (c + lib.chunk_overhead_s * b_ch) if c > 0 else 1.0
        intra = max(proto.hop_latency_nvlink_s, ph.path_intra_s)
        if ph.inter_frac > 0 and ph.pipelined:
            # NCCL's tuner: an inter-node ring's every step pays the proxy's network
            # overhead, three times over for Simple (tuning.cc getNetOverhead)
            intra = max(intra, lib.net_overhead_s * (3 if proto.id == "Simple" else 1))
        inter = max(proto.hop_latency_net_s, ph.path_inter_s)
        if ph.pipelined:
            step = (1 - ph.inter_frac) * intra + ph.inter_frac * inter
        else:
            step = inter if ph.inter_frac > 0 else intra
        lat = ph.steps * step
        size = 1.0 if plan.absolute else n
        bw = size * ph.unit_time_s / (proto.bandwidth_factor * share * ce)
        out.append((lat, bw))
    if out and plan.phases[0].kind not in ("nvls", "nvlstree"):
        out[0] = (out[0][0] + proto.base_latency_s, out[0][1])
    if proto.id == "LL" and plan.algorithm in ("ring", "tree") and not plan.absolute:
        out = _ll_cap(f, plan, n, out)
    if plan.algorithm == "tree" and plan.op == "all_reduce":
        out = _tree_correction(lib, proto.id, n, out)
    return out


def _tree_correction(lib, proto: str, n: float, out: list) -> list:
    """NCCL's tree all-reduce bandwidth correction at log2(n / 64) (tuning.cc
    treeCorrectionFactor, applied for 0 <= log2 < 23)."""
    table = lib.tree_correction.get(proto)
    if not table or n < 64:
        return out
    k = int(math.log2(n / 64))
    if k >= min(23, len(table)):
        return out
    return [(lat, b / table[k]) for lat, b in out]


def _ll_cap(f: Fabric, plan: Plan, n: float, out: list) -> list:
    """NCCL's LL bus-bandwidth cap across scale-up domains (tuning.cc llMaxBws, by
    architecture and node count): stretch the phases' bandwidth times so that busbw does
    not exceed it. Inside one domain the protocol's bandwidth_factor is that cap already
    (derived from the same table)."""
    caps = f.catalog.library.ll_max_busbw
    nodes = len({f.domain_of[r] for r in plan.ranks})
    if not caps or nodes == 1:
        return out
    acc = f.graph.nodes[plan.ranks[0]]["model"]
    cap = caps.get(acc, caps.get("default"))
    limit = cap[1 if nodes == 2 else 2]
    floor = n * bus_factor(plan.op, plan.p) / limit
    bw = sum(b for _, b in out)
    if bw <= 0 or floor <= bw:
        return out
    return [(lat, b * floor / bw) for lat, b in out]


def _protocols_for(plan: Plan, cat) -> list[str]:
    if any(ph.kind in ("nvls", "nvlstree") for ph in plan.phases):
        return ["Simple"]
    return list(cat.protocols)


@dataclass
class CollectiveResult:
    """Time of one collective and how it was reached."""

    op: str
    ranks: int
    nbytes: float
    algorithm: str
    protocol: str
    time_s: float
    phases: list = field(default_factory=list)  # (name, latency_s, bandwidth_s)
    candidates: dict = field(default_factory=dict)  # "algo/proto" -> time_s

    @property
    def algbw_Bps(self) -> float:
        return self.nbytes / self.time_s if self.time_s > 0 else math.inf

    @property
    def busbw_Bps(self) -> float:
        return self.algbw_Bps * bus_factor(self.op, self.ranks)

    def as_row(self) -> dict:
        return {"op": self.op, "ranks": self.ranks, "bytes": self.nbytes,
                "algorithm": self.algorithm, "protocol": self.protocol, "time_s": self.time_s,
                "algbw_GBps": self.algbw_Bps / 1e9, "busbw_GBps": self.busbw_Bps / 1e9}


def collective_time(f: Fabric, op: str, ranks, nbytes: float, algorithm: str = "auto", *,
                    protocol: str = "auto", policy: str | None = None, matrix=None
                    ) -> CollectiveResult:
    """Time of a collective on a fabric, with the network to itself.

    Parameters
    ----------
    f : Fabric
    op : str
        all_reduce, reduce_scatter, all_gather, all_to_all, broadcast, reduce, send_recv.
    ranks : int or sequence of str
        Rank count (first accelerators in locality order) or accelerator names.
    nbytes : float
        Message size in bytes, as nccl-tests counts it (see
        :mod:`sim.collectives.algorithms`).
    algorithm : str
        An algorithm name or ``auto`` (the fastest that applies, as NCCL's tuner picks).
    protocol : str
        ``LL``, ``LL128``, ``Simple`` or ``auto``.
    policy : str, optional
        Scale-out routing policy; the fabric's default if omitted.
    matrix : array (p, p), optional
        Uneven all-to-all bytes (then ``nbytes`` is ignored for the bandwidth term).

    Returns
    -------
    CollectiveResult
    """
    _check_request(f, op, nbytes, protocol)
    algos = AUTO_ORDER if algorithm == "auto" else (algorithm,)
    cands = {}
    errors = []
    rank_t = _as_ranks(f, ranks)
    order = _candidates(f, op, rank_t, policy or f.routing, algos, algorithm, nbytes, matrix,
                        errors)
    best = _fastest(f, op, rank_t, order, protocol, policy, nbytes, matrix, cands, errors)
    if best is None:
        raise InfeasibleError(errors[0] if errors else f"no algorithm implements {op} here")
    t, a, pr, plan, times = best
    return CollectiveResult(op, plan.p, float(nbytes), a, pr, t,
                            [(ph.name, lt, bt) for ph, (lt, bt) in zip(plan.phases, times,
                                                                       strict=True)], cands)


def _check_request(f: Fabric, op: str, nbytes: float, protocol: str) -> None:
    """InfeasibleError for an unknown collective or protocol, or a negative size."""
    if op not in OPS:
        raise InfeasibleError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}")
    if nbytes < 0:
        raise InfeasibleError(f"message size must not be negative, got {nbytes}")
    cat = f.catalog
    if protocol != "auto" and protocol not in cat.protocols:
        raise InfeasibleError(f"unknown protocol {protocol!r}; expected one of "
                              f"{', '.join(cat.protocols)} or auto")


def _candidates(f: Fabric, op: str, rank_t: tuple, pol: str, algos: tuple, algorithm: str,
                nbytes: float, matrix, errors: list) -> list:
    """Algorithms that apply, as (lower bound on time, name, phases), cheapest bound first;
    why the others do not apply goes to ``errors``."""
    cat = f.catalog
    plans = _plan_cache(f)
    order = []
    for a in algos:
        if (op == "all_to_all" or matrix is not None) and a != "direct":
            continue
        if a == "sharp" and algorithm == "auto" and not f.collnet:
            continue  # NCCL leaves CollNet off unless NCCL_COLLNET_ENABLE=1 (collnet: true)
        if a == "direct" and op in ("all_reduce", "reduce_scatter", "all_gather") and \
                algorithm == "auto" and len(rank_t) > 64:
            continue  # pairwise exchange is for single full-mesh domains (cheap check)
        if matrix is None and (op, a, rank_t, pol) in plans:
            order.append((0.0, a, None))  # compiled already: as cheap to time as to bound
            continue
        try:
            specs = phases(f, op, list(rank_t), a, matrix=matrix)
        except InfeasibleError as e:
            errors.append(str(e))
            continue
        lb = lower_bound(f, specs, rank_t, 1.0 if matrix is not None else nbytes, cat) \
            if len(algos) > 1 else 0.0
        order.append((lb, a, specs))
    order.sort(key=lambda x: x[0])
    return order


def _fastest(f: Fabric, op: str, rank_t: tuple, order: list, protocol: str,
             policy: str | None, nbytes: float, matrix, cands: dict, errors: list):
    """The fastest (time, algorithm, protocol, plan, phase times) over ``order``, pruning
    algorithms whose bound cannot beat it; each time tried goes to ``cands``."""
    cat = f.catalog
    best = None
    for lb, a, _specs in order:
        if best is not None and lb >= best[0]:
            cands[f"{a}/*"] = float("nan")  # pruned: cannot beat the best found
            continue
        try:
            plan = compile_plan(f, op, rank_t, a, policy=policy, matrix=matrix)
        except InfeasibleError as e:
            errors.append(str(e))
            continue
        protos = _protocols_for(plan, cat) if protocol == "auto" else [protocol]
        for pr in protos:
            if pr not in _protocols_for(plan, cat):
                continue
            times = phase_times(f, plan, nbytes, pr)
            t = sum(a_ + b_ for a_, b_ in times)
            cands[f"{a}/{pr}"] = t
            if best is None or t < best[0] - 1e-15:
                best = (t, a, pr, plan, times)
    return best


def run_collective(env, net, op: str, ranks, nbytes: float, algorithm: str = "auto", *,
                   protocol: str = "auto", policy: str | None = None, tag: str = ""):
    """SimPy process: run a collective through a network model, phase after phase.

    Use as ``result = yield env.process(run_collective(env, net, "all_reduce", ranks, n))``.
    Each phase is one :class:`~sim.network.Transfer` of its true bytes; what the protocol
    costs beyond moving those bytes at link rate (LL's flag words, idle channels, per-chunk
    synchronisation, hop latencies) is the transfer's latency, so alone on the network the
    collective takes exactly :func:`collective_time`, and under contention only its bytes
    compete for links.

    Returns
    -------
    CollectiveResult
        The algorithm chosen and the time it took on SimPy's clock.
    """
    f = net.fabric
    res = collective_time(f, op, ranks, nbytes, algorithm, protocol=protocol, policy=policy)
    plan = compile_plan(f, op, ranks, res.algorithm, policy=policy)
    times = phase_times(f, plan, nbytes, res.protocol)
    start = env.now
    scale = 1.0 if plan.absolute else float(nbytes)
    for ph, (lat, bw) in zip(plan.phases, times, strict=True):
        tr = ph.transfer(scale, 0.0, tag or f"{op}:{ph.name}")
        ideal = net.time_alone(tr)  # its bytes at link rate (in-network / p2p cost included)
        tr.latency_s = lat + max(0.0, bw - ideal)
        yield net.transfer(tr)
    res.time_s = env.now - start
    return res
