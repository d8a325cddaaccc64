"""Numerical kernel of the collectives: the link loads of a set of routed flows.

Each ``@njit`` kernel has a pure-Python twin (suffix ``_py``) that is its specification;
tests hold the two equal on random inputs. Kernels take flat arrays, never objects.

Conventions. Routes are in CSR form: flow ``f`` uses links ``links[indptr[f]:indptr[f+1]]``
carrying fractions ``weights[...]`` of its bytes (1 on every link of a single path,
fractions that sum to 1 per hop for a sprayed flow). The network engine's kernels (max-min
fair rates, a transfer's bottleneck time) are in :mod:`sim.network.kernels`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["link_loads", "link_loads_py"]


@njit(cache=True)
def link_loads(indptr, links, weights, flow_bytes, n_links):  # pragma: no cover - jitted
    """Bytes each link carries when flow ``f`` sends ``flow_bytes[f]`` along its route.

    Parameters
    ----------
    indptr : int64[n_flows + 1]
    links : int64[nnz]
        Link ids.
    weights : float64[nnz]
        Fraction of the flow's bytes on each link.
    flow_bytes : float64[n_flows]
        Bytes of each flow.
    n_links : int
        Number of links of the fabric.

    Returns
    -------
    float64[n_links]
        Bytes per link (per direction).
    """
    out = np.zeros(n_links, np.float64)
    for f in range(len(indptr) - 1):
        b = flow_bytes[f]
        for j in range(indptr[f], indptr[f + 1]):
            out[links[j]] += weights[j] * b
    return out


def link_loads_py(indptr, links, weights, flow_bytes, n_links):
    """Pure-Python twin of :func:`link_loads` (the specification)."""
    out = [0.0] * n_links
    for f in range(len(indptr) - 1):
        for j in range(indptr[f], indptr[f + 1]):
            out[int(links[j])] += float(weights[j]) * float(flow_bytes[f])
    return np.array(out)
