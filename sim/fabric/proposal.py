"""Topology proposals: ``topologies/*.yaml`` files naming a builder, its parameters and
catalog entries, read into a :class:`Fabric`.

A proposal looks like::

    name: DGX H100 SuperPOD, 1,024 GPUs, NDR InfiniBand, rail-optimized
    builder: rail_optimized
    routing: adaptive            # optional: ecmp | spray | adaptive
    collnet: true                # optional: NCCL_COLLNET_ENABLE=1 (InfiniBand SHARP); off
    ecmp_flows: 16               # optional: flows per GPU pair ECMP hashes apart; 1
    catalog: my_catalog/         # optional: extra catalog directory, relative to this file
    params:
      node: DGX-H100
      servers: 128
      ...

Every parameter is checked (type, range, catalog reference) and every error names the file
and the field path, e.g. ``topologies/x.yaml: params.tiers[1].switch: unknown switch``.
"""

from __future__ import annotations

from pathlib import Path

from ..catalog import load_catalog
from ..errors import ConfigError, InfeasibleError, TopologyError
from ..spec import Node, apply_overrides, load_yaml
from . import builders as B
from .fabric import POLICIES, REACHES, Fabric
from .ocs import ocs_pod

__all__ = ["load_topology", "BUILDERS"]


def _tiers(p: Node, key: str = "tiers") -> list[B.Tier]:
    raw = p.raw(key)
    if not isinstance(raw, list) or not raw:
        raise p.error(key, "expected a list of tiers, e.g. [{switch: QM9700}, ...]")
    out = []
    for i, t in enumerate(raw):
        n = Node(t, p.file, f"{p.field(key)}[{i}]") if isinstance(t, dict) else None
        if n is None:
            raise p.error(f"{key}[{i}]", f"expected a mapping with `switch`, got {t!r}")
        out.append(B.Tier(switch=n.string("switch"),
                          oversubscription=n.number("oversubscription", 1.0, low=1.0),
                          down_ports=n.integer("down_ports", None, minimum=1),
                          reach=n.string("reach", "row", choices=REACHES[1:])))
        n.done()
    return out


def _common(p: Node) -> dict:
    return {"node": p.string("node"), "servers": p.integer("servers", minimum=1),
            "link": p.string("link")}


def _leaf_spine(p: Node, **kw) -> Fabric:
    return B.leaf_spine(**_common(p), leaf=p.string("leaf"), spine=p.string("spine"),
                        oversubscription=p.number("oversubscription", 1.0, low=1.0),
                        servers_per_leaf=p.integer("servers_per_leaf", None, minimum=1),
                        leaf_reach=p.string("leaf_reach", None, choices=("rack", "row")), **kw)


def _rail_optimized(p: Node, **kw) -> Fabric:
    return B.rail_optimized(**_common(p), leaf=p.string("leaf"), spine=p.string("spine"),
                            servers_per_unit=p.integer("servers_per_unit", 32, minimum=1),
                            oversubscription=p.number("oversubscription", 1.0, low=1.0),
                            core=p.string("core", None),
                            units_per_pod=p.integer("units_per_pod", None, minimum=1), **kw)


def _rail_only(p: Node, **kw) -> Fabric:
    return B.rail_only(**_common(p), leaf=p.string("leaf"), spine=p.string("spine", None), **kw)


def _multi_plane(p: Node, **kw) -> Fabric:
    return B.multi_plane(**_common(p), leaf=p.string("leaf"), spine=p.string("spine"),
                         planes=p.integer("planes", 2, minimum=1),
                         servers_per_leaf=p.integer("servers_per_leaf", None, minimum=1),
                         oversubscription=p.number("oversubscription", 1.0, low=1.0), **kw)


def _fat_tree(p: Node, **kw) -> Fabric:
    return B.fat_tree(**_common(p), tiers=_tiers(p),
                      servers_per_leaf=p.integer("servers_per_leaf", None, minimum=1),
                      leaves_per_pod=p.integer("leaves_per_pod", None, minimum=1),
                      rail_aligned=p.boolean("rail_aligned", False),
                      servers_per_unit=p.integer("servers_per_unit", None, minimum=1), **kw)


def _ocs_pod(p: Node, *, catalog, name, file, routing=None) -> Fabric:
    slices = p.raw("slices", [])
    if not isinstance(slices, list):
        raise p.error("slices", f"expected a list of shapes like [16, 16, 16], got {slices!r}")
    rt = p.quantity("reconfigure_time", "time", None) if "reconfigure_time" in p else None
    p.mark_used("reconfigure_time")
    clean = []
    for i, s in enumerate(slices):
        if isinstance(s, dict):
            n = Node(s, p.file, f"{p.field('slices')}[{i}]")
            shape = n.raw("shape")
            item = {"shape": shape, "twisted": n.boolean("twisted", False),
                    "name": n.string("name", None)}
            n.done()
        else:
            shape, item = s, {"shape": s}
        if not (isinstance(shape, list) and len(shape) == 3
                and all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                        for x in shape)):
            raise p.error(f"slices[{i}]", f"expected a shape [x, y, z] of positive whole "
                          f"numbers, got {s!r}")
        clean.append(item)
    slices = clean
    try:
        return ocs_pod(cubes=p.integer("cubes", 64, minimum=1),
                       node=p.string("node", "TPUv4-cube"), ocs=p.string("ocs", "Palomar-OCS"),
                       slices=slices, reconfigure_time_s=rt, catalog=catalog, name=name,
                       file=file)
    except InfeasibleError as e:
        raise TopologyError(str(e), file=file, field=p.field("slices")) from None


def _torus(p: Node, *, catalog, name, file, routing=None, twisted=False) -> Fabric:
    dims = p.int_list("dims")
    fn = B.twisted_torus if twisted else B.torus
    try:
        return fn(dims, accelerator=p.string("accelerator", "TPUv4"), catalog=catalog, name=name)
    except TopologyError as e:
        raise e.at(file=file, field=p.field("dims")) from None


def _twisted(p: Node, **kw) -> Fabric:
    return _torus(p, twisted=True, **kw)


def _scale_up(p: Node, *, catalog, name, file, routing=None) -> Fabric:
    return B.scale_up_cluster(p.string("node"), p.integer("count", 1, minimum=1),
                              catalog=catalog, name=name, file=file)


BUILDERS = {
    "leaf_spine": _leaf_spine,
    "fat_tree": _fat_tree,
    "rail_optimized": _rail_optimized,
    "rail_only": _rail_only,
    "multi_plane": _multi_plane,
    "ocs_pod": _ocs_pod,
    "torus": _torus,
    "twisted_torus": _twisted,
    "scale_up": _scale_up,
}


def load_topology(path: str | Path, overrides: list[str] | None = None) -> Fabric:
    """Read a proposal YAML and build its fabric.

    Parameters
    ----------
    path : str or Path
        The proposal file.
    overrides : list of str, optional
        ``a.b.c=value`` edits applied before validation, e.g. ``params.servers=64``.

    Returns
    -------
    Fabric

    Raises
    ------
    ConfigError
        (or its subclass TopologyError) naming the file and field, for any malformed or
        infeasible proposal.
    """
    doc = load_yaml(path)
    file = doc.file
    apply_overrides(doc.data, overrides, file=file)
    known = ("name", "description", "builder", "routing", "collnet", "ecmp_flows", "catalog",
             "params")
    for key in doc.keys():
        if key not in known:
            raise doc.error(key, f"unknown field {key!r} (known here: {', '.join(known)})")
    name = doc.string("name", Path(path).stem)
    doc.string("description", "")
    builder = doc.string("builder", choices=tuple(BUILDERS))
    routing = doc.string("routing", None, choices=POLICIES)
    collnet = doc.boolean("collnet", False)
    ecmp_flows = doc.integer("ecmp_flows", 1, minimum=1)
    if ecmp_flows > 64:
        raise doc.error("ecmp_flows", f"at most 64 flows per GPU pair, got {ecmp_flows}")
    extra = doc.string("catalog", None)
    if extra is not None:
        cdir = (Path(file).parent / extra)
        if not cdir.is_dir():
            raise doc.error("catalog", f"catalog directory {str(cdir)!r} not found")
        try:
            catalog = load_catalog(cdir)
        except ConfigError as e:
            raise e.at(file=file, field="catalog") from None
    else:
        catalog = load_catalog()
    params = doc.sub("params")
    doc.done()
    kw = {"catalog": catalog, "name": name, "file": file, "routing": routing}
    try:
        f = BUILDERS[builder](params, **kw)
    except TopologyError as e:
        raise e.at(file=file, field="params") from None
    except ConfigError as e:
        raise e.at(file=file, field="params") from None
    params.done()
    if routing:
        f.routing = routing
    f.collnet = collnet
    f.ecmp_flows = ecmp_flows
    import networkx as nx

    if f.ocs is None and f.graph.number_of_nodes() and not nx.is_weakly_connected(f.graph):
        parts = nx.number_weakly_connected_components(f.graph)
        raise TopologyError(f"the fabric is disconnected: {parts} separate parts (a proposal "
                            "must connect all its accelerators)", file=file, field="builder")
    f.meta["file"] = file
    return f
