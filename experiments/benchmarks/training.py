"""Training-step simulation speed. Run: python experiments/benchmarks/training.py

Prints one table: wall time to simulate one step of each case (fabric loading timed
apart), with the flow network model, Numba warm.
"""

from __future__ import annotations

import time
from pathlib import Path

from sim.fabric import load_topology, rail_optimized
from sim.workload import TrainingWorkload, load_workload, simulate_training

ROOT = Path(__file__).resolve().parents[2]
CASES = [
    ("llama3-16k-roce.yaml", "llama3.1-405b-16k.yaml", None,
     "Llama 3.1 405B, 16,384 GPUs (TP8 PP16 DP128)"),
    ("dgx-h100-superpod-ib.yaml", "llama3-70b-1k.yaml", None,
     "Llama 3 70B, 1,024 GPUs (TP8 PP4 DP32)"),
    ("dgx-h100-superpod-ib.yaml", "gpt3-175b-1k.yaml", None,
     "GPT-3 175B, 1,024 GPUs (TP8 PP8 DP16, interleaved)"),
]


def main() -> None:
    # warm Numba on a small job
    small = rail_optimized(node="DGX-H100", servers=2, servers_per_unit=2, leaf="QM9700",
                           spine="QM9700", link="ib-ndr")
    from sim.catalog import load_catalog

    simulate_training(small, TrainingWorkload(
        name="warm", model=load_catalog().models["llama3-8b"], global_batch=4, micro_batch=1,
        seq_len=1024, tp=8, pp=1, dp=2))
    print(f"{'case':<52} {'load s':>7} {'simulate s':>10} {'transfers':>9} {'step s':>8} "
          f"{'MFU':>6}")
    for topo, wl, net, label in CASES:
        t0 = time.perf_counter()
        f = load_topology(ROOT / "topologies" / topo)
        w = load_workload(ROOT / "workloads" / wl)
        t1 = time.perf_counter()
        r = simulate_training(f, w, network=net or "flow")
        t2 = time.perf_counter()
        print(f"{label:<52} {t1 - t0:>7.2f} {t2 - t1:>10.2f} {r.events:>9,} "
              f"{r.step_time_s:>8.2f} {r.mfu * 100:>5.1f}%")


if __name__ == "__main__":
    main()
