"""The shape of a decoder-only transformer, as the catalog and workload files describe it.

:class:`ModelSpec` holds what a model *is* (layers, hidden size, heads, FFN, vocabulary,
and its mixture-of-experts and multi-head latent attention options, :class:`MoE` and
:class:`MLA`); :func:`read_model` reads one from a catalog ``models:`` entry or a
workload's inline ``model:``. What a model *costs* (FLOPs, bytes, memory per GPU) is
:mod:`sim.workload.models`' business. This module sits below the catalog, so that loading
the catalog needs nothing from the workload layer.

Main assumption: every layer has the same attention and FFN shape, except the first
``moe.dense_layers`` layers of a mixture-of-experts model, which are dense.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .spec import Node

__all__ = ["ModelSpec", "MoE", "MLA", "read_model"]


@dataclass(frozen=True)
class MoE:
    experts: int
    top_k: int
    shared_experts: int
    expert_ffn: int
    shared_ffn: int
    dense_layers: int


@dataclass(frozen=True)
class MLA:
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer's shape."""

    id: str
    name: str
    family: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    ffn_type: str  # gelu | swiglu
    vocab: int
    max_seq_len: int
    tied_embeddings: bool
    norm: str
    moe: MoE | None = None
    mla: MLA | None = None
    params_b: float = 0.0
    active_params_b: float = 0.0
    dropout: bool = True  # hidden dropout in training (GPT-style); Llama-style models have none
    source: str = field(default="", compare=False)


def read_model(key: str, n: Node) -> ModelSpec:
    """Read one model entry (catalog ``models:`` section or a workload's inline model)."""
    moe = None
    if "moe" in n:
        m = n.sub("moe")
        moe = MoE(m.integer("experts", minimum=1), m.integer("top_k", minimum=1),
                  m.integer("shared_experts", 0, minimum=0), m.integer("expert_ffn", minimum=1),
                  m.integer("shared_ffn", 0, minimum=0), m.integer("dense_layers", 0, minimum=0))
        m.done()
        if moe.top_k > moe.experts:
            raise m.error("top_k", f"top_k {moe.top_k} exceeds {moe.experts} experts")
    mla = None
    if "mla" in n:
        m = n.sub("mla")
        mla = MLA(*(m.integer(k, minimum=1) for k in (
            "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
            "v_head_dim")))
        m.done()
    heads = n.integer("heads", minimum=1)
    hidden = n.integer("hidden", minimum=1)
    family = n.string("family", "gpt")
    spec = ModelSpec(
        id=key,
        name=n.string("name", key),
        family=family,
        layers=n.integer("layers", minimum=1),
        hidden=hidden,
        heads=heads,
        kv_heads=n.integer("kv_heads", heads, minimum=1),
        head_dim=n.integer("head_dim", max(1, hidden // heads), minimum=1),
        ffn=n.integer("ffn", 4 * hidden, minimum=1),
        ffn_type=n.string("ffn_type", "gelu", choices=("gelu", "swiglu")),
        vocab=n.integer("vocab", minimum=1),
        max_seq_len=n.integer("max_seq_len", 2048, minimum=1),
        tied_embeddings=n.boolean("tied_embeddings", False),
        norm=n.string("norm", "layernorm", choices=("layernorm", "rmsnorm")),
        moe=moe,
        mla=mla,
        params_b=n.number("params_b", 0.0, low=0.0),
        active_params_b=n.number("active_params_b", 0.0, low=0.0),
        dropout=n.boolean("dropout", family == "gpt"),
        source=n.string("source", ""),
    )
    for k in ("as_of", "estimate"):
        n.raw(k, None)
    n.done()
    if spec.heads % spec.kv_heads:
        raise ConfigError(f"{spec.heads} heads are not a multiple of {spec.kv_heads} KV heads",
                          file=n.file, field=n.field("kv_heads"))
    return spec
