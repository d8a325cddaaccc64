"""Where a sweep's points run: in this process, on a local process pool (fork), or on a
Ray cluster; each hands every finished row to ``on_row`` as it arrives.

Main assumption: a point is independent of every other (no shared state but the
read-only inputs), so any order and any worker gives the same rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

from ..errors import SimError
from .point import one_line, run_point, write_part
from .study import Task

__all__ = ["run_local", "run_ray", "RAY_INSTALL"]

RAY_INSTALL = ("the ray backend needs Ray, which is not installed: "
               "pip install 'fabsim[ray]' (or: pip install 'ray>=2.9')")


def run_local(tasks: list[Task], workers: int, on_row) -> None:
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            on_row(run_point(t))
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("fork")
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        pending = set()
        it = iter(tasks)
        for t in itertools.islice(it, 4 * workers):
            pending.add(ex.submit(run_point, t))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                on_row(fut.result())
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(ex.submit(run_point, nxt))
    except BrokenProcessPool:
        raise SimError("a worker process of the sweep died (killed or out of memory); "
                       "rerun the same sweep to resume where it stopped") from None
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def run_ray(tasks: list[Task], workers: int | None, address: str | None, on_row) -> None:
    try:
        import ray
    except ImportError:
        raise SimError(RAY_INSTALL) from None
    started = not ray.is_initialized()
    if started:
        kw = {"address": address} if address else {"num_cpus": workers} if workers else {}
        ray.init(ignore_reinit_error=True, log_to_driver=False, **kw)
    try:
        remote = ray.remote(max_retries=3)(run_point)
        # the driver writes the parts (a cluster's workers need not share its disk)
        refs = {remote.remote(dataclasses.replace(t, part_dir=None)): t for t in tasks}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for r in done:
                t = refs.pop(r)
                try:
                    row = ray.get(r)
                except Exception as e:  # a lost worker after its retries: not persisted
                    row = {"spec_hash": t.spec_hash, "status": "error", "version": t.version,
                           "error": one_line(f"ray: {type(e).__name__}: {e}"),
                           "wall_s": math.nan, "sim_s": math.nan, "_transient": True}
                if t.part_dir is not None and not row.get("_transient"):
                    write_part(Path(t.part_dir), row)
                on_row(row)
    finally:
        if started:
            ray.shutdown()
