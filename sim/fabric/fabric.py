"""The fabric: accelerators, NICs and switches as a directed graph, and its compiled arrays.

A :class:`Fabric` wraps a ``networkx.DiGraph``. Nodes carry ``kind`` (``accelerator``,
``nic``, ``switch``, ``nvswitch``, ``ocs``) and a catalog ``model``; every full-duplex cable
(or bundle of parallel cables between the same two nodes) is two directed edges with
``capacity`` (bytes/s, per direction, all cables of the bundle), ``latency`` (seconds: the
link's own latency plus the port-to-port latency of the switch it enters), ``tech`` (the
catalog link id), ``count`` (cables in the bundle) and ``reach`` (``board``, ``rack``,
``row`` or ``hall``: where the cable runs, which decides copper or optics).

Besides the graph, a fabric knows its scale-up domains (servers, NVL72 racks, torus
cubes or slices), which NIC serves which accelerator, and the default routing policy of its
scale-out network. :meth:`Fabric.compile` turns the graph into flat numpy arrays indexed by
link id for the numerical kernels.

Everything computed from a fabric and kept for reuse (the compiled arrays, the router and
its routes, and, through :meth:`Fabric.derived`, the values other layers derive: effective
link capacities, compiled collective plans, the vectorised Clos index, ...) lives on the
fabric and is dropped together by :meth:`Fabric.invalidate` when the graph, the domains or
the optical circuits change.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import networkx as nx
import numpy as np

from ..errors import RoutingError

if TYPE_CHECKING:
    from ..catalog import Catalog
    from .ocs import OCSPod
    from .routing import Route, Router

__all__ = ["Fabric", "CompiledFabric", "TorusDomain", "REACHES"]

T = TypeVar("T")

REACHES = ("board", "rack", "row", "hall")
POLICIES = ("ecmp", "spray", "adaptive")


@dataclass
class TorusDomain:
    """Coordinates of a torus-shaped scale-up domain (TPU cube, slice or standalone torus).

    Attributes
    ----------
    dims : tuple of int
        Torus shape, e.g. (4, 4, 4).
    grid : dict
        Coordinate tuple -> accelerator name.
    coords : dict
        Accelerator name -> coordinate tuple.
    twisted : bool
        Whether wrap-around links are twisted (then routing uses shortest paths, not
        dimension order).
    hops : dict
        (a, b) -> node path between torus neighbours that are not joined by one edge
        (through an optical circuit switch); empty for an electrical torus.
    """

    dims: tuple[int, ...]
    grid: dict = field(default_factory=dict)
    coords: dict = field(default_factory=dict)
    twisted: bool = False
    hops: dict = field(default_factory=dict)

    @property
    def long_dim(self) -> int:
        return max(range(len(self.dims)), key=lambda i: self.dims[i])

    def neighbor(self, c: tuple, dim: int, step: int) -> tuple:
        """Coordinate one step (+1 or -1) from ``c`` along ``dim``, wrapping around.

        On a twisted torus, wrapping along a short dimension also shifts the coordinate of
        the longest dimension by half its size (Camara et al.)."""
        n = list(c)
        n[dim] += step
        size = self.dims[dim]
        if 0 <= n[dim] < size:
            return tuple(n)
        n[dim] %= size
        if self.twisted and dim != self.long_dim:
            ld = self.long_dim
            n[ld] = (n[ld] + step * (self.dims[ld] // 2)) % self.dims[ld]
        return tuple(n)

    def expand(self, chips: list) -> list:
        """Node path from a chip-to-chip neighbour sequence (inserting optical hops)."""
        out = [chips[0]]
        for u, v in zip(chips, chips[1:], strict=False):
            hop = self.hops.get((u, v))
            out.extend(hop[1:] if hop else [v])
        return out


@dataclass
class CompiledFabric:
    """Flat arrays of a fabric, for kernels. Link ``i`` runs ``link_src[i] -> link_dst[i]``.

    Attributes
    ----------
    node_names : list of str
    node_index : dict
        Node name -> index.
    link_src, link_dst : ndarray of int32
        Endpoints of each directed link, as node indices.
    capacity_Bps : ndarray of float64
        Per-direction capacity of each link (bytes/s), all cables of the bundle.
    latency_s : ndarray of float64
        Latency of each link including the switch it enters (s).
    tech : ndarray of int16
        Index into ``tech_names``.
    count : ndarray of int32
        Cables in the bundle.
    edge_index : dict
        (u, v) node-name pair -> link id.
    """

    node_names: list
    node_index: dict
    link_src: np.ndarray
    link_dst: np.ndarray
    capacity_Bps: np.ndarray
    latency_s: np.ndarray
    tech: np.ndarray
    tech_names: list
    count: np.ndarray
    edge_index: dict

    @property
    def n_links(self) -> int:
        return len(self.link_src)

    def links_of(self, path: list) -> np.ndarray:
        """Link ids along a node path."""
        ei = self.edge_index
        return np.fromiter((ei[(path[i], path[i + 1])] for i in range(len(path) - 1)),
                           dtype=np.int64, count=len(path) - 1)


class Fabric:
    """An AI cluster's interconnect as a graph, with its scale-up domains and routing.

    Parameters
    ----------
    graph : networkx.DiGraph
        Nodes and directed links as described in the module docstring.
    name : str
        Human name of the proposal.
    catalog : Catalog
        The catalog the models come from.
    routing : {'ecmp', 'spray', 'adaptive'}
        Default scale-out routing policy. ``adaptive`` (InfiniBand adaptive routing,
        NVIDIA Spectrum-X, packet spraying) is modelled as an even split over equal-cost
        paths, like ``spray``; ``ecmp`` pins each flow to one path by a hash.
    meta : dict, optional
        Free description of how the fabric was built (``builder``, its parameters, the
        file); kept in :attr:`meta`.

    Notes
    -----
    Derived values are cached on the fabric in one place: :meth:`compile` (the flat
    arrays), :attr:`router` (routes) and :meth:`derived` (anything else computed from the
    fabric by other modules). :meth:`invalidate` forgets all of them at once; whoever
    changes the graph, the scale-up domains or the circuits must call it.
    """

    def __init__(self, graph: nx.DiGraph, *, name: str, catalog: Catalog,
                 routing: str = "ecmp", meta: dict | None = None):
        self.graph = graph
        self.name = name
        self.catalog = catalog
        if routing not in POLICIES:
            raise ValueError(f"routing must be one of {POLICIES}")
        self.routing = routing
        # NCCL_COLLNET_ENABLE: CollNet (InfiniBand SHARP) is off unless the proposal turns
        # it on (NCCL's default; it needs the SHARP plugin and an aggregation manager)
        self.collnet = False
        # flows per GPU pair that ECMP hashes apart (NCCL queue pairs per connection with
        # a QP-aware switch hash, Meta's E-ECMP); 1: one flow, NCCL's default
        self.ecmp_flows = 1
        self.meta: dict[str, Any] = dict(meta or {})
        self.accelerators: list[str] = []
        self.domains: list[list[str]] = []
        self.domain_models: list[str | None] = []  # catalog node model of each domain
        self.domain_of: dict[str, int] = {}
        self.local_index: dict[str, int] = {}
        self.nics_of: dict[str, list[str]] = {}
        self.accels_of_nic: dict[str, list[str]] = {}
        self.domain_switch: dict[int, str] = {}  # nvswitch node of a domain
        self.torus: dict[int, TorusDomain] = {}  # domain id -> coordinates
        self.ocs: OCSPod | None = None
        self._compiled: CompiledFabric | None = None
        self._router: Router | None = None
        # values derived from the fabric by other modules, see derived(); key -> value
        self._derived: dict[Hashable, Any] = {}

    # ----------------------------------------------------------------- structure
    def add_domain(self, members: list[str], *, switch: str | None = None,
                   torus: TorusDomain | None = None, new: bool = True,
                   model: str | None = None) -> int:
        """Register a scale-up domain (its accelerators, in local order); returns its id.

        ``new=False`` regroups accelerators that are already registered (OCS slices)."""
        d = len(self.domains)
        self.domains.append(list(members))
        self.domain_models.append(model)
        for i, a in enumerate(members):
            self.domain_of[a] = d
            self.local_index[a] = i
        if new:
            self.accelerators.extend(members)
        if switch is not None:
            self.domain_switch[d] = switch
        if torus is not None:
            self.torus[d] = torus
        return d

    def attach_nic(self, accelerator: str, nic: str) -> None:
        """Record that ``nic`` is (one of) the scale-out NIC(s) of ``accelerator``."""
        self.nics_of.setdefault(accelerator, []).append(nic)
        self.accels_of_nic.setdefault(nic, []).append(accelerator)

    @property
    def n_accelerators(self) -> int:
        return len(self.accelerators)

    def nodes_of_kind(self, kind: str) -> list[str]:
        return [n for n, k in self.graph.nodes(data="kind") if k == kind]

    def invalidate(self) -> None:
        """Forget compiled arrays, routes and every :meth:`derived` value (after the graph,
        the domains or the circuits changed)."""
        self._compiled = None
        self._router = None
        self._derived.clear()

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """A value computed from this fabric, cached until :meth:`invalidate`.

        The one cache for what other layers derive from a fabric (effective link
        capacities, compiled collective plans, routing indexes), so that all of it is
        forgotten together when the fabric changes.

        Parameters
        ----------
        key : hashable
            Names the value; by convention a string naming the module's quantity, e.g.
            ``"collectives.plans"``. Callers sharing a key share the value.
        make : callable
            Called with no arguments on a miss; its result (None included) is cached.

        Returns
        -------
        object
            The cached value: the same object on every call until :meth:`invalidate`.
        """
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = make()
            return value

    # ----------------------------------------------------------------- compile
    def compile(self) -> CompiledFabric:
        """Flatten the graph into numpy arrays (cached until :meth:`invalidate`)."""
        if self._compiled is not None:
            return self._compiled
        g = self.graph
        names = list(g.nodes)
        index = {n: i for i, n in enumerate(names)}
        m = g.number_of_edges()
        src = np.empty(m, np.int32)
        dst = np.empty(m, np.int32)
        cap = np.empty(m, np.float64)
        lat = np.empty(m, np.float64)
        tech = np.empty(m, np.int16)
        count = np.empty(m, np.int32)
        tech_names: list[str] = []
        tech_code: dict[str, int] = {}
        edge_index: dict[tuple, int] = {}
        for i, (u, v, d) in enumerate(g.edges(data=True)):
            src[i] = index[u]
            dst[i] = index[v]
            cap[i] = d["capacity"]
            lat[i] = d["latency"]
            t = d["tech"]
            if t not in tech_code:
                tech_code[t] = len(tech_names)
                tech_names.append(t)
            tech[i] = tech_code[t]
            count[i] = d.get("count", 1)
            edge_index[(u, v)] = i
        self._compiled = CompiledFabric(names, index, src, dst, cap, lat, tech, tech_names,
                                        count, edge_index)
        return self._compiled

    # ----------------------------------------------------------------- routing
    @property
    def router(self) -> Router:
        if self._router is None:
            from .routing import Router

            self._router = Router(self)
        return self._router

    def route(self, src: str, dst: str, *, policy: str | None = None, flow: int = 0) -> Route:
        """Route from accelerator ``src`` to accelerator ``dst``.

        Parameters
        ----------
        src, dst : str
            Accelerator node names.
        policy : {'ecmp', 'spray', 'adaptive'}, optional
            Scale-out policy; the fabric's default if omitted. Tori always use dimension
            order (shortest paths on twisted tori).
        flow : int
            Flow number, hashed with the endpoints by ECMP (different flows between the
            same pair may take different paths).

        Returns
        -------
        Route
            Links with the fraction of the flow's bytes each carries, hop count, latency.
        """
        for n in (src, dst):
            if self.graph.nodes.get(n, {}).get("kind") != "accelerator":
                raise RoutingError(f"{n!r} is not an accelerator of fabric {self.name!r}")
        return self.router.route(src, dst, policy or self.routing, flow)

    def __repr__(self) -> str:
        return (f"Fabric({self.name!r}, accelerators={self.n_accelerators}, "
                f"nodes={self.graph.number_of_nodes()}, links={self.graph.number_of_edges()})")
