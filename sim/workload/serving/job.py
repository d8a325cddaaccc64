"""An inference service on a :class:`~sim.engine.Simulation`: requests arrive over a
window, a router sends each to a replica (:mod:`.policies`), every replica batches them
(:mod:`.replica`), and the service ends once the window is over and every request has
finished. Disaggregated serving splits the replicas into prefill and decode pools: after a
prompt's prefill its KV cache (prompt x bytes per token, sharded over TP) travels from each
prefill GPU to the matching decode GPU as a transfer through the simulation's network
model, contending with whatever else the fabric carries.

Main assumption: a replica's GPUs are consecutive accelerators of one scale-up domain.
"""

from __future__ import annotations

import numpy as np
import simpy

from ...collectives.algorithms import pair_phase
from ...collectives.timing import compile_phase, link_capacity
from ...engine import warmup_for
from ...errors import InfeasibleError
from ...fabric.fabric import Fabric
from .arrivals import draw_arrivals
from .iteration import IterationModel
from .policies import make_router
from .replica import Replica
from .result import ServiceResult, service_result
from .spec import ServiceSpec

__all__ = ["ServiceJob", "replica_groups", "REJECT_REASONS"]

#: Why a request was turned away at admission (a request row's ``status`` is
#: ``finished``, ``rejected: <reason>`` or ``unfinished``: still in flight at the end).
REJECT_REASONS = ("prompt_over_token_budget", "prompt_over_context")


def replica_groups(s: ServiceSpec, f: Fabric) -> list[list[str]]:
    """The GPUs of each replica: ``tp`` consecutive accelerators from ``first_gpu``."""
    accs = f.accelerators[s.first_gpu:s.first_gpu + s.gpus]
    if len(accs) < s.gpus:
        raise InfeasibleError(f"{s.file or s.name}: replicas: {s.replicas} replicas x tp "
                              f"{s.tp} = {s.gpus} GPUs, the fabric has "
                              f"{f.n_accelerators - s.first_gpu} from GPU {s.first_gpu}")
    groups = [accs[i * s.tp:(i + 1) * s.tp] for i in range(s.replicas)]
    for g in groups:
        if len({f.domain_of[a] for a in g}) > 1:
            raise InfeasibleError(f"{s.file or s.name}: parallelism.tp: a tp={s.tp} replica "
                                  "would span two scale-up domains")
    return groups


class ServiceJob:
    """Serve ``spec`` for ``duration_s`` of arrivals (then drain what is left).

    Parameters
    ----------
    spec : ServiceSpec
    duration_s : float
        Arrival window (s).
    warmup_s : float, optional
        Requests arriving earlier are left out of the latency figures; default
        :func:`sim.engine.warmup_for` (10% of the window, at most 60 s).
    interval_s : float
        Width of the utilization intervals (s).
    name : str, optional
        Defaults to the service's name.
    """

    kind = "service"

    def __init__(self, spec: ServiceSpec, duration_s: float, *, warmup_s: float | None = None,
                 interval_s: float = 1.0, name: str | None = None):
        self.spec = spec
        self.duration_s = duration_s
        self.warmup_s = warmup_for(duration_s) if warmup_s is None else warmup_s
        self.interval_s = interval_s
        self.name = name or spec.name

    @property
    def gpu_span(self) -> tuple[int, int]:
        """[first, end) indices of the accelerators the replicas run on."""
        return self.spec.first_gpu, self.spec.first_gpu + self.spec.gpus

    def prepare(self, fabric: Fabric) -> None:
        """Place the replicas and cost their iterations (errors before simulated time)."""
        self.groups = replica_groups(self.spec, fabric)
        self.models = [IterationModel(self.spec, fabric, g) for g in self.groups]

    # ------------------------------------------------------------ start
    def start(self, sim) -> list[simpy.Process]:
        if not hasattr(self, "models"):
            self.prepare(sim.fabric)
        s, env = self.spec, sim.env
        self.sim, self.env, self.t0 = sim, env, env.now
        self.arr, self.plen, self.olen = draw_arrivals(s, self.duration_s, sim.rng(s.seed))
        self._check_lengths()
        self._init_state(len(self.arr))
        env.process(self._arrive())
        self.replicas = [Replica(self, r, m) for r, m in enumerate(self.models)]
        return [env.process(rep.run()) for rep in self.replicas]

    def _check_lengths(self) -> None:
        cap = self.models[0].kv_capacity_tokens
        max_len = self.plen + self.olen
        if (max_len > cap).any():
            s = self.spec
            raise InfeasibleError(f"{s.file or s.name}: a request of {int(max_len.max())} "
                                  f"tokens exceeds a replica's KV cache of {cap} tokens")

    def _init_state(self, n: int) -> None:
        """Per request and per replica state shared by the replicas."""
        k = len(self.groups)
        self.first_at = np.full(n, np.nan)
        self.done_at = np.full(n, np.nan)
        self.where = np.full(n, -1, np.int64)
        self.preempt = np.zeros(n, np.int64)
        self.queues: list[list[int]] = [[] for _ in range(k)]
        self.wake = [self.env.event() for _ in range(k)]
        self.outstanding = np.zeros(k, np.int64)
        self.busy_log: list[tuple] = []  # (replica, start, end, hbm_bytes, kv_tokens)
        self.n_pre = self.spec.prefill_replicas or 0
        self.kv_held = np.zeros(k, np.int64)  # KV tokens held per replica (in flight)
        self.prefilled = np.zeros(n, bool)  # arrived at a decode replica with its KV
        # preemption state per request: prefill target (prompt, plus the tokens generated
        # before a recompute preemption), tokens generated before it, and swapped-out KV
        self.tgt = self.plen.copy()
        self.counters = {"prefill_tokens": 0, "swapped_tokens": 0, "kv_tokens_left": 0}
        self.base = np.zeros(n, np.int64)
        self.sw_tok = np.zeros(n, np.int64)  # KV tokens in host memory (0: not swapped)
        self.sw_pre = np.zeros(n, np.int64)
        self.sw_made = np.zeros(n, np.int64)
        self.kv_time = np.full(n, np.nan)  # seconds the KV transfer took
        self.res_of = np.zeros(n, np.int64)  # preemption "none": tokens reserved
        self.pre_of = np.full(n, -1, np.int64)
        self.rejected = np.zeros(n, np.int8)  # REJECT_REASONS index + 1 (0: admitted)
        self._phases: dict = {}

    # ------------------------------------------------------------ processes
    def arrivals_over(self) -> bool:
        return self.env.now - self.t0 >= self.duration_s

    def all_done(self) -> None:
        """Once arrivals are over and every request has finished (or was rejected), wake
        idle replicas so that they return (in a shared environment nothing else would)."""
        if self.arrivals_over() and not (np.isnan(self.done_at) & (self.rejected == 0)).any():
            for e in self.wake:
                if not e.triggered:
                    e.succeed()

    def _arrive(self):
        env = self.env
        router = make_router(self.spec.router)
        pool = self.n_pre or len(self.groups)  # to prefill replicas when disaggregated
        for i in range(len(self.arr)):
            dt = self.arr[i] + self.t0 - env.now
            if dt > 0:
                yield env.timeout(dt)
            why = self._rejection(i)
            if why:
                self.rejected[i] = REJECT_REASONS.index(why) + 1
                self.all_done()
                continue
            r = router.pick(self.outstanding[:pool])
            self.where[i] = r
            self.outstanding[r] += 1
            self.queues[r].append(i)
            if not self.wake[r].triggered:
                self.wake[r].succeed()

    def _rejection(self, i: int) -> str:
        """Why request ``i`` is turned away at admission ("" if it is not), as vLLM does:
        a prompt longer than the model's context (max_model_len), or, without chunked
        prefill, longer than one iteration's token budget (max_num_batched_tokens)."""
        s = self.spec
        if self.plen[i] > s.model.max_seq_len:
            return "prompt_over_context"
        if not s.chunked_prefill and self.plen[i] > s.token_budget:
            return "prompt_over_token_budget"
        return ""

    def send_kv(self, i: int, r: int, d: int) -> None:
        """Start moving request ``i``'s KV from prefill replica ``r`` to decode replica
        ``d``."""
        self.env.process(self._kv_transfer(i, r, d))

    def _kv_transfer(self, i: int, r: int, d: int):
        """Prefill replica r's KV for request i goes, shard by shard, to decode replica d."""
        f = self.sim.fabric
        ph = self._phases.get((r, d))
        if ph is None:
            a, b = self.groups[r], self.groups[d]
            ph = self._phases[(r, d)] = compile_phase(f, tuple(a + b), pair_phase(len(a), "kv"),
                                                      f.routing, link_capacity(f))
        nbytes = self.plen[i] * self.models[r].kv_token / self.spec.tp
        proto = f.catalog.protocols["Simple"]
        t = self.env.now
        yield self.sim.net.transfer(ph.transfer(nbytes, proto.base_latency_s +
                                                proto.hop_latency_net_s, "kv"))
        self.kv_time[i] = self.env.now - t
        self.kv_held[r] -= int(self.plen[i])
        self.prefilled[i] = True
        self.queues[d].append(i)
        if not self.wake[d].triggered:
            self.wake[d].succeed()

    # ------------------------------------------------------------ result
    def finish(self, sim) -> ServiceResult:
        res = service_result(self, sim.env.now)
        res.summary.update(self.counters)
        res.summary.update({"network": sim.network, "warmup_s": self.warmup_s})
        rows = res.requests.assign(job=self.name)
        sim.recorder.add_frame("requests", rows)
        return res
