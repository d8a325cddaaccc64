"""Inference serving: iteration-time closed forms, KV capacity, Little's law, determinism,
bad service files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.catalog import load_catalog
from sim.cli import main
from sim.compute import attention_time, matmul_rate
from sim.errors import ConfigError, InfeasibleError
from sim.fabric import nvswitch_node
from sim.workload.serving import (
    IterationModel,
    Lengths,
    ServiceSpec,
    kv_bytes_per_token,
    simulate_service,
)

CAT = load_catalog()
ROOT = Path(__file__).resolve().parents[2]
L70 = CAT.models["llama2-70b"]


@pytest.fixture(scope="module")
def dgx():
    return nvswitch_node("DGX-H100")


def test_kv_bytes_per_token_llama2_70b():
    # 2 (K, V) x 80 layers x 8 KV heads x 128 dims x 1 byte (FP8)
    assert kv_bytes_per_token(L70, 1) == 2 * 80 * 8 * 128


def test_decode_is_memory_bound_and_prefill_compute_bound(dgx):
    s = ServiceSpec(name="x", model=L70, tp=2, precision="fp8", kv_bytes=1)
    it = IterationModel(s, dgx, dgx.accelerators[:2])
    cm = CAT.compute
    acc = CAT.accelerators["H100-SXM"]
    hbm = acc.hbm_bandwidth_Bps * cm.hbm_efficiency
    # one decode token at small context: reading the weights dominates
    t, _ = it.time(0, 0.0, 1, 100.0)
    weights = it.weight_bytes / hbm
    assert weights < t < weights * 1.6
    # a long prefill: its FLOPs dominate, the GEMMs at the matmul rate and the causal
    # attention core at the fused-attention rate
    n = 8192
    t, info = it.time(n, n * n / 2, 0, 0.0)
    attn = 4 * L70.layers * L70.heads * L70.head_dim / 2 * n * n / 2
    flops_t = (info["flops"] - attn) / matmul_rate(acc, "fp8", sustained=True) + \
        attention_time(acc, "fp8", attn)
    assert attention_time(acc, "fp8", attn) > attn / matmul_rate(acc, "fp8", sustained=True)
    assert flops_t < t < flops_t * 1.3
    # KV capacity: HBM left after weights and a 5% workspace, at kv_fraction
    free = (acc.hbm_capacity_B * 2 - it.weight_bytes * 2 - 0.05 * acc.hbm_capacity_B * 2)
    assert it.kv_capacity_tokens == int(free * 0.9 / kv_bytes_per_token(L70, 1))


def test_elementwise_bytes_closed_form(dgx):
    """Per token and layer, inference moves 2 norms (read + write h), 2 residual adds
    (~4h), SwiGLU's activation (read gate and up, write: 3 f / tp) and rotary on Q, K, V
    (3 a d / tp) through HBM at 2 bytes, and no dropout."""
    for tp in (1, 2, 8):
        s = ServiceSpec(name="x", model=L70, tp=tp, precision="fp8", kv_bytes=1)
        it = IterationModel(s, dgx, dgx.accelerators[:tp])
        h, f, a, d = 8192, 28672, 64, 128
        per_layer = (4 * h + 4 * h + 3 * f / tp + 3 * a * d / tp) * 2
        assert it.elem_token == pytest.approx(80 * per_layer, rel=1e-12)
        # a decode step pays it per token: doubling the batch at zero context adds it once
        # more per added token, besides the GEMMs' share of the larger batch
        t1, _ = it.time(0, 0.0, 16, 0.0)
        t2, _ = it.time(0, 0.0, 32, 0.0)
        hbm = CAT.accelerators["H100-SXM"].hbm_bandwidth_Bps * CAT.compute.hbm_efficiency
        comm = it.tp_time(32) - it.tp_time(16)
        gemms = it.linear_time(32, 32 * it.head_flops_per_seq) - \
            it.linear_time(16, 16 * it.head_flops_per_seq)
        assert t2 - t1 == pytest.approx(16 * it.elem_token / hbm + comm + gemms, rel=1e-9)


def test_small_batch_gemms_between_streaming_and_the_measured_shapes(dgx):
    """Below the tables' smallest m (256 rows) the linear layers take the time to stream
    their weights plus a share of compute affine in m, continuous with the measured-shape
    roofline at 256 rows; above it, the roofline (the larger of FLOPs at the shape's
    efficiency and streaming the weights)."""
    from sim.workload.serving import GEMM_M_MEASURED

    s = ServiceSpec(name="x", model=L70, tp=2, precision="fp8", kv_bytes=1)
    it = IterationModel(s, dgx, dgx.accelerators[:2])
    acc = CAT.accelerators["H100-SXM"]
    t_w = it.weight_bytes / (acc.hbm_bandwidth_Bps * CAT.compute.hbm_efficiency)
    rate = matmul_rate(acc, "fp8", sustained=True)

    def roofline(m):
        return max(2 * it.active_params * m / 2 / it.gemm_efficiency(m) / rate, t_w)

    m0 = GEMM_M_MEASURED
    assert m0 == 256
    # FLOPs alone would be faster than streaming at 64 rows: the max() roofline says t_w
    assert 2 * it.active_params * 64 / 2 / it.gemm_efficiency(64) / rate < t_w
    for m in (1, 64, 128, 255):
        assert it.linear_time(m, 0.0) == pytest.approx(
            t_w + m / m0 * (roofline(m0) - t_w), rel=1e-12)
    assert it.linear_time(1, 0.0) == pytest.approx(t_w, rel=0.01)
    assert roofline(m0) > 1.2 * t_w  # the measured 256-row shapes are slower than streaming
    assert it.linear_time(m0 - 1, 0.0) == pytest.approx(it.linear_time(m0, 0.0), rel=0.01)
    for m in (256, 1024, 4096):
        assert it.linear_time(m, 0.0) == pytest.approx(roofline(m), rel=1e-12)


def test_decode_attention_per_query_head_reads_kv_once_per_query_head(dgx):
    """MMHA-style decode (one block per query head) reads a GQA model's KV heads/kv_heads
    times; a grouped kernel once. MHA models are unaffected; the cache's size is not."""
    ctx = 64 * 4096.0
    res = {}
    for mode in ("grouped", "per_query_head"):
        s = ServiceSpec(name="x", model=L70, tp=2, precision="fp8", kv_bytes=1,
                        decode_attention=mode)
        it = IterationModel(s, dgx, dgx.accelerators[:2])
        res[mode] = (it.time(0, 0.0, 64, ctx)[1]["hbm_bytes"], it.kv_capacity_tokens)
    kv_grouped = kv_bytes_per_token(L70, 1) / 2 * ctx
    assert res["per_query_head"][0] - res["grouped"][0] == pytest.approx(7 * kv_grouped)
    assert res["per_query_head"][1] == res["grouped"][1]
    m7 = CAT.models["llama2-7b"]
    t = [IterationModel(ServiceSpec(name="x", model=m7, decode_attention=mode), dgx,
                        dgx.accelerators[:1]).time(0, 0.0, 16, 16 * 2048.0)[0]
         for mode in ("grouped", "per_query_head")]
    assert t[0] == t[1]


def _service(**kw):
    base = dict(name="x", model=L70, replicas=2, tp=2, precision="fp8", kv_bytes=1,
                max_batch=256, arrival="poisson", rate=20.0,
                prompt=Lengths("lognormal", 400, 0.6, 1, 1023),
                output=Lengths("lognormal", 200, 0.6, 1, 1024), seed=3)
    base.update(kw)
    return ServiceSpec(**base)


def test_littles_law_on_the_request_table(dgx):
    """Mean number in the system (sampled at random instants) = arrival rate x mean time
    in the system, within sampling error."""
    r = simulate_service(dgx, _service(), 120.0)
    req = r.requests
    assert req["finish_s"].notna().all() and (req["finish_s"] >= req["arrival_s"]).all()
    lo, hi = 30.0, 120.0  # steady window
    rng = np.random.default_rng(0)
    ts = rng.uniform(lo, hi, 4000)
    a, f_ = req["arrival_s"].to_numpy(), req["finish_s"].to_numpy()
    in_sys = np.array([np.count_nonzero((a <= t) & (f_ > t)) for t in ts])
    inside = req[(req["arrival_s"] >= lo) & (req["arrival_s"] < hi)]
    lam = len(inside) / (hi - lo)
    w = inside["e2e_s"].mean()
    assert in_sys.mean() == pytest.approx(lam * w, rel=0.12)


def test_latency_order_and_throughput(dgx):
    r = simulate_service(dgx, _service(), 60.0)
    m = r.summary
    assert m["ttft_p50_s"] <= m["ttft_p90_s"] <= m["ttft_p99_s"]
    assert m["tpot_p50_s"] <= m["tpot_p99_s"]
    # throughput is measured while requests arrive (after the warm-up): count every
    # token at its time (first token, then evenly spaced to the finish) inside the window
    w0, w1 = m["throughput_window_s"]
    req = r.requests
    times = np.concatenate([
        f + np.arange(n) * ((e - f) / (n - 1) if n > 1 else 0.0)
        for f, e, n in zip(req["first_token_s"], req["finish_s"], req["output_tokens"],
                           strict=True)])
    inside = ((times >= w0) & (times < w1)).sum()
    assert m["throughput_tokens_per_s"] == pytest.approx(inside / (w1 - w0), rel=2e-3)
    # under light load it is the offered load: arrival rate x mean output tokens
    assert m["throughput_tokens_per_s"] == pytest.approx(
        20.0 * req["output_tokens"].mean(), rel=0.1)
    # the per-interval series integrates to every token generated
    assert (r.intervals["output_tokens_per_s"].sum() * 1.0 ==
            pytest.approx(req["output_tokens"].sum()))
    assert 0 < m["busy_fraction"] <= 1 and 0 < m["hbm_utilization"] <= 1


def test_overload_raises_latency_and_queues(dgx):
    light = simulate_service(dgx, _service(rate=5.0), 60.0).summary
    heavy = simulate_service(dgx, _service(rate=60.0), 60.0).summary
    assert heavy["ttft_p99_s"] > 5 * light["ttft_p99_s"]
    assert heavy["tpot_p50_s"] > light["tpot_p50_s"]


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_small_kv_cache_preempts(dgx, mode):
    """A cache of 1% of the free HBM forces preemptions. Recompute prefills the victims'
    prompts and generated tokens again; swap prefills every prompt once and moves each
    victim's KV out and back in. Either way every request completes and the cache's
    accounting returns to zero."""
    r = simulate_service(dgx, _service(kv_fraction=0.01, rate=40.0, preemption=mode), 30.0)
    m, req = r.summary, r.requests
    assert m["preemptions"] > 0
    assert req["finish_s"].notna().all()  # preempted requests still complete
    assert m["kv_tokens_left"] == 0
    prompts = int(req["prompt_tokens"].sum())
    if mode == "recompute":
        assert m["prefill_tokens"] > prompts and m["swapped_tokens"] == 0
    else:
        assert m["prefill_tokens"] == prompts
        assert m["swapped_tokens"] > 0 and m["swapped_tokens"] % 2 == 0  # out, then in


def test_no_evict_reserves_whole_sequences(dgx):
    """preemption: none (TensorRT-LLM's GUARANTEED_NO_EVICT) never preempts: a request is
    admitted only when prompt + output tokens fit beside the running requests' whole
    sequences, so at most capacity // (prompt + output) run at once; MAX_UTILIZATION-like
    recompute packs more requests into the same cache and has to preempt."""
    P, N = 300, 500  # prompt and output tokens
    kw = dict(kv_fraction=0.004, rate=40.0, replicas=1, prompt=Lengths("fixed", P),
              output=Lengths("fixed", N))
    s = _service(preemption="none", **kw)
    cap = IterationModel(s, dgx, dgx.accelerators[:2]).kv_capacity_tokens
    assert 2 * (P + N) < cap < 20 * (P + N)  # a cache of a few whole sequences
    r = simulate_service(dgx, s, 5.0)
    req, m = r.requests, r.summary
    assert m["preemptions"] == 0 and m["kv_tokens_left"] == 0
    assert req["finish_s"].notna().all()
    t = req["first_token_s"].to_numpy()
    running = [((t <= x) & (req["finish_s"].to_numpy() > x)).sum() for x in t]
    assert max(running) == cap // (P + N)  # the queue keeps the cache full of reservations
    greedy = simulate_service(dgx, _service(preemption="recompute", **kw), 5.0).summary
    assert greedy["preemptions"] > 0


def test_host_overhead_per_request_closed_form(dgx, tmp_path):
    """The runtime's host work: c per request in each iteration, the GPU idle meanwhile.
    One request of P prompt and N output tokens takes N iterations (its prefill yields the
    first token), each c longer; two requests side by side pay 2c per iteration."""
    from sim.workload.serving import load_service

    P, N, c = 100, 40, 50e-6
    kw = dict(replicas=1, arrival="all-at-once", prompt=Lengths("fixed", P),
              output=Lengths("fixed", N))
    for n in (1, 2):
        base = simulate_service(dgx, _service(rate=float(n), **kw), 1.0).requests
        slow = simulate_service(dgx, _service(rate=float(n), host_overhead_per_request=c,
                                              **kw), 1.0).requests
        assert (slow["finish_s"] - base["finish_s"]).to_numpy() == \
            pytest.approx(np.full(n, N * n * c), rel=1e-9)
    p = _svc_file(tmp_path, **{"batching.host_overhead_per_request": "15 us"})
    assert load_service(p).host_overhead_per_request == pytest.approx(15e-6)


def test_vocab_buffers_come_out_of_the_kv_cache(dgx, tmp_path):
    """The runtime's batch x vocabulary buffers (every GPU) are taken from the memory the
    KV cache is sized from; too many of them leave none, which says so in one line."""
    from sim.workload.serving import load_service

    acc = CAT.accelerators["H100-SXM"]
    s = ServiceSpec(name="x", model=L70, tp=2, precision="fp8", kv_bytes=1, max_batch=1024,
                    vocab_buffer_bytes=45.0)
    it = IterationModel(s, dgx, dgx.accelerators[:2])
    free = (acc.hbm_capacity_B - it.weight_bytes - 0.05 * acc.hbm_capacity_B) * 2 - \
        45.0 * 1024 * L70.vocab * 2
    assert it.kv_capacity_tokens == int(free * 0.9 / kv_bytes_per_token(L70, 1))
    big = ServiceSpec(name="x", model=L70, tp=2, precision="fp8", kv_bytes=1,
                      max_batch=65536, vocab_buffer_bytes=45.0)
    with pytest.raises(InfeasibleError, match=r"GiB of batch x vocabulary buffers per GPU"):
        IterationModel(big, dgx, dgx.accelerators[:2])
    p = _svc_file(tmp_path, **{"batching.vocab_buffer_bytes": 45})
    assert load_service(p).vocab_buffer_bytes == 45.0
    p = _svc_file(tmp_path, **{"batching.vocab_buffer_bytes": -1})
    with pytest.raises(ConfigError, match="batching.vocab_buffer_bytes"):
        load_service(p)


def test_swap_time_over_the_host_link(dgx):
    """Each GPU copies its KV shard over its own PCIe 5.0 x16 link (DGX H100)."""
    s = ServiceSpec(name="x", model=L70, tp=2, precision="fp8", kv_bytes=1,
                    preemption="swap")
    it = IterationModel(s, dgx, dgx.accelerators[:2])
    pcie = CAT.links["pcie5"]
    want = 1000 * kv_bytes_per_token(L70, 1) / 2 / (pcie.bandwidth_Bps *
                                                     pcie.protocol_efficiency)
    assert it.swap_time(1000) == pytest.approx(want, rel=1e-12)
    assert it.swap_time(0) == 0.0


def test_static_batch_closed_form(dgx):
    """Static batch of B requests, in=out=L: one prefill iteration, then L-1 decodes."""
    B, L = 8, 16
    s = _service(replicas=1, static_batch=B, arrival="all-at-once", rate=B,
                 prompt=Lengths("fixed", L), output=Lengths("fixed", L))
    r = simulate_service(dgx, s, 1.0)
    it = IterationModel(s, dgx, dgx.accelerators[:2])
    t = it.time(B * L, B * L * L / 2, 0, 0.0)[0]
    t += sum(it.time(0, 0.0, B, float(B * (L + k)))[0] for k in range(L - 1))
    assert r.requests["finish_s"].max() == pytest.approx(t, rel=1e-9)


def test_same_seed_same_numbers(dgx):
    a = simulate_service(dgx, _service(), 30.0).summary
    b = simulate_service(dgx, _service(), 30.0).summary
    assert a == b


def _svc_file(tmp_path, **edits):
    d = yaml.safe_load((ROOT / "workloads" / "llama2-70b-serve.yaml").read_text())
    # the copy lives elsewhere: no lengths file relative to the bundled YAML
    d["prompt_tokens"] = {"dist": "lognormal", "mean": 222, "sigma": 0.5, "max": 1023}
    for k, v in edits.items():
        cur = d
        *path, last = k.split(".")
        for p in path:
            cur = cur[p]
        cur[last] = v
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.mark.parametrize("edits, field, match", [
    ({"parallelism.tp": 3}, "parallelism.tp", "64 heads are not divisible by tp=3"),
    ({"parallelism.pp": 2}, "parallelism.pp", "pipeline-parallel serving"),
    ({"arrival.rate": -1}, "arrival.rate", "must be > 0.0"),
    ({"slo.ttft": 2}, "slo.ttft", "bare number"),
    ({"model": "llama-9"}, "model", "unknown model"),
    ({"batching.decode_attention": "flash"}, "batching.decode_attention", "grouped"),
    ({"batching.preemption": "evict"}, "batching.preemption", "recompute, swap, none"),
    ({"batching.host_overhead_per_request": "-5 us"}, "batching.host_overhead_per_request",
     "must not be negative"),
    ({"batching.host_overhead_per_request": 5}, "batching.host_overhead_per_request",
     "bare number"),
])
def test_bad_services_one_line(tmp_path, capsys, edits, field, match):
    p = _svc_file(tmp_path, **edits)
    code = main(["serve", "--topology", str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml"),
                 "--service", str(p), "--duration", "5s"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"fabsim: error: {p}: {field}: ")
    assert match in err[0]


def test_serve_json(capsys):
    assert main(["serve", "--topology", str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml"),
                 "--service", str(ROOT / "workloads" / "llama2-70b-serve.yaml"),
                 "--duration", "10s", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    # every request accounted for, and the figures consistent with each other
    assert out["requests_finished"] + out["requests_rejected"] + \
        out["requests_unfinished"] == out["requests"] > 0
    assert out["requests_unfinished"] == 0
    for k in ("ttft", "tpot", "e2e"):
        assert 0 < out[f"{k}_p50_s"] <= out[f"{k}_p90_s"] <= out[f"{k}_p99_s"]
    assert out["ttft_p50_s"] < out["e2e_p50_s"]  # the first token comes before the last
    assert 0 < out["busy_fraction"] <= 1 and 0 < out["hbm_utilization"] <= 1
    # tokens per request in the window: throughput / request rate, between the shortest
    # and the longest answer the service draws (lognormal, mean 290, at most 1,024)
    per_request = out["throughput_tokens_per_s"] / out["requests_per_s"]
    assert 50 < per_request < 1024


def test_disaggregated_serving_sends_kv_over_the_fabric():
    """2 prefill + 2 decode replicas on two servers: every prompt's KV (prompt x
    bytes/token / tp per GPU) crosses the network between the pools, and it counts."""
    from sim.fabric import rail_optimized

    f = rail_optimized(node="DGX-H100", servers=2, servers_per_unit=2, leaf="QM9700",
                       spine="QM9700", link="ib-ndr")
    s = _service(replicas=4, tp=4, prefill_replicas=2, rate=10.0)
    r = simulate_service(f, s, 30.0)
    req = r.requests
    assert req["finish_s"].notna().all()
    assert set(req["prefill_replica"].unique()) <= {0, 1}
    assert set(req.loc[req["output_tokens"] > 1, "replica"].unique()) <= {2, 3}
    m = r.summary
    # each GPU's shard of a prompt over a 400G NIC (servers 0 and 1 hold the two pools)
    kv_gpu = req["prompt_tokens"].mean() * kv_bytes_per_token(L70, 1) / 4
    nic = 50e9 * CAT.links["ib-ndr"].protocol_efficiency
    assert m["kv_transfer_mean_s"] >= kv_gpu / nic * 0.5
    assert m["kv_transfer_mean_s"] < 0.1
    # decode starts after the KV arrives: TTFT (prefill) < time to second token
    assert (req["ttft_s"] <= req["e2e_s"]).all()
    assert m["kv_tokens_left"] == 0
    # with no eviction and a small cache, both pools reserve and release cleanly
    m = simulate_service(f, _service(replicas=4, tp=4, prefill_replicas=2, rate=10.0,
                                     preemption="none", kv_fraction=0.02), 30.0).summary
    assert m["preemptions"] == 0 and m["kv_tokens_left"] == 0


def test_serve_plot_writes_latency_cdf_and_throughput(tmp_path, capsys):
    out = tmp_path / "serve.png"
    assert main(["serve", "--topology", str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml"),
                 "--service", str(ROOT / "workloads" / "llama2-70b-serve.yaml"),
                 "--duration", "5s", "--plot", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert "throughput" in capsys.readouterr().out


def test_empirical_lengths_from_a_file(tmp_path):
    """A data set's own lengths: each drawn once while they last (a permutation), then
    with replacement; the file is found beside the service YAML."""
    from sim.workload.serving import Lengths, load_service

    (tmp_path / "isl.txt").write_text("# prompt lengths\n10\n20\n30\n40\n")
    p = _svc_file(tmp_path, prompt_tokens={"dist": "empirical", "file": "isl.txt"})
    s = load_service(p)
    assert s.prompt.values == (10, 20, 30, 40) and s.prompt.mean == 25.0
    rng = np.random.default_rng(1)
    assert sorted(s.prompt.sample(rng, 4)) == [10, 20, 30, 40]
    many = s.prompt.sample(rng, 1000)
    assert set(many) == {10, 20, 30, 40}
    capped = Lengths("empirical", values=(5, 500), high=100).sample(rng, 2)
    assert sorted(capped) == [5, 100]


def test_empirical_prompt_and_output_lengths_drawn_as_pairs(dgx):
    """Both empirical with as many values: the i-th prompt goes with the i-th output (a
    data set's two columns), first each pair once, then with replacement; otherwise the
    two are drawn independently."""
    prompts = tuple(range(10, 110))
    outputs = tuple(2 * p for p in prompts)
    for n, rate in ((100, 100.0), (300, 300.0)):
        s = _service(replicas=1, arrival="all-at-once", rate=rate,
                     prompt=Lengths("empirical", 60.0, values=prompts),
                     output=Lengths("empirical", 120.0, values=outputs))
        req = simulate_service(dgx, s, 1.0).requests
        assert len(req) == n
        assert (req["output_tokens"] == 2 * req["prompt_tokens"]).all()
        if n == 100:
            assert sorted(req["prompt_tokens"]) == list(prompts)
    s = _service(replicas=1, arrival="all-at-once", rate=99.0,
                 prompt=Lengths("empirical", 60.0, values=prompts),
                 output=Lengths("empirical", 120.0, values=outputs[:-1]))
    req = simulate_service(dgx, s, 1.0).requests
    assert (req["output_tokens"] != 2 * req["prompt_tokens"]).any()


@pytest.mark.parametrize("text, match", [("12\nabc\n", "line 2: expected a token length"),
                                         ("0\n", "line 1"), ("# empty\n", "no lengths")])
def test_bad_lengths_file_one_line(tmp_path, capsys, text, match):
    (tmp_path / "isl.txt").write_text(text)
    p = _svc_file(tmp_path, prompt_tokens={"dist": "empirical", "file": "isl.txt"})
    code = main(["serve", "--topology", str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml"),
                 "--service", str(p), "--duration", "5s"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(tmp_path / "isl.txt") in err[0]
    assert match in err[0]


def test_bundled_mlperf_service_uses_the_derived_trtllm_constants():
    """workloads/llama2-70b-serve.yaml restates TensorRT-LLM's host time and buffers: they
    must stay the values sim.validation derives (re-derived when the compute model moves)."""
    from sim.units import parse_time
    from sim.validation import TRTLLM_HOST_PER_REQUEST_S, TRTLLM_VOCAB_BUFFER_BYTES

    b = yaml.safe_load((ROOT / "workloads" / "llama2-70b-serve.yaml").read_text())["batching"]
    assert parse_time(b["host_overhead_per_request"]) == \
        pytest.approx(TRTLLM_HOST_PER_REQUEST_S)
    assert b["vocab_buffer_bytes"] == TRTLLM_VOCAB_BUFFER_BYTES


# ------------------------------------------- every request accounted for; busy in [0, 1]
L8 = CAT.models["llama3-8b"]


def _accounted(r) -> None:
    s, req = r.summary, r.requests
    assert s["requests_finished"] + s["requests_rejected"] + s["requests_unfinished"] == \
        s["requests"] == len(req)
    assert (req["status"] == "finished").sum() == s["requests_finished"]
    assert req.loc[req["status"] == "finished", "finish_s"].notna().all()
    assert (r.intervals["busy_fraction"] <= 1 + 1e-9).all()
    assert (r.intervals["hbm_utilization"] <= 1 + 1e-9).all()


def test_prompts_over_the_token_budget_without_chunking_are_rejected_not_lost(dgx):
    """Chunked prefill off, token budget 2,048, prompts up to 6,000 tokens (a seeded
    service that once left 534 requests unscheduled forever): each prompt longer than the
    budget is rejected at admission (as vLLM's max_num_batched_tokens does), every other
    request finishes, and SLO attainment counts the rejected ones as misses."""
    s = _service(model=L8, token_budget=2048, chunked_prefill=False, arrival="gamma",
                 cv=2.0, prompt=Lengths("lognormal", 1000, 0.8, 1, 6000),
                 output=Lengths("lognormal", 250, 0.8, 1, 2000), slo_ttft_s=2.0,
                 slo_tpot_s=0.1)
    r = simulate_service(dgx, s, 30.0)
    _accounted(r)
    req = r.requests
    over = req["prompt_tokens"] > 2048
    assert over.sum() > 10 and r.summary["requests_unfinished"] == 0
    assert (req.loc[over, "status"] == "rejected: prompt_over_token_budget").all()
    assert (req.loc[~over, "status"] == "finished").all()
    assert r.summary["requests_rejected_prompt_over_token_budget"] == int(over.sum())
    assert r.summary["slo_attainment"] <= 1 - over.mean() + 1e-12


def test_a_recomputed_prompt_longer_than_the_budget_runs_alone_and_finishes(dgx):
    """Preemption by recompute prefills prompt + generated tokens again; without chunked
    prefill that can exceed the token budget even when every prompt fits it. It must run
    in an iteration of its own, not wait forever."""
    s = _service(model=L70, token_budget=1024, chunked_prefill=False, kv_fraction=0.07,
                 rate=40.0, prompt=Lengths("lognormal", 600, 0.5, 1, 1000),
                 output=Lengths("lognormal", 600, 0.5, 1, 1500), preemption="recompute")
    r = simulate_service(dgx, s, 20.0)
    _accounted(r)
    assert r.summary["preemptions"] > 0
    assert r.summary["requests_finished"] == r.summary["requests"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_busy_fraction_of_every_interval_is_at_most_one(dgx, seed):
    """Iterations that straddle an interval boundary count in both intervals, by overlap
    (an iteration counted whole in its first interval once gave busy fractions of 1.39);
    the intervals' busy time adds up to the summary's."""
    s = _service(rate=60.0, seed=seed, max_batch=64, token_budget=4096)
    r = simulate_service(dgx, s, 20.0, interval_s=0.25)
    _accounted(r)
    iv = r.intervals
    assert iv["busy_fraction"].max() > 0.5
    span = r.summary["duration_s"]
    total = float((iv["busy_fraction"] * 0.25 * s.replicas).sum())
    assert total == pytest.approx(r.summary["busy_fraction"] * span * s.replicas, rel=1e-9)


def test_prompts_longer_than_the_context_are_rejected_and_all_of_them_is_infeasible(dgx):
    """A prompt longer than the model's context (Llama 3 8B: 8,192 tokens) is turned away
    at admission, as vLLM does with max_model_len; the rest are served."""
    s = _service(model=L8, prompt=Lengths("lognormal", 4000, 0.8, 1, 20000),
                 output=Lengths("fixed", 16))
    r = simulate_service(dgx, s, 10.0)
    _accounted(r)
    req = r.requests
    over = req["prompt_tokens"] > L8.max_seq_len
    assert over.sum() > 3
    assert (req.loc[over, "status"] == "rejected: prompt_over_context").all()
    assert (req.loc[~over, "status"] == "finished").all()


def test_a_service_whose_every_prompt_exceeds_the_context_or_min_above_max_is_one_line(
        tmp_path, capsys):
    for edit, frag in [({"model": "llama3-8b", "prompt_tokens": 20000},
                        "prompt_tokens: every prompt has at least 20000 tokens, above Llama "
                        "3 8B's context of 8192"),
                       ({"prompt_tokens": {"dist": "uniform", "min": 900, "max": 100}},
                        "prompt_tokens.min: min 900 is above max 100")]:
        p = _svc_file(tmp_path, **edit)
        rc = main(["serve", "--topology", str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml"),
                   "--service", str(p), "--duration", "1s"])
        out, err = capsys.readouterr()
        assert rc == 2 and len(err.splitlines()) == 1 and frag in err, err
