"""Training jobs on a fabric: one or more steps of a transformer under TP/SP, PP (GPipe,
1F1B, interleaved 1F1B), DP (ZeRO-0..3 / FSDP), CP and EP, on a
:class:`~sim.engine.Simulation`.

The parts: :mod:`.spec` (the workload and its checks), :mod:`.parallelism` (layers per
stage, the rank grid), :mod:`.schedule` (pipeline schedules), :mod:`.memory`,
:mod:`.stage_cost` (what each op costs; pure), :mod:`.comm` (the job's compiled network
phases), :mod:`.job` (the SimPy processes) and :mod:`.result`; :mod:`.plan` searches the
layouts of a workload whose fields are ``auto`` (``plan.search``, ``plan.resolve``).
"""

from __future__ import annotations

from ...engine import Simulation
from ...fabric.fabric import Fabric
from .job import TrainingJob, TrainingStep
from .memory import check_memory, memory_per_gpu
from .parallelism import rank_grid, stage_layers
from .result import TrainingResult, TrainingRun
from .schedule import SCHEDULES, grad_sync_points, pipeline_schedule
from .spec import AUTO_FIELDS, TrainingWorkload, check, load_workload
from .stage_cost import StageCost, model_flops_per_step

__all__ = ["AUTO_FIELDS", "SCHEDULES", "StageCost", "TrainingJob", "TrainingResult", "TrainingRun",
           "TrainingStep", "TrainingWorkload", "check", "check_memory", "grad_sync_points",
           "load_workload", "memory_per_gpu", "model_flops_per_step", "pipeline_schedule",
           "rank_grid", "simulate_training", "stage_layers", "PlanResult", "candidates",
           "format_plan", "layout_label", "resolve", "search"]


def simulate_training(fabric: Fabric, w: TrainingWorkload, *, network: str = "flow"
                      ) -> TrainingResult:
    """Simulate one training step of ``w`` alone on ``fabric``: a
    :class:`~sim.engine.Simulation` with one :class:`TrainingJob`.

    Parameters
    ----------
    fabric : Fabric
    w : TrainingWorkload
    network : {'flow', 'analytical'}

    Returns
    -------
    TrainingResult

    Raises
    ------
    InfeasibleError
        The layout does not fit the fabric or the memory.
    ConfigError
        ``w`` still has ``auto`` fields: resolve it first (:func:`.plan.resolve`).
    """
    sim = Simulation(fabric, network=network)
    job = TrainingJob(w)
    job.prepare(fabric)  # errors before any simulated time
    sim.add(job)
    return sim.run()[job.name].steps[0]


from .plan import PlanResult, candidates, format_plan, layout_label, resolve, search  # noqa: E402
