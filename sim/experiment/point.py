"""One point of a sweep, run in a worker: build (or reuse) the fabric, simulate, price,
and return its row; the row is also written as a part file, atomically, so nothing finished
is lost when a sweep is killed.

Main assumption: a worker's fabric cache changes no number (a fabric is rebuilt from the
same topology text identically), so rows do not depend on which worker ran them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

from ..errors import InfeasibleError, SimError
from ..spec import Node, apply_overrides, load_yaml
from .study import SERVING_METRICS, Task

__all__ = ["run_point", "write_part", "read_parts"]

# --------------------------------------------------------------------------- one point
_FABRICS: dict = {}  # topology part of the resolved spec -> (fabric, bill of materials)
_FABRIC_CACHE = 4


def _fabric(t: Task):
    from ..cost import bill_of_materials
    from ..fabric import load_topology

    hit = _FABRICS.get(t.topo_key)
    if hit is None:
        f = load_topology(t.topology, list(t.overrides.get("topology", ())))
        hit = (f, bill_of_materials(f))
        if len(_FABRICS) >= _FABRIC_CACHE:
            _FABRICS.pop(next(iter(_FABRICS)))
        _FABRICS[t.topo_key] = hit
    return hit


def _assumptions(t: Task):
    from ..cost import load_assumptions, read_assumptions

    over = list(t.overrides.get("assumptions", ()))
    if not over:
        return load_assumptions(t.assumptions)
    if t.assumptions is not None:
        doc = load_yaml(t.assumptions)
    else:
        doc = Node({}, "assumptions", "")
    apply_overrides(doc.data, over, file=doc.file)
    return read_assumptions(doc, load_assumptions())


def _simulate(t: Task) -> tuple[dict, float]:
    """The point's metrics (every one it has) and the time spent simulating (s)."""
    from ..cost import check_parts, cost
    from ..engine import warmup_for
    from ..report import HOURS
    from ..workload import load_workload, simulate_training
    from ..workload.serving import load_service, simulate_service

    f, bom = _fabric(t)
    a = _assumptions(t)
    check_parts(a, [bom])  # a price of no part is a typo, not a no-op
    w = load_workload(t.workload, list(t.overrides.get("workload", ())), catalog=f.catalog) \
        if t.workload else None
    sp = load_service(t.service, list(t.overrides.get("service", ())), catalog=f.catalog) \
        if t.service else None
    if sp is not None:
        sp = dataclasses.replace(sp, seed=int(t.seed))
    sim_s = 0.0
    results, m = {}, {}
    if w is not None:
        t0 = time.perf_counter()
        tr = simulate_training(f, w, network=t.network)
        sim_s += time.perf_counter() - t0
        results["training"] = tr
    if sp is not None:
        t0 = time.perf_counter()
        sv = simulate_service(f, sp, t.duration_s, warmup_s=warmup_for(t.duration_s),
                              network=t.network)
        sim_s += time.perf_counter() - t0
        results["service"] = sv
    c = cost(f, results, a, bom=bom)
    by = dict(zip(c["category"], c["capex_USD"], strict=True))
    pw = dict(zip(c["category"], c["it_power_W"], strict=True))
    from ..cost import NETWORK
    m.update({"capex_total_USD": c.attrs["capex_USD"],
              "capex_network_USD": float(sum(by.get(k, 0.0) for k in NETWORK)),
              "network_power_W": float(sum(pw.get(k, 0.0) for k in NETWORK)),
              "it_power_W": c.attrs["it_power_W"],
              "facility_power_W": c.attrs["facility_power_W"],
              "usd_per_hour": c.attrs["usd_per_h"], "accelerators": f.n_accelerators,
              "accelerator_busy": c.attrs["busy"]})
    per_acc_s = c.attrs["usd_per_h"] / HOURS / f.n_accelerators
    if w is not None:
        gpus = tr.workload.gpus
        m.update({"step_time_s": tr.step_time_s, "mfu": tr.mfu, "hfu": tr.hfu,
                  "tokens_per_s": tr.tokens_per_s,
                  "usd_per_step": per_acc_s * gpus * tr.step_time_s,
                  "usd_per_M_train_tokens": per_acc_s * gpus / tr.tokens_per_s * 1e6,
                  "memory_per_gpu_bytes": tr.memory_per_gpu_bytes})
        m.update({f"step_{k}_s": v for k, v in tr.breakdown.items() if k != "critical_stage"})
    if sp is not None:
        s = sv.summary
        thr = s["throughput_tokens_per_s"]
        m.update({k: s.get(k, math.nan) for k in SERVING_METRICS if k in s})
        m["usd_per_M_served_tokens"] = per_acc_s * sv.service.gpus / thr * 1e6 if thr > 0 \
            else math.inf
    return {k: float(v) if v is not None else math.nan for k, v in m.items()}, sim_s


def run_point(t: Task) -> dict:
    """Run one resolved point and return its row (never raises for the point's own
    failures: an InfeasibleError is ``status='infeasible'``, any other error
    ``status='error'`` with the one-line reason). With ``t.part_dir`` the row is also
    written there as ``<spec_hash>.parquet`` (atomically) before returning."""
    t0 = time.perf_counter()
    status, error, metrics, sim_s = "ok", "", {}, 0.0
    try:
        metrics, sim_s = _simulate(t)
    except InfeasibleError as e:
        status, error = "infeasible", one_line(str(e))
    except SimError as e:
        status, error = "error", one_line(str(e))
    except Exception as e:  # a bug, not the point's fault: record it and go on
        status, error = "error", one_line(f"{type(e).__name__}: {e}")
    row = {"spec_hash": t.spec_hash, "status": status, "error": error,
           "version": t.version, **metrics,
           "wall_s": time.perf_counter() - t0, "sim_s": sim_s}
    if t.part_dir is not None:
        write_part(Path(t.part_dir), row)
    return row


def one_line(s: str) -> str:
    """``s`` on one line (whitespace folded): an error message as a table cell."""
    return " ".join(s.split())


def write_part(d: Path, row: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{row['spec_hash']}.{os.getpid()}.tmp"
    pq.write_table(pa.Table.from_pylist([row]), tmp)
    os.replace(tmp, d / f"{row['spec_hash']}.parquet")


def read_parts(d: Path, hashes: set) -> dict:
    import pyarrow.parquet as pq

    out = {}
    if not d.is_dir():
        return out
    for p in d.glob("*.parquet"):
        if p.stem in hashes:
            try:
                out[p.stem] = pq.read_table(p).to_pylist()[0]
            except Exception:  # a damaged part (not ours to explain): run it again
                continue
    return out
