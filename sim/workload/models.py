"""Transformer models: shapes, FLOPs and bytes per layer, memory per GPU.

The FLOP counts follow Narayanan et al. (SC21, Sec. 5.1 and Appendix): a GEMM of
(m x k) by (k x n) costs 2mkn FLOPs; per layer and micro-batch of b sequences of s tokens,
a GPT layer's forward is 24 b s h^2 + 4 b s^2 h FLOPs (QKV 6bsh^2, attention scores and
values 4bs^2h, output projection 2bsh^2, MLP 16bsh^2), generalised here to grouped-query
attention, SwiGLU (three FFN matrices), mixture-of-experts (router, top-k routed and shared
experts) and DeepSeek's multi-head latent attention (its low-rank projections). Backward is
twice the forward; activation recomputation repeats the forward (full) or only the attention
core (selective, Korthikanti et al. 2022). Model FLOPs (MFU) count forward + backward; hardware
FLOPs (HFU) add what recomputation repeats.

Bytes: elementwise operations (norms, activations, dropout, residual adds, softmax when
attention is not fused) are HBM-bound; each is counted as the bytes it reads and writes.
Memory per GPU follows Korthikanti et al. (activations: 34 s b h + 5 a s^2 b bytes per layer
without parallelism, divided by TP with sequence parallelism, only the inputs kept with full
recompute) and Rajbhandari et al. (ZeRO: 2 + 2 + 12 bytes per parameter for bf16 weights,
gradients and fp32 Adam states, the last two sharded over data-parallel ranks by stage).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..modelspec import MLA, ModelSpec, MoE, read_model

__all__ = ["ModelSpec", "MoE", "MLA", "read_model", "LayerCost", "layer_costs", "layer_gemms",
           "params_per_layer", "embedding_params"]


def _ffn_mats(m: ModelSpec) -> int:
    return 3 if m.ffn_type == "swiglu" else 2


def _attn_proj_params(m: ModelSpec) -> int:
    """Weights of Q, K, V and output projections of one layer."""
    h = m.hidden
    if m.mla is not None:
        a = m.mla
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        q = h * a.q_lora_rank + a.q_lora_rank * m.heads * qk
        kv = h * (a.kv_lora_rank + a.qk_rope_head_dim) + \
            a.kv_lora_rank * m.heads * (a.qk_nope_head_dim + a.v_head_dim)
        o = m.heads * a.v_head_dim * h
        return q + kv + o
    return h * m.heads * m.head_dim + 2 * h * m.kv_heads * m.head_dim + \
        m.heads * m.head_dim * h


def params_per_layer(m: ModelSpec, layer: int = -1) -> tuple[int, int]:
    """(dense parameters, expert parameters) of one layer (``layer`` picks dense-vs-MoE
    layers of models whose first layers are dense; -1 means a MoE layer when there is MoE)."""
    attn = _attn_proj_params(m)
    norms = 2 * m.hidden
    if m.moe is None or (0 <= layer < m.moe.dense_layers):
        return attn + norms + _ffn_mats(m) * m.hidden * m.ffn, 0
    e = m.moe
    routed = e.experts * _ffn_mats(m) * m.hidden * e.expert_ffn
    shared = e.shared_experts * _ffn_mats(m) * m.hidden * (e.shared_ffn or e.expert_ffn)
    return attn + norms + m.hidden * e.experts + shared, routed


def embedding_params(m: ModelSpec) -> int:
    """Input embedding plus output layer (once if tied)."""
    return m.vocab * m.hidden * (1 if m.tied_embeddings else 2)


@dataclass
class LayerCost:
    """One layer, one micro-batch, on one GPU (after TP/SP/CP/EP division).

    FLOPs are split into GEMMs (``gemm_*``, run at matmul efficiency) and the attention
    core (``attn_*``: scores and values). Bytes are HBM traffic of elementwise operations.
    Communication volumes are per GPU, in bytes, for one micro-batch.
    """

    gemm_fwd: float
    attn_fwd: float
    bytes_fwd: float
    recompute_flops: float  # FLOPs repeated in backward by activation recomputation
    recompute_bytes: float
    tp_bytes_fwd: float  # bytes of the TP collectives' buffer in forward (per collective kind)
    tp_collectives_fwd: int
    ep_bytes_fwd: float  # all-to-all bytes sent per GPU (dispatch + combine) in forward
    cp_bytes_fwd: float  # K/V bytes exchanged around the CP ring in forward
    activation_bytes: float  # kept for backward per micro-batch (after recompute policy)
    gemms: tuple = ()  # forward GEMMs (m, n, k, count) per GPU: 2 m n k count sum to gemm_fwd
    fp8_bwd_bytes: float = 0.0  # FP8 casts of the output gradients in backward (HBM bytes)

    @property
    def flops_fwd(self) -> float:
        return self.gemm_fwd + self.attn_fwd


def layer_costs(m: ModelSpec, *, micro_batch: int, seq_len: int, tp: int = 1, cp: int = 1,
                ep: int = 1, sequence_parallel: bool = False, recompute: str = "none",
                flash_attention: bool = True, causal: bool = True, dtype_bytes: int = 2,
                layer: int = -1, dropout: bool = True, fp8: bool = False) -> LayerCost:
    """Per-GPU cost of one layer for one micro-batch (see the module docstring).

    Parameters
    ----------
    micro_batch, seq_len : int
        Sequences per micro-batch and tokens per sequence.
    tp, cp, ep : int
        Tensor, context and expert parallel sizes.
    sequence_parallel : bool
        Megatron sequence parallelism: norms/dropout split over TP, collectives become
        reduce-scatter + all-gather.
    recompute : {'none', 'selective', 'full'}
    flash_attention : bool
        Fused attention: no s^2 softmax traffic, and with ``causal`` only the lower
        triangle of the score matrix is computed.
    dropout : bool
        Count the two dropouts' traffic and masks (training, for models that have dropout);
        inference has none.
    fp8 : bool
        FP8 linear layers (Transformer Engine): they keep their inputs for backward as FP8
        copies (1 byte) instead of the 16-bit tensors.
    """
    dropout = dropout and m.dropout
    b, s = micro_batch, seq_len / cp
    tokens = b * s  # tokens of this GPU's sequence shard
    a = m.heads
    moe_layer = m.moe is not None and not (0 <= layer < m.moe.dense_layers)
    gemm, ffn_inner, qk_dim, v_dim = _gemm_flops(m, tokens, tp, moe_layer)
    gemms = layer_gemms(m, tokens, tp, ep, moe_layer)
    # --- attention core: QK^T and AV over the full sequence (CP: local queries x all keys)
    s_kv = seq_len
    attn = 2 * b * s * s_kv * a * (qk_dim + v_dim) / tp
    if causal and flash_attention:
        attn /= 2  # fused kernels skip the masked upper triangle
    sp = tp if sequence_parallel else 1
    e = dtype_bytes
    bytes_fwd, fp8_bwd = _elementwise_bytes(m, b, s, s_kv, tp, sp, e, ffn_inner, qk_dim,
                                            gemms, dropout=dropout,
                                            flash_attention=flash_attention, fp8=fp8)
    # --- recomputation
    if recompute == "full":
        rec_flops, rec_bytes = gemm + attn, bytes_fwd
    elif recompute == "selective":
        rec_flops, rec_bytes = attn, (0.0 if flash_attention else 4 * 2 * b * a / tp * s *
                                      s_kv * e)
    else:
        rec_flops, rec_bytes = 0.0, 0.0
    kept = _kept_activations(m, tokens, s_kv, tp, sp, ffn_inner, sequence_parallel=
                             sequence_parallel, recompute=recompute,
                             flash_attention=flash_attention, dropout=dropout, fp8=fp8)
    tp_bytes, tp_colls, ep_bytes, cp_bytes = _comm_bytes(m, b, s, tp, cp, ep, e, moe_layer)
    return LayerCost(gemm, attn, bytes_fwd, rec_flops, rec_bytes, tp_bytes, tp_colls,
                     ep_bytes, cp_bytes, kept, gemms, fp8_bwd)


def _gemm_flops(m: ModelSpec, tokens: float, tp: int, moe_layer: bool
                ) -> tuple[float, float, int, int]:
    """GEMM FLOPs per GPU (divided by TP), the FFN's inner size and the q/k and v head dims."""
    h = m.hidden
    if m.mla is not None:
        attn_proj = 2 * tokens * _attn_proj_params(m)
        qk_dim = m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim
        v_dim = m.mla.v_head_dim
    else:
        attn_proj = 2 * tokens * _attn_proj_params(m)
        qk_dim = v_dim = m.head_dim
    if moe_layer:
        e = m.moe
        ffn_flops = 2 * tokens * _ffn_mats(m) * h * e.expert_ffn * e.top_k
        ffn_flops += 2 * tokens * _ffn_mats(m) * h * (e.shared_ffn or e.expert_ffn) * \
            e.shared_experts
        ffn_flops += 2 * tokens * h * e.experts  # router
        ffn_inner = e.expert_ffn * e.top_k + (e.shared_ffn or e.expert_ffn) * e.shared_experts
    else:
        ffn_flops = 2 * tokens * _ffn_mats(m) * h * m.ffn
        ffn_inner = m.ffn
    gemm = (attn_proj + ffn_flops) / tp
    return gemm, ffn_inner, qk_dim, v_dim


def _elementwise_bytes(m: ModelSpec, b: int, s: float, s_kv: int, tp: int, sp: int, e: int,
                       ffn_inner: float, qk_dim: int, gemms: tuple, *, dropout: bool,
                       flash_attention: bool, fp8: bool) -> tuple[float, float]:
    """Elementwise HBM traffic (read + write) in forward, and FP8 casts in backward, bytes."""
    h, a = m.hidden, m.heads
    tokens = b * s
    per_tok = 0.0
    per_tok += 2 * 2 * h / sp  # two norms: read x, write y
    per_tok += 2 * 2 * h / sp  # two residual adds (read 2, write 1) ~ 4h
    if dropout:
        per_tok += 2 * 1.5 * h / sp  # two dropouts (read, write, 1-byte mask)
    act = ffn_inner * (3 if m.ffn_type == "swiglu" else 2) / tp  # activation fn read/write
    per_tok += act
    per_tok += 2 * (a * qk_dim * 3) / tp / 2  # rotary/bias on q, k, v
    bytes_fwd = tokens * per_tok * e
    fp8_bwd = 0.0
    if fp8:
        # Transformer Engine's FP8 GEMMs take FP8 operands, Hopper's FP8 GEMMs in TN layout
        # only: each linear layer's input is also written transposed (cast-transpose; the
        # norm and activation kernels write the FP8 input itself, the attention output is
        # cast from 16 bits), ~2 bytes per input element; in backward each output gradient
        # is read (2) and written as FP8 and transposed FP8 (2)
        fp8_in = sum(mm * k * c for mm, n, k, c in gemms)
        fp8_out = sum(mm * n * c for mm, n, k, c in gemms)
        bytes_fwd += 2 * fp8_in
        fp8_bwd = 4 * fp8_out
    if not flash_attention:
        # scale + mask + softmax + dropout over a s^2 b scores: ~4 passes of read+write
        bytes_fwd += 4 * 2 * b * a / tp * s * s_kv * e
    return bytes_fwd, fp8_bwd


def _kept_activations(m: ModelSpec, tokens: float, s_kv: int, tp: int, sp: int,
                      ffn_inner: float, *, sequence_parallel: bool, recompute: str,
                      flash_attention: bool, dropout: bool, fp8: bool) -> float:
    """Activation bytes kept for backward per micro-batch, after the recompute policy."""
    h, a = m.hidden, m.heads
    # --- activations kept for backward (Korthikanti et al. 2022, Table 2), bytes
    # per token and hidden unit: attention 7 + 4 g (input, Q, K/V, output-projection input,
    # dropout mask; g = kv_heads / heads), MLP 3 + (2 or 3) x 2 f/h (input, mask, the FFN's
    # intermediate tensors), norms 4; of which 10 (norm and block inputs, masks) are
    # replicated over TP unless sequence parallelism splits them. Scores add 5 a s / h,
    # dropped by flash attention or selective recompute.
    g = m.kv_heads / m.heads if m.mla is None else 1.0
    total = (7 + 4 * g) + (3 + (6 if m.ffn_type == "swiglu" else 4) * ffn_inner / h) + 4
    if not dropout:
        total -= 2  # no dropout masks after attention and MLP
    if fp8:
        # Transformer Engine keeps FP8 copies of the linear layers' inputs for the weight
        # gradients: the QKV and FC1 inputs (2 -> 1 byte each), the FC2 input (the activation
        # output, 2 f/h -> f/h); the output projection's input stays 16-bit for the fused
        # attention's backward, plus its FP8 copy (+1)
        total -= 1 + ffn_inner / h
    repl = 0.0 if sequence_parallel else 10.0
    per = repl + (total - repl) / tp
    score = 0.0 if (flash_attention or recompute == "selective") else 5 * a * s_kv / (h * tp)
    kept = tokens * h * (per + score)
    if recompute == "full":
        kept = 2 * tokens * h / sp  # only the layer's input
    return kept


def _comm_bytes(m: ModelSpec, b: int, s: float, tp: int, cp: int, ep: int, e: int,
                moe_layer: bool) -> tuple[float, int, float, float]:
    """Forward communication per GPU: TP buffer and collective count, EP and CP bytes."""
    h = m.hidden
    tokens = b * s
    tp_bytes = tokens * h * e if tp > 1 else 0.0  # buffer of each TP all-reduce (or RS+AG)
    tp_colls = 2 if tp > 1 else 0
    ep_bytes = 0.0
    if moe_layer and ep > 1:
        ep_bytes = 2 * tokens * h * e * m.moe.top_k * (ep - 1) / ep  # dispatch + combine
    cp_bytes = 0.0
    if cp > 1:
        kv = 2 * b * s * (m.kv_heads * m.head_dim if m.mla is None else m.mla.kv_lora_rank) * \
            e / tp
        cp_bytes = kv * (cp - 1)  # each GPU's K/V shard travels the ring
    return tp_bytes, tp_colls, ep_bytes, cp_bytes


def layer_gemms(m: ModelSpec, tokens: float, tp: int, ep: int, moe_layer: bool) -> tuple:
    """The forward GEMMs of one layer as (m, n, k, count) on one GPU, weights split over TP
    along n (as the FLOP count divides every weight by TP); routed experts get the tokens
    dispatched to each of this GPU's experts."""
    h, a, d = m.hidden, m.heads, m.head_dim
    out = []
    if m.mla is not None:
        q = m.mla
        qk = q.qk_nope_head_dim + q.qk_rope_head_dim
        out += [(tokens, q.q_lora_rank / tp, h, 1), (tokens, a * qk / tp, q.q_lora_rank, 1),
                (tokens, (q.kv_lora_rank + q.qk_rope_head_dim) / tp, h, 1),
                (tokens, a * (q.qk_nope_head_dim + q.v_head_dim) / tp, q.kv_lora_rank, 1),
                (tokens, h / tp, a * q.v_head_dim, 1)]
    else:
        out += [(tokens, (a + 2 * m.kv_heads) * d / tp, h, 1), (tokens, h, a * d / tp, 1)]
    up = _ffn_mats(m) - 1  # gate and up projections in one GEMM for SwiGLU
    if moe_layer:
        e = m.moe
        local = e.experts / ep
        per_expert = tokens * e.top_k / local
        out += [(per_expert, up * e.expert_ffn / tp, h, local),
                (per_expert, h, e.expert_ffn / tp, local),
                (tokens, e.experts / tp, h, 1)]  # router
        if e.shared_experts:
            sff = (e.shared_ffn or e.expert_ffn) * e.shared_experts
            out += [(tokens, up * sff / tp, h, 1), (tokens, h, sff / tp, 1)]
    else:
        out += [(tokens, up * m.ffn / tp, h, 1), (tokens, h, m.ffn / tp, 1)]
    return tuple(out)
