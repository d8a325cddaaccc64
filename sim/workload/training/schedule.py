"""Pipeline schedules: the order in which a pipeline stage runs its forward and backward
ops, and when an interleaved stage launches each virtual chunk's gradient reduction.

A schedule is a function ``(micro_batches M, stages P, virtual stages V, stage s) ->
[(kind, micro-batch, chunk), ...]`` with kind ``'F'`` or ``'B'``, registered by name in
:data:`SCHEDULES`; a new schedule is one function here plus its test.

Main assumption: every micro-batch costs the same, so the order alone fixes the bubble.
"""

from __future__ import annotations

from collections.abc import Callable

from .spec import TrainingWorkload

__all__ = ["SCHEDULES", "gpipe", "grad_sync_points", "interleaved_1f1b", "one_f_one_b",
           "pipeline_schedule"]

Op = tuple[str, int, int]  # ('F' | 'B', micro-batch, virtual chunk)


def gpipe(M: int, P: int, V: int, s: int) -> list[Op]:
    """GPipe: every forward, then every backward in reverse (Huang et al. 2019)."""
    return [("F", i, 0) for i in range(M)] + [("B", i, 0) for i in reversed(range(M))]


def one_f_one_b(M: int, P: int, V: int, s: int) -> list[Op]:
    """PipeDream-Flush 1F1B (Narayanan et al. 2021): P - s - 1 warm-up forwards, then one
    forward and one backward alternately, then the remaining backwards."""
    warm = min(P - s - 1, M)
    ops = [("F", i, 0) for i in range(warm)]
    f_next, b_next = warm, 0
    while f_next < M:
        ops.append(("F", f_next, 0))
        f_next += 1
        ops.append(("B", b_next, 0))
        b_next += 1
    ops += [("B", i, 0) for i in range(b_next, M)]
    return ops


def interleaved_1f1b(M: int, P: int, V: int, s: int) -> list[Op]:
    """Megatron's interleaved 1F1B: micro-batches in groups of P per virtual chunk,
    (P - s - 1) x 2 + (V - 1) x P warm-up forwards (Narayanan et al. 2021, Sec. 2.2)."""
    total = M * V

    def chunk_mb(k: int, forward: bool) -> tuple[int, int]:
        group = k // (P * V)
        in_group = k % (P * V)
        chunk = in_group // P
        if not forward:
            chunk = V - 1 - chunk
        return chunk, group * P + in_group % P

    warm = min((P - s - 1) * 2 + (V - 1) * P, total)
    fwd = [("F", mb, c) for c, mb in (chunk_mb(k, True) for k in range(total))]
    bwd = [("B", mb, c) for c, mb in (chunk_mb(k, False) for k in range(total))]
    steady = [op for pair in zip(fwd[warm:], bwd, strict=False) for op in pair]
    return fwd[:warm] + steady + bwd[total - warm:]


SCHEDULES: dict[str, Callable[[int, int, int, int], list[Op]]] = {
    "gpipe": gpipe,
    "1f1b": one_f_one_b,
    "interleaved": interleaved_1f1b,
}


def pipeline_schedule(w: TrainingWorkload, s: int) -> list[Op]:
    """Ops of stage ``s`` of ``w``: ('F'|'B', micro-batch, virtual chunk), in execution
    order."""
    return SCHEDULES[w.schedule](w.micro_batches, w.pp, w.vpp, s)


def grad_sync_points(ops: list[Op], stage: int) -> dict[int, list[int]]:
    """Interleaved schedule: after which op each virtual chunk's gradient reduce-scatter is
    launched ({op index: chunks}; -1: after the stage's last op).

    A chunk's gradients are complete after its last backward op; Megatron-Core launches
    that chunk's reduction (a DDP buffer per model chunk) after the backward op ``stage``
    backward ops later, so that the pipeline group launches it at the same time; chunks
    with no such op left are launched at the end (schedules.py,
    forward_backward_pipelining_with_interleaving: grad_sync_microbatch_id =
    microbatch_id - pipeline_parallel_rank)."""
    b_ops = [i for i, op in enumerate(ops) if op[0] == "B"]
    last_b = {ops[i][2]: k for k, i in enumerate(b_ops)}
    points: dict[int, list[int]] = {}
    for c, k in sorted(last_b.items()):
        j = k + stage
        points.setdefault(b_ops[j] if j < len(b_ops) else -1, []).append(c)
    return points
