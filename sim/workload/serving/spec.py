"""An inference service's specification: model, replicas and their tensor parallelism,
batching and KV-cache policy, arrivals, lengths and SLOs, read from a service YAML.

Main assumption: a replica runs on ``tp`` GPUs of one scale-up domain (no pipeline
parallelism); disaggregated serving splits the replicas into prefill and decode pools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...catalog import Catalog, load_catalog
from ...errors import InfeasibleError
from ...spec import Node, apply_overrides, load_yaml
from ..models import ModelSpec, read_model
from .lengths import Lengths, read_lengths
from .policies import ROUTERS

__all__ = ["ServiceSpec", "load_service", "read_length_field"]


@dataclass
class ServiceSpec:
    """An inference service: model, replicas, batching, KV cache, arrivals, lengths."""

    name: str
    model: ModelSpec
    replicas: int = 1
    tp: int = 1
    precision: str = "bf16"
    kv_bytes: int = 2  # per element of the KV cache (1 for FP8)
    max_batch: int = 256  # running requests per replica
    token_budget: int = 8192  # tokens per iteration (prefill chunks + decodes)
    chunked_prefill: bool = True
    kv_fraction: float = 0.9  # of the HBM left after weights
    # decode attention kernel: "grouped" reads each KV head once per step (FlashDecoding,
    # TensorRT-LLM XQA); "per_query_head" reads it once per query head sharing it
    # (one thread block per query head: TensorRT-LLM's MMHA before XQA)
    decode_attention: str = "grouped"
    # a full KV cache preempts the newest request: "recompute" drops its KV and later
    # prefills prompt + generated tokens again (vLLM's default); "swap" copies its KV to
    # host memory over the GPU's PCIe link and back when it resumes; "none" admits a
    # request only if its whole sequence fits with those running (TensorRT-LLM's
    # GUARANTEED_NO_EVICT), so none is preempted
    preemption: str = "recompute"
    # seconds of host work per request in an iteration (scheduling, bookkeeping, sampling
    # hand-off) during which the GPU waits: runtimes without an overlapped scheduler
    host_overhead_per_request: float = 0.0
    # bytes per GPU the runtime allocates for each batch slot and vocabulary entry (logits,
    # sampling workspaces) before it sizes the KV cache from the memory left
    vocab_buffer_bytes: float = 0.0
    static_batch: int | None = None
    prefill_replicas: int | None = None  # disaggregated: this many prefill-only replicas
    arrival: str = "poisson"  # poisson | gamma | trace | all-at-once
    rate: float = 1.0  # requests/s
    cv: float = 1.0  # gamma: coefficient of variation of inter-arrival times
    trace: str | None = None
    prompt: Lengths = field(default_factory=Lengths)
    output: Lengths = field(default_factory=Lengths)
    router: str = "least_outstanding"
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    seed: int = 0
    first_gpu: int = 0
    file: str | None = None

    @property
    def gpus(self) -> int:
        return self.replicas * self.tp


def read_length_field(n: Node, key: str) -> Lengths:
    raw = n.raw(key, None)
    if raw is None:
        raise n.error(key, "required field is missing (a number or {dist: ..., mean: ...})")
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise n.error(key, f"must be at least 1, got {raw}")
        return Lengths("fixed", float(raw))
    d = n.sub(key)
    dist = d.string("dist", "fixed", choices=("fixed", "uniform", "normal", "lognormal",
                                              "empirical"))
    values: tuple = ()
    if dist == "empirical":
        path = Path(d.string("file"))
        if not path.is_absolute():
            path = Path(n.file).parent / path
        values = read_lengths(path)
    out = Lengths(dist, d.number("mean", float(np.mean(values)) if values else 128.0,
                                 low=1.0),
                  d.number("sigma", 0.0, low=0.0),
                  d.integer("min", 1, minimum=1), d.integer("max", 10**9, minimum=1), values)
    if out.low > out.high:
        raise d.error("min", f"min {out.low} is above max {out.high}")
    d.done()
    return out


def shortest(ln: Lengths) -> int:
    """The fewest tokens a draw from ``ln`` can have."""
    if ln.dist == "fixed":
        return int(np.clip(round(ln.mean), max(1, ln.low), ln.high))
    if ln.dist == "empirical" and ln.values:
        return int(np.clip(min(ln.values), max(1, ln.low), ln.high))
    return max(1, ln.low)


def load_service(path: str | Path, overrides: list[str] | None = None,
                 catalog: Catalog | None = None) -> ServiceSpec:
    """Read a service YAML (see ``workloads/*serve*.yaml``)."""
    cat = catalog or load_catalog()
    doc = load_yaml(path)
    apply_overrides(doc.data, overrides, file=doc.file)
    doc.string("kind", "inference", choices=("inference",))
    raw_model = doc.raw("model")
    model = cat.get("models", raw_model, file=doc.file, field="model") \
        if isinstance(raw_model, str) else read_model("inline", doc.sub("model"))
    p = doc.sub("parallelism", {})
    b = doc.sub("batching", {})
    a = doc.sub("arrival")
    slo = doc.sub("slo", {})
    pp = p.integer("pp", 1, minimum=1)
    if pp != 1:
        raise p.error("pp", "pipeline-parallel serving is not modelled yet; use tp")
    s = ServiceSpec(
        name=doc.string("name", Path(path).stem),
        model=model,
        replicas=doc.integer("replicas", 1, minimum=1),
        tp=p.integer("tp", 1, minimum=1),
        precision=doc.string("precision", "bf16", choices=("bf16", "fp16", "fp8")),
        kv_bytes=b.integer("kv_bytes", 2, minimum=1),
        max_batch=b.integer("max_batch", 256, minimum=1),
        token_budget=b.integer("token_budget", 8192, minimum=1),
        chunked_prefill=b.boolean("chunked_prefill", True),
        kv_fraction=b.number("kv_fraction", 0.9, low=0.0, high=1.0, low_open=True),
        static_batch=b.integer("static_batch", None, minimum=1),
        decode_attention=b.string("decode_attention", "grouped",
                                  choices=("grouped", "per_query_head")),
        preemption=b.string("preemption", "recompute", choices=("recompute", "swap", "none")),
        host_overhead_per_request=b.quantity("host_overhead_per_request", "time", 0.0,
                                             allow_zero=True),
        vocab_buffer_bytes=b.number("vocab_buffer_bytes", 0.0, low=0.0),
        prefill_replicas=doc.sub("disaggregation", {}).integer("prefill_replicas", None,
                                                               minimum=1),
        arrival=a.string("process", "poisson", choices=("poisson", "gamma", "trace",
                                                        "all-at-once")),
        rate=a.number("rate", 1.0, low=0.0, low_open=True),
        cv=a.number("cv", 1.0, low=0.0, low_open=True),
        trace=a.string("trace", None),
        prompt=read_length_field(doc, "prompt_tokens"),
        output=read_length_field(doc, "output_tokens"),
        router=doc.string("router", "least_outstanding", choices=tuple(ROUTERS)),
        slo_ttft_s=slo.quantity("ttft", "time", None),
        slo_tpot_s=slo.quantity("tpot", "time", None),
        seed=doc.integer("seed", 0, minimum=0),
        first_gpu=doc.integer("first_gpu", 0, minimum=0),
        file=doc.file,
    )
    if s.arrival == "trace":
        if s.trace is None:
            raise a.error("trace", "a trace arrival process needs `trace: file.csv`")
        s.trace = str(Path(doc.file).parent / s.trace)
    for n in (p, b, a, slo):
        n.done()
    doc.done()
    if s.prefill_replicas is not None and s.prefill_replicas >= s.replicas:
        raise InfeasibleError(f"{doc.file}: disaggregation.prefill_replicas: "
                              f"{s.prefill_replicas} prefill replicas leave none of the "
                              f"{s.replicas} for decode")
    if shortest(s.prompt) > model.max_seq_len:
        raise InfeasibleError(f"{doc.file}: prompt_tokens: every prompt has at least "
                              f"{shortest(s.prompt)} tokens, above {model.name}'s context of "
                              f"{model.max_seq_len} (max_seq_len)")
    if model.heads % s.tp:
        raise InfeasibleError(f"{doc.file}: parallelism.tp: {model.heads} heads are not "
                              f"divisible by tp={s.tp}")
    return s
