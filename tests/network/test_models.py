"""Network models on SimPy time: analytical and flow agree for one transfer, the flow model
shares links max-min fairly, bytes are conserved in the counters, and runs repeat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simpy

from sim.collectives import compile_plan, phase_times
from sim.fabric import load_topology, nvswitch_node
from sim.network import Transfer, effective_capacity, make_network

TOPO = Path(__file__).resolve().parents[2] / "topologies"


@pytest.fixture(scope="module")
def fab():
    return load_topology(TOPO / "dgx-h100-superpod-roce.yaml")


def _run(kind, fabric, transfers, starts=None):
    env = simpy.Environment()
    net = make_network(kind, env, fabric)
    done = {}

    def go(i, t, at):
        if at:
            yield env.timeout(at)
        d = yield net.transfer(t)
        done[i] = (env.now, d)

    for i, t in enumerate(transfers):
        env.process(go(i, t, (starts or [0] * len(transfers))[i]))
    env.run()
    return done, net


def test_single_transfer_models_agree_exactly(fab):
    plan = compile_plan(fab, "all_reduce", 256, "ring")
    times = phase_times(fab, plan, 2**30, "Simple")
    (t,) = plan.transfers(2**30, times)
    a, net_a = _run("analytical", fab, [t])
    f, net_f = _run("flow", fab, [t])
    assert a[0][0] == pytest.approx(f[0][0], rel=1e-12)
    assert a[0][0] == pytest.approx(net_a.time_alone(t), rel=1e-12)


def test_flow_model_shares_a_link_max_min(fab):
    cap = effective_capacity(fab)
    link = 0
    big = Transfer(np.array([link]), np.array([3e9]))
    small = Transfer(np.array([link]), np.array([1e9]))
    done, net = _run("flow", fab, [big, small])
    c = cap[link]
    # both at c/2 until the small one ends at 2e9/c; then the big one alone
    assert done[1][0] == pytest.approx(2e9 / c, rel=1e-9)
    assert done[0][0] == pytest.approx(4e9 / c, rel=1e-9)
    ana, _ = _run("analytical", fab, [big, small])
    assert ana[0][0] == pytest.approx(3e9 / c) and ana[1][0] == pytest.approx(1e9 / c)


def test_transfers_on_disjoint_links_do_not_interact(fab):
    t1 = Transfer(np.array([0, 5]), np.array([1e9, 2e9]), 1e-6)
    t2 = Transfer(np.array([7]), np.array([5e8]), 2e-6)
    a, _ = _run("analytical", fab, [t1, t2])
    f, _ = _run("flow", fab, [t1, t2])
    for i in (0, 1):
        assert f[i][0] == pytest.approx(a[i][0], rel=1e-12)


def test_late_arrival_slows_the_first_transfer(fab):
    cap = effective_capacity(fab)[3]
    t1 = Transfer(np.array([3]), np.array([2e9]))
    t2 = Transfer(np.array([3]), np.array([2e9]))
    done, _ = _run("flow", fab, [t1, t2], starts=[0.0, 1e9 / cap])
    # t1 alone for 1e9 bytes, then both share: each gets c/2 for the next 2e9 bytes
    assert done[0][0] == pytest.approx(3e9 / cap, rel=1e-9)
    assert done[1][0] == pytest.approx(4e9 / cap, rel=1e-9)


@pytest.mark.parametrize("kind", ["analytical", "flow"])
def test_byte_counters_conserve_bytes_and_stay_under_capacity(fab, kind):
    rng = np.random.default_rng(5)
    n_links = fab.compile().n_links  # compiled links (ports ride along with bundles)
    ts = []
    for _ in range(12):
        lk = rng.choice(n_links, 4, replace=False)
        ts.append(Transfer(lk, rng.uniform(1e8, 1e9, 4), float(rng.uniform(0, 5e-6))))
    starts = list(rng.uniform(0, 5e-3, 12))
    done, net = _run(kind, fab, ts, starts)
    want = np.zeros(n_links)
    for t in ts:
        np.add.at(want, t.links, t.nbytes)
    got = net.link_bytes(0.0, max(v[0] for v in done.values()))
    assert np.allclose(got, want, rtol=1e-9, atol=1e-3)
    util = net.link_utilization(0.0, 2e-3)
    assert util.max() <= 1 + 1e-9


def test_flow_model_is_deterministic(fab):
    rng = np.random.default_rng(9)
    ts = [Transfer(rng.choice(100, 3, replace=False), rng.uniform(1e8, 1e9, 3))
          for _ in range(20)]
    a, _ = _run("flow", fab, ts)
    b, _ = _run("flow", fab, ts)
    assert a == b


def test_zero_byte_transfer_takes_its_latency():
    f = nvswitch_node()
    done, _ = _run("flow", f, [Transfer(np.array([], np.int64), np.array([]), 3e-6)])
    assert done[0][0] == pytest.approx(3e-6)


def test_unknown_model_is_a_config_error():
    from sim.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown network model"):
        make_network("packet", simpy.Environment(), nvswitch_node())


@pytest.mark.parametrize("kind", ["analytical", "flow"])
@pytest.mark.parametrize("op, ranks", [("all_reduce", 256), ("all_to_all", 8)])
def test_run_collective_alone_takes_collective_time(fab, kind, op, ranks):
    """Also for an all-to-all, whose NVLink bytes cost more capacity (p2p efficiency)."""
    from sim.collectives import collective_time, run_collective

    env = simpy.Environment()
    net = make_network(kind, env, fab)
    out = {}

    def job(env):
        out["r"] = yield env.process(run_collective(env, net, op, ranks, 2**28))

    env.process(job(env))
    env.run()
    want = collective_time(fab, op, ranks, 2**28)
    assert out["r"].time_s == pytest.approx(want.time_s, rel=1e-9)


@pytest.mark.parametrize("kind", ["analytical", "flow"])
def test_costly_bytes_use_more_capacity_but_count_as_bytes(fab, kind):
    """A transfer whose bytes cost 2x on a link runs at half the byte rate there; a second
    transfer sharing that link gets max-min shares of capacity, not of bytes; the byte
    counters count bytes."""
    cap = effective_capacity(fab)[4]
    costly = Transfer(np.array([4]), np.array([1e9]), cost=np.array([2.0]))
    plain = Transfer(np.array([4]), np.array([1e9]))
    alone, net = _run(kind, fab, [costly])
    assert alone[0][0] == pytest.approx(2e9 / cap, rel=1e-9)
    assert net.link_bytes(0.0, alone[0][0])[4] == pytest.approx(1e9, rel=1e-9)
    both, net = _run(kind, fab, [costly, plain])
    if kind == "flow":
        # equal byte rates r with 2r + r = cap: both move 1e9 bytes at cap/3 and end together
        assert both[1][0] == pytest.approx(3e9 / cap, rel=1e-9)
        assert both[0][0] == pytest.approx(3e9 / cap, rel=1e-9)
        assert net.link_utilization(0.0, both[0][0])[4] <= 1.0
    with pytest.raises(AssertionError):
        Transfer(np.array([4]), np.array([1e9]), cost=np.array([0.5]))


def test_two_jobs_sharing_the_fabric_slow_each_other(fab):
    """Two all-reduces over the same GPUs at once: the flow model shares the links, so
    each takes longer than alone but no longer than both back to back."""
    from sim.collectives import collective_time, run_collective

    env = simpy.Environment()
    net = make_network("flow", env, fab)
    ends = []

    def job(env):
        r = yield env.process(run_collective(env, net, "all_reduce", 64, 2**30, "ring"))
        ends.append(r.time_s)

    env.process(job(env))
    env.process(job(env))
    env.run()
    alone = collective_time(fab, "all_reduce", 64, 2**30, "ring").time_s
    assert all(alone * 1.5 < t <= 2 * alone * (1 + 1e-9) for t in ends)


def test_grouped_transfers_get_the_same_times_as_ungrouped(fab):
    rng = np.random.default_rng(2)
    lk = rng.choice(200, 6, replace=False)
    share = rng.uniform(0.2, 1.0, 6)
    other = Transfer(lk[:3], np.array([5e8, 5e8, 5e8]))
    runs = {}
    for grouped in (False, True):
        ts = [Transfer(lk, share * b, 0.0, group="g" if grouped else None)
              for b in (1e9, 2e9, 3e9)] + [other]
        runs[grouped], _ = _run("flow", fab, ts, starts=[0.0, 1e-3, 2e-3, 0.5e-3])
    assert all(runs[True][i][0] == pytest.approx(runs[False][i][0], rel=1e-12)
               for i in runs[False])


def test_byte_counters_mid_flight(fab):
    """Counters read while transfers are in flight include their bytes so far: a link
    shared max-min by two transfers carries exactly capacity x elapsed time."""
    cap = effective_capacity(fab)[3]
    env = simpy.Environment()
    net = make_network("flow", env, fab)
    for _ in range(2):
        net.transfer(Transfer(np.array([3]), np.array([4e9])))
    seen = {}

    def probe():
        yield env.timeout(1e9 / cap)
        seen["mid"] = net.link_bytes()[3]
        seen["util"] = net.link_utilization()[3]

    env.process(probe())
    env.run()
    assert seen["mid"] == pytest.approx(1e9, rel=1e-9)
    assert seen["util"] == pytest.approx(1.0, rel=1e-9)
    assert net.link_bytes()[3] == pytest.approx(8e9, rel=1e-9)
