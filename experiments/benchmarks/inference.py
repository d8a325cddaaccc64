"""Inference-serving simulation speed. Run: python experiments/benchmarks/inference.py

10 simulated minutes of Poisson arrivals at 100 requests/s onto 16 replicas of Llama 3
70B (TP 8) on the 1,024-GPU SuperPOD proposal; prints wall time and simulated requests
per wall second.
"""

from __future__ import annotations

import time
from pathlib import Path

from sim.fabric import load_topology
from sim.workload.serving import load_service, simulate_service

ROOT = Path(__file__).resolve().parents[2]


def main(minutes: float = 10.0) -> None:
    f = load_topology(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml")
    s = load_service(ROOT / "workloads" / "llama3-70b-serve-16x.yaml")
    t0 = time.perf_counter()
    r = simulate_service(f, s, minutes * 60, warmup_s=60.0)
    wall = time.perf_counter() - t0
    m = r.summary
    print(f"{'simulated':>10} {'requests':>9} {'wall s':>7} {'req/wall s':>10} "
          f"{'TTFT p50/p99 ms':>16} {'TPOT p50/p99 ms':>16} {'tok/s':>9}")
    print(f"{minutes:>8.0f} m {m['requests']:>9,} {wall:>7.1f} {m['requests'] / wall:>10,.0f} "
          f"{m['ttft_p50_s'] * 1e3:>7.0f}/{m['ttft_p99_s'] * 1e3:<8.0f} "
          f"{m['tpot_p50_s'] * 1e3:>7.1f}/{m['tpot_p99_s'] * 1e3:<8.1f} "
          f"{m['throughput_tokens_per_s']:>9,.0f}")


if __name__ == "__main__":
    main()
