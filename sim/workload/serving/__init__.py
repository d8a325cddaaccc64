"""Inference services on a fabric: continuous (or static) batching of LLM requests on
replicas of a model, aggregated or with disaggregated prefill and decode pools, on a
:class:`~sim.engine.Simulation`.

The parts: :mod:`.spec` (the service file), :mod:`.lengths` and :mod:`.arrivals` (what
arrives when), :mod:`.iteration` (what an iteration costs; pure), :mod:`.policies`
(routers), :mod:`.replica` (the batching loop), :mod:`.job` (the service's processes),
:mod:`.result` and :mod:`.plot`.
"""

from __future__ import annotations

from ...engine import Simulation
from ...fabric.fabric import Fabric
from .arrivals import draw_arrivals
from .iteration import GEMM_M_MEASURED, IterationModel, kv_bytes_per_token
from .job import ServiceJob, replica_groups
from .lengths import Lengths, paired_lengths, read_lengths
from .plot import plot_service
from .policies import ROUTERS
from .result import ServiceResult
from .spec import ServiceSpec, load_service

__all__ = ["GEMM_M_MEASURED", "IterationModel", "Lengths", "ROUTERS", "ServiceJob",
           "ServiceResult", "ServiceSpec", "draw_arrivals", "kv_bytes_per_token",
           "load_service", "paired_lengths", "plot_service", "read_lengths",
           "replica_groups", "simulate_service"]


def simulate_service(f: Fabric, s: ServiceSpec, duration_s: float, *,
                     warmup_s: float = 0.0, interval_s: float = 1.0,
                     network: str = "flow") -> ServiceResult:
    """Serve ``s`` alone on ``f`` for ``duration_s`` of arrivals (then drain what is
    left): a :class:`~sim.engine.Simulation` with one :class:`ServiceJob`.

    Parameters
    ----------
    warmup_s : float
        Requests arriving earlier are left out of the latency figures (s); the commands
        use :func:`sim.engine.warmup_for`.
    network : {'flow', 'analytical'}
        Carries the KV caches of a disaggregated service.

    Returns
    -------
    ServiceResult
        ``requests``: one row per request (arrival, first token, finish, tokens, replica,
        preemptions); ``intervals``: per-interval busy fraction, HBM bandwidth use, KV
        occupancy; ``summary``: latency percentiles, throughput, SLO attainment.
    """
    sim = Simulation(f, network=network)
    job = ServiceJob(s, duration_s, warmup_s=warmup_s, interval_s=interval_s)
    job.prepare(f)
    sim.add(job)
    return sim.run()[job.name]
