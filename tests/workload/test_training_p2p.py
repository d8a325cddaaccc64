"""Pipeline send/recv on the critical path: Megatron-Core's plain 1F1B schedule (and the
interleaved one without overlap_p2p_comm) waits for each send; the interleaved schedule
with it does not."""

from __future__ import annotations

import pytest

from sim.catalog import load_catalog
from sim.fabric import rail_optimized
from sim.workload import TrainingWorkload, simulate_training

CAT = load_catalog()


def _fab(link="ib-ndr"):
    return rail_optimized(node="DGX-H100", servers=8, servers_per_unit=8, leaf="QM9700",
                          spine="QM9700", link=link)


def _w(**kw):
    base = dict(name="p2p", model=CAT.models["llama3-8b"], global_batch=16, micro_batch=1,
                seq_len=4096, tp=8, pp=4, dp=2, recompute="none")
    base.update(kw)
    return TrainingWorkload(**base)


def _send_s(f, w):
    """One activation hand-off alone: bytes over one 400G NIC plus the p2p latency."""
    link = CAT.links["ib-ndr"]
    nbytes = w.micro_batch * w.seq_len * w.model.hidden * 2 / w.tp  # SP: 1/tp per GPU
    p = CAT.protocols["Simple"]
    return nbytes / (link.bandwidth_Bps * link.protocol_efficiency) + p.base_latency_s + \
        p.hop_latency_net_s


def test_interleaved_overlap_hides_sends_that_blocking_exposes():
    f = _fab()
    on = simulate_training(f, _w(vpp=2, overlap_p2p_comm=True))
    off = simulate_training(f, _w(vpp=2, overlap_p2p_comm=False))
    w = _w(vpp=2)
    t = _send_s(f, w)
    extra = off.step_time_s - on.step_time_s
    # each of a stage's M x V forward and backward ops can wait at most one send
    assert 0 < extra <= 2 * w.micro_batches * w.vpp * t * 1.01
    # the compute is the same; only the wait grows
    assert off.breakdown["compute"] == pytest.approx(on.breakdown["compute"])
    assert off.breakdown["pp_bubble_and_wait"] > on.breakdown["pp_bubble_and_wait"]


def test_plain_1f1b_always_waits_and_the_wait_follows_the_link():
    """overlap_p2p_comm does not apply to the plain 1F1B schedule; on 200G links each
    exposed send takes about twice as long as on 400G."""
    ndr, hdr = _fab("ib-ndr"), _fab("ib-hdr")
    a = simulate_training(ndr, _w(overlap_p2p_comm=True)).step_time_s
    b = simulate_training(ndr, _w(overlap_p2p_comm=False)).step_time_s
    assert a == b
    extra = {}
    for name, f in (("ndr", ndr), ("hdr", hdr)):
        extra[name] = simulate_training(f, _w(vpp=2, overlap_p2p_comm=False)).step_time_s - \
            simulate_training(f, _w(vpp=2)).step_time_s
    assert extra["hdr"] > 1.5 * extra["ndr"] > 0


def test_no_pipeline_no_change():
    f = _fab()
    w = dict(pp=1, dp=8)
    assert simulate_training(f, _w(**w, overlap_p2p_comm=False)).step_time_s == \
        simulate_training(f, _w(**w)).step_time_s
