"""Metrics: pure functions of what a run recorded (link byte counters, per-request rows,
busy intervals) that turn it into utilization, throughput and latency figures.

Nothing here runs a simulation or imports SimPy; every function takes arrays or
DataFrames and returns numbers or DataFrames, so each is testable on rows made by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .fabric.fabric import Fabric

__all__ = ["latency_summary", "link_table", "slo_attainment", "tokens_per_interval"]


def link_table(fabric: Fabric, link_bytes: np.ndarray, capacity_Bps: np.ndarray,
               span_s: float, top: int | None = None) -> pd.DataFrame:
    """Links by utilization, busiest first: src, dst, tech, bytes, utilization.

    Parameters
    ----------
    link_bytes : ndarray
        Bytes each link of ``fabric.compile()`` carried in the window (B).
    capacity_Bps : ndarray
        Effective capacity of each link (B/s).
    span_s : float
        Length of the window (s).
    top : int, optional
        Keep only the busiest ``top`` links.
    """
    c = fabric.compile()
    util = link_bytes / (capacity_Bps * span_s) if span_s > 0 else link_bytes * 0
    order = np.argsort(util)[::-1]
    if top is not None:
        order = order[:top]
    return pd.DataFrame({"src": [c.node_names[c.link_src[i]] for i in order],
                         "dst": [c.node_names[c.link_dst[i]] for i in order],
                         "tech": [c.tech_names[c.tech[i]] for i in order],
                         "bytes": link_bytes[order], "utilization": util[order]})


def tokens_per_interval(first: np.ndarray, finish: np.ndarray, olen: np.ndarray,
                        bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output tokens and finished requests per interval of ``bins``: each request's first
    token at its first-token time, the others spread evenly until it finishes (its mean
    TPOT), integrated exactly over the intervals. Requests that have not finished (NaN)
    are left out."""
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


def latency_summary(requests: pd.DataFrame) -> dict:
    """p50 / p90 / p99 and mean of TTFT, TPOT and end-to-end latency (s) over the rows of
    ``requests`` (columns ``ttft_s``, ``tpot_s``, ``e2e_s``; NaN rows left out)."""
    out = {}
    for col, key in (("ttft_s", "ttft"), ("tpot_s", "tpot"), ("e2e_s", "e2e")):
        v = requests[col].dropna()
        for q in (50, 90, 99):
            out[f"{key}_p{q}_s"] = float(np.percentile(v, q)) if len(v) else math.nan
        out[f"{key}_mean_s"] = float(v.mean()) if len(v) else math.nan
    return out


def slo_attainment(requests: pd.DataFrame, ttft_s: float | None,
                   tpot_s: float | None) -> float:
    """Fraction of ``requests`` whose TTFT is within ``ttft_s`` and TPOT within ``tpot_s``
    (a one-token answer has no TPOT and meets any TPOT limit)."""
    ok = np.ones(len(requests), bool)
    if ttft_s is not None:
        ok &= requests["ttft_s"].to_numpy() <= ttft_s
    if tpot_s is not None:
        ok &= ~(requests["tpot_s"].to_numpy() > tpot_s)
    return float(ok.mean()) if len(ok) else math.nan
