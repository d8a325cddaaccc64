"""The fabric's one cache of derived values: hits until :meth:`Fabric.invalidate`, fresh
values after it (and after an OCS slice is released and allocated again)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.collectives import collective_time, compile_plan
from sim.collectives.timing import link_capacity
from sim.fabric import ocs_pod, rail_optimized
from sim.fabric.clos_routes import ClosIndex


@pytest.fixture()
def ib():
    """4 DGX H100 on a 2-tier NDR InfiniBand rail-optimized Clos (SHARP switches)."""
    return rail_optimized(node="DGX-H100", servers=4, servers_per_unit=2, leaf="QM9700",
                          spine="QM9700", link="ib-ndr")


def test_derived_is_computed_once_until_invalidate(ib):
    calls = []

    def make():
        calls.append(1)
        return object()

    a = ib.derived("test.value", make)
    assert ib.derived("test.value", make) is a and len(calls) == 1
    none_calls = []
    assert ib.derived("test.none", lambda: none_calls.append(1)) is None
    assert ib.derived("test.none", lambda: none_calls.append(1)) is None
    assert len(none_calls) == 1  # None is a cached value too
    ib.invalidate()
    b = ib.derived("test.value", make)
    assert b is not a and len(calls) == 2


def test_plan_capacity_and_clos_index_cached_until_invalidate(ib):
    plan = compile_plan(ib, "all_reduce", 32, "ring")
    cap = link_capacity(ib)
    ix = ClosIndex.of(ib)
    compiled = ib.compile()
    router = ib.router
    assert ix is not None
    # hits: the same objects
    assert compile_plan(ib, "all_reduce", 32, "ring") is plan
    assert link_capacity(ib) is cap
    assert ClosIndex.of(ib) is ix
    ib.invalidate()
    # misses: everything recomputed, to the same values
    plan2 = compile_plan(ib, "all_reduce", 32, "ring")
    assert plan2 is not plan
    assert ib.compile() is not compiled and ib.router is not router
    cap2 = link_capacity(ib)
    assert cap2 is not cap and np.array_equal(cap2, cap)
    assert ClosIndex.of(ib) is not ix
    for a, b in zip(plan.phases, plan2.phases, strict=True):
        assert np.array_equal(a.links, b.links) and np.array_equal(a.unit, b.unit)
        assert a.unit_time_s == b.unit_time_s


def test_derived_values_live_only_in_the_fabric_cache(ib):
    """Collectives, routing indexes and capacities add no attributes to the fabric and
    nothing to its meta: all of it is in the one cache that invalidate() clears."""
    attrs = set(vars(ib))
    meta = dict(ib.meta)
    for algo in ("ring", "tree", "nvls", "sharp"):
        collective_time(ib, "all_reduce", 32, 2**30, algo)
    collective_time(ib, "all_reduce", 32, 2**20)
    collective_time(ib, "all_to_all", 32, 2**20)
    collective_time(ib, "all_reduce", 32, 2**20, policy="spray")
    ClosIndex.of(ib)
    assert set(vars(ib)) == attrs
    assert ib.meta == meta
    assert ib._derived  # something was cached ...
    ib.invalidate()
    assert not ib._derived  # ... and is gone


def test_ocs_slice_released_and_reallocated_gets_a_fresh_plan():
    f = ocs_pod(cubes=8)
    s = f.ocs.allocate((4, 4, 16), name="a")
    ranks = list(f.domains[s.domain])
    plan = compile_plan(f, "all_reduce", ranks, "torus")
    cap = link_capacity(f)
    assert compile_plan(f, "all_reduce", ranks, "torus") is plan  # cache hit
    assert link_capacity(f) is cap
    t = collective_time(f, "all_reduce", ranks, 2**28).time_s
    f.ocs.release("a")
    s2 = f.ocs.allocate((4, 4, 16), name="a")
    assert sorted(s2.cubes) == sorted(s.cubes)  # the same cubes, new circuits and domain
    assert list(f.domains[s2.domain]) == ranks
    plan2 = compile_plan(f, "all_reduce", ranks, "torus")
    assert plan2 is not plan
    cap2 = link_capacity(f)
    assert cap2 is not cap and np.array_equal(cap2, cap)
    # and it is right: as on a pod that never had the first slice
    fresh = ocs_pod(cubes=8)
    s3 = fresh.ocs.allocate((4, 4, 16), name="a")
    assert list(fresh.domains[s3.domain]) == ranks
    ref = compile_plan(fresh, "all_reduce", ranks, "torus")
    for a, b in zip(plan2.phases, ref.phases, strict=True):
        assert np.array_equal(a.links, b.links) and np.array_equal(a.unit, b.unit)
    assert collective_time(f, "all_reduce", ranks, 2**28).time_s == t
