"""Sweeps: a study file's grid of points x seeds run on a local process pool or on Ray,
one tidy row per point and seed.

A study (``experiments/studies/*.yaml``) names a proposal, a training workload and/or an
inference service, optional economic assumptions, and axes over any of their fields::

    kind: study
    name: oversubscription vs. step time
    topology: ../../topologies/dgx-h100-superpod-2to1.yaml
    workload: ../../workloads/llama3-70b-1k.yaml
    network: analytical
    axes:
      topology.params.oversubscription: [1, 2, 4]
      workload.parallelism.tp: [4, 8]
      assumptions.prices.H100-SXM: ["20000 USD", "30000 USD"]
      model:               # a group: its axes move together, crossed with the others
        workload.model: [llama3-70b, mixtral-8x7b]
        workload.parallelism.ep: [1, 8]
    mode: cross            # or zip
    quick:                 # a reduced grid (fabsim sweep --quick), for CI and notebooks
      axes: {topology.params.oversubscription: [1, 4]}
    seeds: [0]             # services draw their arrivals from them
    metrics: [step_time_s, mfu, usd_per_M_train_tokens]

Each point's *resolved spec* is the YAML text of every file after its overrides, with the
seed (services only), network model, duration and simulator version (with a fingerprint
of the package's code and bundled catalog, so an edited model reruns); its sha256 is the
row's ``spec_hash``. Finished points are written at once as ``out/parts/<hash>.parquet``
(atomic rename), so a killed sweep loses nothing finished and a rerun skips them; the end
writes ``out/results.parquet`` sorted by (point, seed).

Main assumption: a point's numbers depend on nothing but its resolved spec (the simulator
is deterministic), so rows do not depend on the worker, the worker count, the backend or
the order; only the timing columns (:data:`TIMING_COLUMNS`) vary from run to run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import pandas as pd

from ..errors import SimError
from .backends import RAY_INSTALL, run_local, run_ray
from .point import read_parts, run_point
from .study import (
    COST_METRICS,
    SERVING_METRICS,
    TRAINING_METRICS,
    Resolver,
    Study,
    Task,
    load_study,
    points,
)

__all__ = ["Study", "Task", "load_study", "points", "sweep", "run_point", "statuses",
           "TIMING_COLUMNS", "TRAINING_METRICS", "SERVING_METRICS", "COST_METRICS",
           "RAY_INSTALL"]

TIMING_COLUMNS = ("wall_s", "sim_s")
_STATUS = ("ok", "infeasible", "error")


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="pt", desc="sweep", smoothing=0.1)


# ------------------------------------------------------------------------------ sweep
def _version() -> str:
    """The simulator's version and a fingerprint of its code and bundled catalog: a part
    computed by other code (an edited model, a changed catalog price) is not reused."""
    from .. import __version__

    return f"fabsim {__version__}+{_fingerprint()}"


_FINGERPRINT: list = []


def _fingerprint() -> str:
    if not _FINGERPRINT:
        from ..catalog import BUNDLED_CATALOG

        pkg = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for root, pattern in ((pkg, "*.py"), (Path(BUNDLED_CATALOG), "*.yaml")):
            for p in sorted(root.rglob(pattern)):
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
        _FINGERPRINT.append(h.hexdigest()[:12])
    return _FINGERPRINT[0]


def _column(vals: list) -> list:
    """An axis' values as one Parquet-friendly column: scalars of one type kept, ints and
    floats as floats, anything else as JSON text."""
    kinds = {type(v) for v in vals}
    if len(kinds) == 1 and kinds <= {int, float, str, bool}:
        return list(vals)
    if kinds <= {int, float}:
        return [float(v) for v in vals]
    return [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in vals]


def sweep(study_or_path: Study | str | Path, out: str | Path | None = None,
          workers: int | None = None, backend: str = "local", address: str | None = None,
          progress: bool = True, quick: bool = False) -> pd.DataFrame:
    """Run every point x seed of a study and return one row each.

    Parameters
    ----------
    study_or_path : Study or path
        A :class:`Study` or a study file.
    out : path, optional
        Results directory: finished points go to ``out/parts/`` as they end and the
        table to ``out/results.parquet``; points already there (same spec hash) are not
        run again. Without it nothing is written and nothing resumed.
    workers : int, optional
        Processes of the local pool (default: every core); 1 runs in this process.
    backend : {'local', 'ray'}
    address : str, optional
        The Ray cluster (default: a local Ray).
    progress : bool
        A tqdm bar of points done, failures and time left.
    quick : bool
        Run the study file's reduced ``quick:`` grid (a path only; a Study is taken as
        loaded).

    Returns
    -------
    pandas.DataFrame
        Sorted by (point, seed): ``point, seed``, one column per axis, the study's
        metrics, ``status`` (ok | infeasible | error), ``error``, ``wall_s``, ``sim_s``
        (time inside the simulator), ``version``, ``spec_hash``. Rows are identical
        across runs, worker counts and backends except :data:`TIMING_COLUMNS`.

    Raises
    ------
    ConfigError
        A malformed study; SimError for an unknown backend or Ray missing.
    """
    study = study_or_path if isinstance(study_or_path, Study) else \
        load_study(study_or_path, quick=quick)
    if backend not in ("local", "ray"):
        raise SimError(f"unknown sweep backend {backend!r}: expected local or ray")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise SimError(RAY_INSTALL) from None
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise SimError(f"workers must be at least 1, got {workers}")
    version = _version()
    out = Path(out) if out is not None else None
    part_dir = str(out / "parts") if out is not None else None
    res = Resolver(study, version)
    pts = points(study)
    keys, hashes, todo = [], [], {}
    for i, p in enumerate(pts):
        for seed in study.seeds:
            t = res.task(p, seed, part_dir)
            keys.append((i, seed))
            hashes.append(t.spec_hash)
            todo.setdefault(t.spec_hash, t)
    rows = read_parts(out / "parts", set(todo)) if out is not None else {}
    tasks = [t for h, t in todo.items() if h not in rows]
    tasks.sort(key=lambda t: hashlib.sha256(t.topo_key.encode()).hexdigest())  # cache hits

    bar = _progress(len(tasks), progress)
    failed = [0]

    def on_row(row: dict) -> None:
        row.pop("_transient", None)
        rows[row["spec_hash"]] = row
        if row["status"] != "ok":
            failed[0] += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=failed[0], refresh=False)

    try:
        if backend == "ray":
            run_ray(tasks, workers, address, on_row)
        else:
            run_local(tasks, workers, on_row)
    finally:
        if bar is not None:
            bar.close()

    cols: dict = {"point": [i for i, _ in keys], "seed": [s for _, s in keys]}
    for a in study.axes:
        cols[a] = _column([pts[i][a] for i, _ in keys])
    recs = [rows[h] for h in hashes]
    for m in study.metrics:
        cols[m] = [float(r.get(m, math.nan)) if r.get(m) is not None else math.nan
                   for r in recs]
    for c in ("status", "error"):
        cols[c] = [str(r.get(c) or "") for r in recs]
    for c in TIMING_COLUMNS:
        cols[c] = [float(r[c]) if r.get(c) is not None else math.nan for r in recs]
    cols["version"] = [str(r.get("version") or version) for r in recs]
    cols["spec_hash"] = hashes
    df = pd.DataFrame(cols)
    df.attrs["study"] = study.name
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".results.{os.getpid()}.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, out / "results.parquet")
    return df


def statuses(df: pd.DataFrame) -> dict:
    """How many rows of a sweep table have each status."""
    return {s: int((df["status"] == s).sum()) for s in _STATUS}
