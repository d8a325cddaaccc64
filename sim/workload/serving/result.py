"""What a simulated service produced: one row per request, per-interval utilization, and
the summary figures (latency percentiles after the warm-up, throughput while requests
arrive, SLO attainment, busy and HBM-bandwidth utilization).

Main assumption: throughput is measured from the end of the warm-up to the last arrival
(the drain after it would dilute it); a batch that arrives at once is measured start to
end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ...metrics import latency_summary, slo_attainment, tokens_per_interval
from .spec import ServiceSpec

if TYPE_CHECKING:
    from .job import ServiceJob

__all__ = ["ServiceResult", "service_result"]


@dataclass
class ServiceResult:
    """Per-request table, per-interval utilization, and summary metrics."""

    service: ServiceSpec
    requests: pd.DataFrame
    intervals: pd.DataFrame
    summary: dict

    def as_dict(self) -> dict:
        return dict(self.summary)

    def metrics(self) -> dict:
        """Headline figures as flat columns (a recorder row)."""
        keys = ("requests", "throughput_tokens_per_s", "requests_per_s", "ttft_p50_s",
                "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "slo_attainment", "busy_fraction",
                "kv_transfer_mean_s", "kv_transfer_p99_s")
        return {k: self.summary[k] for k in keys if k in self.summary}


def request_status(job: ServiceJob) -> np.ndarray:
    """Per request: ``finished``, ``rejected: <reason>`` (turned away at admission) or
    ``unfinished`` (still in flight when the simulation ended)."""
    from .job import REJECT_REASONS

    st = np.where(np.isnan(job.done_at), "unfinished", "finished").astype(object)
    for k, why in enumerate(REJECT_REASONS, start=1):
        st[job.rejected == k] = f"rejected: {why}"
    return st


def request_rows(job: ServiceJob) -> pd.DataFrame:
    """One row per request: arrival, first token and finish (s from the service's start),
    lengths, replica, preemptions, status, TTFT, end-to-end latency and TPOT."""
    t0 = job.t0
    req = pd.DataFrame({"arrival_s": job.arr, "first_token_s": job.first_at - t0,
                        "finish_s": job.done_at - t0, "prompt_tokens": job.plen,
                        "output_tokens": job.olen, "replica": job.where,
                        "preemptions": job.preempt, "status": request_status(job)})
    req["ttft_s"] = req["first_token_s"] - req["arrival_s"]
    req["e2e_s"] = req["finish_s"] - req["arrival_s"]
    req["tpot_s"] = np.where(req["output_tokens"] > 1,
                             (req["finish_s"] - req["first_token_s"]) /
                             (req["output_tokens"] - 1).clip(lower=1), np.nan)
    return req


def interval_rows(job: ServiceJob, span: float) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Per-interval busy fraction, HBM utilization, KV peak, output tokens/s, finished
    requests; and the busy seconds and HBM bytes per interval."""
    t0, interval_s, k = job.t0, job.interval_s, len(job.groups)
    bins = np.arange(0.0, span + interval_s, interval_s)
    busy = np.zeros(len(bins) - 1)
    hbm = np.zeros(len(bins) - 1)
    kv = np.zeros(len(bins) - 1)
    n = len(busy)
    for _r, a, b, hb, kvt in job.busy_log:
        a -= t0
        b -= t0
        i, j = min(int(a // interval_s), n - 1), min(int(b // interval_s), n - 1)
        if i == j:
            busy[i] += b - a
            hbm[i] += hb
        else:  # an iteration across intervals: its time and bytes split by overlap
            edges = np.clip(np.arange(i, j + 2) * interval_s, a, b)
            edges[-1] = b
            share = np.diff(edges)
            busy[i:j + 1] += share
            hbm[i:j + 1] += hb * share / max(b - a, 1e-300)
        kv[i:j + 1] = np.maximum(kv[i:j + 1], kvt)
    per = interval_s * k
    acc = job.models[0].acc
    tok, done = tokens_per_interval(job.first_at - t0, job.done_at - t0, job.olen, bins)
    intervals = pd.DataFrame({"t_s": bins[:-1], "busy_fraction": busy / per,
                              "hbm_utilization": hbm / (acc.hbm_bandwidth_Bps * per),
                              "kv_peak_fraction": kv / job.models[0].kv_capacity_tokens,
                              "output_tokens_per_s": tok / interval_s,
                              "requests_finished": done})
    return intervals, busy, hbm


def service_result(job: ServiceJob, end: float) -> ServiceResult:
    """The result of ``job``'s run, which ended at simulated time ``end``."""
    s, t0, n = job.spec, job.t0, len(job.arr)
    arr, olen, warmup_s, interval_s = job.arr, job.olen, job.warmup_s, job.interval_s
    req = request_rows(job)
    span = max(end - t0, 1e-9)
    intervals, busy, hbm = interval_rows(job, span)
    k, acc = len(job.groups), job.models[0].acc
    steady = req[req["arrival_s"] >= warmup_s]
    gen = float(req["output_tokens"].sum())
    # throughput: while requests arrive, after the warm-up (the drain after the last
    # arrival would dilute it); a batch that arrives at once is measured start to end
    w0, w1 = warmup_s, float(np.max(arr)) if len(arr) else 0.0
    if w1 - w0 >= 2 * interval_s:
        win_tok, win_done = tokens_per_interval(job.first_at - t0, job.done_at - t0, olen,
                                                np.array([w0, w1]))
        thr, rps = float(win_tok[0]) / (w1 - w0), float(win_done[0]) / (w1 - w0)
    else:
        w0, w1 = 0.0, float(span)
        thr, rps = gen / span, n / span
    summ = {"service": s.name, "requests": int(n), "duration_s": float(span),
            "replicas": s.replicas, "tp": s.tp,
            "throughput_tokens_per_s": thr, "requests_per_s": rps,
            "throughput_window_s": [w0, w1],
            "kv_capacity_tokens": job.models[0].kv_capacity_tokens,
            "preemptions": int(job.preempt.sum())}
    st = req["status"]
    summ.update({"requests_finished": int((st == "finished").sum()),
                 "requests_rejected": int(st.str.startswith("rejected").sum()),
                 "requests_unfinished": int((st == "unfinished").sum())})
    for why, cnt in st[st.str.startswith("rejected")].value_counts().sort_index().items():
        summ[f"requests_{why.replace('rejected: ', 'rejected_')}"] = int(cnt)
    summ.update(latency_summary(steady))
    if s.slo_ttft_s is not None or s.slo_tpot_s is not None:
        summ["slo_attainment"] = slo_attainment(steady, s.slo_ttft_s, s.slo_tpot_s)
    if job.n_pre:
        v = job.kv_time[~np.isnan(job.kv_time)]
        summ["kv_transfer_mean_s"] = float(v.mean()) if len(v) else float("nan")
        summ["kv_transfer_p99_s"] = float(np.percentile(v, 99)) if len(v) else float("nan")
        req["prefill_replica"] = job.pre_of
    summ["busy_fraction"] = float(busy.sum() / (span * k))
    summ["hbm_utilization"] = float(hbm.sum() / (acc.hbm_bandwidth_Bps * span * k))
    return ServiceResult(s, req, intervals, summ)
