"""Builders: node and link counts, degrees, capacities, oversubscription and bisection,
checked against closed forms and an independent max-flow."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from sim.catalog import load_catalog
from sim.errors import TopologyError
from sim.fabric import (
    Tier,
    bisection_per_accelerator,
    fat_tree,
    leaf_spine,
    multi_plane,
    nvl72_rack,
    nvswitch_node,
    rail_only,
    rail_optimized,
    tier_oversubscription,
    torus,
    twisted_torus,
    xgmi_mesh_node,
)

from .helpers import maxflow_bisection_per_accelerator

CAT = load_catalog()
NDR = CAT.links["ib-ndr"].bandwidth_Bps  # 50 GB/s


def _kinds(f):
    out = {}
    for _, k in f.graph.nodes(data="kind"):
        out[k] = out.get(k, 0) + 1
    return out


def _cables(f, tech=None):
    return sum(d["count"] for _, _, d in f.graph.edges(data=True)
               if tech is None or d["tech"] == tech) // 2


# ------------------------------------------------------------------ scale-up domains
def test_nvswitch_node_dgx_h100():
    f = nvswitch_node("DGX-H100")
    assert _kinds(f) == {"accelerator": 8, "nvswitch": 1, "nic": 8}
    nvs = "s0.nvs"
    assert f.graph.nodes[nvs]["chips"] == 4
    for a in f.accelerators:
        e = f.graph.edges[a, nvs]
        assert e["count"] == 18 and e["capacity"] == pytest.approx(450e9)  # 18 x 25 GB/s
        assert f.graph.edges[nvs, a]["capacity"] == e["capacity"]  # full duplex
    assert _cables(f, "nvlink4") == 8 * 18
    # every GPU has its own 400G NIC behind PCIe Gen5
    assert all(len(f.nics_of[a]) == 1 for a in f.accelerators)
    assert f.graph.edges["s0.g3", "s0.n3"]["tech"] == "pcie5"


def test_nvl72_rack():
    f = nvl72_rack("GB200-NVL72")
    assert f.n_accelerators == 72 and len(f.domains) == 1
    assert f.graph.nodes["s0.nvs"]["chips"] == 18
    # 72 GPUs x 18 links fit exactly on 18 chips x 72 ports
    assert sum(f.graph.edges[a, "s0.nvs"]["count"] for a in f.accelerators) == 18 * 72
    assert f.graph.edges["s0.g0", "s0.nvs"]["capacity"] == pytest.approx(900e9)


def test_xgmi_full_mesh():
    f = xgmi_mesh_node("MI300X-8")
    g = f.graph
    assert _cables(f, "xgmi3") == 8 * 7 // 2
    for a in f.accelerators:
        peers = [b for b in g.successors(a) if g.nodes[b]["kind"] == "accelerator"]
        assert len(peers) == 7
        assert all(g.edges[a, b]["capacity"] == pytest.approx(64e9) for b in peers)
    r = f.route("s0.g0", "s0.g5")
    assert r.nodes == ("s0.g0", "s0.g5") and r.switch_hops == 0


@pytest.mark.parametrize("dims", [(4, 4, 4), (2, 4, 8), (8, 8), (3, 5)])
def test_torus_counts_and_degree(dims):
    f = torus(dims)
    n = math.prod(dims)
    g = f.graph
    assert f.n_accelerators == n
    ndim_links = sum(1 for d in dims if d > 1)
    # each chip spreads its 6 ICI links over 2 x len(dims) neighbours -> per-neighbour count
    per = 6 // (2 * len(dims))
    for a in f.accelerators:
        assert sum(g.edges[a, b]["count"] for b in g.successors(a)) == per * 2 * ndim_links
    assert _cables(f) == n * ndim_links * per


def test_torus_bisection_closed_form_and_maxflow():
    f = torus((4, 4, 4))
    b = CAT.links["ici-v4"].bandwidth_Bps
    # k x k x k torus: 2 k^2 links cross a plane cut (wrap-around doubles it) -> 4b/k per chip
    assert bisection_per_accelerator(f)["torus"] == pytest.approx(4 * b / 4)
    order = sorted(f.accelerators, key=lambda a: f.torus[0].coords[a])
    assert maxflow_bisection_per_accelerator(f, order) == pytest.approx(4 * b / 4)


def _diameter(f):
    g = nx.Graph(f.graph.to_undirected())
    return nx.diameter(g)


def test_twisted_torus_shortens_diameter_keeps_degree():
    reg, tw = torus((4, 4, 8)), twisted_torus((4, 4, 8))
    assert _cables(reg) == _cables(tw)
    for a in tw.accelerators:
        assert sum(tw.graph.edges[a, b]["count"] for b in tw.graph.successors(a)) == 6
    assert _diameter(reg) == 2 + 2 + 4
    assert _diameter(tw) < _diameter(reg)


def test_twisted_torus_rejects_other_shapes():
    with pytest.raises(TopologyError, match="k x k x 2k"):
        twisted_torus((4, 4, 4))


# ------------------------------------------------------------------ scale-out
def test_leaf_spine_counts_and_bisection():
    # 16 DGX on ToR leaves of 4 servers (32 NICs): 4 leaves, 32 uplinks each, 2 spines
    f = leaf_spine(node="DGX-H100", servers=16, servers_per_leaf=4, leaf="QM9700",
                   spine="QM9700", link="ib-ndr")
    g = f.graph
    leaves = [n for n, d in g.nodes(data=True) if d.get("tier") == 1]
    spines = [n for n, d in g.nodes(data=True) if d.get("tier") == 2]
    assert len(leaves) == 4 and len(spines) == 2
    for lf in leaves:
        assert sum(g.edges[lf, s]["count"] for s in spines) == 32
        assert sum(1 for v in g.successors(lf) if g.nodes[v]["kind"] == "nic") == 32
    assert tier_oversubscription(f) == {"leaf": pytest.approx(1.0)}
    assert bisection_per_accelerator(f)["scale_out"] == pytest.approx(NDR)
    assert maxflow_bisection_per_accelerator(f) == pytest.approx(NDR)


@pytest.mark.parametrize("over", [1.0, 2.0, 4.0])
def test_rail_optimized_oversubscription_bisection_matches_maxflow(over):
    f = rail_optimized(node="DGX-H100", servers=8, servers_per_unit=4, leaf="QM9700",
                       spine="QM9700", link="ib-ndr", oversubscription=over)
    assert tier_oversubscription(f)["leaf"] == pytest.approx(over)
    formula = bisection_per_accelerator(f)["scale_out"]
    assert formula == pytest.approx(NDR / over)
    assert maxflow_bisection_per_accelerator(f) == pytest.approx(formula)


def test_rail_optimized_leaves_hold_one_rail_of_one_unit():
    f = rail_optimized(node="DGX-H100", servers=8, servers_per_unit=4, leaf="QM9700",
                       spine="QM9700", link="ib-ndr")
    g = f.graph
    leaves = [n for n, d in g.nodes(data=True) if d.get("tier") == 1]
    assert len(leaves) == 2 * 8
    for lf in leaves:
        nics = [v for v in g.successors(lf) if g.nodes[v]["kind"] == "nic"]
        assert len(nics) == 4
        assert len({g.nodes[n]["rail"] for n in nics}) == 1
        assert len({n.split(".")[0] for n in nics}) == 4  # four different servers


def test_superpod_1024_shape():
    """DGX SuperPOD: 4 units x 32 DGX; 32 rail leaves of 32 down/32 up; 16 spines."""
    f = rail_optimized(node="DGX-H100", servers=128, servers_per_unit=32, leaf="QM9700",
                       spine="QM9700", link="ib-ndr")
    kinds = {}
    for _, d in f.graph.nodes(data=True):
        if d["kind"] == "switch":
            kinds[d["tier"]] = kinds.get(d["tier"], 0) + 1
    assert kinds == {1: 32, 2: 16}
    assert _cables(f, "ib-ndr") == 1024 + 1024


def test_rail_only_rails_share_no_switch():
    f = rail_only(node="DGX-H100", servers=8, leaf="QM9700", link="ib-ndr")
    g = f.graph
    switches = [n for n, d in g.nodes(data=True) if d["kind"] == "switch"]
    assert len(switches) == 8  # one switch per rail holds all 8 servers
    for s in switches:
        rails = {g.nodes[v]["rail"] for v in g.successors(s) if g.nodes[v]["kind"] == "nic"}
        assert len(rails) == 1
    # without the scale-up domains, the scale-out part falls apart into 8 rails
    sub = g.subgraph([n for n, d in g.nodes(data=True) if d["kind"] in ("nic", "switch")])
    assert nx.number_weakly_connected_components(sub) == 8


def test_rail_only_large_rail_needs_spine():
    with pytest.raises(TopologyError, match="spine"):
        rail_only(node="DGX-H100", servers=128, leaf="QM9700", link="ib-ndr")
    f = rail_only(node="DGX-H100", servers=128, leaf="QM9700", spine="QM9700", link="ib-ndr")
    assert bisection_per_accelerator(f)["scale_out"] == pytest.approx(NDR)


def test_multi_plane_planes_are_separate():
    f = multi_plane(node="DGX-H100", servers=8, servers_per_leaf=2, leaf="QM9700",
                    spine="QM9700", link="ib-ndr", planes=2)
    g = f.graph
    for nic in f.accels_of_nic:
        leaves = [v for v in g.successors(nic) if g.nodes[v]["kind"] == "switch"]
        assert sorted(g.nodes[v]["plane"] for v in leaves) == [0, 1]
    for u, v in g.edges():
        du, dv = g.nodes[u], g.nodes[v]
        if du["kind"] == "switch" and dv["kind"] == "switch":
            assert du["plane"] == dv["plane"]
    # two planes double the injection: each NIC has two 400G ports
    assert bisection_per_accelerator(f)["scale_out"] == pytest.approx(2 * NDR)


def test_fat_tree_three_tiers_oversubscription():
    tiers = [Tier("QM9700", 1.0, None, "rack"), Tier("QM9700", 3.0, None, "row"),
             Tier("QM9700", 1.0, None, "hall")]
    f = fat_tree(node="DGX-H100", servers=32, servers_per_leaf=1, leaves_per_pod=8,
                 tiers=tiers, link="ib-ndr")
    ov = tier_oversubscription(f)
    assert ov["leaf"] == pytest.approx(1.0)
    assert ov["spine"] == pytest.approx(3.0, rel=0.05)
    # a balanced cut between pod halves crosses the 3:1 tier
    assert bisection_per_accelerator(f)["scale_out"] == pytest.approx(NDR / ov["spine"])
    assert maxflow_bisection_per_accelerator(f) == pytest.approx(NDR / ov["spine"], rel=1e-6)
    cores = [n for n, d in f.graph.nodes(data=True) if d.get("tier") == 3]
    pods = {d["pod"] for _, d in f.graph.nodes(data=True) if d.get("tier") == 2}
    assert len(pods) == 4
    for c in cores:  # every core reaches every pod
        assert {f.graph.nodes[s]["pod"] for s in f.graph.successors(c)} == pods


def test_switch_ports_never_exceed_radix():
    f = fat_tree(node="DGX-H100", servers=100, servers_per_leaf=2, leaves_per_pod=12,
                 link="eth-400g", tiers=[Tier("Minipack2", 1, None, "rack"),
                                         Tier("Minipack2", 7, None, "row"),
                                         Tier("Minipack2", 1, None, "hall")])
    g = f.graph
    for n, d in g.nodes(data=True):
        if d["kind"] == "switch":
            sw = CAT.switches[d["model"]]
            assert sum(e["count"] for _, _, e in g.out_edges(n, data=True)) <= sw.radix


def test_breakout_800g_switch_serves_400g_nics():
    f = leaf_spine(node="DGX-H100", servers=16, leaf="SN5600", spine="SN5600",
                   link="eth-400g")
    sw = CAT.switches["SN5600"]
    g = f.graph
    for n, d in g.nodes(data=True):
        if d["kind"] == "switch":
            ports = sum(e["count"] for _, _, e in g.out_edges(n, data=True))
            assert ports <= sw.radix * 2  # each 800G port splits into two 400G


@pytest.mark.parametrize("kw, match", [
    (dict(link="eth-800g", leaf="TH4", spine="TH4"), "port speed mismatch"),
    (dict(link="ib-ndr", leaf="QM8700", spine="QM8700"), "port speed mismatch"),
    (dict(link="ib-ndr", leaf="QM9700", spine="QM9700", servers_per_leaf=8), "radix"),
    (dict(link="ib-ndr", leaf="QM9700", spine="QM9700", oversubscription=0.5), ">= 1"),
    (dict(link="nvlink4", leaf="QM9700", spine="QM9700"), "not a scale-out link"),
])
def test_leaf_spine_rejects(kw, match):
    with pytest.raises(TopologyError, match=match):
        leaf_spine(node="DGX-H100", servers=16, **kw)


def test_every_leaf_reaches_every_spine_of_its_pod_and_spine_j_its_core_plane():
    f = rail_optimized(node="DGX-H100", servers=256, servers_per_unit=32, leaf="QM9700",
                       spine="QM9700", core="QM9700", link="ib-ndr", units_per_pod=4)
    g = f.graph
    by_pod = {}
    for n, d in g.nodes(data=True):
        if d.get("tier") == 2:
            by_pod.setdefault(d["pod"], []).append(n)
    for n, d in g.nodes(data=True):
        if d.get("tier") == 1:
            ups = {v for v in g.successors(n) if g.nodes[v].get("tier") == 2}
            assert ups == set(by_pod[d["pod"]])
    planes = {}
    for sps in by_pod.values():
        for j, s in enumerate(sorted(sps, key=lambda x: int(x[2:]))):
            cores = frozenset(v for v in g.successors(s) if g.nodes[v].get("tier") == 3)
            planes.setdefault(j, set()).add(cores)
    assert all(len(v) == 1 for v in planes.values())  # spine j of every pod: same cores


def test_pod_too_large_for_its_spines_is_an_error():
    # 8 units x 8 rail leaves = 64 leaves of 32 uplinks: 64 spines needed, a leaf reaches 32
    with pytest.raises(TopologyError, match="more than a leaf can reach") as e:
        rail_optimized(node="DGX-H100", servers=512, servers_per_unit=32, leaf="QM9700",
                       spine="QM9700", core="QM9700", link="ib-ndr", units_per_pod=8)
    assert e.value.field == "params.spine"


def test_a_partial_pod_has_every_spine_plane_and_reaches_every_core():
    """Under a core tier, spine j of every pod joins core plane j, so a partial pod (the
    16K Llama 3 shape: 5 pods of 192 leaves and one of 64) needs as many spines as a full
    one, each reaching every core of its plane; with fewer, traffic to it would cross a
    few planes only and 1:1 above the pods would be slower than 7:1."""
    tiers = [Tier("Minipack2", 1, None, "rack"), Tier("7816R3", 1, None, "row"),
             Tier("7816R3", 1, None, "hall")]
    f = fat_tree(node="DGX-H100", servers=2048, servers_per_leaf=2, leaves_per_pod=192,
                 link="eth-400g", tiers=tiers)
    g = f.graph
    by_pod: dict = {}
    for n, d in g.nodes(data=True):
        if d.get("tier") == 2:
            by_pod.setdefault(d["pod"], []).append(n)
    assert len(by_pod) == 6 and len({len(v) for v in by_pod.values()}) == 1
    cores_of_plane: dict = {}
    for n, d in g.nodes(data=True):
        if d.get("tier") == 3:
            cores_of_plane.setdefault(d["core_plane"], set()).add(n)
    for sps in by_pod.values():
        for j, s in enumerate(sorted(sps, key=lambda x: int(x[2:]))):
            ups = {v for v in g.successors(s) if g.nodes[v].get("tier") == 3}
            assert ups == cores_of_plane[j]
    # a balanced cut is as wide as the injection bandwidth: 1:1 end to end
    assert bisection_per_accelerator(f)["scale_out"] == pytest.approx(
        CAT.links["eth-400g"].bandwidth_Bps, rel=0.02)
