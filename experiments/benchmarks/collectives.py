"""Collective and network-engine speed. Run: python experiments/benchmarks/collectives.py

Prints one table. Columns: "load" reads the YAML and builds the graph; "prep" compiles the fabric's flat
arrays and its Clos routing index (once per fabric, shared by every later collective);
"first" is the first collective_time on that fabric: routes, plan compilation and every
candidate algorithm (Numba already warm from calls on another fabric); "repeat" is the
same call again (plans cached), which is what each further size of a sweep pays.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sim.collectives import collective_time
from sim.fabric import load_topology, nvswitch_node, rail_optimized
from sim.fabric.clos_routes import ClosIndex
from sim.network.kernels import maxmin_rates

TOPO = Path(__file__).resolve().parents[2] / "topologies"
CASES = [
    ("dgx-h100-superpod-roce.yaml", 1024, "1,024 H100, 2-tier RoCE fat-tree, ECMP"),
    ("dgx-h100-superpod-ib.yaml", 1024, "1,024 H100, 2-tier NDR IB, adaptive"),
    ("llama3-16k-roce.yaml", 1024, "1,024 of 16,384 H100, 3-tier RoCE, ECMP"),
    ("llama3-16k-roce.yaml", 16384, "16,384 H100, 3-tier RoCE, ECMP"),
]


def main() -> None:
    # JIT warm-up on small fabrics: run every algorithm once so that each kernel's cached
    # machine code is loaded (pruning could otherwise skip a kernel until the timed call)
    small = rail_optimized(node="DGX-H100", servers=4, servers_per_unit=2, leaf="QM9700",
                           spine="QM9700", link="ib-ndr")
    for algo in ("ring", "tree", "nvls", "sharp"):
        collective_time(small, "all_reduce", 32, 2**30, algo)
    collective_time(nvswitch_node(), "all_to_all", 8, 2**20)
    print(f"{'case: 1 GiB all-reduce':<44} {'load s':>7} {'prep s':>7} {'first ms':>9} "
          f"{'repeat ms':>9} {'algorithm':>12} {'busbw GB/s':>10}")
    for fname, ranks, label in CASES:
        t0 = time.perf_counter()
        f = load_topology(TOPO / fname)
        tl = time.perf_counter()
        f.compile()  # once per fabric: flat arrays and the Clos routing index
        ClosIndex.of(f)
        t1 = time.perf_counter()
        r = collective_time(f, "all_reduce", ranks, 2**30)
        t2 = time.perf_counter()
        collective_time(f, "all_reduce", ranks, 2**30)
        t3 = time.perf_counter()
        print(f"{label:<44} {tl - t0:>7.2f} {t1 - tl:>7.2f} {(t2 - t1) * 1e3:>9.1f} "
              f"{(t3 - t2) * 1e3:>9.2f} "
              f"{r.algorithm + '/' + r.protocol:>12} {r.busbw_Bps / 1e9:>10.1f}")
    # max-min rate allocation, 10,000 transfers over 100,000 links
    rng = np.random.default_rng(0)
    nl, nt, per = 100_000, 10_000, 8
    indptr = np.arange(0, nt * per + 1, per, dtype=np.int64)
    links = np.concatenate([rng.choice(nl, per, replace=False) for _ in range(nt)])
    w = rng.uniform(0.1, 1.0, nt * per)
    cap = rng.uniform(1e9, 1e11, nl)
    maxmin_rates(indptr, links, w, cap, nl)  # warm
    best = min(_timed(maxmin_rates, indptr, links, w, cap, nl) for _ in range(5))
    print(f"\nmax-min fair rates, {nt:,} transfers x {per} links over {nl:,} links: "
          f"{best * 1e3:.1f} ms (best of 5)")


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
