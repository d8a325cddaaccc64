"""A training job over weeks on a :class:`~sim.engine.Simulation`: it computes at its
healthy rate, writes checkpoints, and is interrupted by failures; each fail-stop failure
loses the work since the last checkpoint and costs detection, restart and a checkpoint
read (and, without hot spares, the repair); planned maintenance checkpoints first.

Main assumption: the healthy step time is one number for the run (it is computed once,
for the layout, by the step simulation) -- steps between events are not simulated one by
one; and the job restarts on the same layout (hot spares, or after the repair).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...engine import Simulation
from ...fabric.fabric import Fabric
from ..models import params_per_layer
from ..training import simulate_training
from ..training.spec import TrainingWorkload
from .spec import FailureModel, check

__all__ = ["GoodputJob", "GoodputResult", "simulate_goodput", "young_daly",
           "model_params", "job_units", "LOSS_KINDS"]

LOSS_KINDS = ("recompute", "detection", "restart", "checkpoint_read", "repair_wait",
              "checkpoint_write")


def young_daly(write_s: float, mtbf_s: float) -> float:
    """Young's optimum checkpoint interval sqrt(2 x checkpoint cost x MTBF) (s)."""
    return math.sqrt(2.0 * write_s * mtbf_s)


def model_params(w: TrainingWorkload) -> float:
    """Parameters of the model (every layer, experts included, and the embeddings)."""
    m = w.model
    total = sum(sum(params_per_layer(m, i)) for i in range(m.layers))
    return float(total + m.vocab * m.hidden * (1 if m.tied_embeddings else 2))


def job_units(f: Fabric, w: TrainingWorkload) -> dict:
    """What the failure classes scale with, for ``w`` on ``f``: its GPUs, its hosts, the
    scale-out switches and cables in proportion to its share of the accelerators, one job."""
    per_host = max(1, len(f.domains[0])) if f.domains else 1
    share = w.gpus / max(1, f.n_accelerators)
    return {"gpu": float(w.gpus), "host": float(math.ceil(w.gpus / per_host)),
            "network": f.derived("goodput.network_parts", lambda: _network_parts(f)) * share,
            "job": 1.0}


def _network_parts(f: Fabric) -> int:
    """Switches plus scale-out cables (each bundle's cables, one direction) of ``f``."""
    g = f.graph
    sw = sum(1 for _, d in g.nodes(data=True) if d.get("kind") == "switch")
    cab = sum(int(d.get("count", 1)) for u, v, d in g.edges(data=True)
              if f.catalog.links.get(d.get("tech")) is not None
              and f.catalog.links[d["tech"]].kind == "scale-out" and str(u) < str(v))
    return sw + cab


@dataclass
class GoodputResult:
    """Summary figures, one row per interruption, and the run's timeline segments."""

    summary: dict
    interruptions: pd.DataFrame
    timeline: pd.DataFrame


class GoodputJob:
    """``duration_s`` of a training job whose step takes ``step_s`` and moves
    ``tokens_per_step``, under the failure model ``m`` (rates per unit x ``units``)."""

    kind = "goodput"

    def __init__(self, m: FailureModel, duration_s: float, step_s: float,
                 tokens_per_step: float, units: dict, params: float, *,
                 interval_s: float | None = None, seed: int = 0, name: str = "goodput"):
        check(m)
        self.m, self.duration_s, self.step_s = m, duration_s, step_s
        self.tokens_per_step, self.units, self.seed, self.name = \
            tokens_per_step, units, seed, name
        self.rates = np.array([c.rate_per_unit_h * units[c.per] / 3600.0 for c in m.classes])
        self.rate = float(self.rates.sum())
        self.ckpt_bytes = params * m.bytes_per_param
        self.write_s = self.ckpt_bytes / m.write_Bps
        self.read_s = self.ckpt_bytes / m.read_Bps
        self.block_s = self.write_s * (m.async_blocking if m.mode == "async" else 1.0)
        self.mtbf_s = 1.0 / self.rate
        iv = interval_s if interval_s is not None else m.interval_s
        self.interval_s = iv if iv is not None else young_daly(self.block_s, self.mtbf_s)

    # ------------------------------------------------------------ the process
    def start(self, sim: Simulation):
        self.sim, self.rng = sim, sim.rng(self.seed)
        self.lost = dict.fromkeys(LOSS_KINDS, 0.0)
        self.productive = 0.0
        self.rows: list = []
        self.segments: list = []
        self.checkpoints = 0
        return [sim.process(self._run())]

    def _next_failure(self, now: float) -> float:
        return now + float(self.rng.exponential(self.mtbf_s))

    def _cause(self):
        return self.m.classes[int(self.rng.choice(len(self.rates), p=self.rates / self.rate))]

    def _segment(self, state: str, a: float, b: float) -> None:
        if b > a:
            self.segments.append((a, b, state))

    def _run(self):
        env, end = self.sim.env, self.duration_s
        since = 0.0  # computed since the last checkpoint
        nxt = self._next_failure(env.now)
        while env.now < end:
            t0 = env.now
            stop = min(t0 + self.interval_s - since, nxt, end)
            yield env.timeout(stop - t0)
            since += stop - t0
            self._segment("compute", t0, stop)
            if stop >= end:
                break
            if stop >= nxt:  # a failure while computing
                since, nxt = yield from self._interrupt(since)
                continue
            t1 = env.now  # a checkpoint is due
            stop = min(t1 + self.block_s, nxt, end)
            yield env.timeout(stop - t1)
            self.lost["checkpoint_write"] += stop - t1
            self._segment("checkpoint", t1, stop)
            if stop >= nxt and stop < end:  # failed during the write: it does not count
                since, nxt = yield from self._interrupt(since)
                continue
            self.productive += since
            since = 0.0
            self.checkpoints += 1
        self.productive += since  # work of the last stretch (no failure came)

    def _charge(self, down: dict, seconds: float) -> None:
        """Book ``seconds`` of a downtime to its kinds, in order (detection, restart, ...)."""
        for k, v in down.items():
            share = min(v, seconds)
            self.lost[k] += share
            seconds -= share

    def _interrupt(self, since: float):
        """Handle the failure at ``now``; yields the downtime; returns (0, next failure)."""
        env, m = self.sim.env, self.m
        c = self._cause()
        t = env.now
        if c.kind == "planned":  # checkpoint, then restart: no work lost
            self.productive += since
            down = {"restart": m.restart_s, "checkpoint_read": self.read_s,
                    "checkpoint_write": self.block_s}
        else:
            self.lost["recompute"] += since
            down = {"detection": m.detection_s, "restart": m.restart_s,
                    "checkpoint_read": self.read_s,
                    "repair_wait": c.repair_s if m.policy == "repair" else 0.0}
        self.rows.append({"time_s": t, "cause": c.name, "kind": c.kind, "per": c.per,
                          "lost_work_s": 0.0 if c.kind == "planned" else since,
                          "downtime_s": sum(down.values()), "during_restart": False})
        resume = t + sum(down.values())
        nxt = self._next_failure(t)
        while nxt < resume and nxt < self.duration_s:  # another failure while restarting
            c2 = self._cause()
            again = m.detection_s + m.restart_s + self.read_s
            self.rows.append({"time_s": nxt, "cause": c2.name, "kind": c2.kind,
                              "per": c2.per, "lost_work_s": 0.0, "downtime_s": again,
                              "during_restart": True})
            self._charge(down, nxt - t)  # the part of the first restart that happened
            down = {"detection": m.detection_s, "restart": m.restart_s,
                    "checkpoint_read": self.read_s}
            t = nxt
            resume = nxt + again
            nxt = self._next_failure(nxt)
        stop = min(resume, self.duration_s)
        self._charge(down, stop - t)
        self._segment("down", env.now, stop)
        yield env.timeout(stop - env.now)
        return 0.0, nxt

    # ------------------------------------------------------------ result
    def finish(self, sim: Simulation) -> GoodputResult:
        d = self.duration_s
        rows = pd.DataFrame(self.rows, columns=["time_s", "cause", "kind", "per",
                                                "lost_work_s", "downtime_s",
                                                "during_restart"])
        healthy = self.tokens_per_step / self.step_s
        summ = {"duration_s": d, "step_s": self.step_s, "healthy_tokens_per_s": healthy,
                "ettr": self.productive / d, "goodput_tokens_per_s":
                    self.productive / d * healthy,
                "interruptions": int(len(rows)),
                "unexpected": int((rows["kind"] == "fail-stop").sum()),
                "planned": int((rows["kind"] == "planned").sum()),
                "mtbf_s": self.mtbf_s, "checkpoint_interval_s": self.interval_s,
                "young_daly_interval_s": young_daly(self.block_s, self.mtbf_s),
                "checkpoint_bytes": self.ckpt_bytes, "checkpoint_write_s": self.write_s,
                "checkpoint_read_s": self.read_s, "checkpoints": self.checkpoints,
                "policy": self.m.policy, "checkpoint_mode": self.m.mode,
                "units": dict(self.units), "seed": self.seed}
        summ.update({f"lost_{k}_s": v for k, v in self.lost.items()})
        summ["by_cause"] = rows["cause"].value_counts().sort_index().to_dict()
        tl = pd.DataFrame(self.segments, columns=["start_s", "end_s", "state"])
        sim.recorder.add_frame("interruptions", rows.assign(job=self.name))
        return GoodputResult(summ, rows, tl)


def simulate_goodput(f: Fabric, w: TrainingWorkload, m: FailureModel, duration_s: float, *,
                     seed: int = 0, network: str = "flow", interval_s: float | None = None,
                     step_s: float | None = None) -> GoodputResult:
    """Run ``w`` on ``f`` for ``duration_s`` under the failure model ``m``: the healthy
    step from the step simulation (once, or ``step_s`` if given), then the weeks-long
    failure/checkpoint/restart process on its own :class:`~sim.engine.Simulation`."""
    if step_s is None:
        step_s = simulate_training(f, w, network=network).step_time_s
    sim = Simulation(f, network="analytical", seed=seed)
    job = GoodputJob(m, duration_s, step_s, float(w.global_batch * w.seq_len),
                     job_units(f, w), model_params(w), interval_s=interval_s, seed=seed)
    sim.add(job)
    return sim.run()[job.name]


SCAN = (0.3, 0.45, 0.6, 0.8, 1.0, 1.25, 1.6, 2.2, 3.0)  # x Young/Daly


def best_interval(f: Fabric, w: TrainingWorkload, m: FailureModel, duration_s: float,
                  seeds: list[int], step_s: float, factors: tuple = SCAN) -> dict:
    """The checkpoint interval that maximises goodput, from simulations at ``factors`` x
    Young/Daly with the same seeds at every interval (common random numbers): the best
    grid point, and the optimum of the fitted waste curve A/tau + B tau + C
    (tau* = sqrt(A/B), the form Young's analysis gives), next to Young/Daly itself."""
    probe = GoodputJob(m, duration_s, step_s, 1.0, job_units(f, w), model_params(w))
    yd = young_daly(probe.block_s, probe.mtbf_s)
    taus = np.array([yd * x for x in factors])
    ettr = np.array([np.mean([simulate_goodput(f, w, m, duration_s, seed=s, step_s=step_s,
                                               interval_s=float(t)).summary["ettr"]
                              for s in seeds]) for t in taus])
    waste = 1.0 - ettr
    a, b, _c = np.linalg.lstsq(np.stack([1 / taus, taus, np.ones_like(taus)], axis=1),
                               waste, rcond=None)[0]
    fit = math.sqrt(a / b) if a > 0 and b > 0 else math.nan
    return {"young_daly_s": yd, "fitted_best_s": fit, "grid_best_s": float(taus[ettr.argmax()]),
            "grid": pd.DataFrame({"interval_s": taus, "ettr": ettr})}
