"""The failure model of a training run: failure classes (root causes) with their rates,
what each scales with and whether it loses work, the restart policy and the checkpoint
settings; read from ``topologies/reliability/failures.yaml`` and an optional override.

Main assumption: interruptions of each class arrive as a Poisson process whose rate is the
class's published per-unit rate times the job's units (GPUs, hosts, network parts), i.e.
failures are independent and memoryless (no infant mortality, no wear-out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from ...spec import Node, load_yaml

__all__ = ["FailureClass", "FailureModel", "load_failures", "DEFAULT_FAILURES", "PER"]

DEFAULT_FAILURES = Path(__file__).resolve().parents[3] / "topologies" / "reliability" / \
    "failures.yaml"
PER = ("gpu", "host", "network", "job")
KINDS = ("fail-stop", "planned")


@dataclass(frozen=True)
class FailureClass:
    """One root cause: ``rate_per_unit_h`` interruptions per unit (``per``) per hour."""

    name: str
    per: str
    rate_per_unit_h: float
    kind: str
    repair_s: float
    estimate: tuple = ()


@dataclass(frozen=True)
class FailureModel:
    """Failure classes, restart policy and checkpoint settings (SI units)."""

    classes: tuple
    detection_s: float
    restart_s: float
    policy: str  # spares | repair
    bytes_per_param: float
    write_Bps: float
    read_Bps: float
    mode: str  # sync | async
    async_blocking: float
    interval_s: float | None  # None: Young/Daly
    files: tuple = field(default=())


def _class(n: Node, name: str, hours: float, units: dict) -> FailureClass:
    per = n.string("per", choices=PER)
    if "rate" in n and "count_54d" in n:
        raise n.error("rate", "give rate or count_54d, not both")
    if "count_54d" in n:
        cnt = n.number("count_54d", low=0.0)
        rate = cnt / (units[per] * hours)
    else:
        rate = n.number("rate", low=0.0)
    kind = n.string("kind", "fail-stop", choices=KINDS)
    repair = n.quantity("repair", "time", 0.0, allow_zero=True)
    est = tuple(n.str_list("estimate", []))
    n.mark_used("source")
    n.done()
    return FailureClass(name, per, float(rate), kind, float(repair), est)


def _merge(base: dict, over: dict) -> dict:
    """``over`` on ``base``: a class named in ``over`` replaces the bundled one whole; the
    other sections are merged key by key."""
    out = dict(base)
    for k, v in over.items():
        if k == "classes" and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_failures(path: str | Path | None = None) -> FailureModel:
    """The bundled failure model, with ``path``'s classes and settings over it.

    Raises
    ------
    ConfigError
        One line naming the file and field.
    """
    doc = load_yaml(DEFAULT_FAILURES)
    files = [doc.file]
    if path is not None:
        user = load_yaml(path)
        files.append(user.file)
        doc = Node(_merge(doc.data, user.data), user.file, "")
    hours = doc.number("llama3_exposure_hours", low=0.0, low_open=True)
    u = doc.sub("llama3_units")
    units = {k: u.number(k, low=0.0, low_open=True) for k in PER}
    u.done()
    cl = doc.sub("classes")
    classes = tuple(_class(cl.sub(name), name, hours, units) for name in cl.keys())
    if not classes:
        raise cl.error(None, "at least one failure class is needed")
    r = doc.sub("restart", {})
    c = doc.sub("checkpoint", {})
    raw_iv = c.raw("interval", "auto")
    interval = None if raw_iv == "auto" else c.quantity("interval", "time")
    m = FailureModel(
        classes=classes,
        detection_s=r.quantity("detection", "time", 180.0, allow_zero=True),
        restart_s=r.quantity("restart", "time", 600.0, allow_zero=True),
        policy=r.string("policy", "spares", choices=("spares", "repair")),
        bytes_per_param=c.number("bytes_per_param", 14.0, low=0.0, low_open=True),
        write_Bps=c.quantity("write_bandwidth", "bandwidth"),
        read_Bps=c.quantity("read_bandwidth", "bandwidth"),
        mode=c.string("mode", "sync", choices=("sync", "async")),
        async_blocking=c.number("async_blocking", 0.1, low=0.0, high=1.0),
        interval_s=interval, files=tuple(files))
    for n in (r, c):
        n.done()
    doc.done()
    return m


def check(m: FailureModel) -> None:
    """Cross-field checks (raise ConfigError)."""
    if sum(c.rate_per_unit_h for c in m.classes) <= 0:
        raise ConfigError("every failure class has a zero rate: nothing to simulate",
                          file=m.files[-1], field="classes")
