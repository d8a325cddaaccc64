"""Training jobs on a fabric: one step of a transformer under TP/SP, PP, DP (ZeRO/FSDP), CP
and EP, executed on SimPy time.

Execution. Each pipeline stage is one SimPy process that runs its schedule (GPipe, 1F1B or
Megatron's interleaved 1F1B) micro-batch by micro-batch. A forward or backward op lasts
its compute time (:mod:`sim.compute`: GEMMs at measured matmul efficiency, elementwise
work at HBM bandwidth) plus its tensor-parallel collectives, which Megatron runs between
the layer's GEMMs (timed by :func:`~sim.collectives.collective_time` in the stage's
scale-up domain), plus context-parallel exchange. Expert-parallel all-to-alls (every
rank of an EP group to every other, all groups of the stage at once, after each forward
and before each backward) and activations and their gradients going from stage to stage
are transfers through the network model, so they contend with everything else on the
fabric. Data-parallel replicas are
symmetric and folded: one process per stage stands for all of them, and its transfers
carry the link loads of every replica at once. Gradients are reduce-scattered (distributed
optimizer / ZeRO) or all-reduced in buckets as the last micro-batch's backward produces
them, overlapped with the rest of backward as Megatron-LM does, in fp32 for bf16 runs
(Megatron's default) and in fp16 for fp16 runs; parameters are all-gathered under the
first forward of each model chunk (ZeRO-1/2 with Megatron's overlap_param_gather: what
the gather needs beyond that forward is exposed), after the optimizer step without that
overlap, or before each layer's use (ZeRO-3/FSDP).

Main assumptions: every micro-batch costs the same; TP collectives stay inside a scale-up
domain that no other job shares; DP groups run rings (NCCL's choice at these sizes);
the optimizer step is HBM-bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import simpy

from ..catalog import Catalog, load_catalog
from ..collectives import collective_time
from ..collectives.algorithms import PhaseSpec, pair_phase
from ..collectives.timing import CompiledPhase, _capacity, _compile_phase
from ..compute import attention_time, backward_gemms, gemm_time, gemms_time, hbm_time
from ..errors import ConfigError, InfeasibleError
from ..fabric.fabric import Fabric
from ..network import make_network
from ..spec import Node, apply_overrides, load_yaml
from .models import (
    LayerCost,
    ModelSpec,
    layer_costs,
    params_per_layer,
    read_model,
)

__all__ = ["TrainingWorkload", "load_workload", "simulate_training", "TrainingResult",
           "memory_per_gpu"]

_PRECISIONS = ("bf16", "fp16", "fp8")
_SCHEDULES = ("1f1b", "interleaved", "gpipe")


@dataclass
class TrainingWorkload:
    """A training job's model, batch and parallel layout."""

    name: str
    model: ModelSpec
    global_batch: int  # sequences per step
    micro_batch: int
    seq_len: int
    precision: str = "bf16"
    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    vpp: int = 1  # virtual (interleaved) stages per pipeline rank
    zero: int = 1  # 0 none, 1 optimizer states (distributed optimizer), 2 +grads, 3 +params
    sequence_parallel: bool = True
    recompute: str = "none"  # none | selective | full
    schedule: str = "1f1b"
    flash_attention: bool = True
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = True
    grad_bucket_params: float = 40e6
    # bytes per gradient element in the data-parallel reduction: Megatron-LM forces fp32
    # accumulation and reduction for bf16 (arguments.py: "bfloat16 requires gradient
    # accumulation and all-reduce to be done in fp32") unless --grad-reduce-in-bf16;
    # fp16 runs reduce fp16 gradients. None: by precision.
    grad_reduce_bytes: int | None = None
    first_stage_layers: int | None = None  # uneven pipelines (Megatron's
    last_stage_layers: int | None = None  # --decoder-first/last-pipeline-num-layers)
    # Megatron's account_for_embedding/loss_in_pipeline_split: the embedding and the loss
    # count as one layer each when layers are split over the (virtual) pipeline stages
    split_counts_embedding_and_loss: bool = False
    # Transformer Engine's TP communication overlap (--tp-comm-overlap, userbuffers): each
    # layer's TP all-gathers / reduce-scatters run in tp chunks under its GEMMs; only what
    # outlasts the GEMMs, and the first chunk, stays exposed. The overlaps that run their
    # communication on SMs take tp_comm_overlap_sms of them from the GEMMs they hide under
    # (TE's defaults, module/base.py get_default_config: pipelined reduce-scatter after the
    # output projections and bulk overlaps in their input-side backward, 16 SMs each; the
    # ring-exchange all-gathers use copy engines); 0 = an ideal overlap
    tp_comm_overlap: bool = False
    tp_comm_overlap_sms: int = 16
    # expert-parallel all-to-all overlapped with computation (DeepSeek-V3's DualPipe, Megatron-
    # Core's overlapped MoE dispatch): each op's dispatch/combine runs under the computation
    # of the op it is paired with, so an op lasts as long as the longer of the two, and the
    # communication kernels keep ep_comm_overlap_sms SMs from the computation (DeepSeek-V3
    # technical report, arXiv 2412.19437, Sec. 3.2.2: 20 of the H800's 132 SMs)
    ep_comm_overlap: bool = False
    ep_comm_overlap_sms: int = 20
    placement: str = "tp,cp,dp,pp"  # fastest-varying first: rank order on the fabric
    first_gpu: int = 0
    n_gpus: int | None = None  # the job's GPUs; default: every accelerator of the fabric
    file: str | None = None

    def __post_init__(self):
        if self.vpp > 1 and self.schedule == "1f1b":
            self.schedule = "interleaved"  # virtual stages imply Megatron's interleaving
        if self.grad_reduce_bytes is None:
            self.grad_reduce_bytes = 2 if self.precision == "fp16" else 4

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def micro_batches(self) -> int:
        return self.global_batch // (self.micro_batch * self.dp)


def _err(w: TrainingWorkload, field_: str, msg: str) -> InfeasibleError:
    where = ": ".join(x for x in (w.file, field_) if x)
    return InfeasibleError(f"{where}: {msg}" if where else msg)


def check(w: TrainingWorkload, fabric: Fabric | None = None) -> None:
    """Raise InfeasibleError (one line, with the numbers) if the layout cannot run."""
    m = w.model
    if fabric is not None:
        avail = fabric.n_accelerators - w.first_gpu
        want = w.n_gpus if w.n_gpus is not None else avail
        if w.gpus != want:
            raise _err(w, "parallelism", f"tp*pp*dp*cp = {w.tp}*{w.pp}*{w.dp}*{w.cp} = "
                       f"{w.gpus}, but the job has {want} GPUs"
                       + ("" if w.n_gpus is not None else " (all of the fabric; set `gpus:`"
                          " to run on part of it)"))
        if w.gpus > avail:
            raise _err(w, "gpus", f"{w.gpus} GPUs from GPU {w.first_gpu}, but the fabric "
                       f"has {avail}")
    if m.heads % w.tp:
        raise _err(w, "parallelism.tp", f"{m.heads} attention heads are not divisible by "
                   f"tp={w.tp}")
    if m.mla is None and m.kv_heads % w.tp and w.tp % m.kv_heads:
        raise _err(w, "parallelism.tp", f"{m.kv_heads} KV heads and tp={w.tp} do not divide "
                   "each other")
    if w.first_stage_layers is not None or w.last_stage_layers is not None:
        if w.split_counts_embedding_and_loss:
            raise _err(w, "parallelism.split_counts_embedding_and_loss", "set either it or "
                       "first/last_stage_layers, not both")
        if w.vpp > 1 or w.pp < 3:
            raise _err(w, "parallelism.first_stage_layers", "uneven first/last stages need "
                       "pp >= 3 and no virtual stages")
        rest = m.layers - (w.first_stage_layers or 0) - (w.last_stage_layers or 0)
        inner = w.pp - (w.first_stage_layers is not None) - (w.last_stage_layers is not None)
        if rest <= 0 or rest % inner:
            raise _err(w, "parallelism.first_stage_layers", f"{m.layers} layers minus the "
                       f"first/last stages' leaves {rest}, not divisible by the other "
                       f"{inner} stages")
    elif w.split_counts_embedding_and_loss:
        chunks = w.pp * w.vpp
        if (m.layers + 2) % chunks or (m.layers + 2) // chunks < 2:
            raise _err(w, "parallelism.split_counts_embedding_and_loss", f"{m.layers} "
                       f"layers + embedding + loss = {m.layers + 2} do not split into "
                       f"pp x virtual stages = {chunks} chunks of 2 or more")
    elif m.layers % (w.pp * w.vpp):
        raise _err(w, "parallelism.pp", f"{m.layers} layers are not divisible by pp x "
                   f"virtual stages = {w.pp} x {w.vpp} = {w.pp * w.vpp}")
    if w.global_batch % (w.micro_batch * w.dp):
        raise _err(w, "batch.global", f"global batch {w.global_batch} is not divisible by "
                   f"micro_batch x dp = {w.micro_batch} x {w.dp} = {w.micro_batch * w.dp}")
    if w.schedule == "interleaved" and w.micro_batches % w.pp:
        raise _err(w, "batch.global", f"interleaved 1F1B needs micro-batches "
                   f"({w.micro_batches}) to be a multiple of pp={w.pp}")
    if w.seq_len % (2 * w.cp) and w.cp > 1:
        raise _err(w, "batch.seq_len", f"sequence {w.seq_len} is not divisible by 2 x cp = "
                   f"{2 * w.cp} (load-balanced context parallelism)")
    if w.ep > 1:
        if m.moe is None:
            raise _err(w, "parallelism.ep", f"ep={w.ep} but {m.name} has no experts")
        if m.moe.experts % w.ep:
            raise _err(w, "parallelism.ep", f"{m.moe.experts} experts are not divisible by "
                       f"ep={w.ep}")
        if (w.dp * w.cp) % w.ep:
            raise _err(w, "parallelism.ep", f"ep={w.ep} must divide dp x cp = "
                       f"{w.dp * w.cp} (experts are spread over data-parallel ranks)")
    if w.seq_len > m.max_seq_len:
        raise _err(w, "batch.seq_len", f"sequence {w.seq_len} exceeds {m.name}'s maximum "
                   f"{m.max_seq_len}")


def _bool(n: Node, k: str, d: bool) -> bool:
    return n.boolean(k, d)


def load_workload(path: str | Path, overrides: list[str] | None = None,
                  catalog: Catalog | None = None) -> TrainingWorkload:
    """Read a training workload YAML (see ``workloads/*.yaml`` for examples).

    Raises
    ------
    ConfigError
        Malformed file (naming file and field); InfeasibleError for layouts that cannot
        run (sizes that do not divide).
    """
    cat = catalog or load_catalog()
    doc = load_yaml(path)
    apply_overrides(doc.data, overrides, file=doc.file)
    doc.string("kind", "training", choices=("training",))
    name = doc.string("name", Path(path).stem)
    raw_model = doc.raw("model")
    if isinstance(raw_model, str):
        model = cat.get("models", raw_model, file=doc.file, field="model")
    else:
        model = read_model("inline", doc.sub("model"))
    b = doc.sub("batch")
    p = doc.sub("parallelism")
    o = doc.sub("options", {})
    w = TrainingWorkload(
        name=name,
        model=model,
        global_batch=b.integer("global", minimum=1),
        micro_batch=b.integer("micro", 1, minimum=1),
        seq_len=b.integer("seq_len", minimum=1),
        precision=doc.string("precision", "bf16", choices=_PRECISIONS),
        tp=p.integer("tp", 1, minimum=1),
        pp=p.integer("pp", 1, minimum=1),
        dp=p.integer("dp", 1, minimum=1),
        cp=p.integer("cp", 1, minimum=1),
        ep=p.integer("ep", 1, minimum=1),
        vpp=p.integer("virtual_stages", 1, minimum=1),
        zero=p.integer("zero", 1, minimum=0),
        sequence_parallel=_bool(p, "sequence_parallel", True),
        recompute=o.string("recompute", "none", choices=("none", "selective", "full")),
        schedule=o.string("schedule", "1f1b", choices=_SCHEDULES),
        flash_attention=_bool(o, "flash_attention", True),
        overlap_grad_reduce=_bool(o, "overlap_grad_reduce", True),
        overlap_param_gather=_bool(o, "overlap_param_gather", True),
        tp_comm_overlap=_bool(o, "tp_comm_overlap", False),
        tp_comm_overlap_sms=o.integer("tp_comm_overlap_sms", 16, minimum=0),
        ep_comm_overlap=_bool(o, "ep_comm_overlap", False),
        ep_comm_overlap_sms=o.integer("ep_comm_overlap_sms", 20, minimum=0),
        grad_bucket_params=o.number("grad_bucket_params", 40e6, low=1.0),
        grad_reduce_bytes={"fp32": 4, "bf16": 2, "fp16": 2, None: None}[
            o.string("grad_reduce_dtype", None, choices=("fp32", "bf16", "fp16"))],
        first_stage_layers=p.integer("first_stage_layers", None, minimum=1),
        last_stage_layers=p.integer("last_stage_layers", None, minimum=1),
        split_counts_embedding_and_loss=_bool(p, "split_counts_embedding_and_loss", False),
        placement=doc.string("placement", "tp,cp,dp,pp"),
        first_gpu=doc.integer("first_gpu", 0, minimum=0),
        n_gpus=doc.integer("gpus", None, minimum=1),
        file=doc.file,
    )
    if p.raw("fsdp", False):
        w.zero = 3
    if w.zero > 3:
        raise p.error("zero", f"ZeRO stage must be 0-3, got {w.zero}")
    if w.vpp > 1 and w.schedule == "1f1b":
        w.schedule = "interleaved"
    if sorted(w.placement.split(",")) != sorted(["tp", "cp", "dp", "pp"]):
        raise doc.error("placement", f"expected an order of tp, cp, dp, pp, got "
                        f"{w.placement!r}")
    for n in (b, p, o):
        n.done()
    doc.done()
    check(w)
    return w


def stage_layers(w: TrainingWorkload, stage: int, chunk: int = 0) -> range:
    """The layers of pipeline ``stage`` (virtual ``chunk``)."""
    m = w.model
    if w.split_counts_embedding_and_loss:
        # slots 0 and layers + 1 are the embedding and the loss
        per = (m.layers + 2) // (w.pp * w.vpp)
        first = (chunk * w.pp + stage) * per
        return range(max(0, first - 1), min(m.layers, first + per - 1))
    if w.first_stage_layers is None and w.last_stage_layers is None:
        per = m.layers // (w.pp * w.vpp)
        first = (chunk * w.pp + stage) * per
        return range(first, first + per)
    fl = w.first_stage_layers
    ll = w.last_stage_layers
    inner = w.pp - (fl is not None) - (ll is not None)
    per = (m.layers - (fl or 0) - (ll or 0)) // inner
    sizes = [per] * w.pp
    if fl is not None:
        sizes[0] = fl
    if ll is not None:
        sizes[-1] = ll
    start = sum(sizes[:stage])
    return range(start, start + sizes[stage])


# ------------------------------------------------------------------ memory
def memory_per_gpu(w: TrainingWorkload, stage: int = 0) -> dict:
    """Bytes per GPU of pipeline stage ``stage``: weights, gradients, optimizer states,
    activations in flight, and the logits of the last stage."""
    m = w.model
    layers = [lay for c in range(w.vpp) for lay in stage_layers(w, stage, c)]
    per_stage = len(layers)
    first = layers[0]
    dense = experts = 0
    for layer in layers:
        d, e = params_per_layer(m, layer)
        dense += d
        experts += e
    params = dense / w.tp + experts / (w.tp * w.ep)
    if stage == 0 or stage == w.pp - 1:
        params += m.vocab * m.hidden / w.tp * (1 if (w.pp > 1 or m.tied_embeddings) else 2)
    shard = w.dp * w.cp
    weights = 2 * params / (shard if w.zero >= 3 else 1)
    # the gradient buffer in the dtype it is reduced in (Megatron's main_grad: fp32 unless
    # grad_reduce_in_fp32 is off), plus, when it is 16-bit, the optimizer's fp32 copy of its
    # own shard of it
    grads = w.grad_reduce_bytes * params / (shard if w.zero >= 2 else 1)
    if w.grad_reduce_bytes < 4 and w.zero >= 1:
        grads += 4 * params / shard
    optim = 12 * params / (shard if w.zero >= 1 else 1)  # fp32 master + Adam m, v
    cost = layer_costs(m, micro_batch=w.micro_batch, seq_len=w.seq_len, tp=w.tp, cp=w.cp,
                       ep=w.ep, sequence_parallel=w.sequence_parallel, recompute=w.recompute,
                       flash_attention=w.flash_attention, layer=first,
                       fp8=w.precision == "fp8")
    if w.schedule == "gpipe":
        in_flight = w.micro_batches
    elif w.schedule == "interleaved":
        in_flight = min(w.micro_batches, w.pp - stage + (w.pp - 1) / w.vpp)
    else:
        in_flight = min(w.micro_batches, w.pp - stage)
    acts = cost.activation_bytes * per_stage * in_flight
    logits = 0.0
    if stage == w.pp - 1:
        logits = 4 * w.micro_batch * w.seq_len / w.cp * m.vocab / w.tp  # fp32 logits
    total = weights + grads + optim + acts + logits
    return {"weights": weights, "gradients": grads, "optimizer": optim, "activations": acts,
            "logits": logits, "total": total, "params": params}


# ------------------------------------------------------------------ placement
def _layout(w: TrainingWorkload, f: Fabric) -> np.ndarray:
    """GPU names as an array indexed [pp, dp, cp, tp] following ``placement``."""
    order = w.placement.split(",")  # fastest first
    sizes = {"tp": w.tp, "cp": w.cp, "dp": w.dp, "pp": w.pp}
    shape = [sizes[k] for k in reversed(order)]  # slowest first
    accs = np.array(f.accelerators[w.first_gpu:w.first_gpu + w.gpus], dtype=object)
    grid = accs.reshape(shape)
    axes = [list(reversed(order)).index(k) for k in ("pp", "dp", "cp", "tp")]
    return grid.transpose(axes)


# ------------------------------------------------------------------ results
@dataclass
class TrainingResult:
    """One simulated step."""

    workload: TrainingWorkload
    step_time_s: float
    breakdown: dict
    tokens_per_s: float
    mfu: float
    hfu: float
    model_flops: float
    hardware_flops: float
    memory_per_gpu_bytes: float
    memory: dict
    hbm_capacity_bytes: float
    stages: pd.DataFrame
    links: pd.DataFrame
    network: str
    events: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"workload": self.workload.name, "model": self.workload.model.name,
                "gpus": self.workload.gpus, "step_time_s": self.step_time_s,
                "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "hfu": self.hfu,
                "memory_per_gpu_bytes": self.memory_per_gpu_bytes,
                "hbm_capacity_bytes": self.hbm_capacity_bytes,
                "breakdown_s": self.breakdown, "memory_bytes": self.memory,
                "network": self.network,
                "busiest_links": self.links.head(5).to_dict(orient="records")}


# Cross-entropy over the logits, HBM bytes per logit (Megatron-Core
# vocab_parallel_cross_entropy): forward casts the bf16 logits to fp32 (read 2, write 4),
# takes the row max (read 4), subtracts it in place (read 4, write 4), exponentiates in
# place (4 + 4), sums (4) and divides in place (4 + 4), keeping the softmax for backward;
# backward scales the softmax by the incoming gradient in place (4 + 4) and casts it to
# bf16 for the output layer's GEMMs (read 4, write 2).
CE_FWD_BYTES = 2 + 4 + 4 + 8 + 8 + 4 + 8
CE_BWD_BYTES = 8 + 6


def model_flops_per_step(w: TrainingWorkload) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) of one step over all GPUs: 3 x forward (+ recompute)."""
    m = w.model
    fwd = rec = 0.0
    for layer in range(m.layers):
        c = layer_costs(m, micro_batch=1, seq_len=w.seq_len, layer=layer,
                        flash_attention=False, causal=False, recompute=w.recompute)
        fwd += c.flops_fwd
        rec += c.recompute_flops
    fwd += 2 * w.seq_len * m.hidden * m.vocab  # logits
    seqs = w.global_batch
    return 3 * fwd * seqs, (3 * fwd + rec) * seqs


# ------------------------------------------------------------------ the engine
class _Stage:
    """Durations of one pipeline stage's operations (per virtual chunk)."""

    def __init__(self, w: TrainingWorkload, f: Fabric, s: int, tp_group: list[str]):
        acc = f.catalog.accelerators[f.graph.nodes[tp_group[0]]["model"]]
        self.acc = acc
        m = w.model
        prec = w.precision if w.precision in acc.peak_flops else "bf16"
        fwd = bwd = 0.0
        tp_fwd = tp_bwd = ep_fwd = cp_fwd = 0.0
        self.comm = {"tp": 0.0, "ep": 0.0, "cp": 0.0}
        costs: list[LayerCost] = []
        for c in range(w.vpp):
            for layer in stage_layers(w, s, c):
                costs.append(layer_costs(
                    m, micro_batch=w.micro_batch, seq_len=w.seq_len, tp=w.tp, cp=w.cp,
                    ep=w.ep, sequence_parallel=w.sequence_parallel, recompute=w.recompute,
                    flash_attention=w.flash_attention, layer=layer,
                    fp8=w.precision == "fp8"))
        n_chunks = w.vpp
        c0 = costs[0]
        # TP collectives: all-reduce (or reduce-scatter + all-gather with SP), 2 per layer
        # forward, 2 backward, 2 more when the forward is recomputed
        tp_t = 0.0
        if w.tp > 1:
            if w.sequence_parallel:
                one = collective_time(f, "reduce_scatter", tp_group, c0.tp_bytes_fwd).time_s + \
                    collective_time(f, "all_gather", tp_group, c0.tp_bytes_fwd).time_s
            else:
                one = collective_time(f, "all_reduce", tp_group, c0.tp_bytes_fwd).time_s
            tp_t = one * c0.tp_collectives_fwd
        # kernels per layer: norms, QKV, rotary/bias, attention (one fused kernel, or scores,
        # softmax, dropout, values), output projection, residual/dropout, FFN GEMMs and
        # activation; backward launches about twice as many
        ko = f.catalog.compute.kernel_overhead_s
        k_fwd = 11 + (0 if w.flash_attention else 3)
        k_rec = {"full": k_fwd, "selective": 3, "none": 0}[w.recompute]
        def attn(flops: float, backward: bool = False) -> float:
            """Attention core: fused kernels at their measured rate, else batched GEMMs."""
            if w.flash_attention:
                return attention_time(acc, prec, flops, backward=backward)
            return (2.0 if backward else 1.0) * gemm_time(acc, prec, flops, sustained=True)

        rec_tp = 1.0 if w.recompute == "full" else 0.0  # a recomputed forward's TP too
        slow = _overlap_slowdown(w, acc) if w.tp_comm_overlap and w.tp > 1 else 1.0
        for c in costs:
            fwd += k_fwd * ko
            bwd += (2 * k_fwd + k_rec) * ko
            rec_attn = c.attn_fwd if w.recompute != "none" else 0.0  # both policies redo it
            # each GEMM at its shape's efficiency, at the rate sustained at the power
            # limit (a training step keeps the tensor cores busy)
            g_fwd = gemms_time(acc, prec, c.gemms, sustained=True)
            fwd += g_fwd + attn(c.attn_fwd) + hbm_time(acc, c.bytes_fwd)
            bwd += gemms_time(acc, prec, backward_gemms(c.gemms), sustained=True) + \
                attn(c.attn_fwd, backward=True) + 2 * hbm_time(acc, c.bytes_fwd) + \
                (g_fwd if w.recompute == "full" else 0.0) + attn(rec_attn) + \
                hbm_time(acc, c.recompute_bytes) + hbm_time(acc, c.fp8_bwd_bytes)
            if w.tp_comm_overlap and w.tp > 1:
                # GEMMs under SM-based overlaps run on the SMs communication leaves them:
                # the output projections (n = hidden: their outputs are reduce-scattered) in
                # forward, the other GEMMs' input and weight gradients in backward
                row = [g for g in c.gemms if g[1] == m.hidden]
                col = [g for g in c.gemms if g[1] != m.hidden]
                x_fwd = (slow - 1.0) * gemms_time(acc, prec, row, sustained=True)
                x_bwd = (slow - 1.0) * gemms_time(acc, prec, backward_gemms(col), sustained=True)
                fwd += x_fwd
                bwd += x_bwd + rec_tp * x_fwd
                g_bwd = 2 * g_fwd + x_bwd
                g_fwd += x_fwd
                tp_fwd += max(0.0, tp_t - g_fwd) + tp_t / w.tp
                tp_bwd += max(0.0, tp_t * (1 + rec_tp) - g_bwd - rec_tp * g_fwd) + \
                    tp_t * (1 + rec_tp) / w.tp
            else:
                tp_fwd += tp_t
                tp_bwd += tp_t * (1 + rec_tp)
            ep_fwd += c.ep_bytes_fwd
            cp_fwd += c.cp_bytes_fwd
        self.compute_fwd = fwd / n_chunks
        self.compute_bwd = bwd / n_chunks
        self.tp_fwd = tp_fwd / n_chunks
        self.tp_bwd = tp_bwd / n_chunks
        # EP all-to-all (dispatch + combine): bytes each GPU sends per op, exchanged as a
        # transfer through the network model; backward sends the gradients back the same
        # way, and a fully recomputed forward repeats its own exchange
        self.ep_bytes_fwd = ep_fwd / n_chunks
        self.ep_bytes_bwd = self.ep_bytes_fwd * (2 if w.recompute == "full" else 1)
        # with the all-to-all overlapped, its kernels' SMs slow this stage's computation
        self.ep_slow = _overlap_slowdown(w, acc, "ep") if w.ep_comm_overlap and \
            self.ep_bytes_fwd else 1.0
        # CP ring: per GPU bytes / NIC rate
        nic = _nic_rate(f, tp_group[0])
        cp_rate = nic if w.cp > 1 else 1.0
        # CP K/V exchange overlaps attention compute (Megatron-Core ring attention)
        attn_t = sum(attn(c.attn_fwd) for c in costs) / n_chunks
        self.cp_fwd = max(0.0, cp_fwd / cp_rate / n_chunks - attn_t) if cp_fwd else 0.0
        self.cp_bwd = 2 * self.cp_fwd
        # logits + loss on the last stage's last chunk, embedding on the first
        self.head_fwd = self.head_bwd = 0.0
        if s == w.pp - 1:
            tokens = w.micro_batch * w.seq_len / w.cp
            head = [(tokens, m.vocab / w.tp, m.hidden, 1)]  # the output layer's GEMM
            logits = tokens * m.vocab / w.tp  # this GPU's vocabulary shard of the logits
            # FP8 covers the transformer layers' linear layers (Transformer Engine); the
            # output layer is Megatron-Core's own ColumnParallelLinear, in 16 bits
            hp = "bf16" if prec == "fp8" else prec
            self.head_fwd = gemms_time(acc, hp, head, sustained=True) + \
                hbm_time(acc, CE_FWD_BYTES * logits)
            self.head_bwd = gemms_time(acc, hp, backward_gemms(head), sustained=True) + \
                hbm_time(acc, CE_BWD_BYTES * logits)
        self.activation_bytes = c0.tp_bytes_fwd / (w.tp if w.sequence_parallel else 1) \
            if w.tp > 1 else w.micro_batch * w.seq_len / w.cp * m.hidden * 2
        # parameters of each virtual chunk on this GPU (its layers by their index, so that
        # a model's dense first layers count as dense); the input embedding sits with the
        # first virtual stage, the output layer with the last
        self.chunk_params = []
        for c in range(w.vpp):
            d = e = 0
            for layer in stage_layers(w, s, c):
                dl, el = params_per_layer(m, layer)
                d += dl
                e += el
            p = d / w.tp + e / (w.tp * w.ep)
            first, last = (s, c) == (0, 0), (s, c) == (w.pp - 1, w.vpp - 1)
            if first or last:  # one matrix when tied and both ends share these GPUs
                ends = 1 if m.tied_embeddings and first and last else first + last
                p += ends * m.vocab * m.hidden / w.tp
            self.chunk_params.append(p)
        self.params = sum(self.chunk_params)


def _overlap_slowdown(w: TrainingWorkload, acc, kind: str = "tp") -> float:
    """How much longer computation takes on the SMs an overlapped communication (``kind``
    tp or ep) leaves it."""
    field_ = f"{kind}_comm_overlap_sms"
    sms, units = getattr(w, field_), acc.compute_units
    if not sms or units is None:
        return 1.0
    if sms >= units:
        raise ConfigError(f"{sms} SMs for {kind.upper()} communication leave none of "
                          f"{acc.id}'s {units} for the computation", file=w.file,
                          field=f"options.{field_}")
    return units / (units - sms)


def _nic_rate(f: Fabric, gpu: str) -> float:
    nics = f.nics_of.get(gpu, [])
    if not nics:
        return 1e9
    g = f.graph
    cap = sum(d["capacity"] * f.catalog.links[d["tech"]].protocol_efficiency
              for _, v, d in g.out_edges(nics[0], data=True) if g.nodes[v]["kind"] == "switch")
    return cap / len(f.accels_of_nic[nics[0]])


def _schedule(w: TrainingWorkload, s: int) -> list[tuple[str, int, int]]:
    """Ops of stage ``s``: ('F'|'B', micro-batch, virtual chunk), in execution order."""
    M, P, V = w.micro_batches, w.pp, w.vpp
    if w.schedule == "gpipe":
        return [("F", i, 0) for i in range(M)] + [("B", i, 0) for i in reversed(range(M))]
    if w.schedule == "1f1b":
        warm = min(P - s - 1, M)
        ops = [("F", i, 0) for i in range(warm)]
        f_next, b_next = warm, 0
        while f_next < M:
            ops.append(("F", f_next, 0))
            f_next += 1
            ops.append(("B", b_next, 0))
            b_next += 1
        ops += [("B", i, 0) for i in range(b_next, M)]
        return ops
    # Megatron interleaved 1F1B: micro-batches in groups of P per chunk
    total = M * V

    def chunk_mb(k: int, forward: bool) -> tuple[int, int]:
        group = k // (P * V)
        in_group = k % (P * V)
        chunk = in_group // P
        if not forward:
            chunk = V - 1 - chunk
        return chunk, group * P + in_group % P

    warm = min((P - s - 1) * 2 + (V - 1) * P, total)
    fwd = [("F", mb, c) for c, mb in (chunk_mb(k, True) for k in range(total))]
    bwd = [("B", mb, c) for c, mb in (chunk_mb(k, False) for k in range(total))]
    steady = [op for pair in zip(fwd[warm:], bwd, strict=False) for op in pair]
    return fwd[:warm] + steady + bwd[total - warm:]


def _grad_sync_points(ops: list[tuple[str, int, int]], stage: int) -> dict[int, list[int]]:
    """Interleaved schedule: after which op each virtual chunk's gradient reduce-scatter is
    launched ({op index: chunks}; -1: after the stage's last op).

    A chunk's gradients are complete after its last backward op; Megatron-Core launches
    that chunk's reduction (a DDP buffer per model chunk) after the backward op ``stage``
    backward ops later, so that the pipeline group launches it at the same time; chunks
    with no such op left are launched at the end (schedules.py,
    forward_backward_pipelining_with_interleaving: grad_sync_microbatch_id =
    microbatch_id - pipeline_parallel_rank)."""
    b_ops = [i for i, op in enumerate(ops) if op[0] == "B"]
    last_b = {ops[i][2]: k for k, i in enumerate(b_ops)}
    points: dict[int, list[int]] = {}
    for c, k in sorted(last_b.items()):
        j = k + stage
        points.setdefault(b_ops[j] if j < len(b_ops) else -1, []).append(c)
    return points


def _pair_phase(f: Fabric, src: list[str], dst: list[str], name: str, inter: bool) -> PhaseSpec:
    """Flows src[i] -> dst[i] (one byte each per byte sent) as a phase over ranks src+dst."""
    return pair_phase(len(src), name, inter)


def _ring_groups_phase(f: Fabric, ranks: list[str], groups: list[list[int]], unit: float,
                       steps: int, name: str) -> PhaseSpec:
    """NCCL rings within each group of rank indices (one data-parallel group per TP/CP
    rank), all at once: a group with several GPUs per server gets one ring per NIC rail,
    as NCCL's channels do (see :func:`sim.collectives.algorithms._ring_pairs`)."""
    from ..collectives.algorithms import _ring_pairs

    src, dst, uni, hop = [], [], [], []
    h0 = 0
    for g in groups:
        (s_, d_, u_, h_), _ = _ring_pairs(f, [ranks[i] for i in g], unit)
        idx = np.asarray(g)
        src.append(idx[np.asarray(s_, np.int64)])
        dst.append(idx[np.asarray(d_, np.int64)])
        uni.append(np.asarray(u_, float))
        hop.append(np.asarray(h_, np.int64) + h0)
        h0 += int(np.max(h_)) + 1 if len(h_) else 0
    return PhaseSpec(name, np.concatenate(src), np.concatenate(dst), np.concatenate(uni),
                     np.concatenate(hop), steps, [], True, True, None)


def simulate_training(fabric: Fabric, w: TrainingWorkload, *, network: str = "flow",
                      env: simpy.Environment | None = None, net=None,
                      defer: bool = False) -> TrainingResult:
    """Simulate one training step of ``w`` on ``fabric``.

    Parameters
    ----------
    fabric : Fabric
    w : TrainingWorkload
    network : {'flow', 'analytical'}
    env, net : optional
        An existing SimPy environment and network model, to run alongside other jobs.
    defer : bool
        Start the step's processes and return ``(processes, finalize)`` without running
        the environment; ``finalize()`` gives the TrainingResult once they are done (for
        several jobs sharing one fabric, :mod:`sim.workload.mix`).

    Returns
    -------
    TrainingResult

    Raises
    ------
    InfeasibleError
        The layout does not fit the fabric or the memory.
    """
    check(w, fabric)
    own_env = env is None
    env = env or simpy.Environment()
    net = net or make_network(network, env, fabric)
    grid = _layout(w, fabric)  # [pp, dp, cp, tp]
    acc = fabric.catalog.accelerators[fabric.graph.nodes[grid[0, 0, 0, 0]]["model"]]
    mem = [memory_per_gpu(w, s) for s in range(w.pp)]
    worst = max(mem, key=lambda x: x["total"])
    if worst["total"] > acc.hbm_capacity_B:
        s = mem.index(worst)
        raise _err(w, "memory", f"stage {s} needs {worst['total'] / 2**30:.1f} GiB per GPU "
                   f"(weights {worst['weights'] / 2**30:.1f}, gradients "
                   f"{worst['gradients'] / 2**30:.1f}, optimizer "
                   f"{worst['optimizer'] / 2**30:.1f}, activations "
                   f"{worst['activations'] / 2**30:.1f}, logits {worst['logits'] / 2**30:.1f})"
                   f" but {acc.id} has {acc.hbm_capacity_B / 2**30:.1f} GiB")
    stages = [_Stage(w, fabric, s, list(grid[s, 0, 0, :])) for s in range(w.pp)]
    cap = _capacity(fabric)
    policy = fabric.routing
    # --- PP transfers: stage s -> s+1 for every (dp, cp, tp) position, compiled once
    pp_fwd: list[CompiledPhase] = []
    pp_bwd: list[CompiledPhase] = []
    for s in range(w.pp - 1):
        a = list(grid[s].ravel())
        b = list(grid[s + 1].ravel())
        ranks = tuple(a + b)
        pp_fwd.append(_compile_phase(fabric, ranks, _pair_phase(fabric, a, b, "pp", True),
                                     policy, cap))
        rev = pair_phase(len(a), "pp-back", reverse=True)
        pp_bwd.append(_compile_phase(fabric, ranks, rev, policy, cap))
    pp_wrap = pp_wrap_b = None
    if w.vpp > 1 and w.pp > 1:  # interleaved: last stage hands chunk c to stage 0's chunk c+1
        a, b = list(grid[w.pp - 1].ravel()), list(grid[0].ravel())
        ranks = tuple(a + b)
        pp_wrap = _compile_phase(fabric, ranks, _pair_phase(fabric, a, b, "pp", True),
                                 policy, cap)
        rev = pair_phase(len(a), "pp-back", reverse=True)
        pp_wrap_b = _compile_phase(fabric, ranks, rev, policy, cap)
    # --- DP rings per stage: one ring per (cp, tp) position over the dp replicas
    dp_phase: list[CompiledPhase | None] = []
    for s in range(w.pp):
        if w.dp * w.cp == 1:
            dp_phase.append(None)
            continue
        ranks = list(grid[s].ravel())  # index = (dp * cp + cp_i) * tp + tp_i
        groups = [[(d * w.cp + c) * w.tp + t for d in range(w.dp) for c in range(w.cp)]
                  for t in range(w.tp)]
        k = w.dp * w.cp
        rs_unit = (k - 1) / k
        dp_phase.append(_compile_phase(fabric, tuple(ranks),
                                       _ring_groups_phase(fabric, ranks, groups, rs_unit,
                                                          k - 1, "dp ring"),
                                       policy, cap))
    # --- EP all-to-all per stage: every rank to every other rank of its expert-parallel
    # group (consecutive data/context-parallel ranks of one TP rank), all groups at once
    ep_phase: list[CompiledPhase | None] = []
    for s in range(w.pp):
        if w.ep == 1 or not stages[s].ep_bytes_fwd:
            ep_phase.append(None)
            continue
        ranks = list(grid[s].ravel())  # index = (dp * cp + cp_i) * tp + tp_i
        src, dst = [], []
        for t in range(w.tp):
            for g0 in range(0, w.dp * w.cp, w.ep):
                members = [(g0 + i) * w.tp + t for i in range(w.ep)]
                src += [a for a in members for b in members if a != b]
                dst += [b for a in members for b in members if a != b]
        n = len(src)
        spec = PhaseSpec("ep all-to-all", np.asarray(src), np.asarray(dst),
                         np.full(n, 1.0 / (w.ep - 1)), np.arange(n), 1, [], True, False, None,
                         p2p=True)
        ep_phase.append(_compile_phase(fabric, tuple(ranks), spec, policy, cap))
    ep_overlap = [w.ep_comm_overlap and ph is not None for ph in ep_phase]
    proto = fabric.catalog.protocols["Simple"]

    def dp_latency(k: int) -> float:
        return proto.base_latency_s + (k - 1) * proto.hop_latency_net_s

    # --- SimPy processes
    V, P = w.vpp, w.pp
    arrived = {}  # (dir, stage, mb, chunk) -> event

    def ev(key):
        e = arrived.get(key)
        if e is None:
            e = arrived[key] = env.event()
        return e

    busy = {s: {"compute": 0.0, "tp": 0.0, "ep": 0.0, "cp": 0.0, "wait": 0.0,
                "dp_exposed": 0.0, "optimizer": 0.0} for s in range(P)}
    ends = {}
    act_bytes = [st.activation_bytes * (1 if w.sequence_parallel else 1) for st in stages]

    def send(phase: CompiledPhase, nbytes: float, key):
        yield net.transfer(phase.transfer(nbytes, proto.base_latency_s +
                                          proto.hop_latency_net_s, "pp",
                                          group=("pp", id(net), id(phase))))
        ev(key).succeed()

    def dp_sync(s: int, nbytes: float):
        ph = dp_phase[s]
        k = w.dp * w.cp
        if ph is None:
            return
        steps = 1 if w.zero >= 1 else 2  # reduce-scatter, or all-reduce = RS + AG
        for _ in range(steps):
            yield net.transfer(ph.transfer(nbytes, dp_latency(k), "dp",
                                           group=("dp", id(net), id(ph))))

    def dp_sync_ag(s: int, nbytes: float):
        ph = dp_phase[s]
        yield net.transfer(ph.transfer(nbytes, dp_latency(w.dp * w.cp), "dp-ag",
                                       group=("dp", id(net), id(ph))))

    def ep_move(s: int, nbytes: float):
        ph = ep_phase[s]
        yield net.transfer(ph.transfer(nbytes, dp_latency(2), "ep",
                                       group=("ep", id(net), id(ph))))

    def ep_exchange(s: int, nbytes: float, under=None):
        """The stage's all-to-all, exposed; or, overlapped (``under``: the process already
        moving it under the op's computation), only what outlasts the computation."""
        t = env.now
        yield under if under is not None else env.process(ep_move(s, nbytes))
        busy[s]["ep"] += env.now - t

    def account(s: int, compute: float, tp: float, cp: float) -> None:
        b = busy[s]
        b["compute"] += compute
        b["tp"] += tp
        b["cp"] += cp

    def hand_off(s: int, phase: CompiledPhase | None, key) -> None:
        """Pass activations (or their gradients) to the next stage: through the network
        unless there is no next stage (or it is the same GPUs)."""
        if phase is None:
            ev(key).succeed()
        else:
            env.process(send(phase, act_bytes[s], key))

    def stage_proc(s: int):
        st = stages[s]
        ops = _schedule(w, s)
        last_b = max(i for i, op in enumerate(ops) if op[0] == "B")
        chunk_sync = _grad_sync_points(ops, s)
        per_chunk = V > 1 and w.overlap_grad_reduce and dp_phase[s] is not None
        dp_done = []
        grad_bytes = w.grad_reduce_bytes * st.params
        gathered: set[int] = set()  # chunks whose parameters this step has all-gathered
        for i, (kind, mb, c) in enumerate(ops):
            # global virtual stage index of this chunk
            vs = c * P + s
            t0 = env.now
            gather = None
            if w.zero >= 3 and dp_phase[s] is not None:
                # ZeRO-3 / FSDP: this chunk's parameters are all-gathered before use
                # (prefetched: the gather overlaps the op, the op cannot end before it);
                # with full recomputation, backward gathers twice (the recomputed forward
                # and the backward itself), as DeepSpeed's checkpointed layers do
                times = 2 if (kind == "B" and w.recompute == "full") else 1
                gather = env.process(dp_sync_ag(s, times * 2 * st.chunk_params[c]))
            elif (w.zero >= 1 and w.overlap_param_gather and kind == "F" and
                  c not in gathered and dp_phase[s] is not None):
                # distributed optimizer: the updated bf16 parameters are all-gathered
                # during the first forward of each chunk (Megatron's overlap_param_gather;
                # in steady state, the previous step's update), which cannot end before
                # they have arrived
                gathered.add(c)
                gather = env.process(dp_sync_ag(s, 2 * st.chunk_params[c]))
            if kind == "F":
                if vs > 0:
                    yield ev(("F", vs - 1, mb))
                busy[s]["wait"] += env.now - t0
                dur_c = (st.compute_fwd + (st.head_fwd if vs == V * P - 1 else 0.0)) * \
                    st.ep_slow
                under = env.process(ep_move(s, st.ep_bytes_fwd)) if ep_overlap[s] else None
                yield env.timeout(dur_c + st.tp_fwd + st.cp_fwd)
                account(s, dur_c, st.tp_fwd, st.cp_fwd)
                if ep_phase[s] is not None:
                    yield from ep_exchange(s, st.ep_bytes_fwd, under)
                last = vs == V * P - 1
                hand_off(s, None if last else pp_fwd[s] if s < P - 1 else pp_wrap,
                         ("F", vs, mb))
            else:
                if vs < V * P - 1:
                    yield ev(("B", vs + 1, mb))
                busy[s]["wait"] += env.now - t0
                dur_c = (st.compute_bwd + (st.head_bwd if vs == V * P - 1 else 0.0)) * \
                    st.ep_slow
                under = env.process(ep_move(s, st.ep_bytes_bwd)) if ep_overlap[s] else None
                if ep_phase[s] is not None and under is None:
                    yield from ep_exchange(s, st.ep_bytes_bwd)
                if i == last_b and not per_chunk and w.overlap_grad_reduce and \
                        dp_phase[s] is not None:
                    # 1F1B: gradients leave in buckets as the last backward produces them
                    # Megatron-Core DDP buckets: max(40M, 1M x dp) parameters
                    bucket = max(w.grad_bucket_params, 1e6 * w.dp * w.cp)
                    n_b = max(1, math.ceil(st.params / bucket))
                    piece = (dur_c + st.tp_bwd + st.cp_bwd) / n_b
                    for _ in range(n_b):
                        yield env.timeout(piece)
                        dp_done.append(env.process(dp_sync(s, grad_bytes / n_b)))
                else:
                    yield env.timeout(dur_c + st.tp_bwd + st.cp_bwd)
                account(s, dur_c, st.tp_bwd, st.cp_bwd)
                if under is not None:
                    yield from ep_exchange(s, st.ep_bytes_bwd, under)
                hand_off(s, None if vs == 0 else pp_bwd[s - 1] if s > 0 else pp_wrap_b,
                         ("B", vs, mb))
                if per_chunk:
                    for cc in chunk_sync.get(i, []):
                        dp_done.append(env.process(
                            dp_sync(s, w.grad_reduce_bytes * st.chunk_params[cc])))
            if gather is not None:
                t = env.now
                yield gather
                busy[s]["dp_exposed"] += env.now - t
        t_bwd_end = env.now
        if dp_phase[s] is not None:
            if not w.overlap_grad_reduce:
                dp_done.append(env.process(dp_sync(s, grad_bytes)))
            elif per_chunk:
                for cc in chunk_sync.get(-1, []):
                    dp_done.append(env.process(
                        dp_sync(s, w.grad_reduce_bytes * st.chunk_params[cc])))
            yield simpy.AllOf(env, dp_done)
        busy[s]["dp_exposed"] += env.now - t_bwd_end
        # optimizer step: read/write fp32 master, m, v and grads of the local shard
        shard = w.dp * w.cp if w.zero >= 1 else 1
        t_opt = hbm_time(st.acc, st.params / shard * 4 * 8) + 20e-6
        yield env.timeout(t_opt)
        busy[s]["optimizer"] += t_opt
        if w.zero >= 1 and dp_phase[s] is not None and not w.overlap_param_gather:
            t = env.now
            yield net.transfer(dp_phase[s].transfer(2 * st.params, dp_latency(w.dp * w.cp),
                                                    "dp-ag"))
            busy[s]["dp_exposed"] += env.now - t
        ends[s] = env.now

    start = env.now
    procs = [env.process(stage_proc(s)) for s in range(P)]
    if defer:
        return procs, lambda: _training_result(w, fabric, acc, net, busy, ends, start, mem,
                                               worst)
    if own_env:
        env.run()
    else:
        env.run(until=simpy.AllOf(env, procs))
    return _training_result(w, fabric, acc, net, busy, ends, start, mem, worst)


def _training_result(w, fabric, acc, net, busy, ends, start, mem, worst) -> TrainingResult:
    P = w.pp
    assert len(ends) == P, f"pipeline schedule stalled: stages {sorted(set(range(P)) - set(ends))}"
    step = max(ends.values()) - start
    mflops, hflops = model_flops_per_step(w)
    gpus = w.gpus
    peak = acc.peak_flops.get(w.precision, acc.peak_flops["bf16"])
    tokens = w.global_batch * w.seq_len
    # breakdown from the busiest stage: the one whose own work paces the pipeline
    crit = max(busy, key=lambda k: busy[k]["compute"] + busy[k]["tp"] + busy[k]["ep"] +
               busy[k]["cp"])
    b = busy[crit]
    breakdown = {"critical_stage": crit, "compute": b["compute"], "tp_exposed": b["tp"],
                 "ep_exposed": b["ep"],
                 "cp_exposed": b["cp"], "dp_exposed": b["dp_exposed"],
                 "optimizer": b["optimizer"],
                 "pp_bubble_and_wait": step - b["compute"] - b["tp"] - b["ep"] - b["cp"] -
                 b["dp_exposed"] - b["optimizer"]}
    if abs(breakdown["pp_bubble_and_wait"]) < 1e-9 * step:  # rounding, bubble-free step
        breakdown["pp_bubble_and_wait"] = 0.0
    lb = net.link_bytes(start, start + step)
    c = fabric.compile()
    util = lb / (net.capacity * step) if step > 0 else lb * 0
    top = np.argsort(util)[::-1][:10]
    links = pd.DataFrame({"src": [c.node_names[c.link_src[i]] for i in top],
                          "dst": [c.node_names[c.link_dst[i]] for i in top],
                          "tech": [c.tech_names[c.tech[i]] for i in top],
                          "bytes": lb[top], "utilization": util[top]})
    stage_df = pd.DataFrame([{"stage": s, **busy[s], "end_s": ends[s] - start,
                              "memory_bytes": mem[s]["total"]} for s in range(P)])
    return TrainingResult(
        workload=w, step_time_s=step, breakdown=breakdown, tokens_per_s=tokens / step,
        mfu=mflops / (step * gpus * peak), hfu=hflops / (step * gpus * peak),
        model_flops=mflops, hardware_flops=hflops, memory_per_gpu_bytes=worst["total"],
        memory=worst, hbm_capacity_bytes=acc.hbm_capacity_B, stages=stage_df, links=links,
        network=net.name, events=len(net.transfers),
        extra={"link_utilization": util})  # every compiled link, in fabric.compile() order

