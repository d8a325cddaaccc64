"""What one simulated training step produced: step time and its breakdown, throughput, MFU
and HFU, memory per GPU, per-stage accounting and the busiest links; and a job's run of
several steps.

Main assumption: the breakdown is read from the busiest stage, the one whose own work paces
the pipeline; what its own work does not explain is pipeline bubble and waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ...metrics import link_table
from .spec import TrainingWorkload
from .stage_cost import model_flops_per_step

__all__ = ["TrainingResult", "TrainingRun", "training_result"]


@dataclass
class TrainingResult:
    """One simulated step."""

    workload: TrainingWorkload
    step_time_s: float
    breakdown: dict
    tokens_per_s: float
    mfu: float
    hfu: float
    model_flops: float
    hardware_flops: float
    memory_per_gpu_bytes: float
    memory: dict
    hbm_capacity_bytes: float
    stages: pd.DataFrame
    links: pd.DataFrame
    network: str
    events: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"workload": self.workload.name, "model": self.workload.model.name,
                "gpus": self.workload.gpus, "step_time_s": self.step_time_s,
                "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "hfu": self.hfu,
                "memory_per_gpu_bytes": self.memory_per_gpu_bytes,
                "hbm_capacity_bytes": self.hbm_capacity_bytes,
                "breakdown_s": self.breakdown, "memory_bytes": self.memory,
                "network": self.network,
                "busiest_links": self.links.head(5).to_dict(orient="records")}

    def metrics(self) -> dict:
        """Headline figures as flat columns (a recorder row)."""
        out = {"gpus": self.workload.gpus, "step_time_s": self.step_time_s,
               "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "hfu": self.hfu}
        out.update({f"{k}_s": v for k, v in self.breakdown.items() if k != "critical_stage"})
        return out


@dataclass
class TrainingRun:
    """A training job's steps on a simulation."""

    name: str
    steps: list[TrainingResult]

    @property
    def step_time_s(self) -> float:
        """Mean step time (s)."""
        return sum(r.step_time_s for r in self.steps) / len(self.steps)

    def metrics(self) -> dict:
        """Means over the steps: step time, tokens/s, exposed DP and EP time."""
        if not self.steps:
            return {}
        r0, t = self.steps[0], self.step_time_s
        n = len(self.steps)
        return {"steps": n, "gpus": r0.workload.gpus, "step_time_s": t,
                "tokens_per_s": r0.tokens_per_s * r0.step_time_s / t, "mfu": r0.mfu *
                r0.step_time_s / t,
                "dp_exposed_s": sum(r.breakdown["dp_exposed"] for r in self.steps) / n,
                "ep_exposed_s": sum(r.breakdown["ep_exposed"] for r in self.steps) / n}


def breakdown_of(busy: dict, step: float) -> dict:
    """The step's breakdown from the busiest stage's accounting (s)."""
    crit = max(busy, key=lambda k: busy[k]["compute"] + busy[k]["tp"] + busy[k]["ep"] +
               busy[k]["cp"])
    b = busy[crit]
    breakdown = {"critical_stage": crit, "compute": b["compute"], "tp_exposed": b["tp"],
                 "ep_exposed": b["ep"],
                 "cp_exposed": b["cp"], "dp_exposed": b["dp_exposed"],
                 "optimizer": b["optimizer"],
                 "pp_bubble_and_wait": step - b["compute"] - b["tp"] - b["ep"] - b["cp"] -
                 b["dp_exposed"] - b["optimizer"]}
    if abs(breakdown["pp_bubble_and_wait"]) < 1e-9 * step:  # rounding, bubble-free step
        breakdown["pp_bubble_and_wait"] = 0.0
    return breakdown


def training_result(w, fabric, acc, net, busy, ends, start, mem, worst) -> TrainingResult:
    """The result of a step that started at ``start`` and whose stages ended at ``ends``."""
    P = w.pp
    assert len(ends) == P, f"pipeline schedule stalled: stages {sorted(set(range(P)) - set(ends))}"
    step = max(ends.values()) - start
    mflops, hflops = model_flops_per_step(w)
    gpus = w.gpus
    peak = acc.peak_flops.get(w.precision, acc.peak_flops["bf16"])
    tokens = w.global_batch * w.seq_len
    breakdown = breakdown_of(busy, step)
    lb = net.link_bytes(start, start + step)
    util = lb / (net.edge_capacity * step) if step > 0 else lb * 0
    links = link_table(fabric, lb, net.edge_capacity, step, top=10)
    stage_df = pd.DataFrame([{"stage": s, **busy[s], "end_s": ends[s] - start,
                              "memory_bytes": mem[s]["total"]} for s in range(P)])
    return TrainingResult(
        workload=w, step_time_s=step, breakdown=breakdown, tokens_per_s=tokens / step,
        mfu=mflops / (step * gpus * peak), hfu=hflops / (step * gpus * peak),
        model_flops=mflops, hardware_flops=hflops, memory_per_gpu_bytes=worst["total"],
        memory=worst, hbm_capacity_bytes=acc.hbm_capacity_B, stages=stage_df, links=links,
        network=net.name, events=len(net.transfers),
        extra={"link_utilization": util})  # every compiled link, in fabric.compile() order
