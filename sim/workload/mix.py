"""Several jobs on one fabric at once: training jobs and inference services side by side.

A mix file names a topology, a duration and jobs, each a training workload or a service
file placed on a range of GPUs. Every job runs twice: alone on the fabric (a
:class:`~sim.engine.Simulation` of its own) and together with the others (one simulation
with the flow network model, so their transfers share link capacity max-min fairly). The
difference is the interference: a training step's slowdown, a service's tail-latency
inflation.

Main assumption: jobs interact only through the network (their GPUs are disjoint).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..engine import Simulation
from ..errors import InfeasibleError
from ..fabric import load_topology
from ..spec import Node, load_yaml
from .serving import ServiceJob, load_service
from .training import TrainingJob, load_workload

__all__ = ["load_mix", "run_mix"]


def load_mix(path: str | Path):
    """Read a mix file: (name, fabric, duration_s, jobs), the jobs not yet started
    (:class:`~sim.workload.training.TrainingJob`, :class:`~sim.workload.serving.ServiceJob`)."""
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
            jobs.append(TrainingJob(w, j.integer("steps", 1, minimum=1), name=jname))
            span = (first, first + w.gpus)
        elif "service" in j:
            s = load_service(base / j.string("service"), [f"first_gpu={first}"],
                             catalog=fabric.catalog)
            jobs.append(ServiceJob(s, duration, name=jname))  # warm-up: warmup_for(duration)
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


def _run(fabric, jobs: list) -> dict:
    """Run ``jobs`` together on one simulation (flow network); metrics per job name."""
    sim = Simulation(fabric, network="flow")
    for job in jobs:
        sim.add(job)
    res = sim.run()
    return {job.name: res[job.name].metrics() for job in jobs}


def _fresh(job):
    """A job not yet run, like ``job`` (a job runs once)."""
    if job.kind == "training":
        return TrainingJob(job.workload, job.steps, name=job.name)
    return ServiceJob(job.spec, job.duration_s, warmup_s=job.warmup_s,
                      interval_s=job.interval_s, name=job.name)


_MIX_METRICS = {"training": ("step_time_s", "tokens_per_s", "dp_exposed_s", "ep_exposed_s"),
                "service": ("ttft_p50_s", "ttft_p99_s", "tpot_p99_s",
                            "throughput_tokens_per_s", "kv_transfer_mean_s",
                            "kv_transfer_p99_s")}


def _compared(job, m: dict) -> dict:
    """The metrics a mix compares for ``job`` (EP exposure only where it has EP)."""
    keys = _MIX_METRICS[job.kind]
    if job.kind == "training" and job.workload.ep == 1:
        keys = keys[:3]
    return {k: m[k] for k in keys if k in m}


def run_mix(path: str | Path) -> pd.DataFrame:
    """Each job alone and all together: one row per (job, metric) with the change."""
    name, fabric, duration, jobs = load_mix(path)
    alone = {job.name: _compared(job, _run(fabric, [_fresh(job)])[job.name]) for job in jobs}
    together = _run(fabric, jobs)
    rows = []
    for job in jobs:
        mixed = _compared(job, together[job.name])
        for k, v in alone[job.name].items():
            w = mixed.get(k)
            rows.append({"mix": name, "job": job.name, "kind": job.kind, "metric": k,
                         "alone": v, "in_mix": w,
                         "change_pct": (w / v - 1) * 100 if v else float("nan")})
    return pd.DataFrame(rows)

