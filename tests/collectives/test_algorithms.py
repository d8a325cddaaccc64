"""Collective algorithms on fabrics: closed forms on uniform links, the fabric effects that
matter in practice (ECMP collisions, in-network reduction, oversubscription), and bad
requests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sim.catalog import load_catalog
from sim.collectives import collective_time, compile_plan, phase_times
from sim.errors import ConfigError, InfeasibleError
from sim.fabric import load_topology, nvswitch_node, torus

CAT = load_catalog()
TOPO = Path(__file__).resolve().parents[2] / "topologies"
B = 450e9 * CAT.links["nvlink4"].protocol_efficiency  # one H100's NVLink, per direction
B_P2P = 450e9 * CAT.links["nvlink4"].p2p_efficiency  # the same, every GPU to all its peers
GIB = 2**30


@pytest.fixture(scope="module")
def dgx():
    return nvswitch_node("DGX-H100")


@pytest.fixture(scope="module")
def ib():
    return load_topology(TOPO / "dgx-h100-superpod-ib.yaml")


@pytest.fixture(scope="module")
def roce():
    return load_topology(TOPO / "dgx-h100-superpod-roce.yaml")


def _unit(plan):
    return sum(ph.unit_time_s for ph in plan.phases)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_ring_all_reduce_alpha_beta_closed_form(dgx, p):
    """T = base + 2(p-1) alpha + 2(p-1)/p n / B' on uniform links, to 1e-9."""
    plan = compile_plan(dgx, "all_reduce", p, "ring")
    assert plan.phases[0].steps == 2 * (p - 1)
    assert _unit(plan) == pytest.approx(2 * (p - 1) / p / B, rel=1e-9)
    proto = CAT.protocols["LL128"]
    c = dgx.compile()
    path = c.latency_s[c.edge_index[("s0.g0", "s0.nvs")]] + \
        c.latency_s[c.edge_index[("s0.nvs", "s0.g1")]]
    alpha = max(proto.hop_latency_nvlink_s, path)
    n = GIB  # large enough for every channel
    t = sum(a + b for a, b in phase_times(dgx, plan, n, "LL128"))
    want = proto.base_latency_s + 2 * (p - 1) * alpha + 2 * (p - 1) / p * n / (
        proto.bandwidth_factor * B)
    assert t == pytest.approx(want, rel=1e-9)


def test_halving_doubling_closed_form(dgx):
    plan = compile_plan(dgx, "all_reduce", 8, "halving_doubling")
    assert [ph.steps for ph in plan.phases] == [1] * 6  # 2 log2 p exchange steps
    assert [ph.unit_time_s * B for ph in plan.phases] == pytest.approx(
        [1 / 2, 1 / 4, 1 / 8, 1 / 8, 1 / 4, 1 / 2], rel=1e-9)
    assert _unit(plan) == pytest.approx(2 * 7 / 8 / B, rel=1e-9)
    with pytest.raises(InfeasibleError, match="does not implement"):
        compile_plan(dgx, "all_reduce", 6, "halving_doubling")  # not a power of two


def test_tree_in_one_domain_is_a_chain(dgx):
    plan = compile_plan(dgx, "all_reduce", 8, "tree")
    # an interior rank sends n up and n down the chain
    assert _unit(plan) == pytest.approx(2 / B, rel=1e-9)
    assert plan.phases[0].steps == 2 * 7


@pytest.mark.parametrize("op, algo, unit, bw", [
    ("reduce_scatter", "ring", 7 / 8, B), ("all_gather", "ring", 7 / 8, B),
    ("all_to_all", "direct", 7 / 8, B_P2P), ("broadcast", "ring", 1.0, B),
    ("reduce", "ring", 1.0, B), ("send_recv", "direct", 1.0, B),
])
def test_other_ops_closed_forms(dgx, op, algo, unit, bw):
    """All-to-all streams to every peer at once: NVLink at its p2p efficiency."""
    plan = compile_plan(dgx, op, 8, algo)
    assert _unit(plan) == pytest.approx(unit / bw, rel=1e-9)


def test_uneven_all_to_all_follows_the_matrix(dgx):
    m = np.zeros((8, 8))
    m[0, 1:] = 1e6  # rank 0 sends 1 MB to everyone: its uplink carries 7 MB
    m[3, 0] = 2e6
    r = collective_time(dgx, "all_to_all", 8, 0, matrix=m)
    plan = compile_plan(dgx, "all_to_all", 8, "direct", matrix=m)
    assert plan.absolute and _unit(plan) == pytest.approx(7e6 / B_P2P, rel=1e-9)
    assert r.algorithm == "direct"


def test_nvls_moves_n_times_p_plus_one_over_p(dgx):
    plan = compile_plan(dgx, "all_reduce", 8, "nvls")
    eff = CAT.switches["NVSwitch-gen4"].reduction_efficiency
    assert _unit(plan) == pytest.approx((1 + 1 / 8) / (B * eff), rel=1e-9)


def test_torus_bidirectional_rings_closed_form():
    f = torus((4, 4, 4))
    b = CAT.links["ici-v4"].bandwidth_Bps * CAT.links["ici-v4"].protocol_efficiency
    plan = compile_plan(f, "all_reduce", f.accelerators, "torus")
    # per dimension d: data fraction prod_{e<d} 1/k_e, (k-1)/k of it, half each way; RS + AG
    want = 2 * sum((1 / 4) ** d * (3 / 4) / 2 for d in range(3)) / b
    assert _unit(plan) == pytest.approx(want, rel=1e-9)
    assert [ph.steps for ph in plan.phases] == [3] * 6


def test_in_network_reduction_halves_network_bytes(ib):
    """SHARP: each NIC sends its rail's shard once; a ring sends 2(p-1)/p of it."""
    p, q = 64, 8
    ring = compile_plan(ib, "all_reduce", p, "ring")
    sharp = compile_plan(ib, "all_reduce", p, "sharp")
    c = ib.compile()

    def nic_up(plan):
        out = 0.0
        for ph in plan.phases:
            for lk, u in zip(ph.links, ph.unit, strict=True):
                if ib.graph.nodes[c.node_names[c.link_src[lk]]]["kind"] == "nic":
                    out = max(out, u)
        return out

    assert nic_up(ring) == pytest.approx(2 * (p - 1) / p / q, rel=1e-9)
    assert nic_up(sharp) == pytest.approx(1 / q, rel=1e-9)
    assert nic_up(ring) / nic_up(sharp) == pytest.approx(2 * (p - 1) / p)


def _cross_unit_pairs(f, unit_servers=32, rail=0):
    """Rank order a0, b0, a1, b1, ...: the rail GPU of server i of unit 0 and of unit 1,
    so that every send/recv hop (i -> i+1) crosses the spine tier, one flow per NIC."""
    rail_gpus = [a for a in f.accelerators if f.local_index[a] == rail]
    a, b = rail_gpus[:unit_servers], rail_gpus[unit_servers:2 * unit_servers]
    return [x for pair in zip(a, b, strict=True) for x in pair]


def test_ecmp_collisions_cost_bandwidth_that_spraying_keeps(roce):
    """Per-flow ECMP pins each of the 32 leaf-crossing flows to a spine by hash, so some
    uplinks carry several while others idle; spraying splits every flow evenly and runs
    at NIC speed."""
    ranks = _cross_unit_pairs(roce)
    e = compile_plan(roce, "send_recv", ranks, "direct", policy="ecmp")
    s = compile_plan(roce, "send_recv", ranks, "direct", policy="spray")
    nic = 400e9 / 8 * CAT.links["eth-400g"].protocol_efficiency
    assert _unit(s) == pytest.approx(1 / nic, rel=1e-9)
    assert _unit(e) > 1.3 * _unit(s)


def test_oversubscription_slows_only_what_crosses_the_tier(ib):
    two = load_topology(TOPO / "dgx-h100-superpod-2to1.yaml")
    rail0 = [a for a in ib.accelerators if ib.local_index[a] == 0]
    inside = rail0[:32]  # one scalable unit: one rail leaf, no spine
    across = _cross_unit_pairs(ib)  # every flow climbs to the spines
    t_in = [collective_time(f, "send_recv", inside, GIB, "direct").time_s for f in (ib, two)]
    t_x = [collective_time(f, "send_recv", across, GIB, "direct").time_s for f in (ib, two)]
    assert t_in[1] == pytest.approx(t_in[0], rel=1e-12)
    assert t_x[1] > 1.8 * t_x[0]  # half the uplinks: about twice the time


def test_rail_only_pays_nvlink_hops_for_cross_rail_all_to_all():
    ro = load_topology(TOPO / "dgx-h100-superpod-rail-only.yaml")
    plan = compile_plan(ro, "all_to_all", 64, "direct")
    kinds = {ro.graph.nodes[ro.compile().node_names[ro.compile().link_dst[lk]]]["kind"]
             for ph in plan.phases for lk in ph.links}
    assert {"nvswitch", "switch", "nic"} <= kinds


def test_auto_reports_choice_and_candidates(dgx, ib):
    small = collective_time(dgx, "all_reduce", 8, 1024)
    big = collective_time(dgx, "all_reduce", 8, GIB)
    assert small.protocol == "LL" and big.algorithm == "nvls"
    assert big.time_s == min(v for v in big.candidates.values() if not math.isnan(v))
    multi = collective_time(ib, "all_reduce", 1024, GIB)
    assert multi.algorithm in ("nvls", "tree", "ring")


def test_collnet_is_opt_in_as_in_nccl(ib):
    """NCCL leaves CollNet/SHARP off by default: auto never picks it unless the proposal
    sets collnet: true; then, for a large all-reduce across nodes, it is the fastest (each
    NIC sends its shard once instead of a ring's 2(p-1)/p)."""
    off = collective_time(ib, "all_reduce", 1024, GIB)
    assert "sharp/Simple" not in off.candidates and off.algorithm != "sharp"
    ib.collnet = True
    try:
        on = collective_time(ib, "all_reduce", 1024, GIB)
    finally:
        ib.collnet = False
    assert on.algorithm == "sharp" and on.time_s < off.time_s
    # asked for by name, it runs whatever the default
    assert collective_time(ib, "all_reduce", 1024, GIB, algorithm="sharp").time_s == \
        pytest.approx(on.time_s)


def test_collnet_field_in_a_proposal(tmp_path):
    src = (TOPO / "dgx-h100-superpod-ib.yaml").read_text()
    p = tmp_path / "ib-collnet.yaml"
    p.write_text(src + "collnet: true\n")
    assert load_topology(p).collnet and not load_topology(TOPO / "dgx-h100-superpod-ib.yaml").collnet
    bad = tmp_path / "bad.yaml"
    bad.write_text(src + "collnet: maybe\n")
    with pytest.raises(ConfigError, match="collnet"):
        load_topology(bad)


def test_determinism(roce):
    a = collective_time(roce, "all_reduce", 256, 123456789, policy="ecmp")
    f2 = load_topology(TOPO / "dgx-h100-superpod-roce.yaml")
    b = collective_time(f2, "all_reduce", 256, 123456789, policy="ecmp")
    assert a.time_s == b.time_s and a.algorithm == b.algorithm


@pytest.mark.parametrize("kw, match", [
    (dict(op="all_reduce", ranks=1, nbytes=8), "ranks requested"),
    (dict(op="all_reduce", ranks=9, nbytes=8), "has 8 accelerators"),
    (dict(op="gather", ranks=8, nbytes=8), "unknown collective"),
    (dict(op="all_reduce", ranks=8, nbytes=-1), "negative"),
    (dict(op="all_reduce", ranks=8, nbytes=8, algorithm="bogus"), "unknown algorithm"),
    (dict(op="all_reduce", ranks=8, nbytes=8, protocol="LL256"), "unknown protocol"),
])
def test_bad_requests(dgx, kw, match):
    with pytest.raises(InfeasibleError, match=match):
        collective_time(dgx, **kw)


def test_full_mesh_uses_every_link():
    """MI300X: 8 GPUs pairwise over xGMI; a pairwise reduce-scatter + all-gather keeps all
    7 links busy: busbw = 7 links x achievable link rate (a ring would use one)."""
    from sim.fabric import xgmi_mesh_node

    f = xgmi_mesh_node("MI300X-8")
    link = CAT.links["xgmi3"]
    r = collective_time(f, "all_reduce", 8, GIB)
    assert r.algorithm == "direct"
    plan = compile_plan(f, "all_reduce", 8, "direct")
    b = link.bandwidth_Bps * link.protocol_efficiency
    assert _unit(plan) == pytest.approx(2 * (1 / 8) / b, rel=1e-9)  # 1/p per link, twice
    ring = compile_plan(f, "all_reduce", 8, "ring")
    assert _unit(ring) == pytest.approx(2 * 7 / 8 / b, rel=1e-9)


def _with_library(f, **kw):
    """A copy of fabric ``f`` whose catalog's collective library has ``kw`` changed."""
    import copy
    import dataclasses

    g = copy.copy(f)
    g.catalog = copy.copy(f.catalog)
    g.catalog.library = dataclasses.replace(f.catalog.library, **kw)
    g.invalidate()
    return g


def test_ll_bus_bandwidth_capped_across_nodes_as_nccl_tunes_it(ib, dgx):
    """NCCL's tuner caps LL's bus bandwidth at llMaxBw for 2 and for more nodes (Hopper:
    45 and 35 GB/s); inside one node the protocol's factor is that cap already."""
    lib = ib.catalog.library
    assert lib.ll_max_busbw["default"] == (141e9, 45e9, 35e9)
    for ranks, cap in ((16, 45e9), (64, 35e9)):
        r = collective_time(ib, "all_reduce", ranks, 64 * 2**20, "ring", protocol="LL")
        assert r.busbw_Bps <= cap * (1 + 1e-9)
        lat = sum(lt for _, lt, _ in r.phases)
        # the cap binds: the bandwidth part is exactly n x bus factor / cap
        assert r.time_s - lat == pytest.approx(64 * 2**20 * 2 * (ranks - 1) / ranks / cap)
    one = collective_time(dgx, "all_reduce", 8, 64 * 2**20, "ring", protocol="LL")
    off = collective_time(_with_library(dgx, ll_max_busbw={}), "all_reduce", 8, 64 * 2**20,
                          "ring", protocol="LL")
    assert one.time_s == off.time_s


def test_net_overhead_floors_each_step_of_an_inter_node_ring(ib):
    """tuning.cc: an inter-node ring's steps cost at least the proxy's network overhead
    (1 us; 3 us for Simple): with LL's 0.6 us NVLink hops, raising the floor from 0 to 1 us
    adds 0.4 us to every intra-node share of the 2(p - 1) steps."""
    n = 8
    base = collective_time(_with_library(ib, net_overhead_s=0.0), "all_reduce", 16, n, "ring",
                           protocol="LL")
    floor = collective_time(ib, "all_reduce", 16, n, "ring", protocol="LL")
    extra = floor.time_s - base.time_s
    steps = 2 * 15
    assert 0 < extra <= steps * 0.4e-6 * (1 + 1e-9)
    assert extra >= steps * 0.4e-6 * 0.5  # most of a 2-node ring's hops are NVLink
    # one node: no network overhead
    one = collective_time(ib, "all_reduce", 8, n, "ring", protocol="LL").time_s
    one0 = collective_time(_with_library(ib, net_overhead_s=0.0), "all_reduce", 8, n, "ring",
                           protocol="LL").time_s
    assert one == one0


def test_tree_all_reduce_takes_nccls_mid_size_correction(ib):
    """tuning.cc treeCorrectionFactor: a tree all-reduce's bandwidth at log2(n / 64)
    (Simple at 1 MiB: x0.5); not applied past 2^22 x 64 bytes nor to rings."""
    lib = ib.catalog.library
    plain = _with_library(ib, tree_correction={})
    for n, k in ((2**20, 14), (2**24, 18)):
        a = collective_time(ib, "all_reduce", 64, n, "tree", protocol="Simple")
        b = collective_time(plain, "all_reduce", 64, n, "tree", protocol="Simple")
        lat = sum(lt for _, lt, _ in a.phases)
        assert lat == pytest.approx(sum(lt for _, lt, _ in b.phases))
        assert a.time_s - lat == pytest.approx((b.time_s - lat) / lib.tree_correction["Simple"][k])
    big = 2**32
    assert collective_time(ib, "all_reduce", 64, big, "tree", protocol="Simple").time_s == \
        collective_time(plain, "all_reduce", 64, big, "tree", protocol="Simple").time_s
    assert collective_time(ib, "all_reduce", 64, 2**20, "ring", protocol="Simple").time_s == \
        collective_time(plain, "all_reduce", 64, 2**20, "ring", protocol="Simple").time_s
