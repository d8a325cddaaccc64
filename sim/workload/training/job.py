"""A training job on a :class:`~sim.engine.Simulation`: synchronous steps, each run as one
SimPy process per pipeline stage.

A stage runs its schedule (:mod:`.schedule`) op by op. A forward or backward op lasts its
compute plus its exposed TP time (:mod:`.stage_cost`) and whatever of its context-parallel
K/V ring outlasts the op's attention; that ring, expert-parallel all-to-alls (after each
forward and before each backward, or overlapped under the op's computation) and
activations and their gradients going from stage to stage are transfers through the
simulation's network model, so they contend with everything else on the fabric. A stage
waits for its own send to complete unless the interleaved schedule overlaps
pipeline send/recv (``overlap_p2p_comm``), as Megatron-Core's schedules do.
Gradients are reduce-scattered (distributed optimizer / ZeRO) or all-reduced in buckets
as the last micro-batch's backward produces them (1F1B), or per virtual chunk right after
its last backward (interleaved), as Megatron-Core's DDP does with ``overlap_grad_reduce``;
parameters are all-gathered under the first forward of each model chunk (ZeRO-1/2 with
``overlap_param_gather``), after the optimizer step without that overlap, or before each
layer's use (ZeRO-3/FSDP).

Main assumption: data-parallel replicas are symmetric and folded into one process per
stage whose transfers carry every replica's link loads; the optimizer step is HBM-bound.
"""

from __future__ import annotations

import math

import simpy

from ...compute import hbm_time, straggler_factor
from .comm import JobPhases, compile_job_phases
from .memory import check_memory
from .parallelism import rank_grid
from .result import TrainingResult, TrainingRun, training_result
from .schedule import grad_sync_points, pipeline_schedule
from .spec import TrainingWorkload, check
from .stage_cost import StageCost

__all__ = ["TrainingJob", "TrainingStep"]


class TrainingJob:
    """``steps`` synchronous training steps of ``workload``, one after the other.

    Parameters
    ----------
    workload : TrainingWorkload
    steps : int
    name : str, optional
        Defaults to the workload's name.

    The layout's costs and compiled phases are computed once, when the job starts, and
    reused by every step.
    """

    kind = "training"

    def __init__(self, workload: TrainingWorkload, steps: int = 1, name: str | None = None):
        self.workload = workload
        self.steps = steps
        self.name = name or workload.name
        self.step_results: list[TrainingResult] = []

    @property
    def gpu_span(self) -> tuple[int, int]:
        """[first, end) indices of the accelerators the job runs on."""
        w = self.workload
        return w.first_gpu, w.first_gpu + w.gpus

    def prepare(self, fabric) -> None:
        """Check the layout against ``fabric`` and its memory, and cost every stage."""
        w = self.workload
        check(w, fabric)
        self.grid = rank_grid(w, fabric)  # [pp, dp, cp, tp]
        self.acc = fabric.catalog.accelerators[fabric.graph.nodes[self.grid[0, 0, 0, 0]]
                                                ["model"]]
        self.mem, self.worst = check_memory(w, self.acc.hbm_capacity_B, self.acc.id)
        self.stages = [StageCost(w, fabric, s, list(self.grid[s, 0, 0, :]))
                       for s in range(w.pp)]
        self.phases = compile_job_phases(w, fabric, self.grid,
                                         [st.ep_bytes_fwd for st in self.stages])
        # the computation runs at the pace of the job's slowest GPU
        per_server = min(8, len(fabric.domains[fabric.domain_of[self.grid[0, 0, 0, 0]]]))
        self.straggler = straggler_factor(self.acc, w.gpus, per_server) if w.stragglers \
            else 1.0

    def start(self, sim) -> list[simpy.Process]:
        if not hasattr(self, "stages"):
            self.prepare(sim.fabric)
        return [sim.process(self._run(sim))]

    def _run(self, sim):
        for k in range(self.steps):
            step = TrainingStep(self, sim)
            yield simpy.AllOf(sim.env, step.start())
            r = step.result()
            self.step_results.append(r)
            sim.recorder.add("steps", {"job": self.name, "step": k, "start_s": step.t0,
                                       "end_s": step.t0 + r.step_time_s, **r.metrics()})

    def finish(self, sim) -> TrainingRun:
        return TrainingRun(self.name, self.step_results)


class TrainingStep:
    """One step of a :class:`TrainingJob`: its stage processes and their accounting."""

    def __init__(self, job: TrainingJob, sim):
        self.job = job
        self.sim = sim
        self.env = sim.env
        self.net = sim.net
        self.w: TrainingWorkload = job.workload
        self.ph: JobPhases = job.phases
        self.arrived: dict = {}  # (dir, virtual stage, micro-batch) -> event
        self.busy = {s: {"compute": 0.0, "tp": 0.0, "ep": 0.0, "cp": 0.0, "wait": 0.0,
                         "dp_exposed": 0.0, "optimizer": 0.0} for s in range(self.w.pp)}
        self.ends: dict[int, float] = {}
        self.t0 = self.env.now

    def start(self) -> list[simpy.Process]:
        self.t0 = self.env.now
        return [self.env.process(self._stage(s)) for s in range(self.w.pp)]

    def result(self) -> TrainingResult:
        j = self.job
        r = training_result(self.w, self.sim.fabric, j.acc, self.net, self.busy, self.ends,
                            self.t0, j.mem, j.worst)
        r.extra["straggler_factor"] = j.straggler  # compute includes this slowdown
        return r

    # ------------------------------------------------------------ transfers
    def _ev(self, key) -> simpy.Event:
        e = self.arrived.get(key)
        if e is None:
            e = self.arrived[key] = self.env.event()
        return e

    def _send(self, phase, nbytes: float, key):
        yield self.net.transfer(phase.transfer(nbytes, self.ph.pp_latency, "pp",
                                               group=("pp", id(self.net), id(phase))))
        self._ev(key).succeed()

    def _hand_off(self, s: int, phase, key):
        """Pass activations (or their gradients) to the next stage: through the network
        unless there is no next stage. Without p2p overlap (see
        :attr:`TrainingWorkload.overlap_p2p_comm`) the stage waits for its send."""
        if phase is None:
            self._ev(key).succeed()
            return
        send = self.env.process(self._send(phase, self.job.stages[s].activation_bytes, key))
        if not (self.w.overlap_p2p_comm and self.w.vpp > 1):
            yield send

    def _dp_sync(self, s: int, nbytes: float):
        ph = self.ph.dp[s]
        if ph is None:
            return
        k = self.w.dp * self.w.cp
        steps = 1 if self.w.zero >= 1 else 2  # reduce-scatter, or all-reduce = RS + AG
        for _ in range(steps):
            yield self.net.transfer(ph.transfer(nbytes, self.ph.dp_latency(k), "dp",
                                                group=("dp", id(self.net), id(ph))))

    def _dp_gather(self, s: int, nbytes: float):
        ph = self.ph.dp[s]
        yield self.net.transfer(ph.transfer(nbytes, self.ph.dp_latency(self.w.dp * self.w.cp),
                                            "dp-ag", group=("dp", id(self.net), id(ph))))

    def _ep_move(self, s: int, nbytes: float):
        ph = self.ph.ep[s]
        yield self.net.transfer(ph.transfer(nbytes, self.ph.dp_latency(2), "ep",
                                            group=("ep", id(self.net), id(ph))))

    def _cp_move(self, s: int, nbytes: float):
        ph = self.ph.cp[s]
        steps = self.job.stages[s].cp_steps
        lat = steps * self.ph.pp_latency  # one send/recv per ring hand-on
        yield self.net.transfer(ph.transfer(nbytes, lat, "cp",
                                            group=("cp", id(self.net), id(ph))))

    def _attention_under_cp(self, s: int, nbytes: float, attn: float):
        """``attn`` seconds of an op's attention while the CP ring moves ``nbytes``;
        returns the exposed CP time (what the ring outlasts the attention by)."""
        mv = self.env.process(self._cp_move(s, nbytes))
        yield self.env.timeout(attn)
        t = self.env.now
        yield mv
        return self.env.now - t

    def _op(self, s: int, total: float, nbytes: float, attn: float):
        """An op of ``total`` seconds (compute and exposed TP) whose attention overlaps
        the stage's CP ring moving ``nbytes``; returns the exposed CP time."""
        if self.ph.cp[s] is None or not nbytes:
            yield self.env.timeout(total)
            return 0.0
        a = min(attn, total)
        cp = yield from self._attention_under_cp(s, nbytes, a)
        yield self.env.timeout(total - a)
        return cp

    def _ep_exchange(self, s: int, nbytes: float, under=None):
        """The stage's all-to-all, exposed; or, overlapped (``under``: the process already
        moving it under the op's computation), only what outlasts the computation."""
        t = self.env.now
        yield under if under is not None else self.env.process(self._ep_move(s, nbytes))
        self.busy[s]["ep"] += self.env.now - t

    def _account(self, s: int, compute: float, tp: float, cp: float) -> None:
        b = self.busy[s]
        b["compute"] += compute
        b["tp"] += tp
        b["cp"] += cp

    # ------------------------------------------------------------ ops
    def _param_gather(self, s: int, kind: str, c: int, gathered: set):
        """The all-gather this op waits for, if any (a process), see the module doc."""
        w, st = self.w, self.job.stages[s]
        if self.ph.dp[s] is None:
            return None
        if w.zero >= 3:
            # ZeRO-3 / FSDP: this chunk's parameters are all-gathered before use
            # (prefetched: the gather overlaps the op, the op cannot end before it);
            # with full recomputation, backward gathers twice (the recomputed forward
            # and the backward itself), as DeepSpeed's checkpointed layers do
            times = 2 if (kind == "B" and w.recompute == "full") else 1
            return self.env.process(self._dp_gather(s, times * 2 * st.chunk_params[c]))
        if w.zero >= 1 and w.overlap_param_gather and kind == "F" and c not in gathered:
            # distributed optimizer: the updated bf16 parameters are all-gathered
            # during the first forward of each chunk (Megatron's overlap_param_gather;
            # in steady state, the previous step's update), which cannot end before
            # they have arrived
            gathered.add(c)
            return self.env.process(self._dp_gather(s, 2 * st.chunk_params[c]))
        return None

    def _forward(self, s: int, mb: int, c: int):
        w, st, env, P, V = self.w, self.job.stages[s], self.env, self.w.pp, self.w.vpp
        vs = c * P + s  # global virtual stage index of this chunk
        t0 = env.now
        if vs > 0:
            yield self._ev(("F", vs - 1, mb))
        self.busy[s]["wait"] += env.now - t0
        slow = self.job.straggler
        dur_c = (st.compute_fwd + (st.head_fwd if vs == V * P - 1 else 0.0)) * st.ep_slow * slow
        overlap = w.ep_comm_overlap and self.ph.ep[s] is not None
        under = env.process(self._ep_move(s, st.ep_bytes_fwd)) if overlap else None
        cp = yield from self._op(s, dur_c + st.tp_fwd, st.cp_bytes_fwd, st.cp_attn_fwd * slow)
        self._account(s, dur_c, st.tp_fwd, cp)
        if self.ph.ep[s] is not None:
            yield from self._ep_exchange(s, st.ep_bytes_fwd, under)
        last = vs == V * P - 1
        yield from self._hand_off(s, None if last else self.ph.pp_fwd[s] if s < P - 1 else
                                  self.ph.pp_wrap, ("F", vs, mb))

    def _backward(self, s: int, mb: int, c: int, buckets: bool, dp_done: list):
        """A backward op; with ``buckets``, the last one, whose gradients leave in buckets
        as it produces them (1F1B)."""
        w, st, env, P, V = self.w, self.job.stages[s], self.env, self.w.pp, self.w.vpp
        vs = c * P + s
        t0 = env.now
        if vs < V * P - 1:
            yield self._ev(("B", vs + 1, mb))
        self.busy[s]["wait"] += env.now - t0
        slow = self.job.straggler
        dur_c = (st.compute_bwd + (st.head_bwd if vs == V * P - 1 else 0.0)) * st.ep_slow * slow
        overlap = w.ep_comm_overlap and self.ph.ep[s] is not None
        under = env.process(self._ep_move(s, st.ep_bytes_bwd)) if overlap else None
        if self.ph.ep[s] is not None and under is None:
            yield from self._ep_exchange(s, st.ep_bytes_bwd)
        total = dur_c + st.tp_bwd
        if buckets:
            # Megatron-Core DDP buckets: max(40M, 1M x dp) parameters, leaving as the
            # op produces them (after the CP-overlapped attention, if any)
            cp, a = 0.0, 0.0
            if self.ph.cp[s] is not None and st.cp_bytes_bwd:
                a = min(st.cp_attn_bwd * slow, total)
                cp = yield from self._attention_under_cp(s, st.cp_bytes_bwd, a)
            bucket = max(w.grad_bucket_params, 1e6 * w.dp * w.cp)
            n_b = max(1, math.ceil(st.params / bucket))
            piece = (total - a) / n_b
            grad_bytes = w.grad_reduce_bytes * st.params
            for _ in range(n_b):
                yield env.timeout(piece)
                dp_done.append(env.process(self._dp_sync(s, grad_bytes / n_b)))
        else:
            cp = yield from self._op(s, total, st.cp_bytes_bwd, st.cp_attn_bwd * slow)
        self._account(s, dur_c, st.tp_bwd, cp)
        if under is not None:
            yield from self._ep_exchange(s, st.ep_bytes_bwd, under)
        yield from self._hand_off(s, None if vs == 0 else self.ph.pp_bwd[s - 1] if s > 0 else
                                  self.ph.pp_wrap_bwd, ("B", vs, mb))

    def _stage(self, s: int):
        w, st, env = self.w, self.job.stages[s], self.env
        ops = pipeline_schedule(w, s)
        last_b = max(i for i, op in enumerate(ops) if op[0] == "B")
        chunk_sync = grad_sync_points(ops, s)
        has_dp = self.ph.dp[s] is not None
        per_chunk = w.vpp > 1 and w.overlap_grad_reduce and has_dp
        dp_done: list = []
        gathered: set[int] = set()  # chunks whose parameters this step has all-gathered
        for i, (kind, mb, c) in enumerate(ops):
            gather = self._param_gather(s, kind, c, gathered)
            if kind == "F":
                yield from self._forward(s, mb, c)
            else:
                buckets = i == last_b and not per_chunk and w.overlap_grad_reduce and has_dp
                yield from self._backward(s, mb, c, buckets, dp_done)
                if per_chunk:
                    for cc in chunk_sync.get(i, []):
                        dp_done.append(env.process(
                            self._dp_sync(s, w.grad_reduce_bytes * st.chunk_params[cc])))
            if gather is not None:
                t = env.now
                yield gather
                self.busy[s]["dp_exposed"] += env.now - t
        yield from self._finish_stage(s, chunk_sync, per_chunk, dp_done)

    def _finish_stage(self, s: int, chunk_sync: dict, per_chunk: bool, dp_done: list):
        """Wait for the gradient reductions, then the optimizer step (and, without the
        overlap, the parameter all-gather)."""
        w, st, env = self.w, self.job.stages[s], self.env
        t_bwd_end = env.now
        if self.ph.dp[s] is not None:
            if not w.overlap_grad_reduce:
                dp_done.append(env.process(self._dp_sync(s, w.grad_reduce_bytes * st.params)))
            elif per_chunk:
                for cc in chunk_sync.get(-1, []):
                    dp_done.append(env.process(
                        self._dp_sync(s, w.grad_reduce_bytes * st.chunk_params[cc])))
            yield simpy.AllOf(env, dp_done)
        self.busy[s]["dp_exposed"] += env.now - t_bwd_end
        # optimizer step: read/write fp32 master, m, v and grads of the local shard
        shard = w.dp * w.cp if w.zero >= 1 else 1
        t_opt = hbm_time(st.acc, st.params / shard * 4 * 8) + 20e-6
        yield env.timeout(t_opt)
        self.busy[s]["optimizer"] += t_opt
        if w.zero >= 1 and self.ph.dp[s] is not None and not w.overlap_param_gather:
            t = env.now
            yield self.net.transfer(self.ph.dp[s].transfer(
                2 * st.params, self.ph.dp_latency(w.dp * w.cp), "dp-ag"))
            self.busy[s]["dp_exposed"] += env.now - t
        self.ends[s] = env.now
