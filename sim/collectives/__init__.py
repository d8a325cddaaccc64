"""Collective communication on a fabric: algorithms that turn (op, ranks, bytes) into
phases of flows, kernels that turn phases into link loads, and the timing model of the
collective library's protocols."""

from .algorithms import ALGORITHMS, OPS, bus_factor
from .timing import (
    CollectiveResult,
    Plan,
    collective_time,
    compile_plan,
    phase_times,
    run_collective,
)

__all__ = ["ALGORITHMS", "OPS", "CollectiveResult", "Plan", "bus_factor", "collective_time",
           "compile_plan", "phase_times", "run_collective"]
