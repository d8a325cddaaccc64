"""Links that fail or degrade (sim.fabric.failures): traffic moves to the surviving paths,
the bandwidth left is what the graph's max flow says, and a repair restores the fabric."""

from __future__ import annotations

import networkx as nx
import pytest

from sim.collectives.algorithms import pair_phase
from sim.collectives.timing import compile_phase, link_capacity
from sim.errors import TopologyError
from sim.fabric import leaf_spine
from sim.fabric.failures import fail_links, repair


def _fabric(routing: str = "spray"):
    # 64 DGX H100 under 16 ToR leaves at 2:1 (32 NICs, 16 uplinks each), 4 spines: every
    # leaf has a bundle of 4 cables to each spine
    return leaf_spine(node="DGX-H100", servers=64, leaf="QM9700", spine="QM9700",
                      link="ib-ndr", servers_per_leaf=4, oversubscription=2, routing=routing)


def _tiers(f):
    g = f.graph
    leaves = sorted((n for n, d in g.nodes(data=True) if d.get("tier") == 1),
                    key=lambda x: int(x[1:]))
    spines = sorted((n for n, d in g.nodes(data=True) if d.get("tier") == 2),
                    key=lambda x: int(x[2:]))
    return leaves, spines


def _unit_time(f, routing="spray"):
    """Seconds per byte of 32 flows from the 32 GPUs under leaf 0 to the 32 under leaf 1."""
    a, b = f.accelerators[:32], f.accelerators[32:64]
    return compile_phase(f, tuple(a + b), pair_phase(32, "x"), routing,
                         link_capacity(f)).unit_time_s


def _maxflow(f) -> float:
    """Bytes/s from leaf 0's GPUs to leaf 1's, by networkx on the graph (the reference)."""
    g = nx.DiGraph()
    for u, v, d in f.graph.edges(data=True):
        g.add_edge(u, v, capacity=d["capacity"])
    for x in f.accelerators[:32]:
        g.add_edge("S", x)
    for x in f.accelerators[32:64]:
        g.add_edge(x, "T")
    return nx.maximum_flow_value(g, "S", "T")


def test_a_dead_bundle_moves_traffic_to_the_other_spines_and_repair_restores_it():
    f = _fabric()
    leaves, spines = _tiers(f)
    assert len(spines) == 4 and f.graph.edges[leaves[0], spines[0]]["count"] == 4
    eff = f.catalog.links["ib-ndr"].protocol_efficiency
    t0 = _unit_time(f)
    assert 32 / t0 == pytest.approx(_maxflow(f) * eff, rel=1e-9)  # 16 uplinks bind
    tok = fail_links(f, [(leaves[0], spines[0])])
    assert not f.graph.has_edge(leaves[0], spines[0])
    assert not f.graph.has_edge(spines[0], leaves[0])
    t1 = _unit_time(f)
    assert t1 == pytest.approx(t0 * 16 / 12, rel=1e-9)  # 12 of 16 uplinks left
    assert 32 / t1 == pytest.approx(_maxflow(f) * eff, rel=1e-9)  # what the graph allows
    repair(f, tok)
    assert f.graph.edges[leaves[0], spines[0]]["count"] == 4
    assert _unit_time(f) == t0


def test_a_cable_of_a_bundle_and_a_degraded_link():
    f = _fabric()
    leaves, spines = _tiers(f)
    cap = f.graph.edges[leaves[1], spines[1]]["capacity"]
    tok = fail_links(f, [(leaves[1], spines[1])], cables=1)
    e = f.graph.edges[spines[1], leaves[1]]
    assert e["count"] == 3 and e["capacity"] == pytest.approx(cap * 3 / 4)
    repair(f, tok)
    tok = fail_links(f, [(leaves[0], spines[0])], rate=0.5)
    assert f.graph.edges[leaves[0], spines[0]]["capacity"] == pytest.approx(cap / 2)
    assert _unit_time(f) > _unit_time(_fabric())
    repair(f, tok)
    assert f.graph.edges[leaves[0], spines[0]]["capacity"] == cap


def test_ecmp_routes_avoid_a_dead_link():
    f = _fabric("ecmp")
    leaves, spines = _tiers(f)
    fail_links(f, [(leaves[0], spines[0])])
    c = f.compile()
    dead = {(leaves[0], spines[0]), (spines[0], leaves[0])}
    for a, b in zip(f.accelerators[:32], f.accelerators[32:64], strict=True):
        lk, _, _ = f.router.links(a, b, "ecmp", 0)
        used = {(c.node_names[c.link_src[i]], c.node_names[c.link_dst[i]]) for i in lk}
        assert not used & dead


@pytest.mark.parametrize("kw, frag", [
    (dict(pairs=[("l0", "l1")]), "no link l0 -> l1"),
    (dict(pairs=[("l0", "sp0")], cables=9), "has 4 cables, cannot fail 9"),
    (dict(pairs=[("l0", "sp0")], rate=1.5), "rate must be in [0, 1)"),
])
def test_bad_failures_are_errors(kw, frag):
    f = _fabric()
    with pytest.raises(TopologyError, match=frag.replace("[", r"\[").replace(")", r"\)")):
        fail_links(f, **kw)


def test_a_failure_that_would_cut_the_fabric_is_refused_and_nothing_changes():
    f = _fabric()
    leaves, spines = _tiers(f)
    edges = f.graph.number_of_edges()
    with pytest.raises(TopologyError, match="cut the fabric in two"):
        fail_links(f, [(leaves[0], s) for s in spines])
    assert f.graph.number_of_edges() == edges
