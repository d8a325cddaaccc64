"""A training job's traffic through the network model, compiled once per layout: the
pipeline hand-offs from stage to stage (and, interleaved, from the last stage back to the
first), each stage's data-parallel rings, its context-parallel K/V ring and its
expert-parallel all-to-all.

Data-parallel replicas are symmetric and folded: one compiled phase per stage carries the
link loads of every (dp, cp, tp) position at once, so one transfer stands for all of them.

Main assumption: DP groups run NCCL rings (NCCL's choice at these sizes), one ring per NIC
rail where a group has several GPUs per server.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...catalog import Protocol
from ...collectives.algorithms import PhaseSpec, pair_phase, ring_pairs
from ...collectives.timing import CompiledPhase, compile_phase, link_capacity
from ...fabric.fabric import Fabric
from .spec import TrainingWorkload

__all__ = ["JobPhases", "compile_job_phases", "cp_ring_spec", "ring_groups_phase"]


def ring_groups_phase(f: Fabric, ranks: list[str], groups: list[list[int]], unit: float,
                      steps: int, name: str) -> PhaseSpec:
    """NCCL rings within each group of rank indices (one data-parallel group per TP/CP
    rank), all at once: a group with several GPUs per server gets one ring per NIC rail,
    as NCCL's channels do (see :func:`sim.collectives.algorithms.ring_pairs`)."""
    src, dst, uni, hop = [], [], [], []
    h0 = 0
    for g in groups:
        (s_, d_, u_, h_), _ = ring_pairs(f, [ranks[i] for i in g], unit)
        idx = np.asarray(g)
        src.append(idx[np.asarray(s_, np.int64)])
        dst.append(idx[np.asarray(d_, np.int64)])
        uni.append(np.asarray(u_, float))
        hop.append(np.asarray(h_, np.int64) + h0)
        h0 += int(np.max(h_)) + 1 if len(h_) else 0
    return PhaseSpec(name, np.concatenate(src), np.concatenate(dst), np.concatenate(uni),
                     np.concatenate(hop), steps, [], True, True, None)


@dataclass
class JobPhases:
    """The compiled phases of one layout (None where there is no such traffic).

    Attributes
    ----------
    pp_fwd, pp_bwd : list
        Stage s -> s + 1 activations, and s + 1 -> s gradients, for s < pp - 1.
    pp_wrap, pp_wrap_bwd : CompiledPhase or None
        Interleaved: the last stage handing chunk c to stage 0's chunk c + 1, and back.
    dp : list
        Per stage: the data-parallel rings of every (cp, tp) position.
    ep : list
        Per stage: the expert-parallel all-to-all of every group.
    cp : list
        Per stage: every context-parallel rank sending its K/V to the next rank of its
        ring (Megatron-Core ring attention), all rings at once.
    proto : Protocol
        NCCL's Simple protocol, whose latencies the transfers carry.
    """

    pp_fwd: list
    pp_bwd: list
    pp_wrap: CompiledPhase | None
    pp_wrap_bwd: CompiledPhase | None
    dp: list
    ep: list
    cp: list
    proto: Protocol

    def dp_latency(self, k: int) -> float:
        """Start-up plus k - 1 network hops of a k-rank ring."""
        return self.proto.base_latency_s + (k - 1) * self.proto.hop_latency_net_s

    @property
    def pp_latency(self) -> float:
        return self.proto.base_latency_s + self.proto.hop_latency_net_s


def _pair(fabric: Fabric, a: list, b: list, policy: str, cap: np.ndarray):
    """Flows a[i] -> b[i] and back, compiled."""
    ranks = tuple(a + b)
    fwd = compile_phase(fabric, ranks, pair_phase(len(a), "pp", True), policy, cap)
    bwd = compile_phase(fabric, ranks, pair_phase(len(a), "pp-back", reverse=True), policy, cap)
    return fwd, bwd


def _dp_rings(w: TrainingWorkload, fabric: Fabric, stage_grid, policy: str, cap) -> object:
    ranks = list(stage_grid.ravel())  # index = (dp * cp + cp_i) * tp + tp_i
    groups = [[(d * w.cp + c) * w.tp + t for d in range(w.dp) for c in range(w.cp)]
              for t in range(w.tp)]
    k = w.dp * w.cp
    spec = ring_groups_phase(fabric, ranks, groups, (k - 1) / k, k - 1, "dp ring")
    return compile_phase(fabric, tuple(ranks), spec, policy, cap)


def _ep_all_to_all(w: TrainingWorkload, fabric: Fabric, stage_grid, policy: str, cap):
    """Every rank to every other rank of its expert-parallel group (consecutive
    data/context-parallel ranks of one TP rank), all groups at once."""
    ranks = list(stage_grid.ravel())  # index = (dp * cp + cp_i) * tp + tp_i
    src, dst = [], []
    for t in range(w.tp):
        for g0 in range(0, w.dp * w.cp, w.ep):
            members = [(g0 + i) * w.tp + t for i in range(w.ep)]
            src += [a for a in members for b in members if a != b]
            dst += [b for a in members for b in members if a != b]
    n = len(src)
    spec = PhaseSpec("ep all-to-all", np.asarray(src), np.asarray(dst),
                     np.full(n, 1.0 / (w.ep - 1)), np.arange(n), 1, [], True, False, None,
                     p2p=True)
    return compile_phase(fabric, tuple(ranks), spec, policy, cap)


def cp_ring_spec(w: TrainingWorkload, dp: int, tp: int) -> PhaseSpec:
    """Each rank of every context-parallel ring sends to the next (ring attention's K/V
    hand-on), for ``dp`` x ``tp`` rings of ``w.cp`` ranks indexed (dp * cp + cp_i) * tp +
    tp_i; one byte per byte sent."""
    src, dst = [], []
    for d in range(dp):
        for t in range(tp):
            for c in range(w.cp):
                src.append((d * w.cp + c) * tp + t)
                dst.append((d * w.cp + (c + 1) % w.cp) * tp + t)
    n = len(src)
    return PhaseSpec("cp ring", np.asarray(src), np.asarray(dst), np.ones(n), np.arange(n),
                     1, [], True, False, None)


def _cp_ring(w: TrainingWorkload, fabric: Fabric, stage_grid, policy: str, cap):
    ranks = list(stage_grid.ravel())  # index = (dp * cp + cp_i) * tp + tp_i
    return compile_phase(fabric, tuple(ranks), cp_ring_spec(w, w.dp, w.tp), policy, cap)


def compile_job_phases(w: TrainingWorkload, fabric: Fabric, grid: np.ndarray,
                       ep_bytes: list[float]) -> JobPhases:
    """Compile the job's phases on ``fabric`` for the rank ``grid`` [pp, dp, cp, tp];
    ``ep_bytes`` per stage (a stage without all-to-all bytes gets no EP phase)."""
    cap = link_capacity(fabric)
    policy = fabric.routing
    pp_fwd, pp_bwd = [], []
    for s in range(w.pp - 1):
        a, b = _pair(fabric, list(grid[s].ravel()), list(grid[s + 1].ravel()), policy, cap)
        pp_fwd.append(a)
        pp_bwd.append(b)
    wrap = wrap_b = None
    if w.vpp > 1 and w.pp > 1:
        wrap, wrap_b = _pair(fabric, list(grid[w.pp - 1].ravel()), list(grid[0].ravel()),
                             policy, cap)
    dp = [None if w.dp * w.cp == 1 else _dp_rings(w, fabric, grid[s], policy, cap)
          for s in range(w.pp)]
    ep = [None if w.ep == 1 or not ep_bytes[s] else
          _ep_all_to_all(w, fabric, grid[s], policy, cap) for s in range(w.pp)]
    cp = [None if w.cp == 1 else _cp_ring(w, fabric, grid[s], policy, cap)
          for s in range(w.pp)]
    return JobPhases(pp_fwd, pp_bwd, wrap, wrap_b, dp, ep, cp,
                     fabric.catalog.protocols["Simple"])
