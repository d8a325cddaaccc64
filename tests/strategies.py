"""Hypothesis strategies shared by the kernel tests (tests/collectives, tests/network)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def csr(draw, max_links=12, max_items=10, positive=False):
    """Random CSR rows over a few links: ``(indptr, links, weights, capacity, n_links)``;
    distinct links per row, weights in [0.05, 1], every row non-empty if ``positive``."""
    n_links = draw(st.integers(1, max_links))
    n = draw(st.integers(1, max_items))
    indptr = [0]
    links, weights = [], []
    for _ in range(n):
        k = draw(st.integers(1 if positive else 0, min(n_links, 4)))
        ls = draw(st.lists(st.integers(0, n_links - 1), min_size=k, max_size=k, unique=True))
        links += ls
        weights += draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k))
        indptr.append(len(links))
    cap = draw(st.lists(st.floats(0.5, 100.0), min_size=n_links, max_size=n_links))
    return (np.array(indptr, np.int64), np.array(links, np.int64), np.array(weights),
            np.array(cap), n_links)
