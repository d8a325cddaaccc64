"""Numerical kernels of the network engine: the bottleneck time of one transfer alone, and
the max-min fair rates of concurrent transfers (progressive filling).

They serve :mod:`sim.network.models`. Each ``@njit`` kernel has a pure-Python twin (suffix
``_py``) that is its specification; tests hold the two equal on random inputs. Kernels
take flat arrays, never objects.

Conventions. A *transfer* (a collective phase, a coflow) is a sparse vector of bytes per
link; transfers are given in CSR form: transfer ``t`` uses links
``links[indptr[t]:indptr[t+1]]`` with weights ``weights[...]``. In the max-min kernel a
transfer's rate ``r`` means "bytes per second on its most loaded link", so it puts
``w_l r`` on link ``l`` with ``w_l = bytes_l / max(bytes)`` (so 0 < w <= 1), and a transfer
alone on the network finishes in exactly ``max_l bytes_l / capacity_l``, the analytical
model's time.

Main assumption: fluid sharing; a link's capacity is divided among the transfers crossing
it with no packet-level effects (queueing, loss, congestion control dynamics).
"""

from __future__ import annotations

import heapq

import numpy as np
from numba import njit

__all__ = [
    "maxmin_rates",
    "maxmin_rates_py",
    "bottleneck_time",
    "bottleneck_time_py",
]


@njit(cache=True)
def bottleneck_time(link_ids, link_bytes, capacity):  # pragma: no cover - jitted
    """max over links of bytes / capacity (s): the bandwidth time of one transfer alone."""
    t = 0.0
    for j in range(len(link_ids)):
        x = link_bytes[j] / capacity[link_ids[j]]
        if x > t:
            t = x
    return t


def bottleneck_time_py(link_ids, link_bytes, capacity):
    """Pure-Python twin of :func:`bottleneck_time`."""
    return max((float(b) / float(capacity[int(lk)]) for lk, b in zip(link_ids, link_bytes,
                                                                      strict=True)),
               default=0.0)


@njit(cache=True)
def maxmin_rates(indptr, links, weights, capacity, n_links):  # pragma: no cover - jitted
    """Max-min fair rates of transfers sharing links, by progressive filling.

    All unfrozen transfers raise their rate together; when a link fills, every transfer
    crossing it freezes at the current level. Links are kept in a heap keyed by the level
    at which they would fill, so the cost is O(nnz log nnz), not O(transfers x links).

    Parameters
    ----------
    indptr, links, weights : CSR arrays
        Transfer ``t`` puts ``weights[j] * rate_t`` bytes/s on link ``links[j]``.
    capacity : float64[n_links]
        Link capacities (bytes/s).
    n_links : int

    Returns
    -------
    float64[n_transfers]
        Rates; a transfer with no links gets +inf.
    """
    n = len(indptr) - 1
    nnz = indptr[n]
    rate = np.full(n, np.inf)
    frozen = np.zeros(n, np.bool_)
    used = np.zeros(n_links, np.float64)
    aw = np.zeros(n_links, np.float64)  # summed weights of unfrozen transfers per link
    # link -> transfers (CSC)
    cnt = np.zeros(n_links + 1, np.int64)
    remaining = 0
    for t in range(n):
        if indptr[t + 1] > indptr[t]:
            remaining += 1
        else:
            frozen[t] = True
        for j in range(indptr[t], indptr[t + 1]):
            aw[links[j]] += weights[j]
            cnt[links[j] + 1] += 1
    for lk in range(n_links):
        cnt[lk + 1] += cnt[lk]
    fill = cnt[:-1].copy()
    col_t = np.empty(nnz, np.int64)
    for t in range(n):
        for j in range(indptr[t], indptr[t + 1]):
            lk = links[j]
            col_t[fill[lk]] = t
            fill[lk] += 1
    cur = np.full(n_links, np.inf)
    heap = [(np.inf, np.int64(-1))]
    heap.pop()
    for lk in range(n_links):
        if aw[lk] > 0.0:
            cur[lk] = capacity[lk] / aw[lk]
            heap.append((cur[lk], np.int64(lk)))
    heapq.heapify(heap)
    level = 0.0
    while remaining > 0 and len(heap) > 0:
        x, lk = heapq.heappop(heap)
        if x != cur[lk] or aw[lk] <= 0.0:
            continue
        if x > level:
            level = x
        cur[lk] = np.inf
        for k in range(cnt[lk], cnt[lk + 1]):
            t = col_t[k]
            if frozen[t]:
                continue
            frozen[t] = True
            rate[t] = level
            remaining -= 1
            for j in range(indptr[t], indptr[t + 1]):
                l2 = links[j]
                used[l2] += weights[j] * level
                aw[l2] -= weights[j]
                if l2 != lk:
                    if aw[l2] > 1e-12 * weights[j]:
                        # level at which l2 fills: what frozen transfers leave of its
                        # capacity, shared by the unfrozen weight (all at the same level)
                        nx = (capacity[l2] - used[l2]) / aw[l2]
                        cur[l2] = nx
                        heapq.heappush(heap, (nx, l2))
                    else:
                        aw[l2] = 0.0
                        cur[l2] = np.inf
    return rate


def maxmin_rates_py(indptr, links, weights, capacity, n_links):
    """Pure-Python twin of :func:`maxmin_rates`: progressive filling, one level at a time."""
    n = len(indptr) - 1
    members = [[(int(links[j]), float(weights[j])) for j in range(indptr[t], indptr[t + 1])]
               for t in range(n)]
    rate = [np.inf if not m else None for m in members]
    cap = [float(c) for c in capacity]
    used = [0.0] * n_links
    level = 0.0
    while any(r is None for r in rate):
        active = [t for t in range(n) if rate[t] is None]
        w = {}
        for t in active:
            for lk, x in members[t]:
                w[lk] = w.get(lk, 0.0) + x
        level = max(level, min((cap[lk] - used[lk]) / x for lk, x in w.items() if x > 1e-300))
        full = {lk for lk, x in w.items() if x > 1e-300 and used[lk] + x * level >=
                cap[lk] * (1 - 1e-12)}
        newly = [t for t in active if any(lk in full for lk, _ in members[t])]
        for t in newly:
            rate[t] = level
        for t in newly:
            for lk, x in members[t]:
                used[lk] += x * level
    return np.array(rate, dtype=float)
