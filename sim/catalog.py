"""The hardware catalog: accelerators, server/rack nodes, links, switches, optics.

Data live in ``topologies/catalog/*.yaml``; this module reads them into frozen dataclasses
with SI values. Every entry must carry ``source`` and ``as_of``, and name in ``estimate``
the fields whose values are estimates rather than datasheet or measured numbers. Users
extend or override entries with their own catalog directory (a proposal's ``catalog:``
field), whose entries replace bundled ones with the same id.

Main assumption: bandwidths are per direction of one port or link; an accelerator's
scale-up bandwidth is the sum over its scale-up links.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import ConfigError, warn_implausible
from .modelspec import read_model
from .spec import Node, load_yaml

__all__ = [
    "Accelerator",
    "Link",
    "Switch",
    "Transceiver",
    "Cable",
    "NodeModel",
    "Protocol",
    "Library",
    "Catalog",
    "load_catalog",
    "BUNDLED_CATALOG",
]

BUNDLED_CATALOG = Path(__file__).resolve().parent.parent / "topologies" / "catalog"

PRECISIONS = ("bf16", "fp16", "fp8", "fp4", "int8", "tf32", "fp32")


@dataclass(frozen=True)
class Provenance:
    """Where an entry's numbers come from."""

    source: str
    as_of: str
    estimate: tuple[str, ...] = ()


def _provenance(n: Node, fields: set[str]) -> Provenance:
    source = n.string("source")
    if not source.strip():
        raise n.error("source", "must name where the numbers come from")
    as_of = str(n.raw("as_of")).strip()
    if not as_of:
        raise n.error("as_of", "must give the date of the source, e.g. 2024-03")
    est = tuple(n.str_list("estimate", []))
    for e in est:
        if e not in fields:
            raise n.error("estimate", f"names {e!r}, which is not a field of this entry")
    return Provenance(source, as_of, est)


@dataclass(frozen=True)
class Accelerator:
    """One accelerator chip/package (GPU, TPU, Trainium)."""

    id: str
    name: str
    vendor: str
    peak_flops: dict  # precision -> FLOP/s (dense)
    matmul_efficiency: dict  # precision -> fraction of dense peak achieved by large GEMMs
    hbm_capacity_B: float
    hbm_bandwidth_Bps: float
    scale_up_link: str
    scale_up_links: int
    scale_up_bandwidth_Bps: float  # per direction, all scale-up links
    tdp_W: float
    idle_power_W: float
    price_USD: float
    provenance: Provenance = field(compare=False)
    # fused (flash) attention kernels: forward and backward FLOP/s as fractions of the bf16
    # peak, FLOPs counted as FlashAttention's papers count them (causal halved, backward
    # 2.5 x forward); empty: attention runs at the matmul rate
    attention_efficiency: dict = field(default_factory=dict)
    # measured GEMM throughput over a grid of shapes (see read_gemm_shapes): how much of
    # the best shape's rate a smaller GEMM reaches; None: every GEMM at MAMF
    gemm_shapes: GemmShapes | None = field(default=None, compare=False)
    # matmul rate held once the chip is saturated at its power limit (a training step), as
    # fractions of the dense peak; empty: the burst rate of matmul_efficiency
    sustained_matmul_efficiency: dict = field(default_factory=dict)
    # streaming multiprocessors (NVIDIA) or compute units (AMD): the share communication
    # kernels take from overlapped GEMMs is counted in them; None: not modelled
    compute_units: int | None = None
    # the compute-model constants of the catalog this entry was loaded with (a user's
    # catalog may override them); None: the bundled catalog's
    compute: ComputeModel | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GemmShapes:
    """Measured matmul throughput on a grid of (m, n, k), each axis powers of two.

    ``rel[i, j, l]`` is the throughput at (grid[i], grid[j], grid[l]) over the grid's best;
    :func:`sim.compute.shape_efficiency` interpolates it in log2 space.
    """

    grid: tuple
    rel: np.ndarray = field(compare=False)
    file: str = ""


def read_gemm_shapes(path: Path) -> GemmShapes:
    """A CSV of ``m,n,k,tflops`` rows covering a full grid of powers of two."""
    import csv

    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(
                ln for ln in fh if ln.strip() and not ln.startswith("#"))]
        vals = {(int(r["m"]), int(r["n"]), int(r["k"])): float(r["tflops"]) for r in rows}
    except OSError as e:
        raise ConfigError(f"cannot read GEMM shape table ({e.strerror})",
                          file=str(path)) from None
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"expected columns m, n, k, tflops with numbers ({e})",
                          file=str(path)) from None
    grid = sorted({d for key in vals for d in key})
    if len(grid) < 2 or any(g <= 0 or g & (g - 1) for g in grid):
        raise ConfigError(f"m, n, k must be powers of two, got {grid}", file=str(path))
    rel = np.zeros((len(grid),) * 3)
    for i, m in enumerate(grid):
        for j, n in enumerate(grid):
            for l_, k in enumerate(grid):
                v = vals.get((m, n, k))
                if v is None or v <= 0:
                    raise ConfigError(f"no positive throughput for m={m} n={n} k={k}",
                                      file=str(path))
                rel[i, j, l_] = v
    return GemmShapes(tuple(grid), rel / rel.max(), str(path))


@dataclass(frozen=True)
class Link:
    """One link technology; bandwidth is the line rate per direction of one link."""

    id: str
    name: str
    kind: str  # scale-up | scale-out | host | optical-circuit
    protocol: str
    bandwidth_Bps: float
    latency_s: float
    protocol_efficiency: float
    provenance: Provenance = field(compare=False)
    # fraction of line rate reached when every GPU streams to many peers at once (NCCL
    # all-to-all through an NVSwitch); None: as protocol_efficiency
    p2p_efficiency: float | None = None


@dataclass(frozen=True)
class Switch:
    """A switch box or chip. ``radix`` ports at ``port_speed_Bps`` each."""

    id: str
    name: str
    vendor: str
    kind: str  # packet | nvswitch | ocs
    radix: int
    port_speed_Bps: float
    link: str
    latency_s: float
    power_W: float
    in_network_reduction: str  # none | sharp | nvls
    adaptive_routing: bool
    price_USD: float
    reconfigure_time_s: float | None
    reduction_efficiency: float  # in-network reduction throughput as a fraction of port rate
    provenance: Provenance = field(compare=False)


@dataclass(frozen=True)
class Protocol:
    """A collective library's wire protocol (NCCL LL, LL128, Simple)."""

    id: str
    name: str
    bandwidth_factor: float
    base_latency_s: float
    hop_latency_nvlink_s: float
    hop_latency_net_s: float
    thread_threshold_B: float
    threads: int
    chunked: bool
    provenance: Provenance = field(compare=False)


@dataclass(frozen=True)
class Library:
    """Collective library constants (channels, NVLS chunking, per-chunk overhead)."""

    max_channels: int
    nvls_channels: dict  # accelerator id (or "default") -> NVLS channels
    nvls_latency_s: float
    nvls_net_latency_s: float
    nvls_max_chunk_B: float
    ring_simple_max_chunk_B: float
    chunk_overhead_s: float
    sharp_latency_s: float
    provenance: Provenance = field(compare=False)
    # NCCL's tuner (tuning.cc): the proxy's per-step cost on multi-node rings, and the
    # LL protocol's bus-bandwidth cap by accelerator (or "default") for 1, 2, >2 nodes (GB/s)
    net_overhead_s: float = 0.0
    ll_max_busbw: dict = field(default_factory=dict)
    # NCCL's tree all-reduce bandwidth correction by protocol and log2(bytes / 64)
    tree_correction: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeModel:
    """Constants of the roofline compute model."""

    hbm_efficiency: float
    default_matmul_efficiency: float
    kernel_overhead_s: float
    provenance: Provenance = field(compare=False)
    # stragglers (sim.compute.straggler_factor): per-GPU sustained speed varies around
    # the catalog rate (lognormal sigma), and a fraction of servers run slower by a factor
    gpu_speed_sigma: float = 0.0
    slow_server_fraction: float = 0.0
    slow_server_slowdown: float = 0.0


@dataclass(frozen=True)
class Transceiver:
    id: str
    name: str
    speed_Bps: float
    ports: int
    reach_m: float
    power_W: float
    price_USD: float
    provenance: Provenance = field(compare=False)


@dataclass(frozen=True)
class Cable:
    id: str
    name: str
    medium: str  # copper | active-copper | fiber
    speed_Bps: float
    reach_m: float
    power_W: float
    price_USD: float
    provenance: Provenance = field(compare=False)


@dataclass(frozen=True)
class NodeModel:
    """A server, tray-rack or chip cube: accelerators plus their scale-up domain and NICs."""

    id: str
    name: str
    accelerator: str
    accelerators: int
    scale_up: str  # nvswitch | mesh | torus | none
    scale_up_switch: str | None
    scale_up_switches: int
    torus_dims: tuple[int, ...]
    nics: int
    nic_link: str | None
    host_link: str | None
    host_power_W: float
    price_USD: float
    provenance: Provenance = field(compare=False)


def _read_acc(key: str, n: Node) -> Accelerator:
    pf = n.sub("peak_flops")
    peak = {}
    for p in pf.keys():
        if p not in PRECISIONS:
            raise pf.error(p, f"unknown precision; expected one of {', '.join(PRECISIONS)}")
        peak[p] = pf.quantity(p, "flop_rate")
    if "bf16" not in peak:
        raise pf.error("bf16", "required field is missing")
    def fractions(field_: str) -> tuple[Node, dict]:
        # precision -> fraction of its peak, for precisions with a peak
        sub = n.sub(field_, {})
        out = {}
        for p in sub.keys():
            if p not in peak:
                raise sub.error(p, "no peak_flops given for this precision")
            out[p] = sub.number(p, low=0.0, high=1.0, low_open=True)
        return sub, out

    _, eff = fractions("matmul_efficiency")
    se, sustained = fractions("sustained_matmul_efficiency")
    for p, v in sustained.items():
        if p in eff and v > eff[p]:
            raise se.error(p, f"sustained {v:g} exceeds the burst matmul_efficiency {eff[p]:g}")
    ae = n.sub("attention_efficiency", {})
    attn = {d: ae.number(d, low=0.0, high=1.0, low_open=True) for d in ("fwd", "bwd")} \
        if ae.keys() else {}
    ae.done()
    shapes = None
    if "gemm_shapes" in n:
        rel = n.string("gemm_shapes")
        path = Path(n.file).parent / rel  # beside the entry's file, else the bundled one
        if not path.exists() and (BUNDLED_CATALOG / rel).exists():
            path = BUNDLED_CATALOG / rel
        try:
            shapes = read_gemm_shapes(path)
        except ConfigError as e:
            raise n.error("gemm_shapes", str(e)) from None
    acc = Accelerator(
        id=key,
        name=n.string("name"),
        vendor=n.string("vendor"),
        peak_flops=peak,
        matmul_efficiency=eff,
        hbm_capacity_B=n.quantity("hbm_capacity", "bytes"),
        hbm_bandwidth_Bps=n.quantity("hbm_bandwidth", "bandwidth"),
        scale_up_link=n.string("scale_up_link"),
        scale_up_links=n.integer("scale_up_links", minimum=1),
        scale_up_bandwidth_Bps=n.quantity("scale_up_bandwidth", "bandwidth"),
        tdp_W=n.quantity("tdp", "power"),
        idle_power_W=n.quantity("idle_power", "power"),
        price_USD=n.quantity("price", "money"),
        provenance=_provenance(n, set(n.keys())),
        attention_efficiency=attn,
        gemm_shapes=shapes,
        sustained_matmul_efficiency=sustained,
        compute_units=n.integer("compute_units", None, minimum=1),
    )
    if acc.idle_power_W > acc.tdp_W:
        raise n.error("idle_power", f"idle power {acc.idle_power_W:g} W exceeds TDP {acc.tdp_W:g} W")
    per_s = acc.hbm_bandwidth_Bps / acc.hbm_capacity_B  # every shipping part: 20-60 per s
    if not HBM_SWEEPS_PER_S[0] <= per_s <= HBM_SWEEPS_PER_S[1]:
        warn_implausible(f"{acc.hbm_bandwidth_Bps / 1e12:g} TB/s reads the whole "
                         f"{acc.hbm_capacity_B / 1e9:g} GB HBM {per_s:.1f} times a second; "
                         f"shipping accelerators do {HBM_SWEEPS_PER_S[0]:g}-"
                         f"{HBM_SWEEPS_PER_S[1]:g} (Tb/s written for TB/s?)",
                         file=n.file, field=n.field("hbm_bandwidth"))
    n.done()
    return acc


#: HBM bandwidth / capacity of shipping accelerators is 20-60 per second (A100 80 GB 25,
#: H100 42, MI300X 28, B200 42, TPU v5e 51); outside 8-200 a unit is almost surely wrong.
HBM_SWEEPS_PER_S = (8.0, 200.0)


def _read_link(key: str, n: Node) -> Link:
    link = Link(
        id=key,
        name=n.string("name"),
        kind=n.string("kind", choices=("scale-up", "scale-out", "host", "optical-circuit")),
        protocol=n.string("protocol", choices=("nvlink", "xgmi", "pcie", "infiniband", "roce",
                                               "ici", "neuronlink", "ocs")),
        bandwidth_Bps=n.quantity("bandwidth", "bandwidth"),
        latency_s=n.quantity("latency", "time", allow_zero=True),
        protocol_efficiency=n.number("protocol_efficiency", low=0.0, high=1.0, low_open=True),
        provenance=_provenance(n, set(n.keys())),
        p2p_efficiency=(n.number("p2p_efficiency", low=0.0, high=1.0, low_open=True)
                        if "p2p_efficiency" in n else None),
    )
    n.done()
    if link.p2p_efficiency is not None and link.p2p_efficiency > link.protocol_efficiency:
        raise n.error("p2p_efficiency", f"p2p_efficiency {link.p2p_efficiency:g} exceeds "
                      f"protocol_efficiency {link.protocol_efficiency:g}")
    return link


def _read_switch(key: str, n: Node) -> Switch:
    kind = n.string("kind", choices=("packet", "nvswitch", "ocs"))
    sw = Switch(
        id=key,
        name=n.string("name"),
        vendor=n.string("vendor"),
        kind=kind,
        radix=n.integer("radix", minimum=2),
        port_speed_Bps=n.quantity("port_speed", "bandwidth"),
        link=n.string("link"),
        latency_s=n.quantity("latency", "time", allow_zero=True),
        power_W=n.quantity("power", "power", allow_zero=True),
        in_network_reduction=n.string("in_network_reduction", "none",
                                      choices=("none", "sharp", "nvls")),
        adaptive_routing=n.boolean("adaptive_routing", False),
        price_USD=n.quantity("price", "money", allow_zero=True),
        reconfigure_time_s=n.quantity("reconfigure_time", "time", None),
        reduction_efficiency=n.number("reduction_efficiency", 1.0, low=0.0, high=1.0,
                                      low_open=True),
        provenance=_provenance(n, set(n.keys())),
    )
    n.done()
    return sw


def _read_transceiver(key: str, n: Node) -> Transceiver:
    t = Transceiver(
        id=key,
        name=n.string("name"),
        speed_Bps=n.quantity("speed", "bandwidth"),
        ports=n.integer("ports", 1, minimum=1),
        reach_m=n.quantity("reach", "length"),
        power_W=n.quantity("power", "power", allow_zero=True),
        price_USD=n.quantity("price", "money", allow_zero=True),
        provenance=_provenance(n, set(n.keys())),
    )
    n.done()
    return t


def _read_cable(key: str, n: Node) -> Cable:
    c = Cable(
        id=key,
        name=n.string("name"),
        medium=n.string("medium", choices=("copper", "active-copper", "fiber")),
        speed_Bps=n.quantity("speed", "bandwidth", 0.0) if "speed" in n else 0.0,
        reach_m=n.quantity("reach", "length"),
        power_W=n.quantity("power", "power", allow_zero=True),
        price_USD=n.quantity("price", "money", allow_zero=True),
        provenance=_provenance(n, set(n.keys())),
    )
    n.done()
    return c


def _read_node(key: str, n: Node) -> NodeModel:
    su = n.sub("scale_up")
    topo = su.string("topology", choices=("nvswitch", "mesh", "torus", "none"))
    nic = n.sub("nic", {})
    nm = NodeModel(
        id=key,
        name=n.string("name"),
        accelerator=n.string("accelerator"),
        accelerators=n.integer("accelerators", minimum=1),
        scale_up=topo,
        scale_up_switch=su.string("switch", None),
        scale_up_switches=su.integer("switches", 0, minimum=0),
        torus_dims=tuple(su.int_list("dims", [])),
        nics=nic.integer("count", 0, minimum=0),
        nic_link=nic.string("link", None),
        host_link=nic.string("host_link", None),
        host_power_W=n.quantity("host_power", "power", 0.0, allow_zero=True),
        price_USD=n.quantity("price", "money", 0.0, allow_zero=True),
        provenance=_provenance(n, set(n.keys())),
    )
    su.done()
    nic.done()
    n.done()
    if topo == "nvswitch" and (nm.scale_up_switch is None or nm.scale_up_switches < 1):
        raise su.error("switch", "an nvswitch scale-up domain needs `switch` and `switches`")
    if topo == "torus":
        prod = 1
        for d in nm.torus_dims:
            prod *= d
        if prod != nm.accelerators:
            raise su.error("dims", f"torus {nm.torus_dims} holds {prod} chips, but the node has "
                           f"{nm.accelerators} accelerators")
    return nm


def _read_protocol(key: str, n: Node) -> Protocol:
    pr = Protocol(
        id=key,
        name=n.string("name"),
        bandwidth_factor=n.number("bandwidth_factor", low=0.0, high=1.0, low_open=True),
        base_latency_s=n.quantity("base_latency", "time", allow_zero=True),
        hop_latency_nvlink_s=n.quantity("hop_latency_nvlink", "time", allow_zero=True),
        hop_latency_net_s=n.quantity("hop_latency_net", "time", allow_zero=True),
        thread_threshold_B=n.quantity("thread_threshold", "bytes"),
        threads=n.integer("threads", minimum=1),
        chunked=n.boolean("chunked"),
        provenance=_provenance(n, set(n.keys())),
    )
    n.done()
    return pr


def _channels_map(n: Node, key: str) -> dict:
    """An int, or a mapping accelerator id -> int with a ``default``."""
    if isinstance(n.raw(key), int):
        return {"default": n.integer(key, minimum=1)}
    m = n.sub(key)
    out = {k: m.integer(k, minimum=1) for k in m.keys()}
    if "default" not in out:
        raise m.error("default", "required field is missing")
    return out


def _read_compute(n: Node) -> ComputeModel:
    cm = ComputeModel(
        hbm_efficiency=n.number("hbm_efficiency", low=0.0, high=1.0, low_open=True),
        default_matmul_efficiency=n.number("default_matmul_efficiency", low=0.0, high=1.0,
                                           low_open=True),
        kernel_overhead_s=n.quantity("kernel_overhead", "time", allow_zero=True),
        provenance=_provenance(n, set(n.keys())),
        gpu_speed_sigma=n.number("gpu_speed_sigma", 0.0, low=0.0, high=0.5),
        slow_server_fraction=n.number("slow_server_fraction", 0.0, low=0.0, high=1.0),
        slow_server_slowdown=n.number("slow_server_slowdown", 0.0, low=0.0, high=10.0),
    )
    n.done()
    return cm


def _read_library(n: Node) -> Library:
    lib = Library(
        max_channels=n.integer("max_channels", minimum=1),
        nvls_channels=_channels_map(n, "nvls_channels"),
        nvls_latency_s=n.quantity("nvls_latency", "time", allow_zero=True),
        nvls_net_latency_s=n.quantity("nvls_net_latency", "time", allow_zero=True),
        nvls_max_chunk_B=n.quantity("nvls_max_chunk", "bytes"),
        ring_simple_max_chunk_B=n.quantity("ring_simple_max_chunk", "bytes"),
        chunk_overhead_s=n.quantity("chunk_overhead", "time", allow_zero=True),
        sharp_latency_s=n.quantity("sharp_latency", "time", allow_zero=True),
        provenance=_provenance(n, set(n.keys())),
        net_overhead_s=n.quantity("net_overhead", "time", 0.0, allow_zero=True),
        ll_max_busbw=_ll_caps(n),
        tree_correction=_tree_correction(n),
    )
    n.done()
    return lib


def _number_lists(n: Node, key: str, ok, expect: str, scale: float = 1.0) -> dict:
    """``key``: a mapping of name -> list of numbers, each list passing ``ok`` (else one
    line naming the entry and ``expect``); values times ``scale``, as tuples."""
    if key not in n:
        return {}
    m = n.sub(key)
    out = {}
    for k in m.keys():
        v = m.raw(k)
        if not (isinstance(v, list) and v and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) and ok(v)):
            raise m.error(k, f"expected {expect}, got {v!r}")
        out[k] = tuple(float(x) * scale for x in v)
    m.done()
    return out


def _tree_correction(n: Node) -> dict:
    """``tree_correction``: protocol -> factors in (0, 1] by log2(bytes / 64)."""
    return _number_lists(n, "tree_correction", lambda v: all(0 < x <= 1 for x in v),
                         "a list of factors in (0, 1]")


def _ll_caps(n: Node) -> dict:
    """``ll_max_busbw``: accelerator id (or "default") -> three GB/s figures, as B/s."""
    return _number_lists(n, "ll_max_busbw", lambda v: len(v) == 3 and all(x > 0 for x in v),
                         "three positive GB/s figures (1, 2, >2 nodes)", 1e9)


_SECTIONS = {
    "accelerators": _read_acc,
    "links": _read_link,
    "switches": _read_switch,
    "transceivers": _read_transceiver,
    "cables": _read_cable,
    "nodes": _read_node,
    "protocols": _read_protocol,
    "models": read_model,
}


@dataclass
class Catalog:
    """All catalog entries by id, per section."""

    accelerators: dict[str, Accelerator] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    switches: dict[str, Switch] = field(default_factory=dict)
    transceivers: dict[str, Transceiver] = field(default_factory=dict)
    cables: dict[str, Cable] = field(default_factory=dict)
    nodes: dict[str, NodeModel] = field(default_factory=dict)
    protocols: dict[str, Protocol] = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    library: Library | None = None
    compute: ComputeModel | None = None
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (section, id) -> file

    def get(self, section: str, key: str, *, file: str | None = None, field: str | None = None):
        """Look up an entry; a ConfigError naming the file/field and the known ids if absent."""
        table = getattr(self, section)
        if key not in table:
            known = ", ".join(sorted(table)) or "none"
            noun = {"switches": "switch", "accelerators": "accelerator",
                    "models": "model"}.get(section, section[:-1])
            raise ConfigError(f"unknown {noun} {key!r} (catalog has: {known})",
                              file=file, field=field)
        return table[key]

    def read_dir(self, directory: Path) -> None:
        """Read every ``*.yaml`` in ``directory``; later entries replace earlier ones."""
        for path in sorted(Path(directory).glob("*.yaml")):
            doc = load_yaml(path)
            for section in doc.keys():
                if section == "library":
                    self.library = _read_library(doc.sub("library"))
                    self.files[("library", "")] = str(path)
                    continue
                if section == "compute":
                    self.compute = _read_compute(doc.sub("compute"))
                    continue
                if section not in _SECTIONS:
                    raise doc.error(section, f"unknown catalog section; expected one of "
                                    f"{', '.join(_SECTIONS)}, library, compute")
                reader = _SECTIONS[section]
                for key, entry in doc.sub(section).items():
                    getattr(self, section)[key] = reader(key, entry)
                    self.files[(section, key)] = str(path)
            doc.mark_used(*doc.keys())

    def check(self) -> None:
        """Cross-references between entries (accelerator -> link, node -> accelerator, ...)."""
        for a in self.accelerators.values():
            f = self.files[("accelerators", a.id)]
            link = self.get("links", a.scale_up_link, file=f,
                            field=f"accelerators.{a.id}.scale_up_link")
            want = link.bandwidth_Bps * a.scale_up_links
            if abs(want - a.scale_up_bandwidth_Bps) > 0.02 * want:
                raise ConfigError(
                    f"{a.scale_up_bandwidth_Bps / 1e9:g} GB/s does not equal scale_up_links "
                    f"({a.scale_up_links}) x {link.id} bandwidth ({link.bandwidth_Bps / 1e9:g} "
                    f"GB/s) = {want / 1e9:g} GB/s",
                    file=f, field=f"accelerators.{a.id}.scale_up_bandwidth")
        for s in self.switches.values():
            self.get("links", s.link, file=self.files[("switches", s.id)],
                     field=f"switches.{s.id}.link")
        for nm in self.nodes.values():
            f = self.files[("nodes", nm.id)]
            self.get("accelerators", nm.accelerator, file=f, field=f"nodes.{nm.id}.accelerator")
            if nm.scale_up_switch:
                self.get("switches", nm.scale_up_switch, file=f,
                         field=f"nodes.{nm.id}.scale_up.switch")
            for attr, key in (("nic_link", "link"), ("host_link", "host_link")):
                v = getattr(nm, attr)
                if v:
                    self.get("links", v, file=f, field=f"nodes.{nm.id}.nic.{key}")


@lru_cache(maxsize=16)
def _load(dirs: tuple[str, ...]) -> Catalog:
    cat = Catalog()
    for d in dirs:
        cat.read_dir(Path(d))
    cat.check()
    for k, a in cat.accelerators.items():  # one catalog per run: its compute constants
        cat.accelerators[k] = dataclasses.replace(a, compute=cat.compute)
    return cat


def load_catalog(*extra_dirs: str | Path) -> Catalog:
    """Load the bundled catalog, then each of ``extra_dirs`` over it (cached).

    Returns
    -------
    Catalog
        Shared, cached object: treat it as read-only.
    """
    dirs = (str(BUNDLED_CATALOG),) + tuple(str(Path(d).resolve()) for d in extra_dirs
                                          if Path(d).resolve() != BUNDLED_CATALOG)
    return _load(dirs)
