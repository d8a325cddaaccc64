"""Network models: how long transfers take on a fabric, on SimPy time.

A :class:`Transfer` is what the network moves: bytes per link (a collective phase, a
coflow, or a single flow's path) plus a fixed latency (software start-up, per-step and
path latencies). Two models share one interface, :meth:`NetworkModel.transfer`, which
returns a SimPy event that fires when the data has arrived:

* :class:`AnalyticalNetwork`: no contention between transfers. A transfer takes
  ``latency + max_l bytes_l / capacity_l`` whatever else is in flight.
* :class:`FlowNetwork`: concurrent transfers share link capacity max-min fairly. After a
  transfer's latency has elapsed it joins the fluid phase; rates are recomputed by the
  ``@njit`` progressive-filling kernel of :mod:`sim.network.kernels` at every arrival and
  completion. A transfer's rate is measured on its most loaded link, so alone it takes
  exactly the analytical time.

Capacities are effective: line rate times the link technology's protocol efficiency.
Both models record rate segments, from which :meth:`NetworkModel.link_bytes` gives the
bytes each link carried in any time window (per-link utilization over time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from ..fabric.fabric import Fabric
from .kernels import bottleneck_time, maxmin_rates

__all__ = ["Transfer", "NetworkModel", "AnalyticalNetwork", "FlowNetwork", "make_network",
           "effective_capacity"]


@dataclass
class Transfer:
    """Bytes per link to move, plus a fixed latency.

    Attributes
    ----------
    links : ndarray of int64
        Distinct link ids.
    nbytes : ndarray of float64
        Bytes carried by each of those links (per direction).
    latency_s : float
        Time not spent moving bytes at link rate: start-up, per-step overheads, path
        latencies (s).
    tag : str
        Free label (job, collective kind) kept in the records.
    group : hashable, optional
        Transfers with the same group carry bytes in the same proportions over the same
        links (e.g. the gradient buckets of one stage). Max-min gives them equal rates, so
        the flow model treats a group of k as one entry of k times the weight.
    cost : ndarray of float64, optional
        Link capacity each byte uses, per link (>= 1; default 1): traffic that runs a link
        below its effective rate, as in-network reduction or every GPU streaming to many
        peers at once does, uses more of it per byte carried. Byte counters count bytes.
    """

    links: np.ndarray
    nbytes: np.ndarray
    latency_s: float = 0.0
    tag: str = ""
    group: object = None  # transfers of one group have the same links and byte shares
    cost: np.ndarray | None = None

    def __post_init__(self):
        self.links = np.ascontiguousarray(self.links, dtype=np.int64)
        self.nbytes = np.ascontiguousarray(self.nbytes, dtype=np.float64)
        assert self.links.shape == self.nbytes.shape
        assert self.latency_s >= 0.0
        if self.cost is not None:
            self.cost = np.ascontiguousarray(self.cost, dtype=np.float64)
            assert self.cost.shape == self.links.shape and (self.cost >= 1.0).all()

    @property
    def load(self) -> np.ndarray:
        """Capacity-equivalent bytes per link: bytes x cost."""
        return self.nbytes if self.cost is None else self.nbytes * self.cost


def effective_capacity(fabric: Fabric) -> np.ndarray:
    """Per-link capacity (bytes/s) times the protocol efficiency of its technology: the
    compiled links, then the port links of their cable bundles (one cable each, see
    :mod:`sim.fabric.ports`), which ECMP flows load besides the bundle."""
    from ..fabric.ports import ecmp_ports

    c = fabric.compile()
    eff = np.array([fabric.catalog.links[t].protocol_efficiency if t in fabric.catalog.links
                    else 1.0 for t in c.tech_names])
    edge = c.capacity_Bps * eff[c.tech]
    p = ecmp_ports(fabric)
    if not len(p.parent):
        return edge
    return np.concatenate([edge, edge[p.parent] / p.count[p.parent]])


@dataclass
class _Segment:
    t0: float
    t1: float
    tid: int
    rate: float  # bytes/s on the transfer's most loaded link


@dataclass
class _Active:
    tid: int
    group: object
    links: np.ndarray
    weights: np.ndarray  # capacity use per link (bytes x cost) / max bytes
    remaining: float  # bytes left on the most loaded link
    event: simpy.Event
    start: float
    rate: float = 0.0
    since: float = 0.0  # `remaining` is as of this time; the rate has held since then
    eta: float = 0.0  # completion time at the current rate


class NetworkModel:
    """Common part of the network models: capacities, records, byte counters.

    Parameters
    ----------
    env : simpy.Environment
    fabric : Fabric
    """

    name = "base"

    def __init__(self, env: simpy.Environment, fabric: Fabric):
        self.env = env
        self.fabric = fabric
        self.capacity = effective_capacity(fabric)  # links, then bundle ports
        self.n_links = len(self.capacity)
        self.n_edges = len(fabric.compile().link_src)
        self.edge_capacity = self.capacity[:self.n_edges]
        self.transfers: list[Transfer] = []
        self.segments: list[_Segment] = []
        self.done: dict[int, tuple[float, float]] = {}  # tid -> (start, end)

    def time_alone(self, t: Transfer) -> float:
        """Duration of ``t`` with the network to itself (s)."""
        if len(t.links) == 0:
            return t.latency_s
        return t.latency_s + float(bottleneck_time(t.links, t.load, self.capacity))

    def transfer(self, t: Transfer) -> simpy.Event:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------- counters
    def link_bytes(self, t0: float = 0.0, t1: float | None = None) -> np.ndarray:
        """Bytes each compiled link carried between ``t0`` and ``t1`` (default: until now;
        the bundle ports' bytes are their bundle's, not counted twice)."""
        t1 = self.env.now if t1 is None else t1
        out = np.zeros(self.n_links)
        moved: dict[int, float] = {}  # bytes moved on each transfer's most loaded link
        for s in self.segments + self._open_segments():
            a, b = max(s.t0, t0), min(s.t1, t1)
            if b > a and s.rate > 0:
                moved[s.tid] = moved.get(s.tid, 0.0) + s.rate * (b - a)
        for tid, m in moved.items():
            tr = self.transfers[tid]
            np.add.at(out, tr.links, tr.nbytes * (m / tr.nbytes.max()))
        return out[:self.n_edges]

    def _open_segments(self) -> list[_Segment]:
        """Rate segments of transfers still in flight, not yet recorded."""
        return []

    def link_utilization(self, t0: float = 0.0, t1: float | None = None) -> np.ndarray:
        """Fraction of each link's effective capacity used between ``t0`` and ``t1``."""
        t1 = self.env.now if t1 is None else t1
        if t1 <= t0:
            return np.zeros(self.n_edges)
        return self.link_bytes(t0, t1) / (self.edge_capacity * (t1 - t0))


class AnalyticalNetwork(NetworkModel):
    """No contention between transfers: each takes its time alone."""

    name = "analytical"

    def transfer(self, t: Transfer) -> simpy.Event:
        tid = len(self.transfers)
        self.transfers.append(t)
        env = self.env
        start = env.now
        dur = self.time_alone(t)
        if len(t.links):
            bw = dur - t.latency_s
            peak = float(t.nbytes.max())
            if bw > 0:
                self.segments.append(_Segment(start + t.latency_s, start + dur, tid,
                                              peak / bw))
        self.done[tid] = (start, start + dur)
        return env.timeout(dur, value=dur)


class FlowNetwork(NetworkModel):
    """Max-min fair sharing of link capacity among concurrent transfers."""

    name = "flow"

    def __init__(self, env: simpy.Environment, fabric: Fabric):
        super().__init__(env, fabric)
        self.active: dict[int, _Active] = {}
        self._gen = 0
        self.recomputes = 0
        self._users = np.zeros(self.n_links, np.int32)  # active transfers on each link
        self._mark = np.zeros(self.n_links, np.int64)

    def transfer(self, t: Transfer) -> simpy.Event:
        tid = len(self.transfers)
        self.transfers.append(t)
        ev = self.env.event()
        start = self.env.now
        if len(t.links) == 0 or float(t.nbytes.max()) <= 0.0:
            self.done[tid] = (start, start + t.latency_s)
            self.env.process(self._after(t.latency_s, ev, t.latency_s))
            return ev
        self.env.process(self._join(tid, t, ev, start))
        return ev

    def _after(self, delay, ev, value):
        yield self.env.timeout(delay)
        ev.succeed(value)

    def _join(self, tid: int, t: Transfer, ev: simpy.Event, start: float):
        if t.latency_s > 0:
            yield self.env.timeout(t.latency_s)
        peak = float(t.nbytes.max())
        now = self.env.now
        a = _Active(tid, t.group, t.links, t.load / peak, peak, ev, start, 0.0, now)
        isolated = not self._users[t.links].any()
        self.active[tid] = a
        self._users[t.links] += 1
        if isolated:  # shares no link: the others' rates stand, this one runs alone
            a.rate = float(np.min(self.capacity[t.links] / a.weights))
            a.eta = now + a.remaining / a.rate
            self._schedule_next()
        else:
            self._reschedule()

    def _settle(self, a: _Active, now: float) -> None:
        """Bring ``a.remaining`` to ``now`` and record the segment at its current rate.
        Rates are piecewise constant, so this is needed only when a rate changes or the
        transfer ends."""
        dt = now - a.since
        if dt > 0 and a.rate > 0:
            a.remaining -= a.rate * dt
            self.segments.append(_Segment(a.since, now, a.tid, a.rate))
        a.since = now

    def _open_segments(self) -> list[_Segment]:
        now = self.env.now
        return [_Segment(a.since, now, a.tid, a.rate) for a in self.active.values()
                if now > a.since and a.rate > 0]

    def _reschedule(self) -> None:
        """Complete finished transfers, recompute max-min rates if the set of transfers
        sharing links changed, and schedule the next completion."""
        now = self.env.now
        # complete what has (numerically) finished
        finished = [a for a in self.active.values()
                    if a.remaining - a.rate * (now - a.since) <= 1e-9 * max(1.0, a.rate)]
        shared = False
        for a in finished:
            self._settle(a, now)
            del self.active[a.tid]
            self._users[a.links] -= 1
            shared = shared or bool(self._users[a.links].any())
            self.done[a.tid] = (a.start, now)
            a.event.succeed(now - a.start)
        if not self.active:
            return
        if finished and not shared:
            self._schedule_next()  # the finished ones shared no link: other rates stand
            return
        # one kernel entry per group of identical transfers (weight x members)
        entries: dict = {}
        for a in self.active.values():
            key = ("t", a.tid) if a.group is None else ("g", a.group)
            entries.setdefault(key, []).append(a)
        groups = list(entries.values())
        indptr = np.zeros(len(groups) + 1, np.int64)
        indptr[1:] = np.cumsum([len(g[0].links) for g in groups])
        links = np.concatenate([g[0].links for g in groups])
        weights = np.concatenate([g[0].weights * len(g) for g in groups])
        # the kernel works on the links in use only (compacted with a mark array)
        mark = self._mark
        mark[links] = 1
        used = np.flatnonzero(mark)
        mark[used] = np.arange(len(used))
        local = mark[links]
        mark[used] = 0
        rates = maxmin_rates(indptr, local, weights, self.capacity[used], len(used))
        self.recomputes += 1
        for g, r in zip(groups, rates, strict=True):
            r = float(r)
            for a in g:
                if r != a.rate:  # settle at the old rate, then switch
                    self._settle(a, now)
                    a.rate = r
                    a.eta = now + a.remaining / r
        self._schedule_next()

    def _schedule_next(self) -> None:
        nxt = min(a.eta for a in self.active.values()) - self.env.now
        self._gen += 1
        self.env.process(self._wake(self._gen, nxt))

    def _wake(self, gen: int, delay: float):
        yield self.env.timeout(max(delay, 0.0))
        if gen != self._gen:
            return  # superseded by a later arrival or completion
        now = self.env.now
        # snap tiny remainders left by floating point to zero
        for a in self.active.values():
            if a.remaining - a.rate * (now - a.since) <= 1e-12 * a.weights.size + 1e-6:
                self._settle(a, now)
                a.remaining = 0.0
                a.eta = now
        self._reschedule()


_MODELS = {"analytical": AnalyticalNetwork, "flow": FlowNetwork}


def make_network(kind: str, env: simpy.Environment, fabric: Fabric) -> NetworkModel:
    """The network model called ``kind`` (``analytical`` or ``flow``)."""
    try:
        return _MODELS[kind](env, fabric)
    except KeyError:
        from ..errors import ConfigError

        raise ConfigError(f"unknown network model {kind!r}; expected one of "
                          f"{', '.join(_MODELS)}", field="network") from None

