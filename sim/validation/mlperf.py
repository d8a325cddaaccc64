"""MLPerf Inference v4.1 Llama 2 70B against NVIDIA's closed submissions (8x H100, 8x H200).

The systems are configured as NVIDIA's harness configures them (engines, batch, FP8, the
in-flight batching scheduler) and fed the data set's own prompt and reference output
lengths; the Offline query is simulated whole, the Server's highest rate that meets the
latency limits is searched by bisection over LoadGen's minimum duration. The runtime's
host time per request is the one derived from TensorRT-LLM's in-flight-batching rows.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..fabric import nvswitch_node
from .data import first_count, read_rows, read_tsv
from .inference import TRTLLM_HOST_PER_REQUEST_S, trtllm_service

__all__ = ["MLPERF_MIN_DURATION_S", "MLPERF_OFFLINE_RUN_SAMPLES", "MLPERF_TTFT_P99_S",
           "MLPERF_TPOT_P99_S", "MLPerfSystem", "MLPERF_SYSTEMS", "mlperf_prompt_lengths",
           "mlperf_output_lengths", "mlperf_service", "mlperf_offline", "mlperf_server",
           "mlperf_published", "mlperf_cases"]

# request that does not fit is paused and its context recomputed, our "recompute"), no
# chunked context (enableChunkedContext defaults to false), max_num_tokens 16384 (the
# builder's default). Latency limits (language/llama2-70b/mlperf.conf): p99 TTFT 2 s, p99
# TPOT 200 ms. Prompts: the data set's own 24,576 input lengths
# (experiments/validation/mlperf_llama2_70b_input_lengths.txt, mean 222.3). Outputs: mean
# 290.3 tokens/sample in this run (accuracy.txt: 7,134,577 tokens / 24,576), capped at 1,024
# (SUT.py max_new_tokens); the run's per-sample lengths are not published, so each sample
# takes its data-set reference output length
# (experiments/validation/mlperf_llama2_70b_output_lengths.txt, mean 218.9) scaled to the
# run's mean, paired with its own prompt.
# Both scenarios run for LoadGen's min_duration, 2,400 s in NVIDIA's configs (min_duration =
# 2400000 ms; mlperf_log_detail.txt: requested_min_duration_ms 2400000). The Offline run is
# one query of offline_expected_qps x min_duration x 1.1 samples (the log's
# samples_per_query: 200,640 for TP2x4 at 76), the data set repeated: its drain at the end is
# a small part of the run. A Server rate counts only if the run holds it that long: a rate a
# little above what the system sustains passes a 300 s run while its queue still builds.
MLPERF_MIN_DURATION_S = 2400.0
MLPERF_OFFLINE_RUN_SAMPLES = 200_640
MLPERF_TTFT_P99_S, MLPERF_TPOT_P99_S = 2.0, 0.200
_MLPERF_V41_ATTENTION = "grouped"  # TensorRT-LLM 0.12-era engines: XQA
_MLPERF_MAX_NEW_TOKENS = 1024


@dataclasses.dataclass(frozen=True)
class MLPerfSystem:
    """One MLPerf v4.1 llama2-70b system as NVIDIA configured it
    (closed/NVIDIA/configs/llama2-70b/{Offline,Server}/__init__.py)."""

    node: str  # catalog node of the 8-GPU server
    tp: int  # tensor_parallelism of each engine
    engines: int  # engines on the server (8 / tp)
    batch_offline: int  # gpu_batch_size, Offline
    batch_server: int  # gpu_batch_size, Server
    offline_samples: int  # the Offline query's samples_per_query (mlperf_log_summary.txt)


# H100_SXM_80GB_TP2x4 (DGX H100) and H200_SXM_141GBx8 (TP1 x 8: batch 806 in Offline, which
# it inherits from H200_SXM_141GBx1, and 896 in Server; its Offline query 274,560 =
# 104 x 2,400 x 1.1 samples)
MLPERF_SYSTEMS = {"H100": MLPerfSystem("DGX-H100", 2, 4, 896, 1024, MLPERF_OFFLINE_RUN_SAMPLES),
                  "H200": MLPerfSystem("HGX-H200", 1, 8, 806, 896, 274_560)}


def mlperf_prompt_lengths(extra: Path):
    """The MLPerf llama2-70b data set's input lengths
    (``extra / "mlperf_llama2_70b_input_lengths.txt"``), as an empirical distribution."""
    from ..workload.serving import Lengths, read_lengths

    v = read_lengths(Path(extra) / "mlperf_llama2_70b_input_lengths.txt")
    return Lengths("empirical", sum(v) / len(v), values=v)


def mlperf_output_lengths(extra: Path, mean: float | None = None):
    """The data set's reference output lengths (in the prompts' order; ``extra /
    "mlperf_llama2_70b_output_lengths.txt"``), optionally scaled to ``mean`` tokens per
    sample and capped at max_new_tokens, as an empirical distribution."""
    from ..workload.serving import Lengths, read_lengths

    v = read_lengths(Path(extra) / "mlperf_llama2_70b_output_lengths.txt")
    k = 1.0 if mean is None else mean * len(v) / sum(v)
    out = tuple(min(_MLPERF_MAX_NEW_TOKENS, max(1, round(x * k))) for x in v)
    return Lengths("empirical", sum(out) / len(out), values=out,
                   high=_MLPERF_MAX_NEW_TOKENS)


def mlperf_service(extra: Path, out_mean: float, batch: int, system: str = "H100", **kw):
    """The service of one MLPerf system at batch ``batch``, its outputs scaled to
    ``out_mean`` tokens per sample; ``kw`` sets the arrivals (``arrival``, ``rate``)."""
    sy = MLPERF_SYSTEMS[system]
    return trtllm_service(
        f"MLPerf llama2-70b {system}", "llama2-70b", sy.tp, sy.engines, "fp8",
        kv_bytes=1, max_batch=batch, kv_fraction=0.90, token_budget=16384,
        chunked_prefill=False, decode_attention=_MLPERF_V41_ATTENTION,
        host_overhead_per_request=TRTLLM_HOST_PER_REQUEST_S,
        prompt=mlperf_prompt_lengths(extra), output=mlperf_output_lengths(extra, out_mean),
        **kw)


def mlperf_offline(extra: Path, out_mean: float = 290.3, system: str = "H100") -> float:
    """Predicted Offline output tokens/s of the 8-GPU system: every sample queued at t=0."""
    from ..workload.serving import simulate_service

    sy = MLPERF_SYSTEMS[system]
    s = mlperf_service(extra, out_mean, sy.batch_offline, system, arrival="all-at-once",
                       rate=float(sy.offline_samples))
    return simulate_service(nvswitch_node(sy.node), s, 1.0).summary[
        "throughput_tokens_per_s"]


def mlperf_server(extra: Path, out_mean: float = 290.3, system: str = "H100",
                  duration_s: float = MLPERF_MIN_DURATION_S, steps: int = 6
                  ) -> tuple[float, dict]:
    """Highest Poisson rate (samples/s) whose p99 TTFT and p99 TPOT meet the MLPerf limits
    over a run of ``duration_s`` (bisection), and the summary at that rate; tokens/s = rate
    x mean output tokens. The search starts below the rate the system saturates at (every
    sample queued at once, the Server batch): no Server rate is sustained above it."""
    from ..workload.serving import simulate_service

    sy = MLPERF_SYSTEMS[system]
    fab = nvswitch_node(sy.node)
    # saturated: a quarter of the Offline query at the Server batch, queued at once (enough
    # to fill every slot; the margin covers its drain at the end)
    sat = mlperf_service(extra, out_mean, sy.batch_server, system, arrival="all-at-once",
                         rate=float(sy.offline_samples) / 4)
    hi = 1.1 * simulate_service(fab, sat, 1.0).summary["requests_per_s"]

    def run(rate):
        s = mlperf_service(extra, out_mean, sy.batch_server, system, arrival="poisson",
                           rate=rate)
        m = simulate_service(fab, s, duration_s, warmup_s=30.0).summary
        ok = m["ttft_p99_s"] <= MLPERF_TTFT_P99_S and m["tpot_p99_s"] <= MLPERF_TPOT_P99_S
        return ok, m

    lo, best = 0.5 * hi, {}
    ok, m = run(lo)
    if not ok:  # far from saturation already too slow: search from zero
        lo = 0.0
    else:
        best = m
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok, m = run(mid)
        if ok:
            lo, best = mid, m
        else:
            hi = mid
    return lo, best


def mlperf_published(shared: Path, extra: Path) -> list[dict]:
    """The published runs: DGX H100 from ``shared / "inference.tsv"``, H200 x8 from
    ``extra / "mlperf_v41_llama2_70b.tsv"`` (same fields)."""
    rec = {r["case_id"]: r for r in read_tsv(shared, "inference.tsv")}
    out = [{"system": "H100", "offline": rec["MLPINF41-H100x8-OFF"],
            "server": rec["MLPINF41-H100x8-SRV"], "file": "inference.tsv"}]
    more = {r["case_id"]: r for r in read_rows(extra, "mlperf_v41_llama2_70b.tsv")}
    out.append({"system": "H200", "offline": more["MLPINF41-H200x8-OFF"],
                "server": more["MLPINF41-H200x8-SRV"], "file": "mlperf_v41_llama2_70b.tsv"})
    return out


def _mlperf_row(source: str, case: str, metric: str, meas: float, pred: float,
                setting: str) -> dict:
    return {"case": case, "source": source, "status": "ok", "metric": metric,
            "measured": meas, "predicted": pred, "error_pct": (pred / meas - 1) * 100,
            "setting": setting}


def _mlperf_system(extra: Path, pub: dict) -> list[dict]:
    """One system's rows of :func:`mlperf_cases`."""
    from ..workload.serving import simulate_service

    system, off, srv, src = pub["system"], pub["offline"], pub["server"], pub["file"]
    sy = MLPERF_SYSTEMS[system]
    off_tok = first_count(off["value"])
    off_samples = first_count(off["value"].split("(", 1)[1])
    out_mean = off_tok / off_samples  # output tokens per sample in the measured run
    pred_off = mlperf_offline(extra, out_mean, system)
    rate, m = mlperf_server(extra, out_mean, system)
    rows = [_mlperf_row(src, off["case_id"], "tokens/s", off_tok, pred_off,
                        f"TP{sy.tp} x {sy.engines}, FP8, batch {sy.batch_offline}, "
                        f"{sy.offline_samples:,} samples; the data set's prompts (mean "
                        f"{mlperf_prompt_lengths(extra).mean:.0f} tokens) with their reference "
                        f"outputs scaled to the run's mean {out_mean:.1f}"),
            _mlperf_row(src, srv["case_id"], "tokens/s", first_count(srv["value"]),
                        rate * out_mean,
                        f"batch {sy.batch_server}: max rate {rate:.1f}/s over "
                        f"{MLPERF_MIN_DURATION_S:.0f} s at p99 TTFT "
                        f"{m.get('ttft_p99_s', math.nan):.2f} s, p99 TPOT "
                        f"{m.get('tpot_p99_s', math.nan) * 1e3:.0f} ms (limits 2 s, 200 ms)")]
    # like with like at the published rate: the latencies the run measured there
    at_rate = first_count(srv["value"].split("(", 1)[1])  # completed samples/s
    s = mlperf_service(extra, out_mean, sy.batch_server, system, arrival="poisson",
                       rate=at_rate)
    m_at = simulate_service(nvswitch_node(sy.node), s, MLPERF_MIN_DURATION_S,
                            warmup_s=30.0).summary
    stats = srv["latency_stats"]
    for label, key in (("p99 TTFT", "ttft_p99_s"), ("mean TTFT", "ttft_mean_s"),
                       ("p99 TPOT", "tpot_p99_s")):
        found = re.search(label + r"\s+([\d.]+)\s*ms", stats)
        if not found:
            raise ConfigError(f"no '{label} ... ms' in latency_stats {stats!r}",
                              file=src, field=srv["case_id"])
        rows.append(_mlperf_row(src, f"{srv['case_id']} {label}", f"{label} (ms)",
                                float(found.group(1)), m_at[key] * 1e3,
                                f"Poisson at the published {at_rate:g} samples/s"))
    return rows


def mlperf_cases(shared: Path, extra: Path) -> pd.DataFrame:
    """MLPerf v4.1 Offline and Server, 8x H100 (the acceptance case) and 8x H200 (out of
    sample), predicted from the data set's prompt lengths and each run's mean output length:
    Offline throughput, the highest Server rate that meets the latency limits over
    LoadGen's 2,400 s, and the Server latencies at the published rate. The systems are
    simulated side by side, one process each where the machine has the cores (each
    simulation is deterministic: the same rows either way).

    Parameters
    ----------
    shared : Path
        The folder holding ``inference.tsv`` (the DGX H100 runs).
    extra : Path
        The repository's ``experiments/validation`` folder (the H200 runs, the data set's
        lengths).
    """
    pubs = mlperf_published(shared, extra)
    one = functools.partial(_mlperf_system, extra)
    workers = min(len(pubs), os.cpu_count() or 1)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(one, pubs))
    else:
        parts = [one(p) for p in pubs]
    return pd.DataFrame([r for part in parts for r in part])
