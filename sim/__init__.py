"""fabsim: a discrete-event simulator of AI data-center fabrics.

The public API. Quantities are SI floats (seconds, bytes, bytes/s, FLOP/s, watts, USD).
"""

from .catalog import Catalog, load_catalog
from .collectives import CollectiveResult, collective_time, compile_plan, run_collective
from .cost import bill_of_materials, cost, load_assumptions
from .engine import Results, Simulation
from .errors import ConfigError, InfeasibleError, RoutingError, SimError, TopologyError
from .experiment import load_study, sweep
from .fabric import Fabric, Route, load_topology, summarize
from .network import AnalyticalNetwork, FlowNetwork, Transfer, make_network
from .review import load_review, run_review
from .workload import (
    ServiceJob,
    ServiceResult,
    ServiceSpec,
    TrainingJob,
    TrainingResult,
    TrainingWorkload,
    load_service,
    load_workload,
    simulate_service,
    simulate_training,
)

__version__ = "0.1.0"

__all__ = [
    "Results",
    "ServiceJob",
    "ServiceResult",
    "ServiceSpec",
    "Simulation",
    "TrainingJob",
    "load_review",
    "load_study",
    "sweep",
    "load_service",
    "run_review",
    "simulate_service",
    "AnalyticalNetwork",
    "bill_of_materials",
    "cost",
    "load_assumptions",
    "Catalog",
    "CollectiveResult",
    "FlowNetwork",
    "Transfer",
    "collective_time",
    "compile_plan",
    "make_network",
    "run_collective",
    "simulate_training",
    "load_workload",
    "TrainingWorkload",
    "TrainingResult",
    "ConfigError",
    "Fabric",
    "InfeasibleError",
    "Route",
    "RoutingError",
    "SimError",
    "TopologyError",
    "load_catalog",
    "load_topology",
    "summarize",
]
