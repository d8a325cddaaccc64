"""ECMP hashes a flow onto one cable of a bundle (sim.fabric.ports): flows that land on
the same cable share it although the bundle's other cables idle; spraying uses them all;
more flows per GPU pair (queue pairs hashed apart) spread the load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.collectives.algorithms import pair_phase
from sim.collectives.timing import compile_phase, link_capacity
from sim.errors import ConfigError
from sim.fabric import leaf_spine, load_topology
from sim.fabric.ports import ecmp_ports
from sim.network.models import effective_capacity

TOPO = Path(__file__).resolve().parents[2] / "topologies"


def _two_leaves(routing: str, flows: int = 1):
    # 8 DGX H100 under 2 ToR leaves (4 servers, 32 NICs each); one spine: every leaf's 32
    # uplinks are one bundle of 32 cables to it
    f = leaf_spine(node="DGX-H100", servers=8, leaf="QM9700", spine="QM9700",
                   link="ib-ndr", servers_per_leaf=4, routing=routing)
    f.ecmp_flows = flows
    a = f.accelerators[:32]
    b = f.accelerators[32:]  # GPU i of server s -> GPU i of server s + 4: 32 flows
    ph = compile_phase(f, tuple(a + b), pair_phase(32, "x"), routing, link_capacity(f))
    return f, ph


def test_a_bundle_has_one_port_link_per_cable_with_one_cable_of_capacity():
    f, _ = _two_leaves("ecmp")
    p = ecmp_ports(f)
    c = f.compile()
    bundles = np.nonzero(p.base >= 0)[0]
    assert len(bundles) == 4  # two leaf-spine bundles, each direction
    assert (c.count[bundles] == 32).all() and len(p.parent) == 4 * 32
    cap = effective_capacity(f)
    assert len(cap) == c.n_links + len(p.parent)
    assert cap[c.n_links:] == pytest.approx(cap[p.parent] / 32)


def test_ecmp_flows_collide_on_cables_spraying_does_not_and_more_flows_spread():
    """32 flows over a 32-cable bundle: sprayed, each runs at a cable's rate (the NIC's);
    hashed one cable each, a cable carries the busiest few (32 balls into 32 bins: the
    most loaded bin holds about 3.5, never 1 in practice); 16 hashed flows per pair cut
    the busiest cable's load towards the mean."""
    _, spray = _two_leaves("spray")
    _, e1 = _two_leaves("ecmp")
    _, e16 = _two_leaves("ecmp", 16)
    assert e1.unit_time_s > 2.0 * spray.unit_time_s
    assert spray.unit_time_s < e16.unit_time_s < 0.7 * e1.unit_time_s
    # bytes are conserved: each bundle carries the 32 flows once, on its cables
    f, _ = _two_leaves("ecmp")
    p = ecmp_ports(f)
    on_ports = e1.links >= p.n_edges
    assert e1.unit[on_ports].sum() == pytest.approx(2 * 32)  # both bundles, one byte each


def test_ecmp_flows_is_read_from_the_proposal_and_checked():
    f = load_topology(TOPO / "llama3-16k-roce.yaml")
    assert f.ecmp_flows == 16  # the Llama 3 paper's 16 flows per GPU pair
    assert load_topology(TOPO / "dgx-h100-superpod-roce.yaml").ecmp_flows == 1
    for bad, frag in [("0", "must be at least 1"), ("65", "at most 64"),
                      ("many", "expected a whole number")]:
        with pytest.raises(ConfigError, match=f"ecmp_flows: .*{frag}"):
            load_topology(TOPO / "llama3-16k-roce.yaml", [f"ecmp_flows={bad}"])
