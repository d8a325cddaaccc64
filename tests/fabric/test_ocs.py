"""Optical-circuit-switched TPU pod: OCS counts, slices as tori, circuits, release and
reconfiguration on SimPy time, and the published pod bisection."""

from __future__ import annotations

import pytest
import simpy

from sim.errors import InfeasibleError
from sim.fabric import bisection_per_accelerator, ocs_pod

from .helpers import assert_valid_route


@pytest.fixture()
def pod8():
    return ocs_pod(cubes=8)


def test_pod_structure():
    f = ocs_pod(cubes=64, slices=[])
    g = f.graph
    ocs = [n for n, d in g.nodes(data=True) if d["kind"] == "ocs"]
    assert len(ocs) == 48  # 3 dimensions x 16 face positions
    for o in ocs:  # each OCS takes the + and - face chip of every cube: 128 of 136 ports
        assert g.out_degree(o) == 2 * 64
    assert f.n_accelerators == 4096
    # every face chip has one optical link per face it lies on; corners lie on 3 faces
    assert sum(1 for a in f.accelerators for b in g.successors(a)
               if g.nodes[b]["kind"] == "ocs") == 64 * 6 * 16


def test_full_pod_slice_bisection_matches_published():
    """TPU v4 pod: 4,096 chips, bisection 24 TB/s (cloud.google.com/tpu/docs/v4)."""
    f = ocs_pod(cubes=64, slices=[[16, 16, 16]])
    per_chip = bisection_per_accelerator(f)["torus"]
    total = per_chip * 4096 / 2
    assert total == pytest.approx(24e12, rel=0.05)


def test_slice_routes_cross_cubes_through_circuits(pod8):
    s = pod8.ocs.allocate((4, 8, 16))
    t = pod8.torus[s.domain]
    a = t.grid[(0, 0, 0)]
    b = t.grid[(0, 0, 15)]  # torus neighbour through the wrap-around circuit
    r = pod8.route(a, b)
    assert r.hops == 2 and r.switch_hops == 1
    assert pod8.graph.nodes[r.nodes[1]]["kind"] == "ocs"
    c = t.grid[(3, 7, 9)]
    r2 = pod8.route(a, c)
    assert r2.hops - r2.switch_hops == 1 + 1 + 7  # chip-to-chip hops: 1 + 1 + 7 (wrap)
    assert_valid_route(pod8, r2)


def test_slice_allocation_release_and_limits(pod8):
    s1 = pod8.ocs.allocate((4, 4, 16))  # 4 cubes
    s2 = pod8.ocs.allocate((8, 8, 4))  # 4 cubes
    assert set(s1.cubes).isdisjoint(s2.cubes)
    with pytest.raises(InfeasibleError, match="needs 1 cubes, only 0"):
        pod8.ocs.allocate((4, 4, 4))
    with pytest.raises(InfeasibleError, match="whole number"):
        pod8.ocs.allocate((6, 4, 4))
    pod8.ocs.release(s1.name)
    assert len(pod8.ocs.free) == 4
    s3 = pod8.ocs.allocate((4, 4, 16), name="again")
    assert sorted(s3.cubes) == sorted(s1.cubes)


def test_chips_of_different_slices_do_not_route(pod8):
    from sim.errors import RoutingError

    s1 = pod8.ocs.allocate((4, 4, 8))
    s2 = pod8.ocs.allocate((4, 4, 8))
    a = pod8.domains[s1.domain][0]
    b = pod8.domains[s2.domain][0]
    with pytest.raises(RoutingError):
        pod8.route(a, b)


def test_twisted_slice_is_shorter(pod8):
    reg = pod8.ocs.allocate((4, 4, 8), name="reg")
    tw = pod8.ocs.allocate((4, 4, 8), name="tw", twisted=True)

    def ecc(s):
        first = pod8.domains[s.domain][0]
        return max(pod8.route(first, b).hops - pod8.route(first, b).switch_hops
                   for b in pod8.domains[s.domain])

    assert ecc(tw) < ecc(reg)


def test_reconfiguration_takes_the_ocs_time():
    f = ocs_pod(cubes=4, reconfigure_time_s=0.25)
    env = simpy.Environment()
    got = {}

    def job(env):
        s = yield env.process(f.ocs.reconfigure(env, (4, 4, 16)))
        got["t"], got["slice"] = env.now, s

    env.process(job(env))
    env.run()
    assert got["t"] == pytest.approx(0.25)
    assert got["slice"].shape == (4, 4, 16)
