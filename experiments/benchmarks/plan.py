"""Layout search speed and quality. Run: python experiments/benchmarks/plan.py [--top N]

Searches the layout of GPT-3 175B on the 1,024-GPU NDR InfiniBand SuperPOD
(workloads/gpt3-175b-auto.yaml on topologies/dgx-h100-superpod-ib.yaml), prints its
table with the candidate counts and wall time, then runs the GPT-3 175B layouts of
../shared/validation/training_cases.tsv (Narayanan et al. 2021 TP8 PP12, its ZeRO-3 row,
Korthikanti et al. 2022 TP8 PP8 interleaved) and the bundled gpt3-175b-1k.yaml layout on
the same fabric and batch, with the data-parallel size filling the 1,024 GPUs where the
layout divides them (otherwise it says why not), on the flow model, next to the best.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import re
import time
from pathlib import Path

from sim.errors import InfeasibleError
from sim.fabric import load_topology
from sim.workload.training import (
    check,
    format_plan,
    layout_label,
    load_workload,
    search,
    simulate_training,
)

ROOT = Path(__file__).resolve().parents[2]
VALIDATION = ROOT.parent / "shared" / "validation" / "training_cases.tsv"


def _int(s: str, default: int = 1) -> int:
    m = re.match(r"\s*(\d+)", s or "")
    return int(m.group(1)) if m else default


def validation_layouts(path: Path = VALIDATION) -> list[tuple[str, dict]]:
    """(case ids, layout fields) of the GPT-3 175B rows, one per distinct layout."""
    out: dict[tuple, list] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if "GPT-3" not in row["model"] or not row["params_B"].startswith("17"):
                continue
            v = row["VPP_or_interleave"]
            vpp = _int(re.sub(r"^\D*", "", v), 1) if "interleaved" in v else 1
            z = row["zero_fsdp"].lower()
            rc = row["act_recompute"].lower()
            lay = dict(tp=_int(row["TP"]), pp=_int(row["PP"]), cp=_int(row["CP"]),
                       ep=_int(row["EP"]), vpp=vpp, micro_batch=_int(row["micro_batch"]),
                       zero=3 if "zero-3" in z or "fsdp" in z else 0,
                       recompute="selective" if "selective" in rc else
                       "full" if "full" in rc else "none")
            out.setdefault(tuple(sorted(lay.items())), []).append(row["case_id"])
    return [("/".join(ids), dict(key)) for key, ids in out.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    t0 = time.perf_counter()
    f = load_topology(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml")
    w = load_workload(ROOT / "workloads" / "gpt3-175b-auto.yaml", catalog=f.catalog)
    t_load = time.perf_counter() - t0
    r = search(f, w, top=args.top)
    print(format_plan(r, top=args.top))
    print(f"(fabric and workload loaded in {t_load:.1f} s, apart from the search)")
    print()
    best_t = r.best_result.step_time_s
    gpus = f.n_accelerators
    fixed = [(f"{ids} (as published)", lay) for ids, lay in validation_layouts()]
    bundled = load_workload(ROOT / "workloads" / "gpt3-175b-1k.yaml", catalog=f.catalog)
    fixed.append(("workloads/gpt3-175b-1k.yaml", {k: getattr(bundled, k) for k in
                  ("tp", "pp", "cp", "ep", "vpp", "micro_batch", "zero", "recompute")}))
    print(f"{'layout':<44} {'step s':>8} {'MFU':>6} {'vs best':>8}  source")
    print(f"{layout_label(r.best):<44} {best_t:>8.3f} {100 * r.best_result.mfu:>5.1f}% "
          f"{1.0:>8.3f}  the search's best (flow)")
    slowest_ok = []
    for src, lay in fixed:
        mp = lay["tp"] * lay["pp"] * lay["cp"]
        desc = f"TP{lay['tp']} PP{lay['pp']}" + (f" VP{lay['vpp']}" if lay["vpp"] > 1 else "")
        if gpus % mp:
            print(f"{desc:<44} {'-':>8} {'-':>6} {'-':>8}  {src}: tp*pp*cp = {mp} does not "
                  f"divide {gpus:,} GPUs")
            continue
        c = dataclasses.replace(w, auto=frozenset(), dp=gpus // mp, **lay,
                                schedule="interleaved" if lay["vpp"] > 1 else "1f1b")
        try:
            check(c, f)
            res = simulate_training(f, c, network="flow")
        except InfeasibleError as e:
            print(f"{desc:<44} {'-':>8} {'-':>6} {'-':>8}  {src}: infeasible here: {e}")
            continue
        slowest_ok.append(res.step_time_s)
        print(f"{layout_label(c):<44} {res.step_time_s:>8.3f} {100 * res.mfu:>5.1f}% "
              f"{res.step_time_s / best_t:>8.3f}  {src}")
    if slowest_ok:
        ok = best_t <= min(slowest_ok) * (1 + 1e-9)
        print(f"\nAcceptance: the best layout ({best_t:.3f} s) is "
              f"{'at least as fast as' if ok else 'SLOWER than'} every validation layout "
              f"that runs at this scale (fastest {min(slowest_ok):.3f} s); search "
              f"{r.wall_time_s:.1f} s (limit 300 s).")


if __name__ == "__main__":
    main()
