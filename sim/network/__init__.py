"""Network models on SimPy time: analytical (no contention) and flow (max-min fair)."""

from .models import (
    AnalyticalNetwork,
    FlowNetwork,
    NetworkModel,
    Transfer,
    effective_capacity,
    make_network,
)

__all__ = ["AnalyticalNetwork", "FlowNetwork", "NetworkModel", "Transfer",
           "effective_capacity", "make_network"]
