"""The layout search: which parallel layout (TP, PP, virtual stages, DP, CP, EP, ZeRO stage,
micro-batch, recomputation) trains a workload fastest (or cheapest) on a fabric.

The search runs in stages, each cheaper than the next:

1. **Enumerate** every combination of the fields a workload leaves ``auto`` (the others
   stay as given): tp dividing the scale-up domain, pp and the data-parallel size derived
   from the job's GPUs, virtual stages splitting each stage's layers evenly (pp >= 2), cp
   only for sequences of 8K tokens or more (each rank keeping >= 2K tokens), ep only for
   MoE models (dividing the experts), ZeRO 1 (Megatron's distributed optimizer) or 3,
   micro-batches 1, 2, 4 and no, selective or full recomputation.
2. **Check** each against :func:`~.spec.check` (heads, layers, batch, experts) and the
   memory model (:func:`~.memory.check_memory`): no simulation.
3. **Dominance**: of layouts that differ only in recomputation and ZeRO stage, keep those
   no other fitting one beats on both (less recomputation and a lower ZeRO stage cost less
   time; they only cost memory).
4. **Bound**: a lower bound of each survivor's step time from its first and last stages'
   costs (:class:`~.stage_cost.StageCost`: every op of the stage back to back, plus the
   warm-up its first forward waits through); survivors are simulated in order of it, and
   one whose bound exceeds the ``max(top, rank)``-th best simulated time so far is skipped:
   it could not have made that list.
5. **Simulate** the rest with the analytical network model, then re-simulate the best
   ``rank`` with the flow model and rank them by it.

Main assumption: the time a layout loses to recomputation or to ZeRO-3's parameter
gathers is never won back elsewhere; for the bound, the stages between the first and the
last cost what the first does when every layer has the same shape.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field

import pandas as pd

from ...compute import hbm_time
from ...errors import ConfigError, InfeasibleError
from ...fabric.fabric import Fabric
from .memory import check_memory, memory_per_gpu
from .parallelism import rank_grid
from .spec import AUTO_FIELDS, TrainingWorkload, check
from .stage_cost import StageCost

__all__ = ["OBJECTIVES", "PlanResult", "candidates", "format_plan", "layout_label",
           "resolve", "search"]

OBJECTIVES = ("time", "cost")
RECOMPUTE = ("none", "selective", "full")  # in order of time they add
MICRO_BATCHES = (1, 2, 4)
ZERO_STAGES = (1, 3)
CP_MIN_SEQ = 8192  # context parallelism only for sequences this long ...
CP_MIN_LOCAL = 2048  # ... and each CP rank keeps at least this many tokens
LAYOUT_COLUMNS = ["tp", "pp", "vpp", "dp", "cp", "ep", "zero", "micro_batch", "recompute",
                  "schedule"]
_BREAKDOWN = {  # breakdown key -> (what the faster one has, what the slower one has)
    "pp_bubble_and_wait": ("a smaller pipeline bubble", "a larger pipeline bubble"),
    "compute": ("less computation", "more computation"),
    "tp_exposed": ("less exposed TP communication", "more exposed TP communication"),
    "dp_exposed": ("less exposed data-parallel communication",
                   "more exposed data-parallel communication"),
    "ep_exposed": ("less exposed EP all-to-all", "more exposed EP all-to-all"),
    "cp_exposed": ("less exposed CP exchange", "more exposed CP exchange"),
    "optimizer": ("a shorter optimizer step", "a longer optimizer step"),
}


@dataclass
class PlanResult:
    """What a layout search found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per simulated candidate, best first: the layout fields (``LAYOUT_COLUMNS``),
        ``label``, ``step_time_s`` (on ``network``), ``step_time_analytical_s``,
        ``step_time_flow_s`` (NaN unless re-ranked), ``mfu``, ``memory_per_gpu_GiB``,
        ``gpu_s_per_token``, the breakdown (``compute_s``, ``tp_exposed_s``, ...),
        ``network`` and ``status`` (``ok`` or ``infeasible``, with ``error``).
    counts : dict
        Candidates ``enumerated``, ``pruned_check``, ``pruned_memory``,
        ``pruned_dominated``, ``pruned_bound``, ``simulated_analytical``,
        ``infeasible_simulated`` and ``simulated_flow``.
    wall_time_s : float
        Wall-clock time of the search (s).
    best : TrainingWorkload
        The chosen layout, resolved (nothing ``auto``).
    best_result : TrainingResult
        Its step on the flow model.
    why : str
        Why the best beats the runner-up, from their breakdowns.
    objective : str
        ``time`` (step time) or ``cost`` (GPU-seconds per token).
    """

    table: pd.DataFrame
    counts: dict
    wall_time_s: float
    best: TrainingWorkload
    best_result: object
    why: str
    objective: str = "time"
    workload: TrainingWorkload | None = None
    fabric_name: str = ""
    extra: dict = field(default_factory=dict)


def layout_label(w: TrainingWorkload) -> str:
    """A short name of ``w``'s layout, e.g. ``TP8 PP8 VP3 DP16 mb1 ZeRO-1 rc=none``."""
    parts = [f"TP{w.tp}", f"PP{w.pp}"]
    if w.vpp > 1:
        parts.append(f"VP{w.vpp}")
    parts.append(f"DP{w.dp}")
    if w.cp > 1:
        parts.append(f"CP{w.cp}")
    if w.ep > 1:
        parts.append(f"EP{w.ep}")
    parts += [f"mb{w.micro_batch}", f"ZeRO-{w.zero}", f"rc={w.recompute}"]
    return " ".join(parts)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _job_gpus(fabric: Fabric, w: TrainingWorkload) -> int:
    return w.n_gpus if w.n_gpus is not None else fabric.n_accelerators - w.first_gpu


def _domain_size(fabric: Fabric, w: TrainingWorkload, gpus: int) -> int:
    """The smallest scale-up domain among the job's GPUs (1 where a GPU has none)."""
    accs = fabric.accelerators[w.first_gpu:w.first_gpu + gpus]
    sizes = {len(fabric.domains[fabric.domain_of[a]]) if a in fabric.domain_of else 1
             for a in accs}
    return min(sizes) if sizes else 1


def _options(fabric: Fabric, w: TrainingWorkload) -> dict:
    """The values each field may take: the given one, or the search's choices."""
    a, m = w.auto, w.model
    gpus = _job_gpus(fabric, w)
    dom = _domain_size(fabric, w, gpus)
    long_seq = w.seq_len >= CP_MIN_SEQ
    opts = {
        "tp": [t for t in _divisors(dom) if gpus % t == 0] if "tp" in a else [w.tp],
        "pp": [p for p in _divisors(gpus) if p <= m.layers] if "pp" in a else [w.pp],
        "cp": ([c for c in _divisors(gpus) if w.seq_len // c >= CP_MIN_LOCAL]
               if long_seq else [1]) if "cp" in a else [w.cp],
        "ep": ([e for e in _divisors(m.moe.experts) if e <= gpus] if m.moe is not None
               else [1]) if "ep" in a else [w.ep],
        "zero": list(ZERO_STAGES) if "zero" in a else [w.zero],
        "micro_batch": list(MICRO_BATCHES) if "micro_batch" in a else [w.micro_batch],
        "recompute": list(RECOMPUTE) if "recompute" in a else [w.recompute],
    }
    return opts


def _vpp_options(w: TrainingWorkload, pp: int) -> list[int]:
    if "vpp" not in w.auto:
        return [w.vpp]
    if pp < 2 or w.schedule == "gpipe" or w.first_stage_layers is not None or \
            w.last_stage_layers is not None:
        return [1]
    if w.model.layers % pp:
        return [1]  # the check will say why
    return _divisors(w.model.layers // pp)


def _enumerate(fabric: Fabric, w: TrainingWorkload) -> tuple[int, list, list]:
    """(combinations enumerated, those that pass check, the first check failure)."""
    opts = _options(fabric, w)
    gpus = _job_gpus(fabric, w)
    n = 0
    ok: list[TrainingWorkload] = []
    first_err: list[str] = []
    for tp, pp, cp in itertools.product(opts["tp"], opts["pp"], opts["cp"]):
        if "dp" in w.auto:
            if gpus % (tp * pp * cp):
                continue  # not a layout of this many GPUs at all
            dp = gpus // (tp * pp * cp)
        else:
            dp = w.dp
        for vpp, ep, zero, mb, rc in itertools.product(
                _vpp_options(w, pp), opts["ep"], opts["zero"], opts["micro_batch"],
                opts["recompute"]):
            n += 1
            sched = w.schedule
            if "vpp" in w.auto or "pp" in w.auto:
                sched = "interleaved" if vpp > 1 else (
                    "1f1b" if sched == "interleaved" else sched)
            c = dataclasses.replace(w, tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp, zero=zero,
                                    micro_batch=mb, recompute=rc, schedule=sched,
                                    auto=frozenset())
            try:
                check(c, fabric)
            except InfeasibleError as e:
                if not first_err:
                    first_err.append(str(e))
                continue
            ok.append(c)
    return n, ok, first_err


def candidates(fabric: Fabric, w: TrainingWorkload) -> list[TrainingWorkload]:
    """Every legal layout of ``w`` on ``fabric``: its ``auto`` fields over the search's
    choices (see the module doc), the other fields as given; each passes
    :func:`~.spec.check`.

    Parameters
    ----------
    fabric : Fabric
    w : TrainingWorkload

    Returns
    -------
    list of TrainingWorkload
        Resolved layouts (``auto`` empty); ``[w]`` checked if nothing is ``auto``.
    """
    return _enumerate(fabric, w)[1]


def _accelerator(fabric: Fabric, w: TrainingWorkload):
    a = fabric.accelerators[w.first_gpu]
    return fabric.catalog.accelerators[fabric.graph.nodes[a]["model"]]


def _rc_rank(w: TrainingWorkload) -> int:
    return RECOMPUTE.index(w.recompute)


def _undominated(fits: list[TrainingWorkload]) -> list[TrainingWorkload]:
    """Drop layouts that another fitting one with the same layout otherwise, no more
    recomputation and no higher ZeRO stage (one of them strictly less) beats."""
    groups: dict[tuple, list[TrainingWorkload]] = {}
    for c in fits:
        key = (c.tp, c.pp, c.vpp, c.dp, c.cp, c.ep, c.micro_batch, c.schedule)
        groups.setdefault(key, []).append(c)
    out = []
    for g in groups.values():
        for b in g:
            if not any(a is not b and a.zero <= b.zero and _rc_rank(a) <= _rc_rank(b)
                       for a in g):
                out.append(b)
    return out


def _uniform_layers(w: TrainingWorkload) -> bool:
    m = w.model
    if w.first_stage_layers is not None or w.last_stage_layers is not None or \
            w.split_counts_embedding_and_loss:
        return False
    return m.moe is None or m.moe.dense_layers == 0


def lower_bound(fabric: Fabric, w: TrainingWorkload) -> float:
    """A lower bound of ``w``'s step time (s): its first and its last stage each running
    every op back to back (compute, exposed TP and CP) and the optimizer step; the last
    stage also waits for the first micro-batch's forward through the stages before it
    (taken at the first stage's cost when every layer has the same shape)."""
    grid = rank_grid(w, fabric)
    M, V, P = w.micro_batches, w.vpp, w.pp
    shard = w.dp * w.cp if w.zero >= 1 else 1
    bounds = []
    f0 = 0.0
    for s in sorted({0, P - 1}):
        st = StageCost(w, fabric, s, list(grid[s, 0, 0, :]))
        f_op = st.compute_fwd * st.ep_slow + st.tp_fwd + st.cp_fwd
        b_op = st.compute_bwd * st.ep_slow + st.tp_bwd + st.cp_bwd
        work = M * V * (f_op + b_op) + hbm_time(st.acc, st.params / shard * 4 * 8) + 20e-6
        if s == P - 1:
            work += M * (st.head_fwd + st.head_bwd) * st.ep_slow
        if s == 0:
            f0 = f_op
        if s == P - 1 and P > 1 and _uniform_layers(w):
            work += (P - 1) * f0
        bounds.append(work)
    return max(bounds)


def _score(objective: str, step_s: float, w: TrainingWorkload) -> float:
    if objective == "cost":
        return step_s * w.gpus / (w.global_batch * w.seq_len)  # GPU-seconds per token
    return step_s


def _row(c: TrainingWorkload, r, network: str) -> dict:
    row = {k: getattr(c, k) for k in LAYOUT_COLUMNS}
    row["label"] = layout_label(c)
    row.update(step_time_s=r.step_time_s, mfu=r.mfu,
               memory_per_gpu_GiB=r.memory_per_gpu_bytes / 2**30,
               gpu_s_per_token=r.step_time_s * c.gpus / (c.global_batch * c.seq_len),
               network=network, status="ok", error="")
    row.update({f"{k}_s": v for k, v in r.breakdown.items() if k != "critical_stage"})
    return row


def _why(best: dict, runner: dict | None, objective: str) -> str:
    """One or two sentences: why ``best`` beats ``runner`` (table rows)."""
    if runner is None:
        return f"{best['label']} is the only layout that fits and runs."
    t1, t2 = best["step_time_s"], runner["step_time_s"]
    pct = 100 * (t2 - t1) / t2 if t2 > 0 else 0.0
    diffs = {k: runner[f"{k}_s"] - best[f"{k}_s"] for k in _BREAKDOWN}
    gain = max(diffs, key=diffs.get)
    loss = min(diffs, key=diffs.get)
    what = "per step" if objective == "time" else "per step, at the same GPU count"
    s = (f"{best['label']} beats {runner['label']} by {pct:.1f}% ({t1:.3f} s vs {t2:.3f} s "
         f"{what}, {best['network']} model): {_BREAKDOWN[gain][0]} "
         f"({best[gain + '_s']:.3f} s vs {runner[gain + '_s']:.3f} s)")
    if diffs[loss] < -0.05 * max(diffs[gain], 1e-12):
        s += (f", despite {_BREAKDOWN[loss][1]} ({best[loss + '_s']:.3f} s vs "
              f"{runner[loss + '_s']:.3f} s)")
    if objective == "cost" and best.get("gpus") != runner.get("gpus"):
        s += f"; cost is GPU-seconds per token ({best['gpu_s_per_token']:.3g} vs " \
             f"{runner['gpu_s_per_token']:.3g})"
    return s + "."


def _fitting(fabric: Fabric, w: TrainingWorkload, legal: list, what: str) -> list:
    """The legal layouts that fit in HBM; InfeasibleError with the smallest if none."""
    acc = _accelerator(fabric, w)
    fits, smallest = [], None
    for c in legal:
        try:
            check_memory(c, acc.hbm_capacity_B, acc.id)
        except InfeasibleError:
            tot = max(memory_per_gpu(c, s)["total"] for s in range(c.pp))
            if smallest is None or tot < smallest[0]:
                smallest = (tot, c)
            continue
        fits.append(c)
    if not fits:
        tot, c = smallest
        raise InfeasibleError(
            f"{w.file + ': ' if w.file else ''}memory: no layout of {what} fits: the "
            f"smallest of {len(legal)} legal layouts ({layout_label(c)}) needs "
            f"{tot / 2**30:.1f} GiB per GPU but {acc.id} has "
            f"{acc.hbm_capacity_B / 2**30:.1f} GiB")
    return fits


def _simulate_bounded(fabric: Fabric, bounded: list, objective: str, keep: int):
    """Simulate (analytical) in order of the lower bound, skipping a layout whose bound
    exceeds the ``keep``-th best so far: (rows, results, skipped, infeasible)."""
    from . import simulate_training  # the package's entry point (it imports this module)

    rows, results, best_scores = [], [], []
    pruned_bound = infeasible = 0
    for lb, _, c in bounded:
        if len(best_scores) >= keep and _score(objective, lb, c) > best_scores[keep - 1]:
            pruned_bound += 1
            continue
        try:
            r = simulate_training(fabric, c, network="analytical")
        except InfeasibleError as e:
            infeasible += 1
            rows.append({**{k: getattr(c, k) for k in LAYOUT_COLUMNS},
                         "label": layout_label(c), "network": "analytical",
                         "status": "infeasible", "error": str(e)})
            results.append(None)
            continue
        rows.append(_row(c, r, "analytical"))
        results.append((c, r))
        best_scores.append(_score(objective, r.step_time_s, c))
        best_scores.sort()
    return rows, results, pruned_bound, infeasible


def _rerank_flow(fabric: Fabric, best: list[int], rows: list, results: list):
    """Re-simulate the rows ``best`` with the flow model (rows updated in place):
    ({row: flow result}, {row: its analytical row})."""
    from . import simulate_training

    flow_res, an_rows = {}, {}
    for i in best:
        c, _ = results[i]
        r = simulate_training(fabric, c, network="flow")
        an_rows[i] = rows[i]
        rows[i] = _row(c, r, "flow")
        rows[i]["step_time_analytical_s"] = an_rows[i]["step_time_s"]
        rows[i]["step_time_flow_s"] = r.step_time_s
        flow_res[i] = r
    return flow_res, an_rows


def search(fabric: Fabric, w: TrainingWorkload, *, objective: str = "time", top: int = 10,
           rank: int = 5) -> PlanResult:
    """Search ``w``'s ``auto`` fields for the fastest (``objective="time"``) or cheapest
    (``"cost"``: GPU-seconds per token) layout that fits, as the module doc describes.

    Parameters
    ----------
    fabric : Fabric
        Loaded once; every candidate runs on it.
    w : TrainingWorkload
        Its ``auto`` fields are searched (none: just ``w``).
    objective : {'time', 'cost'}
    top : int
        Rows the table must rank exactly (the bound keeps simulating until it has them).
    rank : int
        How many of the analytical best are re-simulated with the flow model.

    Returns
    -------
    PlanResult

    Raises
    ------
    ConfigError
        Unknown objective, or ``top``/``rank`` below 1.
    InfeasibleError
        No layout passes the checks, fits in memory or runs: with the numbers (the
        smallest memory found vs the HBM).
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got "
                          f"{objective!r}", field="objective")
    if top < 1 or rank < 1:
        raise ConfigError(f"top and rank must be at least 1, got {top} and {rank}")
    t_start = time.perf_counter()
    n_enum, legal, first_err = _enumerate(fabric, w)
    counts = {"enumerated": n_enum, "pruned_check": n_enum - len(legal)}
    what = f"{w.model.name} on {_job_gpus(fabric, w)} GPUs"
    if not legal:
        raise InfeasibleError(f"no legal layout of {what} among {n_enum} enumerated"
                              + (f"; e.g. {first_err[0]}" if first_err else ""))
    fits = _fitting(fabric, w, legal, what)
    counts["pruned_memory"] = len(legal) - len(fits)
    survivors = _undominated(fits)
    counts["pruned_dominated"] = len(fits) - len(survivors)
    bounded = sorted(((lower_bound(fabric, c), i, c) for i, c in enumerate(survivors)),
                     key=lambda x: (_score(objective, x[0], x[2]), x[1]))
    rows, results, pruned_bound, infeasible = _simulate_bounded(
        fabric, bounded, objective, max(top, rank))
    counts.update(pruned_bound=pruned_bound, simulated_analytical=len(rows),
                  infeasible_simulated=infeasible)
    ok = [i for i, x in enumerate(results) if x is not None]
    if not ok:
        raise InfeasibleError(f"no layout of {what} runs: {rows[0]['error']}")
    ok.sort(key=lambda i: rows[i]["gpu_s_per_token" if objective == "cost"
                                  else "step_time_s"])
    flow_res, an_rows = _rerank_flow(fabric, ok[:rank], rows, results)
    counts["simulated_flow"] = len(flow_res)
    for i in ok[rank:]:
        rows[i]["step_time_analytical_s"] = rows[i]["step_time_s"]
    key = "gpu_s_per_token" if objective == "cost" else "step_time_s"
    order = sorted(flow_res, key=lambda i: (rows[i][key], i)) + ok[rank:] + \
        [i for i, x in enumerate(results) if x is None]
    table = pd.DataFrame([rows[i] for i in order])
    if "step_time_flow_s" not in table:
        table["step_time_flow_s"] = float("nan")
    table.insert(0, "rank", range(1, len(table) + 1))
    best_i = order[0]
    best = results[best_i][0]
    if len(ok) < 2:
        why = _why(rows[best_i], None, objective)
    elif order[1] in flow_res:
        why = _why(rows[best_i], rows[order[1]], objective)
    else:  # the runner-up has only its analytical step: compare like with like
        why = _why(an_rows[best_i], rows[order[1]], objective)
    return PlanResult(table=table, counts=counts, wall_time_s=time.perf_counter() - t_start,
                      best=best, best_result=flow_res[best_i], why=why,
                      objective=objective, workload=w, fabric_name=fabric.name)


def resolve(fabric: Fabric, w: TrainingWorkload, **kwargs) -> TrainingWorkload:
    """``w`` itself when nothing is ``auto``, else the best layout :func:`search` finds
    (keyword arguments go to it)."""
    if not w.auto:
        return w
    return search(fabric, w, **kwargs).best


def format_plan(result: PlanResult, top: int = 10) -> str:
    """The text a command line prints: what was searched, the counts and wall time, the
    ``top`` layouts (step time, MFU, memory) and why the best wins."""
    t = result.table
    w = result.workload
    c = result.counts
    lines = []
    if w is not None:
        searched = ", ".join(AUTO_FIELDS[k] for k in AUTO_FIELDS if k in w.auto) or \
            "nothing (the layout is given)"
        lines.append(f"Layout search: {w.name} ({w.model.name}, {result.best.gpus} GPUs) on "
                     f"{result.fabric_name}; objective: {result.objective}; searched: "
                     f"{searched}")
    lines.append(
        f"Candidates: {c['enumerated']:,} enumerated; {c['pruned_check']:,} fail the layout "
        f"check; {c['pruned_memory']:,} do not fit in memory; {c['pruned_dominated']:,} "
        f"dominated (same layout fits with less recomputation or a lower ZeRO stage); "
        f"{c['pruned_bound']:,} skipped by the lower bound; {c['simulated_analytical']:,} "
        f"simulated (analytical network model"
        + (f", {c['infeasible_simulated']} infeasible" if c["infeasible_simulated"] else "")
        + f"), best {c['simulated_flow']} re-ranked on the flow model; "
        f"{result.wall_time_s:.1f} s")
    lines.append("")
    head = f"{'#':>3}  {'layout':<44} {'step s':>8} {'network':<10} {'MFU':>6} " \
        f"{'mem GiB':>8} {'bubble s':>9} {'TP exp s':>9} {'DP exp s':>9}"
    lines.append(head)
    lines.append("-" * len(head))
    for _, r in t.head(top).iterrows():
        if r["status"] != "ok":
            lines.append(f"{r['rank']:>3}  {r['label']:<44} infeasible: {r['error']}")
            continue
        lines.append(f"{r['rank']:>3}  {r['label']:<44} {r['step_time_s']:>8.3f} "
                     f"{r['network']:<10} {100 * r['mfu']:>5.1f}% "
                     f"{r['memory_per_gpu_GiB']:>8.1f} {r['pp_bubble_and_wait_s']:>9.3f} "
                     f"{r['tp_exposed_s']:>9.3f} {r['dp_exposed_s']:>9.3f}")
    lines.append("")
    lines.append(f"Best: {layout_label(result.best)}. {result.why}")
    return "\n".join(lines)
