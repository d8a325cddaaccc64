"""Stragglers: a synchronous step runs at its slowest GPU's pace. The expected slowdown
against closed forms and a Monte Carlo of the same distribution, its growth with the job,
and its effect on a simulated step."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim.catalog import load_catalog
from sim.compute import straggler_factor
from sim.fabric import rail_optimized
from sim.workload import TrainingWorkload, simulate_training

CAT = load_catalog()
H100 = CAT.accelerators["H100-SXM"]


def _acc(sigma, p, d):
    cm = dataclasses.replace(CAT.compute, gpu_speed_sigma=sigma, slow_server_fraction=p,
                             slow_server_slowdown=d)
    return dataclasses.replace(H100, compute=cm)


def test_catalog_constants_carry_their_source():
    cm = CAT.compute
    assert cm.gpu_speed_sigma > 0 and cm.slow_server_fraction > 0 and cm.slow_server_slowdown > 0
    src = cm.provenance.source
    assert "MegaScale" in src and "ml-engineering" in src
    assert "gpu_speed_sigma" in cm.provenance.estimate


def test_slow_servers_alone_closed_form():
    """Without per-GPU spread the job is 1 + d slower iff one of its S servers is slow."""
    a = _acc(0.0, 0.01, 0.2)
    for gpus in (8, 64, 1024):
        s = gpus // 8
        assert straggler_factor(a, gpus, 8) == pytest.approx(1 + 0.2 * (1 - 0.99 ** s))
    assert straggler_factor(_acc(0.0, 0.0, 0.0), 4096, 8) == 1.0


def test_matches_a_monte_carlo_of_the_same_distribution():
    a = _acc(0.02, 0.05, 0.1)
    rng = np.random.default_rng(1)
    gpus, g = 256, 8
    n = 20000
    z = rng.standard_normal((n, gpus)) * 0.02
    slow = rng.random((n, gpus // g)) < 0.05
    z += np.repeat(slow, g, axis=1) * math.log1p(0.1)
    mc = np.exp(z.max(axis=1)).mean()
    assert straggler_factor(a, gpus, g) == pytest.approx(mc, rel=2e-3)


def test_grows_with_the_job_and_saturates():
    f = [straggler_factor(H100, n, 8) for n in (8, 64, 512, 4096, 32768)]
    assert all(b > a for a, b in zip(f[:-1], f[1:], strict=True))
    cm = CAT.compute
    # bounded by a sure slow server plus a few sigma
    assert f[-1] < 1 + cm.slow_server_slowdown + 6 * cm.gpu_speed_sigma


def test_a_step_computes_at_the_slowest_pace():
    f = rail_optimized(node="DGX-H100", servers=8, servers_per_unit=8, leaf="QM9700",
                       spine="QM9700", link="ib-ndr")
    kw = dict(name="s", model=CAT.models["llama3-8b"], global_batch=64, micro_batch=1,
              seq_len=4096, tp=1, pp=1, dp=64, recompute="none")
    on = simulate_training(f, TrainingWorkload(**kw))
    off = simulate_training(f, TrainingWorkload(stragglers=False, **kw))
    k = straggler_factor(H100, 64, 8)
    assert on.extra["straggler_factor"] == pytest.approx(k)
    assert off.extra["straggler_factor"] == 1.0
    assert on.breakdown["compute"] == pytest.approx(k * off.breakdown["compute"], rel=1e-9)
    assert on.step_time_s > off.step_time_s
