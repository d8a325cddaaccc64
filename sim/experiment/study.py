"""The study file: what a sweep varies, over which files, in which mode, with which
seeds and metrics; and each point's resolved spec and its hash.

Main assumption: a point's numbers depend only on its resolved spec (the YAML text of each
file after the point's overrides, the seed where a service draws from it, the network model,
the duration and the simulator version), so its sha256 names the point across runs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..engine import DEFAULT_NETWORK, NETWORKS
from ..errors import ConfigError
from ..spec import Node, apply_overrides, load_yaml

__all__ = ["Study", "Task", "load_study", "points", "ROOTS", "TRAINING_METRICS",
           "SERVING_METRICS", "COST_METRICS"]

ROOTS = ("topology", "workload", "service", "assumptions")
TRAINING_METRICS = ("step_time_s", "mfu", "hfu", "tokens_per_s", "usd_per_step",
                    "usd_per_M_train_tokens", "memory_per_gpu_bytes", "step_compute_s",
                    "step_tp_exposed_s", "step_ep_exposed_s", "step_cp_exposed_s",
                    "step_dp_exposed_s", "step_optimizer_s", "step_pp_bubble_and_wait_s")
SERVING_METRICS = ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s",
                   "throughput_tokens_per_s", "requests_per_s", "slo_attainment",
                   "busy_fraction", "usd_per_M_served_tokens")
COST_METRICS = ("capex_total_USD", "capex_network_USD", "network_power_W", "it_power_W", "facility_power_W",
                "usd_per_hour", "accelerators", "accelerator_busy")
DEFAULT_TRAINING = ("step_time_s", "mfu", "tokens_per_s", "usd_per_M_train_tokens")
DEFAULT_SERVING = ("ttft_p99_s", "tpot_p99_s", "throughput_tokens_per_s",
                   "usd_per_M_served_tokens")
DEFAULT_COST = ("capex_total_USD", "usd_per_hour")


# ----------------------------------------------------------------------------- the study
@dataclass(frozen=True)
class Study:
    """A parsed study file (paths absolute; axes in file order).

    Attributes
    ----------
    axes : dict
        ``root.path`` (``topology.params.oversubscription``) -> list of values.
    mode : {'cross', 'zip'}
    seeds : tuple of int
        Services draw their arrivals from each; a training-only point runs once and
        gives one row per seed.
    metrics : tuple of str
        The metric columns kept.
    duration_s : float
        A service's arrival window (s).
    groups : tuple of tuple of str
        Axes that move together (a zipped group inside a cross, or every axis under
        ``mode: zip``); an axis alone is a group of one. Empty: every axis its own group.
    quick : bool
        Whether the file's ``quick:`` grid replaced its axes (a reduced size for CI).
    """

    name: str
    file: str
    topology: str
    workload: str | None
    service: str | None
    assumptions: str | None
    network: str
    duration_s: float
    axes: dict
    mode: str
    seeds: tuple
    metrics: tuple
    groups: tuple = ()
    quick: bool = False


def load_study(path: str | Path, quick: bool = False) -> Study:
    """Read and check a study file.

    An axis may be a *group*: a name (no root prefix) mapping to paths whose lists have
    one length; its paths move together while the groups are crossed::

        axes:
          topology.params.oversubscription: [1, 2, 4]
          model:                               # zipped: (llama, 1), (mixtral, 8)
            workload.model: [llama3-70b, mixtral-8x7b]
            workload.parallelism.ep: [1, 8]

    ``quick:`` holds a reduced grid for CI and notebooks (``axes:`` replacing axes or
    groups of the same name, ``seeds:``, ``duration:``); ``quick=True`` uses it.

    Raises
    ------
    ConfigError
        One line naming the file and field: an unknown axis root, an axis over a file
        the study does not have, axes of unequal length under ``mode: zip``, an unknown
        metric, a missing file.
    """
    doc = load_yaml(path)
    base = Path(doc.file).resolve().parent
    doc.string("kind", choices=("study",))
    name = doc.string("name", Path(path).stem)

    def file_of(key: str, required: bool = False) -> str | None:
        v = doc.string(key) if required else doc.string(key, None)
        if v is None:
            return None
        p = (base / v).resolve()
        if not p.is_file():
            raise doc.error(key, f"file {v!r} not found (relative to the study file)")
        return str(p)

    topology = file_of("topology", required=True)
    workload, service = file_of("workload"), file_of("service")
    assumptions = file_of("assumptions")
    if workload is None and service is None:
        raise doc.error(None, "a study needs a `workload:` (training) and/or a `service:`")
    network = doc.string("network", DEFAULT_NETWORK, choices=NETWORKS)
    duration = doc.quantity("duration", "time", 30.0)
    mode = doc.string("mode", "cross", choices=("cross", "zip"))
    files = {"topology": topology, "workload": workload, "service": service,
             "assumptions": True}
    axes, groups = _axes(doc, files, "axes")
    seeds = _seeds(doc)
    q = doc.sub("quick", {})  # checked on every load, used with quick=True
    q_axes, q_groups = _axes(q, files, "axes")
    reduced = _replace_axes(q, axes, groups, q_axes, q_groups)
    q_seeds, q_duration = _seeds(q, seeds), q.quantity("duration", "time", duration)
    q.done()
    if quick:
        axes, seeds, duration = reduced, q_seeds, q_duration
    if mode == "zip":
        if any(len(g) > 1 for g in groups.values()):
            raise doc.error("axes", "groups of axes are for mode: cross (under mode: zip "
                            "every axis already moves together)")
        if len({len(v) for v in axes.values()}) > 1:
            lens = ", ".join(f"{k}: {len(v)}" for k, v in axes.items())
            raise doc.error("axes", f"under mode: zip every axis needs the same number of "
                            f"values, got {lens}")
        group_keys = (tuple(axes),) if axes else ()
    else:
        group_keys = tuple(tuple(g) for g in groups.values())
    known = set(COST_METRICS) | (set(TRAINING_METRICS) if workload else set()) | \
        (set(SERVING_METRICS) if service else set())
    default = (DEFAULT_TRAINING if workload else ()) + (DEFAULT_SERVING if service else ()) \
        + DEFAULT_COST
    metrics = tuple(doc.str_list("metrics", list(default)))
    for m in metrics:
        if m not in known:
            raise doc.error("metrics", f"unknown metric {m!r} for this study (known: "
                            f"{', '.join(sorted(known))})")
    doc.done()
    return Study(name=name, file=doc.file, topology=topology, workload=workload,
                 service=service, assumptions=assumptions, network=network,
                 duration_s=float(duration), axes=axes, mode=mode, seeds=seeds,
                 metrics=metrics, groups=group_keys, quick=bool(quick))


def _seeds(doc: Node, default: tuple = (0,)) -> tuple:
    raw_seeds = doc.raw("seeds", list(default))
    if isinstance(raw_seeds, int) and not isinstance(raw_seeds, bool) and raw_seeds >= 1:
        return tuple(range(raw_seeds))
    seeds = tuple(doc.int_list("seeds", list(default), minimum=0))
    if len(set(seeds)) != len(seeds):
        raise doc.error("seeds", f"seeds repeat: {list(seeds)}")
    return seeds


def _axis(doc: Node, files: dict, key: str, vals: Any, field: str) -> list:
    root, _, rest = key.partition(".")
    if root not in ROOTS or not rest or "" in rest.split("."):
        raise ConfigError(f"axis {key!r} must be <root>.<field path> with root one of "
                          f"{', '.join(ROOTS)} (or a group name over such paths)",
                          file=doc.file, field=field)
    if not files[root]:
        raise ConfigError(f"axis over the {root}, but the study has no `{root}:` file",
                          file=doc.file, field=field)
    if not isinstance(vals, list) or not vals:
        raise ConfigError(f"expected a non-empty list of values, got {vals!r}",
                          file=doc.file, field=field)
    return list(vals)


def _axes(doc: Node, files: dict, where: str) -> tuple[dict, dict]:
    """(axis path -> values, group name -> its axis paths) of ``doc[where]``."""
    raw = doc.raw(where, {})
    prefix = doc.field(where)
    if not isinstance(raw, dict):
        raise doc.error(where, f"expected a mapping of field path -> list of values, got "
                        f"{raw!r}")
    axes: dict = {}
    groups: dict = {}
    for key, vals in raw.items():
        key = str(key)
        if isinstance(vals, dict) and key.partition(".")[0] not in ROOTS:
            if not vals:
                raise ConfigError("a group needs at least one axis", file=doc.file,
                                  field=f"{prefix}.{key}")
            members = {}
            for k, v in vals.items():
                k = str(k)
                members[k] = _axis(doc, files, k, v, f"{prefix}.{key}.{k}")
            if len({len(v) for v in members.values()}) > 1:
                lens = ", ".join(f"{k}: {len(v)}" for k, v in members.items())
                raise ConfigError(f"the axes of a group move together and need the same "
                                  f"number of values, got {lens}", file=doc.file,
                                  field=f"{prefix}.{key}")
            groups[key] = list(members)
        else:
            members = {key: _axis(doc, files, key, vals, f"{prefix}.{key}")}
            groups[key] = [key]
        for k, v in members.items():
            if k in axes:
                raise ConfigError(f"axis {k!r} appears twice", file=doc.file,
                                  field=f"{prefix}.{key}")
            axes[k] = v
    return axes, groups


def _replace_axes(q: Node, axes: dict, groups: dict, q_axes: dict, q_groups: dict) -> dict:
    """The study's axes with the quick grid's in place of those of the same name."""
    axes = dict(axes)
    for name, members in q_groups.items():
        if name not in groups:
            raise q.error(f"axes.{name}", f"the quick grid can only reduce the study's "
                          f"axes or groups (known: {', '.join(groups)})")
        if set(members) != set(groups[name]):
            raise q.error(f"axes.{name}", f"must list the same axes as the study's group "
                          f"({', '.join(groups[name])})")
        for k in members:
            axes[k] = q_axes[k]
    return axes


def points(study: Study) -> list[dict]:
    """The study's points in order: dicts of axis -> value (cross: the first group varies
    slowest, the axes of a group move together; zip: the i-th value of every axis). No
    axes: one point, ``{}``."""
    keys = list(study.axes)
    if not keys:
        return [{}]
    if study.groups:
        groups = study.groups
    else:
        groups = (tuple(keys),) if study.mode == "zip" else tuple((k,) for k in keys)
    per_group = [list(zip(*(study.axes[k] for k in g), strict=True)) for g in groups]
    out = []
    for combo in itertools.product(*per_group):
        pt = {}
        for g, vals in zip(groups, combo, strict=True):
            pt.update(zip(g, vals, strict=True))
        out.append({k: pt[k] for k in keys})
    return out


# ------------------------------------------------------------------------- resolving
def _dump(data: Any) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True)


def _value_text(v: Any) -> str:
    """``v`` as YAML that reads back as ``v`` (an override's right-hand side)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    s = yaml.dump(v, Dumper=dumper, default_flow_style=True, width=1 << 30)
    s = s.strip()
    if s.endswith("\n..."):
        s = s[:-4].strip()
    elif s.endswith("..."):
        s = s[:-3].strip()
    return s


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one resolved point (picklable, small)."""

    spec_hash: str
    topology: str
    workload: str | None
    service: str | None
    assumptions: str | None
    overrides: dict  # root -> list of "a.b=v"
    topo_key: str  # the topology part of the resolved spec
    seed: int | None
    network: str
    duration_s: float
    version: str
    part_dir: str | None = None


class Resolver:
    """Resolved specs of a study's points: each file read once, overrides on a copy."""

    def __init__(self, study: Study, version: str):
        self.study = study
        self.version = version
        self.base = {}
        for root in ROOTS:
            path = getattr(study, root)
            if path is not None:
                self.base[root] = load_yaml(path).data
            elif root == "assumptions" and any(k.startswith("assumptions.") for k in study.axes):
                self.base[root] = {}

    def task(self, point: dict, seed: int | None, part_dir: str | None) -> Task:
        s = self.study
        over: dict = {r: [] for r in ROOTS}
        for k, v in point.items():
            root, _, rest = k.partition(".")
            over[root].append(f"{rest}={_value_text(v)}")
        texts = {}
        for root, data in self.base.items():
            if over[root]:
                data = apply_overrides(copy.deepcopy(data), over[root],
                                       file=getattr(s, root) or s.file)
            texts[root] = _dump(data)
        spec = {"files": texts, "network": s.network, "version": self.version}
        if s.service is not None:
            spec["seed"] = seed
            spec["duration_s"] = s.duration_s
        h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        return Task(spec_hash=h, topology=s.topology, workload=s.workload, service=s.service,
                    assumptions=s.assumptions,
                    overrides={r: tuple(o) for r, o in over.items() if o},
                    topo_key=texts["topology"], seed=seed if s.service else None,
                    network=s.network, duration_s=s.duration_s, version=self.version,
                    part_dir=part_dir)
