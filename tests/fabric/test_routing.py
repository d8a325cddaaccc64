"""Routing: valid flows, shortest paths, ECMP determinism and spread, spraying, PXN on
rail-only, dimension order on tori, and no all-pairs state at scale."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import RoutingError
from sim.fabric import (
    Tier,
    fat_tree,
    flow_hash,
    nvswitch_node,
    rail_only,
    rail_optimized,
    torus,
    twisted_torus,
)

from .helpers import assert_valid_route


@pytest.fixture(scope="module")
def superpod():
    return rail_optimized(node="DGX-H100", servers=16, servers_per_unit=4, leaf="QM9700",
                          spine="QM9700", link="ib-ndr")


@pytest.fixture(scope="module")
def tree3():
    return fat_tree(node="DGX-H100", servers=32, servers_per_leaf=1, leaves_per_pod=8,
                    link="eth-400g", tiers=[Tier("TH4", 1, None, "rack"),
                                            Tier("TH4", 1, None, "row"),
                                            Tier("TH4", 1, None, "hall")])


def test_flow_hash_is_stable_and_mixes():
    assert flow_hash(1, 2, 3) == flow_hash(1, 2, 3)
    assert flow_hash(1, 2, 3) != flow_hash(1, 2, 4)
    # low bits spread: 4,096 consecutive keys land evenly over 16 buckets
    counts = np.bincount([flow_hash(7, k) % 16 for k in range(4096)], minlength=16)
    assert counts.min() > 4096 / 16 * 0.75


def test_intra_server_route_is_one_nvswitch_hop():
    f = nvswitch_node()
    r = f.route("s0.g0", "s0.g7")
    assert r.nodes == ("s0.g0", "s0.nvs", "s0.g7")
    assert r.hops == 2 and r.switch_hops == 1
    c = f.compile()
    assert r.latency_s == pytest.approx(c.latency_s[r.links].sum())


@pytest.mark.parametrize("policy", ["ecmp", "spray"])
def test_routes_are_valid_unit_flows(superpod, tree3, policy):
    rng = np.random.default_rng(0)
    for f in (superpod, tree3):
        accs = f.accelerators
        for _ in range(60):
            a, b = rng.choice(len(accs), 2, replace=False)
            assert_valid_route(f, f.route(accs[a], accs[b], policy=policy, flow=int(a)))


def test_same_rail_stays_under_one_leaf_cross_rail_uses_spine(superpod):
    same = superpod.route("s0.g3", "s1.g3", policy="ecmp")  # same unit, same rail
    assert same.switch_hops == 1 and same.hops == 4  # gpu-nic-leaf-nic-gpu
    cross = superpod.route("s0.g3", "s1.g4", policy="ecmp")  # same unit, other rail
    assert cross.switch_hops == 3 and cross.hops == 6  # ... leaf-spine-leaf ...
    far = superpod.route("s0.g3", "s9.g3", policy="ecmp")  # other unit, same rail
    assert far.switch_hops == 3


def test_three_tier_hops(tree3):
    same_leaf = tree3.route("s0.g0", "s0.g0")
    assert same_leaf.hops == 0
    same_pod = tree3.route("s0.g0", "s1.g0", policy="ecmp")
    other_pod = tree3.route("s0.g0", "s31.g0", policy="ecmp")
    assert same_pod.switch_hops == 3 and other_pod.switch_hops == 5
    # spray keeps the same shortest length as ECMP: expected latency equals the path's
    sp = tree3.route("s0.g0", "s31.g0", policy="spray")
    assert sp.hops == other_pod.hops
    assert sp.latency_s == pytest.approx(other_pod.latency_s)


def test_ecmp_deterministic_across_rebuilds():
    kw = dict(node="DGX-H100", servers=16, servers_per_unit=4, leaf="QM9700", spine="QM9700",
              link="ib-ndr")
    f1, f2 = rail_optimized(**kw), rail_optimized(**kw)
    for flow in range(20):
        assert f1.route("s0.g0", "s13.g5", policy="ecmp", flow=flow).nodes == \
            f2.route("s0.g0", "s13.g5", policy="ecmp", flow=flow).nodes


def test_ecmp_flows_spread_over_spines_and_spray_splits_evenly(superpod):
    spines = [n for n, d in superpod.graph.nodes(data=True) if d.get("tier") == 2]
    used = [superpod.route("s0.g0", "s13.g5", policy="ecmp", flow=k).nodes[3]
            for k in range(400)]
    assert set(used) <= set(spines)
    counts = np.array([used.count(s) for s in spines])
    assert (counts > 0).all()  # every spine gets some flow
    # spray: every spine carries exactly 1/len(spines) of the flow
    r = superpod.route("s0.g0", "s13.g5", policy="spray")
    c = superpod.compile()
    into = {}
    for lid, w in zip(r.links, r.weights, strict=True):
        dst = c.node_names[c.link_dst[lid]]
        if dst in spines:
            into[dst] = into.get(dst, 0.0) + w
    assert sorted(into) == sorted(spines)
    assert np.allclose(list(into.values()), 1 / len(spines))


def test_rail_only_cross_rail_goes_through_nvlink_pxn():
    f = rail_only(node="DGX-H100", servers=8, leaf="QM9700", link="ib-ndr")
    r = f.route("s0.g0", "s5.g3", policy="ecmp")
    # first to the source server's GPU on rail 3 over NVLink, then rail 3's switch
    assert r.nodes[:4] == ("s0.g0", "s0.nvs", "s0.g3", "s0.n3")
    assert r.nodes[-2:] == ("s5.n3", "s5.g3")
    assert_valid_route(f, r)
    same_rail = f.route("s0.g3", "s5.g3", policy="ecmp")
    assert "s0.nvs" not in same_rail.nodes


@pytest.mark.parametrize("dims", [(4, 4, 4), (2, 3, 5), (8, 8)])
def test_torus_dimension_order_is_shortest(dims):
    f = torus(dims)
    t = f.torus[0]
    rng = np.random.default_rng(1)
    accs = f.accelerators
    for _ in range(40):
        a, b = (accs[i] for i in rng.choice(len(accs), 2, replace=False))
        r = f.route(a, b)
        ca, cb = t.coords[a], t.coords[b]
        dist = sum(min((x - y) % k, (y - x) % k) for x, y, k in zip(ca, cb, dims, strict=True))
        assert r.hops == dist
        assert_valid_route(f, r)
        # dimension order: coordinates change one dimension at a time, in order
        changed = [next(i for i in range(len(dims)) if t.coords[u][i] != t.coords[v][i])
                   for u, v in zip(r.nodes, r.nodes[1:], strict=False)]
        assert changed == sorted(changed)


def test_twisted_torus_routes_are_shortest():
    import networkx as nx

    f = twisted_torus((4, 4, 8))
    und = f.graph.to_undirected()
    accs = f.accelerators
    for b in accs[::7]:
        r = f.route(accs[0], b)
        assert r.hops == nx.shortest_path_length(und, accs[0], b)
        assert_valid_route(f, r)


def test_unknown_endpoint_is_a_routing_error(superpod):
    with pytest.raises(RoutingError):
        superpod.route("s0.g0", "s0.nvs")


def test_large_fabric_routes_without_all_pairs_state():
    """8,192 GPUs: routing 2,048 ring neighbours touches only the switches on their paths;
    the router keeps one entry per route asked and ancestor sets per node touched."""
    f = rail_optimized(node="DGX-H100", servers=1024, servers_per_unit=32, leaf="QM9700",
                       spine="QM9700", core="QM9700", units_per_pod=4, link="ib-ndr")
    accs = f.accelerators
    n = len(accs)
    for i in range(0, n, 4):
        r = f.route(accs[i], accs[(i + 8) % n], policy="ecmp")
        # same rail, next server: one leaf, unless it crosses a unit (spine) or pod (core)
        last_in_unit = (i // 8) % 32 == 31
        last_in_pod = (i // 8) % 128 == 127
        assert r.switch_hops == (5 if last_in_pod else 3 if last_in_unit else 1)
    router = f.router
    assert len(router._cache) == n // 4
    switches = sum(1 for _, k in f.graph.nodes(data="kind") if k == "switch")
    assert len(router._anc) <= switches + n
