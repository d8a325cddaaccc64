"""The engine: one object that owns simulated time for a run.

A :class:`Simulation` binds a fabric, a network model, the SimPy environment they share,
the run's random streams and a recorder, as SimPy's ``Environment`` binds ``process`` and
``timeout`` to itself. Jobs (a training job, an inference service, and later schedulers,
failure injectors, OCS controllers) are added to it, may start at any simulated time and
end when their work is done; they write tidy rows to the recorder, and
:meth:`Simulation.run` returns them as pandas DataFrames (:class:`Results`). Metrics are
pure functions of those rows (:mod:`sim.metrics`).

A job is anything with the small protocol of :class:`Job`: a ``name``, a ``kind``,
``start(sim)`` returning the SimPy process(es) that do its work, and ``finish(sim)``
returning its result once they are done.

Main assumption: every job of one simulation shares the one network model, so their
transfers contend for link capacity (max-min fair with the flow model); their GPUs are
their own (jobs interact only through the network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import simpy

from .errors import ConfigError
from .fabric.fabric import Fabric
from .network import NetworkModel, make_network

__all__ = ["Job", "Recorder", "Results", "Simulation", "warmup_for", "NETWORKS",
           "DEFAULT_NETWORK"]

NETWORKS = ("flow", "analytical")
DEFAULT_NETWORK = "flow"
WARMUP_FRACTION = 0.1  # of a service's arrival window, ...
WARMUP_MAX_S = 60.0  # ... at most this long


def warmup_for(duration_s: float) -> float:
    """The warm-up a service's measurements skip: the first 10% of its arrival window,
    at most 60 s (the one rule every command and the report use)."""
    return min(duration_s * WARMUP_FRACTION, WARMUP_MAX_S)


class Job(Protocol):
    """What a :class:`Simulation` runs.

    Attributes
    ----------
    name : str
        Unique within the simulation (rows of the recorder carry it).
    kind : str
        ``training``, ``service``, ...
    """

    name: str
    kind: str
    # optional: gpu_span, the [first, end) accelerator indices the job runs on (two jobs
    # of one simulation may not overlap)

    def start(self, sim: Simulation) -> list[simpy.Process]:
        """Start the job's processes on ``sim.env`` (now) and return them."""

    def finish(self, sim: Simulation) -> Any:
        """The job's result, once its processes are done; it may record rows."""


class Recorder:
    """Tidy rows written by jobs, by table name (``steps``, ``requests``, ``jobs``, ...).

    A row is a mapping of column to value; a whole block of rows may be added as a
    DataFrame (a service's per-request table)."""

    def __init__(self):
        self._rows: dict[str, list] = {}

    def add(self, table: str, row: dict) -> None:
        """Append one row to ``table``."""
        self._rows.setdefault(table, []).append(row)

    def add_frame(self, table: str, frame: pd.DataFrame) -> None:
        """Append the rows of ``frame`` to ``table``."""
        self._rows.setdefault(table, []).append(frame)

    def frame(self, table: str) -> pd.DataFrame:
        """The rows of ``table`` as one DataFrame (empty if none were written)."""
        parts = self._rows.get(table, [])
        frames = [p if isinstance(p, pd.DataFrame) else pd.DataFrame([p]) for p in parts]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def tables(self) -> list[str]:
        return list(self._rows)


@dataclass
class Results:
    """What a run produced.

    Attributes
    ----------
    results : dict
        Job name -> the job's own result object (``TrainingRun``, ``ServiceResult``, ...).
    jobs : DataFrame
        One row per job: name, kind, start and end (s), network model, seed, and the
        job's headline metrics.
    steps, requests : DataFrame
        Per training step and per request rows, with a ``job`` column.
    network : str
        The network model every job ran on.
    seed : int
    """

    results: dict
    jobs: pd.DataFrame
    steps: pd.DataFrame
    requests: pd.DataFrame
    network: str
    seed: int
    sim: Simulation = field(repr=False, default=None)

    def __getitem__(self, name: str):
        return self.results[name]

    def link_utilization(self, t0: float = 0.0, t1: float | None = None) -> pd.DataFrame:
        """Per-link bytes and utilization between ``t0`` and ``t1`` (default: the run)."""
        from .metrics import link_table

        net = self.sim.net
        t1 = self.sim.env.now if t1 is None else t1
        return link_table(self.sim.fabric, net.link_bytes(t0, t1), net.edge_capacity,
                          t1 - t0)


class Simulation:
    """One run on one fabric: SimPy time, a network model, random streams, a recorder.

    Parameters
    ----------
    fabric : Fabric
    network : {'flow', 'analytical'}
        The network model every job's transfers go through.
    seed : int
        Root of the run's random streams (:meth:`rng`).

    Attributes
    ----------
    env : simpy.Environment
        The clock and event queue; jobs run as its processes.
    net : NetworkModel
        Shared by every job.
    recorder : Recorder
        Rows written by the jobs.
    jobs : list
        Jobs in the order they were added.
    """

    def __init__(self, fabric: Fabric, network: str = DEFAULT_NETWORK, seed: int = 0):
        self.fabric = fabric
        self.network = network
        self.seed = int(seed)
        self.env = simpy.Environment()
        self.net: NetworkModel = make_network(network, self.env, fabric)
        self.recorder = Recorder()
        self.jobs: list = []
        self._seeds = np.random.SeedSequence(self.seed)
        self._procs: dict[str, list] = {}
        self._started: dict[str, simpy.Event] = {}
        self._span: dict[str, list] = {}
        self._results: dict[str, Any] = {}

    # -------------------------------------------------------------- SimPy bindings
    @property
    def now(self) -> float:
        return self.env.now

    def process(self, generator) -> simpy.Process:
        return self.env.process(generator)

    def timeout(self, delay: float, value=None) -> simpy.Event:
        return self.env.timeout(delay, value)

    def event(self) -> simpy.Event:
        return self.env.event()

    # -------------------------------------------------------------- random streams
    def rng(self, seed: int | None = None) -> np.random.Generator:
        """A random stream for a job: seeded by the job's own ``seed`` where it gives
        one (a service file's ``seed:``), else the next child of the run's
        ``SeedSequence`` (in the order streams are asked for)."""
        if seed is not None:
            return np.random.default_rng(seed)
        return np.random.default_rng(self._seeds.spawn(1)[0])

    # -------------------------------------------------------------- jobs
    def add(self, job, at: float = 0.0):
        """Add ``job``, to start at simulated time ``at`` (s, >= now). Returns the job."""
        if any(j.name == job.name for j in self.jobs):
            raise ConfigError(f"two jobs are named {job.name!r}", field="jobs")
        mine = getattr(job, "gpu_span", None)
        for other in self.jobs:
            theirs = getattr(other, "gpu_span", None)
            if mine and theirs and mine[0] < theirs[1] and theirs[0] < mine[1]:
                raise ConfigError(f"jobs {job.name!r} and {other.name!r} both use GPUs "
                                  f"{max(mine[0], theirs[0])}-{min(mine[1], theirs[1]) - 1}"
                                  " (jobs of one simulation share the network, not GPUs)",
                                  field="first_gpu")
        if at < self.env.now:
            raise ConfigError(f"job {job.name!r} added at {at} s, before now "
                              f"({self.env.now} s)", field="at")
        self.jobs.append(job)
        self._started[job.name] = self.env.event()
        self._procs[job.name] = []
        if at == self.env.now:
            self._launch(job)
        else:
            self.env.process(self._later(job, at - self.env.now))
        return job

    def _later(self, job, delay: float):
        yield self.env.timeout(delay)
        self._launch(job)

    def _launch(self, job) -> None:
        procs = list(job.start(self))
        self._procs[job.name] = procs
        self._span[job.name] = [self.env.now, None]
        self._started[job.name].succeed()
        if procs:
            self.env.process(self._watch(job, procs))
        else:
            self._span[job.name][1] = self.env.now

    def _watch(self, job, procs):
        yield simpy.AllOf(self.env, procs)
        self._span[job.name][1] = self.env.now

    def done(self, job) -> simpy.Event:
        """An event that fires when ``job`` has ended."""
        return self.env.process(self._until_done(job))

    def _until_done(self, job):
        yield self._started[job.name]
        procs = self._procs[job.name]
        if procs:
            yield simpy.AllOf(self.env, procs)

    # -------------------------------------------------------------- running
    def run(self, until: float | None = None) -> Results:
        """Run until every job has ended, or nothing is left to happen (a job that waits
        for ever, such as a request no replica can take, is stalled), or until simulated
        time ``until``; then collect the result of every job that started (a job still
        running has ``end_s`` NaN in the ``jobs`` table)."""
        if until is not None:
            self.env.run(until=until)
        elif self.jobs:
            target = simpy.AllOf(self.env, [self.done(j) for j in self.jobs])
            while not target.triggered and self.env.peek() != math.inf:
                self.env.step()
        results = {}
        for job in self.jobs:
            span = self._span.get(job.name)
            if span is None:
                continue  # not started yet
            if job.name not in self._results:
                res = self._results[job.name] = job.finish(self)
                row = {"job": job.name, "kind": job.kind, "start_s": span[0],
                       "end_s": math.nan if span[1] is None else span[1],
                       "network": self.network, "seed": self.seed}
                row.update(getattr(res, "metrics", dict)())
                self.recorder.add("jobs", row)
            results[job.name] = self._results[job.name]
        return Results(results, self.recorder.frame("jobs"), self.recorder.frame("steps"),
                       self.recorder.frame("requests"), self.network, self.seed, self)
