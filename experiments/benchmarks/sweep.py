"""Benchmark: a 1,000-point sweep of 1,024-GPU training steps (analytical network model).

The study: Llama 3 70B (TP 8) on the 1,024-GPU NDR InfiniBand SuperPOD, crossed over
10 global batches x 4 layouts (PP x DP) x 5 leaf-spine oversubscriptions x 5 GPU prices
= 1,000 points. Prints the points, the wall time, points per second per core and the
per-point overhead beyond the simulation itself (wall x workers / points minus the mean
time inside ``simulate_training``).

    python experiments/benchmarks/sweep.py [--points N] [--workers W]

``--points N`` runs the first N points of the grid (a quicker estimate).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sim.experiment import load_study, points, sweep  # noqa: E402


def study_file(d: Path) -> Path:
    doc = {"kind": "study", "name": "benchmark: 1,000 points, 1,024 GPUs",
           "topology": str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml"),
           "workload": str(ROOT / "workloads" / "llama3-70b-1k.yaml"),
           "network": "analytical",
           "axes": {
               "topology.params.oversubscription": [1, 2, 4, 8, 16],
               "workload.batch.global": [256 * k for k in range(1, 11)],
               "workload.parallelism": [
                   {"tp": 8, "pp": p, "dp": 128 // p, "zero": 1, "sequence_parallel": True}
                   for p in (1, 2, 4, 8)],
               "assumptions.prices.H100-SXM": [f"{k} USD" for k in
                                               (20000, 25000, 30000, 35000, 40000)],
           },
           "mode": "cross", "seeds": [0]}
    p = d / "bench.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=None)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        study = load_study(study_file(Path(d)))
        if args.points:
            import dataclasses
            keep = points(study)[:args.points]
            study = dataclasses.replace(study, mode="zip", axes={
                k: [p[k] for p in keep] for k in study.axes})
        n = len(points(study))
        t0 = time.perf_counter()
        df = sweep(study, out=Path(d) / "out", workers=args.workers, progress=True)
        wall = time.perf_counter() - t0
    ok = df[df.status == "ok"]
    sim_mean = float(df["sim_s"].mean())
    per_point = wall * args.workers / n
    print(f"points: {n} ({len(ok)} ok, {(df.status == 'infeasible').sum()} infeasible, "
          f"{(df.status == 'error').sum()} error) on {args.workers} worker(s)")
    print(f"wall time: {wall:.1f} s; {n / wall:.2f} points/s, "
          f"{n / wall / args.workers:.2f} points/s per core")
    print(f"per point (core-seconds): {per_point * 1e3:.1f} ms, of which simulate_training "
          f"{sim_mean * 1e3:.1f} ms; overhead {(per_point - sim_mean) * 1e3:.1f} ms "
          f"(mean wall_s inside the worker {df['wall_s'].mean() * 1e3:.1f} ms)")
    if n < 1000:
        print(f"extrapolated to 1,000 points: {wall * 1000 / n / 60:.1f} min")


if __name__ == "__main__":
    main()
