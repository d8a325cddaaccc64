"""Shared checks for fabric tests: max-flow bisection and route validity."""

from __future__ import annotations

from collections import defaultdict

import networkx as nx
import numpy as np


def maxflow_bisection_per_accelerator(f, order=None) -> float:
    """Max flow from the first half of the accelerators to the second half, per
    accelerator of a half (bytes/s), by networkx (the independent reference)."""
    accs = order or f.accelerators
    half = len(accs) // 2
    g = nx.DiGraph()
    for u, v, d in f.graph.edges(data=True):
        g.add_edge(u, v, capacity=d["capacity"])
    for a in accs[:half]:
        g.add_edge("SRC", a)  # no capacity attribute = infinite
    for a in accs[half:]:
        g.add_edge(a, "SNK")
    value = nx.maximum_flow_value(g, "SRC", "SNK")
    return value / half


def assert_valid_route(f, r) -> None:
    """A route's links form a flow of one unit from src to dst: conservation at every
    intermediate node, 1 out of src, 1 into dst, and each link is a real edge."""
    c = f.compile()
    src, dst = c.node_index[r.src], c.node_index[r.dst]
    net = defaultdict(float)
    for lid, w in zip(r.links, r.weights, strict=True):
        assert 0 < w <= 1 + 1e-12
        net[int(c.link_src[lid])] -= w
        net[int(c.link_dst[lid])] += w
    if r.src == r.dst:
        assert len(r.links) == 0
        return
    assert np.isclose(net.pop(src), -1.0)
    assert np.isclose(net.pop(dst), 1.0)
    for node, v in net.items():
        assert abs(v) < 1e-9, f"flow not conserved at {c.node_names[node]}: {v}"
    if r.nodes is not None:
        assert r.nodes[0] == r.src and r.nodes[-1] == r.dst
        assert list(r.links) == sorted(c.links_of(list(r.nodes)))
        assert r.hops == len(r.nodes) - 1
