"""Inference serving on a fabric: continuous batching of LLM requests on SimPy time.

A service is ``replicas`` copies of a model, each on ``tp`` GPUs of one scale-up domain.
Each replica runs iterations (vLLM / TensorRT-LLM in-flight batching): every running
request that has its prompt processed decodes one token, and waiting prompts are prefilled
in chunks within a per-iteration token budget, as long as the KV cache has room. A full
cache preempts the newest request: its KV is dropped and its prompt plus the tokens it
has generated are prefilled again when it resumes, or (``preemption: swap``) its KV is
copied to host memory over the GPU's PCIe link and back, blocking those iterations. With
``preemption: none`` (TensorRT-LLM's GUARANTEED_NO_EVICT policy) a request is admitted only
when the cache can hold its whole sequence, prompt plus output tokens, next to the whole
sequences of the running requests, so nothing is ever preempted; the request's output
length stands for the max_tokens it reserves (the TensorRT-LLM benchmarks ignore EOS, so
the two are equal there).

Iteration time is a roofline per GPU (:mod:`sim.compute`): linear layers cost
2 x active parameters x tokens FLOPs at the measured matmul rate (the rate held at the
power limit where the catalog has one: a serving benchmark keeps the GPU loaded for
minutes), but cannot run faster than reading the weights once from HBM (decode is
memory-bound); attention costs its quadratic FLOPs over the context (prefill is
compute-bound) or reading the context's KV cache (decode; once per KV head with a grouped
kernel such as FlashDecoding or XQA, once per query head with TensorRT-LLM's older
masked-MHA kernel: ``decode_attention``);
elementwise operations (norms, residual adds, the activation function, rotary) move their
bytes through HBM per token, counted as in training without dropout; each layer adds two
tensor-parallel all-reduces of the iteration's activations
(:func:`~sim.collectives.collective_time` in the replica's domain) and its kernels'
overhead. A runtime whose scheduler does not overlap the GPU adds its host work per
iteration, ``host_overhead_per_request`` x the requests in it, with the GPU idle. Static
batching (TensorRT-LLM's gptSessionBenchmark) runs a fixed batch to completion instead.
Disaggregated serving splits the replicas into prefill and decode pools: after a prompt's
prefill its KV cache (prompt x bytes per token, sharded over TP) travels from each prefill
GPU to the matching decode GPU as a transfer through the network model, contending with
whatever else the fabric carries.

Main assumptions: requests are independent; prompt and output lengths are known to the
simulator but not to the scheduler; a replica does not use pipeline parallelism.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import simpy

from ..catalog import Catalog, load_catalog
from ..collectives import collective_time
from ..compute import attention_time, gemms_time, matmul_rate
from ..errors import ConfigError, InfeasibleError
from ..fabric.fabric import Fabric
from ..spec import Node, apply_overrides, load_yaml
from .models import (
    ModelSpec,
    embedding_params,
    layer_costs,
    layer_gemms,
    params_per_layer,
    read_model,
)

__all__ = ["ServiceSpec", "load_service", "simulate_service", "ServiceResult",
           "kv_bytes_per_token", "IterationModel", "plot_service"]


@dataclass
class Lengths:
    """A token-length distribution: fixed, uniform, normal, lognormal, or empirical (a
    data set's own lengths: drawn without replacement while they last, as a benchmark
    issues each sample once, then with replacement; a service whose prompt and output
    lengths are both empirical with as many values draws them as pairs). Integers >= 1."""

    dist: str = "fixed"
    mean: float = 128.0
    sigma: float = 0.0  # normal: std; lognormal: sigma of log
    low: int = 1
    high: int = 10**9
    values: tuple = ()  # empirical: the lengths

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "empirical":
            x = np.asarray(self.values, np.int64)[self.draw(rng, n)]
        elif self.dist == "fixed":
            x = np.full(n, self.mean)
        elif self.dist == "uniform":
            x = rng.integers(self.low, self.high + 1, n)
        elif self.dist == "normal":
            x = rng.normal(self.mean, self.sigma, n)
        else:  # lognormal with the given mean
            mu = math.log(self.mean) - self.sigma**2 / 2
            x = rng.lognormal(mu, self.sigma, n)
        return self.clip(x)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Indices of ``n`` empirical values: without replacement while they last, as a
        benchmark issues each sample once, then with replacement."""
        m = len(self.values)
        return rng.permutation(m)[:n] if n <= m else rng.choice(m, n)

    def clip(self, x) -> np.ndarray:
        """Lengths rounded and clipped to [max(1, low), high]."""
        return np.clip(np.rint(x), max(1, self.low), self.high).astype(np.int64)


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


def kv_bytes_per_token(m: ModelSpec, kv_bytes: int) -> float:
    """KV-cache bytes one token occupies over all layers (K and V, or MLA's latent)."""
    if m.mla is not None:
        return m.layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) * kv_bytes
    return 2 * m.layers * m.kv_heads * m.head_dim * kv_bytes


def _lengths(n: Node, key: str) -> Lengths:
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
    d.done()
    return out


def read_lengths(path: str | Path) -> tuple:
    """Token lengths, one integer >= 1 per line ('#' starts a comment)."""
    try:
        with open(path) as fh:
            lines = [(i, ln.split("#", 1)[0].strip()) for i, ln in enumerate(fh, 1)]
    except OSError as e:
        raise ConfigError(f"cannot read lengths file ({e.strerror})", file=str(path)) from None
    out = []
    for i, text in lines:
        if not text:
            continue
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"line {i}: expected a token length (integer >= 1), got "
                              f"{text!r}", file=str(path))
        out.append(int(text))
    if not out:
        raise ConfigError("no lengths in the file", file=str(path))
    return tuple(out)


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
        prompt=_lengths(doc, "prompt_tokens"),
        output=_lengths(doc, "output_tokens"),
        router=doc.string("router", "least_outstanding",
                          choices=("round_robin", "least_outstanding")),
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
    if model.heads % s.tp:
        raise InfeasibleError(f"{doc.file}: parallelism.tp: {model.heads} heads are not "
                              f"divisible by tp={s.tp}")
    return s


# ------------------------------------------------------------------ iteration cost
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

    def _linear_time(self, tokens: int, head: float) -> float:
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

    def _tp_time(self, tokens: int) -> float:
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
        t_lin = self._linear_time(tokens, head)
        per_ctx = 4 * self.layers * self.attn_width / self.tp
        attn_flops = per_ctx * (prefill_attn + decode_context)
        kv_read = self.kv_read_token / self.tp * decode_context  # decode reads its context
        # prefill: fused attention at its measured rate; decode: reading the KV cache
        t_attn = attention_time(self.acc, self.precision, per_ctx * prefill_attn) + \
            max(per_ctx * decode_context / self.rate, kv_read / self.hbm)
        elem = self.elem_token * tokens
        t_elem = elem / self.hbm
        t_comm = self._tp_time(tokens)
        t = t_lin + t_attn + t_elem + t_comm + self.kernel
        return t, {"flops": lin_flops + head + attn_flops,
                   "hbm_bytes": self.weight_bytes + kv_read + elem, "comm": t_comm}


# ------------------------------------------------------------------ requests
def _arrivals(s: ServiceSpec, duration: float, rng: np.random.Generator):
    """(arrival times, prompt lengths, output lengths) of every request."""
    if s.arrival == "trace":
        try:
            with open(s.trace, newline="") as fh:
                rows = list(csv.DictReader(fh))
            t = np.array([float(r["arrival_s"]) for r in rows])
            pl = np.array([int(r["prompt_tokens"]) for r in rows])
            ol = np.array([int(r["output_tokens"]) for r in rows])
        except FileNotFoundError:
            raise ConfigError("trace file not found", file=s.trace) from None
        except (KeyError, ValueError) as e:
            raise ConfigError(f"expected columns arrival_s, prompt_tokens, output_tokens "
                              f"({e})", file=s.trace) from None
        keep = t <= duration
        return t[keep], pl[keep], ol[keep]
    if s.arrival == "all-at-once":
        n = int(s.rate)
        t = np.zeros(n)
    else:
        n_guess = int(s.rate * duration * 1.2 + 20)
        if s.arrival == "poisson":
            gaps = rng.exponential(1.0 / s.rate, n_guess)
        else:
            k = 1.0 / s.cv**2
            gaps = rng.gamma(k, 1.0 / (s.rate * k), n_guess)
        t = np.cumsum(gaps)
        while t[-1] < duration:
            more = rng.exponential(1.0 / s.rate, n_guess)
            t = np.concatenate([t, t[-1] + np.cumsum(more)])
        t = t[t <= duration]
        n = len(t)
    if paired_lengths(s.prompt, s.output):
        # one data set's two columns: sample i keeps its own prompt and output
        idx = s.prompt.draw(rng, n)
        return t, s.prompt.clip(np.asarray(s.prompt.values)[idx]), \
            s.output.clip(np.asarray(s.output.values)[idx])
    return t, s.prompt.sample(rng, n), s.output.sample(rng, n)


def paired_lengths(prompt: Lengths, output: Lengths) -> bool:
    """Prompt and output lengths both empirical with as many values: drawn as pairs (the
    i-th prompt with the i-th output), as a data set's two columns."""
    return (prompt.dist == output.dist == "empirical" and
            len(prompt.values) == len(output.values))


@dataclass
class ServiceResult:
    """Per-request table, per-interval utilization, and summary metrics."""

    service: ServiceSpec
    requests: pd.DataFrame
    intervals: pd.DataFrame
    summary: dict

    def as_dict(self) -> dict:
        return dict(self.summary)


def _replica_groups(s: ServiceSpec, f: Fabric) -> list[list[str]]:
    accs = f.accelerators[s.first_gpu:s.first_gpu + s.gpus]
    if len(accs) < s.gpus:
        raise InfeasibleError(f"{s.file or s.name}: replicas: {s.replicas} replicas x tp "
                              f"{s.tp} = {s.gpus} GPUs, the fabric has "
                              f"{f.n_accelerators - s.first_gpu} from GPU {s.first_gpu}")
    groups = [accs[i * s.tp:(i + 1) * s.tp] for i in range(s.replicas)]
    for g in groups:
        if len({f.domain_of[a] for a in g}) > 1:
            raise InfeasibleError(f"{s.file or s.name}: parallelism.tp: a tp={s.tp} replica "
                                  "would span two scale-up domains")
    return groups


def simulate_service(f: Fabric, s: ServiceSpec, duration_s: float, *,
                     env: simpy.Environment | None = None, warmup_s: float = 0.0,
                     interval_s: float = 1.0, net=None, start=None,
                     defer: bool = False) -> ServiceResult:
    """Serve ``s`` on ``f`` for ``duration_s`` of arrivals (then drain what is left).

    Returns
    -------
    ServiceResult
        ``requests``: one row per request (arrival, first token, finish, tokens, replica,
        preemptions); ``intervals``: per-interval busy fraction, HBM bandwidth use, KV
        occupancy; ``summary``: latency percentiles, throughput, SLO attainment.
    """
    own = env is None
    env = env or simpy.Environment()
    t0 = env.now
    rng = np.random.default_rng(s.seed)
    groups = _replica_groups(s, f)
    models = [IterationModel(s, f, g) for g in groups]
    arr, plen, olen = _arrivals(s, duration_s, rng)
    n = len(arr)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    where = np.full(n, -1, np.int64)
    preempt = np.zeros(n, np.int64)
    max_len = plen + olen
    cap = models[0].kv_capacity_tokens
    too_long = np.nonzero(max_len > cap)[0]
    if len(too_long):
        raise InfeasibleError(f"{s.file or s.name}: a request of {int(max_len.max())} tokens "
                              f"exceeds a replica's KV cache of {cap} tokens")
    queues: list[list[int]] = [[] for _ in groups]
    wake = [env.event() for _ in groups]
    outstanding = np.zeros(len(groups), np.int64)
    busy_log: list[tuple] = []  # (replica, start, end, hbm_bytes, kv_tokens)
    n_pre = s.prefill_replicas or 0
    kv_held = np.zeros(len(groups), np.int64)  # KV tokens held per replica
    prefilled = np.zeros(n, bool)  # arrived at a decode replica with its KV
    # preemption state per request: prefill target (prompt, plus the tokens generated
    # before a recompute preemption), tokens generated before it, and swapped-out KV
    tgt = plen.copy()
    counters = {"prefill_tokens": 0, "swapped_tokens": 0, "kv_tokens_left": 0}
    base = np.zeros(n, np.int64)
    sw_tok = np.zeros(n, np.int64)  # KV tokens in host memory (0: not swapped)
    sw_pre = np.zeros(n, np.int64)
    sw_made = np.zeros(n, np.int64)
    kv_time = np.full(n, np.nan)  # seconds the KV transfer took
    res_of = np.zeros(n, np.int64)  # preemption "none": tokens reserved at admission
    pre_of = np.full(n, -1, np.int64)
    phases: dict = {}
    if n_pre:
        from ..network import make_network

        net = net or make_network("flow", env, f)
        proto = f.catalog.protocols["Simple"]

    def all_done() -> None:
        """Once arrivals are over and every request has finished, wake idle replicas so
        that they return (in a shared environment nothing else would)."""
        if env.now - t0 >= duration_s and not np.isnan(finish).any():
            for e in wake:
                if not e.triggered:
                    e.succeed()

    def kv_send(i: int, r: int, d: int):
        """Prefill replica r's KV for request i goes, shard by shard, to decode replica d."""
        from ..collectives.algorithms import pair_phase
        from ..collectives.timing import _capacity, _compile_phase

        ph = phases.get((r, d))
        if ph is None:
            a, b = groups[r], groups[d]
            ph = phases[(r, d)] = _compile_phase(f, tuple(a + b), pair_phase(len(a), "kv"),
                                                 f.routing, _capacity(f))
        nbytes = plen[i] * models[r].kv_token / s.tp
        t = env.now
        yield net.transfer(ph.transfer(nbytes, proto.base_latency_s +
                                       proto.hop_latency_net_s, "kv"))
        kv_time[i] = env.now - t
        kv_held[r] -= int(plen[i])
        prefilled[i] = True
        queues[d].append(i)
        if not wake[d].triggered:
            wake[d].succeed()

    def arrive():
        rr = 0
        pool = n_pre or len(groups)  # arrivals go to prefill replicas when disaggregated
        if start is not None:
            yield start
        for i in range(n):
            dt = arr[i] + t0 - env.now
            if dt > 0:
                yield env.timeout(dt)
            if s.router == "round_robin":
                r = rr % pool
                rr += 1
            else:
                r = int(np.argmin(outstanding[:pool]))
            where[i] = r
            outstanding[r] += 1
            queues[r].append(i)
            if not wake[r].triggered:
                wake[r].succeed()

    def replica(r: int):
        model = models[r]
        prefill_only = r < n_pre
        decode_only = bool(n_pre) and r >= n_pre
        # running requests (KV in the cache) in slots 0..n_run-1, admission order:
        # request id, prompt tokens processed, output tokens generated
        st_ids = np.zeros(64, np.int64)
        st_pre = np.zeros(64, np.int64)
        st_made = np.zeros(64, np.int64)
        n_run = 0
        kv_used = 0  # this replica's KV in its running requests (kv_held adds KV in flight)
        kv_res = 0  # preemption "none": whole sequences reserved by the running requests
        no_evict = s.preemption == "none"
        while True:
            if not n_run and not queues[r]:
                if env.now - t0 >= duration_s and not np.isnan(finish).any():
                    counters["kv_tokens_left"] += kv_used  # 0 unless the accounting leaks
                    all_done()
                    return
                wake[r] = env.event()
                yield wake[r]
                continue
            if s.static_batch:
                # a fixed batch: prefill all, then decode to the longest output
                batch = queues[r][:s.static_batch]
                del queues[r][:len(batch)]
                pt = int(plen[batch].sum())
                counters["prefill_tokens"] += pt
                attn = float((plen[batch] * plen[batch] / 2).sum())
                t, info = model.time(pt, attn, 0, 0.0)
                yield env.timeout(t)
                first[batch] = env.now
                ctx = plen[batch].astype(float).copy()
                left = olen[batch] - 1
                busy_log.append((r, env.now - t, env.now, info.get("hbm_bytes", 0.0), 0))
                while (left > 0).any():
                    live = left > 0
                    t, info = model.time(0, 0.0, int(live.sum()), float(ctx[live].sum()))
                    yield env.timeout(t)
                    busy_log.append((r, env.now - t, env.now, info["hbm_bytes"],
                                     int(ctx[live].sum())))
                    ctx[live] += 1
                    left[live] -= 1
                    for j in np.asarray(batch)[live & (left == 0)]:
                        finish[j] = env.now
                for j in np.asarray(batch)[olen[batch] == 1]:
                    finish[j] = env.now
                outstanding[r] -= len(batch)
                all_done()
                continue
            # ---- continuous batching: decodes first, then prefill chunks in the budget
            budget = s.token_budget
            ids = st_ids[:n_run]
            pre = st_pre[:n_run]
            mk = st_made[:n_run]
            dec_mask = pre >= tgt[ids]
            dec_idx = np.flatnonzero(dec_mask)[:s.max_batch]
            if prefill_only:
                dec_idx = dec_idx[:0]
            # grow the cache by one token per decode; preempt the newest if full
            swap_tokens = 0
            assert not (no_evict and kv_used + len(dec_idx) > model.kv_capacity_tokens)
            while kv_used + len(dec_idx) > model.kv_capacity_tokens and n_run:
                n_run -= 1
                victim = int(st_ids[n_run])
                v_pre, v_made = int(st_pre[n_run]), int(st_made[n_run])
                held = int(tgt[victim]) + max(v_made - int(base[victim]) - 1, 0)
                kv_used -= held
                preempt[victim] += 1
                if s.preemption == "swap":
                    sw_tok[victim], sw_pre[victim], sw_made[victim] = held, v_pre, v_made
                    swap_tokens += held
                else:  # recompute: prefill prompt + generated tokens again
                    tgt[victim] = plen[victim] + v_made
                    base[victim] = v_made
                    prefilled[victim] = False
                queues[r].insert(0, victim)
                dec_idx = dec_idx[dec_idx < n_run]
                ids, pre, mk = st_ids[:n_run], st_pre[:n_run], st_made[:n_run]
            budget -= len(dec_idx)
            chunk_pos: list[int] = []  # slot of each prefill chunk
            chunk_len: list[int] = []
            if n_run:
                todo = tgt[ids] - pre
                for j in np.flatnonzero(todo > 0):  # continue prompts already started
                    if budget <= 0:
                        break
                    c = int(min(todo[j], budget)) if s.chunked_prefill else int(todo[j])
                    if c > budget:
                        continue
                    chunk_pos.append(int(j))
                    chunk_len.append(c)
                    budget -= c
            while queues[r] and budget > 0 and n_run < s.max_batch:
                i = queues[r][0]
                need = int(sw_tok[i]) if sw_tok[i] else int(tgt[i])
                if kv_used + kv_held[r] + need + 1 > model.kv_capacity_tokens:
                    break  # admission: the prompt (or the swapped KV) must fit
                if no_evict:  # ... and, with no eviction, the whole sequence
                    whole = int(tgt[i]) if prefill_only else int(plen[i] + olen[i])
                    if kv_res + kv_held[r] + whole > model.kv_capacity_tokens:
                        break
                    kv_res += whole
                    res_of[i] = whole
                if n_run == len(st_ids):  # grow the slot arrays
                    st_ids, st_pre, st_made = (np.concatenate([x, np.zeros_like(x)])
                                               for x in (st_ids, st_pre, st_made))
                if sw_tok[i]:  # swapped out: copy its KV back and carry on
                    queues[r].pop(0)
                    st_ids[n_run], st_pre[n_run], st_made[n_run] = i, sw_pre[i], sw_made[i]
                    kv_used += need
                    swap_tokens += need
                    sw_tok[i] = 0
                    n_run += 1
                    continue
                if decode_only and prefilled[i]:  # arrives with its KV: decode at once
                    queues[r].pop(0)
                    st_ids[n_run], st_pre[n_run], st_made[n_run] = i, plen[i], 1
                    kv_used += int(plen[i])  # each later decode adds its token
                    n_run += 1
                    continue
                c = min(int(tgt[i]), budget) if s.chunked_prefill else int(tgt[i])
                if c > budget:
                    break
                queues[r].pop(0)
                st_ids[n_run], st_pre[n_run], st_made[n_run] = i, 0, base[i]
                kv_used += int(tgt[i])  # reserve the prompt's KV
                chunk_pos.append(n_run)
                chunk_len.append(c)
                n_run += 1
                budget -= c
            ids, pre, mk = st_ids[:n_run], st_pre[:n_run], st_made[:n_run]
            cp = np.asarray(chunk_pos, np.int64)
            cl = np.asarray(chunk_len, np.int64)
            pre_tokens = int(cl.sum())
            pre_attn = float((cl * (pre[cp] + cl / 2)).sum()) if len(cp) else 0.0
            dctx = float((plen[ids[dec_idx]] + mk[dec_idx]).sum())
            t, info = model.time(pre_tokens, pre_attn, len(dec_idx), dctx)
            t += model.swap_time(swap_tokens)  # swaps block the iteration (vLLM)
            counters["prefill_tokens"] += pre_tokens
            counters["swapped_tokens"] += swap_tokens
            if t <= 0:
                wake[r] = env.event()
                yield wake[r]
                continue
            if s.host_overhead_per_request:  # the runtime's host work, GPU idle
                yield env.timeout(s.host_overhead_per_request * (len(dec_idx) + len(cp)))
            yield env.timeout(t)
            busy_log.append((r, env.now - t, env.now, info["hbm_bytes"], kv_used))
            now = env.now
            kv_used += len(dec_idx)
            mk[dec_idx] += 1
            if len(cp):
                before = pre[cp].copy()
                pre[cp] += cl
                t_cp = tgt[ids[cp]]
                done_now = cp[(before < t_cp) & (pre[cp] >= t_cp)]
                mk[done_now] += 1  # a prefill's last chunk yields the next token
                fresh = ids[done_now]
                fresh = fresh[np.isnan(first[fresh])]
                first[fresh] = now
            if prefill_only:  # hand finished prompts to the decode pool
                fin = np.flatnonzero(mk >= 1)
                for j in fin.tolist():
                    i = int(ids[j])
                    kv_res -= int(res_of[i])
                    if mk[j] >= olen[i]:  # a one-token answer is done here
                        finish[i] = now
                        kv_used -= int(tgt[i])
                        outstanding[r] -= 1
                        continue
                    d = n_pre + int(np.argmin(outstanding[n_pre:]))
                    outstanding[r] -= 1
                    outstanding[d] += 1
                    pre_of[i], where[i] = r, d
                    kv_used -= int(tgt[i])
                    kv_held[r] += int(plen[i])  # held until the transfer completes
                    env.process(kv_send(i, r, d))
                if len(fin):
                    keep = np.ones(n_run, bool)
                    keep[fin] = False
                    k = int(keep.sum())
                    st_ids[:k], st_pre[:k], st_made[:k] = ids[keep], pre[keep], mk[keep]
                    n_run = k
                continue
            fin = np.flatnonzero(mk >= olen[ids])
            if len(fin):
                fid = ids[fin]
                finish[fid] = now
                kv_used -= int((tgt[fid] + np.maximum(mk[fin] - base[fid] - 1, 0)).sum())
                kv_res -= int(res_of[fid].sum())
                outstanding[r] -= len(fin)
                keep = np.ones(n_run, bool)
                keep[fin] = False
                k = int(keep.sum())
                st_ids[:k], st_pre[:k], st_made[:k] = ids[keep], pre[keep], mk[keep]
                n_run = k
                all_done()

    env.process(arrive())
    procs = [env.process(replica(r)) for r in range(len(groups))]

    def finalize() -> ServiceResult:
        res = _service_result(s, env, t0, arr, first, finish, plen, olen, where, preempt,
                              busy_log, interval_s, groups, models, warmup_s, n, n_pre,
                              kv_time, pre_of)
        res.summary.update(counters)
        return res

    if defer:
        return procs, finalize
    if own:
        env.run()
    else:
        env.run(until=simpy.AllOf(env, procs))
    return finalize()


def _tokens_per_interval(first: np.ndarray, finish: np.ndarray, olen: np.ndarray,
                         bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output tokens and finished requests per interval of ``bins``: each request's first
    token at its first-token time, the others spread evenly until it finishes (its mean
    TPOT), integrated exactly over the intervals."""
    ok = ~(np.isnan(first) | np.isnan(finish))
    a, b, n = first[ok], finish[ok], olen[ok].astype(float)
    rate = np.where(n > 1, (n - 1) / np.maximum(b - a, 1e-12), 0.0)
    t = np.concatenate([a, b])
    order = np.argsort(t, kind="stable")
    t = t[order]
    r = np.cumsum(np.concatenate([rate, -rate])[order])  # total rate after each event
    integral = np.concatenate([[0.0], np.cumsum(r[:-1] * np.diff(t))]) if len(t) else \
        np.zeros(1)
    cum = np.interp(bins, t, integral) if len(t) else np.zeros(len(bins))
    tokens = np.diff(cum) + np.histogram(a, bins)[0]
    return tokens, np.histogram(b, bins)[0]


def plot_service(result: ServiceResult, path: str | Path) -> None:
    """Latency CDFs (TTFT, TPOT, end to end) and throughput over time, one PNG."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    req, iv = result.requests, result.intervals
    fig = Figure(figsize=(12, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    for col, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "end to end")):
        v = np.sort(req[col].dropna().to_numpy() * 1e3)
        if len(v):
            ax1.plot(v, np.arange(1, len(v) + 1) / len(v), label=label)
    ax1.set_xscale("log")
    ax1.set_xlabel("latency (ms)")
    ax1.set_ylabel("fraction of requests")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend()
    ax1.set_title("latency CDF")
    ax2.plot(iv["t_s"], iv["output_tokens_per_s"], label="output tokens/s")
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("output tokens/s")
    ax3 = ax2.twinx()
    ax3.plot(iv["t_s"], iv["busy_fraction"] * 100, color="tab:gray", alpha=0.6,
             label="busy %")
    ax3.plot(iv["t_s"], iv["kv_peak_fraction"] * 100, color="tab:green", alpha=0.6,
             label="KV cache peak %")
    ax3.set_ylabel("%")
    ax3.set_ylim(0, 105)
    lines = ax2.get_lines() + ax3.get_lines()
    ax2.legend(lines, [ln.get_label() for ln in lines], loc="lower right")
    ax2.set_title("throughput over time")
    fig.suptitle(result.summary.get("service", ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _service_result(s, env, t0, arr, first, finish, plen, olen, where, preempt, busy_log,
                    interval_s, groups, models, warmup_s, n, n_pre, kv_time, pre_of
                    ) -> ServiceResult:
    end = env.now
    req = pd.DataFrame({"arrival_s": arr, "first_token_s": first - t0, "finish_s": finish - t0,
                        "prompt_tokens": plen, "output_tokens": olen, "replica": where,
                        "preemptions": preempt})
    req["ttft_s"] = req["first_token_s"] - req["arrival_s"]
    req["e2e_s"] = req["finish_s"] - req["arrival_s"]
    req["tpot_s"] = np.where(req["output_tokens"] > 1,
                             (req["finish_s"] - req["first_token_s"]) /
                             (req["output_tokens"] - 1).clip(lower=1), np.nan)
    # per-interval utilization
    span = max(end - t0, 1e-9)
    bins = np.arange(0.0, span + interval_s, interval_s)
    busy = np.zeros(len(bins) - 1)
    hbm = np.zeros(len(bins) - 1)
    kv = np.zeros(len(bins) - 1)
    for _r, a, b, hb, kvt in busy_log:
        a -= t0
        b -= t0
        i = min(int(a // interval_s), len(busy) - 1)
        busy[i] += b - a
        hbm[i] += hb
        kv[i] = max(kv[i], kvt)
    per = interval_s * len(groups)
    acc = models[0].acc
    tok, done = _tokens_per_interval(first - t0, finish - t0, olen, bins)
    intervals = pd.DataFrame({"t_s": bins[:-1], "busy_fraction": busy / per,
                              "hbm_utilization": hbm / (acc.hbm_bandwidth_Bps * per),
                              "kv_peak_fraction": kv / models[0].kv_capacity_tokens,
                              "output_tokens_per_s": tok / interval_s,
                              "requests_finished": done})
    steady = req[req["arrival_s"] >= warmup_s]
    gen = float(req["output_tokens"].sum())
    # throughput: while requests arrive, after the warm-up (the drain after the last
    # arrival would dilute it); a batch that arrives at once is measured start to end
    w0, w1 = warmup_s, float(np.max(arr)) if len(arr) else 0.0
    if w1 - w0 >= 2 * interval_s:
        win_tok, win_done = _tokens_per_interval(first - t0, finish - t0, olen,
                                                 np.array([w0, w1]))
        thr, rps = float(win_tok[0]) / (w1 - w0), float(win_done[0]) / (w1 - w0)
    else:
        w0, w1 = 0.0, float(span)
        thr, rps = gen / span, n / span
    summ = {"service": s.name, "requests": int(n), "duration_s": float(span),
            "replicas": s.replicas, "tp": s.tp,
            "throughput_tokens_per_s": thr, "requests_per_s": rps,
            "throughput_window_s": [w0, w1],
            "kv_capacity_tokens": models[0].kv_capacity_tokens,
            "preemptions": int(preempt.sum())}
    for col, key in (("ttft_s", "ttft"), ("tpot_s", "tpot"), ("e2e_s", "e2e")):
        v = steady[col].dropna()
        for q in (50, 90, 99):
            summ[f"{key}_p{q}_s"] = float(np.percentile(v, q)) if len(v) else math.nan
        summ[f"{key}_mean_s"] = float(v.mean()) if len(v) else math.nan
    if s.slo_ttft_s is not None or s.slo_tpot_s is not None:
        ok = np.ones(len(steady), bool)
        if s.slo_ttft_s is not None:
            ok &= steady["ttft_s"].to_numpy() <= s.slo_ttft_s
        if s.slo_tpot_s is not None:
            ok &= ~(steady["tpot_s"].to_numpy() > s.slo_tpot_s)
        summ["slo_attainment"] = float(ok.mean()) if len(ok) else math.nan
    if n_pre:
        v = kv_time[~np.isnan(kv_time)]
        summ["kv_transfer_mean_s"] = float(v.mean()) if len(v) else math.nan
        summ["kv_transfer_p99_s"] = float(np.percentile(v, 99)) if len(v) else math.nan
        req["prefill_replica"] = pre_of
    summ["busy_fraction"] = float(busy.sum() / (span * len(groups)))
    summ["hbm_utilization"] = float(hbm.sum() / (acc.hbm_bandwidth_Bps * span * len(groups)))
    return ServiceResult(s, req, intervals, summ)
