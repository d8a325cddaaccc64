"""The cost of one serving iteration of a replica, as a function of its tokens: a roofline
per GPU (:mod:`sim.compute`). Pure: no SimPy.

Linear layers cost 2 x active parameters x tokens FLOPs at the measured matmul rate (the
rate held at the power limit where the catalog has one: a serving benchmark keeps the GPU
loaded for minutes), but cannot run faster than reading the weights once from HBM (decode
is memory-bound); attention costs its quadratic FLOPs over the context (prefill is
compute-bound) or reading the context's KV cache (decode; once per KV head with a grouped
kernel such as FlashDecoding or XQA, once per query head with TensorRT-LLM's older
masked-MHA kernel: ``decode_attention``); elementwise operations (norms, residual adds,
the activation function, rotary) move their bytes through HBM per token, counted as in
training without dropout; each layer adds two tensor-parallel all-reduces of the
iteration's activations (:func:`~sim.collectives.collective_time` in the replica's domain)
and its kernels' overhead.

Main assumption: one iteration's work is the sum of its parts (no overlap of
communication and computation inside an iteration).
"""

from __future__ import annotations

from ...collectives import collective_time
from ...compute import attention_time, gemms_time, matmul_rate
from ...errors import InfeasibleError
from ...fabric.fabric import Fabric
from ..models import (
    ModelSpec,
    embedding_params,
    layer_costs,
    layer_gemms,
    params_per_layer,
)
from .spec import ServiceSpec

__all__ = ["GEMM_M_MEASURED", "IterationModel", "kv_bytes_per_token"]


def kv_bytes_per_token(m: ModelSpec, kv_bytes: int) -> float:
    """KV-cache bytes one token occupies over all layers (K and V, or MLA's latent)."""
    if m.mla is not None:
        return m.layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) * kv_bytes
    return 2 * m.layers * m.kv_heads * m.head_dim * kv_bytes


# rows of the smallest GEMMs in the measured shape tables (topologies/catalog/gemm/)
GEMM_M_MEASURED = 256


class IterationModel:
    """Time of one iteration of a replica as a function of its tokens (see module doc)."""

    def __init__(self, s: ServiceSpec, f: Fabric, gpus: list[str]):
        m = s.model
        acc = f.catalog.accelerators[f.graph.nodes[gpus[0]]["model"]]
        self.acc = acc
        cm = f.catalog.compute
        self.rate = matmul_rate(acc, s.precision, sustained=True)
        self.precision = s.precision
        self.hbm = acc.hbm_bandwidth_Bps * cm.hbm_efficiency
        wbytes = 1 if s.precision == "fp8" else 2
        dense, expert = 0, 0
        for layer in range(m.layers):
            d, e = params_per_layer(m, layer)
            dense += d
            expert += e
        emb = embedding_params(m)
        self.weight_bytes = (dense + expert + emb) * wbytes / s.tp
        if m.moe is not None:
            act_frac = m.moe.top_k / m.moe.experts
            self.active_params = dense + expert * act_frac
        else:
            self.active_params = dense
        self.head_flops_per_seq = 2 * m.hidden * m.vocab / s.tp
        self.attn_width = m.heads * (m.head_dim if m.mla is None else
                                     m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim)
        self.kv_token = kv_bytes_per_token(m, s.kv_bytes)
        # bytes of KV a decode step reads per token of context: a grouped kernel reads
        # each KV head once; a per-query-head kernel once for each query head sharing it
        # (MLA's latent cache is read once either way)
        share = m.heads / m.kv_heads if m.mla is None else 1.0
        self.kv_read_token = self.kv_token * (
            share if s.decode_attention == "per_query_head" else 1.0)
        self.layers = m.layers
        self.tp = s.tp
        self.hidden = m.hidden
        self.kernel = cm.kernel_overhead_s * 10 * m.layers  # ~10 kernels per layer
        # host link of the GPU (swap preemption): each GPU moves its KV shard over its own
        nm = f.catalog.nodes.get(f.domain_models[f.domain_of[gpus[0]]])
        hl = f.catalog.links.get(nm.host_link) if nm is not None and nm.host_link else None
        self.host_Bps = hl.bandwidth_Bps * hl.protocol_efficiency if hl else 0.0
        # elementwise HBM traffic per token over all layers (norms, residual adds, the
        # activation function, rotary): the same accounting as training, without dropout
        self.elem_token = sum(layer_costs(m, micro_batch=1, seq_len=1, tp=s.tp, layer=i,
                                          dropout=False).bytes_fwd
                              for i in range(m.layers))
        self.gpus = gpus
        self.f = f
        self._tp_cache: dict[int, float] = {}
        # layers by kind (MoE or dense) for the GEMMs' shape efficiency at a token count
        self._kinds: dict[bool, int] = {}
        for layer in range(m.layers):
            moe = m.moe is not None and layer >= m.moe.dense_layers
            self._kinds[moe] = self._kinds.get(moe, 0) + 1
        self._model = m
        self._eff_cache: dict[int, float] = {}
        free = acc.hbm_capacity_B * s.tp - self.weight_bytes * s.tp
        workspace = 0.05 * acc.hbm_capacity_B * s.tp  # activations, CUDA graphs, buffers
        # the runtime's per-slot vocabulary buffers, on every GPU
        self.vocab_buffers_B = s.vocab_buffer_bytes * (s.static_batch or s.max_batch) * \
            m.vocab * s.tp
        self.kv_capacity_tokens = int(max(0.0, (free - workspace - self.vocab_buffers_B) *
                                          s.kv_fraction) / self.kv_token)
        if self.kv_capacity_tokens <= 0:
            buf = (f" and {self.vocab_buffers_B / s.tp / 2**30:.1f} GiB of batch x vocabulary "
                   f"buffers per GPU" if self.vocab_buffers_B else "")
            raise InfeasibleError(
                f"{s.file or s.name}: parallelism.tp: {m.name} weights need "
                f"{self.weight_bytes * s.tp / 2**30:.1f} GiB over tp={s.tp}{buf}, more than "
                f"{acc.hbm_capacity_B * s.tp / 2**30:.1f} GiB of HBM leaves room for a KV cache")

    def gemm_efficiency(self, tokens: int) -> float:
        """Shape efficiency of the layers' GEMMs with ``tokens`` rows (FLOP-weighted, as
        time: FLOPs at the matmul rate over the time at each GEMM's efficiency)."""
        e = self._eff_cache.get(tokens)
        if e is None:
            flops = t = 0.0
            for moe, count in self._kinds.items():
                g = layer_gemms(self._model, tokens, self.tp, 1, moe)
                flops += count * sum(2.0 * a * b * k * c for a, b, k, c in g)
                t += count * gemms_time(self.acc, self.precision, g, sustained=True)
            e = self._eff_cache[tokens] = flops / (t * self.rate) if t > 0 else 1.0
        return e

    def linear_time(self, tokens: int, head: float) -> float:
        """The linear layers' GEMMs over ``tokens`` rows (plus ``head`` FLOPs of the LM
        head): their FLOPs at the shape-efficient matmul rate, but no faster than streaming
        the weights from HBM. Below ``GEMM_M_MEASURED`` rows (the smallest m of the measured
        shape tables) a GEMM's time is affine in m: streaming the weights at m -> 0, plus
        a compute share growing with m up to the time at GEMM_M_MEASURED rows; the measured
        H100 table shows the roofline's max() too fast there (256 x 4096 x 4096 BF16 takes
        20.5 us, 1.55 x streaming its weights, though its FLOPs alone would take 11 us)."""
        t_w = self.weight_bytes / self.hbm

        def roofline(m: int) -> float:
            lin = 2 * self.active_params * m / self.tp
            return max((lin / self.gemm_efficiency(m) + head) / self.rate, t_w)

        if tokens >= GEMM_M_MEASURED:
            return roofline(tokens)
        return t_w + tokens / GEMM_M_MEASURED * (roofline(GEMM_M_MEASURED) - t_w)

    def swap_time(self, tokens: int) -> float:
        """Seconds to copy ``tokens`` of KV between HBM and host memory (one direction;
        each GPU its shard over its own host link)."""
        if tokens <= 0:
            return 0.0
        if self.host_Bps <= 0:
            raise InfeasibleError(f"batching.preemption: swap needs a host link, and "
                                  f"{self.acc.id}'s node lists none")
        return tokens * self.kv_token / self.tp / self.host_Bps

    def tp_time(self, tokens: int) -> float:
        """Two all-reduces per layer of the iteration's activations (bf16)."""
        if self.tp == 1 or tokens == 0:
            return 0.0
        key = 1 << (tokens - 1).bit_length()  # power-of-two buckets (>= tokens)
        t = self._tp_cache.get(key)
        if t is None:
            nbytes = tokens * self.hidden * 2
            t = collective_time(self.f, "all_reduce", self.gpus, nbytes).time_s
            self._tp_cache[key] = t
        return 2 * self.layers * t

    def time(self, prefill_tokens: int, prefill_attn: float, decode_seqs: int,
             decode_context: float) -> tuple[float, dict]:
        """Seconds for one iteration.

        Parameters
        ----------
        prefill_tokens : int
            Prompt tokens processed in this iteration (all chunks).
        prefill_attn : float
            Sum over prefill chunks of chunk_len x (chunk_start + chunk_len / 2): the
            causal attention context they attend to.
        decode_seqs : int
            Requests decoding one token.
        decode_context : float
            Sum of their context lengths (tokens of KV read).
        """
        tokens = prefill_tokens + decode_seqs
        if tokens == 0:
            return 0.0, {}
        lin_flops = 2 * self.active_params * tokens / self.tp
        head = self.head_flops_per_seq * decode_seqs + (
            self.head_flops_per_seq if prefill_tokens else 0.0)
        t_lin = self.linear_time(tokens, head)
        per_ctx = 4 * self.layers * self.attn_width / self.tp
        attn_flops = per_ctx * (prefill_attn + decode_context)
        kv_read = self.kv_read_token / self.tp * decode_context  # decode reads its context
        # prefill: fused attention at its measured rate; decode: reading the KV cache
        t_attn = attention_time(self.acc, self.precision, per_ctx * prefill_attn) + \
            max(per_ctx * decode_context / self.rate, kv_read / self.hbm)
        elem = self.elem_token * tokens
        t_elem = elem / self.hbm
        t_comm = self.tp_time(tokens)
        t = t_lin + t_attn + t_elem + t_comm + self.kernel
        return t, {"flops": lin_flops + head + attn_flops,
                   "hbm_bytes": self.weight_bytes + kv_read + elem, "comm": t_comm}
