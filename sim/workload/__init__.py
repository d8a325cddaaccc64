"""Workloads: transformer models and training jobs on a fabric."""

from .models import ModelSpec, layer_costs
from .training import (
    TrainingResult,
    TrainingWorkload,
    load_workload,
    memory_per_gpu,
    simulate_training,
)

__all__ = ["ModelSpec", "TrainingResult", "TrainingWorkload", "layer_costs", "load_workload",
           "memory_per_gpu", "simulate_training"]
