"""Workloads: transformer models (:mod:`.models`), training jobs (:mod:`.training`),
inference services (:mod:`.serving`) and mixes of them on one fabric (:mod:`.mix`)."""

from .models import ModelSpec, layer_costs
from .serving import ServiceJob, ServiceResult, ServiceSpec, load_service, simulate_service
from .training import (
    TrainingJob,
    TrainingResult,
    TrainingWorkload,
    load_workload,
    memory_per_gpu,
    simulate_training,
)

__all__ = ["ModelSpec", "ServiceJob", "ServiceResult", "ServiceSpec", "TrainingJob",
           "TrainingResult", "TrainingWorkload", "layer_costs", "load_service",
           "load_workload", "memory_per_gpu", "simulate_service", "simulate_training"]
