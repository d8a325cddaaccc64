"""TensorRT-LLM serving throughput against its published performance tables.

Static batching (gptSessionBenchmark: one batch, prefill then decode, timed as a whole;
the shared ``inference.tsv`` and the repository's ``trtllm_perf.tsv``) and in-flight
batching (NVIDIA's perf overview of release 0.11, every request queued at once;
``trtllm_ifb.tsv``) are predicted with the serving model on the catalog's 8-GPU nodes.
The runtime's host time per request is the one constant derived from these rows (from 24
of the in-flight-batching rows); everything else is catalog and library constants.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, InfeasibleError
from ..fabric import nvswitch_node
from .data import first_count, read_rows, read_tsv

__all__ = ["TRTLLM_HOST_PER_REQUEST_S", "TRTLLM_VOCAB_BUFFER_BYTES", "trtllm_attention",
           "trtllm_service", "trtllm_cases", "trtllm_ifb_cases"]

# TensorRT-LLM's in-flight batching runtime (C++ batch manager, 0.11-0.12, before the
# overlap scheduler): host work per request in each iteration while the GPU waits. An
# estimate derived, to the microsecond, as the value that zeroes the median error of the 24
# dense H100 FP8 rows of trtllm_ifb.tsv (14 us with H100 memory as 80e9 bytes, 15 us with
# the nvidia-smi capacity, 13 us since serving runs its GEMMs at the rate sustained at the
# power limit; experiments/validation/derive_trtllm_host_time.py re-derives it); the other
# 76 rows, MLPerf and the static-batch runs (which have no batch manager) are out of sample.
# The mechanism is documented (NVIDIA/TensorRT-LLM PR 10273 measures the PyTorch executor's
# host time per iteration at about 45 ms for about 1,500 requests on GB200), its size for
# the 2024 C++ runtime is not published.
TRTLLM_HOST_PER_REQUEST_S = 13e-6
# TensorRT-LLM's runtime buffers and decoder (logits, sampling workspaces; batch x padded
# vocabulary, allocated before the KV cache is sized from the free memory), bytes per batch
# slot and vocabulary entry on each GPU: its own log of the 0.11-0.12 executor
# (docs/source/performance/perf-benchmarking.md, 0.12.0.dev2024073000, Llama-2-7B FP8 on
# H100, max runtime batch 4096, vocabulary 32000): 'Allocated 1.14 GB GPU memory for
# runtime buffers', 'Allocated 4.35 GB GPU memory for decoder' (GB = 2^30 bytes in its
# MemoryCounters) = 5.49 GiB / (4096 x 32000) = 45 bytes (the few batch x sequence-length
# buffers among them counted in too)
TRTLLM_VOCAB_BUFFER_BYTES = 45.0
_IFB_NODES = {"H100": "DGX-H100", "H200": "HGX-H200", "A100": "DGX-A100"}
_IFB_POLICY = {"max_utilization": "recompute", "guaranteed_no_evict": "none"}


# Which decode-attention kernel a release ran (ServiceSpec.decode_attention). TensorRT-LLM
# up to v0.6.1 ran the generation phase with the masked multi-head attention kernel, one
# thread block per query head (decoderMaskedMultiheadAttentionTemplate.h: hi = blockIdx.x,
# hi_kv = hi / (num_heads / num_kv_heads)), so each block re-reads its shared KV head. The
# XQA kernel (one block per KV head; release notes 0.7.1 "MMHA optimization for MQA and
# GQA", on by default in 0.8.0 per docs/source/gpt_attention.md) reads it once.
def trtllm_attention(release: str) -> str:
    """The decode-attention kernel of a TensorRT-LLM release ("v0.6.1", "0.8.0"):
    ``per_query_head`` before 0.7, ``grouped`` (XQA) from 0.7 on."""
    major, minor = (int(x) for x in re.findall(r"\d+", release)[:2])
    return "per_query_head" if (major, minor) < (0, 7) else "grouped"


def trtllm_service(name: str, model: str, tp: int, replicas: int, precision: str, **kw):
    """A TensorRT-LLM service of catalog ``model`` on ``replicas`` engines of ``tp`` GPUs,
    with TensorRT-LLM's runtime buffers (TRTLLM_VOCAB_BUFFER_BYTES) unless ``kw`` sets
    them; the other keywords are :class:`~sim.workload.serving.ServiceSpec` fields."""
    from ..catalog import load_catalog
    from ..workload.serving import ServiceSpec

    m = load_catalog().get("models", model, file="inference.tsv", field=name)
    kw.setdefault("vocab_buffer_bytes", TRTLLM_VOCAB_BUFFER_BYTES)  # every row is TensorRT-LLM
    return ServiceSpec(name=name, model=m, tp=tp, replicas=replicas, precision=precision,
                       **kw)


def _static_row(cid: str, model: str, gpu: str, tp: int, batch: int, isl: int, osl: int,
                precision: str, measured: float, release: str, source: str) -> dict:
    """One TensorRT-LLM static-batch row (gptSessionBenchmark: one batch, prefill then
    decode to ``osl`` tokens, timed as a whole): output tokens/s per GPU."""
    from ..workload.serving import Lengths, simulate_service

    fp8 = precision.lower() == "fp8"
    attention = trtllm_attention(release)
    s = trtllm_service(cid, model, tp, 1, "fp8" if fp8 else "fp16", kv_bytes=1 if fp8 else 2,
                       static_batch=batch, max_batch=batch, arrival="all-at-once",
                       rate=float(batch), prompt=Lengths("fixed", isl),
                       output=Lengths("fixed", osl), decode_attention=attention)
    node = "DGX-H100" if gpu.upper().startswith("H100") else "DGX-A100"
    res = simulate_service(nvswitch_node(node), s, 1.0)
    pred = res.summary["throughput_tokens_per_s"] / tp
    return {"case": cid, "source": source, "status": "ok", "metric": "out tok/s/GPU",
            "measured": measured, "predicted": pred, "error_pct": (pred / measured - 1) * 100,
            "setting": f"{model} {gpu} {precision.upper()} TP{tp} batch {batch} "
                       f"{isl}/{osl}, TRT-LLM {release} ({attention} attention)"}


def trtllm_cases(shared: Path, extra: Path | None = None) -> pd.DataFrame:
    """TensorRT-LLM static-batch rows: those of inference.tsv and, with ``extra``, the
    further published rows of ``trtllm_perf.tsv`` (other releases, A100 and Llama 2 7B;
    sources per row).

    Parameters
    ----------
    shared : Path
        The folder holding ``inference.tsv``.
    extra : Path, optional
        The repository's ``experiments/validation`` folder; without it, only the rows of
        inference.tsv.
    """
    rows = []
    for r in read_tsv(shared, "inference.tsv"):
        if not r["case_id"].startswith("TRTLLM"):
            continue
        rel = re.search(r"v?(\d+\.\d+(?:\.\d+)?)", r["benchmark"]).group(1)
        gpu = r["system"].split("-")[0].split()[0]
        tp, batch = (int(x) for x in re.search(r"TP(\d+).*?batch (\d+)",
                                               r["parallelism_per_replica"]).groups())
        isl, osl = (int(x) for x in re.search(r"in=(\d+) out=(\d+)", r["scenario"]).groups())
        prec = r["precision"].split()[0]
        rows.append(_static_row(r["case_id"], "llama2-70b", gpu, tp, batch, isl, osl, prec,
                                first_count(r["value"]), rel, "inference.tsv"))
        m = re.search(r"TP(\d+) batch (\d+) in/out (\d+)/(\d+): ([\d,]+)", r["notes"])
        if m:  # a further row quoted in the notes column
            tp, batch, isl, osl = (int(x) for x in m.groups()[:4])
            rows.append(_static_row(r["case_id"] + "-notes", "llama2-70b", gpu, tp, batch,
                                    isl, osl, prec, first_count(m.group(5)), rel,
                                    "inference.tsv (notes)"))
    if extra is not None:
        for r in read_rows(extra, "trtllm_perf.tsv"):
            cid = (f"TRTLLM-{r['release']}-{r['gpu']}-{r['model']}-b{r['batch']}-"
                   f"{r['input']}/{r['output']}")
            rows.append(_static_row(cid, r["model"], r["gpu"], int(r["tp"]), int(r["batch"]),
                                    int(r["input"]), int(r["output"]), r["precision"],
                                    float(r["out_tok_s_per_gpu"]), r["release"],
                                    "trtllm_perf.tsv " + r["source"]))
    return pd.DataFrame(rows)


def trtllm_ifb_cases(extra: Path, host_s: float | None = None,
                     select: str | None = None) -> pd.DataFrame:
    """TensorRT-LLM in-flight batching rows (``trtllm_ifb.tsv`` of ``extra``, the
    repository's ``experiments/validation`` folder;
    NVIDIA's perf overview of release 0.11): every request queued at once, fixed lengths, the
    engine's max batch and max tokens per iteration, chunked context, the run's scheduler
    policy (MAX_UTILIZATION pauses and recomputes: our ``recompute``; GUARANTEED_NO_EVICT
    reserves whole sequences: our ``none``) and KV-cache memory fraction. Output tokens/s of
    one engine (tp GPUs). ``host_s``: the runtime's host time per request (default
    TRTLLM_HOST_PER_REQUEST_S); ``select``: only the rows whose case id matches this regular
    expression."""
    from ..workload.serving import Lengths, simulate_service

    name = "trtllm_ifb.tsv"
    rows = []
    for r in read_rows(extra, name):
        tp, isl, osl = int(r["tp"]), int(r["input"]), int(r["output"])
        fp8 = r["precision"] == "fp8"
        cid = (f"IFB-{r['release']}-{r['gpu']}-{r['model']}-{r['precision']}-tp{tp}-"
               f"{isl}/{osl}")
        if select is not None and not re.search(select, cid):
            continue
        try:
            policy = _IFB_POLICY[r["scheduler"]]
            node = _IFB_NODES[r["gpu"]]
        except KeyError as e:
            raise ConfigError(f"unknown value {e}", file=str(Path(extra) / name),
                              field=cid) from None
        s = trtllm_service(
            cid, r["model"], tp, 1, r["precision"], kv_bytes=1 if fp8 else 2,
            max_batch=int(r["max_batch"]), token_budget=int(r["max_num_tokens"]),
            chunked_prefill=True, kv_fraction=float(r["kv_fraction"]),
            preemption=policy, decode_attention=trtllm_attention(r["release"]),
            host_overhead_per_request=TRTLLM_HOST_PER_REQUEST_S if host_s is None
            else host_s,
            arrival="all-at-once", rate=float(r["requests"]),
            prompt=Lengths("fixed", isl), output=Lengths("fixed", osl))
        meas = float(r["out_tok_s"])
        try:
            res = simulate_service(nvswitch_node(node), s, 1.0)
        except InfeasibleError as e:
            rows.append({"case": cid, "release": r["release"], "status": f"infeasible: {e}",
                         "measured": meas, "predicted": math.nan, "error_pct": math.nan,
                         "setting": ""})
            continue
        pred = res.summary["throughput_tokens_per_s"]
        rows.append({"case": cid, "release": r["release"], "status": "ok",
                     "metric": "out tok/s (engine)", "measured": meas, "predicted": pred,
                     "error_pct": (pred / meas - 1) * 100,
                     "setting": f"{r['requests']} requests, batch {r['max_batch']}, "
                                f"{r['max_num_tokens']} tokens/iteration, {r['scheduler']}, "
                                f"preemptions {res.summary['preemptions']}"})
    return pd.DataFrame(rows)
