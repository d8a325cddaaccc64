"""Capacity-at-SLO search speed. Run: python experiments/benchmarks/capacity.py

The highest Poisson rate at which 16 replicas of Llama 3 70B (TP 8, BF16) on the 1,024-GPU
IB SuperPOD keep p99 TTFT within 2 s and p99 TPOT within 50 ms (the MLPerf Server method,
:func:`sim.workload.serving.capacity.capacity_at_slo`), over 2 seeds of short windows;
prints the rate, tokens/s, the limit that binds, $ per M output tokens at the proposal's
cost per GPU-hour, the bisection trace, runs and wall time.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from sim.cost import cost
from sim.fabric import load_topology
from sim.workload.serving import load_service
from sim.workload.serving.capacity import capacity_at_slo, replicas_for, usd_per_M_tokens

ROOT = Path(__file__).resolve().parents[2]


def main(duration_s: float = 20.0, seeds: int = 2, steps: int = 5) -> None:
    f = load_topology(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml")
    s = load_service(ROOT / "workloads" / "llama3-70b-serve-16x.yaml")
    s = dataclasses.replace(s, slo_ttft_s=2.0, slo_tpot_s=0.050)
    t0 = time.perf_counter()
    c = capacity_at_slo(f, s, duration_s=duration_s, seeds=seeds, steps=steps)
    wall = time.perf_counter() - t0
    m = c.summary
    usd_s_gpu = cost(f).attrs["usd_per_h"] / f.n_accelerators / 3600
    print(f"{s.name}: SLO p99 TTFT 2 s, p99 TPOT 50 ms; {seeds} seeds x {duration_s:.0f} s "
          f"windows, {steps} bisection steps")
    print(c.trace.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"{'rate/s':>8} {'per rep':>8} {'sat/s':>7} {'tok/s':>9} {'limit':>10} "
          f"{'TTFT p99 ms':>14} {'TPOT p99 ms':>14} {'$/Mtok':>7} {'runs':>5} {'wall s':>7}")
    print(f"{c.rate_rps:>8.1f} {c.per_replica_rps:>8.2f} {c.saturation_rps:>7.1f} "
          f"{c.tokens_per_s:>9,.0f} {c.limited_by:>10} "
          f"{m['ttft_p99_s_mean'] * 1e3:>7.0f}+-{m['ttft_p99_s_ci95'] * 1e3:<5.0f} "
          f"{m['tpot_p99_s_mean'] * 1e3:>7.1f}+-{m['tpot_p99_s_ci95'] * 1e3:<5.1f} "
          f"{usd_per_M_tokens(c, s.gpus, usd_s_gpu):>7.3f} {c.runs:>5} {wall:>7.1f}")
    print(f"replicas for 1,000 requests/s: {replicas_for(c, 1000.0)}")


if __name__ == "__main__":
    main()
