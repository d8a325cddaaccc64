"""A service's figures: latency CDFs (TTFT, TPOT, end to end) and throughput over time.

Main assumption: matplotlib's object API (no pyplot), so the caller's backend is untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .result import ServiceResult

__all__ = ["plot_service"]


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
