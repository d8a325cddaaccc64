"""Several jobs on one fabric at once: training jobs and inference services side by side.

A mix file names a topology, a duration and jobs, each a training workload or a service
file placed on a range of GPUs. Every job runs twice: alone on the fabric (its own SimPy
environment and network model) and together with the others (one environment, one flow
network model, so their transfers share link capacity max-min fairly). The difference is
the interference: a training step's slowdown, a service's tail-latency inflation.

Main assumption: jobs interact only through the network (their GPUs are disjoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import simpy

from ..errors import InfeasibleError
from ..fabric import load_topology
from ..network import make_network
from ..spec import load_yaml
from .inference import load_service, simulate_service
from .training import load_workload, simulate_training

__all__ = ["MixJob", "load_mix", "run_mix"]


@dataclass
class MixJob:
    name: str
    kind: str  # training | service
    spec: object
    steps: int = 1


def load_mix(path: str | Path):
    """Read a mix file: (fabric, duration_s, jobs)."""
    doc = load_yaml(path)
    base = Path(doc.file).parent
    doc.string("kind", "mix", choices=("mix",))
    name = doc.string("name", Path(path).stem)
    fabric = load_topology(base / doc.string("topology"))
    duration = doc.quantity("duration", "time")
    raw = doc.raw("jobs")
    if not isinstance(raw, list) or not raw:
        raise doc.error("jobs", "expected a list of jobs (training: or service: files)")
    jobs = []
    used: list[tuple[int, int, str]] = []
    from ..spec import Node

    for k, item in enumerate(raw):
        j = Node(item, doc.file, f"jobs[{k}]") if isinstance(item, dict) else None
        if j is None:
            raise doc.error(f"jobs[{k}]", f"expected a mapping, got {item!r}")
        first = j.integer("first_gpu", 0, minimum=0)
        jname = j.string("name", f"job{k}")
        if "training" in j:
            over = [f"first_gpu={first}"]
            if "gpus" in j:
                over.append(f"gpus={j.integer('gpus', minimum=1)}")
            w = load_workload(base / j.string("training"), over, catalog=fabric.catalog)
            if w.n_gpus is None:
                w.n_gpus = w.gpus
            jobs.append(MixJob(jname, "training", w, j.integer("steps", 1, minimum=1)))
            span = (first, first + w.gpus)
        elif "service" in j:
            s = load_service(base / j.string("service"), [f"first_gpu={first}"],
                             catalog=fabric.catalog)
            jobs.append(MixJob(jname, "service", s))
            span = (first, first + s.gpus)
        else:
            raise j.error(None, "a job needs `training: file` or `service: file`")
        j.done()
        for a, b, other in used:
            if span[0] < b and a < span[1]:
                raise InfeasibleError(f"{doc.file}: jobs[{k}].first_gpu: GPUs {span[0]}-"
                                      f"{span[1] - 1} of {jname} overlap {other}'s {a}-{b - 1}")
        used.append((span[0], span[1], jname))
    doc.done()
    return name, fabric, duration, jobs


def _run(fabric, duration: float, jobs: list[MixJob]) -> dict:
    """Run ``jobs`` together on one environment and flow network; metrics per job."""
    env = simpy.Environment()
    net = make_network("flow", env, fabric)
    out: dict = {}
    finals = []
    waits = []
    for job in jobs:
        if job.kind == "service":
            procs, fin = simulate_service(fabric, job.spec, duration, env=env, net=net,
                                          defer=True, warmup_s=min(duration * 0.1, 30.0))
            finals.append((job, fin))
            waits += procs
        else:
            def loop(job=job):
                steps = []
                for _ in range(job.steps):
                    procs, fin = simulate_training(fabric, job.spec, env=env, net=net,
                                                   defer=True)
                    yield simpy.AllOf(env, procs)
                    steps.append(fin())
                out[job.name] = steps
            waits.append(env.process(loop()))
    env.run(until=simpy.AllOf(env, waits))
    for job, fin in finals:
        out[job.name] = fin()
    return out


def _metrics(job: MixJob, res) -> dict:
    if job.kind == "training":
        t = sum(r.step_time_s for r in res) / len(res)
        out = {"step_time_s": t, "tokens_per_s": res[0].tokens_per_s * res[0].step_time_s / t,
               "dp_exposed_s": sum(r.breakdown["dp_exposed"] for r in res) / len(res)}
        if job.spec.ep > 1:
            out["ep_exposed_s"] = sum(r.breakdown["ep_exposed"] for r in res) / len(res)
        return out
    m = res.summary
    out = {k: m[k] for k in ("ttft_p50_s", "ttft_p99_s", "tpot_p99_s",
                             "throughput_tokens_per_s") if k in m}
    for k in ("kv_transfer_mean_s", "kv_transfer_p99_s"):
        if k in m:
            out[k] = m[k]
    return out


def run_mix(path: str | Path) -> pd.DataFrame:
    """Each job alone and all together: one row per (job, metric) with the change."""
    name, fabric, duration, jobs = load_mix(path)
    alone = {}
    for job in jobs:
        alone[job.name] = _metrics(job, _run(fabric, duration, [job])[job.name])
    together = _run(fabric, duration, jobs)
    rows = []
    for job in jobs:
        mixed = _metrics(job, together[job.name])
        for k, v in alone[job.name].items():
            w = mixed.get(k)
            rows.append({"mix": name, "job": job.name, "kind": job.kind, "metric": k,
                         "alone": v, "in_mix": w,
                         "change_pct": (w / v - 1) * 100 if v else float("nan")})
    return pd.DataFrame(rows)

