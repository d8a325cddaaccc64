"""A design review's file: the proposals, the fleet's mix of training jobs and services
(each with its share of the fleet's accelerators), the services' SLOs, the economics and
the ranges of the assumptions the sensitivity analysis varies.

Main assumption: the fleet is divided among its jobs by share of accelerators; each
training job runs its layout (given, or planned per proposal) and each service its
replicas at the highest load that meets its SLO, so every class's cost per token is the
proposal's cost per accelerator-second over the class's tokens per accelerator-second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..cost import Assumptions, load_assumptions
from ..engine import NETWORKS
from ..errors import ConfigError
from ..spec import Node, load_yaml

__all__ = ["LAYOUTS", "Review", "SENSITIVITY_DEFAULTS", "ServiceEntry", "TrainingEntry",
           "load_review"]

# how a training entry's layout is chosen on each proposal: "given" runs the workload's
# layout (on part of the fabric if it has fewer GPUs); "auto" plans one per proposal;
# "given-or-auto" plans only where the given layout cannot run
LAYOUTS = ("given", "auto", "given-or-auto")

# assumption -> (low, high): relative changes ("+20%") or absolute values
SENSITIVITY_DEFAULTS = {
    "accelerator_price": ("-20%", "+20%"),
    "network_price": ("-30%", "+30%"),
    "electricity_usd_per_kwh": (0.04, 0.16),
    "pue": (1.1, 1.5),
    "accelerator_years": (3.0, 6.0),
    "utilization": (0.6, 1.0),
}


@dataclass
class TrainingEntry:
    """A training job of the fleet."""

    name: str
    workload: Path
    share: float
    layout: str = "given-or-auto"
    overrides: list = field(default_factory=list)  # --wset style, every proposal


@dataclass
class ServiceEntry:
    """An inference service of the fleet: its replicas run at the highest rate that meets
    the SLO (percentile ``percentile`` of TTFT and TPOT)."""

    name: str
    service: Path
    share: float
    slo_ttft_s: float | None
    slo_tpot_s: float | None
    percentile: float = 99.0
    overrides: list = field(default_factory=list)


@dataclass
class Review:
    """Everything a review runs (see ``reviews/*.yaml``)."""

    name: str
    proposals: list[Path]
    training: list[TrainingEntry]
    services: list[ServiceEntry]
    assumptions: Assumptions
    network: str = "flow"
    seeds: int = 2
    duration_s: float = 60.0
    sensitivity: dict = field(default_factory=lambda: dict(SENSITIVITY_DEFAULTS))
    file: str | None = None


def _path(n: Node, key: str, base: Path) -> Path:
    p = base / n.string(key)
    if not p.exists():
        raise n.error(key, f"file not found: {p}")
    return p


def _share(n: Node) -> float:
    return n.number("share", low=0.0, high=1.0, low_open=True)


def _training(n: Node, base: Path, k: int) -> TrainingEntry:
    e = TrainingEntry(n.string("name", f"training{k}"), _path(n, "workload", base), _share(n),
                      n.string("layout", "given-or-auto", choices=LAYOUTS),
                      n.str_list("set", []))
    n.done()
    return e


def _service(n: Node, base: Path, k: int) -> ServiceEntry:
    slo = n.sub("slo")
    e = ServiceEntry(n.string("name", f"service{k}"), _path(n, "service", base), _share(n),
                     slo.quantity("ttft", "time", None), slo.quantity("tpot", "time", None),
                     slo.number("percentile", 99.0, low=50.0, high=100.0),
                     n.str_list("set", []))
    if e.slo_ttft_s is None and e.slo_tpot_s is None:
        raise slo.error(None, "an SLO needs ttft and/or tpot (e.g. ttft: 2 s, tpot: 50 ms)")
    slo.done()
    n.done()
    return e


def _sensitivity(n: Node) -> dict:
    out = dict(SENSITIVITY_DEFAULTS)
    for key in n.keys():
        if key not in SENSITIVITY_DEFAULTS:
            raise n.error(key, f"unknown assumption; expected one of "
                          f"{', '.join(SENSITIVITY_DEFAULTS)}")
        raw = n.raw(key)
        if not (isinstance(raw, list) and len(raw) == 2):
            raise n.error(key, f"expected [low, high], got {raw!r}")
        out[key] = tuple(parse_change(x, n, key) for x in raw)
        if key.endswith("_price") and not all(isinstance(x, str) for x in out[key]):
            raise n.error(key, f"prices vary by a relative change, e.g. ['-20%', '+20%'], "
                          f"got {raw!r}")
        if key == "utilization" and not all(isinstance(x, float) and 0 < x <= 1
                                            for x in out[key]):
            raise n.error(key, f"utilization is a fraction in (0, 1], got {raw!r}")
    n.done()
    return out


def parse_change(x, n: Node, key: str):
    """A sensitivity bound: a number, or a relative change such as "+20%"."""
    if isinstance(x, bool):
        raise n.error(key, f"expected a number or a change like '+20%', got {x!r}")
    if isinstance(x, (int, float)):
        if x != x or x in (float("inf"), float("-inf")):
            raise n.error(key, f"expected a finite number, got {x!r}")
        return float(x)
    s = str(x).strip()
    if s.endswith("%"):
        try:
            v = float(s[:-1])
        except ValueError:
            raise n.error(key, f"expected a change like '+20%', got {x!r}") from None
        if not -100.0 < v < 1000.0:
            raise n.error(key, f"a change of {s} is out of range (-100%, +1000%)")
        return s
    raise n.error(key, f"expected a number or a change like '+20%', got {x!r}")


def load_review(path: str | Path) -> Review:
    """Read a review file; ConfigError (file and field) for anything malformed."""
    doc = load_yaml(path)
    base = Path(doc.file).parent
    doc.string("kind", "review", choices=("review",))
    props = doc.str_list("proposals")
    if not props:
        raise doc.error("proposals", "a review needs at least one proposal")
    proposals = []
    for i, p in enumerate(props):
        q = base / p
        if not q.exists():
            raise doc.error(f"proposals[{i}]", f"file not found: {q}")
        proposals.append(q)
    training = [_training(n, base, k) for k, n in enumerate(_items(doc, "training"))]
    services = [_service(n, base, k) for k, n in enumerate(_items(doc, "services"))]
    if not training and not services:
        raise doc.error("training", "a review needs at least one training job or service")
    total = sum(e.share for e in training + services)
    if abs(total - 1.0) > 1e-6:
        raise doc.error("services", f"the shares of the fleet add up to {total:g}, not 1")
    names = [e.name for e in training + services]
    if len(set(names)) != len(names):
        raise doc.error("training", f"two jobs share a name: {names}")
    assume = doc.raw("assumptions", None)
    a = load_assumptions(base / assume if assume else None)
    r = Review(doc.string("name", Path(path).stem), proposals, training, services, a,
               doc.string("network", "flow", choices=NETWORKS),
               doc.integer("seeds", 2, minimum=1),
               doc.quantity("duration", "time", 60.0),
               _sensitivity(doc.sub("sensitivity", {})), doc.file)
    doc.done()
    return r


def _items(doc: Node, key: str) -> list[Node]:
    raw = doc.raw(key, [])
    if not isinstance(raw, list):
        raise doc.error(key, f"expected a list of entries, got {type(raw).__name__}")
    out = []
    for k, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ConfigError(f"expected a mapping, got {item!r}", file=doc.file,
                              field=f"{key}[{k}]")
        out.append(Node(item, doc.file, f"{key}[{k}]"))
    return out
