"""Builders: one function per family of AI-cluster fabric, each returning a :class:`Fabric`.

Scale-up domains: :func:`nvswitch_node` (DGX/HGX, 8 GPUs on NVSwitch), :func:`nvl72_rack`
(GB200 NVL72), :func:`xgmi_mesh_node` (MI300X, full mesh), :func:`torus` and
:func:`twisted_torus` (TPU ICI). Scale-out networks on top of many such domains:
:func:`leaf_spine` (2-tier, ToR style), :func:`fat_tree` (3-tier Clos, pods),
:func:`rail_optimized` (DGX SuperPOD scalable units: GPU i of every server on rail switch
i), :func:`rail_only` (no spine: each rail is its own network), :func:`multi_plane` (each
NIC port to its own plane, HPN style). :func:`sim.fabric.ocs.ocs_pod` builds the TPU
v4-style optical pod.

All of the scale-out families are one up/down Clos construction (:func:`clos`) that
differs in how NIC ports are grouped onto leaves and leaves into pods. Oversubscription of
a tier is its downlink capacity over its uplink capacity. Switch ports may be split into
lower-speed ports (breakout) when the speeds divide exactly; any other speed mismatch is a
TopologyError, as is a radix too small for the requested size.

Main assumption: every switch tier is built from one switch model, cabling is spread as
evenly as the port counts allow, and the NVSwitch chips of a server or rack act as one
non-blocking switch node (their aggregate is what a GPU sees).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx

from ..catalog import Catalog, Link, NodeModel, Switch, load_catalog
from ..errors import TopologyError
from .fabric import REACHES, Fabric, TorusDomain

__all__ = [
    "FabricBuilder",
    "Tier",
    "nvswitch_node",
    "nvl72_rack",
    "xgmi_mesh_node",
    "torus",
    "twisted_torus",
    "scale_up_cluster",
    "clos",
    "leaf_spine",
    "fat_tree",
    "rail_optimized",
    "rail_only",
    "multi_plane",
    "torus_links",
]


class FabricBuilder:
    """Accumulates nodes and cables of a fabric; shared by the builder functions.

    Parameters
    ----------
    catalog : Catalog
    name : str
    file : str, optional
        Spec file, for error messages.
    """

    def __init__(self, catalog: Catalog, name: str, file: str | None = None):
        self.cat = catalog
        self.g = nx.DiGraph()
        self.fabric = Fabric(self.g, name=name, catalog=catalog)
        self.file = file

    def error(self, field: str, msg: str) -> TopologyError:
        return TopologyError(msg, file=self.file, field=field)

    def node(self, name: str, kind: str, model: str, **attrs) -> str:
        self.g.add_node(name, kind=kind, model=model, **attrs)
        return name

    def cable(self, u: str, v: str, link: Link, *, count: int = 1, reach: str = "board",
              bandwidth_Bps: float | None = None) -> None:
        """Join u and v with ``count`` full-duplex cables of ``link`` (two directed edges).

        The edge latency includes the port-to-port latency of a switch it enters.
        """
        assert reach in REACHES, reach
        if count < 1:
            return
        bw = (bandwidth_Bps or link.bandwidth_Bps) * count
        g = self.g
        for a, b in ((u, v), (v, u)):
            lat = link.latency_s + g.nodes[b].get("switch_latency", 0.0)
            if g.has_edge(a, b):
                e = g.edges[a, b]
                e["capacity"] += bw
                e["count"] += count
            else:
                g.add_edge(a, b, capacity=bw, latency=lat, tech=link.id, count=count,
                           reach=reach)

    def switch(self, name: str, sw: Switch, *, tier: int, **attrs) -> str:
        return self.node(name, "switch" if sw.kind == "packet" else sw.kind, sw.id, tier=tier,
                         switch_latency=sw.latency_s, **attrs)

    def build(self, routing: str | None = None, meta: dict | None = None) -> Fabric:
        # A fabric is long-lived and holds ~10 objects per link: move what exists now out
        # of the cyclic garbage collector's scans (each full scan of a 16K-GPU graph costs
        # ~0.1 s and would otherwise recur during routing).
        gc.freeze()
        f = self.fabric
        if routing:
            f.routing = routing
        f.meta.update(meta or {})
        if f.n_accelerators == 0:
            raise self.error("params", "the fabric has no accelerators")
        return f


# --------------------------------------------------------------------- scale-up
def add_domain(b: FabricBuilder, nm: NodeModel, prefix: str, *, reach: str = "board",
               dims: tuple[int, ...] | None = None, wrap: bool = True,
               twisted: bool = False, nic_link: Link | None = None) -> int:
    """Add one scale-up domain of node model ``nm`` (its accelerators, switch, NICs).

    Returns the domain id. Accelerators are named ``{prefix}.g{i}``, NICs ``{prefix}.n{i}``.
    """
    cat = b.cat
    acc = cat.accelerators[nm.accelerator]
    link = cat.links[acc.scale_up_link]
    n = nm.accelerators
    names = [b.node(f"{prefix}.g{i}", "accelerator", acc.id) for i in range(n)]
    sw_name = None
    tdom = None
    if nm.scale_up == "nvswitch":
        sw = cat.switches[nm.scale_up_switch]
        sw_name = b.switch(f"{prefix}.nvs", sw, tier=0, chips=nm.scale_up_switches)
        if sw.port_speed_Bps != link.bandwidth_Bps:
            raise b.error(f"nodes.{nm.id}.scale_up.switch",
                          f"{sw.id} ports run at {sw.port_speed_Bps / 1e9:g} GB/s but "
                          f"{acc.id}'s {link.id} links at {link.bandwidth_Bps / 1e9:g} GB/s")
        need = n * acc.scale_up_links
        have = sw.radix * nm.scale_up_switches
        if need > have:
            raise b.error(f"nodes.{nm.id}.scale_up.switches",
                          f"{n} accelerators x {acc.scale_up_links} links = {need} ports, but "
                          f"{nm.scale_up_switches} x {sw.id} have {have}")
        for a in names:
            b.cable(a, sw_name, link, count=acc.scale_up_links, reach=reach)
    elif nm.scale_up == "mesh":
        per_peer = acc.scale_up_links // max(1, n - 1)
        if per_peer < 1:
            raise b.error(f"nodes.{nm.id}.accelerators",
                          f"a full mesh of {n} needs {n - 1} links per accelerator, "
                          f"{acc.id} has {acc.scale_up_links}")
        for i in range(n):
            for j in range(i + 1, n):
                b.cable(names[i], names[j], link, count=per_peer, reach=reach)
    elif nm.scale_up == "torus":
        dims = tuple(dims or nm.torus_dims)
        tdom = torus_links(b, names, dims, link, acc.scale_up_links, wrap=wrap,
                           twisted=twisted, reach=reach)
    d = b.fabric.add_domain(names, switch=sw_name, torus=tdom, model=nm.id)
    nic_link = nic_link or (cat.links[nm.nic_link] if nm.nic_link else None)
    if nm.nics and nic_link is not None:
        if n % nm.nics:
            raise b.error(f"nodes.{nm.id}.nic.count",
                          f"{nm.nics} NICs do not divide {n} accelerators evenly")
        host = cat.links[nm.host_link] if nm.host_link else None
        per = n // nm.nics
        for k in range(nm.nics):
            nic = b.node(f"{prefix}.n{k}", "nic", nic_link.id, tier=0, rail=k)
            for a in names[k * per:(k + 1) * per]:
                if host is not None:
                    b.cable(a, nic, host, reach="board")
                else:  # NIC on the accelerator package: a link as fast as the NIC
                    b.cable(a, nic, nic_link, reach="board")
                b.fabric.attach_nic(a, nic)
    return d


def torus_links(b: FabricBuilder, names: list[str], dims: tuple[int, ...], link: Link,
                links_per_chip: int, *, wrap: bool, twisted: bool, reach: str) -> TorusDomain:
    """Cable a torus (or a mesh, ``wrap=False``) over ``names`` in row-major order.

    Each chip is joined to its +1 neighbour along every dimension of size > 1; its
    ``links_per_chip`` links are shared evenly over the 2 x len(dims) directions. Along a
    dimension of size 2 the +1 and -1 neighbours coincide, so the two links form one
    bundle (unless twisted).

    Parameters
    ----------
    b : FabricBuilder
        The builder whose graph gets the cables.
    names : list of str
        Accelerator node names (already added), in row-major coordinate order.
    dims : tuple of int
        Torus shape; its product must equal ``len(names)``.
    link : Link
        Catalog link of every cable.
    links_per_chip : int
        Scale-up links of one chip (e.g. 6 ICI links on a 3D torus).
    wrap : bool
        Whether to add the wrap-around links (False: a mesh, as inside an OCS cube).
    twisted : bool
        Whether wrap-around neighbours are twisted (see :class:`TorusDomain`).
    reach : str
        Where the cables run (``board``, ``rack``, ``row``, ``hall``).

    Returns
    -------
    TorusDomain
        The coordinates of the chips (without optical hops).

    Raises
    ------
    TopologyError
        If ``dims`` do not hold ``len(names)`` chips.
    """
    if math.prod(dims) != len(names):
        raise b.error("params.dims", f"dims {list(dims)} hold {math.prod(dims)} chips, not "
                      f"{len(names)}")
    per = max(1, links_per_chip // (2 * len(dims)))
    t = TorusDomain(dims=tuple(dims), twisted=twisted)
    coords = list(_coords(dims))
    for name, c in zip(names, coords, strict=True):
        t.grid[c] = name
        t.coords[name] = c
    for c in coords:
        for dim, size in enumerate(dims):
            if size == 1 or (not wrap and c[dim] == size - 1):
                continue
            if size == 2 and c[dim] == 1 and not twisted:
                continue  # the +1 and -1 neighbour coincide: one bundle of both links
            cnt = per * (2 if size == 2 and not twisted else 1)
            b.cable(t.grid[c], t.grid[t.neighbor(c, dim, 1)], link, count=cnt, reach=reach)
    return t


def _coords(dims: Sequence[int]):
    from itertools import product

    return product(*(range(d) for d in dims))


def _single(nm_id: str, catalog: Catalog | None, count: int, name: str | None,
            file: str | None = None, **kw) -> Fabric:
    cat = catalog or load_catalog()
    nm = cat.get("nodes", nm_id, file=file, field="params.node")
    b = FabricBuilder(cat, name or f"{count} x {nm.name}")
    for s in range(count):
        add_domain(b, nm, f"s{s}", **kw)
    return b.build(meta={"builder": "scale_up", "node": nm_id, "count": count})


def nvswitch_node(node: str = "DGX-H100", *, count: int = 1, catalog: Catalog | None = None,
                  name: str | None = None) -> Fabric:
    """``count`` NVSwitch servers (8 GPUs each), not joined by a scale-out network."""
    return _single(node, catalog, count, name)


def nvl72_rack(node: str = "GB200-NVL72", *, count: int = 1, catalog: Catalog | None = None,
               name: str | None = None) -> Fabric:
    """``count`` GB200 NVL72 racks: 72 GPUs on one NVLink-5 switch domain each."""
    return _single(node, catalog, count, name)


def xgmi_mesh_node(node: str = "MI300X-8", *, count: int = 1, catalog: Catalog | None = None,
                   name: str | None = None) -> Fabric:
    """``count`` AMD MI300X platforms: 8 GPUs in an Infinity Fabric full mesh each."""
    return _single(node, catalog, count, name)


def torus(dims: Sequence[int], *, accelerator: str = "TPUv4", catalog: Catalog | None = None,
          name: str | None = None, _twisted: bool = False) -> Fabric:
    """A TPU-style 3D (or any-D) ICI torus with wrap-around links.

    Parameters
    ----------
    dims : sequence of int
        Torus shape, e.g. (4, 4, 4) or (8, 8, 16).
    accelerator : str
        Catalog accelerator whose ``scale_up_link`` and ``scale_up_links`` give the ICI
        links: each chip spreads its links evenly over its 2 x len(dims) neighbours.
    """
    cat = catalog or load_catalog()
    acc = cat.get("accelerators", accelerator)
    dims = tuple(int(d) for d in dims)
    if any(d < 1 for d in dims):
        raise TopologyError(f"torus dims must be positive, got {list(dims)}", field="params.dims")
    nm = NodeModel(id=f"torus-{accelerator}", name=name or "torus", accelerator=accelerator,
                   accelerators=math.prod(dims), scale_up="torus", scale_up_switch=None,
                   scale_up_switches=0, torus_dims=dims, nics=0, nic_link=None, host_link=None,
                   host_power_W=0.0, price_USD=0.0, provenance=acc.provenance)
    kind = "twisted torus" if _twisted else "torus"
    b = FabricBuilder(cat, name or f"{'x'.join(map(str, dims))} {acc.id} {kind}")
    add_domain(b, nm, "t", dims=dims, twisted=_twisted, reach="rack")
    return b.build(meta={"builder": "twisted_torus" if _twisted else "torus", "dims": dims})


def twisted_torus(dims: Sequence[int], *, accelerator: str = "TPUv4",
                  catalog: Catalog | None = None, name: str | None = None) -> Fabric:
    """A twisted torus (Camara et al.; TPU v4 offers it for k x k x 2k slices).

    The wrap-around links of the shorter dimensions are shifted by half the longest
    dimension, which shortens the diameter and raises the bisection of a k x k x 2k torus.
    """
    dims = tuple(int(d) for d in dims)
    long = max(dims)
    if dims.count(long) != 1 or long % 2 or any(long != 2 * d for d in dims if d != long):
        raise TopologyError(f"a twisted torus needs shape k x k x 2k, got {list(dims)}",
                            field="params.dims")
    return torus(dims, accelerator=accelerator, catalog=catalog, name=name, _twisted=True)


def scale_up_cluster(node: str, count: int, *, catalog: Catalog | None = None,
                     name: str | None = None, file: str | None = None) -> Fabric:
    """``count`` scale-up domains of catalog node ``node`` without a scale-out network."""
    return _single(node, catalog, count, name, file)


# --------------------------------------------------------------------- scale-out
@dataclass(frozen=True)
class Tier:
    """One switch tier of a Clos.

    Attributes
    ----------
    switch : str
        Catalog switch id.
    oversubscription : float
        Downlink over uplink capacity (1 = non-blocking). Ignored for the top tier.
    down_ports : int, optional
        Downlink ports per switch (e.g. the servers of a rack on a ToR); default: as many
        as the radix allows at this oversubscription.
    reach : str
        Where the cables *below* this tier run: ``rack`` (copper), ``row``, ``hall``.
    """

    switch: str
    oversubscription: float = 1.0
    down_ports: int | None = None
    reach: str = "row"


def _ports_at(sw: Switch, speed: float, b: FabricBuilder, field: str) -> int:
    """Ports of ``sw`` at ``speed``, splitting faster ports (breakout) when it divides."""
    ratio = sw.port_speed_Bps / speed
    k = round(ratio)
    if k < 1 or abs(ratio - k) > 1e-9:
        hint = ""
        for factor, what in ((8.0, "bytes/s where bits/s were meant (GB/s for Gb/s)"),
                             (1 / 8.0, "bits/s where bytes/s were meant (Gb/s for GB/s)")):
            r = ratio * factor
            if abs(r - round(r)) < 1e-9 and round(r) >= 1:
                hint = f"; the link's bandwidth looks like {what}"
                break
        raise b.error(field, f"port speed mismatch: {sw.id} ports run at "
                      f"{sw.port_speed_Bps * 8 / 1e9:g} Gb/s, links at {speed * 8 / 1e9:g} "
                      f"Gb/s (a port can only be split into equal lower-speed ports){hint}")
    return sw.radix * k


def _split(radix: int, over: float, down: int | None, b: FabricBuilder, field: str,
           over_field: str) -> tuple[int, int]:
    """(down, up) ports per switch for an oversubscription ratio."""
    if over < 1:
        raise b.error(over_field, f"must be >= 1 (down:up), got {over:g}")
    if down is None:
        up = int(radix // (1 + over))
        down = int(math.floor(up * over + 1e-9))
        while down + up > radix:
            down -= 1
    else:
        up = int(math.ceil(down / over - 1e-9))
    if down < 1 or up < 1 or down + up > radix:
        if up < 1 or (down is not None and over > down):
            raise b.error(over_field, f"{over:g}:1 leaves no uplink on a {radix}-port "
                          f"switch; at most {radix - 1}:1")
        raise b.error(field, f"switch radix {radix} too small for {down} down + {up} up ports "
                      f"at {over:g}:1")
    if up == 1 and down < over * (1 - 1e-9):
        raise b.error(over_field, f"{over:g}:1 cannot be built with {down} downlinks per "
                      f"switch: one uplink gives {down}:1, the most this tier allows")
    return down, up


def clos(catalog: Catalog, *, name: str, node: str, servers: int, tiers: Sequence[Tier],
         link: str, leaf_key: Callable[[int, int], tuple], pod_leaves: int | None = None,
         pod_key: Callable[[tuple], tuple] | None = None, planes: int = 1,
         routing: str | None = None, file: str | None = None, meta: dict | None = None,
         tier_fields: Sequence[str] | None = None) -> Fabric:
    """Generic up/down Clos over ``servers`` scale-up domains of catalog node ``node``.

    Parameters
    ----------
    catalog : Catalog
    name : str
    node : str
        Catalog node model (server, rack, cube).
    servers : int
        Number of such nodes.
    tiers : sequence of Tier
        Leaf first. Two tiers give leaf-spine, three a fat-tree with pods.
    link : str
        Catalog link id of the scale-out cables (all tiers).
    leaf_key : callable (server, nic) -> tuple
        NIC ports with the same key share leaves (filled in order): ``(server // k,)`` for
        ToR style, ``(unit, rail)`` for rail-optimized.
    pod_leaves : int, optional
        Leaves per pod for 3-tier Clos (default: all leaves form one pod).
    pod_key : callable leaf-key -> tuple, optional
        Leaves whose keys map to different pod keys never share a spine (rail-only).
    planes : int
        NIC ports per NIC; port p goes to plane p, and planes are separate networks.
    routing : str, optional
        Default routing; else ``adaptive`` if the leaf switch supports it, else ``ecmp``.
    tier_fields : sequence of str, optional
        Spec field of each tier's switch, for error messages (default ``params.tiers[i]``).
    """
    b = FabricBuilder(catalog, name, file)
    tf, sw_field, ov_field = _clos_fields(tiers, tier_fields)
    nm, ln, sws, radix = _clos_parts(b, node, link, servers, tiers, file, sw_field)
    nic_ports = _clos_endpoints(b, nm, ln, servers, planes, leaf_key)
    n_tiers = len(tiers)
    # --- tier 1: leaves
    last = n_tiers == 1
    d1, u1 = ((radix[0], 0) if last else
              _split(radix[0], tiers[0].oversubscription, tiers[0].down_ports, b,
                     tf[0], ov_field[0]))
    leaves = _clos_leaves(b, nic_ports, d1, sws[0], ln, tiers[0].reach)
    if last:
        return _finish(b, sws, routing, meta)

    # --- tier 2: spines, per pod
    t2last = n_tiers == 2
    if t2last:
        d2, u2 = radix[1], 0
    else:
        d2, u2 = _split(radix[1], tiers[1].oversubscription, tiers[1].down_ports, b,
                        tf[1], ov_field[1])
    pods = _clos_pods(b, leaves, pod_key, pod_leaves)
    spines_by_pod, spine_down = _clos_spines(b, pods, d1, d2, tiers, sws[1], ln, sw_field[1])
    if n_tiers > 3:
        raise b.error("params.tiers", f"at most 3 tiers are supported, got {n_tiers}")
    if not t2last:
        _clos_cores(b, pods, spines_by_pod, spine_down, tiers, radix[2], sws[2], ln,
                    sw_field[2])
    return _finish(b, sws, routing, meta)


def _clos_fields(tiers: Sequence[Tier], tier_fields: Sequence[str] | None
                 ) -> tuple[list[str], list[str], list[str]]:
    """Spec field names of each tier, its switch and its oversubscription, for errors."""
    tf = list(tier_fields or [f"params.tiers[{i}]" for i in range(len(tiers))])
    sw_field = [f if not f.startswith("params.tiers[") else f + ".switch" for f in tf]
    ov_field = [f + ".oversubscription" if f.startswith("params.tiers[") else
                "params.oversubscription" for f in tf]
    return tf, sw_field, ov_field


def _clos_parts(b: FabricBuilder, node: str, link: str, servers: int, tiers: Sequence[Tier],
                file: str | None, sw_field: list[str]
                ) -> tuple[NodeModel, Link, list[Switch], list[int]]:
    """Checked catalog entries of a Clos: node model, link, tier switches and their radix."""
    cat = b.cat
    nm = cat.get("nodes", node, file=file, field="params.node")
    ln = cat.get("links", link, file=file, field="params.link")
    if ln.kind != "scale-out":
        raise b.error("params.link", f"{ln.id} is a {ln.kind} link, not a scale-out link")
    if nm.nics < 1:
        raise b.error("params.node", f"node {nm.id} has no NICs for a scale-out network")
    if servers < 1:
        raise b.error("params.servers", f"must be at least 1, got {servers}")
    if not tiers:
        raise b.error("params.tiers", "at least one switch tier is needed")
    nic_speed = ln.bandwidth_Bps
    sws = [cat.get("switches", t.switch, file=file, field=sw_field[i])
           for i, t in enumerate(tiers)]
    for i, sw in enumerate(sws):
        if sw.kind != "packet":
            raise b.error(sw_field[i], f"{sw.id} is a {sw.kind} switch, not a "
                          "packet switch")
        native = cat.links.get(sw.link)
        if native is not None and native.protocol != ln.protocol:
            raise b.error(sw_field[i], f"{sw.id} is a switch for {native.protocol} links "
                          f"({native.id}); the fabric's links are {ln.protocol} ({ln.id}): "
                          f"pick a {ln.protocol} switch or {native.protocol} links")
    radix = [_ports_at(sw, nic_speed, b, sw_field[i]) for i, sw in enumerate(sws)]
    return nm, ln, sws, radix


def _clos_endpoints(b: FabricBuilder, nm: NodeModel, ln: Link, servers: int, planes: int,
                    leaf_key: Callable[[int, int], tuple]) -> dict[tuple, list[str]]:
    """Add the scale-up domains; NIC ports grouped by (plane,) + leaf key."""
    nic_ports: dict[tuple, list[str]] = {}
    for s in range(servers):
        add_domain(b, nm, f"s{s}", nic_link=ln)
        for k in range(nm.nics):
            for p in range(planes):
                nic_ports.setdefault((p,) + tuple(leaf_key(s, k)), []).append(f"s{s}.n{k}")
    return nic_ports


def _clos_leaves(b: FabricBuilder, nic_ports: dict[tuple, list[str]], d1: int, sw: Switch,
                 ln: Link, reach: str) -> list[tuple[str, tuple, int]]:
    """Leaves filled in key order with ``d1`` NIC ports each: (name, key, n_down)."""
    leaves: list[tuple[str, tuple, int]] = []  # (name, key, n_down)
    for key in sorted(nic_ports):
        ports = nic_ports[key]
        for j in range(0, len(ports), d1):
            chunk = ports[j:j + d1]
            lname = b.switch(f"l{len(leaves)}", sw, tier=1, plane=key[0],
                             unit=key[1] if len(key) > 2 else None)
            for nic in chunk:
                b.cable(nic, lname, ln, reach=reach)
            leaves.append((lname, key, len(chunk)))
    return leaves


def _clos_pods(b: FabricBuilder, leaves: list[tuple[str, tuple, int]],
               pod_key: Callable[[tuple], tuple] | None, pod_leaves: int | None
               ) -> list[tuple[tuple, list]]:
    """Leaves grouped into pods (pod key, leaves); each leaf gets its ``pod`` index."""
    groups: dict[tuple, list] = {}
    for lf in leaves:
        pk = (lf[1][0],) + (pod_key(lf[1][1:]) if pod_key else ())
        groups.setdefault(pk, []).append(lf)
    pods: list[tuple[tuple, list]] = []
    for pk, lfs in groups.items():
        size = pod_leaves or len(lfs)
        for j in range(0, len(lfs), size):
            pods.append((pk, lfs[j:j + size]))
    for pi, (_, lfs) in enumerate(pods):
        for lname, _, _ in lfs:
            b.g.nodes[lname]["pod"] = pi
    return pods


def _clos_spines(b: FabricBuilder, pods: list[tuple[tuple, list]], d1: int, d2: int,
                 tiers: Sequence[Tier], sw: Switch, ln: Link, field: str
                 ) -> tuple[list[list[str]], dict[str, int]]:
    """Spines of every pod, cabled to each of its leaves: names per pod, downlinks per spine.

    Under a core tier every pod of a plane gets as many spines as the largest pod needs,
    a partial pod included (with fewer downlinks each): spine j of every pod joins core
    plane j, so a pod with fewer spines would be reachable through fewer planes only."""
    n_tiers = len(tiers)
    # a leaf is cabled to its spines for its full downlink capacity, even when fewer
    # servers hang below it (a partial scalable unit): its uplinks do not depend on them
    up = max(1, math.ceil(d1 / tiers[0].oversubscription - 1e-9))
    counts = [0 if (len(lfs) == 1 and n_tiers == 2) else  # a single leaf needs no spine
              _pod_spine_count(b, lfs, [up] * len(lfs), d2, tiers[1], sw, field)
              for _, lfs in pods]
    if n_tiers == 3:
        most: dict = {}
        for (pk, _), c in zip(pods, counts, strict=True):
            most[pk[0]] = max(most.get(pk[0], 0), c)
        counts = [max(c, min(most[pk[0]], up)) for (pk, _), c in zip(pods, counts,
                                                                       strict=True)]
    spines_by_pod: list[list[str]] = []
    spine_down: dict[str, int] = {}
    n_sp = 0
    for pi, ((pk, lfs), c) in enumerate(zip(pods, counts, strict=True)):
        names = [b.switch(f"sp{n_sp + i}", sw, tier=2, plane=pk[0], pod=pi)
                 for i in range(c)]
        n_sp += c
        spines_by_pod.append(names)
        if names:
            _cable_pod(b, lfs, [up] * len(lfs), names, ln, tiers[1].reach, spine_down)
    return spines_by_pod, spine_down


def _pod_spine_count(b: FabricBuilder, lfs: list, ups: list[int], d2: int, tier: Tier,
                     sw: Switch, field: str) -> int:
    """Spines of one pod: the fewest that hold its leaves' uplinks, rounded up to divide a
    leaf's uplinks evenly when possible (every leaf reaches every spine: a Clos)."""
    u_max = max(ups)
    need = max(1, math.ceil(sum(ups) / d2))
    if need > min(ups):
        raise b.error(field, f"a pod of {len(lfs)} leaves with {min(ups)}-{u_max} "
                      f"uplinks each needs {need} spines of {d2} down ports ({sw.id} at "
                      f"{tier.oversubscription:g}:1), more than a leaf can reach; use "
                      "a larger spine or fewer leaves per pod")
    return next((k for k in range(need, u_max + 1) if u_max % k == 0), need)


def _cable_pod(b: FabricBuilder, lfs: list, ups: list[int], names: list[str], ln: Link,
               reach: str, spine_down: dict[str, int]) -> None:
    """Spread each leaf's uplinks evenly over the pod's spines, counting spine downlinks."""
    n_spines = len(names)
    for li, ((lname, _, _), u) in enumerate(zip(lfs, ups, strict=True)):
        for j, s_ in enumerate(names):
            cnt = u // n_spines + (1 if (j - li) % n_spines < u % n_spines else 0)
            if cnt:
                b.cable(lname, s_, ln, count=cnt, reach=reach)
                spine_down[s_] = spine_down.get(s_, 0) + cnt


def _clos_cores(b: FabricBuilder, pods: list[tuple[tuple, list]],
                spines_by_pod: list[list[str]], spine_down: dict[str, int],
                tiers: Sequence[Tier], radix: int, sw: Switch, ln: Link, field: str) -> None:
    """Tier 3: cores in planes, spine j of every pod of a network plane to core plane j."""
    # Spine j of every pod of a network plane joins the cores of core plane j, so any two
    # pods meet at those cores (a standard fat-tree).
    n_core = 0
    planes_of: dict[tuple, list[str]] = {}
    for (pk, _), sps in zip(pods, spines_by_pod, strict=True):
        for j, s_ in enumerate(sps):
            planes_of.setdefault((pk[0], j), []).append(s_)
    for (plane, j), sps in planes_of.items():
        # a spine's uplinks follow its actual downlinks at the tier's ratio
        ups2 = {s_: max(1, math.ceil(spine_down[s_] / tiers[1].oversubscription - 1e-9))
                for s_ in sps}
        n_cores = max(1, math.ceil(sum(ups2.values()) / radix))
        # a spine of a partial pod (fewer downlinks) still reaches every core of its
        # plane, one link each at least, as long as it has the ports
        for _ in range(3):
            ups2 = {s_: max(u, min(n_cores, _spine_ports_left(b, s_, spine_down, u)))
                    for s_, u in ups2.items()}
            n_cores = max(1, math.ceil(sum(ups2.values()) / radix))
        if n_cores > min(ups2.values()):
            raise b.error(field, f"core plane {j} needs {n_cores} {sw.id} for "
                          f"{sum(ups2.values())} spine uplinks, more than a spine's "
                          f"{min(ups2.values())} uplinks can reach; use a larger core "
                          "switch")
        cores = [b.switch(f"c{n_core + i}", sw, tier=3, plane=plane, core_plane=j)
                 for i in range(n_cores)]
        n_core += n_cores
        for si, s_ in enumerate(sps):
            u = ups2[s_]
            for k, c_ in enumerate(cores):
                cnt = u // n_cores + (1 if (k - si) % n_cores < u % n_cores else 0)
                if cnt:
                    b.cable(s_, c_, ln, count=cnt, reach=tiers[2].reach)


def _spine_ports_left(b: FabricBuilder, s_: str, spine_down: dict[str, int], up: int) -> int:
    """Ports of spine ``s_`` free for uplinks (at least its ``up`` already planned)."""
    sw = b.cat.switches[b.g.nodes[s_]["model"]]
    return max(up, sw.radix - spine_down[s_])


def _finish(b: FabricBuilder, sws: list[Switch], routing: str | None, meta: dict | None
            ) -> Fabric:
    g = b.g
    # radix check: no switch may use more ports than it has (a builder invariant)
    for n, d in g.nodes(data=True):
        if d["kind"] == "switch":
            sw = b.cat.switches[d["model"]]
            used = sum(e["count"] for _, _, e in g.out_edges(n, data=True))
            cap = sum(e["capacity"] for _, _, e in g.out_edges(n, data=True))
            if cap > sw.radix * sw.port_speed_Bps * (1 + 1e-9):
                raise b.error("params", f"switch {n} ({sw.id}) needs {used} ports, "
                              f"{cap * 8 / 1e9:g} Gb/s, above its {sw.radix} x "
                              f"{sw.port_speed_Bps * 8 / 1e9:g} Gb/s")
    if routing is None:
        routing = "adaptive" if sws[0].adaptive_routing else "ecmp"
    f = b.build(routing=routing, meta=meta)
    _check_connected(b, f)
    return f


def _check_connected(b: FabricBuilder, f: Fabric) -> None:
    """A scale-out fabric whose NICs fall into separate islands is an error (rail-only
    islands are joined through the scale-up domains, so the check runs on the whole graph)."""
    if f.graph.number_of_nodes() and not nx.is_weakly_connected(f.graph):
        comps = nx.number_weakly_connected_components(f.graph)
        raise b.error("params", f"the fabric is disconnected: {comps} separate parts")


def leaf_spine(*, node: str, servers: int, leaf: str, spine: str, link: str,
               oversubscription: float = 1.0, servers_per_leaf: int | None = None,
               leaf_reach: str | None = None, catalog: Catalog | None = None,
               name: str | None = None, routing: str | None = None, file: str | None = None
               ) -> Fabric:
    """Two-tier leaf-spine with ToR-style leaves: all NICs of a server on the same leaf.

    Parameters
    ----------
    servers_per_leaf : int, optional
        Servers per leaf (a rack on a ToR); default: as many as the leaf's downlink ports
        at this oversubscription hold.
    leaf_reach : {'rack', 'row'}, optional
        Where server-to-leaf cables run: ``rack`` (ToR, copper) is the default when
        ``servers_per_leaf`` is given, else ``row`` (optics to a network rack).
    """
    cat = catalog or load_catalog()
    nm = cat.get("nodes", node, file=file, field="params.node")
    down = servers_per_leaf * nm.nics if servers_per_leaf else None
    per = servers_per_leaf or 10**9
    reach = leaf_reach or ("rack" if servers_per_leaf else "row")
    return clos(cat, name=name or f"leaf-spine {servers} x {node}", node=node, servers=servers,
                tiers=[Tier(leaf, oversubscription, down, reach),
                       Tier(spine, 1.0, None, "row")],
                link=link, leaf_key=lambda s, k: (s // per,) if servers_per_leaf else (0,),
                routing=routing, file=file, tier_fields=["params.leaf", "params.spine"],
                meta={"builder": "leaf_spine", "oversubscription": [oversubscription]})


def fat_tree(*, node: str, servers: int, tiers: Sequence[Tier], link: str,
             servers_per_leaf: int | None = None, leaves_per_pod: int | None = None,
             rail_aligned: bool = False, servers_per_unit: int | None = None,
             catalog: Catalog | None = None, name: str | None = None,
             routing: str | None = None, file: str | None = None) -> Fabric:
    """Three-tier Clos (leaf, spine, core) with pods and oversubscription per tier.

    Parameters
    ----------
    tiers : sequence of Tier
        Three tiers; ``tiers[1].oversubscription`` is the pod-to-core ratio (e.g. 7 for the
        Llama 3 cluster's 1:7 aggregation).
    servers_per_leaf : int, optional
        ToR style: this many servers share a leaf.
    leaves_per_pod : int, optional
        Leaves under one set of spines (e.g. 192 racks = 3,072 GPUs in the Llama 3 cluster).
    rail_aligned : bool
        Rail-optimized leaves (NIC i of every server of a unit on leaf i) instead of ToR.
    """
    cat = catalog or load_catalog()
    nm = cat.get("nodes", node, file=file, field="params.node")
    if len(tiers) != 3:
        raise TopologyError(f"a fat-tree has 3 tiers, got {len(tiers)}", file=file,
                            field="params.tiers")
    if rail_aligned:
        unit = servers_per_unit or servers
        key = lambda s, k: (s // unit, k)  # noqa: E731
    else:
        per = servers_per_leaf or max(1, 10**9)
        key = lambda s, k: (s // per,)  # noqa: E731
    down = servers_per_leaf * nm.nics if servers_per_leaf and not rail_aligned else \
        tiers[0].down_ports
    t0 = Tier(tiers[0].switch, tiers[0].oversubscription, down, tiers[0].reach)
    return clos(cat, name=name or f"fat-tree {servers} x {node}", node=node, servers=servers,
                tiers=[t0, *tiers[1:]], link=link, leaf_key=key, pod_leaves=leaves_per_pod,
                routing=routing, file=file,
                meta={"builder": "fat_tree",
                      "oversubscription": [t.oversubscription for t in tiers[:2]]})


def rail_optimized(*, node: str, servers: int, leaf: str, spine: str, link: str,
                   servers_per_unit: int = 32, oversubscription: float = 1.0,
                   core: str | None = None, units_per_pod: int | None = None,
                   catalog: Catalog | None = None, name: str | None = None,
                   routing: str | None = None, file: str | None = None) -> Fabric:
    """DGX SuperPOD-style rail-optimized Clos: in each scalable unit, NIC i of every server
    goes to rail leaf i; leaves reach each other through spines (and cores, if given)."""
    cat = catalog or load_catalog()
    tiers = [Tier(leaf, oversubscription, servers_per_unit if servers_per_unit else None, "row"),
             Tier(spine, 1.0, None, "row")]
    if core:
        tiers.append(Tier(core, 1.0, None, "hall"))
    nm = cat.get("nodes", node, file=file, field="params.node")
    pod_leaves = units_per_pod * nm.nics if (core and units_per_pod) else None
    return clos(cat, name=name or f"rail-optimized {servers} x {node}", node=node,
                servers=servers, tiers=tiers, link=link,
                leaf_key=lambda s, k: (s // servers_per_unit, k), pod_leaves=pod_leaves,
                routing=routing, file=file,
                tier_fields=["params.leaf", "params.spine", "params.core"][:len(tiers)],
                meta={"builder": "rail_optimized", "oversubscription": [oversubscription]})


def rail_only(*, node: str, servers: int, leaf: str, link: str, spine: str | None = None,
              catalog: Catalog | None = None, name: str | None = None,
              routing: str | None = None, file: str | None = None) -> Fabric:
    """Rail-only network (Wang et al., 2023): rail i joins NIC i of every server; rails are
    not connected to each other. A rail larger than one switch is a non-blocking leaf-spine
    of its own. Cross-rail traffic goes through the scale-up domain (PXN)."""
    cat = catalog or load_catalog()
    ln = cat.get("links", link, file=file, field="params.link")
    lsw = cat.get("switches", leaf, file=file, field="params.leaf")
    b = FabricBuilder(cat, "probe", file)
    ports = _ports_at(lsw, ln.bandwidth_Bps, b, "params.leaf")
    if spine is not None:
        cat.get("switches", spine, file=file, field="params.spine")
    if servers <= ports:
        tiers = [Tier(leaf, 1.0, None, "row")]
    else:
        if spine is None:
            raise TopologyError(f"{servers} servers exceed one {leaf}'s {ports} ports per "
                                "rail; give a `spine` switch", file=file, field="params.spine")
        tiers = [Tier(leaf, 1.0, None, "row"), Tier(spine, 1.0, None, "row")]
    return clos(cat, name=name or f"rail-only {servers} x {node}", node=node, servers=servers,
                tiers=tiers, link=link, leaf_key=lambda s, k: (k,), pod_key=lambda key: key,
                routing=routing, file=file, meta={"builder": "rail_only"},
                tier_fields=["params.leaf", "params.spine"][:len(tiers)])


def multi_plane(*, node: str, servers: int, leaf: str, spine: str, link: str, planes: int = 2,
                servers_per_leaf: int | None = None, oversubscription: float = 1.0,
                catalog: Catalog | None = None, name: str | None = None,
                routing: str | None = None, file: str | None = None) -> Fabric:
    """Multi-plane leaf-spine (Alibaba HPN dual-plane): each NIC has ``planes`` ports, port
    p to a leaf of plane p; planes are separate networks. ``link`` is the per-port link."""
    cat = catalog or load_catalog()
    nm = cat.get("nodes", node, file=file, field="params.node")
    per = servers_per_leaf or 10**9
    down = servers_per_leaf * nm.nics if servers_per_leaf else None
    return clos(cat, name=name or f"{planes}-plane {servers} x {node}", node=node,
                servers=servers,
                tiers=[Tier(leaf, oversubscription, down, "rack" if servers_per_leaf else "row"),
                       Tier(spine, 1.0, None, "row")],
                link=link, leaf_key=lambda s, k: (s // per,), planes=planes, routing=routing,
                file=file, meta={"builder": "multi_plane", "planes": planes},
                tier_fields=["params.leaf", "params.spine"])
