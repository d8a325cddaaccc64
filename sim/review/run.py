"""Running a review's fleet on one proposal: every training job on its layout (given, or
planned for the proposal), every service at the highest load that meets its SLO, each on a
:class:`~sim.engine.Simulation` of the review's network model; then the proposal's bill of
materials and cost at the fleet's share-weighted busy fraction.

Main assumptions: a training job runs alone on its GPUs (one step stands for the run); a
service's capacity is measured on one replica (its replicas are independent behind the
router) unless it is disaggregated, when the whole service runs as specified.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..cost import bill_of_materials
from ..errors import SimError
from ..fabric import Fabric, load_topology, summarize
from ..report import tier_utilization
from ..workload.serving import load_service
from ..workload.serving.capacity import capacity_at_slo, latency_vs_load
from ..workload.training import TrainingResult, load_workload, simulate_training
from ..workload.training.plan import search
from .spec import Review, ServiceEntry, TrainingEntry

__all__ = ["ProposalRun", "ServiceOutcome", "TrainingOutcome", "count_proposal", "gpu_counts",
           "run_proposal"]


@dataclass
class TrainingOutcome:
    """A training job on one proposal: its layout, the simulated step, or why not."""

    entry: TrainingEntry
    workload: object = None  # the TrainingWorkload that ran (layout chosen)
    result: TrainingResult | None = None
    planned: bool = False
    plan_note: str = ""
    error: str | None = None
    ettr: float | None = None  # effective training time ratio under failures (30 days)

    @property
    def tokens_per_s_per_gpu(self) -> float | None:
        r = self.result
        return None if r is None else r.tokens_per_s / r.workload.gpus


@dataclass
class ServiceOutcome:
    """A service on one proposal: its capacity at the SLO, latency vs load, or why not."""

    entry: ServiceEntry
    spec: object = None
    capacity: object = None  # Capacity
    gpus: int = 0  # GPUs of the measured replicas
    load_curve: pd.DataFrame | None = None
    error: str | None = None

    @property
    def tokens_per_s_per_gpu(self) -> float | None:
        c = self.capacity
        if c is None or not self.gpus or not c.rate_rps:
            return None
        return c.tokens_per_s / self.gpus


@dataclass
class ProposalRun:
    """What a review measured on one proposal (economics are applied later)."""

    file: str
    fabric: Fabric
    bom: pd.DataFrame
    summary: dict
    training: list[TrainingOutcome] = field(default_factory=list)
    services: list[ServiceOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def name(self) -> str:
        return self.fabric.name

    def tier_util(self, job: str | None = None) -> dict:
        """Per link tier, (peak, mean) utilization over the step of training job ``job``
        (default: the first that ran); {} if none ran."""
        for t in self.training:
            if t.result is not None and (job is None or t.entry.name == job):
                df = tier_utilization(self.fabric, t.result.extra["link_utilization"])
                return {k: (float(r["max"]), float(r["mean"])) for k, r in df.iterrows()}
        return {}

    def busy(self, review: Review) -> float | None:
        """Share-weighted compute-busy fraction of the fleet's accelerators (the jobs that
        ran; None if none did)."""
        num = den = 0.0
        for t in self.training:
            if t.result is not None:
                st = t.result.stages
                num += t.entry.share * float(min(1.0, (st["compute"] /
                                                       t.result.step_time_s).mean()))
                den += t.entry.share
        for s in self.services:
            c = s.capacity
            if c is not None and c.rate_rps > 0:
                num += s.entry.share * float(c.busy_fraction)
                den += s.entry.share
        return num / den if den else None


# what a planned layout searches when a given one cannot run on the proposal
_LAYOUT = frozenset({"tp", "pp", "dp", "vpp", "micro_batch"})


def gpu_counts(n: int) -> list[int]:
    """GPU counts a planned job tries on an ``n``-accelerator proposal, largest first: all
    of them, then the 3-smooth multiples of 8 down to half (a batch of 2^a x 3^b sequences
    splits over them: 864 and 768 of a 1,008-GPU NVL72 proposal)."""
    smooth = sorted({2**a * 3**b for a in range(3, 21) for b in range(0, 6)
                     if n // 2 <= 2**a * 3**b < n}, reverse=True)
    return [n, *smooth]


GOODPUT_DAYS, GOODPUT_SEEDS = 30, 3


def _with_goodput(f: Fabric, out: TrainingOutcome) -> TrainingOutcome:
    """The job's effective training time ratio over 30 days with the bundled failure
    model (3 seeds; the simulated healthy step reused)."""
    if out.result is not None:
        from ..workload.goodput import load_failures, simulate_goodput

        m = load_failures()
        out.ettr = float(np.mean([simulate_goodput(
            f, out.result.workload, m, GOODPUT_DAYS * 86400.0, seed=s,
            step_s=out.result.step_time_s).summary["ettr"] for s in range(GOODPUT_SEEDS)]))
    return out


def _run_training(f: Fabric, e: TrainingEntry, network: str) -> TrainingOutcome:
    return _with_goodput(f, _run_training_step(f, e, network))


def _run_training_step(f: Fabric, e: TrainingEntry, network: str) -> TrainingOutcome:
    out = TrainingOutcome(e)
    try:
        w = load_workload(e.workload, e.overrides, catalog=f.catalog)
    except SimError as err:
        out.error = str(err)
        return out
    given_ok = not w.auto and w.gpus <= f.n_accelerators
    if given_ok and w.n_gpus is None:
        w.n_gpus = w.gpus  # on part of the fabric if it has more GPUs
    if e.layout == "given" or (e.layout == "given-or-auto" and given_ok):
        try:
            out.workload, out.result = w, simulate_training(f, w, network=network)
            return out
        except SimError as err:
            if e.layout == "given":
                out.error = str(err)
                return out
    res, errors = None, []
    for n in gpu_counts(f.n_accelerators):
        try:
            # the review needs the best layout only: rank two on the flow model
            res = search(f, dataclasses.replace(w, n_gpus=n, auto=w.auto | _LAYOUT), top=1,
                         rank=2)
            break
        except SimError as err:
            errors.append(f"{n} GPUs: {err}")
    if res is None:
        out.error = "no layout fits: " + "; ".join(errors[:2])
        return out
    out.workload, out.planned = res.best, True
    out.plan_note = res.why
    out.result = res.best_result
    return out


def _run_service(f: Fabric, e: ServiceEntry, review: Review) -> ServiceOutcome:
    out = ServiceOutcome(e)
    try:
        s = load_service(e.service, e.overrides, catalog=f.catalog)
        s = dataclasses.replace(s, slo_ttft_s=e.slo_ttft_s, slo_tpot_s=e.slo_tpot_s)
        if s.prefill_replicas is None:
            s = dataclasses.replace(s, replicas=1)  # capacity per replica
        out.spec, out.gpus = s, s.gpus
        out.capacity = capacity_at_slo(f, s, duration_s=review.duration_s,
                                       seeds=review.seeds, network=review.network,
                                       percentile=e.percentile)
        c = out.capacity
        if c.rate_rps > 0:
            rates = [c.rate_rps * x for x in (0.25, 0.5, 0.75, 1.0, 1.15)]
            out.load_curve = latency_vs_load(f, s, rates, duration_s=review.duration_s,
                                             seeds=1, network=review.network)
    except SimError as err:
        out.error = str(err)
    return out


def count_proposal(path) -> ProposalRun:
    """Build and count the proposal at ``path`` (nothing simulated yet)."""
    f = load_topology(path)
    return ProposalRun(str(path), f, bill_of_materials(f), summarize(f))


def run_proposal(path, review: Review, run: ProposalRun | None = None) -> ProposalRun:
    """Simulate the review's fleet on the proposal at ``path`` (built and counted by
    :func:`count_proposal` unless ``run`` already is)."""
    t0 = time.perf_counter()
    run = run or count_proposal(path)
    f = run.fabric
    run.training = [_run_training(f, e, review.network) for e in review.training]
    run.services = [_run_service(f, e, review) for e in review.services]
    run.wall_s = time.perf_counter() - t0
    return run
