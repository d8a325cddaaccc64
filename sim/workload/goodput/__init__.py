"""Failures, checkpoints and goodput: what a training job delivers over weeks
(:func:`simulate_goodput`, the failure model in :mod:`.spec`)."""

from .job import (
    LOSS_KINDS,
    SCAN,
    GoodputJob,
    GoodputResult,
    best_interval,
    job_units,
    model_params,
    simulate_goodput,
    young_daly,
)
from .spec import DEFAULT_FAILURES, FailureClass, FailureModel, load_failures

__all__ = ["GoodputJob", "GoodputResult", "best_interval", "SCAN", "simulate_goodput", "young_daly", "model_params",
           "job_units", "LOSS_KINDS", "FailureClass", "FailureModel", "load_failures",
           "DEFAULT_FAILURES"]
