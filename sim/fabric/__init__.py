"""Fabric layer: builders of AI-cluster interconnects as networkx graphs, routing, summaries.

See :mod:`sim.fabric.fabric` for the graph conventions and :mod:`sim.fabric.builders` for
the families of topology.
"""

from .builders import (
    Tier,
    clos,
    fat_tree,
    leaf_spine,
    multi_plane,
    nvl72_rack,
    nvswitch_node,
    rail_only,
    rail_optimized,
    scale_up_cluster,
    torus,
    twisted_torus,
    xgmi_mesh_node,
)
from .fabric import CompiledFabric, Fabric, TorusDomain
from .ocs import OCSPod, Slice, ocs_pod
from .proposal import BUILDERS, load_topology
from .routing import Route, Router, flow_hash
from .summary import bisection_per_accelerator, format_summary, summarize, tier_oversubscription

__all__ = [
    "BUILDERS",
    "CompiledFabric",
    "Fabric",
    "OCSPod",
    "Route",
    "Router",
    "Slice",
    "Tier",
    "TorusDomain",
    "bisection_per_accelerator",
    "clos",
    "fat_tree",
    "flow_hash",
    "format_summary",
    "leaf_spine",
    "load_topology",
    "multi_plane",
    "nvl72_rack",
    "nvswitch_node",
    "ocs_pod",
    "rail_only",
    "rail_optimized",
    "scale_up_cluster",
    "summarize",
    "tier_oversubscription",
    "torus",
    "twisted_torus",
    "xgmi_mesh_node",
]
