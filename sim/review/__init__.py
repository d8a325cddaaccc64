"""Design reviews that decide: a fleet's mix of training jobs and services run on every
proposal, priced, ranked per headline metric with each proposal's bottleneck, and tested
against the assumptions that could change the answer.

``fabsim review reviews/X.yaml -o report/`` and ``sim.review.run_review(load_review(p))``.
The parts: :mod:`.spec` (the review file), :mod:`.run` (the fleet on one proposal),
:mod:`.economics`, :mod:`.verdict`, :mod:`.sensitivity`, :mod:`.figures`, :mod:`.report`.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import multiprocessing
import os
import time
from dataclasses import dataclass, field

import pandas as pd

from ..cost import check_parts
from .economics import economics
from .run import ProposalRun, count_proposal, run_proposal
from .sensitivity import flips, sensitivity
from .spec import Review, load_review
from .verdict import bottleneck, headline_metrics, ties, verdict

__all__ = ["Review", "ReviewResult", "load_review", "run_review"]


@dataclass
class ReviewResult:
    """Everything a review produced.

    Attributes
    ----------
    table : DataFrame
        One row per proposal: capex, power, $/h, and per class of the fleet tokens/s per
        GPU, $ per M tokens and tokens per kWh; the fleet's $ per M useful tokens.
    verdict : list of dict
        Per headline metric: best proposal, value, runner-up, margin, a sentence.
    bottlenecks : list of str
        Per proposal, where its time goes.
    ties : list of str
    sensitivity : DataFrame
        Per (assumption, bound, proposal, metric): value and baseline.
    flips : list of str
        Whether each metric's best proposal changes within the ranges.
    inputs : DataFrame
        What was simulated: per proposal and job the layout or service rate, GPUs,
        network model, seeds; the assumptions; the simulator version and date.
    """

    review: Review
    runs: list[ProposalRun]
    table: pd.DataFrame
    verdict: list[dict]
    bottlenecks: list[str]
    ties: list[str]
    sensitivity: pd.DataFrame
    flips: list[str]
    inputs: pd.DataFrame
    meta: dict = field(default_factory=dict)


def _layout(o) -> str:
    w = o.workload
    if w is None:
        return "-"
    parts = [f"TP{w.tp}", f"PP{w.pp}"] + ([f"VP{w.vpp}"] if w.vpp > 1 else []) + \
        [f"DP{w.dp}"] + ([f"CP{w.cp}"] if w.cp > 1 else []) + \
        ([f"EP{w.ep}"] if w.ep > 1 else []) + [f"ZeRO-{w.zero}", f"mb{w.micro_batch}",
                                               f"recompute {w.recompute}"]
    return " ".join(parts)


def input_rows(review: Review, runs: list[ProposalRun]) -> pd.DataFrame:
    """What was simulated, one row per (proposal, job)."""
    rows = []
    for i, run in enumerate(runs):
        for o in run.training:
            rows.append({"proposal": f"P{i + 1}", "job": o.entry.name, "kind": "training",
                         "file": str(o.entry.workload), "share": o.entry.share,
                         "gpus": o.workload.gpus if o.workload is not None else None,
                         "setting": _layout(o) + (" (planned)" if o.planned else ""),
                         "network": review.network, "seeds": 1,
                         "status": "ok" if o.result is not None else o.error})
        for o in run.services:
            c = o.capacity
            rows.append({"proposal": f"P{i + 1}", "job": o.entry.name, "kind": "service",
                         "file": str(o.entry.service), "share": o.entry.share,
                         "gpus": o.gpus or None,
                         "setting": (f"{o.spec.replicas} x TP{o.spec.tp} at "
                                     f"{c.rate_rps:.2f} req/s (highest within SLO)")
                         if c is not None else "-",
                         "network": review.network, "seeds": review.seeds,
                         "status": "ok" if c is not None else o.error})
    return pd.DataFrame(rows)


def _simulate(args):
    """One proposal in a worker process."""
    path, review, counted = args
    return run_proposal(path, review, counted)


def _simulate_all(review: Review, counted: list, workers: int, progress) -> list:
    """Every proposal, in order, on ``workers`` processes (1: in this process). Each
    proposal's numbers depend on nothing but its own inputs and seeds, so the worker count
    changes the wall time only."""
    jobs = list(zip(review.proposals, [review] * len(counted), counted, strict=True))
    n = len(jobs)
    if workers <= 1 or n == 1:
        out = []
        for i, j in enumerate(jobs):
            out.append(_simulate(j))
            if progress:
                progress(i + 1, n, out[-1].name)
        return out
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(min(workers, n), mp_context=ctx) as pool:
        futures = [pool.submit(_simulate, j) for j in jobs]
        for k, fut in enumerate(concurrent.futures.as_completed(futures)):
            if progress:
                progress(k + 1, n, fut.result().name)
        return [f.result() for f in futures]


def run_review(review: Review, progress=None, workers: int | None = None) -> ReviewResult:
    """Run ``review`` on every proposal (``progress(i, n, name)`` as each ends), on
    ``workers`` processes (default: the machine's cores, at most one per proposal)."""
    from .. import __version__

    t0 = time.perf_counter()
    counted = [count_proposal(p) for p in review.proposals]
    # a price or power of no part is a typo, not a no-op: say so before simulating
    check_parts(review.assumptions, [r.bom for r in counted])
    workers = workers if workers is not None else (os.cpu_count() or 1)
    runs = _simulate_all(review, counted, workers, progress)
    table = pd.DataFrame([economics(r, review) for r in runs])
    heads = headline_metrics(table)
    sens = sensitivity(review, runs, [m for m, _, _ in heads])
    res = ReviewResult(review, runs, table, verdict(table), [bottleneck(r) for r in runs],
                       ties(table, runs), sens, flips(sens, {m: lo for m, _, lo in heads}),
                       input_rows(review, runs))
    res.meta = {"simulator": f"fabsim {__version__}", "date": datetime.date.today().isoformat(),
                "network": review.network, "seeds": review.seeds,
                "duration_s": review.duration_s, "wall_s": time.perf_counter() - t0,
                "workers": workers,
                "review": review.file}
    return res
