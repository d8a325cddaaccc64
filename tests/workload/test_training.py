"""Training: FLOP and memory closed forms, pipeline schedules, folding, bad workloads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from sim.catalog import load_catalog
from sim.cli import main
from sim.errors import ConfigError, InfeasibleError
from sim.fabric import leaf_spine, rail_optimized
from sim.workload import TrainingWorkload, layer_costs, memory_per_gpu, simulate_training
from sim.workload.training import model_flops_per_step, pipeline_schedule

CAT = load_catalog()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fab64():
    return rail_optimized(node="DGX-H100", servers=8, servers_per_unit=8, leaf="QM9700",
                          spine="QM9700", link="ib-ndr")


def test_gpt_layer_flops_match_narayanan():
    """Forward FLOPs of a GPT layer: 24 b s h^2 + 4 b s^2 h (Narayanan et al., Sec. 5.1)."""
    m = CAT.models["gpt3-175b"]
    b, s, h = 2, 2048, m.hidden
    c = layer_costs(m, micro_batch=b, seq_len=s, flash_attention=False, causal=False)
    assert c.flops_fwd == pytest.approx(24 * b * s * h * h + 4 * b * s * s * h, rel=1e-12)
    # per-GPU share under tensor parallelism
    c8 = layer_costs(m, micro_batch=b, seq_len=s, tp=8, flash_attention=False, causal=False)
    assert c8.flops_fwd == pytest.approx(c.flops_fwd / 8, rel=1e-12)


def test_step_flops_match_eq3_without_recompute():
    m = CAT.models["gpt3-175b"]
    w = TrainingWorkload(name="x", model=m, global_batch=1536, micro_batch=1, seq_len=2048,
                         tp=8, pp=8, dp=16)
    mflops, hflops = model_flops_per_step(w)
    B, s, L, h, V = 1536, 2048, m.layers, m.hidden, m.vocab
    want = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h))
    assert mflops == pytest.approx(want, rel=1e-9) and hflops == mflops


def test_activation_memory_korthikanti_table2():
    """Bytes per layer: 34 sbh + 5 a s^2 b (none); sbh (10 + 24/t + 5 a s/(h t)) (TP);
    sbh 34/t (TP + SP + selective); 2 sbh (full recompute)."""
    m = CAT.models["gpt3-175b"]
    s, b, h, a, t = 2048, 1, m.hidden, m.heads, 8
    kw = dict(micro_batch=b, seq_len=s, flash_attention=False)
    sbh = s * b * h
    assert layer_costs(m, **kw).activation_bytes == pytest.approx(sbh * (34 + 5 * a * s / h))
    assert layer_costs(m, tp=t, **kw).activation_bytes == pytest.approx(
        sbh * (10 + 24 / t + 5 * a * s / (h * t)))
    assert layer_costs(m, tp=t, sequence_parallel=True, recompute="selective",
                       **kw).activation_bytes == pytest.approx(sbh * 34 / t)
    assert layer_costs(m, recompute="full", **kw).activation_bytes == pytest.approx(2 * sbh)


def test_memory_by_zero_stage():
    m = CAT.models["llama3-8b"]
    base = dict(name="x", model=m, global_batch=64, micro_batch=1, seq_len=8192, tp=1, pp=1,
                dp=64)
    mem = {z: memory_per_gpu(TrainingWorkload(zero=z, **base)) for z in (0, 1, 2, 3)}
    p = mem[0]["params"]
    assert p == pytest.approx(8.03e9, rel=0.01)  # every parameter on each GPU (tp=pp=1)
    assert mem[0]["optimizer"] == pytest.approx(12 * p)
    assert mem[1]["optimizer"] == pytest.approx(12 * p / 64)
    assert mem[2]["gradients"] == pytest.approx(4 * p / 64)
    assert mem[3]["weights"] == pytest.approx(2 * p / 64)
    assert mem[0]["total"] > mem[1]["total"] > mem[2]["total"] > mem[3]["total"]


def test_gradient_buffer_in_its_reduction_dtype():
    """Megatron's gradient buffer holds grad_reduce_bytes per parameter; a 16-bit buffer
    adds the distributed optimizer's fp32 copy of its own shard."""
    m = CAT.models["llama3-8b"]
    base = dict(name="x", model=m, global_batch=64, micro_batch=1, seq_len=8192, dp=64)
    fp32 = memory_per_gpu(TrainingWorkload(grad_reduce_bytes=4, **base))
    bf16 = memory_per_gpu(TrainingWorkload(grad_reduce_bytes=2, **base))
    p = fp32["params"]
    assert fp32["gradients"] == pytest.approx(4 * p)
    assert bf16["gradients"] == pytest.approx(2 * p + 4 * p / 64)
    # fp16 training reduces (and keeps) fp16 gradients by default
    assert TrainingWorkload(precision="fp16", **base).grad_reduce_bytes == 2


def test_activations_without_dropout_and_with_fp8_inputs():
    """Per layer with TP + SP: Korthikanti's 34 sbh/t less the two dropout masks (2 sbh/t)
    for models without dropout; FP8 linear layers keep their QKV, FC1 and FC2 inputs as
    FP8 and add an FP8 copy of the projection input: (1 + f/h) sbh/t less."""
    gpt = CAT.models["gpt3-175b"]
    s, t = 2048, 8
    kw = dict(micro_batch=1, seq_len=s, tp=t, sequence_parallel=True, recompute="selective")
    sbh = s * gpt.hidden
    assert layer_costs(gpt, **kw).activation_bytes == pytest.approx(sbh * 34 / t)
    assert layer_costs(gpt, fp8=True, **kw).activation_bytes == pytest.approx(
        sbh * (34 - 1 - 4) / t)
    nodrop = dataclasses.replace(gpt, dropout=False)
    assert layer_costs(nodrop, **kw).activation_bytes == pytest.approx(sbh * 32 / t)
    assert not CAT.models["llama3-70b"].dropout and CAT.models["gpt3-175b"].dropout
    # full recomputation keeps the 16-bit layer input either way
    assert layer_costs(gpt, fp8=True, **{**kw, "recompute": "full"}).activation_bytes == \
        pytest.approx(2 * sbh / t)


def test_fp8_casts_and_the_bf16_output_layer(fab64):
    """FP8 layers add the cast-transposes: 2 bytes per input element of each linear layer
    in forward, 4 per output-gradient element in backward; the output layer stays 16-bit."""
    m = CAT.models["llama3-8b"]
    kw = dict(micro_batch=1, seq_len=4096, tp=1)
    bf, f8 = layer_costs(m, **kw), layer_costs(m, fp8=True, **kw)
    assert f8.gemms == bf.gemms and bf.fp8_bwd_bytes == 0
    assert f8.bytes_fwd - bf.bytes_fwd == pytest.approx(
        2 * sum(mm * k * c for mm, n, k, c in bf.gemms))
    assert f8.fp8_bwd_bytes == pytest.approx(4 * sum(mm * n * c for mm, n, k, c in bf.gemms))
    from sim.workload.training import StageCost
    w = {p: TrainingWorkload(name="x", model=m, global_batch=8, micro_batch=1,
                             seq_len=4096, precision=p, dp=8, n_gpus=8)
         for p in ("bf16", "fp8")}
    gpus = [fab64.accelerators[0]]
    st = {p: StageCost(w[p], fab64, 0, gpus) for p in w}
    assert st["fp8"].head_fwd == pytest.approx(st["bf16"].head_fwd)
    assert st["fp8"].compute_fwd < st["bf16"].compute_fwd


def test_split_counting_embedding_and_loss():
    """Llama 3.1 405B over pp 8 x vp 8 (NeMo's layout): 126 layers + embedding + loss = 64
    chunks of 2 slots; the first chunk holds the embedding and layer 0, the last layer 125
    and the loss; every layer in exactly one chunk."""
    m = CAT.models["llama3.1-405b"]
    w = TrainingWorkload(name="x", model=m, global_batch=64, micro_batch=1, seq_len=8192,
                         tp=8, pp=8, vpp=8, cp=2, dp=8, split_counts_embedding_and_loss=True)
    from sim.workload.training import check, stage_layers
    check(w)
    chunks = {(s, c): stage_layers(w, s, c) for s in range(8) for c in range(8)}
    assert chunks[(0, 0)] == range(0, 1) and chunks[(7, 7)] == range(125, 126)
    assert sorted(len(r) for r in chunks.values()) == [1, 1] + [2] * 62
    assert sorted(x for r in chunks.values() for x in r) == list(range(126))
    # in Megatron's order: chunk c of stage s is virtual stage c * pp + s
    assert chunks[(1, 0)] == range(1, 3) and chunks[(0, 1)] == range(15, 17)


def test_tp_comm_overlap_leaves_one_chunk_exposed(fab64):
    """With TP communication overlapped under GEMMs that outlast it, each layer's exposed
    TP time is one chunk of tp (forward and backward); without, all of it."""
    from sim.workload.training import StageCost

    m = CAT.models["llama3-70b"]
    kw = dict(name="x", model=m, global_batch=8, micro_batch=1, seq_len=8192, tp=8, dp=8,
              n_gpus=64)
    gpus = [fab64.accelerators[i] for i in range(8)]
    off = StageCost(TrainingWorkload(**kw), fab64, 0, gpus)
    on = StageCost(TrainingWorkload(tp_comm_overlap=True, tp_comm_overlap_sms=0, **kw), fab64, 0,
                gpus)
    assert off.tp_fwd > 0 and off.tp_bwd == pytest.approx(off.tp_fwd)
    assert on.tp_fwd == pytest.approx(off.tp_fwd / 8)
    assert on.tp_bwd == pytest.approx(off.tp_bwd / 8)
    assert on.compute_fwd == off.compute_fwd


def test_tp_comm_overlap_sms_slow_the_gemms_they_share(fab64):
    """Communication on 16 of the H100's 132 SMs: the output projections (forward) and the
    other GEMMs' gradients (backward) take 132/116 of their time; nothing else changes, and
    the GEMMs still hide all but one chunk of tp."""
    from sim.compute import backward_gemms, gemms_time
    from sim.workload.models import layer_costs
    from sim.workload.training import StageCost

    m = CAT.models["llama3-70b"]
    kw = dict(name="x", model=m, global_batch=8, micro_batch=1, seq_len=8192, tp=8, dp=8,
              n_gpus=64, tp_comm_overlap=True)
    gpus = [fab64.accelerators[i] for i in range(8)]
    ideal = StageCost(TrainingWorkload(tp_comm_overlap_sms=0, **kw), fab64, 0, gpus)
    real = StageCost(TrainingWorkload(**kw), fab64, 0, gpus)
    acc = CAT.accelerators["H100-SXM"]
    c = layer_costs(m, micro_batch=1, seq_len=8192, tp=8)
    row = [g for g in c.gemms if g[1] == m.hidden]  # attention output projection, FC2
    col = [g for g in c.gemms if g[1] != m.hidden]  # QKV, FC1
    assert len(row) == 2 and len(col) == 2
    extra = 132 / 116 - 1
    L = m.layers
    assert real.compute_fwd - ideal.compute_fwd == pytest.approx(
        L * extra * gemms_time(acc, "bf16", row, True), rel=1e-9)
    assert real.compute_bwd - ideal.compute_bwd == pytest.approx(
        L * extra * gemms_time(acc, "bf16", backward_gemms(col), True), rel=1e-9)
    assert real.tp_fwd == pytest.approx(ideal.tp_fwd)


def test_tp_comm_overlap_sms_beyond_the_gpu_is_a_clear_error(fab64):
    w = TrainingWorkload(name="x", model=CAT.models["llama3-8b"], global_batch=8,
                         micro_batch=1, seq_len=2048, tp=8, dp=8, n_gpus=64,
                         tp_comm_overlap=True, tp_comm_overlap_sms=132, file="w.yaml")
    with pytest.raises(ConfigError, match=r"132 SMs for TP communication leave none of "
                                          r"H100-SXM's 132") as e:
        simulate_training(fab64, w)
    assert e.value.field == "options.tp_comm_overlap_sms"


def _ep_across_nodes(**kw):
    """Mixtral with experts of width 1,024 (so that a forward's all-to-all outlasts its
    computation) and EP 8 over TP 2: each expert-parallel group spans two DGX nodes; the DP
    traffic waits for the end of the step, so the ops share the network with nothing."""
    m = CAT.models["mixtral-8x7b"]
    m = dataclasses.replace(m, moe=dataclasses.replace(m.moe, expert_ffn=1024))
    return TrainingWorkload(name="moe", model=m, global_batch=64,
                            micro_batch=1, seq_len=1024, tp=2, pp=1, dp=32, ep=8, zero=1,
                            recompute="none", overlap_grad_reduce=False,
                            overlap_param_gather=False, stragglers=False, **kw)


def test_ep_overlap_hides_the_all_to_all_under_each_op(fab64):
    """Overlapped (on no SMs), each op's dispatch + combine runs under its computation:
    exposed = sum over ops of max(0, all-to-all - op), from the exposed run's own times."""
    from sim.workload.training import StageCost

    w = _ep_across_nodes()
    off = simulate_training(fab64, w)
    on = simulate_training(fab64, _ep_across_nodes(ep_comm_overlap=True,
                                                   ep_comm_overlap_sms=0))
    st = StageCost(w, fab64, 0, [fab64.accelerators[0], fab64.accelerators[1]])
    m = w.micro_batches
    a2a = off.breakdown["ep_exposed"] / (2 * m)  # forward and backward move the same bytes
    assert a2a > 0
    f = st.compute_fwd + st.head_fwd + st.tp_fwd
    b = st.compute_bwd + st.head_bwd + st.tp_bwd
    want = m * (max(0.0, a2a - f) + max(0.0, a2a - b))
    assert a2a > f and want > 0.05 * off.breakdown["ep_exposed"]
    assert on.breakdown["ep_exposed"] == pytest.approx(want, rel=0.02)
    assert on.breakdown["compute"] == pytest.approx(off.breakdown["compute"], rel=1e-9)
    assert on.step_time_s < off.step_time_s


def test_ep_overlap_sms_slow_the_computation(fab64):
    """DeepSeek-V3's 20 communication SMs of an H100's 132: the MoE stages compute at
    112/132 of the speed; 132 SMs leave none, a one-line error naming the field."""
    on0 = simulate_training(fab64, _ep_across_nodes(ep_comm_overlap=True,
                                                    ep_comm_overlap_sms=0))
    on20 = simulate_training(fab64, _ep_across_nodes(ep_comm_overlap=True))
    assert on20.breakdown["compute"] == pytest.approx(
        on0.breakdown["compute"] * 132 / 112, rel=1e-9)
    with pytest.raises(ConfigError, match=r"132 SMs for EP communication leave none") as e:
        simulate_training(fab64, _ep_across_nodes(ep_comm_overlap=True,
                                                  ep_comm_overlap_sms=132, file="w.yaml"))
    assert e.value.field == "options.ep_comm_overlap_sms"


def test_model_that_does_not_fit_is_infeasible_with_numbers(fab64):
    w = TrainingWorkload(name="x", model=CAT.models["llama3.1-405b"], global_batch=64,
                         micro_batch=1, seq_len=8192, tp=8, pp=1, dp=8, zero=0)
    with pytest.raises(InfeasibleError, match=r"stage 0 needs [\d.]+ GiB per GPU .* but "
                                              r"H100-SXM has 79.6 GiB"):
        simulate_training(fab64, w)


@pytest.mark.parametrize("sched", ["gpipe", "1f1b"])
def test_pipeline_bubble_closed_form(fab64, sched):
    """Equal stages, negligible communication: step = (M + P - 1)(t_f + t_b). A tiny
    vocabulary keeps the last stage's logits from making it the slowest."""
    from dataclasses import replace

    m = replace(CAT.models["megatron-1.7b"], vocab=64)
    P, M = 4, 8
    w = TrainingWorkload(name="x", model=m, global_batch=M * 16, micro_batch=1,
                         seq_len=2048, tp=1, pp=P, dp=16, schedule=sched, zero=1,
                         overlap_grad_reduce=True)
    r = simulate_training(fab64, w, network="analytical")
    st = r.stages
    per_op = (r.breakdown["compute"]) / M  # t_f + t_b of one micro-batch on a stage
    ideal = (M + P - 1) * per_op
    # a lower bound; above it only the PP hand-offs over a 400G NIC (at most two per
    # micro-batch slot on the critical path), the gradient tail and the optimizer step
    t_pp = 2048 * m.hidden * 2 / (50e9 * CAT.links["ib-ndr"].protocol_efficiency)
    assert ideal * (1 - 1e-9) <= r.step_time_s <= ideal + 2 * (M + P - 1) * t_pp + 2e-3
    assert r.breakdown["pp_bubble_and_wait"] / r.step_time_s == pytest.approx(
        (P - 1) / (M + P - 1), abs=0.03)
    assert len(st) == P


def test_interleaving_shrinks_the_bubble(fab64):
    """Megatron interleaved 1F1B: bubble (P-1)/(V M) instead of (P-1)/M, less the cost of
    V times more stage-to-stage hand-offs."""
    from dataclasses import replace

    m = replace(CAT.models["megatron-1.7b"], vocab=64)
    kw = dict(name="x", model=m, global_batch=8 * 16, micro_batch=1, seq_len=2048, tp=1,
              pp=4, dp=16)
    plain = simulate_training(fab64, TrainingWorkload(**kw), network="analytical")
    inter = simulate_training(fab64, TrainingWorkload(vpp=3, schedule="interleaved", **kw),
                              network="analytical")
    assert inter.breakdown["pp_bubble_and_wait"] < 0.6 * plain.breakdown["pp_bubble_and_wait"]


def test_schedules_run_every_op_once():
    m = CAT.models["megatron-1.7b"]
    for sched, vpp in (("gpipe", 1), ("1f1b", 1), ("interleaved", 2)):
        w = TrainingWorkload(name="x", model=m, global_batch=8, micro_batch=1, seq_len=2048,
                             pp=4, dp=1, vpp=vpp, schedule=sched)
        for s in range(4):
            ops = pipeline_schedule(w, s)
            assert sorted(ops) == sorted({(k, mb, c) for k in "FB" for mb in range(8)
                                          for c in range(vpp)})
            # a micro-batch's backward on a chunk never precedes its forward
            for k, mb, c in ops:
                if k == "B":
                    assert ops.index(("F", mb, c)) < ops.index((k, mb, c))


def test_folded_data_parallel_traffic_reaches_every_replica(fab64):
    m = CAT.models["megatron-1.7b"]
    w = TrainingWorkload(name="x", model=m, global_batch=64, micro_batch=1, seq_len=2048,
                         tp=8, pp=1, dp=8)
    r = simulate_training(fab64, w)
    assert r.breakdown["dp_exposed"] >= 0
    # the DP ring of every TP rank crosses its rail: all 64 NIC uplinks carry bytes
    # every replica's rail carries gradient bytes: the 8 busiest links are NIC links of
    # different servers (not one replica's links counted 8 times)
    nic_links = r.links[r.links["tech"] == "ib-ndr"]
    assert len(nic_links) >= 8
    servers = {x.split(".")[0] for x in nic_links["src"].tolist() + nic_links["dst"].tolist()
               if x.startswith("s")}
    assert len(servers) >= 4
    assert r.memory_per_gpu_bytes > 0 and 0 < r.mfu <= r.hfu <= 1


def test_same_inputs_same_numbers(fab64):
    m = CAT.models["megatron-1.7b"]
    w = TrainingWorkload(name="x", model=m, global_batch=64, micro_batch=1, seq_len=2048,
                         tp=2, pp=2, dp=16)
    a = simulate_training(fab64, w)
    b = simulate_training(fab64, w)
    assert a.step_time_s == b.step_time_s and a.breakdown == b.breakdown


def _workload(tmp_path, **edits):
    d = yaml.safe_load((ROOT / "workloads" / "llama3-70b-1k.yaml").read_text())
    for k, v in edits.items():
        cur = d
        *path, last = k.split(".")
        for p in path:
            cur = cur[p]
        cur[last] = v
    p = tmp_path / "w.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.mark.parametrize("edits, field, match", [
    ({"parallelism.dp": 16}, "parallelism", "tp*pp*dp*cp = 8*4*16*1 = 512, but the job has 1024"),
    ({"parallelism.tp": 3, "parallelism.dp": 85, "gpus": 1020}, "parallelism.tp",
     "64 attention heads are not divisible by tp=3"),
    ({"parallelism.pp": 3, "parallelism.dp": 42, "gpus": 1008}, "parallelism.pp",
     "80 layers are not divisible by pp x virtual stages = 3 x 1"),
    ({"batch.global": 1000}, "batch.global", "global batch 1000 is not divisible by "
                                             "micro_batch x dp = 1 x 32"),
    ({"model": "llama-9000"}, "model", "unknown model 'llama-9000'"),
    ({"batch.seq_len": "8k"}, "batch.seq_len", "expected a whole number"),
    ({"parallelism.ep": 2}, "parallelism.ep", "has no experts"),
    ({"options.grad_reduce_dtype": "fp64"}, "options.grad_reduce_dtype",
     "'fp64' is not one of: fp32, bf16, fp16"),
    ({"options.tp_comm_overlap": True, "options.tp_comm_overlap_sms": 140},
     "options.tp_comm_overlap_sms", "140 SMs for TP communication leave none of H100-SXM's 132"),
    ({"options.tp_comm_overlap_sms": -1}, "options.tp_comm_overlap_sms", "must be at least 0"),
    ({"parallelism.split_counts_embedding_and_loss": True},
     "parallelism.split_counts_embedding_and_loss",
     "80 layers + embedding + loss = 82 do not split into pp x virtual stages = 4 chunks"),
])
def test_bad_workloads_one_line(tmp_path, capsys, edits, field, match):
    p = _workload(tmp_path, **edits)
    code = main(["train", "--topology", str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml"),
                 "--workload", str(p)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"fabsim: error: {p}: {field}: ")
    assert match in err[0]


def test_train_json(capsys):
    assert main(["train", "--topology", str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml"),
                 "--workload", str(ROOT / "workloads" / "llama3-70b-1k.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"step_time_s", "tokens_per_s", "mfu", "hfu", "memory_per_gpu_bytes",
            "breakdown_s"} <= set(out)
    assert out["tokens_per_s"] == pytest.approx(1024 * 8192 / out["step_time_s"])
    assert 0.2 < out["mfu"] < 0.7


def _dp_only(fab, **kw):
    m = CAT.models["megatron-1.7b"]
    base = dict(name="x", model=m, global_batch=16, micro_batch=1, seq_len=2048, tp=8, pp=1,
                dp=8, zero=1, overlap_grad_reduce=False)
    base.update(kw)
    return simulate_training(fab, TrainingWorkload(**base))


def test_gradients_are_reduced_in_fp32_for_bf16(fab64):
    """Megatron-LM reduces bf16 runs' gradients in fp32 (4 bytes), fp16 runs' in fp16.
    Without overlap, exposed DP time = reduce-scatter(g x params) + all-gather(2 x params)
    on the same rings: 3 units with fp32 gradients, 2 with 16-bit ones."""
    assert TrainingWorkload(name="x", model=CAT.models["megatron-1.7b"], global_batch=8,
                            micro_batch=1, seq_len=8).grad_reduce_bytes == 4
    assert TrainingWorkload(name="x", model=CAT.models["megatron-1.7b"], global_batch=8,
                            micro_batch=1, seq_len=8, precision="fp16").grad_reduce_bytes == 2
    e4 = _dp_only(fab64, overlap_param_gather=False).breakdown["dp_exposed"]
    e2 = _dp_only(fab64, overlap_param_gather=False, grad_reduce_bytes=2).breakdown[
        "dp_exposed"]
    assert e4 / e2 == pytest.approx(1.5, rel=0.03)


@pytest.mark.parametrize("shape", [  # all-gather longer / shorter than a forward
    dict(seq_len=512), dict(seq_len=2048, micro_batch=4, global_batch=64)])
def test_param_gather_overlaps_only_the_first_forward(fab64, shape):
    """With the distributed optimizer's overlap_param_gather, the parameter all-gather runs
    under the first forward of the step; what it needs beyond that forward is exposed."""
    off = _dp_only(fab64, overlap_param_gather=False, grad_reduce_bytes=2, **shape)
    on = _dp_only(fab64, overlap_param_gather=True, grad_reduce_bytes=2, **shape)
    ag = off.breakdown["dp_exposed"] / 2  # RS and AG move the same bytes on the same rings
    mbs = 2
    first_fwd = off.breakdown["compute"] / (3 * mbs) + off.breakdown["tp_exposed"] / (2 * mbs)
    saved = off.breakdown["dp_exposed"] - on.breakdown["dp_exposed"]
    assert saved == pytest.approx(min(ag, first_fwd), rel=0.03)
    assert (ag > 1.5 * first_fwd) if shape["seq_len"] == 512 else (first_fwd > 1.5 * ag)
    assert on.step_time_s < off.step_time_s


def _moe(fab, **kw):
    base = dict(name="moe", model=CAT.models["mixtral-8x7b"], global_batch=32,
                micro_batch=1, seq_len=1024, tp=2, pp=1, dp=32, ep=4, zero=1,
                recompute="none")
    base.update(kw)
    return TrainingWorkload(**base)


def test_ep_all_to_all_inside_a_node_at_nvlink_rate(fab64):
    """EP 4 x TP 2 fills one DGX: each GPU's all-to-all bytes leave over its NVLinks
    (scale-up bandwidth x NVLink's p2p efficiency, as every GPU streams to all its
    peers at once); one exchange after every forward
    and one before every backward (data-parallel traffic moved after the step so that
    nothing shares the links)."""
    w = _moe(fab64, overlap_param_gather=False, overlap_grad_reduce=False)
    r = simulate_training(fab64, w)
    m = w.model
    sent = sum(layer_costs(m, micro_batch=1, seq_len=1024, tp=2, ep=4,
                           sequence_parallel=True, layer=i).ep_bytes_fwd
               for i in range(m.layers))
    acc = CAT.accelerators["H100-SXM"]
    inj = acc.scale_up_bandwidth_Bps * CAT.links[acc.scale_up_link].p2p_efficiency
    proto = CAT.protocols["Simple"]
    lat = proto.base_latency_s + proto.hop_latency_net_s
    mbs = w.micro_batches
    assert r.breakdown["ep_exposed"] == pytest.approx(2 * mbs * (sent / inj + lat), rel=0.02)



def test_ep_all_to_all_across_nodes_loads_the_nics(fab64):
    """EP 8 x TP 2 spans two servers: 4 of each rank's 7 peers are across the NICs, so
    the exchange takes longer than inside a node, and on a 2:1 leaf-spine fabric whose
    EP groups straddle two leaves' units it takes longer still."""
    kw = dict(ep=8, overlap_param_gather=False, overlap_grad_reduce=False)
    inside = simulate_training(fab64, _moe(fab64, overlap_param_gather=False,
                                           overlap_grad_reduce=False))
    across = simulate_training(fab64, _moe(fab64, **kw))
    assert across.breakdown["ep_exposed"] > 1.5 * inside.breakdown["ep_exposed"]
    nic = across.links[across.links["tech"] == "ib-ndr"]
    assert len(nic) > 0 and nic["utilization"].max() > 0.5
    # one server per ToR leaf: every EP group crosses the spine tier, 2:1 or 1:1
    thin, full = (leaf_spine(node="DGX-H100", servers=8, leaf="QM9700", spine="QM9700",
                             link="ib-ndr", servers_per_leaf=1, oversubscription=o)
                  for o in (2, 1))
    t_thin = simulate_training(thin, _moe(thin, **kw)).breakdown["ep_exposed"]
    t_full = simulate_training(full, _moe(full, **kw)).breakdown["ep_exposed"]
    assert t_thin > 1.3 * t_full


def test_chunk_parameters_add_up_to_the_model(fab64):
    """The parameters each pipeline stage's virtual chunks hold (the DP gradient and
    parameter traffic) add up to the model's: every layer once, by its own index (DeepSeek-
    V3's 3 dense first layers only where they are), the input embedding on the first chunk
    and the output layer on the last."""
    from sim.workload.models import params_per_layer
    from sim.workload.training import StageCost
    m = CAT.models["deepseek-v3"]  # 61 layers + embedding + loss = 63 = 3 stages x 3 x 7
    w = TrainingWorkload(name="x", model=m, global_batch=64, micro_batch=1, seq_len=512,
                         tp=1, pp=3, vpp=3, dp=1, ep=8, n_gpus=24,
                         split_counts_embedding_and_loss=True)
    stages = [StageCost(w, fab64, s, [fab64.accelerators[0]]) for s in range(3)]
    for st in stages:
        assert st.params == pytest.approx(sum(st.chunk_params))
    dense = sum(params_per_layer(m, i)[0] for i in range(m.layers))
    experts = sum(params_per_layer(m, i)[1] for i in range(m.layers))
    assert sum(st.params for st in stages) == pytest.approx(
        dense + experts / 8 + 2 * m.vocab * m.hidden)
    # stage 1's first chunk (layers 6-12) holds MoE layers only
    moe = params_per_layer(m, m.layers - 1)
    assert stages[1].chunk_params[0] == pytest.approx(7 * (moe[0] + moe[1] / 8))


def test_interleaved_gradients_leave_per_chunk_aligned_across_the_pipeline():
    """Megatron-Core launches a virtual chunk's gradient reduce-scatter after its last
    backward, delayed by the stage's rank in backward ops; chunk 0 of later stages waits
    for the end of the step."""
    from sim.workload.training import grad_sync_points

    class W:
        micro_batches, pp, vpp, schedule = 4, 2, 2, "interleaved"

    for s in range(2):
        ops = pipeline_schedule(W, s)
        b_ops = [i for i, op in enumerate(ops) if op[0] == "B"]
        last = {op[2]: b_ops.index(i) for i, op in enumerate(ops) if op[0] == "B"}
        points = grad_sync_points(ops, s)
        assert sorted(c for cs in points.values() for c in cs) == [0, 1]
        for at, chunks in points.items():
            for c in chunks:
                if at == -1:
                    assert last[c] + s >= len(b_ops)
                else:
                    assert b_ops.index(at) == last[c] + s
    assert grad_sync_points(pipeline_schedule(W, 1), 1)[-1] == [0]


def test_interleaved_gradient_reduction_overlaps_the_cooldown(fab64):
    """With 4 virtual chunks the first three chunks' gradients reduce under the remaining
    backward, so less of the DP traffic is exposed than when all of it waits for the end."""
    m = CAT.models["llama3-8b"]
    kw = dict(name="x", model=m, global_batch=64, micro_batch=1, seq_len=2048, tp=2, pp=4,
              vpp=4, dp=8, zero=1, overlap_param_gather=False)
    end = simulate_training(fab64, TrainingWorkload(overlap_grad_reduce=False, **kw))
    chunked = simulate_training(fab64, TrainingWorkload(**kw))
    assert chunked.breakdown["dp_exposed"] < 0.6 * end.breakdown["dp_exposed"]
    assert chunked.step_time_s < end.step_time_s
