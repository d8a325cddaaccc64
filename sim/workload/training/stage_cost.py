"""What one pipeline stage's operations cost: the compute of a forward and a backward op
per virtual chunk (:mod:`sim.compute`: GEMMs at their shape's measured matmul efficiency,
fused attention at its measured rate, elementwise work at HBM bandwidth, kernel launch
overheads), the tensor-parallel collectives between the layer's GEMMs (timed in the stage's
scale-up domain by :func:`~sim.collectives.collective_time`), the bytes of the
context-parallel K/V ring and the attention they hide under, the bytes of the
expert-parallel all-to-all, the output layer and loss, and the parameters of each virtual
chunk. Pure: no SimPy, no network model (the job moves the CP and EP bytes through it).

Main assumptions: every micro-batch costs the same; TP collectives stay inside a scale-up
domain that no other job shares; the CP K/V ring overlaps attention (Megatron-Core ring
attention), forward and backward.
"""

from __future__ import annotations

from ...catalog import Accelerator
from ...collectives import collective_time
from ...collectives.timing import compile_phase, link_capacity
from ...compute import attention_time, backward_gemms, gemm_time, gemms_time, hbm_time
from ...errors import ConfigError
from ...fabric.fabric import Fabric
from ..models import LayerCost, layer_costs, params_per_layer
from .comm import cp_ring_spec
from .parallelism import rank_grid, stage_layers
from .spec import TrainingWorkload

__all__ = ["CE_BWD_BYTES", "CE_FWD_BYTES", "StageCost", "cp_ring_alone", "model_flops_per_step",
           "overlap_slowdown"]

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


def overlap_slowdown(w: TrainingWorkload, acc: Accelerator, kind: str = "tp") -> float:
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


def cp_ring_alone(w: TrainingWorkload, f: Fabric, ring: list[str], nbytes: float,
                  steps: int) -> float:
    """Seconds for every rank of one CP ring (``ring``, in ring order) to send ``nbytes``
    to the next over the fabric's routes at link rate, with the network to itself, plus
    ``steps`` hand-ons' NCCL send/recv latency."""
    ph = f.derived(("training.cp_ring", tuple(ring)), lambda: compile_phase(
        f, tuple(ring), cp_ring_spec(w, 1, 1), f.routing, link_capacity(f)))
    proto = f.catalog.protocols["Simple"]
    return nbytes * ph.unit_time_s + steps * (proto.base_latency_s + proto.hop_latency_net_s)


def attention_core(w: TrainingWorkload, acc: Accelerator, prec: str, flops: float,
                   backward: bool = False) -> float:
    """Attention core: fused kernels at their measured rate, else batched GEMMs."""
    if w.flash_attention:
        return attention_time(acc, prec, flops, backward=backward)
    return (2.0 if backward else 1.0) * gemm_time(acc, prec, flops, sustained=True)


def tp_collective_time(w: TrainingWorkload, f: Fabric, tp_group: list[str],
                       c0: LayerCost) -> float:
    """A layer's forward TP collectives: all-reduce (or reduce-scatter + all-gather with
    SP), ``tp_collectives_fwd`` of them; 0 without TP."""
    if w.tp == 1:
        return 0.0
    if w.sequence_parallel:
        one = collective_time(f, "reduce_scatter", tp_group, c0.tp_bytes_fwd).time_s + \
            collective_time(f, "all_gather", tp_group, c0.tp_bytes_fwd).time_s
    else:
        one = collective_time(f, "all_reduce", tp_group, c0.tp_bytes_fwd).time_s
    return one * c0.tp_collectives_fwd


def layer_times(w: TrainingWorkload, acc: Accelerator, prec: str, costs: list[LayerCost],
                tp_t: float, ko: float) -> tuple[float, ...]:
    """Sums over the stage's layers: (forward compute, backward compute, exposed forward
    TP, exposed backward TP, EP bytes, CP bytes), all chunks together.

    Kernels per layer: norms, QKV, rotary/bias, attention (one fused kernel, or scores,
    softmax, dropout, values), output projection, residual/dropout, FFN GEMMs and
    activation; backward launches about twice as many. 2 TP collectives per layer forward,
    2 backward, 2 more when the forward is recomputed."""
    m = w.model
    fwd = bwd = tp_fwd = tp_bwd = ep_fwd = cp_fwd = 0.0
    k_fwd = 11 + (0 if w.flash_attention else 3)
    k_rec = {"full": k_fwd, "selective": 3, "none": 0}[w.recompute]
    rec_tp = 1.0 if w.recompute == "full" else 0.0  # a recomputed forward's TP too
    overlap = w.tp_comm_overlap and w.tp > 1
    slow = overlap_slowdown(w, acc) if overlap else 1.0
    for c in costs:
        fwd += k_fwd * ko
        bwd += (2 * k_fwd + k_rec) * ko
        rec_attn = c.attn_fwd if w.recompute != "none" else 0.0  # both policies redo it
        # each GEMM at its shape's efficiency, at the rate sustained at the power
        # limit (a training step keeps the tensor cores busy)
        g_fwd = gemms_time(acc, prec, c.gemms, sustained=True)
        fwd += g_fwd + attention_core(w, acc, prec, c.attn_fwd) + hbm_time(acc, c.bytes_fwd)
        bwd += gemms_time(acc, prec, backward_gemms(c.gemms), sustained=True) + \
            attention_core(w, acc, prec, c.attn_fwd, backward=True) + \
            2 * hbm_time(acc, c.bytes_fwd) + \
            (g_fwd if w.recompute == "full" else 0.0) + \
            attention_core(w, acc, prec, rec_attn) + \
            hbm_time(acc, c.recompute_bytes) + hbm_time(acc, c.fp8_bwd_bytes)
        if overlap:
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
    return fwd, bwd, tp_fwd, tp_bwd, ep_fwd, cp_fwd


def chunk_params(w: TrainingWorkload, s: int) -> list[float]:
    """Parameters of each virtual chunk of stage ``s`` on one GPU: its layers by their
    index (so that a model's dense first layers count as dense); the input embedding sits
    with the first virtual stage, the output layer with the last."""
    m = w.model
    out = []
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
        out.append(p)
    return out


class StageCost:
    """Durations of one pipeline stage's operations, per virtual chunk (s), and its bytes.

    Attributes
    ----------
    compute_fwd, compute_bwd : float
        Compute of one forward / backward op (s).
    tp_fwd, tp_bwd : float
        Exposed TP collectives per op (s).
    cp_bytes_fwd, cp_bytes_bwd : float
        Bytes each GPU sends around its CP ring per op (K/V; backward also dK/dV).
    cp_attn_fwd, cp_attn_bwd : float
        The op's attention compute, under which the CP exchange runs (s).
    cp_steps : int
        Ring hand-ons per forward op (CP - 1 per layer).
    cp_fwd, cp_bwd : float
        Exposed CP exchange per op with the network to itself (s): an estimate for
        planning; a job's exposure comes from its transfers through the network model.
    ep_bytes_fwd, ep_bytes_bwd : float
        Bytes each GPU sends in the op's all-to-all (dispatch + combine).
    ep_slow : float
        Slowdown of the computation while an overlapped all-to-all holds SMs.
    head_fwd, head_bwd : float
        The output layer and loss on the last virtual stage (s).
    activation_bytes : float
        Bytes per GPU handed to the next stage per micro-batch.
    chunk_params, params : list of float, float
        Parameters per virtual chunk on one GPU, and their sum.
    """

    def __init__(self, w: TrainingWorkload, f: Fabric, s: int, tp_group: list[str]):
        acc = f.catalog.accelerators[f.graph.nodes[tp_group[0]]["model"]]
        self.acc = acc
        m = w.model
        prec = w.precision if w.precision in acc.peak_flops else "bf16"
        costs = [layer_costs(m, micro_batch=w.micro_batch, seq_len=w.seq_len, tp=w.tp,
                             cp=w.cp, ep=w.ep, sequence_parallel=w.sequence_parallel,
                             recompute=w.recompute, flash_attention=w.flash_attention,
                             layer=layer, fp8=w.precision == "fp8")
                 for c in range(w.vpp) for layer in stage_layers(w, s, c)]
        n_chunks = w.vpp
        c0 = costs[0]
        tp_t = tp_collective_time(w, f, tp_group, c0)
        fwd, bwd, tp_fwd, tp_bwd, ep_fwd, cp_fwd = layer_times(
            w, acc, prec, costs, tp_t, f.catalog.compute.kernel_overhead_s)
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
        self.ep_slow = overlap_slowdown(w, acc, "ep") if w.ep_comm_overlap and \
            self.ep_bytes_fwd else 1.0
        self._cp(w, f, s, acc, prec, costs, cp_fwd / n_chunks)
        self.head_fwd, self.head_bwd = self._head(w, acc, prec, s)
        self.activation_bytes = c0.tp_bytes_fwd / (w.tp if w.sequence_parallel else 1) \
            if w.tp > 1 else w.micro_batch * w.seq_len / w.cp * m.hidden * 2
        self.chunk_params = chunk_params(w, s)
        self.params = sum(self.chunk_params)

    def _cp(self, w: TrainingWorkload, f: Fabric, s: int, acc: Accelerator, prec: str,
            costs: list[LayerCost], nbytes: float) -> None:
        """The CP K/V ring of an op: its bytes, the attention it overlaps (Megatron-Core
        ring attention; backward moves K/V and their gradients, 2x, under the attention
        backward) and the exposure alone on the network."""
        n_chunks = w.vpp
        self.cp_bytes_fwd, self.cp_bytes_bwd = nbytes, 2 * nbytes
        self.cp_attn_fwd = sum(attention_core(w, acc, prec, c.attn_fwd) for c in costs) / n_chunks
        self.cp_attn_bwd = sum(attention_core(w, acc, prec, c.attn_fwd, backward=True)
                               for c in costs) / n_chunks
        self.cp_steps = (w.cp - 1) * len(costs) // n_chunks
        self.cp_fwd = self.cp_bwd = 0.0
        if w.cp == 1 or not nbytes:
            return
        ring = list(rank_grid(w, f)[s, 0, :, 0])
        alone = cp_ring_alone(w, f, ring, nbytes, self.cp_steps)
        alone_b = cp_ring_alone(w, f, ring, 2 * nbytes, self.cp_steps)
        self.cp_fwd = max(0.0, alone - self.cp_attn_fwd)
        self.cp_bwd = max(0.0, alone_b - self.cp_attn_bwd)

    @staticmethod
    def _head(w: TrainingWorkload, acc: Accelerator, prec: str, s: int) -> tuple[float, float]:
        """Logits + loss on the last stage's last chunk (forward, backward seconds)."""
        if s != w.pp - 1:
            return 0.0, 0.0
        m = w.model
        tokens = w.micro_batch * w.seq_len / w.cp
        head = [(tokens, m.vocab / w.tp, m.hidden, 1)]  # the output layer's GEMM
        logits = tokens * m.vocab / w.tp  # this GPU's vocabulary shard of the logits
        # FP8 covers the transformer layers' linear layers (Transformer Engine); the
        # output layer is Megatron-Core's own ColumnParallelLinear, in 16 bits
        hp = "bf16" if prec == "fp8" else prec
        return (gemms_time(acc, hp, head, sustained=True) + hbm_time(acc, CE_FWD_BYTES * logits),
                gemms_time(acc, hp, backward_gemms(head), sustained=True) +
                hbm_time(acc, CE_BWD_BYTES * logits))
