"""Network kernels against their pure-Python twins, and the max-min properties."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

from sim.network.kernels import (
    bottleneck_time,
    bottleneck_time_py,
    maxmin_rates,
    maxmin_rates_py,
)
from tests.strategies import csr


@settings(max_examples=100, deadline=None)
@given(csr(positive=True))
def test_bottleneck_time_matches_twin(case):
    _, links, weights, cap, _ = case
    assert bottleneck_time(links, weights, cap) == bottleneck_time_py(links, weights, cap)


@settings(max_examples=300, deadline=None)
@given(csr())
def test_maxmin_matches_twin_and_is_maxmin_fair(case):
    indptr, links, weights, cap, n_links = case
    r = maxmin_rates(indptr, links, weights, cap, n_links)
    r_py = maxmin_rates_py(indptr, links, weights, cap, n_links)
    assert np.allclose(r, r_py, rtol=1e-9)
    n = len(indptr) - 1
    load = np.zeros(n_links)
    for t in range(n):
        if indptr[t + 1] == indptr[t]:
            assert r[t] == np.inf  # a transfer on no link is not limited
            continue
        assert r[t] > 0
        np.add.at(load, links[indptr[t]:indptr[t + 1]], weights[indptr[t]:indptr[t + 1]] * r[t])
    assert np.all(load <= cap * (1 + 1e-9))  # no link over capacity
    # max-min optimality: each transfer crosses a saturated link on which no other
    # transfer has a higher rate (so its rate cannot grow without lowering a smaller one)
    saturated = load >= cap * (1 - 1e-9)
    for t in range(n):
        lk = links[indptr[t]:indptr[t + 1]]
        if len(lk) == 0:
            continue
        ok = False
        for link in lk[saturated[lk]]:
            others = [u for u in range(n) if link in links[indptr[u]:indptr[u + 1]]]
            if all(r[u] <= r[t] * (1 + 1e-9) for u in others):
                ok = True
        assert ok, f"transfer {t} has no bottleneck link"


def test_maxmin_closed_forms():
    # two flows share link 0 (cap 10), one of them also uses link 1 (cap 2)
    indptr = np.array([0, 1, 3])
    links = np.array([0, 0, 1])
    w = np.ones(3)
    r = maxmin_rates(indptr, links, w, np.array([10.0, 2.0]), 2)
    assert np.allclose(r, [8.0, 2.0])
    # a transfer whose links carry 1/2 and 1 of its bottleneck bytes
    r = maxmin_rates(np.array([0, 2]), np.array([0, 1]), np.array([0.5, 1.0]),
                     np.array([1.0, 4.0]), 2)
    assert np.allclose(r, [2.0])  # link 0: 0.5 r <= 1


def test_maxmin_is_deterministic_and_fast_enough_to_call_often():
    rng = np.random.default_rng(3)
    nl, nt = 5_000, 1_000
    indptr = np.arange(0, nt * 6 + 1, 6, dtype=np.int64)
    links = rng.integers(0, nl, nt * 6).astype(np.int64)
    w = rng.uniform(0.1, 1, nt * 6)
    cap = rng.uniform(1e9, 5e10, nl)
    a = maxmin_rates(indptr, links, w, cap, nl)
    b = maxmin_rates(indptr, links, w, cap, nl)
    assert np.array_equal(a, b)
