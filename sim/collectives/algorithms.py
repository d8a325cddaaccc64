"""Collective algorithms: (op, ranks, bytes) -> phases of flows on a fabric.

An algorithm produces :class:`PhaseSpec` objects: the flows of one phase (source and
destination rank, bytes per byte of the collective's size ``n``), how many sequential
*steps* the phase folds (each step pays a latency), and optionally direct per-link loads
for in-network reductions (a switch that reduces or multicasts is not a unicast flow).
Identical repeated steps are folded: the 2(p-1) steps of a ring all-reduce are one phase
whose flows carry 2(p-1)/p n bytes each, so a 16,384-rank ring costs O(p) work.

Sizes follow nccl-tests: ``n`` is the per-rank buffer of all-reduce, reduce-scatter input,
all-gather output, all-to-all send buffer, broadcast/reduce buffer, send/recv message.

Algorithms and the ops they implement:

* ``ring`` (all ops but all-to-all): on several scale-up domains, one ring per NIC rail
  (NCCL channels): each ring crosses every domain through the NVLink/ICI fabric and leaves
  it through the NIC of its rail; the GPU that ends the in-domain segment hands its data to
  that NIC's GPU over the scale-up fabric (PXN), so inter-domain traffic stays rail-aligned.
* ``tree`` (all-reduce, broadcast, reduce): NCCL's double binary tree over domains, with a
  chain inside each domain; pipelined, so its bandwidth term is 2n (all-reduce) per link.
* ``halving_doubling`` (all-reduce, reduce-scatter, all-gather; p a power of two):
  Rabenseifner: log2 p exchange steps with partners at distance p/2, p/4, ...
* ``direct`` (all-to-all, also uneven; send/recv; and reduce-scatter, all-gather,
  all-reduce inside a full-mesh domain such as MI300X's xGMI): every pair at once.
* ``hierarchical`` (all-reduce): reduce-scatter inside each domain, all-reduce of each
  shard across domains on its rail, all-gather inside each domain.
* ``torus`` (all-reduce, reduce-scatter, all-gather): bidirectional rings along each
  dimension in turn (TPU ICI).
* ``nvls`` (all-reduce, one NVSwitch domain with in-network reduction): NVLink SHARP:
  the switch reduces (multimem.ld_reduce) and multicasts (multimem.st).
* ``sharp`` (all-reduce across domains on InfiniBand switches with SHARP): reduce-scatter
  in the domain, switch-tree reduction of each shard on its rail (every tree link carries
  the shard once), all-gather in the domain.

Main assumption: ranks of one scale-up domain are consecutive in NCCL's ring order, and a
rank's rail is the index of its NIC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..errors import InfeasibleError
from ..fabric.fabric import Fabric

__all__ = ["OPS", "ALGORITHMS", "PhaseSpec", "phases", "applicable", "bus_factor",
           "ring_pairs", "pair_phase"]

OPS = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "broadcast", "reduce",
       "send_recv")

ALGORITHMS = ("ring", "tree", "halving_doubling", "direct", "hierarchical", "torus", "nvls",
              "sharp")


def bus_factor(op: str, p: int) -> float:
    """nccl-tests' busbw / algbw factor (so busbw is comparable to link bandwidth)."""
    if op == "all_reduce":
        return 2 * (p - 1) / p
    if op in ("reduce_scatter", "all_gather", "all_to_all"):
        return (p - 1) / p
    return 1.0


@dataclass
class PhaseSpec:
    """One phase of a collective.

    Attributes
    ----------
    name : str
    src, dst : ndarray of int
        Accelerator names' indices (into the rank list) of each flow.
    unit : ndarray of float
        Bytes of each flow per byte of the collective size n (or absolute bytes when the
        plan is absolute, as for uneven all-to-all).
    hop : ndarray of int
        Flows with the same hop id are consecutive legs of one logical hop (PXN relay);
        the phase's per-step latency is the largest summed latency of a hop.
    steps : int
        Sequential steps folded into the phase (each pays the per-step latency).
    direct_links : list of (str, str, float)
        In-network loads: (u, v, bytes per byte of n) on graph edges.
    inter : bool
        Whether the phase crosses scale-up domains (decides the per-step overhead).
    pipelined : bool
        A chunk crosses the phase's hops one after another (ring, tree): its latency mixes
        intra- and inter-domain hop latencies in proportion ``inter_frac``. Otherwise
        (exchange steps, all-to-all) each step waits for its slowest pair.
    inter_frac : float, optional
        Share of a pipelined chunk's hops that cross domains (default: share of flows).
    p2p : bool
        Every rank streams to many peers at once (NCCL's grouped send/recv, as in
        all-to-all): scale-up links run at their ``p2p_efficiency`` (links catalog).
    """

    name: str
    src: np.ndarray
    dst: np.ndarray
    unit: np.ndarray
    hop: np.ndarray
    steps: int
    direct_links: list = field(default_factory=list)
    inter: bool = False
    pipelined: bool = True
    inter_frac: float | None = None
    p2p: bool = False


def _spec(name, pairs, steps, *, inter=False, direct=None, pipelined=True,
          inter_frac=None, p2p=False) -> PhaseSpec:
    """pairs: list of (src, dst, unit, hop), or a tuple of four arrays."""
    if isinstance(pairs, tuple):
        src, dst, unit, hop = pairs
        return PhaseSpec(name, np.asarray(src, np.int64), np.asarray(dst, np.int64),
                         np.asarray(unit, np.float64), np.asarray(hop, np.int64), steps,
                         direct or [], inter, pipelined, inter_frac, p2p)
    if pairs:
        a = np.array(pairs, dtype=np.float64)
        src, dst, unit, hop = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2], \
            a[:, 3].astype(np.int64)
    else:
        src = dst = hop = np.zeros(0, np.int64)
        unit = np.zeros(0)
    return PhaseSpec(name, src, dst, unit, hop, steps, direct or [], inter, pipelined,
                     inter_frac, p2p)


# ------------------------------------------------------------------ structure helpers
def _groups(f: Fabric, ranks: list[str]) -> list[list[int]]:
    """Rank indices grouped by scale-up domain, in order of first appearance."""
    order: dict[int, list[int]] = {}
    for i, r in enumerate(ranks):
        order.setdefault(f.domain_of[r], []).append(i)
    return list(order.values())


def _rail(f: Fabric, r: str) -> int:
    """The rail of an accelerator: its first NIC's rail, else its index in its domain."""
    cache = f.derived("collectives.rails", dict)
    v = cache.get(r)
    if v is None:
        nics = f.nics_of.get(r)
        v = f.local_index[r] if not nics else int(f.graph.nodes[nics[0]].get("rail", 0))
        cache[r] = v
    return v


def _channels(f: Fabric, ranks: list[str], groups: list[list[int]]) -> int:
    if len(groups) == 1:
        return 1
    return max(1, min(len({_rail(f, ranks[i]) for i in g}) for g in groups))


def _rotations(f: Fabric, ranks: list[str], groups: list[list[int]], channels: int
               ) -> list[list[list[int]]]:
    """For each channel c, every domain's members ordered to start at its rail-c member."""
    if channels == 1:
        return [groups]
    out = [[None] * len(groups) for _ in range(channels)]
    for k, g in enumerate(groups):
        rails = [_rail(f, ranks[i]) for i in g]
        distinct = sorted(set(rails))
        for c in range(channels):
            j = rails.index(distinct[c % len(distinct)])
            out[c][k] = g[j:] + g[:j]
    return out


@dataclass
class _Layout:
    """Ranks grouped by domain: ``G[k, i]`` is the i-th rank of the k-th domain, rotated
    per channel so that ``rot[c][k, 0]`` is the domain's rank on rail c."""

    groups: list
    G: np.ndarray | None  # (m, q) when every domain holds q ranks, else None
    channels: int
    rot: list


def _layout(f: Fabric, ranks: list[str]) -> _Layout:
    """The ranks' :class:`_Layout` (cached on the fabric, at most 65 rank lists at once)."""
    cache = f.derived("collectives.layouts", dict)
    key = tuple(ranks)
    hit = cache.get(key)
    if hit is not None:
        return hit
    groups = _groups(f, ranks)
    q = len(groups[0])
    G = np.array(groups, np.int64) if all(len(g) == q for g in groups) else None
    ch = _channels(f, ranks, groups)
    if G is not None and ch > 1:
        R = np.array([[_rail(f, ranks[i]) for i in g] for g in groups], np.int64)
        rot = []
        for c in range(ch):
            rails = np.sort(R, axis=1)[:, c % q]  # the c-th distinct rail of each domain
            start = np.argmax(R == rails[:, None], axis=1)
            cols = (start[:, None] + np.arange(q)[None, :]) % q
            rot.append(np.take_along_axis(G, cols, axis=1))
    elif G is not None:
        rot = [G]
    else:
        rot = [np.array(o, dtype=object) for o in _rotations(f, ranks, groups, ch)]
    out = _Layout(groups, G, ch, rot)
    if len(cache) > 64:
        cache.clear()
    cache[key] = out
    return out


def ring_pairs(f: Fabric, ranks: list[str], unit: float) -> tuple[tuple, bool]:
    """Flows of one step of a (multi-channel) ring over ``ranks``.

    On several scale-up domains there is one ring per NIC rail (NCCL channels); each
    crosses every domain, leaving it through its rail's NIC after a PXN hand-off inside
    the domain (see the module docstring).

    Parameters
    ----------
    f : Fabric
    ranks : list of str
        Accelerator names in ring order.
    unit : float
        What each step of the ring carries per byte of the collective size n; it is split
        evenly over the channels.

    Returns
    -------
    flows : tuple of four ndarrays
        ``(src, dst, unit, hop)``: source and destination rank indices, bytes per byte of
        n, and the logical hop of each flow (legs of one PXN relay share a hop).
    inter : bool
        Whether the ring crosses scale-up domains.
    """
    p = len(ranks)
    lay = _layout(f, ranks)
    if len(lay.groups) == 1:
        i = np.arange(p)
        return (i, (i + 1) % p, np.full(p, unit), i), False
    if lay.G is None:  # uneven domains: the general (slow) path
        pairs = []
        hop = 0
        share = unit / lay.channels
        for orders in _rotations(f, ranks, lay.groups, lay.channels):
            for k, od in enumerate(orders):
                for a, b in zip(od, od[1:], strict=False):
                    pairs.append((a, b, share, hop))
                    hop += 1
                entry = orders[(k + 1) % len(orders)][0]
                if od[-1] != od[0]:
                    pairs.append((od[-1], od[0], share, hop))
                pairs.append((od[0], entry, share, hop))
                hop += 1
        a = np.array(pairs)
        return (a[:, 0], a[:, 1], a[:, 2], a[:, 3]), True
    m, q = lay.G.shape
    share = unit / lay.channels
    src, dst, hop = [], [], []
    h0 = 0
    for ro in lay.rot:
        # in-domain hops
        s_in, d_in = ro[:, :-1].ravel(), ro[:, 1:].ravel()
        h_in = h0 + np.arange(s_in.size)
        h0 += s_in.size
        # the domain's last rank hands its data to the rail rank (PXN), which sends it on
        h_out = h0 + np.arange(m)
        h0 += m
        nxt = np.roll(ro[:, 0], -1)
        src += [s_in, ro[:, -1], ro[:, 0]]
        dst += [d_in, ro[:, 0], nxt]
        hop += [h_in, h_out, h_out]
        if q == 1:  # no in-domain hand-off
            src.pop(-2)
            dst.pop(-2)
            hop.pop(-2)
    src, dst, hop = np.concatenate(src), np.concatenate(dst), np.concatenate(hop)
    return (src, dst, np.full(src.size, share), hop), True


def _btree(m: int, rank: int) -> tuple[int, list[int]]:
    """NCCL's in-order binary tree (src/graph/trees.cc ncclGetBtree): (parent, children).

    Leaves are the even ranks, so the mirrored tree has them interior.
    """
    bit = 1
    while bit < m:
        if bit & rank:
            break
        bit <<= 1
    if rank == 0:
        return -1, ([bit >> 1] if m > 1 and (bit >> 1) > 0 else [])
    up = (rank ^ bit) | (bit << 1)
    if up >= m:
        up = rank ^ bit
    low = bit >> 1
    kids = []
    if low:
        kids.append(rank - low)
        d1 = rank + low
        while d1 >= m and low:
            low >>= 1
            d1 = rank + low if low else -1
        if low and d1 >= 0:
            kids.append(d1)
    return up, kids


@lru_cache(maxsize=64)
def _tree_edges(m: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """NCCL double binary tree over m nodes: (parent, child) edges of both trees, depth.

    The second tree mirrors the first (m even) or shifts it by one (m odd), so a node that
    is interior in one tree is a leaf in the other (ncclGetDtree)."""
    t1 = []
    for r in range(m):
        par, _ = _btree(m, r)
        if par >= 0:
            t1.append((par, r))
    if m % 2:
        perm = [(r + 1) % m for r in range(m)]  # shift
    else:
        perm = [m - 1 - r for r in range(m)]  # mirror
    t2 = [(perm[a], perm[b]) for a, b in t1]
    depth = max(1, int(np.ceil(np.log2(m)))) if m > 1 else 0
    return t1, t2, depth


# ------------------------------------------------------------------ algorithms
def _ring(f, ranks, op):
    p = len(ranks)
    m = len(_layout(f, ranks).groups)
    frac = m / p if m > 1 else 0.0
    if op == "all_reduce":
        pairs, inter = ring_pairs(f, ranks, 2 * (p - 1) / p)
        return [_spec("ring all-reduce", pairs, 2 * (p - 1), inter=inter, inter_frac=frac)]
    if op in ("reduce_scatter", "all_gather"):
        pairs, inter = ring_pairs(f, ranks, (p - 1) / p)
        return [_spec(f"ring {op.replace('_', '-')}", pairs, p - 1, inter=inter,
                      inter_frac=frac)]
    if op in ("broadcast", "reduce"):
        # pipelined chain from (to) rank 0: every ring hop except the one into the root
        (src, dst, unit, hop), inter = ring_pairs(f, ranks, 1.0)
        keep = ~np.isin(hop, hop[dst == 0])
        src, dst, unit, hop = src[keep], dst[keep], unit[keep], hop[keep]
        if op == "reduce":
            src, dst = dst, src
        return [_spec(f"ring {op}", (src, dst, unit, hop), p - 1, inter=inter,
                      inter_frac=frac)]
    if op == "send_recv":
        pairs, inter = ring_pairs(f, ranks, 1.0)
        return [_spec("ring send/recv", pairs, 1, inter=inter, pipelined=False)]
    return None


def _tree(f, ranks, op):
    if op not in ("all_reduce", "broadcast", "reduce"):
        return None
    lay = _layout(f, ranks)
    groups = lay.groups
    m = len(groups)
    if lay.G is None:
        return None
    mult = 2.0 if op == "all_reduce" else 1.0  # up and down
    share = 1.0 / lay.channels
    src, dst, unit, hop = [], [], [], []
    h0 = 0
    t1, t2, depth = _tree_edges(m)
    tree = np.array(t1 + t2, np.int64).reshape(-1, 2) if m > 1 else np.zeros((0, 2), np.int64)
    for ro in lay.rot:
        # chain inside each domain: up towards the leader ro[k, 0], and back down
        a, b = ro[:, :-1].ravel(), ro[:, 1:].ravel()
        h = h0 + np.arange(a.size)
        h0 += a.size
        if op != "broadcast":
            src.append(b), dst.append(a), hop.append(h), unit.append(np.full(a.size, share))
        if op != "reduce":
            src.append(a), dst.append(b), hop.append(h), unit.append(np.full(a.size, share))
        if len(tree):
            pa, ch = ro[tree[:, 0], 0], ro[tree[:, 1], 0]
            h = h0 + np.arange(len(tree))
            h0 += len(tree)
            half = np.full(len(tree), share / 2)
            if op != "broadcast":
                src.append(ch), dst.append(pa), hop.append(h), unit.append(half)
            if op != "reduce":
                src.append(pa), dst.append(ch), hop.append(h), unit.append(half)
    intra = lay.G.shape[1] - 1
    d = depth if m > 1 else 0
    steps = int(mult * (d + intra))
    arrays = tuple(np.concatenate(x) if x else np.zeros(0) for x in (src, dst, unit, hop))
    return [_spec(f"tree {op.replace('_', '-')}", arrays, max(1, steps), inter=m > 1,
                  inter_frac=d / max(1, d + intra))]


def _halving_doubling(f, ranks, op):
    p = len(ranks)
    if op not in ("all_reduce", "reduce_scatter", "all_gather") or p & (p - 1) or p < 2:
        return None
    k = p.bit_length() - 1
    inter = len(_groups(f, ranks)) > 1
    rs = []
    for s in range(k):
        dist = p >> (s + 1)
        unit = 1.0 / (2 ** (s + 1))
        pairs = [(i, i ^ dist, unit, i) for i in range(p)]
        rs.append(_spec(f"halving step {s + 1}", pairs, 1, inter=inter, pipelined=False))
    ag = [_spec(f"doubling step {s + 1}", list(ph_pairs(ph)), 1, inter=inter,
                pipelined=False)
          for s, ph in enumerate(reversed(rs))]
    if op == "reduce_scatter":
        return rs
    if op == "all_gather":
        return ag
    return rs + ag


def pair_phase(n: int, name: str = "pairs", inter: bool = True, reverse: bool = False
               ) -> PhaseSpec:
    """Point-to-point flows between two rank lists of length n, concatenated as ranks
    ``a + b``: a[i] -> b[i] (or b[i] -> a[i] with ``reverse``), one byte per byte sent.
    Pipeline hand-offs and KV-cache transfers are such phases."""
    a, b = np.arange(n), np.arange(n, 2 * n)
    src, dst = (b, a) if reverse else (a, b)
    return PhaseSpec(name, src, dst, np.ones(n), np.arange(n), 1, [], inter, False, None)


def ph_pairs(ph: PhaseSpec):
    return zip(ph.src, ph.dst, ph.unit, ph.hop, strict=True)


def _full_mesh(f: Fabric, ranks: list[str]) -> bool:
    """All ranks in one scale-up domain whose GPUs are wired pairwise (xGMI), no switch."""
    doms = {f.domain_of[r] for r in ranks}
    if len(doms) != 1:
        return False
    d = doms.pop()
    if d in f.domain_switch or d in f.torus:
        return False
    g = f.graph
    return all(g.has_edge(a, b) for a in ranks for b in ranks if a != b)


def _direct(f, ranks, op, matrix=None):
    p = len(ranks)
    inter = len(_groups(f, ranks)) > 1
    if op in ("all_reduce", "reduce_scatter", "all_gather") and _full_mesh(f, ranks):
        # on a full mesh every GPU exchanges its 1/p shards with all peers at once over
        # its p-1 links (RCCL's approach on MI300X); all-reduce = reduce-scatter + gather
        pairs = [(i, j, 1.0 / p, i * p + j) for i in range(p) for j in range(p) if i != j]
        rs = _spec("mesh reduce-scatter", pairs, 1, pipelined=False)
        ag = _spec("mesh all-gather", pairs, 1, pipelined=False)
        return {"all_reduce": [rs, ag], "reduce_scatter": [rs], "all_gather": [ag]}[op]
    if op == "all_to_all":
        if matrix is not None:
            pairs = [(i, j, float(matrix[i, j]), i * p + j) for i in range(p) for j in range(p)
                     if i != j and matrix[i, j] > 0]
        else:
            pairs = [(i, j, 1.0 / p, i * p + j) for i in range(p) for j in range(p) if i != j]
        return [_spec("direct all-to-all", pairs, 1, inter=inter, pipelined=False, p2p=True)]
    if op == "send_recv":
        return [_spec("send/recv", [(i, (i + 1) % p, 1.0, i) for i in range(p)], 1,
                      inter=inter, pipelined=False)]
    return None


def _equal_domains(f: Fabric, ranks: list[str], op: str) -> tuple[list, int] | None:
    """(groups, ranks per domain) for an all-reduce over >= 2 domains of equal size."""
    if op != "all_reduce":
        return None
    groups = _layout(f, ranks).groups
    q = len(groups[0])
    if len(groups) < 2 or any(len(g) != q for g in groups):
        return None
    return groups, q


def _intra_ring(groups: list, q: int) -> list:
    """One step of a ring inside every domain, carrying (q-1)/q of the data."""
    return [(a, g[(i + 1) % q], (q - 1) / q, a) for g in groups for i, a in enumerate(g)
            if q > 1]


def _hierarchical(f, ranks, op):
    eq = _equal_domains(f, ranks, op)
    if eq is None:
        return None
    groups, q = eq
    phases = [_spec("intra reduce-scatter", _intra_ring(groups, q), q - 1)]
    inter_pairs = []
    m = len(groups)
    for j in range(q):  # shard j of every domain, on rail j
        for k in range(m):
            a, b = groups[k][j], groups[(k + 1) % m][j]
            inter_pairs.append((a, b, 2 * (m - 1) / m / q, a))
    phases.append(_spec("inter all-reduce (per rail)", inter_pairs, 2 * (m - 1), inter=True,
                        inter_frac=1.0))
    phases.append(_spec("intra all-gather", _intra_ring(groups, q), q - 1))
    return phases


def _torus(f, ranks, op):
    if op not in ("all_reduce", "reduce_scatter", "all_gather"):
        return None
    doms = {f.domain_of[r] for r in ranks}
    if len(doms) != 1:
        return None
    d = doms.pop()
    t = f.torus.get(d)
    if t is None or len(ranks) != len(f.domains[d]):
        return None
    idx = {r: i for i, r in enumerate(ranks)}
    frac = 1.0
    rs = []
    for dim, k in enumerate(t.dims):
        if k == 1:
            continue
        pairs = []
        unit = frac * (k - 1) / k / 2  # half each way around the bidirectional ring
        for r in ranks:
            c = t.coords[r]
            for step in (1, -1):
                nb = t.grid[t.neighbor(c, dim, step)]
                if nb != r:
                    pairs.append((idx[r], idx[nb], unit * (1 if k > 2 else 2), idx[r]))
        rs.append(_spec(f"torus dim {dim} reduce-scatter", pairs, k - 1))
        frac /= k
    ag = [_spec(ph.name.replace("reduce-scatter", "all-gather"), list(ph_pairs(ph)), ph.steps)
          for ph in reversed(rs)]
    if op == "reduce_scatter":
        return rs
    if op == "all_gather":
        return ag
    return rs + ag


def _nvls_switch(f: Fabric, dom: int):
    """(switch node, reduction efficiency) of a domain whose switch reduces, else None."""
    sw = f.domain_switch.get(dom)
    if sw is None:
        return None
    model = f.catalog.switches[f.graph.nodes[sw]["model"]]
    if model.in_network_reduction != "nvls":
        return None
    return sw, model.reduction_efficiency


def _nvls_loads(f: Fabric, ranks: list[str], group: list[int], scale: float) -> list:
    """NVLink SHARP all-reduce of ``scale`` x n inside one domain. ld_reduce: the switch
    reads shard i from every GPU (n/q each) and returns the sum to GPU i (n/q); st: GPU i
    pushes its n/q and the switch multicasts it to all q GPUs. Per GPU and direction:
    n (q + 1) / q, moved at the switch's reduction efficiency."""
    sw, eff = _nvls_switch(f, f.domain_of[ranks[group[0]]])
    q = len(group)
    out = []
    for i in group:
        r = ranks[i]
        out.append((r, sw, scale * (1.0 + 1.0 / q), eff))
        out.append((sw, r, scale * (1.0 / q + 1.0), eff))
    return out


def _nvls(f, ranks, op):
    """NVLS all-reduce in one NVSwitch domain; across domains NCCL's NVLSTree: NVLS in each
    domain plus a double binary tree between domains on every rail, pipelined."""
    if op != "all_reduce":
        return None
    groups = _groups(f, ranks)
    if any(_nvls_switch(f, f.domain_of[ranks[g[0]]]) is None for g in groups) or \
            any(len(g) < 3 for g in groups):
        return None  # NCCL disables NVLS on 2 GPUs or fewer
    direct = []
    for g in groups:
        direct += _nvls_loads(f, ranks, g, 1.0)
    if len(groups) == 1:
        return [_spec("NVLS all-reduce", [], 2, direct=direct)]
    q = len(groups[0])
    if any(len(g) != q for g in groups):
        return None
    m = len(groups)
    t1, t2, depth = _tree_edges(m)
    tree = np.array(t1 + t2, np.int64).reshape(-1, 2)
    G = np.array(groups, np.int64)
    # shard j of each domain travels both trees on rail j (column j of every domain)
    pa, ch = G[tree[:, 0]].ravel(), G[tree[:, 1]].ravel()
    h = np.arange(pa.size)
    arrays = (np.concatenate([ch, pa]), np.concatenate([pa, ch]),
              np.full(2 * pa.size, 0.5 / q), np.concatenate([h, h]))
    return [_spec("NVLSTree all-reduce", arrays, 2 * depth, inter=True, direct=direct,
                  inter_frac=1.0)]


def _sharp(f, ranks, op):
    """NCCL CollNet: in each domain NVLS (or a ring) reduce-scatter/all-gather, and each
    rail's shard reduced by the InfiniBand switches (SHARP): every link of the reduction
    tree carries the shard once per direction. Pipelined as one phase."""
    eq = _equal_domains(f, ranks, op)
    if eq is None:
        return None
    groups, q = eq
    router = f.router
    for g in groups:
        for i in g:
            for nic in f.nics_of.get(ranks[i], []):
                ups = router.up(nic)
                if not ups or any(f.catalog.switches[f.graph.nodes[s]["model"]]
                                  .in_network_reduction != "sharp" for s in ups):
                    return None
            if not f.nics_of.get(ranks[i]):
                return None
    direct = []
    pairs = []
    use_nvls = q >= 3 and all(_nvls_switch(f, f.domain_of[ranks[g[0]]]) for g in groups)
    if use_nvls:
        for g in groups:
            direct += _nvls_loads(f, ranks, g, 1.0)
    else:  # ring reduce-scatter + all-gather inside each domain
        pairs = [(a, b, 2 * u, h) for a, b, u, h in _intra_ring(groups, q)]
    from ..fabric.clos_routes import ecmp_link_sets

    # the reduction tree of rail j: the union of the routes to rail j's root; each of its
    # links (and the reverse) carries the rail's shard once
    src = [ranks[groups[k][j]] for j in range(q) for k in range(1, len(groups))]
    dst = [ranks[groups[0][j]] for j in range(q) for k in range(1, len(groups))]
    tree = ecmp_link_sets(f, src, dst)
    direct += [(int(lk), None, 1.0 / q, 1.0) for lk in tree.tolist()]
    tiers = f.derived("collectives.switch_tiers", lambda: len({
        d.get("tier", 0) for _, d in f.graph.nodes(data=True) if d.get("kind") == "switch"}))
    return [_spec("CollNet/SHARP all-reduce", pairs, 2 * max(1, tiers), inter=True,
                  inter_frac=1.0, direct=direct)]


_BUILDERS = {
    "ring": _ring,
    "tree": _tree,
    "halving_doubling": _halving_doubling,
    "direct": _direct,
    "hierarchical": _hierarchical,
    "torus": _torus,
    "nvls": _nvls,
    "sharp": _sharp,
}


def phases(f: Fabric, op: str, ranks: list[str], algorithm: str, *, matrix=None
           ) -> list[PhaseSpec]:
    """The phases of ``op`` over ``ranks`` by ``algorithm``.

    Raises
    ------
    InfeasibleError
        If the algorithm does not implement the op or does not apply to these ranks.
    """
    if op not in OPS:
        raise InfeasibleError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}")
    if algorithm not in _BUILDERS:
        raise InfeasibleError(f"unknown algorithm {algorithm!r}; expected one of "
                              f"{', '.join(ALGORITHMS)} or auto")
    if len(ranks) < 2:
        raise InfeasibleError(f"a collective needs at least 2 ranks, got {len(ranks)}")
    if op == "all_to_all" and algorithm == "direct":
        out = _direct(f, ranks, op, matrix)
    else:
        if matrix is not None:
            raise InfeasibleError("an uneven byte matrix applies to all_to_all only")
        out = _BUILDERS[algorithm](f, ranks, op)
    if out is None:
        raise InfeasibleError(f"algorithm {algorithm} does not implement {op} on these "
                              f"{len(ranks)} ranks")
    return out


def applicable(f: Fabric, op: str, ranks: list[str]) -> list[str]:
    """Algorithms that can run ``op`` on ``ranks`` (cheap structural checks)."""
    out = []
    for a in ALGORITHMS:
        try:
            phases(f, op, ranks, a)
        except InfeasibleError:
            continue
        out.append(a)
    return out
