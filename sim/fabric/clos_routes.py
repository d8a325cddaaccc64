"""Vectorised routing of many flows at once on the Clos fabrics the builders make.

:class:`~sim.fabric.routing.Router` routes one flow at a time in Python (tens of
microseconds each). A collective on 16,384 GPUs has ~10^5 flows, so here the same routes
are computed with numpy for all flows together. It relies on the structure
:func:`sim.fabric.builders.clos` guarantees: every NIC sits under exactly one leaf, every
leaf reaches every spine of its pod, and spine j of every pod of a network plane joins all
cores of core plane j. On that structure ECMP's choices are: at the source leaf, spine
``h % S`` among the pod's usable spines (sorted by node index); at that spine, core
``h' % C`` of its plane; everything below is forced. With the same hash
(:func:`~sim.fabric.routing.flow_hash`, vectorised) and the same candidate order, the
result equals the one-at-a-time router exactly; tests hold them to it.

Main assumption: flows whose endpoints share no switch (rail-only, across rails) or whose
NICs have several leaves (multi-plane) are left to the one-at-a-time router.
"""

from __future__ import annotations

import numpy as np

from .fabric import Fabric

__all__ = ["ClosIndex", "flow_hash_np"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def flow_hash_np(*keys: np.ndarray) -> np.ndarray:
    """Vectorised :func:`sim.fabric.routing.flow_hash` (same values, uint64)."""
    n = len(keys[0])
    h = np.full(n, 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            h = (h ^ np.asarray(k).astype(np.uint64)) * _M1
            h ^= h >> np.uint64(31)
        h = (h ^ (h >> np.uint64(30))) * _M2
    return h ^ (h >> np.uint64(31))


class ClosIndex:
    """Arrays describing a built Clos, for vectorised ECMP and spray routing.

    Build with :meth:`of`, which returns None when the fabric is not such a Clos.
    """

    def __init__(self, f: Fabric):
        c = f.compile()
        g = f.graph
        n = len(c.node_names)
        self.f = f
        self.n = n
        kind = [g.nodes[x].get("kind") for x in c.node_names]
        self._index_edges(c, g, kind)
        # NIC -> leaf
        self.nic_leaf = np.full(n, -1, np.int64)
        self.ok = True
        if not self._index_nic_leaves(c, g, kind):
            self.ok = False
            return
        leaves_of_pod = self._index_pods(c, g, kind)
        if not self._leaves_reach_spines(leaves_of_pod):
            self.ok = False
            return
        self.leaf_plane = np.zeros(n, np.int64)
        idx = c.node_index
        for x, d in g.nodes(data=True):
            if kind[idx[x]] == "switch" and d["tier"] == 1:
                self.leaf_plane[idx[x]] = d.get("plane", 0)
        self.ok = self._index_core_planes(c, g, kind)

    def _index_edges(self, c, g, kind: list) -> None:
        """Switch tier of every node, and the sorted (u, v) keys for edge lookup."""
        n = self.n
        self.tier = np.zeros(n, np.int64)
        for i, x in enumerate(c.node_names):
            if kind[i] == "switch":
                self.tier[i] = g.nodes[x]["tier"]
        # edge lookup by (u, v) index pairs
        self.key = c.link_src.astype(np.int64) * n + c.link_dst.astype(np.int64)
        self.order = np.argsort(self.key)
        self.skey = self.key[self.order]

    def _index_nic_leaves(self, c, g, kind: list) -> bool:
        """Fill ``nic_leaf``; False if some NIC does not sit under exactly one switch."""
        idx = c.node_index
        for nic in self.f.accels_of_nic:
            ups = [v for v in g.successors(nic) if kind[idx[v]] == "switch"]
            if len(ups) != 1:
                return False
            self.nic_leaf[idx[nic]] = idx[ups[0]]
        return True

    def _index_pods(self, c, g, kind: list) -> dict[int, list[int]]:
        """Leaf -> pod, pod -> spines (by node index), spine -> plane index j and pod;
        returns the leaves of each pod."""
        idx = c.node_index
        n = self.n
        self.leaf_pod = np.full(n, -1, np.int64)
        self.pod_spines: dict[int, np.ndarray] = {}
        self.spine_j = np.full(n, -1, np.int64)
        self.spine_pod = np.full(n, -1, np.int64)
        pods: dict[int, list[int]] = {}
        leaves_of_pod: dict[int, list[int]] = {}
        for x, d in g.nodes(data=True):
            if kind[idx[x]] != "switch":
                continue
            if d["tier"] == 2:
                pods.setdefault(d["pod"], []).append(idx[x])
            elif d["tier"] == 1 and "pod" in d:
                leaves_of_pod.setdefault(d["pod"], []).append(idx[x])
        for p, leaves in leaves_of_pod.items():
            self.leaf_pod[leaves] = p
        for p, sps in pods.items():
            arr = np.array(sorted(sps), np.int64)
            self.pod_spines[p] = arr
            self.spine_j[arr] = np.arange(len(arr))
            self.spine_pod[arr] = p
        return leaves_of_pod

    def _leaves_reach_spines(self, leaves_of_pod: dict[int, list[int]]) -> bool:
        """Whether every leaf of a pod reaches every spine of it."""
        for p, leaves in leaves_of_pod.items():
            sps = self.pod_spines.get(p)
            if sps is None:
                continue
            u = np.repeat(np.array(leaves, np.int64), len(sps))
            v = np.tile(sps, len(leaves))
            k = self.key_of(u, v)
            pos = np.minimum(np.searchsorted(self.skey, k), len(self.skey) - 1)
            if not np.array_equal(self.skey[pos], k):
                return False
        return True

    def _index_core_planes(self, c, g, kind: list) -> bool:
        """Fill ``plane_cores``; False if spine j of two pods of a plane has other cores."""
        idx = c.node_index
        # core planes: cores of a spine, which must be the same for spine j of every pod
        self.plane_cores: dict[tuple, np.ndarray] = {}
        for sps in self.pod_spines.values():
            for j, s in enumerate(sps.tolist()):
                cores = sorted(idx[v] for v in g.successors(c.node_names[s])
                               if kind[idx[v]] == "switch" and g.nodes[v]["tier"] == 3)
                if not cores:
                    continue
                key = (int(g.nodes[c.node_names[s]].get("plane", 0)), j)
                prev = self.plane_cores.get(key)
                arr = np.array(cores, np.int64)
                if prev is not None and not np.array_equal(prev, arr):
                    return False
                self.plane_cores[key] = arr
        return True

    @classmethod
    def of(cls, f: Fabric) -> ClosIndex | None:
        """The index of ``f``, or None if ``f`` is not a regular Clos (cached on the fabric
        until :meth:`~sim.fabric.fabric.Fabric.invalidate`)."""

        def make() -> ClosIndex | None:
            ix = cls(f) if f.meta.get("builder") in ("leaf_spine", "fat_tree",
                                                     "rail_optimized", "rail_only",
                                                     "multi_plane") else None
            return ix if ix is not None and ix.ok else None

        return f.derived("fabric.clos_index", make)

    def key_of(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u.astype(np.int64) * self.n + v.astype(np.int64)

    def edges(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Link ids of edges u -> v (arrays of node indices); every pair must exist."""
        k = self.key_of(u, v)
        pos = np.searchsorted(self.skey, k)
        assert np.all(self.skey[np.minimum(pos, len(self.skey) - 1)] == k), "missing edge"
        return self.order[pos]

    def ecmp(self, nic_a: np.ndarray, nic_b: np.ndarray, si: np.ndarray, di: np.ndarray,
             flow: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scale-out node paths NIC a -> NIC b for many flows.

        Returns
        -------
        path : int64[k, 7]
            Node indices nic_a, leaf, (spine, (core, spine),) leaf, nic_b; unused slots -1.
        length : int64[k]
            Nodes on each path.
        ok : bool[k]
            False where this index cannot route the pair (no shared switch, irregular
            wiring): those are left to the one-at-a-time router.
        """
        k = len(nic_a)
        la, lb = self.nic_leaf[nic_a], self.nic_leaf[nic_b]
        ok = (la >= 0) & (lb >= 0)
        pa, pb = self.leaf_pod[la], self.leaf_pod[lb]
        fl = np.full(k, flow, np.int64)
        path = np.full((k, 7), -1, np.int64)
        path[:, 0] = nic_a
        path[:, 1] = la
        same_leaf = ok & (la == lb)
        same_pod = ok & ~same_leaf & (pa == pb) & (pa >= 0)
        cross = ok & ~same_leaf & ~same_pod
        length = np.zeros(k, np.int64)
        # same leaf: nic, leaf, nic
        path[same_leaf, 2] = nic_b[same_leaf]
        length[same_leaf] = 3
        if same_pod.any() or cross.any():
            h1 = flow_hash_np(si, di, fl, la)
        if same_pod.any():
            self._same_pod(np.nonzero(same_pod)[0], pa, lb, nic_b, h1, path, length, ok)
        if cross.any():
            self._cross_pod(np.nonzero(cross)[0], pa, pb, la, lb, nic_b, si, di, fl, h1,
                            path, length, ok)
        return path, length, ok

    def _same_pod(self, i, pa, lb, nic_b, h1, path, length, ok) -> None:
        """Fill paths nic, leaf, spine, leaf, nic of flows ``i`` within one pod."""
        for p in np.unique(pa[i]).tolist():
            sel = i[pa[i] == p]
            sps = self.pod_spines.get(p)
            if sps is None:
                ok[sel] = False
                continue
            sp = sps[(h1[sel] % np.uint64(len(sps))).astype(np.int64)]
            path[sel, 2] = sp
            path[sel, 3] = lb[sel]
            path[sel, 4] = nic_b[sel]
            length[sel] = 5

    def _cross_pod(self, i, pa, pb, la, lb, nic_b, si, di, fl, h1, path, length, ok) -> None:
        """Fill paths nic, leaf, spine, core, spine, leaf, nic of flows ``i`` across pods."""
        bad = (pa[i] < 0) | (pb[i] < 0)
        ok[i[bad]] = False
        i = i[~bad]
        plane = self.leaf_plane[la[i]]
        for key in {(int(a), int(b), int(c_)) for a, b, c_ in zip(pa[i], pb[i], plane,
                                                                    strict=True)}:
            p_a, p_b, pl = key
            sel = i[(pa[i] == p_a) & (pb[i] == p_b) & (plane == pl)]
            sa, sb = self.pod_spines.get(p_a), self.pod_spines.get(p_b)
            usable = 0 if sa is None or sb is None else min(len(sa), len(sb))
            # spine j must exist in both pods and have cores
            if usable and all((pl, j) in self.plane_cores for j in range(usable)):
                pass
            else:
                ok[sel] = False
                continue
            j = (h1[sel] % np.uint64(usable)).astype(np.int64)
            sp_a = sa[j]
            h2 = flow_hash_np(si[sel], di[sel], fl[sel], sp_a)
            core = np.empty(len(sel), np.int64)
            for jj in np.unique(j).tolist():
                m = j == jj
                cores = self.plane_cores[(pl, jj)]
                core[m] = cores[(h2[m] % np.uint64(len(cores))).astype(np.int64)]
            path[sel, 2] = sp_a
            path[sel, 3] = core
            path[sel, 4] = sb[j]
            path[sel, 5] = lb[sel]
            path[sel, 6] = nic_b[sel]
            length[sel] = 7


def ecmp_link_sets(f: Fabric, src: list[str], dst: list[str]) -> np.ndarray:
    """Distinct link ids used by the ECMP routes (flow 0) of accelerator pairs, both
    directions included; vectorised on a regular Clos, else through the router."""
    c = f.compile()
    ix = ClosIndex.of(f)
    out: list[np.ndarray] = []
    rest = list(range(len(src)))
    if ix is not None and src:
        node_s = np.array([c.node_index[x] for x in src], np.int64)
        node_d = np.array([c.node_index[x] for x in dst], np.int64)
        nic_s = np.array([c.node_index[f.nics_of[x][0]] if f.nics_of.get(x) else -1
                          for x in src], np.int64)
        nic_d = np.array([c.node_index[f.nics_of[x][0]] if f.nics_of.get(x) else -1
                          for x in dst], np.int64)
        okn = (nic_s >= 0) & (nic_d >= 0) & (np.array([f.domain_of[a] != f.domain_of[b]
                                                        for a, b in zip(src, dst,
                                                                        strict=True)]))
        idx = np.nonzero(okn)[0]
        if len(idx):
            path, length, ok = ix.ecmp(nic_s[idx], nic_d[idx], node_s[idx], node_d[idx])
            idx, path, length = idx[ok], path[ok], length[ok]
            full = np.full((len(idx), path.shape[1] + 2), -1, np.int64)
            full[:, 0] = node_s[idx]
            full[:, 1:-1] = path
            full[np.arange(len(idx)), length + 1] = node_d[idx]
            for col in range(full.shape[1] - 1):
                has = col < length + 1
                if has.any():
                    out.append(ix.edges(full[has, col], full[has, col + 1]))
                    out.append(ix.edges(full[has, col + 1], full[has, col]))
            done = set(idx.tolist())
            rest = [k for k in rest if k not in done]
    router = f.router
    for k in rest:
        lk, _, _ = router.links(src[k], dst[k], "ecmp", 0)
        out.append(np.asarray(lk, np.int64))
        rev = [c.edge_index[(c.node_names[c.link_dst[i]], c.node_names[c.link_src[i]])]
               for i in lk]
        out.append(np.asarray(rev, np.int64))
    return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)
