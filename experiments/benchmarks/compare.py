"""Design-review speed, phase by phase. Run: python experiments/benchmarks/compare.py

For each bundled 1,024-GPU proposal of the README's main job: build the fabric, count and
price it (bill of materials + cost), simulate one GPT-3 175B training step (flow
network) and 30 s of Llama 3 70B serving; prints wall seconds per phase. The first row
includes Numba compilation (or loading it from the cache).
"""

from __future__ import annotations

import time
from pathlib import Path

from sim.cost import bill_of_materials, cost
from sim.errors import SimError
from sim.fabric import load_topology
from sim.workload import load_workload, simulate_training
from sim.workload.serving import load_service, simulate_service

ROOT = Path(__file__).resolve().parents[2]
PROPOSALS = ["dgx-h100-superpod-ib", "dgx-h100-superpod-2to1", "dgx-h100-superpod-rail-only",
             "dgx-h100-superpod-roce", "mi300x-roce", "gb200-nvl72-xdr"]


def main() -> None:
    print(f"{'proposal':<30} {'build':>6} {'cost':>6} {'train':>6} {'serve':>6}")
    total = time.perf_counter()
    for p in PROPOSALS:
        t = [time.perf_counter()]
        f = load_topology(ROOT / "topologies" / f"{p}.yaml")
        t.append(time.perf_counter())
        cost(f, None, bom=bill_of_materials(f))
        t.append(time.perf_counter())
        try:
            simulate_training(f, load_workload(ROOT / "workloads" / "gpt3-175b-1k.yaml",
                                               catalog=f.catalog), network="flow")
        except SimError:
            pass  # infeasible on this proposal (GB200 x 14 has 1,008 GPUs)
        t.append(time.perf_counter())
        simulate_service(f, load_service(ROOT / "workloads" / "llama3-70b-serve-16x.yaml",
                                         catalog=f.catalog), 30.0, warmup_s=3.0)
        t.append(time.perf_counter())
        d = [b - a for a, b in zip(t, t[1:], strict=False)]
        print(f"{p:<30} " + " ".join(f"{x:>6.2f}" for x in d))
    print(f"{'total':<30} {time.perf_counter() - total:>6.1f} s")


if __name__ == "__main__":
    main()
