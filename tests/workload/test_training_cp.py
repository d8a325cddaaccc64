"""Context parallelism through the network model: the K/V ring's time follows the links it
crosses (closed form on one transfer, on a GPU fabric and on a TPU torus), it hides under
the attention, and contention on its links lengthens it."""

from __future__ import annotations

import numpy as np
import pytest

from sim.catalog import load_catalog
from sim.engine import Simulation
from sim.fabric import rail_optimized, torus
from sim.network import Transfer
from sim.workload import TrainingWorkload, layer_costs
from sim.workload.training import StageCost, TrainingJob
from sim.workload.training.stage_cost import cp_ring_alone

CAT = load_catalog()


def _fab(link: str = "ib-ndr"):
    return rail_optimized(node="DGX-H100", servers=8, servers_per_unit=8, leaf="QM9700",
                          spine="QM9700", link=link)


def _w(**kw) -> TrainingWorkload:
    base = dict(name="cp", model=CAT.models["llama3-8b"], global_batch=8, micro_batch=1,
                seq_len=2048, tp=8, pp=1, cp=2, dp=4, sequence_parallel=True,
                recompute="none")
    base.update(kw)
    return TrainingWorkload(**base)


def _lat(steps: int) -> float:
    p = CAT.protocols["Simple"]
    return steps * (p.base_latency_s + p.hop_latency_net_s)


def test_cp_bytes_and_closed_form_across_servers():
    """TP 8 fills a server, so the 2 ranks of a CP ring sit on two servers and the ring
    crosses each rank's own 400G NIC: bytes / (NIC rate x protocol efficiency)."""
    f, w = _fab(), _w()
    st = StageCost(w, f, 0, [f"{f.accelerators[i]}" for i in range(8)])
    m = w.model
    per_layer = layer_costs(m, micro_batch=1, seq_len=w.seq_len, tp=8, cp=2,
                            sequence_parallel=True).cp_bytes_fwd
    # K and V of this GPU's 1,024 tokens, its 1 of 8 KV heads: 2 x 1024 x 128 x 2 bytes
    assert per_layer == pytest.approx(2 * 1024 * m.kv_heads * m.head_dim / 8 * 2)
    assert st.cp_bytes_fwd == pytest.approx(m.layers * per_layer)
    assert st.cp_bytes_bwd == pytest.approx(2 * st.cp_bytes_fwd)
    nic = CAT.links["ib-ndr"]
    rate = nic.bandwidth_Bps * nic.protocol_efficiency
    ring = [f.accelerators[0], f.accelerators[8]]
    alone = cp_ring_alone(w, f, ring, st.cp_bytes_fwd, st.cp_steps)
    assert alone == pytest.approx(st.cp_bytes_fwd / rate + _lat(m.layers), rel=1e-9)
    assert st.cp_fwd == pytest.approx(max(0.0, alone - st.cp_attn_fwd))
    assert st.cp_fwd > 0  # at 2K tokens the exchange outlasts the attention


def test_cp_time_follows_link_capacity():
    """The same ring over 200G HDR links takes twice the bandwidth time of 400G NDR."""
    w = _w()
    ndr, hdr = _fab("ib-ndr"), _fab("ib-hdr")
    n = 1e9
    t = {}
    for name, f in (("ndr", ndr), ("hdr", hdr)):
        link = CAT.links[f"ib-{name}"]
        t[name] = cp_ring_alone(w, f, [f.accelerators[0], f.accelerators[8]], n, 0)
        assert t[name] == pytest.approx(n / (link.bandwidth_Bps * link.protocol_efficiency))
    assert t["hdr"] / t["ndr"] == pytest.approx(
        CAT.links["ib-ndr"].bandwidth_Bps * CAT.links["ib-ndr"].protocol_efficiency /
        (CAT.links["ib-hdr"].bandwidth_Bps * CAT.links["ib-hdr"].protocol_efficiency))


def test_cp_inside_a_server_runs_at_nvlink_rate():
    """With TP 4 the two CP ranks share a server: the ring is NVLink, not the NIC."""
    f = _fab()
    w = _w(tp=4, dp=8)
    st = StageCost(w, f, 0, [f.accelerators[i] for i in range(4)])
    ring = [f.accelerators[0], f.accelerators[4]]
    alone = cp_ring_alone(w, f, ring, 1e9, 0)
    nic = CAT.links["ib-ndr"]
    assert alone < 1e9 / (nic.bandwidth_Bps * nic.protocol_efficiency) / 4
    assert st.cp_fwd == pytest.approx(max(0.0, cp_ring_alone(
        w, f, ring, st.cp_bytes_fwd, st.cp_steps) - st.cp_attn_fwd))


def test_cp_on_a_tpu_torus_uses_the_ici_links():
    """CP 4 along a torus dimension of 4: each chip sends to its +1 neighbour over its
    own ICI link (no NIC; formerly a 1 GB/s fallback)."""
    f = torus((4, 4, 4), accelerator="TPUv4")
    w = _w(model=CAT.models["llama3-8b"], tp=1, cp=4, dp=16, global_batch=16)
    ring = [f.accelerators[i] for i in range(4)]
    acc = CAT.accelerators["TPUv4"]
    ici = CAT.links[acc.scale_up_link]
    g = f.graph
    cap = sum(d["capacity"] for _, v, d in g.out_edges(ring[0], data=True) if v == ring[1])
    alone = cp_ring_alone(w, f, ring, 1e9, 0)
    assert alone == pytest.approx(1e9 / (cap * ici.protocol_efficiency), rel=1e-9)
    assert alone < 0.1  # tens of GB/s, not 1 GB/s


def _run(f, w, hog: float = 0.0):
    sim = Simulation(f)
    job = TrainingJob(w, steps=1)
    job.prepare(f)
    if hog:
        ph = job.phases.cp[0]
        # a neighbour's bulk traffic on every link the CP ring uses, for the whole step
        sim.net.transfer(Transfer(ph.links, np.full(len(ph.links), hog), 0.0, "hog"))
    sim.add(job)
    return sim.run().results[job.name]


def test_cp_exposure_in_a_step_and_under_contention():
    # the gradients (reduced over DP x CP) go after the backward, not under the CP ring
    f, w = _fab(), _w(global_batch=4, dp=1, n_gpus=16, overlap_grad_reduce=False,
                 zero=0,  # nor the parameter all-gather under the first forward
                 stragglers=False)  # the attention at the catalog rate
    st = StageCost(w, f, 0, [f.accelerators[i] for i in range(8)])
    alone = _run(f, w)
    M = w.micro_batches
    b = alone.steps[0].breakdown
    assert b["cp_exposed"] == pytest.approx(M * (st.cp_fwd + st.cp_bwd), rel=1e-6)
    busy = _run(_fab(), w, hog=1e12)
    b2 = busy.steps[0].breakdown
    # sharing every ring link with one bulk flow halves the ring's rate
    nic = CAT.links["ib-ndr"]
    rate = nic.bandwidth_Bps * nic.protocol_efficiency
    want_f = max(0.0, 2 * st.cp_bytes_fwd / rate + _lat(st.cp_steps) - st.cp_attn_fwd)
    want_b = max(0.0, 2 * st.cp_bytes_bwd / rate + _lat(st.cp_steps) - st.cp_attn_bwd)
    assert b2["cp_exposed"] == pytest.approx(M * (want_f + want_b), rel=1e-3)
    assert b2["cp_exposed"] > 1.5 * b["cp_exposed"]
